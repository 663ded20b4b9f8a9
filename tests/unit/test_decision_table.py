"""Runbook 2.1 in-process: the symptom table, its ordering, and `[[decision]]` overrides.

The default table puts every security row at `immediate` + `rollback`, so with the defaults
alone "security first" and "most urgent first" agree and a lost security rule would go
unseen. The overrides below make a security row *less* urgent than another symptom: only the
security-first rule can then put it in front.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from afo_runbook.config import parse_config
from afo_runbook.decision import (
    DEFAULT_ROWS,
    MONITOR,
    SECURITY_SYMPTOMS,
    SYMPTOMS,
    Decision,
    DecisionRow,
    decide,
)

DEFAULTS = {row.symptom: row for row in DEFAULT_ROWS}


def table(*overrides: dict[str, Any]) -> tuple[DecisionRow, ...]:
    """The decision table as the config loader builds it from `[[decision]]` tables."""
    return parse_config(Path("/etc/afo/runbook.toml"), {"decision": list(overrides)}).decision


@pytest.mark.parametrize("row", DEFAULT_ROWS, ids=lambda row: row.symptom)
def test_one_symptom_decides_by_its_own_row(row: DecisionRow) -> None:
    """A lone symptom takes its row's action and priority, and names only itself."""
    assert decide([row.symptom], DEFAULT_ROWS) == Decision(
        row.action, row.priority, (row.symptom,), (row,))


def test_nothing_failed_is_monitor() -> None:
    """Empty names (a passing check has no symptom) are not symptoms."""
    assert decide([], DEFAULT_ROWS) == MONITOR
    assert decide(["", ""], DEFAULT_ROWS) == MONITOR
    assert (MONITOR.decision, MONITOR.priority, MONITOR.rows) == ("monitor", "none", ())


def test_unknown_symptoms_are_named_in_order() -> None:
    """A check naming a symptom the table lacks is a bug to report, not a silent monitor."""
    with pytest.raises(ValueError, match=r"^no decision row for symptom\(s\): cosmic, rays$"):
        decide(["rays", "service-down", "cosmic"], DEFAULT_ROWS)


def test_a_symptom_seen_twice_counts_once() -> None:
    decision = decide(["service-down", "service-down"], DEFAULT_ROWS)
    assert decision.symptoms == ("service-down",)
    assert decision.rows == (DEFAULTS["service-down"],)


@pytest.mark.parametrize("security", sorted(SECURITY_SYMPTOMS))
def test_security_first_even_when_its_row_is_less_urgent(security: str) -> None:
    """Principle 2: a security symptom decides although its (overridden) row is the least
    urgent one seen. Sorting by urgency alone would let service-down's restart win."""
    rows = table({"symptom": security, "priority": "within-5-min", "action": "review-restart"})
    for seen in ([security, "service-down", "container-exited"],
                 ["container-exited", "service-down", security]):
        decision = decide(seen, rows)
        assert (decision.decision, decision.priority) == ("review-restart", "within-5-min")
        assert decision.symptoms == (security, "container-exited", "service-down")
        assert decision.rows[0].overridden is True


def test_ports_wrong_is_not_a_security_symptom() -> None:
    """Deployment drift is urgent, but not security: once overridden it queues by urgency."""
    rows = table({"symptom": "ports-wrong", "priority": "within-5-min", "action": "restart"})
    decision = decide(["ports-wrong", "container-exited"], rows)
    assert decision.symptoms == ("container-exited", "ports-wrong")
    assert decision.decision == "logs-then-restart"


def test_priority_outranks_action() -> None:
    """An `immediate` restart goes before a `within-5-min` rollback."""
    rows = table({"symptom": "service-down", "priority": "within-5-min", "action": "rollback"})
    decision = decide(["service-down", "container-exited"], rows)
    assert decision.symptoms == ("container-exited", "service-down")
    assert (decision.decision, decision.priority) == ("logs-then-restart", "immediate")


def test_at_equal_priority_the_more_urgent_action_wins() -> None:
    """rollback > logs-then-restart > restart > review-restart, whatever order they came in."""
    rows = table({"symptom": "heartbeat-failure", "priority": "immediate"},
                 {"symptom": "ports-wrong", "action": "restart"})
    decision = decide(["heartbeat-failure", "ports-wrong", "container-exited"], rows)
    assert decision.symptoms == ("container-exited", "ports-wrong", "heartbeat-failure")
    assert [row.action for row in decision.rows] == [
        "logs-then-restart", "restart", "review-restart"]


def test_rows_equal_in_urgency_keep_the_table_order() -> None:
    """Two rows alike in priority and action follow the table's own order, so the verdict
    does not depend on which check happened to report first."""
    rows = table({"symptom": "heartbeat-failure", "priority": "immediate", "action": "restart"})
    for seen in (["heartbeat-failure", "service-down"], ["service-down", "heartbeat-failure"]):
        assert decide(seen, rows).symptoms == ("service-down", "heartbeat-failure")
    security = ["secret-rejected", "guard-open", "secret-unconfigured"]
    assert decide(security, DEFAULT_ROWS).symptoms == (
        "guard-open", "secret-unconfigured", "secret-rejected")


def test_the_first_row_gives_decision_and_priority() -> None:
    rows = table({"symptom": "guard-open", "priority": "within-5-min", "action": "restart",
                  "cause": "drill"})
    decision = decide(iter(["guard-open"]), iter(rows))
    assert decision == Decision("restart", "within-5-min", ("guard-open",),
                                (DecisionRow("guard-open", "drill", "within-5-min", "restart",
                                             overridden=True),))


def test_every_symptom_at_once() -> None:
    """Security rows first in table order, then by priority, then by action: the two that
    escalate (immediate) come before the heartbeat's review-restart (within 5 minutes)."""
    decision = decide(reversed(SYMPTOMS), DEFAULT_ROWS)
    assert decision.symptoms == (
        "guard-open", "secret-unconfigured", "secret-rejected", "ports-wrong",
        "container-exited", "service-down", "route-missing", "probe-error",
        "heartbeat-failure")
    assert decision.decision == "rollback"


@pytest.mark.parametrize("symptom", ["route-missing", "probe-error"])
def test_what_no_restart_can_fix_goes_to_people(symptom: str) -> None:
    """A 404 on a configured URL or a check that could not run: escalate, never act."""
    decision = decide([symptom, "heartbeat-failure"], DEFAULT_ROWS)
    assert (decision.decision, decision.priority) == ("escalate", "immediate")
    assert decide([symptom, "service-down"], DEFAULT_ROWS).decision == "restart"


def test_row_as_dict_is_what_the_verdict_json_shows() -> None:
    row = DecisionRow("service-down", "service down", "immediate", "restart", overridden=True)
    assert row.as_dict() == {"symptom": "service-down", "cause": "service down",
                             "priority": "immediate", "action": "restart", "overridden": True}
