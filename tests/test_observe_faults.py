"""The observe phase against the real reference stack: each fault -> the right failing checks,
symptom and decision. The suite runs as an operator runs it (`pytest -m observe`) in a
subprocess; the JSON verdict is what we read."""

from __future__ import annotations

import pytest

from afo_runbook.refstack.faults import FAULTS as REFSTACK_FAULTS

ALL_KEYS = {"health[api]", "health[aux]", "health[dashboard]", "guard[no-secret]",
            "guard[wrong-secret]", "guard[right-secret]", "sse"}


def test_healthy_stack_is_green(stack, config_for, run_suite):
    result = run_suite("-m", "observe", "-n", "0", "--runbook-config", str(config_for()))
    assert result.rc == 0, result.output
    verdict = result.verdict
    assert verdict["decision"] == "monitor"
    assert verdict["priority"] == "none"
    assert verdict["symptoms"] == []
    assert {c["key"] for c in verdict["checks"]} == ALL_KEYS
    assert all(c["outcome"] == "passed" for c in verdict["checks"])
    assert verdict["deselected"] == [
        {"group": "containers", "reason": f"no [containers] section in {verdict['config']}"}]
    sse = result.check("sse")["evidence"]
    assert sse["first_event"] == "heartbeat"
    assert sse["content_type"].startswith("text/event-stream")
    assert sse["bytes"] > 0
    assert sse["ttfb_ms"] is not None
    assert "decision: monitor" in result.stdout


FAULTS = [
    # (service, fault, value, {check: symptom}, decision, priority)
    ("api", "guard-open", None,
     {"guard[no-secret]": "guard-open", "guard[wrong-secret]": "guard-open"},
     "rollback", "immediate"),
    ("api", "secret-missing", None, {"guard[right-secret]": "secret-unconfigured"},
     "rollback", "immediate"),
    ("api", "health-500", None, {"health[api]": "service-down"}, "restart", "immediate"),
    ("aux", "health-500", None, {"health[aux]": "service-down"}, "restart", "immediate"),
    ("dashboard", "health-500", None, {"health[dashboard]": "service-down"}, "restart",
     "immediate"),
    ("aux", "down", None, {"health[aux]": "service-down"}, "restart", "immediate"),
    ("api", "sse-silent", None, {"sse": "heartbeat-failure"}, "review-restart", "within-5-min"),
    ("api", "sse-comments", None, {"sse": "heartbeat-failure"}, "review-restart",
     "within-5-min"),
    ("api", "sse-late", 30, {"sse": "heartbeat-failure"}, "review-restart", "within-5-min"),
    ("api", "sse-wrong-type", None, {"sse": "heartbeat-failure"}, "review-restart",
     "within-5-min"),
    ("api", "sse-garbage", None, {"sse": "heartbeat-failure"}, "review-restart",
     "within-5-min"),
]


@pytest.mark.parametrize(("service", "fault", "value", "failing", "decision", "priority"),
                         FAULTS, ids=[f"{f[0]}:{f[1]}" for f in FAULTS])
def test_fault_gives_its_symptom_and_decision(stack, config_for, run_suite, service, fault,
                                              value, failing, decision, priority):
    stack.set_fault(service, fault, value)
    config = config_for(sse={"url": f"{stack.urls['api']}/api/thoughts/sse", "window": 2})
    result = run_suite("-m", "observe", "-n", "0", "--runbook-config", str(config))
    assert result.rc == 1, result.output
    assert result.failing() == failing
    assert result.verdict["decision"] == decision
    assert result.verdict["priority"] == priority
    assert result.verdict["symptoms"] == sorted(set(failing.values()))
    # the other checks still passed: one fault, one finding
    passed = {c["key"] for c in result.verdict["checks"] if c["outcome"] == "passed"}
    assert passed == ALL_KEYS - set(failing)


FAST = {"observe": 30, "health": 4, "guard": 4, "sse": 4, "containers": 4}


def _findings(result) -> dict:
    verdict = result.verdict
    return {"decision": verdict["decision"], "symptoms": verdict["symptoms"],
            "checks": {c["key"]: (c["outcome"], c["symptom"]) for c in verdict["checks"]}}


@pytest.mark.parametrize("fault", sorted(REFSTACK_FAULTS))
def test_both_engines_give_the_same_verdict(stack, config_for, run_suite, fault):
    """In-process (the default) and xdist (-n 2) on every fault of the reference stack."""
    value = {"slow": 3, "sse-late": 30, "sse-late-one-shot": 3, "huge-body": 200}.get(fault)
    stack.set_fault(REFSTACK_FAULTS[fault].services[0], fault, value)
    config = str(config_for(budgets=FAST, sse={"url": f"{stack.urls['api']}/api/thoughts/sse",
                                               "window": 2}))
    in_process = run_suite("-m", "observe", "--runbook-config", config)
    spread = run_suite("-m", "observe", "-n", "2", "--runbook-config", config)
    assert "workers" not in in_process.stdout
    assert "created: 2/2 workers" in spread.stdout
    assert in_process.rc == spread.rc, (in_process.output, spread.output)
    assert _findings(in_process) == _findings(spread)
    assert set(_findings(in_process)["checks"]) == ALL_KEYS


