"""Runbook section 1's judges, fed what a probe saw (`HttpSeen`, `SseSeen`) directly.

Each judge turns one observation into a check result naming one symptom. The rules the
verdict rests on: an unreachable target is `service-down`, never a security or heartbeat
symptom; a 404 is a missing route (`route-missing`), never a secret symptom; only a guard
that answered `allow` to a wrong or missing secret is `guard-open`; and the right secret's
refusal is `secret-rejected` only while the guard refuses strangers too.
"""

from __future__ import annotations

from typing import Any

import pytest

from afo_runbook import observe
from afo_runbook.config import GuardConfig, HealthTarget, SseConfig, Tls
from afo_runbook.observe import (
    GUARD_CASES,
    guard_request,
    judge_guard,
    judge_guard_all,
    judge_health,
    judge_sse,
    wrong_secret,
)
from afo_runbook.probes.http import HttpSeen
from afo_runbook.probes.sse import SseEvent, SseSeen
from afo_runbook.results import CheckResult
from afo_runbook.secret import Secret

URL = "http://127.0.0.1:8010/api/health"
HEALTH = HealthTarget("api", URL)
GUARD = GuardConfig("http://127.0.0.1:8010/api/revalidate/status")
SSE = SseConfig("http://127.0.0.1:8010/api/thoughts/sse", window=5)
SENT = "a random wrong value"
TIMEOUT = 1.23456  # shown as 1.23


def answered(status: int, url: str = URL, **seen: Any) -> HttpSeen:
    facts: dict[str, Any] = {"latency_s": 0.0031, "elapsed_s": 0.0042,
                             "content_type": "application/json", "bytes_read": 15, **seen}
    return HttpSeen(url=url, status=status, **facts)


def unreachable(url: str = URL, error_class: str = "refused",
                error: str = "connection refused") -> HttpSeen:
    return HttpSeen(url=url, error_class=error_class, error=error, elapsed_s=0.0123)


def outcome(result: CheckResult) -> tuple[str, str, bool, str | None]:
    return (result.key, result.group, result.ok, result.symptom)


# -- 1.1 health ------------------------------------------------------------------------------


def health(seen: HttpSeen, target: HealthTarget = HEALTH, **more: Any) -> CheckResult:
    """Judge, and check the evidence every health result carries, whatever the verdict."""
    result = judge_health(target, seen, TIMEOUT)
    expected = {**seen.evidence(), "expect": list(target.expect), "timeout_s": 1.23, **more}
    assert {k: v for k, v in result.evidence.items() if k != "conditions"} == expected
    return result


def test_health_passes_on_the_expected_status() -> None:
    result = health(answered(200))
    assert outcome(result) == ("health[api]", "health", True, None)
    assert result.message == f"{URL} answered 200 in 3.1 ms"
    assert result.evidence["conditions"] == "all hold"
    assert result.degraded == []


def test_health_expects_what_the_config_says() -> None:
    target = HealthTarget("aux", "http://127.0.0.1:8001/health", expect=(200, 204))
    assert health(answered(204, target.url), target).ok
    result = health(answered(500, target.url), target)
    assert outcome(result) == ("health[aux]", "health", False, "service-down")
    assert result.message == "health[aux]: [STATUS] (500) in [200, 204]"
    assert result.evidence["conditions"] == ["[STATUS] (500) in [200, 204]"]
    single = health(answered(503), HEALTH)
    assert single.message == "health[api]: [STATUS] (503) == 200"


def test_health_unreachable_is_service_down() -> None:
    result = health(unreachable())
    assert outcome(result) == ("health[api]", "health", False, "service-down")
    assert result.message == f"refused: connection refused ({URL})"
    assert "conditions" not in result.evidence


def test_a_404_is_a_missing_route_unless_expected() -> None:
    result = health(answered(404))
    assert outcome(result) == ("health[api]", "health", False, "route-missing")
    assert result.message == (f"{URL} answered 404: the route is missing (moved route or "
                              "stale config)")
    gone_on_purpose = HealthTarget("old", URL, expect=(404,))
    assert health(answered(404), gone_on_purpose).ok


