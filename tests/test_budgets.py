"""Hostile targets: a hanging, resetting, trickling or enormous target is a clean failure
inside its budget, with bounded memory, never a hung run or a traceback wall."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from afo_runbook.refstack.rawservers import RawServer

FAST = {"observe": 30, "health": 4, "guard": 4, "sse": 4, "containers": 4}


def everything_at(url: str, env_file: object) -> dict:
    """Every section-1 check pointed at one target."""
    return {
        "budgets": FAST,
        "health": [{"name": n, "url": f"{url}/health-{n}"} for n in ("a", "b", "c")],
        "guard": {"url": f"{url}/guard", "env_file": str(env_file)},
        "sse": {"url": f"{url}/sse", "window": 2},
    }


def all_at_once(result) -> None:
    """Every hung check started before the first of them gave up: none waited for another."""
    timing = [c["evidence"]["timing"] for c in result.verdict["checks"]
              if c["outcome"] == "failed"]
    assert len(timing) >= 5
    assert max(t["started_s"] for t in timing) < min(t["finished_s"] for t in timing), timing


def test_tarpit_api_fails_cleanly_inside_the_budget(stack, config_for, run_suite):
    stack.set_fault("api", "tarpit")
    config = config_for(budgets=FAST, sse={"url": f"{stack.urls['api']}/api/thoughts/sse",
                                           "window": 2})
    result = run_suite("-m", "observe", "--runbook-config", str(config))
    assert result.rc == 1
    failing = result.failing()
    assert set(failing) == {"health[api]", "guard[no-secret]", "guard[wrong-secret]",
                            "guard[right-secret]", "sse"}
    assert set(failing.values()) == {"service-down"}
    assert result.check("health[api]")["evidence"]["error_class"] == "timeout"
    all_at_once(result)
    # health and guard wait half their 4 s budget, the SSE window is 2 s: one after another
    # that is 14 s; at once about 2 s (a wide margin for a loaded machine)
    assert result.verdict["duration_s"] < 12
    assert "Traceback" not in result.output
    assert "Timeout (>" not in result.output  # our own timeouts fired, not the backstop


def test_reset_api_is_service_down_with_its_cause(stack, config_for, run_suite):
    stack.set_fault("api", "reset")
    result = run_suite("-m", "observe", "-n", "0", "--runbook-config", str(config_for()))
    assert result.verdict["symptoms"] == ["service-down"]
    assert result.check("health[api]")["evidence"]["error_class"] == "reset"
    assert "reset" in result.check("health[api]")["message"]


@pytest.mark.parametrize("fault", ["huge-body", "health-huge-chunked"])
def test_a_huge_healthy_page_is_healthy_with_bounded_memory(stack, config_for, run_suite, fault):
    """The runbook's criterion is the status: a 200 of 200 MiB (with Content-Length or
    chunked) passes, and only an excerpt is ever read."""
    stack.set_fault("api", fault, 200)
    result = run_suite("-m", "health", "--runbook-config", str(config_for()))
    peak_mib = result.max_rss_kib / 1024  # this run alone
    assert result.rc == 0, result.output
    evidence = result.check("health[api]")["evidence"]
    assert evidence["status"] == 200
    assert evidence["bytes"] <= 64 * 1024  # an excerpt, never the body
    assert peak_mib < 150, f"the pytest run peaked at {peak_mib:.0f} MiB"


@pytest.mark.parametrize("fault", ["huge-body", "health-huge-chunked"])
def test_a_body_condition_over_max_body_fails_that_condition(stack, config_dict, write_runbook,
                                                             run_suite, fault):
    stack.set_fault("api", fault, 200)
    config = config_dict()
    config["health"][0]["json"] = {"status": "ok"}
    result = run_suite("-m", "health", "--runbook-config", str(write_runbook(config)))
    peak_mib = result.max_rss_kib / 1024
    assert result.failing() == {"health[api]": "service-down"}
    message = result.check("health[api]")["message"]
    assert message == ("health[api]: [BODY].status cannot be evaluated: the body is over "
                       "max_body (1048576 bytes)")
    assert result.check("health[api]")["evidence"]["bytes"] <= 1024 * 1024 + 64 * 1024
    assert peak_mib < 150, f"the pytest run peaked at {peak_mib:.0f} MiB"


@pytest.mark.parametrize(("mode", "error_class"),
                         [("hang", "timeout"), ("reset", "reset"), ("garbage", "not-http")])
def test_every_target_on_a_raw_server(mode, error_class, write_runbook, suite_env_file,
                                      run_suite):
    with RawServer(mode) as server:
        config = write_runbook(everything_at(server.url, suite_env_file))
        result = run_suite("-m", "observe", "--runbook-config", str(config))
    assert result.rc == 1
    assert set(result.failing().values()) == {"service-down"}
    assert len(result.failing()) == 7
    assert result.check("health[a]")["evidence"]["error_class"] == error_class
    if mode == "hang":
        all_at_once(result)
        # one after another that is 7 waits of 2 s; at once about 2 s
        assert result.verdict["duration_s"] < 12
    assert "Traceback" not in result.output


class DripServer:
    """Answers a status line, then one header byte every 0.2 s forever: a read timeout per
    recv never fires, so only a deadline (or the pytest-timeout backstop) stops a client."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        conns: list[socket.socket] = []
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()  # the 0.2 s accept timeout paces the drip
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Drip: ")
                conns.append(conn)
            except TimeoutError:
                pass
            for conn in conns:
                try:
                    conn.sendall(b"a")
                except OSError:
                    conns.remove(conn)
        for conn in conns:
            conn.close()

    def __enter__(self) -> DripServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def drip() -> Iterator[DripServer]:
    with DripServer() as server:
        yield server


def test_trickling_target_is_stopped_by_our_deadline_not_the_backstop(drip, write_runbook,
                                                                       suite_env_file,
                                                                       run_suite):
    config = write_runbook(everything_at(drip.url, suite_env_file))
    result = run_suite("-m", "observe", "-n", "0", "--runbook-config", str(config))
    assert result.rc == 1
    assert set(result.failing().values()) == {"service-down"}
    assert "no complete answer within" in result.check("health[a]")["message"]
    assert "Timeout (>" not in result.output
    assert "Traceback" not in result.output
    all_at_once(result)
    assert result.verdict["duration_s"] < 15  # one after another: 7 limits of 3 s


def test_spent_observe_budget_is_reported(write_runbook, suite_env_file, run_suite):
    with RawServer("hang") as server:
        config = everything_at(server.url, suite_env_file)
        # every call gets at least 0.5 s (MIN_CALL_TIMEOUT), counted from after start-up:
        # the whole 0.5 s budget is always spent before the hung checks give up
        config["budgets"] = {"observe": 0.5, "health": 0.5, "guard": 0.5, "sse": 0.5,
                             "containers": 0.5}
        config["sse"]["window"] = 0.45
        result = run_suite("-m", "observe", "-n", "0", "--runbook-config",
                           str(write_runbook(config)))
    verdict = result.verdict
    assert verdict["over_budget"] is True
    assert verdict["duration_s"] > verdict["observe_budget_s"]
    assert "OVER BUDGET" in result.stdout
