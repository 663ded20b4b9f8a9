"""The faults that teach the reference stack the real AFO service's behaviours, observed on the
wire with http.client (not our probes): exact bytes, headers and where responses end."""

from __future__ import annotations

import contextlib
import http.client
import json
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from afo_runbook.refstack.cli import main
from afo_runbook.refstack.faults import FAULTS, fault_number, parse_fault_spec, read_faults
from afo_runbook.refstack.services import (
    GUARD_PATH,
    MOVED_GUARD_PATH,
    MOVED_SSE_PATH,
    SECRET_HEADER,
    SERVICE_NAMES,
    SERVICES,
    SSE_PATH,
)
from afo_runbook.refstack.stack import Stack
from afo_runbook.refstack.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 5
MIB = 1024 * 1024
# Measured on the real service: one event whose data lines are SSE framing themselves.
REAL_EVENT = b"data: event: heartbeat\r\ndata: data: ping\r\ndata: \r\ndata: \r\n\r\n"
BOM = b"\xef\xbb\xbf"
HEARTBEAT = b"event: heartbeat\ndata: {"
NOT_FOUND = b'{"detail":"Not Found"}'
API_HEALTH = SERVICES["api"].health_path
NEW_FAULTS = {
    "sse-double-wrapped": None, "sse-one-shot": None, "route-moved": None,
    "health-degraded": None, "sse-gzip": None, "health-huge-chunked": 200, "sse-bom": None,
    "sse-type-case": None,
}  # fmt: skip


@contextlib.contextmanager
def connect(stack: Stack, service: str = "api") -> Iterator[http.client.HTTPConnection]:
    conn = http.client.HTTPConnection("127.0.0.1", stack.ports[service], timeout=TIMEOUT)
    try:
        yield conn
    finally:
        conn.close()


