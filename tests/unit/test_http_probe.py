"""The HTTP probe reports what the target answered, as `curl -sS` without `-L` does.

A redirect is an answer: a health URL that now says 302 (a login page, a moved service) has
changed, and a guard that redirects a stranger to a login page is not refusing with 401.
Following it would judge another URL than the one configured.
"""

from __future__ import annotations

import pytest
from loopback import Answer, Handler, Loopback

from afo_runbook.config import GuardConfig, HealthTarget
from afo_runbook.observe import judge_guard, judge_health
from afo_runbook.probes.http import http_get


def redirect(status: int, location: str) -> Answer:
    def answer(handler: Handler) -> None:
        handler.reply(status, b"moved\n", headers={"Location": location})
    return answer


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_reported_not_followed(loopback: Loopback, status: int) -> None:
    loopback.route("/api/health-v2", lambda h: h.reply(200, b'{"ok": true}\n'))
    url = loopback.route("/api/health", redirect(status, "/api/health-v2"))
    seen = http_get(url, timeout=5)
    assert (seen.status, seen.error_class) == (status, None)
    assert seen.body_excerpt == "moved\n"
    assert loopback.paths() == ["/api/health"]  # the Location was never requested


def test_a_redirect_to_another_host_is_not_followed(loopback: Loopback) -> None:
    elsewhere = loopback.route("/login", lambda h: h.reply(200, b"<form>"))
    url = loopback.route("/api/health", redirect(302, elsewhere.replace("127.0.0.1",
                                                                        "localhost")))
    assert http_get(url, timeout=5).status == 302
    assert loopback.paths() == ["/api/health"]


def test_a_redirecting_health_url_fails_its_check(loopback: Loopback) -> None:
    loopback.route("/new", lambda h: h.reply(200, b"ok"))
    url = loopback.route("/api/health", redirect(302, "/new"))
    result = judge_health(HealthTarget("api", url), http_get(url, timeout=5), 5)
    assert (result.ok, result.symptom) == (False, "service-down")
    assert result.message == "health[api]: [STATUS] (302) == 200"
    assert loopback.paths() == ["/api/health"]


def test_a_guard_redirecting_to_its_login_page_is_not_a_refusal(loopback: Loopback) -> None:
    """Were the redirect followed, the login page's 200 would read as an open guard."""
    loopback.route("/login", lambda h: h.reply(200, b"<form>"))
    url = loopback.route("/api/revalidate/status", redirect(302, "/login"))
    seen = http_get(url, timeout=5, headers={"X-Internal-Secret": "wrong-x"})
    result = judge_guard("wrong-secret", GuardConfig(url), seen, "a random wrong value", 5)
    assert (result.ok, result.symptom) == (False, "service-down")
    assert loopback.paths() == ["/api/revalidate/status"]
    assert loopback.requests[0].headers["X-Internal-Secret"] == "wrong-x"
