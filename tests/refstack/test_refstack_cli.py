"""`afo-refstack`: start/status/fault/config/stop round trip in a temp dir with free ports."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from dotenv import dotenv_values

from afo_runbook.refstack import procs
from afo_runbook.refstack.cli import main
from afo_runbook.refstack.runbook_toml import render_runbook_toml, toml_string
from afo_runbook.refstack.services import SECRET_ENV, SERVICE_NAMES, SERVICES
from afo_runbook.refstack.stack import Stack, StackError, http_status
from afo_runbook.refstack.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 5


def ports_arg(ports: dict[str, int]) -> str:
    return ",".join(f"{name}={port}" for name, port in ports.items())


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A state dir whose stack (if any got started) is stopped afterwards."""
    path = tmp_path / ".refstack"
    try:
        yield path
    finally:
        with contextlib.suppress(StackError):  # nothing was started
            Stack.load(path).stop()


def test_round_trip(state_dir: Path, ports: dict[str, int], capsys: pytest.CaptureFixture) -> None:
    sd = ["--state-dir", str(state_dir)]
    assert main(["start", *sd, "--ports", ports_arg(ports)]) == 0
    out = capsys.readouterr().out
    for name, port in ports.items():
        assert f"http://127.0.0.1:{port}" in out, name

    # The generated env file: a random secret, private, never printed.
    env_file = state_dir / ".env.afo"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    secret = env_file.read_text().strip().split("=", 1)[1]
    assert len(secret) >= 32
    assert secret not in out

    assert main(["status", *sd]) == 0
    out = capsys.readouterr().out
    assert out.count("alive=yes") == 3
    assert out.count("health=200") == 3

    # Live faults from the command line.
    assert main(["fault", "aux", "health-500", *sd]) == 0
    assert main(["fault", "api", "slow=1", *sd]) == 0
    capsys.readouterr()
    assert main(["status", *sd]) == 0
    out = capsys.readouterr().out
    assert "health=500" in out
    assert "api: slow=1" in out
    assert main(["fault", "api", "slow", "--off", *sd]) == 0
    assert main(["fault", "aux", "--clear", *sd]) == 0
    assert requests.get(f"http://127.0.0.1:{ports['aux']}/health", timeout=TIMEOUT).ok

    # The generated runbook.toml parses and points at this stack.
    output = state_dir.parent / "runbook.toml"
    assert main(["config", *sd, "--output", str(output)]) == 0
    config = tomllib.loads(output.read_text())
    api = f"http://127.0.0.1:{ports['api']}"
    assert config["budgets"] == {"observe": 60, "health": 10, "guard": 20, "sse": 20,
                                 "containers": 10}  # fmt: skip
    assert [h["name"] for h in config["health"]] == ["api", "aux", "dashboard"]
    assert config["health"][0] == {"name": "api", "url": f"{api}/api/health", "expect": 200}
    assert config["health"][2]["url"] == f"http://127.0.0.1:{ports['dashboard']}/"
    assert config["guard"]["url"] == f"{api}/api/revalidate/status"
    assert config["guard"]["env_file"] == str(env_file.resolve())
    assert config["guard"]["deny"] == [401, 503]
    assert config["sse"] == {"url": f"{api}/api/thoughts/sse", "window": 10,
                             "event": "heartbeat"}
    process = config["recovery"]["process"]
    assert config["recovery"]["mode"] == "process"
    stack = Stack.load(state_dir)
    assert shlex.split(process["start"]) == stack.command("api")
    assert process["pidfile"] == str(stack.pidfile("api"))
    assert process["log_file"] == str(stack.log_file("api"))
    assert process["cwd"] == str(state_dir.resolve())
    assert process["ready_url"] == f"{api}/api/health"
    assert secret not in output.read_text()

    pids = [stack.pid(name) for name in SERVICE_NAMES]
    assert main(["stop", *sd]) == 0
    for pid in pids:
        assert pid is not None
        assert not procs.is_running(pid)
    assert main(["status", *sd]) == 1
    assert "alive=no" in capsys.readouterr().out


def test_start_refuses_a_running_stack_and_a_taken_port(
    state_dir: Path, ports: dict[str, int], capsys: pytest.CaptureFixture
) -> None:
    only_api = ["--fault", "aux:down", "--fault", "dashboard:down"]
    sd = ["--state-dir", str(state_dir)]
    assert main(["start", *sd, "--ports", ports_arg(ports), *only_api]) == 0
    capsys.readouterr()

    assert main(["start", *sd, "--ports", ports_arg(ports), *only_api]) == 1
    err = capsys.readouterr().err.strip()
    assert "already runs" in err
    assert len(err.splitlines()) == 1

    other = state_dir.parent / "other"
    assert main(["start", "--state-dir", str(other), "--ports", f"api={ports['api']}"]) == 1
    err = capsys.readouterr().err.strip()
    assert f"port {ports['api']} for api" in err
    assert "already in use" in err
    assert len(err.splitlines()) == 1


