"""Runbook 2.1: each symptom -> its decision; several -> security first, then most urgent."""

from __future__ import annotations

import pytest

from afo_runbook.decision import DEFAULT_ROWS, SYMPTOMS, decide

EXPECTED = {
    "guard-open": ("rollback", "immediate"),
    "secret-unconfigured": ("rollback", "immediate"),
    "secret-rejected": ("rollback", "immediate"),
    "ports-wrong": ("rollback", "immediate"),
    "service-down": ("restart", "immediate"),
    "heartbeat-failure": ("review-restart", "within-5-min"),
    "container-exited": ("logs-then-restart", "immediate"),
    "route-missing": ("escalate", "immediate"),
    "probe-error": ("escalate", "immediate"),
}


def test_every_symptom_has_a_row():
    assert set(SYMPTOMS) == set(EXPECTED) == {row.symptom for row in DEFAULT_ROWS}


@pytest.mark.parametrize("symptom", SYMPTOMS)
def test_each_symptom_decides(symptom):
    decision = decide([symptom], DEFAULT_ROWS)
    assert (decision.decision, decision.priority) == EXPECTED[symptom]
    assert [row.symptom for row in decision.rows] == [symptom]


def test_nothing_failed_is_monitor():
    decision = decide([], DEFAULT_ROWS)
    assert (decision.decision, decision.priority, decision.symptoms) == ("monitor", "none", ())


@pytest.mark.parametrize(("symptoms", "decision"), [
    (["service-down", "guard-open"], "rollback"),
    (["heartbeat-failure", "secret-unconfigured"], "rollback"),
    (["service-down", "container-exited"], "logs-then-restart"),
    (["heartbeat-failure", "service-down"], "restart"),
    (["ports-wrong", "container-exited", "heartbeat-failure"], "rollback"),
])
def test_security_first_then_most_urgent(symptoms, decision):
    assert decide(symptoms, DEFAULT_ROWS).decision == decision


def test_unknown_symptom_is_an_error():
    with pytest.raises(ValueError, match="no decision row"):
        decide(["cosmic-rays"], DEFAULT_ROWS)