def test_health_headers_must_contain_their_values() -> None:
    target = HealthTarget("api", URL, headers={"x-api": "v2", "x-build": "prod"})
    ok = health(answered(200, headers={"x-api": "V2.1", "x-build": "prod-7"}), target)
    assert ok.ok
    result = health(answered(200, headers={"x-api": "v1"}), target)
    assert result.message == ('health[api]: [HEADER x-api] ("v1") contains "v2"; '
                              '[HEADER x-build] (missing) contains "prod"')


def test_health_body_contains() -> None:
    target = HealthTarget("api", URL, contains="ready")
    assert health(answered(200, body=b'{"state": "ready"}'), target).ok
    result = health(answered(200, body=b'{"state": "booting"}'), target)
    assert result.message == 'health[api]: [BODY] contains "ready" (not in 20 bytes)'


def test_health_json_conditions() -> None:
    target = HealthTarget("api", URL, json={"status": "ok", "checks.db": "up", "items.1": 2,
                                            "live": True, "count": 3})
    body = (b'{"status": "ok", "checks": {"db": "up"}, "items": [1, 2], "live": true, '
            b'"count": 3.0}')
    assert health(answered(200, body=body), target).ok
    body = b'{"status": "degraded", "checks": {"db": 1}, "items": [1], "live": 1, "count": 4}'
    result = health(answered(200, body=body), target)
    assert result.evidence["conditions"] == [
        '[BODY].status ("degraded") == "ok"', '[BODY].checks.db (1) == "up"',
        "[BODY].items.1 (missing) == 2", "[BODY].live (1) == true", "[BODY].count (4) == 3"]


@pytest.mark.parametrize(("path", "document", "found"), [
    ("a", {"a": 1}, 1), ("a.b", {"a": {"b": None}}, None), ("a.0", {"a": [5, 6]}, 5),
    ("a.1.b", {"a": [{}, {"b": "x"}]}, "x"),
])
def test_json_paths_find_their_value(path: str, document: Any, found: Any) -> None:
    assert observe._dig(document, path) == found


@pytest.mark.parametrize(("path", "document"), [
    ("a", {}), ("a.b", {"a": 1}), ("a.2", {"a": [1, 2]}), ("a.x", {"a": [1]}),
    ("a.-1", {"a": [1]}), ("a", []),
])
def test_json_paths_that_lead_nowhere(path: str, document: Any) -> None:
    assert observe._dig(document, path) is observe._MISSING


@pytest.mark.parametrize(("actual", "wanted", "same"), [
    (1, 1.0, True), (True, True, True), (False, False, True), (True, 1, False),
    (1, True, False), (0, False, False), ("a", "a", True), (None, None, True),
    ([1], [1], True), ("1", 1, False)])
def test_json_equality_keeps_booleans_apart(actual: Any, wanted: Any, same: bool) -> None:
    assert observe._same(actual, wanted) is same


@pytest.mark.parametrize(("body", "why"), [
    (b"<html>", "the body is not JSON (JSONDecodeError)"),
    (b"\xff\xfe", "the body is not JSON (UnicodeDecodeError)"),
])
def test_json_conditions_on_a_body_that_is_not_json(body: bytes, why: str) -> None:
    target = HealthTarget("api", URL, json={"status": "ok", "db": "up"})
    result = health(answered(200, body=body), target)
    assert result.evidence["conditions"] == [f"[BODY].status cannot be evaluated: {why}",
                                             f"[BODY].db cannot be evaluated: {why}"]


def test_json_with_a_byte_order_mark_is_json() -> None:
    target = HealthTarget("api", URL, json={"status": "ok"})
    assert health(answered(200, body=b'\xef\xbb\xbf{"status": "ok"}'), target).ok


