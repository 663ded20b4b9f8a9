"""Judging real services right (runbook section 1 against the service it was written for):
conditions as data, SSE heartbeat semantics, the guard as one unit, probe errors kept apart,
plain transport errors, TLS, and no fragment of an echoed secret in any artifact.

Every target is real: the reference stack with the real service's behaviours as faults, or an
`http.server` on loopback (TLS with a certificate made by `openssl`)."""

from __future__ import annotations

import shlex
import shutil
import ssl
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SSE = "/api/thoughts/sse"


def sse_config(stack, **sse) -> dict:
    return {"url": f"{stack.urls['api']}{SSE}", "window": 3, **sse}


# -- 1.3: heartbeat semantics ----------------------------------------------------------------


def test_the_real_services_double_wrapped_one_shot_stream_is_not_a_heartbeat(
        stack, config_for, run_suite):
    """First bytes late, ONE event whose data is SSE framing, then the stream ends: the
    suite used to pass it as "first event 'message'"."""
    for fault, value in (("sse-late", 0.5), ("sse-double-wrapped", None),
                         ("sse-one-shot", None)):
        stack.set_fault("api", fault, value)
    config = config_for(sse=sse_config(stack, event="heartbeat"))
    result = run_suite("-m", "sse", "--runbook-config", str(config))
    assert result.failing() == {"sse": "heartbeat-failure"}
    message = result.check("sse")["message"]
    assert "no 'heartbeat' event: the server wraps its events twice" in message
    assert "stream ended after 1 event" in message
    event = result.check("sse")["evidence"]["events"][0]
    assert (event["event"], event["wrapped"], event["inner_event"]) == (
        "message", True, "heartbeat")


def test_without_an_event_expectation_a_wrapped_stream_passes_degraded(stack, config_for,
                                                                       run_suite):
    stack.set_fault("api", "sse-double-wrapped")
    result = run_suite("-m", "sse", "--runbook-config", str(config_for(sse=sse_config(stack))))
    assert result.rc == 0, result.output
    assert result.verdict["degraded"] == [{
        "key": "sse", "message": "sse: the server wraps its events twice: event 'message' "
        "carries SSE framing as its data (an inner event 'heartbeat')"}]


def test_min_events_two_fails_a_stream_that_ends_after_one(stack, config_for, run_suite):
    stack.set_fault("api", "sse-one-shot")
    config = config_for(sse=sse_config(stack, event="heartbeat", min_events=2))
    result = run_suite("-m", "sse", "--runbook-config", str(config))
    assert result.failing() == {"sse": "heartbeat-failure"}
    assert result.check("sse")["message"].endswith("stream ended after 1 event")
    stack.clear_fault("api")
    again = run_suite("-m", "sse", "--runbook-config", str(config))  # heartbeats every 1 s
    assert again.rc == 0, again.output
    assert [e["event"] for e in again.check("sse")["evidence"]["events"]] == ["heartbeat"] * 2


@pytest.mark.parametrize("fault", ["sse-gzip", "sse-bom", "sse-type-case"])
def test_valid_but_unusual_streams_pass_with_the_right_first_event(stack, config_for,
                                                                   run_suite, fault):
    """gzip although we asked for identity (RFC 9110 lets a server), a leading BOM (WHATWG:
    stripped), `Text/Event-Stream; charset=UTF-8` (media types are case-insensitive)."""
    stack.set_fault("api", fault)
    config = config_for(sse=sse_config(stack, event="heartbeat"))
    result = run_suite("-m", "sse", "--runbook-config", str(config))
    assert result.rc == 0, result.output
    evidence = result.check("sse")["evidence"]
    assert evidence["first_event"] == "heartbeat"
    assert (evidence.get("content_coding") == "gzip") == (fault == "sse-gzip")


# -- 1.1: conditions as data -----------------------------------------------------------------


