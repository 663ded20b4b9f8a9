"""Process mode of runbook 3.1/3.2: stop exactly the tracked process, start it clean, poll.

The runbook kills whatever `ps aux | grep AFO.api_server` lists, starts the server with `&`
and then waits a fixed 30 s. Here: the pid comes from the pidfile and is signalled only while
its command line is still the configured start command (a recycled pid is never touched); the
new process starts detached with the env file's environment and its output in a log file;
readiness is polled, and a start command that dies is reported at once with its log's tail.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import requests

from afo_runbook.secret import read_env_file
from recovery.steps import ActionResult, StepFailed

POLL = 0.05
LOG_TAIL_LINES = 15


def read_pid(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return int(text) if text.isdigit() else None


def cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if not raw:
        return None  # a zombie, or a kernel thread
    # Each argument ends in one NUL: drop only the last one (an empty last argument stays).
    body = raw[:-1] if raw.endswith(b"\0") else raw
    return [part.decode(errors="replace") for part in body.split(b"\0")]


def runs_command(pid: int, argv: list[str]) -> bool:
    """Is `pid` still our process: the same arguments, the same program?"""
    found = cmdline(pid)
    if not found or len(found) != len(argv) or found[1:] != argv[1:]:
        return False
    return found[0] == argv[0] or Path(found[0]).name == Path(argv[0]).name


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return cmdline(pid) is not None  # a zombie is gone for our purposes


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(POLL)
    return not alive(pid)


def stop_tracked(result: ActionResult, pidfile: Path, argv: list[str], timeout: float) -> None:
    """Stop the pidfile's process if (and only if) it runs `argv`: SIGTERM, then SIGKILL."""
    with result.step("stop the tracked process") as step:
        pid = read_pid(pidfile)
        if pid is None:
            step.detail = f"no pid in {pidfile}: nothing to stop"
            return
        if not alive(pid):
            step.detail = f"pid {pid} from {pidfile} is not running"
            return
        if not runs_command(pid, argv):
            found = cmdline(pid) or []
            raise StepFailed(f"pid {pid} from {pidfile} runs {shlex.join(found)!r}, not the "
                             f"configured start command: not ours, left alone")
        os.kill(pid, signal.SIGTERM)
        if wait_gone(pid, timeout):
            step.detail = f"pid {pid} stopped with SIGTERM"
            return
        os.kill(pid, signal.SIGKILL)
        if not wait_gone(pid, 5):
            raise StepFailed(f"pid {pid} survived SIGKILL")
        step.detail = f"pid {pid} ignored SIGTERM for {timeout:g} s; killed"


def start_detached(result: ActionResult, argv: list[str], *, cwd: Path, env_file: Path | None,
                   log_file: Path, pidfile: Path) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session, environment refreshed from the env file."""
    with result.step("start with the env file's environment") as step:
        env = dict(os.environ)
        loaded = read_env_file(env_file)
        if env_file is not None and not loaded:
            raise StepFailed(f"the env file {env_file} is missing or empty")
        env.update(loaded)  # the secret comes from here, never from code or config
        log_file.parent.mkdir(parents=True, exist_ok=True)
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(log_file, "ab") as log:
                log.write(f"--- afo-runbook recovery: starting {shlex.join(argv)}\n".encode())
                log.flush()
                proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        except OSError as exc:
            raise StepFailed(f"cannot start {shlex.join(argv)!r} in {cwd}: "
                             f"{exc.strerror or exc}") from None
        tmp = pidfile.with_name(f".{pidfile.name}.{os.getpid()}")
        tmp.write_text(f"{proc.pid}\n")
        os.replace(tmp, pidfile)
        names = sorted(loaded)
        step.detail = (f"pid {proc.pid}; environment from {env_file} "
                       f"({len(names)} variables: {', '.join(names)})" if env_file else
                       f"pid {proc.pid}")
        return proc


def log_tail(log_file: Path, lines: int = LOG_TAIL_LINES) -> str:
    with contextlib.suppress(OSError):
        text = log_file.read_bytes()[-16384:].decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])
    return "(no log)"


def wait_ready(result: ActionResult, url: str, timeout: float,
               proc: subprocess.Popen[bytes] | None = None,
               log_file: Path | None = None) -> None:
    """Poll `url` until it answers 2xx; a started process that exits fails at once."""
    with result.step(f"wait until {url} answers") as step:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                tail = log_tail(log_file) if log_file else ""
                raise StepFailed(f"the start command exited with code {proc.returncode} "
                                 f"before {url} answered; last lines of its log:\n{tail}")
            try:
                answer = requests.get(url, timeout=min(2.0, max(0.1, deadline - time.monotonic())))
                last = f"HTTP {answer.status_code}"
                if 200 <= answer.status_code < 300:
                    step.detail = f"{url} answered {answer.status_code}"
                    return
            except requests.RequestException as exc:
                last = type(exc).__name__
            time.sleep(POLL)
        raise StepFailed(f"{url} did not answer 2xx within {timeout:g} s (last: {last})")