def test_recovery_process_section_recovers_a_start_without_secret(
    state_dir: Path, ports: dict[str, int], env_file: Path, secret: str
) -> None:
    """Do what a `mode = "process"` recovery would do with the generated runbook.toml."""
    argv = ["start", "--state-dir", str(state_dir), "--ports", ports_arg(ports)]
    argv += ["--env-file", str(env_file), "--fault", "api:secret-missing"]
    argv += ["--fault", "aux:down", "--fault", "dashboard:down"]
    assert main(argv) == 0
    assert not (state_dir / ".env.afo").exists()  # the given env file is used as is
    guard = f"http://127.0.0.1:{ports['api']}/api/revalidate/status"

    def guard_code() -> int:
        headers = {"X-Internal-Secret": secret}
        return requests.get(guard, headers=headers, timeout=TIMEOUT).status_code

    assert guard_code() == 503

    rec = tomllib.loads(render_runbook_toml(Stack.load(state_dir)))["recovery"]["process"]
    assert rec["env_file"] == str(env_file.resolve())
    pidfile = Path(rec["pidfile"])
    old = procs.verify_serve_process(int(pidfile.read_text()), "api", state_dir)
    assert old is not None
    procs.terminate([old], {}, timeout=rec["stop_timeout"])
    env = {**os.environ, **{k: v for k, v in dotenv_values(rec["env_file"]).items() if v}}
    with open(rec["log_file"], "ab") as log:
        new = subprocess.Popen(
            shlex.split(rec["start"]),
            cwd=rec["cwd"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        pidfile.write_text(f"{new.pid}\n")
        wait_until(
            lambda: http_status("127.0.0.1", ports["api"], "/api/health", TIMEOUT) == 200,
            timeout=10,
            message="the restarted api did not come up",
        )
        assert guard_code() == 200
        main(["stop", "--state-dir", str(state_dir)])  # follows the rewritten pidfile
        assert new.wait(timeout=TIMEOUT) is not None
    finally:
        if new.poll() is None:
            new.kill()
            new.wait(timeout=TIMEOUT)


@pytest.mark.parametrize(
    "argv",
    [
        ["start", "--fault", "api:nope"],
        ["start", "--ports", "api=notaport"],
        ["start", "--ports", "db=5432"],
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], state_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main([*argv, "--state-dir", str(state_dir)]) == 2
    assert capsys.readouterr().err.strip()
    assert not (state_dir / "stack.json").exists()


def test_commands_without_a_stack(state_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["stop", "--state-dir", str(state_dir)]) == 0
    assert main(["status", "--state-dir", str(state_dir)]) == 1
    assert "no stack" in capsys.readouterr().err


def test_foreground_stops_the_stack_on_sigterm(state_dir: Path, ports: dict[str, int]) -> None:
    cmd = [sys.executable, "-m", "afo_runbook.refstack.cli", "start", "--foreground"]
    cmd += ["--state-dir", str(state_dir), "--ports", ports_arg(ports)]
    cli = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:

        def all_up() -> bool:
            assert cli.poll() is None, "the CLI exited early"
            if not (state_dir / "stack.json").exists():
                return False
            return all(
                http_status("127.0.0.1", ports[name], SERVICES[name].health_path, TIMEOUT) == 200
                for name in SERVICE_NAMES
            )

        wait_until(all_up, timeout=15, message="the foreground stack did not come up")
        pids = [Stack.load(state_dir).pid(name) for name in SERVICE_NAMES]
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=15) == 0
        for pid in pids:
            assert pid is not None
            assert not procs.is_running(pid)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(timeout=5)
        if cli.stderr is not None:
            cli.stderr.close()


def test_toml_strings_escape_what_toml_needs() -> None:
    nasty = 'C:\\dir with "quotes"\tand\nnewline \x01 ü'
    assert tomllib.loads(f"v = {toml_string(nasty)}")["v"] == nasty


def test_generated_env_file_is_not_overwritten(
    state_dir: Path, ports: dict[str, int], capsys: pytest.CaptureFixture
) -> None:
    state_dir.mkdir(parents=True)
    env_file = state_dir / ".env.afo"
    env_file.write_text(f"{SECRET_ENV}=keep-me\n")
    only_api = ["--fault", "aux:down", "--fault", "dashboard:down"]
    assert (
        main(["start", "--state-dir", str(state_dir), "--ports", ports_arg(ports), *only_api]) == 0
    )
    assert env_file.read_text() == f"{SECRET_ENV}=keep-me\n"
    guard = f"http://127.0.0.1:{ports['api']}/api/revalidate/status"
    resp = requests.get(guard, headers={"X-Internal-Secret": "keep-me"}, timeout=TIMEOUT)
    assert resp.status_code == 200