def test_a_body_too_big_or_broken_cannot_be_evaluated() -> None:
    target = HealthTarget("api", URL, json={"status": "ok"}, contains="ok", max_body=100)
    big = health(answered(200, oversize=True), target)
    why = "the body is over max_body (100 bytes)"
    assert big.evidence["conditions"] == [f"[BODY].status cannot be evaluated: {why}",
                                          f'[BODY] contains "ok" cannot be evaluated: {why}']
    cut = health(answered(200, error_class="reset", error="connection reset by peer"), target)
    why = "the body did not arrive (reset: connection reset by peer)"
    assert cut.evidence["conditions"][0] == f"[BODY].status cannot be evaluated: {why}"
    slow = health(answered(200, error_class="timeout", error="after 5.0 s"), target)
    assert slow.evidence["conditions"][0] == (
        "[BODY].status cannot be evaluated: the body did not arrive (timeout after 5.0 s)")


def test_every_failed_condition_is_named_together() -> None:
    """A wrong status does not hide what the body says, nor the body what the status says."""
    target = HealthTarget("api", URL, json={"status": "ok"}, headers={"x-api": "v2"})
    result = health(answered(500, body=b'{"status": "down"}'), target)
    assert result.evidence["conditions"] == [
        "[STATUS] (500) == 200", '[HEADER x-api] (missing) contains "v2"',
        '[BODY].status ("down") == "ok"']
    big = health(answered(500, oversize=True), HealthTarget("api", URL, contains="ok"))
    assert big.evidence["conditions"] == [
        "[STATUS] (500) == 200",
        '[BODY] contains "ok" cannot be evaluated: the body is over max_body (1048576 bytes)']
    both = health(answered(500, oversize=True), HealthTarget("api", URL, json={"a": 1}))
    assert both.evidence["conditions"][0] == "[STATUS] (500) == 200"


def test_a_status_check_ignores_the_body_but_not_a_broken_answer() -> None:
    """Without body conditions only the excerpt is read; if even that broke, it fails."""
    assert health(answered(200, oversize=True)).ok
    result = health(answered(200, error_class="reset", error="connection reset by peer"))
    assert outcome(result) == ("health[api]", "health", False, "service-down")
    assert result.message == f"{URL} answered 200 but reset: connection reset by peer"
    timeout = health(answered(200, error_class="timeout", error="deadline reached"))
    assert timeout.message == f"{URL} answered 200 but timeout"


def test_a_slow_answer_passes_degraded() -> None:
    target = HealthTarget("api", URL, max_latency_ms=2.0)
    result = health(answered(200), target)  # 3.1 ms
    assert result.ok
    assert result.degraded == ["health[api]: [RESPONSE_TIME] (3 ms) <= 2 ms"]
    assert health(answered(200, latency_s=0.002), target).degraded == []  # exactly: fine
    assert health(answered(200), HealthTarget("api", URL, max_latency_ms=5)).degraded == []
    unmeasured = HttpSeen(url=URL, status=200, latency_s=None)  # no time measured: no claim
    assert judge_health(target, unmeasured, TIMEOUT).degraded == []


def tls(days: float) -> dict[str, Any]:
    return {"verified": True, "ca_file": None, "not_after": "2026-12-01T00:00:00Z",
            "days_left": days}


def test_certificates_expired_fail_and_expiring_soon_degrade() -> None:
    target = HealthTarget("api", "https://api.example/health", tls=Tls(cert_min_days=14))
    expired = health(answered(200, target.url, tls=tls(-0.5)), target)
    assert expired.message == ("health[api]: [CERTIFICATE] expired 2026-12-01T00:00:00Z "
                               "(-0.5 days)")
    soon = health(answered(200, target.url, tls=tls(3)), target)
    assert soon.ok
    assert soon.degraded == ["health[api]: [CERTIFICATE] expires 2026-12-01T00:00:00Z "
                             "(in 3 days) < cert_min_days 14"]
    for days in (14, 30):
        assert health(answered(200, target.url, tls=tls(days)), target).degraded == []
    assert health(answered(200, target.url, tls=tls(0)), target).degraded != []
    assert health(answered(200, target.url, tls=tls(3)), HealthTarget(
        "api", target.url)).degraded == []  # no cert_min_days: no warning
    assert health(answered(200, target.url, tls={"verified": True}), target).degraded == []


