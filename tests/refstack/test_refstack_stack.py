"""Stack lifecycle: start, files, restart, stop, and never killing what is not ours."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from afo_runbook.refstack import procs
from afo_runbook.refstack.services import SERVICE_NAMES
from afo_runbook.refstack.stack import (
    PortInUseError,
    ServiceStartError,
    Stack,
    StackAlreadyRunningError,
)
from afo_runbook.refstack.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

ONLY_API = {"aux": {"down": None}, "dashboard": {"down": None}}
TIMEOUT = 5  # every request in these tests is bounded


def refused(url: str) -> bool:
    try:
        requests.get(url, timeout=TIMEOUT)
    except requests.ConnectionError:
        return True
    return False


def test_all_services_answer(stack: Stack) -> None:
    api = requests.get(stack.health_url("api"), timeout=TIMEOUT)
    assert api.status_code == 200
    assert api.json() == {"status": "ok", "service": "api"}
    aux = requests.get(stack.health_url("aux"), timeout=TIMEOUT)
    assert aux.status_code == 200
    assert aux.json()["status"] == "ok"
    dash = requests.get(stack.health_url("dashboard"), timeout=TIMEOUT)
    assert dash.status_code == 200
    assert dash.headers["content-type"].startswith("text/html")
    assert "<html>" in dash.text


def test_urls_files_and_commands(stack: Stack) -> None:
    assert stack.urls == {n: f"http://127.0.0.1:{stack.ports[n]}" for n in SERVICE_NAMES}
    recorded = json.loads((stack.state_dir / "stack.json").read_text())
    assert recorded["ports"] == stack.ports
    assert recorded["host"] == "127.0.0.1"
    for name in SERVICE_NAMES:
        pid = stack.pid(name)
        assert pid is not None
        assert stack.pidfile(name).read_text().strip() == str(pid)
        argv = stack.command(name)
        assert argv[:4] == [stack.python, "-m", "afo_runbook.refstack.serve", name]
        assert recorded["commands"][name] == argv
        assert procs.read_cmdline(pid) == argv  # the process runs exactly that argv
        assert "starting" in stack.log_file(name).read_text()


def test_stop_and_start_one_service(stack: Stack) -> None:
    old_pid = stack.pid("api")
    stack.stop_service("api")
    assert stack.pid("api") is None
    assert not stack.pidfile("api").exists()
    assert refused(stack.health_url("api"))
    assert requests.get(stack.health_url("aux"), timeout=TIMEOUT).status_code == 200

    stack.start_service("api")
    assert stack.pid("api") not in (None, old_pid)
    assert requests.get(stack.health_url("api"), timeout=TIMEOUT).status_code == 200


def test_stop_leaves_no_process_even_with_open_streams(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    stack.start()
    pids = [stack.pid(name) for name in SERVICE_NAMES]
    assert None not in pids
    # An open SSE stream and a tarpitted request must not hold up SIGTERM.
    stack.set_fault("aux", "tarpit")
    sse = requests.get(stack.urls["api"] + "/api/thoughts/sse", stream=True, timeout=TIMEOUT)
    tarpit = socket.create_connection(("127.0.0.1", stack.ports["aux"]), timeout=TIMEOUT)
    try:
        tarpit.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        t0 = time.monotonic()
        stack.stop()
        elapsed = time.monotonic() - t0
    finally:
        sse.close()
        tarpit.close()
    assert elapsed < 5, f"stop took {elapsed:.1f}s: SIGTERM was not enough"
    for pid in pids:
        assert pid is not None
        assert not procs.is_running(pid)
    for name in SERVICE_NAMES:
        assert not stack.pidfile(name).exists()


def test_pidfile_pointing_at_a_foreign_process_is_left_alone(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(faults=ONLY_API)
    stack.start()
    api_pid = stack.pid("api")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        # As if the api died and its pid was recycled by an unrelated process.
        stack.pidfile("api").write_text(f"{sleeper.pid}\n")
        Stack.load(stack.state_dir).stop()  # knows the stack only through its files
        assert sleeper.poll() is None, "a foreign process was signalled"
        assert api_pid is not None
        assert procs.is_running(api_pid)  # not provably ours through the pidfile: untouched

        stack.stop()  # the object that spawned the api still knows its child
        assert sleeper.poll() is None
        assert not procs.is_running(api_pid)
    finally:
        sleeper.kill()
        sleeper.wait(timeout=TIMEOUT)


def test_pidfile_is_the_source_of_truth(make_stack: Callable[..., Stack]) -> None:
    """Another component restarts the api itself and rewrites the pidfile: stop follows it."""
    stack = make_stack(faults=ONLY_API)
    stack.start()
    loaded = Stack.load(stack.state_dir)
    loaded.stop_service("api")  # a different object, like a recovery step would be
    with open(stack.log_file("api"), "ab") as log:
        replacement = subprocess.Popen(
            stack.command("api"),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        stack.pidfile("api").write_text(f"{replacement.pid}\n")
        wait_until(lambda: not refused(stack.health_url("api")), timeout=10, message="api not back")
        assert stack.pid("api") == replacement.pid
        stack.stop()
        assert replacement.wait(timeout=TIMEOUT) is not None
    finally:
        if replacement.poll() is None:
            replacement.kill()
            replacement.wait(timeout=TIMEOUT)


def test_start_refuses_a_taken_port(
    make_stack: Callable[..., Stack], ports: dict[str, int]
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        ports["api"] = squatter.getsockname()[1]
        stack = make_stack(ports=ports)
        with pytest.raises(PortInUseError, match=rf"port {ports['api']} for api"):
            stack.start()
    for name in SERVICE_NAMES:
        assert not stack.pidfile(name).exists()


def test_start_refuses_a_second_stack_in_the_same_state_dir(
    make_stack: Callable[..., Stack], ports: dict[str, int]
) -> None:
    first = make_stack(faults={"aux": {"down": None}, "api": {"down": None}})
    first.start()
    second = Stack(first.state_dir, ports=ports)
    with pytest.raises(StackAlreadyRunningError, match="already runs"):
        second.start()
    assert first.is_running("dashboard")


def test_start_names_the_service_that_died_and_shows_its_log(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    fake_python = tmp_path / "fake-python"
    fake_python.write_text("#!/bin/sh\necho 'boom: cannot import the app' >&2\nexit 3\n")
    fake_python.chmod(0o755)
    stack = make_stack(python=str(fake_python), faults={"aux": {"down": None}})
    with pytest.raises(ServiceStartError) as excinfo:
        stack.start(timeout=10)
    message = str(excinfo.value)
    assert "exited with code 3" in message
    assert "boom: cannot import the app" in message
    assert message.split()[0] in ("api", "dashboard")


def test_down_at_start_and_brought_back(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(faults={"dashboard": {"down": None}})
    stack.start()
    assert not stack.pidfile("dashboard").exists()
    assert refused(stack.health_url("dashboard"))
    assert requests.get(stack.health_url("api"), timeout=TIMEOUT).status_code == 200

    stack.start_service("dashboard")
    assert requests.get(stack.health_url("dashboard"), timeout=TIMEOUT).status_code == 200
    assert "down" not in stack.faults().get("dashboard", {})


def test_down_switched_live(stack: Stack) -> None:
    stack.set_fault("aux", "down")
    assert refused(stack.health_url("aux"))
    assert stack.faults()["aux"] == {"down": None}
    stack.clear_fault("aux", "down")
    assert requests.get(stack.health_url("aux"), timeout=TIMEOUT).status_code == 200


def test_context_manager_starts_and_stops(tmp_path: Path, ports: dict[str, int]) -> None:
    with Stack(tmp_path / "state", ports=ports, faults=ONLY_API) as stack:
        pid = stack.pid("api")
        assert requests.get(stack.health_url("api"), timeout=TIMEOUT).status_code == 200
    assert pid is not None
    assert not procs.is_running(pid)


def test_is_serve_command_requires_module_service_and_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    argv = ["/py", "-m", "afo_runbook.refstack.serve", "api", "--port", "1", "--state-dir"]
    assert procs.is_serve_command([*argv, str(state)], "api", state)
    assert procs.is_serve_command(["/py", *argv[1:-1], f"--state-dir={state}"], "api", state)
    assert not procs.is_serve_command([*argv, str(tmp_path / "other")], "api", state)
    assert not procs.is_serve_command([*argv, str(state)], "aux", state)
    assert not procs.is_serve_command(["sh", "-c", " ".join([*argv, str(state)])], "api", state)
    assert not procs.is_serve_command(["sleep", "60"], "api", state)
    # A relative --state-dir counts relative to the process's working directory.
    assert procs.is_serve_command([*argv, "state"], "api", state, cwd=tmp_path)