def request(
    conn: http.client.HTTPConnection, path: str, headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    # Always ask for identity explicitly: sse-gzip must not depend on what the client asked.
    conn.request("GET", path, headers={"Accept-Encoding": "identity", **(headers or {})})
    return conn.getresponse()


def read_until(
    resp: http.client.HTTPResponse, done: Callable[[bytes], bool], timeout: float = TIMEOUT
) -> bytes:
    """Body bytes as they arrive (chunked framing removed) until `done(data)` holds."""
    deadline = time.monotonic() + timeout
    data = b""
    while not done(data):
        assert time.monotonic() < deadline, f"gave up waiting; got {data!r}"
        chunk = resp.read1(64 * 1024)
        assert chunk, f"the stream ended early; got {data!r}"
        data += chunk
    return data


def get_all(stack: Stack, path: str, service: str = "api", **headers: str) -> tuple[int, bytes]:
    with connect(stack, service) as conn:
        resp = request(conn, path, headers)
        return resp.status, resp.read()


# ----------------------------------------------------------------------------- catalog / CLI


def test_new_faults_are_in_the_catalog_with_help_and_defaults() -> None:
    assert set(FAULTS) >= set(NEW_FAULTS)
    for name, default in NEW_FAULTS.items():
        assert FAULTS[name].help, name
        assert FAULTS[name].default == default, name
    assert FAULTS["health-degraded"].services == SERVICE_NAMES
    assert FAULTS["health-huge-chunked"].services == SERVICE_NAMES
    for name in NEW_FAULTS.keys() - {"health-degraded", "health-huge-chunked"}:
        assert FAULTS[name].services == ("api",), name
    assert fault_number({"health-huge-chunked": None}, "health-huge-chunked") == 200
    assert parse_fault_spec("dashboard:health-huge-chunked=5") == (
        "dashboard", "health-huge-chunked", 5)
    assert parse_fault_spec("aux:health-degraded") == ("aux", "health-degraded", None)
    for bad in ("api:sse-bom=3", "aux:sse-gzip", "dashboard:route-moved",
                "api:health-huge-chunked=x", "api:sse-double-wrapped=1"):  # fmt: skip
        with pytest.raises(ValueError):
            parse_fault_spec(bad)


def test_cli_switches_the_new_faults(stack: Stack, capsys: pytest.CaptureFixture) -> None:
    sd = ["--state-dir", str(stack.state_dir)]
    for name in ("sse-late=5", "sse-double-wrapped", "sse-one-shot", "sse-gzip", "sse-bom",
                 "sse-type-case", "route-moved", "health-degraded", "health-huge-chunked=2"):
        assert main(["fault", "api", name, *sd]) == 0, name
    assert main(["fault", "dashboard", "health-degraded", *sd]) == 0
    assert read_faults(stack.state_dir) == {
        "api": {"sse-late": 5, "sse-double-wrapped": None, "sse-one-shot": None,
                "sse-gzip": None, "sse-bom": None, "sse-type-case": None, "route-moved": None,
                "health-degraded": None, "health-huge-chunked": 2},
        "dashboard": {"health-degraded": None},
    }  # fmt: skip
    assert main(["fault", "api", "sse-gzip", "--off", *sd]) == 0
    assert "sse-gzip" not in read_faults(stack.state_dir)["api"]
    capsys.readouterr()
    assert main(["fault", "aux", "sse-double-wrapped", *sd]) == 2  # a usage error
    assert "does not apply" in capsys.readouterr().err
    assert main(["fault", "api", "sse-bom=1", *sd]) == 2
    assert "takes no value" in capsys.readouterr().err


# ----------------------------------------------------------------------------- SSE


def test_sse_double_wrapped_sends_the_exact_real_bytes_for_every_event(stack: Stack) -> None:
    stack.set_fault("api", "sse-double-wrapped")
    with connect(stack) as conn:
        resp = request(conn, SSE_PATH)
        assert resp.status == 200
        assert resp.getheader("content-type", "").startswith("text/event-stream")
        data = read_until(resp, lambda d: len(d) >= 2 * len(REAL_EVENT))
    assert data[: 2 * len(REAL_EVENT)] == REAL_EVENT * 2
    wait_until(lambda: "heartbeat sent" in stack.log_file("api").read_text(), timeout=5,
               message="the double-wrapped heartbeats are not logged")


def test_sse_one_shot_sends_one_event_and_completes_the_response(stack: Stack) -> None:
    stack.set_fault("api", "sse-one-shot")
    with connect(stack) as conn:
        resp = request(conn, SSE_PATH)
        assert resp.status == 200
        assert resp.getheader("transfer-encoding") == "chunked"
        body = resp.read()  # returns only once the terminating chunk came
        assert resp.isclosed()
        assert body.startswith(HEARTBEAT)
        assert body.endswith(b"}\n\n")
        assert body.count(b"event:") == 1
        # The response ended cleanly: the same keep-alive connection serves the next request.
        again = request(conn, API_HEALTH)
        assert again.status == 200
        assert json.loads(again.read())["status"] == "ok"


def test_late_double_wrapped_one_shot_is_the_real_service(stack: Stack) -> None:
    """sse-late=N + sse-double-wrapped + sse-one-shot: N seconds of nothing after the
    headers, then exactly the real service's one event, then the end of the response."""
    stack.set_fault("api", "sse-late", 1)
    stack.set_fault("api", "sse-double-wrapped")
    stack.set_fault("api", "sse-one-shot")
    status, body = get_all(stack, SSE_PATH)
    assert status == 200
    assert body == REAL_EVENT

    stack.set_fault("api", "sse-late", 30)  # the first bytes are still far off
    with connect(stack) as conn:
        resp = request(conn, SSE_PATH)
        assert resp.status == 200  # headers at once, as the real service
        assert conn.sock is not None
        conn.sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            resp.read1(1)


def test_sse_gzip_compresses_every_event_as_it_is_made(stack: Stack) -> None:
    stack.set_fault("api", "sse-gzip")
    with connect(stack) as conn:
        resp = request(conn, SSE_PATH)  # asked for identity
        assert resp.status == 200
        assert resp.getheader("content-encoding") == "gzip"
        assert resp.getheader("content-type", "").startswith("text/event-stream")
        inflate = zlib.decompressobj(wbits=31)
        raw = b""
        text = b""
        deadline = time.monotonic() + TIMEOUT
        while text.count(b"\n\n") < 2:  # two whole events, while the stream is still open
            assert time.monotonic() < deadline, f"gave up waiting; inflated {text!r}"
            chunk = resp.read1(64 * 1024)
            assert chunk, "the stream ended early"
            raw += chunk
            text += inflate.decompress(chunk)
    assert raw.startswith(b"\x1f\x8b")  # a gzip member
    assert HEARTBEAT not in raw
    events = text.split(b"\n\n")[:2]
    assert all(event.startswith(HEARTBEAT) for event in events), text
    assert not inflate.eof  # the member stays open while the stream does


def test_sse_gzip_one_shot_finishes_the_gzip_member(stack: Stack) -> None:
    stack.set_fault("api", "sse-gzip")
    stack.set_fault("api", "sse-one-shot")
    stack.set_fault("api", "sse-double-wrapped")
    status, body = get_all(stack, SSE_PATH)
    assert status == 200
    inflate = zlib.decompressobj(wbits=31)
    assert inflate.decompress(body) == REAL_EVENT
    assert inflate.eof  # gzip trailer (CRC, size) present
    assert inflate.unused_data == b""


def test_sse_bom_comes_first_then_normal_heartbeats(stack: Stack) -> None:
    stack.set_fault("api", "sse-bom")
    with connect(stack) as conn:
        resp = request(conn, SSE_PATH)
        assert resp.status == 200
        data = read_until(resp, lambda d: d.count(b"event: heartbeat") >= 2)
    assert data[:3] == BOM
    assert data[3:].startswith(HEARTBEAT)
    assert data.count(BOM) == 1


def test_sse_type_case_sends_a_mixed_case_content_type(stack: Stack) -> None:
    stack.set_fault("api", "sse-type-case")
    with connect(stack) as conn:
        resp = request(conn, SSE_PATH)
        assert resp.status == 200
        assert resp.getheader("content-type") == "Text/Event-Stream; charset=UTF-8"
        # A correct parser of media types (case-insensitive) sees an event stream.
        assert resp.headers.get_content_type() == "text/event-stream"
        assert resp.headers.get_content_charset() == "utf-8"
        data = read_until(resp, lambda d: HEARTBEAT in d)
    assert data.startswith(HEARTBEAT)


# ----------------------------------------------------------------------------- routes


def test_route_moved_serves_the_new_paths_and_404s_the_old(stack: Stack, secret: str) -> None:
    _, unknown = get_all(stack, "/no/such/route")
    assert unknown == NOT_FOUND
    # Without the fault: the old paths work, the new ones do not exist.
    assert get_all(stack, MOVED_GUARD_PATH) == (404, NOT_FOUND)
    assert get_all(stack, MOVED_SSE_PATH) == (404, NOT_FOUND)
    assert get_all(stack, GUARD_PATH, **{SECRET_HEADER: secret})[0] == 200

    stack.set_fault("api", "route-moved")
    for path in (GUARD_PATH, SSE_PATH):
        with connect(stack) as conn:
            resp = request(conn, path, {SECRET_HEADER: secret})
            assert resp.status == 404, path
            assert resp.getheader("content-type") == "application/json"
            assert resp.read() == NOT_FOUND
    # The guard still guards at its new place.
    assert get_all(stack, MOVED_GUARD_PATH)[0] == 401
    assert get_all(stack, MOVED_GUARD_PATH, **{SECRET_HEADER: "wrong"})[0] == 401
    status, body = get_all(stack, MOVED_GUARD_PATH, **{SECRET_HEADER: secret})
    assert status == 200
    assert json.loads(body)["status"] == "ok"
    with connect(stack) as conn:
        resp = request(conn, MOVED_SSE_PATH)
        assert resp.status == 200
        assert resp.getheader("content-type", "").startswith("text/event-stream")
        assert read_until(resp, lambda d: HEARTBEAT in d).startswith(HEARTBEAT)
    assert get_all(stack, API_HEALTH)[0] == 200  # health did not move

    stack.clear_fault("api", "route-moved")
    assert get_all(stack, MOVED_SSE_PATH) == (404, NOT_FOUND)
    assert get_all(stack, GUARD_PATH, **{SECRET_HEADER: secret})[0] == 200


def test_route_moved_combines_into_the_real_service(stack: Stack) -> None:
    for fault, value in (("route-moved", None), ("sse-late", 0.2), ("sse-double-wrapped", None),
                         ("sse-one-shot", None)):  # fmt: skip
        stack.set_fault("api", fault, value)
    assert get_all(stack, SSE_PATH) == (404, NOT_FOUND)
    assert get_all(stack, MOVED_SSE_PATH) == (200, REAL_EVENT)


# ----------------------------------------------------------------------------- health


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_health_degraded_is_200_with_degraded_json(stack: Stack, service: str) -> None:
    stack.set_fault(service, "health-degraded")
    with connect(stack, service) as conn:
        resp = request(conn, SERVICES[service].health_path)
        assert resp.status == 200
        assert resp.getheader("content-type") == "application/json"
        body = json.loads(resp.read())
    assert body == {"status": "degraded", "service": service,
                    "checks": {"db": "down", "cache": "up"}}  # fmt: skip
    stack.clear_fault(service, "health-degraded")
    status, ok = get_all(stack, SERVICES[service].health_path, service)
    assert status == 200
    assert b"degraded" not in ok


def vm_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_health_huge_chunked_has_no_content_length(stack: Stack) -> None:
    stack.set_fault("api", "health-huge-chunked")  # default: 200 MiB
    with connect(stack) as conn:
        resp = request(conn, API_HEALTH)
        assert resp.status == 200
        assert resp.getheader("content-length") is None
        assert resp.getheader("transfer-encoding") == "chunked"
        assert resp.getheader("content-type") == "application/json"
        head = resp.read(4 * MIB)  # a few MB of 200, then hang up
    assert len(head) == 4 * MIB
    opening = b'{"status":"ok","service":"api"}'
    assert head.startswith(opening)
    assert head[len(opening):].strip(b" ") == b""  # JSON padded with whitespace
    api_pid = stack.pid("api")
    assert api_pid is not None
    assert vm_rss_mib(api_pid) < 150, "the body was built in memory"


def test_health_huge_chunked_small_is_exact_and_combines_with_degraded(stack: Stack) -> None:
    stack.set_fault("dashboard", "health-huge-chunked", 1)
    stack.set_fault("dashboard", "health-degraded")
    with connect(stack, "dashboard") as conn:
        resp = request(conn, SERVICES["dashboard"].health_path)
        assert resp.getheader("content-length") is None
        body = resp.read()
    assert len(body) == MIB
    assert json.loads(body)["status"] == "degraded"
