"""Runbook 2: the verdict built from check records, its JSON, and the lines the operator reads.

Only section 1 decides: a failing preflight check is listed, never a symptom of the target;
a passing check never contributes a symptom; the security-first order of the table carries
through to the verdict.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from afo_runbook.config import parse_config
from afo_runbook.decision import DEFAULT_ROWS
from afo_runbook.verdict import CheckRecord, Verdict, build_verdict, iso, summary_lines, write_json

RED = {"red": True, "bold": True}
GREEN = {"green": True, "bold": True}
YELLOW = {"yellow": True}
STARTED = datetime(2026, 11, 26, 10, 27, 9, tzinfo=UTC).timestamp()


def record(key: str, outcome: str = "passed", symptom: str | None = None, *,
           group: str | None = None, message: str | None = None,
           duration_s: float = 0.01) -> CheckRecord:
    group = group or key.split("[", 1)[0]
    return CheckRecord(id=f"checks/test_{group}.py::test_{key}", key=key, group=group,
                       outcome=outcome, symptom=symptom, duration_s=duration_s,
                       message=message or f"{key} {outcome}")


def verdict(records: list[CheckRecord], rows: Any = DEFAULT_ROWS, **kwargs: Any) -> Verdict:
    options: dict[str, Any] = {"started_at": STARTED, "duration_s": 1.25,
                               "observe_budget_s": 60.0, "config_path": "/etc/afo/runbook.toml"}
    options.update(kwargs)
    return build_verdict(records, rows, **options)


@pytest.mark.usefixtures("host_in_seoul")
def test_iso_is_utc_to_the_second_whatever_the_host_zone() -> None:
    """The `Z` in the evidence must be true: local time would shift every record by 9 h."""
    assert iso(STARTED + 0.9) == "2026-11-26T10:27:09Z"


def test_security_first_reaches_the_verdict() -> None:
    """An operator who demoted guard-open still gets it decided first (principle 2)."""
    rows = parse_config(Path("/etc/afo/runbook.toml"), {"decision": [
        {"symptom": "guard-open", "priority": "within-5-min", "action": "review-restart"}]}
    ).decision
    found = verdict([record("health[api]", "failed", "service-down"),
                     record("guard[no-secret]", "failed", "guard-open")], rows)
    assert (found.decision, found.priority) == ("review-restart", "within-5-min")
    assert found.symptoms == ["guard-open", "service-down"]
    assert [row.symptom for row in found.rows] == ["guard-open", "service-down"]


def test_only_failing_section_1_checks_decide() -> None:
    records = [
        record("preflight[env-file]", "failed", "service-down", group="preflight"),
        record("health[api]", "passed", "guard-open"),  # a pass never names a symptom
        record("sse", "skipped", "heartbeat-failure"),
        record("health[aux]", "error", "service-down"),
        record("containers[afo-core]", "failed", None),
    ]
    found = verdict(records)
    assert found.symptoms == ["service-down"]
    assert (found.decision, found.priority) == ("restart", "immediate")
    assert [c.key for c in found.failing()] == [
        "health[aux]", "containers[afo-core]", "preflight[env-file]"]


def test_a_run_where_only_preflight_failed_is_monitor() -> None:
    found = verdict([record("health[api]"),
                     record("preflight[pidfile]", "failed", "service-down", group="preflight")])
    assert (found.decision, found.priority, found.symptoms, found.rows) == (
        "monitor", "none", [], [])
    assert found.green


def test_checks_are_listed_in_runbook_order() -> None:
    """Section order (health, guard, sse, containers), then anything else; by id inside
    (alphabetically the guard's ids come before the health checks': the order is not that)."""
    keys = ["zzz", "preflight[b]", "containers[x]", "sse", "guard[wrong-secret]",
            "guard[no-secret]", "health[b]", "health[a]"]
    found = verdict([record(key, group="other" if key == "zzz" else None) for key in keys])
    assert [c.key for c in found.checks] == [
        "health[a]", "health[b]", "guard[no-secret]", "guard[wrong-secret]", "sse",
        "containers[x]", "zzz", "preflight[b]"]


def test_deselected_groups_are_kept() -> None:
    reasons = [{"group": "containers", "reason": "no [containers] section"}]
    assert verdict([], deselected=reasons).deselected == reasons
    assert verdict([]).deselected == []


def test_verdict_json() -> None:
    """The JSON the CI gate and `afo-runbook` read: every field, rounded as documented."""
    check = record("guard[right-secret]", "failed", "secret-unconfigured", duration_s=0.12345,
                   message="the right secret got 503")
    check.evidence = {"status": 503}
    check.recovery = "rollback"
    found = verdict([check], duration_s=1.23456)
    found.decided_at = STARTED + 1.5
    found.incident_id = "inc-1"
    found.recovery = {"outcome": "not-run"}
    assert found.as_json() == {
        "decision": "rollback", "priority": "immediate", "symptoms": ["secret-unconfigured"],
        "started_at": "2026-11-26T10:27:09Z", "decided_at": "2026-11-26T10:27:10Z",
        "duration_s": 1.235, "observe_budget_s": 60.0, "over_budget": False,
        "rows": [{"symptom": "secret-unconfigured", "cause": "secret missing",
                  "priority": "immediate", "action": "rollback", "overridden": False}],
        "degraded": [], "probe_errors": [],
        "config": "/etc/afo/runbook.toml", "deselected": [], "recovery": {"outcome": "not-run"},
        "incident_id": "inc-1", "incident_log_error": None, "artifact_errors": [],
        "checks": [{"id": "checks/test_guard.py::test_guard[right-secret]",
                    "key": "guard[right-secret]", "group": "guard", "outcome": "failed",
                    "symptom": "secret-unconfigured", "duration_s": 0.123,
                    "message": "the right secret got 503", "recovery": "rollback",
                    "degraded": [], "evidence": {"status": 503}}],
    }


def test_over_budget_is_strictly_over() -> None:
    assert not verdict([], duration_s=60.0).over_budget
    assert verdict([], duration_s=60.001).over_budget


def test_write_json_is_redacted_ordered_and_atomic(tmp_path: Path) -> None:
    found = verdict([record("health[api]", "failed", "service-down", message="token-123 seen")])
    path = tmp_path / "new" / "folder" / "verdict.json"
    write_json(found, path, redact=lambda data: json.loads(
        json.dumps(data).replace("token-123", "[REDACTED]")))
    text = path.read_text()
    assert text.endswith("}\n")
    assert '\n  "decision": "restart",\n' in text  # two-space indent, for humans and diffs
    data = json.loads(text)
    assert list(data) == list(found.as_json())  # the documented order, not sorted
    assert data["checks"][0]["message"] == "[REDACTED] seen"
    assert [p.name for p in path.parent.iterdir()] == ["verdict.json"]  # no temp file left
    write_json(found, path)  # the folder exists now; unredacted when no redactor is given
    assert json.loads(path.read_text())["checks"][0]["message"] == "token-123 seen"


def test_summary_of_a_green_run() -> None:
    found = verdict([record("health[api]"), record("sse", "skipped", message="no stream")],
                    deselected=[{"group": "containers", "reason": "no [containers] section"}])
    assert summary_lines(found) == [
        ("decision: monitor (all checks green; keep monitoring)", GREEN),
        ("  skipped: checks/test_sse.py::test_sse: no stream", YELLOW),
        ("  deselected: containers: no [containers] section", YELLOW),
        ("observe took 1.2 s of its 60 s budget", {}),
    ]


def test_summary_of_a_red_run_with_everything() -> None:
    rows = parse_config(Path("/x/runbook.toml"), {"decision": [
        {"symptom": "service-down", "cause": "service down here"}]}).decision
    records = [
        record("health[api]", "failed", "service-down", message="HTTP 500"),
        record("guard[no-secret]", "failed", None, message="crashed"),
        record("preflight[env-file]", "failed", None, group="preflight", message="missing"),
        record("preflight[pidfile]", "passed", group="preflight"),
        record("preflight[compose]", "skipped", group="preflight", message="no compose file"),
    ]
    found = verdict(records, rows, duration_s=61.0)
    found.recovery = {"outcome": "recovered", "summary": "Restart completed in 0.5 seconds"}
    found.incident_id = "inc-20261126T102709Z-abcdef"
    found.incident_log_error = "logs/afo-incidents.log: cannot write: Permission denied"
    found.artifact_errors = ["reports/verdict.json: No space left on device",
                             "reports/incident.md: No space left on device"]
    assert summary_lines(found) == [
        ("preflight: 1 of 2 ready; a rollback could NOT run now", RED),
        ("  preflight[env-file]: missing", {}),
        ("decision: restart (priority immediate); symptoms: service-down", RED),
        ("  table: service-down -> service down here -> immediate -> restart (overridden)", {}),
        ("  service-down: checks/test_health.py::test_health[api]: HTTP 500", {}),
        ("  ?: checks/test_guard.py::test_guard[no-secret]: crashed", {}),
        ("  skipped: checks/test_preflight.py::test_preflight[compose]: no compose file",
         YELLOW),
        ("observe took 61.0 s of its 60 s budget: OVER BUDGET", RED),
        ("recovery: Restart completed in 0.5 seconds", GREEN),
        ("incident: inc-20261126T102709Z-abcdef", {}),
        ("incident log NOT written: logs/afo-incidents.log: cannot write: Permission denied",
         RED),
        ("artifact NOT written: reports/verdict.json: No space left on device", RED),
        ("artifact NOT written: reports/incident.md: No space left on device", RED),
    ]


def test_summary_rows_not_overridden_and_recovery_markup() -> None:
    found = verdict([record("sse", "failed", "heartbeat-failure", message="silent")])
    lines = summary_lines(found)
    assert lines[1] == ("  table: heartbeat-failure -> heartbeat failure -> within-5-min -> "
                        "review-restart", {})
    for outcome, markup in (("not-run", YELLOW), ("failed", RED), ("in-progress", RED)):
        found.recovery = {"outcome": outcome, "summary": f"it {outcome}"}
        assert summary_lines(found)[-1] == (f"recovery: it {outcome}", markup)
    found.recovery = {"outcome": "failed"}
    assert summary_lines(found)[-1] == ("recovery: ", RED)


def test_summary_names_every_symptom_most_urgent_first() -> None:
    found = verdict([record("sse", "failed", "heartbeat-failure"),
                     record("containers[afo-core]", "failed", "container-exited")])
    assert summary_lines(found)[0] == (
        "decision: logs-then-restart (priority immediate); "
        "symptoms: container-exited, heartbeat-failure", RED)


def test_degraded_checks_pass_with_their_warnings() -> None:
    """Slow or a certificate expiring soon: green, and said so, once per warning."""
    slow = record("health[api]")
    slow.degraded = ["health[api]: [RESPONSE_TIME] (900 ms) <= 500 ms",
                     "health[api]: [CERTIFICATE] expires soon"]
    failing = record("health[aux]", "failed", "service-down")
    failing.degraded = ["health[aux]: a warning on a failed check is not shown"]
    found = verdict([slow, record("sse")])
    assert found.green
    assert found.degraded() == [{"key": "health[api]", "message": m} for m in slow.degraded]
    assert found.as_json()["degraded"] == found.degraded()
    assert summary_lines(found)[:3] == [
        ("decision: monitor (all checks passed, 1 degraded; keep monitoring)", GREEN),
        ("  degraded: health[api]: [RESPONSE_TIME] (900 ms) <= 500 ms", YELLOW),
        ("  degraded: health[api]: [CERTIFICATE] expires soon", YELLOW)]
    assert verdict([slow, failing]).degraded() == found.degraded()


def test_checks_that_could_not_run_are_listed_apart() -> None:
    crashed = record("containers[afo-core]", "error", "probe-error",
                     message="permission denied on the Docker socket")
    found = verdict([crashed, record("health[api]", "failed", "service-down"),
                     record("sse", "error", "probe-error", message=None)])
    assert found.probe_errors() == [
        {"key": "sse", "message": "sse error"},
        {"key": "containers[afo-core]", "message": "permission denied on the Docker socket"}]
    assert found.as_json()["probe_errors"] == found.probe_errors()
    assert (found.decision, found.symptoms) == ("restart", ["service-down", "probe-error"])
    nothing = record("sse", "error", "probe-error")
    nothing.message = None
    assert verdict([nothing]).probe_errors() == [{"key": "sse", "message": ""}]


def test_summary_of_a_preflight_only_run_decides_nothing() -> None:
    """`pytest -m preflight`: no decision line and no observe timing, only readiness."""
    found = verdict([record("preflight[env-file]", group="preflight"),
                     record("preflight[pidfile]", group="preflight")], duration_s=99.0)
    assert summary_lines(found) == [("preflight: 2 of 2 ready", GREEN)]