# -- 1.2 security guard ----------------------------------------------------------------------


def guard_evidence(seen: HttpSeen, sent: str = SENT) -> dict[str, object]:
    """Every guard result carries what was sent and what was expected, whatever the verdict."""
    return {**seen.evidence(), "header": "X-Internal-Secret", "sent": sent,
            "deny": [401, 503], "allow": 200, "timeout_s": 1.23}


def guard(case: str, status: int, sent: str = SENT, *, others_refused: bool = True,
          config: GuardConfig = GUARD) -> CheckResult:
    seen = answered(status, config.url)
    result = judge_guard(case, config, seen, sent, TIMEOUT, others_refused=others_refused)
    if config is GUARD:
        assert result.evidence == guard_evidence(seen, sent)
    return result


@pytest.mark.parametrize("case", ["no-secret", "wrong-secret"])
@pytest.mark.parametrize("status", [401, 503, 403])
def test_guard_refusing_without_the_secret_passes(case: str, status: int) -> None:
    """401/503 as configured, and 403 whatever `deny` says (a WAF's own refusal)."""
    result = guard(case, status)
    assert outcome(result) == (f"guard[{case}]", "guard", True, None)
    assert result.message == f"refused {SENT} with {status}"


@pytest.mark.parametrize("case", ["no-secret", "wrong-secret"])
def test_guard_letting_a_stranger_through_is_guard_open(case: str) -> None:
    result = guard(case, 200)
    assert outcome(result) == (f"guard[{case}]", "guard", False, "guard-open")
    assert result.message == (f"the guard let {SENT} through with 200, expected 401/503: "
                              "the guard is open")


@pytest.mark.parametrize("case", ["no-secret", "wrong-secret"])
@pytest.mark.parametrize("status", [500, 302])
def test_guard_answering_something_else_is_service_down(case: str, status: int) -> None:
    result = guard(case, status)
    assert outcome(result) == (f"guard[{case}]", "guard", False, "service-down")
    assert result.message == (f"the guard answered {SENT} with {status}, neither a refusal "
                              "(401/503) nor 200")


@pytest.mark.parametrize("case", GUARD_CASES)
def test_a_guard_answering_404_is_a_missing_route(case: str) -> None:
    result = guard(case, 404)
    assert outcome(result) == (f"guard[{case}]", "guard", False, "route-missing")
    assert result.message == (f"{GUARD.url} answered 404: the route is missing (moved route "
                              "or stale config)")


@pytest.mark.parametrize("case", GUARD_CASES)
def test_an_unreachable_guard_is_service_down_not_a_security_symptom(case: str) -> None:
    seen = unreachable(GUARD.url, "timeout", "after 2.0 s")
    result = judge_guard(case, GUARD, seen, SENT, TIMEOUT)
    assert outcome(result) == (f"guard[{case}]", "guard", False, "service-down")
    assert result.message == f"guard unreachable with {SENT}: timeout after 2.0 s ({GUARD.url})"
    assert result.evidence == guard_evidence(seen)


def test_the_right_secret_accepted_passes() -> None:
    sent = "the configured secret (from environment)"
    result = guard("right-secret", 200, sent)
    assert outcome(result) == ("guard[right-secret]", "guard", True, None)
    assert result.message == f"accepted {sent} with 200"


def test_the_right_secret_refused_with_503_is_secret_unconfigured() -> None:
    for others_refused in (True, False):
        result = guard("right-secret", 503, others_refused=others_refused)
        assert outcome(result) == ("guard[right-secret]", "guard", False, "secret-unconfigured")
        assert result.message == ("the right secret got 503: the service has no secret "
                                  "configured")