def test_a_degraded_body_fails_its_json_condition_with_the_value(stack, config_dict,
                                                                 write_runbook, run_suite):
    stack.set_fault("api", "health-degraded")
    config = config_dict()
    config["health"][0].update(json={"status": "ok", "checks.db": "up"},
                               headers={"Content-Type": "application/json"})
    result = run_suite("-m", "health", "--runbook-config", str(write_runbook(config)))
    assert result.failing() == {"health[api]": "service-down"}
    assert result.check("health[api]")["message"] == (
        'health[api]: [BODY].status ("degraded") == "ok"; [BODY].checks.db ("down") == "up"')
    stack.clear_fault("api")
    del config["health"][0]["json"]["checks.db"]  # the healthy api reports no checks
    healthy = run_suite("-m", "health", "--runbook-config", str(write_runbook(config)))
    assert healthy.rc == 0, healthy.output


def test_every_condition_says_what_it_evaluated(stack, config_dict, write_runbook, run_suite):
    config = config_dict()
    config["health"][0].update(expect=[201, 204], contains="balanced",
                               headers={"x-served-by": "afo"})
    result = run_suite("-m", "health", "--runbook-config", str(write_runbook(config)))
    message = result.check("health[api]")["message"]
    assert message.startswith("health[api]: [STATUS] (200) in [201, 204]; "
                              "[HEADER x-served-by] (missing) contains \"afo\"; ")
    assert '[BODY] contains "balanced" (not in ' in message


def test_a_slow_200_is_degraded_and_green(stack, config_dict, write_runbook, run_suite):
    stack.set_fault("aux", "slow", 0.3)
    config = config_dict()
    config["health"][1]["max_latency_ms"] = 100
    result = run_suite("-m", "health", "--runbook-config", str(write_runbook(config)),
                       junit=True)
    assert result.rc == 0, result.output
    verdict = result.verdict
    assert verdict["decision"] == "monitor"
    [degraded] = verdict["degraded"]
    assert degraded["key"] == "health[aux]"
    assert degraded["message"].startswith("health[aux]: [RESPONSE_TIME] (")
    assert degraded["message"].endswith(" ms) <= 100 ms")
    assert "degraded: health[aux]: [RESPONSE_TIME]" in result.stdout  # the terminal
    assert "1 degraded" in result.stdout
    assert 'name="degraded"' in result.junit_path.read_text()  # JUnit
    html = next((result.json_path.parent / "reports").glob("observe-2*.html")).read_text()
    assert "[RESPONSE_TIME]" in html  # the evidence record


def test_a_missing_health_route_is_route_missing(stack, config_dict, write_runbook, run_suite):
    config = config_dict()
    config["health"][0]["url"] = f"{stack.urls['api']}/api/moved-health"
    result = run_suite("-m", "health", "--runbook-config", str(write_runbook(config)))
    assert result.failing() == {"health[api]": "route-missing"}
    assert result.verdict["decision"] == "escalate"


def test_route_moved_is_escalated_and_the_new_routes_are_green(stack, config_for, run_suite):
    stack.set_fault("api", "route-moved")
    old = run_suite("-m", "observe", "--runbook-config",
                    str(config_for(sse=sse_config(stack, event="heartbeat"))))
    assert set(old.failing().values()) == {"route-missing"}
    assert set(old.failing()) == {"guard[no-secret]", "guard[wrong-secret]",
                                  "guard[right-secret]", "sse"}
    assert old.verdict["decision"] == "escalate"  # never a rollback for a 404
    api = stack.urls["api"]
    moved = config_for(guard={"url": f"{api}/api/copilot/revalidate/status",
                              "env_file": str(stack.env_file)},
                       sse={"url": f"{api}/api/education/sse", "window": 3,
                            "event": "heartbeat"})
    new = run_suite("-m", "observe", "--runbook-config", str(moved))
    assert new.rc == 0, new.output


# -- probe errors: not the service failing ---------------------------------------------------

BROKEN_JUDGE = textwrap.dedent("""
    import afo_runbook.observe as observe

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the prober")

    observe.judge_health = broken  # an injected bug (at -p import: before any check starts)
""")


