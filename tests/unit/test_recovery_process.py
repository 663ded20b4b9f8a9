"""Runbook 3.1/3.2 in process mode, on real processes: only the pidfile's process is stopped,
and only while it still runs the configured command; a start is detached, with the env
file's environment; readiness is polled, and a start that dies says so at once.

Every process here is a child of the test, stopped by its own pid at the end.
"""

from __future__ import annotations

import ast
import contextlib
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loopback import Handler, Loopback

from afo_runbook.refstack.rawservers import RawServer
from afo_runbook.refstack.waiting import wait_until
from recovery import process
from recovery.steps import ActionResult, StepFailed

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
STUBBORN = [sys.executable, "-c", "import signal, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\ntime.sleep(120)"]


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a child process; every one is killed and reaped at the end, by its pid."""
    children: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], **options: object) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(argv, **options)  # type: ignore[call-overload]
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(10)


def step_of(result: ActionResult) -> tuple[str, bool, str]:
    [step] = result.steps
    return step.name, step.ok, step.detail


# -- which process is ours -------------------------------------------------------------------


def test_read_pid(tmp_path: Path) -> None:
    pidfile = tmp_path / "api.pid"
    assert process.read_pid(pidfile) is None  # no file
    for text, pid in (("123\n", 123), ("  77 ", 77), ("", None), ("12a", None), ("-5", None)):
        pidfile.write_text(text)
        assert process.read_pid(pidfile) == pid, text
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert process.read_pid(blocker / "api.pid") is None  # a file where a folder should be


def test_cmdline_of_a_live_process_and_of_none(spawn: Callable[..., subprocess.Popen[bytes]]
                                               ) -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(120)", "two words", "END-X"]
    child = spawn(argv)
    assert wait_until(lambda: process.cmdline(child.pid), timeout=10) == argv
    assert process.runs_command(child.pid, argv)
    assert process.alive(child.pid)
    child.kill()
    child.wait(10)
    assert process.cmdline(child.pid) is None
    assert not process.alive(child.pid)
    assert not process.runs_command(child.pid, argv)


def test_arguments_that_are_not_utf_8_are_shown_replaced(
        spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    child = spawn([*SLEEPER, b"caf\xe9"])
    assert wait_until(lambda: process.cmdline(child.pid), timeout=10) == [*SLEEPER, "caf\ufffd"]


def test_a_zombie_counts_as_gone(spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    """Exited but not yet reaped: /proc still lists it, with an empty command line."""
    child = spawn([sys.executable, "-c", "pass"])
    wait_until(lambda: Path(f"/proc/{child.pid}/stat").read_text().split()[2] == "Z",
               timeout=10, message="the child never became a zombie")
    assert process.cmdline(child.pid) is None
    assert not process.alive(child.pid)


def test_runs_command_compares_arguments_and_program(
        spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    child = spawn(SLEEPER)
    wait_until(lambda: process.cmdline(child.pid), timeout=10)
    assert process.runs_command(child.pid, SLEEPER)
    # the same program by another path (a venv's python3 for python): the name decides
    assert process.runs_command(child.pid, ["/elsewhere/" + Path(sys.executable).name,
                                            *SLEEPER[1:]])
    assert not process.runs_command(child.pid, ["/usr/bin/other", *SLEEPER[1:]])
    assert not process.runs_command(child.pid, [SLEEPER[0], "-c", "import time"])
    assert not process.runs_command(child.pid, [*SLEEPER, "extra"])
    assert not process.runs_command(child.pid, SLEEPER[:-1])


def test_the_program_is_compared_with_the_program(
        spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    """Never with one of the arguments, even where an argument looks like a program."""
    script = "sleep 120; :"  # `; :` keeps the shell itself running
    child = spawn(["-c", "-c", script], executable="/bin/sh")  # its argv[0] is "-c"
    wait_until(lambda: process.cmdline(child.pid), timeout=10)
    assert process.cmdline(child.pid) == ["-c", "-c", script]
    assert process.runs_command(child.pid, ["-c", "-c", script])
    assert not process.runs_command(child.pid, ["/usr/bin/other", "-c", script])
    twin = spawn(["/opt/prog", "-c", script], executable="/bin/sh")
    wait_until(lambda: process.cmdline(twin.pid), timeout=10)
    assert not process.runs_command(twin.pid, ["-c", "-c", script])


def test_a_command_ending_in_an_empty_argument_is_ours(
        spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    argv = [*SLEEPER, ""]
    child = spawn(argv)
    wait_until(lambda: process.cmdline(child.pid), timeout=10)
    assert process.runs_command(child.pid, argv)


def test_this_process_is_alive() -> None:
    assert process.alive(os.getpid())


LISTENER = [sys.executable, "-c", "import signal, time\n"
            "for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):\n"
            "    signal.signal(sig, lambda n, f: print(signal.Signals(n).name, flush=True))\n"
            "print('ready', flush=True)\n"
            "while True: time.sleep(1)"]


def test_asking_whether_a_process_lives_sends_it_nothing(
        spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    """`kill -0`: no signal arrives. The test's own SIGUSR1 goes second and arrives second,
    so whatever arrived before it was sent by the question."""
    child = spawn(LISTENER, stdout=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n"
    assert process.alive(child.pid)
    os.kill(child.pid, signal.SIGUSR1)
    assert child.stdout.readline() == b"SIGUSR1\n"


@pytest.mark.skipif(Path("/proc/1").stat().st_uid != 0, reason="needs a process owned by root")
def test_a_process_we_may_not_signal_is_alive() -> None:
    """Someone else's process (EPERM) is there all the same: never start a second one."""
    probe = ("import os\n"
             "from recovery.process import alive\n"
             "alive(os.getpid())\n"  # everything it imports is loaded while still allowed
             "if os.geteuid() == 0: os.setgid(65534); os.setuid(65534)\n"
             "print(alive(1))")
    answer = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60, check=False, cwd=os.getcwd())
    assert (answer.returncode, answer.stdout) == (0, "True\n"), answer.stderr