@pytest.mark.parametrize("status", [401, 403])
def test_the_right_secret_refused_like_a_stranger_is_secret_rejected(status: int) -> None:
    alone = judge_guard("right-secret", GUARD, answered(status, GUARD.url), SENT, TIMEOUT)
    assert alone.symptom == "secret-rejected"  # judged alone: strangers count as refused
    result = guard("right-secret", status)
    assert outcome(result) == ("guard[right-secret]", "guard", False, "secret-rejected")
    assert result.message == (f"the right secret got {status}, expected 200, while no secret "
                              "and a wrong one were refused too: the service's secret differs "
                              "from the suite's")


def test_the_right_secret_refused_by_a_guard_that_lets_strangers_in_is_not_a_secret_issue(
        ) -> None:
    """Everybody gets the same answer: the guard does not work as a guard."""
    result = guard("right-secret", 401, others_refused=False)
    assert outcome(result) == ("guard[right-secret]", "guard", False, "service-down")
    assert result.message == ("the right secret got 401, expected 200; no secret or a wrong "
                              "one was not refused either: the guard does not work as a guard")


def test_the_right_secret_answered_with_no_refusal_is_service_down() -> None:
    result = guard("right-secret", 500)
    assert outcome(result) == ("guard[right-secret]", "guard", False, "service-down")
    assert result.message == "the right secret got 500, expected 200, and 500 is not a refusal"
    both = guard("right-secret", 500, others_refused=False)
    assert both.message == ("the right secret got 500, expected 200, and 500 is not a refusal"
                            "; no secret or a wrong one was not refused either: the guard does "
                            "not work as a guard")


def test_the_three_answers_are_judged_together() -> None:
    sent = {case: f"sent {case}" for case in GUARD_CASES}

    def judged(*statuses: int) -> dict[str, str | None]:
        seen = {case: answered(status, GUARD.url)
                for case, status in zip(GUARD_CASES, statuses, strict=True)}
        results = judge_guard_all(GUARD, seen, sent, TIMEOUT)
        assert [results[c].evidence["sent"] for c in GUARD_CASES] == list(sent.values())
        return {case: result.symptom for case, result in results.items()}

    assert judged(401, 401, 200) == dict.fromkeys(GUARD_CASES)
    assert judged(401, 403, 401)["right-secret"] == "secret-rejected"
    assert judged(200, 401, 401) == {"no-secret": "guard-open", "wrong-secret": None,
                                     "right-secret": "service-down"}
    assert judged(401, 500, 401)["right-secret"] == "service-down"


def test_guard_statuses_come_from_the_config() -> None:
    config = GuardConfig(GUARD.url, header="X-Token", deny=(418,), allow=204)
    refused = guard("no-secret", 418, config=config)
    assert refused.ok
    assert (refused.evidence["deny"], refused.evidence["allow"], refused.evidence["header"]) \
        == ([418], 204, "X-Token")
    assert guard("wrong-secret", 204, config=config).symptom == "guard-open"
    assert guard("wrong-secret", 401, config=config).symptom == "service-down"
    assert guard("right-secret", 204, config=config).ok
    assert guard("right-secret", 418, config=config).symptom == "secret-rejected"
    assert guard("right-secret", 401, config=config).symptom == "service-down"
    assert observe.refused(None, config) is False


def test_a_guard_certificate_expiring_soon_degrades_a_pass() -> None:
    config = GuardConfig("https://api.example/status", tls=Tls(cert_min_days=7))
    seen = answered(401, config.url, tls=tls(2))
    result = judge_guard("no-secret", config, seen, SENT, TIMEOUT)
    assert result.ok
    assert result.degraded == ["guard[no-secret]: [CERTIFICATE] expires 2026-12-01T00:00:00Z "
                               "(in 2 days) < cert_min_days 7"]
    accepted = judge_guard("right-secret", config, answered(200, config.url, tls=tls(2)), SENT,
                           TIMEOUT)
    assert accepted.degraded == ["guard[right-secret]: [CERTIFICATE] expires "
                                 "2026-12-01T00:00:00Z (in 2 days) < cert_min_days 7"]
    assert judge_guard("no-secret", config, answered(401, config.url, tls=tls(9)), SENT,
                       TIMEOUT).degraded == []