def test_an_exception_in_a_check_is_a_probe_error_and_recover_touches_nothing(
        stack, recovery_config, run_suite, tmp_path, env_for):
    (tmp_path / "broken_judge.py").write_text(BROKEN_JUDGE)
    before = stack.pidfile("api").read_text()
    result = run_suite("-m", "observe", "--recover", "-p", "broken_judge", "--runbook-config",
                       str(recovery_config()), env=env_for(PYTHONPATH=str(tmp_path)))
    verdict = result.verdict
    assert set(result.failing().values()) == {"probe-error"}
    assert {c["outcome"] for c in verdict["checks"] if c["group"] == "health"} == {"error"}
    assert {e["key"] for e in verdict["probe_errors"]} == {
        "health[api]", "health[aux]", "health[dashboard]"}
    assert "RuntimeError: a bug in the prober" in result.check("health[api]")["message"]
    assert verdict["decision"] == "escalate"
    assert verdict["recovery"]["outcome"] != "recovered"
    assert stack.pidfile("api").read_text() == before  # nothing was restarted
    assert result.rc == 6


# -- transport errors, TLS -------------------------------------------------------------------


class Answers(BaseHTTPRequestHandler):
    """200 `{"status": "ok"}` for everything; `/echo/N` (an open guard that echoes what it
    was sent) answers N bytes of padding, then the secret header's value, then all headers."""

    def do_GET(self) -> None:
        if self.path.startswith("/echo/"):
            pad = int(self.path.rsplit("/", 1)[1])
            sent = self.headers.get("X-Internal-Secret", "")
            body = b"x" * pad + sent.encode() + b"\n" + str(self.headers).encode()
            self.send_response(200)
        else:
            body = b'{"status": "ok"}'
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, valid 3 days (openssl, as in production)."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed for the TLS tests (tasks.py installs it)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(shlex.split(
        f"openssl req -x509 -newkey rsa:2048 -nodes -keyout {key} -out {cert} -days 3 "
        "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"), check=True,
        capture_output=True)
    return cert, key


