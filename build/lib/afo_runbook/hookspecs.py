"""Hooks the runbook plugin calls, for recovery actions and evidence renderers to implement."""

from __future__ import annotations

from typing import Any

import pytest


def pytest_runbook_verdict(config: pytest.Config, run: Any, verdict: Any) -> None:
    """The observe run's verdict is decided (controller only); recovery acts on it here."""


def pytest_runbook_evidence(item: pytest.Item, report: pytest.TestReport,
                            data: dict[str, Any]) -> None:
    """A check reported what it saw (worker side); renderers may attach it to the report."""


@pytest.hookspec(firstresult=True)
def pytest_runbook_recover(action: str, context: Any) -> Any:
    """Run the recovery `action` ("rollback", "restart", ...) once and return its
    `recovery.steps.ActionResult`, or None when this implementation does not handle it."""
