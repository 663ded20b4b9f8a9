"""Runbook 3.3, confirm the recovery: observe again (all of section 1) and time it.

Time-to-recover runs from the decision to the green re-observation, and is said the way the
runbook's drill says it: "Rollback completed in N seconds".
"""

from __future__ import annotations

from dataclasses import dataclass

from afo_runbook.observe import CheckResult, Deadline, observe
from recovery.context import RecoveryContext


@dataclass
class Confirmation:
    green: bool
    results: list[CheckResult]

    def failing(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok and not r.skipped]

    def summary(self) -> str:
        if self.green:
            return f"observed again: all {len(self.results)} checks green"
        return "observed again: still red: " + "; ".join(
            f"{r.key} {r.symptom}: {r.message}" for r in self.failing())


def confirm(context: RecoveryContext) -> Confirmation:
    config = context.config
    results = observe(config, context.secret, Deadline.after(config.budgets.observe))
    failing = [r for r in results if not r.ok and not r.skipped]
    return Confirmation(not failing and bool(results), results)


def completed_line(action: str, ttr_s: float) -> str:
    """The runbook's own words: `echo "Rollback completed in $((T1-T0)) seconds"`."""
    return f"{action.capitalize()} completed in {ttr_s:.1f} seconds"