def serve(tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def https_server(certificate) -> Iterator[str]:
    yield from serve(certificate)


@pytest.fixture
def http_server() -> Iterator[str]:
    yield from serve()


def test_a_self_signed_target_fails_with_the_plain_message(https_server, certificate,
                                                           write_runbook, run_suite):
    url = f"{https_server}/health"
    plain = run_suite("-m", "health", "--runbook-config",
                      str(write_runbook({"health": [{"name": "tls", "url": url}]})))
    assert plain.failing() == {"health[tls]": "service-down"}
    assert plain.check("health[tls]")["message"] == (
        f"tls: certificate verify failed: self-signed certificate ({url})")
    trusted = run_suite("-m", "health", "--runbook-config", str(write_runbook(
        {"health": [{"name": "tls", "url": url, "ca_file": str(certificate[0]),
                     "cert_min_days": 14}]})))
    assert trusted.rc == 0, trusted.output
    facts = trusted.check("health[tls]")["evidence"]["tls"]
    assert facts["verified"] is True
    assert 2 < facts["days_left"] <= 3
    [degraded] = trusted.verdict["degraded"]  # expires in 3 days, 14 wanted
    assert "[CERTIFICATE] expires " in degraded["message"]
    assert degraded["message"].endswith("< cert_min_days 14")
    insecure = run_suite("-m", "health", "--runbook-config", str(write_runbook(
        {"health": [{"name": "tls", "url": url, "insecure": True}]})))
    assert insecure.rc == 0, insecure.output
    assert insecure.check("health[tls]")["evidence"]["tls"]["insecure"] is True


@pytest.mark.parametrize(("url", "message"), [
    ("http://afo.invalid/health", "dns: no such host afo.invalid (http://afo.invalid/health)"),
    ("http://127.0.0.1:9/health", "refused: connection refused (http://127.0.0.1:9/health)"),
])
def test_transport_errors_read_plainly(url, message, write_runbook, run_suite):
    result = run_suite("-m", "health", "--runbook-config",
                       str(write_runbook({"health": [{"name": "x", "url": url}]})))
    assert result.check("health[x]")["message"] == message
    assert "Max retries" not in result.output
    assert "Pool" not in result.output


def test_a_url_with_a_space_is_a_config_error(write_runbook, run_suite):
    config = write_runbook({"health": [{"name": "api",
                                        "url": "http://localhost:8010/api/ health"}]})
    result = run_suite("-m", "health", "--runbook-config", str(config), json_out=False)
    assert result.rc == 4
    assert (f"{config}: health[1].url: has a character not allowed in a URL (' ' at position "
            "27; percent-encode it)") in result.output


# -- the secret in excerpts ------------------------------------------------------------------


def fragments(secret: str, size: int = 8) -> set[str]:
    return {secret[i:i + size] for i in range(len(secret) - size + 1)}


@pytest.mark.parametrize("inside", [4, 9, 14, 24])
def test_no_fragment_of_an_echoed_secret_in_any_artifact(http_server, suite_env_file,
                                                         write_runbook, run_suite, tmp_path,
                                                         inside: int):
    """An open guard echoes the request headers; the excerpt is cut at 2,048 bytes with the
    first `inside` characters of the secret before the cut. Redacting after the cut let 24
    of 28 characters escape; no fragment of 8 or more may reach any artifact."""
    secret = suite_env_file.read_text().strip().split("=", 1)[1]
    config = write_runbook({"guard": {"url": f"{http_server}/echo/{2048 - inside}",
                                      "env_file": str(suite_env_file)}})
    result = run_suite("-m", "guard", "--runbook-config", str(config), junit=True)
    assert result.failing()["guard[no-secret]"] == "guard-open"
    artifacts = [result.json_path, result.junit_path, *(tmp_path / "reports").glob("*")]
    texts = {path.name: path.read_text(errors="replace") for path in artifacts
             if path.is_file()}
    texts["terminal"] = result.output
    assert len(texts) >= 5  # verdict JSON, JUnit, HTML and its latest copies, the terminal
    leaked = {name for name, text in texts.items()
              if any(fragment in text for fragment in fragments(secret))}
    assert not leaked, f"a fragment of the secret in {sorted(leaked)}"
    excerpt = result.check("guard[right-secret]")["evidence"]["body_excerpt"]
    assert excerpt.startswith("x" * 1000)  # the echo was there to leak
    if inside >= 8:
        assert excerpt.endswith("[REDACTED]")


def test_an_expired_certificate_fails_and_one_expiring_soon_is_degraded():
    """The judgement itself, on what the probe saw (openssl cannot make an expired one)."""
    from afo_runbook.config import HealthTarget, Tls
    from afo_runbook.observe import judge_health
    from afo_runbook.probes.http import HttpSeen

    target = HealthTarget("tls", "https://127.0.0.1:8443/health", tls=Tls(cert_min_days=14))

    def seen(days_left: float) -> HttpSeen:
        return HttpSeen(url=target.url, status=200, latency_s=0.01,
                        tls={"verified": True, "not_after": "2026-11-30T00:00:00Z",
                             "days_left": days_left})

    expired = judge_health(target, seen(-1.5), 5)
    assert (expired.ok, expired.symptom) == (False, "service-down")
    assert expired.message == ("health[tls]: [CERTIFICATE] expired 2026-11-30T00:00:00Z "
                               "(-1.5 days)")
    soon = judge_health(target, seen(3), 5)
    assert soon.ok
    assert soon.degraded == ["health[tls]: [CERTIFICATE] expires 2026-11-30T00:00:00Z "
                             "(in 3 days) < cert_min_days 14"]
    assert judge_health(target, seen(30), 5).degraded == []


def test_every_target_unreachable_from_here_is_our_network_not_the_services():
    from afo_runbook.controller import _our_network_down
    from afo_runbook.verdict import CheckRecord

    def record(key: str, error: str, outcome: str = "failed") -> CheckRecord:
        return CheckRecord(id=key, key=key, group="health", outcome=outcome,
                           symptom="service-down", duration_s=0.0, message=f"{key}: down",
                           evidence={"error_class": "unreachable", "error": error})

    ours = {k: record(k, "network is unreachable") for k in ("health[a]", "health[b]")}
    _our_network_down(ours)
    assert {(r.symptom, r.outcome) for r in ours.values()} == {("probe-error", "error")}
    mixed = {"health[a]": record("health[a]", "network is unreachable"),
             "health[b]": record("health[b]", "connection refused")}
    _our_network_down(mixed)  # one target refuses: the network works, a service is down
    assert {r.symptom for r in mixed.values()} == {"service-down"}
    one_up = {"health[a]": record("health[a]", "network is unreachable"),
              "health[b]": record("health[b]", "", outcome="passed")}
    _our_network_down(one_up)
    assert one_up["health[a]"].symptom == "service-down"