def test_what_each_guard_request_sends() -> None:
    secret = Secret("AFO_INTERNAL_SECRET", "environment", "tst-" + "s" * 20)
    assert guard_request("no-secret", GUARD, secret) == ({}, "no header")
    headers, sent = guard_request("wrong-secret", GUARD, secret)
    assert sent == "a random wrong value"
    assert list(headers) == ["X-Internal-Secret"]
    assert headers["X-Internal-Secret"].startswith("wrong-")
    assert headers["X-Internal-Secret"] != secret.reveal()
    assert guard_request("right-secret", GUARD, secret) == (
        {"X-Internal-Secret": secret.reveal()}, "the configured secret (from environment)")
    assert guard_request("wrong-secret", GUARD, None)[0]["X-Internal-Secret"].startswith("wrong-")
    with pytest.raises(ValueError, match=r"^the right-secret guard check needs the secret$"):
        guard_request("right-secret", GUARD, None)
    with pytest.raises(ValueError, match=r"^unknown guard case 'sideways'$"):
        guard_request("sideways", GUARD, secret)


def test_the_wrong_value_sent_is_never_the_real_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should the dice produce the configured secret, the guard is sent another value."""
    secret = Secret("AFO_INTERNAL_SECRET", "environment", "wrong-same")
    draws = iter(["same", "other"])
    monkeypatch.setattr(observe.random_tokens, "token_urlsafe", lambda n: next(draws))
    assert guard_request("wrong-secret", GUARD, secret)[0] == {"X-Internal-Secret": "wrong-other"}


def test_the_wrong_secret_is_random_and_never_the_real_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Never the runbook's fixed `WRONG`, which could be somebody's secret; and should the
    dice produce the real secret, it is drawn again."""
    first, second = wrong_secret(None), wrong_secret(None)
    assert first.startswith("wrong-")
    assert first != second
    assert len(first) > len("wrong-") + 16
    draws = iter(["same", "other"])
    monkeypatch.setattr(observe.random_tokens, "token_urlsafe", lambda n: next(draws))
    assert wrong_secret("wrong-same") == "wrong-other"


# -- 1.3 SSE stream --------------------------------------------------------------------------


def stream(**seen: Any) -> SseSeen:
    facts: dict[str, Any] = {"status": 200, "content_type": "text/event-stream",
                             "latency_s": 0.002, "ttfb_s": 0.003, "elapsed_s": 0.004,
                             "bytes_read": 40, **seen}
    return SseSeen(url=SSE.url, window_s=5, **facts)


def test_sse_passes_on_the_first_event() -> None:
    seen = stream(events=[SseEvent("heartbeat", "7", "", 1.2)])
    result = judge_sse(SSE, seen, None)
    assert outcome(result) == ("sse", "sse", True, None)
    assert result.message == "first event 'heartbeat' after 1200 ms (40 bytes)"
    assert result.evidence == seen.evidence()
    assert result.degraded == []


def test_sse_counts_events_when_asked_for_several() -> None:
    events = [SseEvent("tick", None, "", 0.1), SseEvent("heartbeat", None, "", 0.5),
              SseEvent("heartbeat", None, "", 1.5)]
    seen = stream(events=events, expected_event="heartbeat", min_events=2)
    result = judge_sse(SseConfig(SSE.url, event="heartbeat", min_events=2), seen, None)
    assert result.message == "2 events, the first event 'heartbeat' after 500 ms (40 bytes)"


def test_an_event_wrapped_twice_is_worth_a_warning() -> None:
    wrapped = SseEvent("message", None, "event: heartbeat\ndata: {}", 0.1)
    result = judge_sse(SSE, stream(events=[wrapped]), None)
    assert result.ok
    assert result.degraded == [
        "sse: the server wraps its events twice: event 'message' carries SSE framing as its "
        "data (an inner event 'heartbeat')"]
    anonymous = SseEvent("message", None, "data: {}", 0.1)
    assert judge_sse(SSE, stream(events=[anonymous]), None).degraded == [
        "sse: the server wraps its events twice: event 'message' carries SSE framing as its "
        "data (an inner event)"]