def test_wait_gone(spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    child = spawn(SLEEPER)
    wait_until(lambda: process.cmdline(child.pid), timeout=10)
    assert process.wait_gone(child.pid, 0.2) is False  # still there when the time is up
    child.terminate()
    assert process.wait_gone(child.pid, 10) is True


# -- stop ------------------------------------------------------------------------------------


def test_stop_without_a_pid_does_nothing(tmp_path: Path) -> None:
    result = ActionResult("restart", "api")
    process.stop_tracked(result, tmp_path / "api.pid", SLEEPER, 1)
    assert step_of(result) == ("stop the tracked process", True,
                               f"no pid in {tmp_path / 'api.pid'}: nothing to stop")


def test_stop_a_pid_that_is_gone(tmp_path: Path,
                                 spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    child = spawn([sys.executable, "-c", "pass"])
    child.wait(10)
    pidfile = tmp_path / "api.pid"
    pidfile.write_text(f"{child.pid}\n")
    result = ActionResult("restart", "api")
    process.stop_tracked(result, pidfile, SLEEPER, 1)
    assert step_of(result)[2] == f"pid {child.pid} from {pidfile} is not running"


def test_a_recycled_pid_is_left_alone(tmp_path: Path,
                                      spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    stranger = spawn(SLEEPER)
    wait_until(lambda: process.cmdline(stranger.pid), timeout=10)
    pidfile = tmp_path / "api.pid"
    pidfile.write_text(f"{stranger.pid}\n")
    ours = [sys.executable, "-m", "AFO.api_server"]
    result = ActionResult("rollback", "api")
    with pytest.raises(StepFailed) as caught:
        process.stop_tracked(result, pidfile, ours, 1)
    assert str(caught.value) == (
        f"pid {stranger.pid} from {pidfile} runs {shlex.join(SLEEPER)!r}, not the "
        "configured start command: not ours, left alone")
    assert step_of(result)[1] is False
    assert stranger.poll() is None  # alive


def test_our_process_is_stopped_with_sigterm(tmp_path: Path,
                                             spawn: Callable[..., subprocess.Popen[bytes]]
                                             ) -> None:
    child = spawn(SLEEPER)
    wait_until(lambda: process.cmdline(child.pid), timeout=10)
    pidfile = tmp_path / "api.pid"
    pidfile.write_text(f"{child.pid}\n")
    result = ActionResult("rollback", "api")
    process.stop_tracked(result, pidfile, SLEEPER, 10)
    assert step_of(result) == ("stop the tracked process", True,
                               f"pid {child.pid} stopped with SIGTERM")
    assert child.wait(10) == -signal.SIGTERM


def test_a_process_ignoring_sigterm_is_killed(tmp_path: Path,
                                              spawn: Callable[..., subprocess.Popen[bytes]]
                                              ) -> None:
    child = spawn(STUBBORN, stdout=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n"  # its SIGTERM handler is in place
    pidfile = tmp_path / "api.pid"
    pidfile.write_text(f"{child.pid}\n")
    result = ActionResult("rollback", "api")
    process.stop_tracked(result, pidfile, STUBBORN, 0.3)
    assert step_of(result)[2] == f"pid {child.pid} ignored SIGTERM for 0.3 s; killed"
    assert child.wait(10) == -signal.SIGKILL


# -- start -----------------------------------------------------------------------------------

@contextlib.contextmanager
def terminal_input(data: bytes) -> Iterator[None]:
    """This process's stdin (fd 0) holds `data` for a moment, as a terminal would."""
    saved = os.dup(0)
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    os.dup2(read_end, 0)
    os.close(read_end)
    try:
        yield
    finally:
        os.dup2(saved, 0)
        os.close(saved)


REPORTER = ("import os, sys, pathlib\n"
            "pathlib.Path('seen.txt').write_text(repr((os.getcwd(), os.getsid(0), "
            "os.environ.get('AFO_TEST_TOKEN'), os.environ.get('AFO_TEST_FLAG'), "
            "sys.stdin.read())))\n"
            "print('to the log', flush=True); print('and errors', file=sys.stderr)\n")


def test_start_detached_with_the_env_files_environment(tmp_path: Path) -> None:
    token = "tst-" + secrets.token_urlsafe(12)
    env_file = tmp_path / ".env.afo"
    env_file.write_text(f"AFO_TEST_TOKEN={token}\nAFO_TEST_FLAG=on\n")
    cwd = tmp_path / "work"
    cwd.mkdir()
    log_file = tmp_path / "var" / "logs" / "api.out"  # folders that do not exist yet
    pidfile = tmp_path / "var" / "run" / "api.pid"
    argv = [sys.executable, "-c", REPORTER]
    result = ActionResult("rollback", "api")
    with terminal_input(b"typed at the terminal"):  # never the service's stdin
        proc = process.start_detached(result, argv, cwd=cwd, env_file=env_file,
                                      log_file=log_file, pidfile=pidfile)
        assert proc.wait(30) == 0
    assert step_of(result) == ("start with the env file's environment", True,
                               f"pid {proc.pid}; environment from {env_file} "
                               "(2 variables: AFO_TEST_FLAG, AFO_TEST_TOKEN)")
    assert pidfile.read_text() == f"{proc.pid}\n"
    assert sorted(p.name for p in pidfile.parent.iterdir()) == ["api.pid"]
    seen_cwd, session, seen_token, flag, stdin = ast.literal_eval((cwd / "seen.txt").read_text())
    assert (seen_cwd, session, seen_token == token, flag, stdin) == (
        str(cwd), proc.pid, True, "on", "")  # its own session; stdin is /dev/null
    assert log_file.read_text() == (f"--- afo-runbook recovery: starting "
                                    f"{shlex.join(argv)}\n"
                                    "to the log\nand errors\n")


def test_start_without_an_env_file(tmp_path: Path) -> None:
    result = ActionResult("restart", "api")
    proc = process.start_detached(result, [sys.executable, "-c", "pass"], cwd=tmp_path,
                                  env_file=None, log_file=tmp_path / "out.log",
                                  pidfile=tmp_path / "api.pid")
    assert proc.wait(30) == 0
    assert step_of(result)[2] == f"pid {proc.pid}"


@pytest.mark.parametrize("content", [None, "", "# only a comment\n"])
def test_start_refuses_a_missing_or_empty_env_file(tmp_path: Path, content: str | None) -> None:
    """Starting without the env file would bring back EXP_007: a service without its secret."""
    env_file = tmp_path / ".env.afo"
    if content is not None:
        env_file.write_text(content)
    result = ActionResult("rollback", "api")
    with pytest.raises(StepFailed) as caught:
        process.start_detached(result, [sys.executable, "-c", "pass"], cwd=tmp_path,
                               env_file=env_file, log_file=tmp_path / "out.log",
                               pidfile=tmp_path / "api.pid")
    assert str(caught.value) == f"the env file {env_file} is missing or empty"
    assert not (tmp_path / "api.pid").exists()


def test_a_start_command_that_cannot_start(tmp_path: Path) -> None:
    result = ActionResult("restart", "api")
    with pytest.raises(StepFailed) as caught:
        process.start_detached(result, [str(tmp_path / "no-such-program"), "--flag"],
                               cwd=tmp_path, env_file=None, log_file=tmp_path / "out.log",
                               pidfile=tmp_path / "api.pid")
    assert str(caught.value) == (f"cannot start '{tmp_path / 'no-such-program'} --flag' in "
                                 f"{tmp_path}: No such file or directory")


def test_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "api.out"
    log.write_text("".join(f"line {n}\n" for n in range(1, 41)))
    assert process.log_tail(log) == "\n".join(f"line {n}" for n in range(26, 41))
    assert process.log_tail(log, 2) == "line 39\nline 40"
    log.write_bytes(b"x" * 20000 + b"\nlast \xff\n")
    assert process.log_tail(log, 5) == "x" * (16384 - 8) + "\nlast \ufffd"
    assert process.log_tail(tmp_path / "absent.out") == "(no log)"


# -- ready -----------------------------------------------------------------------------------


def answers(*statuses: int) -> Callable[[Handler], None]:
    """Each request gets the next status; the last one repeats."""
    queue = list(statuses)

    def answer(handler: Handler) -> None:
        handler.reply(queue.pop(0) if len(queue) > 1 else queue[0], b"{}")
    return answer


def test_ready_on_a_plain_200(loopback: Loopback) -> None:
    url = loopback.route("/api/health", answers(200))
    result = ActionResult("restart", "api")
    process.wait_ready(result, url, 10)
    assert step_of(result)[2] == f"{url} answered 200"


def test_no_time_to_wait_says_nothing_answered(loopback: Loopback) -> None:
    url = loopback.route("/api/health", answers(200))
    with pytest.raises(StepFailed) as caught:
        process.wait_ready(ActionResult("restart", "api"), url, 0)
    assert str(caught.value) == f"{url} did not answer 2xx within 0 s (last: no answer yet)"


def test_a_health_url_that_never_answers_does_not_hold_the_wait() -> None:
    """Each poll has its own timeout inside the deadline: a server that accepts and then
    says nothing cannot keep the recovery waiting."""
    with RawServer("hang") as server, pytest.raises(StepFailed) as caught:
        process.wait_ready(ActionResult("restart", "api"), server.url, 0.5)
    assert str(caught.value).startswith(f"{server.url} did not answer 2xx within 0.5 s (last: ")


def test_ready_once_the_url_answers_2xx(loopback: Loopback) -> None:
    url = loopback.route("/api/health", answers(503, 503, 299))
    result = ActionResult("restart", "api")
    process.wait_ready(result, url, 10)
    assert step_of(result) == (f"wait until {url} answers", True, f"{url} answered 299")
    assert len(loopback.requests) == 3


@pytest.mark.parametrize(("status", "last"), [(300, "HTTP 300"), (503, "HTTP 503")])
def test_not_ready_when_it_never_answers_2xx(loopback: Loopback, status: int,
                                             last: str) -> None:
    url = loopback.route("/api/health", answers(status))
    result = ActionResult("restart", "api")
    with pytest.raises(StepFailed) as caught:
        process.wait_ready(result, url, 0.3)
    assert str(caught.value) == f"{url} did not answer 2xx within 0.3 s (last: {last})"
    assert len(loopback.requests) >= 2  # polled, not asked once


def test_not_ready_when_nothing_listens() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/health"
    result = ActionResult("restart", "api")
    with pytest.raises(StepFailed) as caught:
        process.wait_ready(result, url, 0.3)
    assert str(caught.value) == f"{url} did not answer 2xx within 0.3 s (last: ConnectionError)"


def test_a_start_command_that_dies_is_reported_at_once(tmp_path: Path,
                                                       loopback: Loopback) -> None:
    url = loopback.route("/api/health", answers(503))
    log = tmp_path / "api.out"
    log.write_text("starting\nImportError: no module named AFO\n")
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    proc.wait(30)
    result = ActionResult("restart", "api")
    with pytest.raises(StepFailed) as caught:
        process.wait_ready(result, url, 60, proc=proc, log_file=log)
    assert str(caught.value) == (f"the start command exited with code 3 before {url} "
                                 "answered; last lines of its log:\n"
                                 "starting\nImportError: no module named AFO")
    assert loopback.requests == []  # no polling of a service whose process is gone
    with pytest.raises(StepFailed, match=r"answered; last lines of its log:\n$"):
        process.wait_ready(ActionResult("restart", "api"), url, 60, proc=proc)
