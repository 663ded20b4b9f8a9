"""Connection- and health-level faults, switched live and observed with requests."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import requests

from afo_runbook.refstack.faults import FAULTS, fault_number, parse_fault_spec, read_faults
from afo_runbook.refstack.services import SERVICE_NAMES
from afo_runbook.refstack.stack import Stack
from afo_runbook.refstack.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 5
MIB = 1024 * 1024


def caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Is `kind` anywhere in the exception's chain (causes, contexts, wrapped args)?"""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, kind):
            return True
        todo += [item.__cause__, item.__context__, *item.args]
    return False


def vm_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_health_500_switched_live_and_logged(stack: Stack, service: str) -> None:
    url = stack.health_url(service)
    stack.set_fault(service, "health-500")
    assert requests.get(url, timeout=TIMEOUT).status_code == 500
    wait_until(
        lambda: "ERROR" in stack.log_file(service).read_text(),
        timeout=5,
        message=f"no ERROR line in {service}'s log",
    )
    stack.clear_fault(service, "health-500")
    assert requests.get(url, timeout=TIMEOUT).status_code == 200


def test_slow_delays_every_route(stack: Stack) -> None:
    stack.set_fault("aux", "slow", 1)
    t0 = time.monotonic()
    assert requests.get(stack.health_url("aux"), timeout=TIMEOUT).status_code == 200
    assert time.monotonic() - t0 >= 1.0
    assert requests.get(stack.urls["aux"] + "/nope", timeout=TIMEOUT).status_code == 404
    assert time.monotonic() - t0 >= 2.0

    stack.clear_fault("aux", "slow")
    t0 = time.monotonic()
    assert requests.get(stack.health_url("aux"), timeout=TIMEOUT).status_code == 200
    assert time.monotonic() - t0 < 0.5


def test_tarpit_accepts_and_never_answers(stack: Stack) -> None:
    stack.set_fault("dashboard", "tarpit")
    with pytest.raises(requests.ReadTimeout):
        requests.get(stack.health_url("dashboard"), timeout=(2, 0.5))
    # Not even a status line: the raw socket stays silent.
    with socket.create_connection(("127.0.0.1", stack.ports["dashboard"]), timeout=2) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: dashboard\r\n\r\n")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(1)

    stack.clear_fault("dashboard", "tarpit")
    assert requests.get(stack.health_url("dashboard"), timeout=TIMEOUT).status_code == 200


def test_reset_gives_a_connection_reset_not_a_500(stack: Stack) -> None:
    stack.set_fault("api", "reset")
    for path in ("/api/health", "/api/revalidate/status"):
        with pytest.raises(requests.ConnectionError) as excinfo:
            requests.get(stack.urls["api"] + path, timeout=TIMEOUT)
        assert caused_by(excinfo.value, ConnectionResetError), repr(excinfo.value)

    stack.clear_fault("api", "reset")
    assert requests.get(stack.health_url("api"), timeout=TIMEOUT).status_code == 200


def test_huge_body_is_streamed_with_its_full_content_length(stack: Stack) -> None:
    stack.set_fault("api", "huge-body")  # default: 200 MiB
    with requests.get(stack.health_url("api"), stream=True, timeout=TIMEOUT) as resp:
        assert resp.status_code == 200
        assert int(resp.headers["content-length"]) == 200 * MIB
        head = resp.raw.read(1024)
    assert head.startswith(b'{"status":"ok"')
    api_pid = stack.pid("api")
    assert api_pid is not None
    assert vm_rss_mib(api_pid) < 150, "the body was built in memory"


def test_huge_body_small_is_exact_and_still_json(stack: Stack) -> None:
    stack.set_fault("aux", "huge-body", 1)
    resp = requests.get(stack.health_url("aux"), timeout=TIMEOUT)
    assert len(resp.content) == int(resp.headers["content-length"]) == MIB
    assert resp.json()["status"] == "ok"  # trailing whitespace keeps it valid JSON
    stack.clear_fault("aux")
    assert len(requests.get(stack.health_url("aux"), timeout=TIMEOUT).content) < 100


def test_faults_file_is_plain_json(stack: Stack) -> None:
    stack.set_fault("api", "slow", 3)
    stack.set_fault("api", "guard-open")
    data = json.loads((stack.state_dir / "faults.json").read_text())
    assert data == {"api": {"slow": 3, "guard-open": None}}
    stack.clear_fault("api", "slow")
    assert read_faults(stack.state_dir) == {"api": {"guard-open": None}}


def test_fault_specs_are_parsed_and_validated() -> None:
    assert parse_fault_spec("api:slow=3") == ("api", "slow", 3)
    assert parse_fault_spec("api:sse-late=0.5") == ("api", "sse-late", 0.5)
    assert parse_fault_spec("aux:health-500") == ("aux", "health-500", None)
    for bad in ("api", "api:", "nope:slow", "api:nope", "aux:guard-open", "api:slow=x",
                "api:tarpit=3", "api:slow=-1"):  # fmt: skip
        with pytest.raises(ValueError):
            parse_fault_spec(bad)
    assert fault_number({"slow": None}, "slow") == 3
    assert fault_number({"huge-body": None}, "huge-body") == 200
    assert fault_number({"sse-late": None}, "sse-late") == 15
    assert set(FAULTS) >= {"tarpit", "reset", "down", "sse-garbage"}