def test_a_wrapped_event_explains_a_missing_expected_event() -> None:
    config = SseConfig(SSE.url, event="heartbeat")
    wrapped = SseEvent("message", None, "event: heartbeat\ndata: {}", 0.1)
    seen = stream(events=[wrapped], expected_event="heartbeat",
                  problem="no complete 'heartbeat' SSE event within 5 s (40 bytes, 0 comments)")
    result = judge_sse(config, seen, None)
    assert outcome(result) == ("sse", "sse", False, "heartbeat-failure")
    assert result.message == (
        f"{SSE.url}: no 'heartbeat' event: the server wraps its events twice: event 'message' "
        "carries SSE framing as its data (an inner event 'heartbeat') (no complete "
        "'heartbeat' SSE event within 5 s (40 bytes, 0 comments))")
    plain = judge_sse(SSE, stream(events=[wrapped], problem="stream broke"), None)
    assert plain.message == f"{SSE.url}: stream broke"  # no expectation: nothing to explain


def test_sse_answering_but_wrong_is_heartbeat_failure() -> None:
    seen = stream(problem="no complete SSE event within 5 s (12 bytes, 3 comments)")
    result = judge_sse(SSE, seen, None)
    assert outcome(result) == ("sse", "sse", False, "heartbeat-failure")
    assert result.message == f"{SSE.url}: no complete SSE event within 5 s (12 bytes, " \
                             "3 comments)"
    assert result.evidence == seen.evidence()


def test_a_missing_stream_route_is_route_missing() -> None:
    seen = stream(status=404, problem="answered HTTP 404 with content type text/html")
    result = judge_sse(SSE, seen, None)
    assert outcome(result) == ("sse", "sse", False, "route-missing")
    assert result.evidence == seen.evidence()
    assert result.message == (f"{SSE.url} answered 404: the route is missing (moved route or "
                              "stale config)")


def test_sse_broken_while_the_server_answers_http_is_heartbeat_failure() -> None:
    seen = SseSeen(url=SSE.url, window_s=5, error_class="reset",
                   error="connection reset by peer")
    liveness = answered(200, "http://127.0.0.1:8010/api/health")
    result = judge_sse(SSE, seen, liveness)
    assert outcome(result) == ("sse", "sse", False, "heartbeat-failure")
    assert result.message == (f"{SSE.url}: reset: connection reset by peer, while the server "
                              "answers HTTP (200 from http://127.0.0.1:8010/api/health)")
    assert result.evidence["server_answers_http"] == {
        "url": liveness.url, "status": 200, "error_class": None}


def test_sse_broken_and_the_server_silent_is_service_down() -> None:
    """The root cause, not its echo: a dead server is not a heartbeat problem."""
    seen = SseSeen(url=SSE.url, window_s=5, error_class="timeout", error="after 5.0 s")
    for liveness in (None, unreachable("http://127.0.0.1:8010/api/health")):
        result = judge_sse(SSE, seen, liveness)
        assert outcome(result) == ("sse", "sse", False, "service-down")
        assert result.message == (f"{SSE.url}: timeout after 5.0 s; the server does not "
                                  "answer HTTP")
    assert "server_answers_http" not in judge_sse(SSE, seen, None).evidence
    asked = judge_sse(SSE, seen, unreachable("http://127.0.0.1:8010/api/health"))
    assert asked.evidence["server_answers_http"] == {
        "url": "http://127.0.0.1:8010/api/health", "status": None, "error_class": "refused"}


def test_sse_events_with_a_problem_do_not_pass() -> None:
    seen = stream(events=[SseEvent("heartbeat", None, "", 0.1)], problem="not SSE framing")
    assert judge_sse(SSE, seen, None).symptom == "heartbeat-failure"