def test_sse_problems_are_named_in_the_evidence(stack, config_for, run_suite):
    config = config_for(sse={"url": f"{stack.urls['api']}/api/thoughts/sse", "window": 2})
    stack.set_fault("api", "sse-garbage")
    garbage = run_suite("-m", "sse", "-n", "0", "--runbook-config", str(config)).check("sse")
    assert "not SSE framing" in garbage["message"]
    assert garbage["evidence"]["bytes"] > 0  # the runbook's `wc -c` would have called it fine
    stack.clear_fault("api")
    stack.set_fault("api", "sse-wrong-type")
    wrong = run_suite("-m", "sse", "-n", "0", "--runbook-config", str(config)).check("sse")
    assert "text/plain" in wrong["message"]
    assert wrong["evidence"]["status"] == 200


def test_sse_check_does_not_wait_out_the_window(stack, config_for, run_suite):
    config = config_for(sse={"url": f"{stack.urls['api']}/api/thoughts/sse", "window": 15},
                        budgets={"sse": 19})
    result = run_suite("-m", "sse", "-n", "0", "--runbook-config", str(config))
    assert result.rc == 0, result.output
    first = result.check("sse")["evidence"]["events"][0]
    assert first["event"] == "heartbeat"
    assert first["at_ms"] < 1000
    # the shell check always takes its full --max-time; waiting out the window would be 15 s
    assert result.check("sse")["evidence"]["timing"]["finished_s"] < 12


def test_api_down_is_service_down_only(stack, config_for, run_suite):
    """The guard and SSE checks fail too, but the verdict names the root cause, not echoes."""
    stack.set_fault("api", "down")
    result = run_suite("-m", "observe", "-n", "0", "--runbook-config", str(config_for()))
    assert result.rc == 1
    assert result.failing() == {key: "service-down" for key in (
        "health[api]", "guard[no-secret]", "guard[wrong-secret]", "guard[right-secret]", "sse")}
    assert result.verdict["symptoms"] == ["service-down"]
    assert result.verdict["decision"] == "restart"
    assert result.check("sse")["evidence"]["error_class"] == "refused"


def test_secret_mismatch_is_secret_rejected(stack, config_for, run_suite, tmp_path):
    other = tmp_path / "other.env"
    other.write_text("AFO_INTERNAL_SECRET=not-the-stack-secret-" + "x" * 8 + "\n")
    config = config_for(guard={"url": f"{stack.urls['api']}/api/revalidate/status",
                               "env_file": str(other)})
    result = run_suite("-m", "observe", "-n", "0", "--runbook-config", str(config))
    assert result.failing() == {"guard[right-secret]": "secret-rejected"}
    assert result.check("guard[right-secret]")["evidence"]["status"] == 401
    assert result.verdict["decision"] == "rollback"


def test_security_comes_first_with_several_symptoms(stack, config_for, run_suite):
    stack.set_fault("api", "guard-open")
    stack.set_fault("aux", "down")
    stack.set_fault("api", "sse-silent")
    config = config_for(sse={"url": f"{stack.urls['api']}/api/thoughts/sse", "window": 1})
    result = run_suite("-m", "observe", "-n", "0", "--runbook-config", str(config))
    verdict = result.verdict
    assert verdict["symptoms"] == ["guard-open", "service-down", "heartbeat-failure"]
    assert verdict["decision"] == "rollback"
    assert [row["action"] for row in verdict["rows"]] == ["rollback", "restart",
                                                          "review-restart"]


def test_guard_on_a_missing_route_is_route_missing_never_a_secret_problem(stack, config_for,
                                                                          run_suite):
    """All three guard requests get 404: a moved route or a stale config. Neither a rollback
    nor a restart fixes that; people do (escalate). Before, the right secret's 404 read as
    `secret-rejected` and decided a rollback of production."""
    url = f"{stack.urls['api']}/api/no-such-route"
    config = config_for(guard={"url": url, "env_file": str(stack.env_file)})
    result = run_suite("-m", "guard", "--runbook-config", str(config))
    assert result.failing() == {f"guard[{case}]": "route-missing"
                                for case in ("no-secret", "wrong-secret", "right-secret")}
    assert result.verdict["decision"] == "escalate"
    assert result.check("guard[right-secret]")["message"] == (
        f"{url} answered 404: the route is missing (moved route or stale config)")
    assert result.rc == 6


def test_slow_but_inside_the_timeout_is_green(stack, config_for, run_suite):
    stack.set_fault("aux", "slow", 1)
    result = run_suite("-m", "health", "-n", "0", "--runbook-config", str(config_for()))
    assert result.rc == 0, result.output
    assert result.check("health[aux]")["evidence"]["latency_ms"] >= 1000


def test_decision_rows_can_be_overridden_in_config(stack, config_for, run_suite):
    stack.set_fault("aux", "health-500")
    config = config_for(decision=[{"symptom": "service-down", "action": "escalate",
                                   "priority": "immediate", "cause": "aux is fragile"}])
    result = run_suite("-m", "observe", "-n", "0", "--runbook-config", str(config))
    verdict = result.verdict
    assert verdict["decision"] == "escalate"
    assert verdict["rows"] == [{"symptom": "service-down", "cause": "aux is fragile",
                                "priority": "immediate", "action": "escalate",
                                "overridden": True}]
    assert "table: service-down -> aux is fragile -> immediate -> escalate (overridden)" in \
        result.stdout
