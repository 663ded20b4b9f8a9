"""What a check found, and the observe run's clock: small types every process needs.

Kept free of network libraries so that the pytest controller (which only decides) and the
incident tools import them cheaply.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

GROUPS: tuple[str, ...] = ("health", "guard", "sse", "containers")
# The check could not be carried out: our problem, never the service's (see decision.py).
PROBE_ERROR = "probe-error"
# The least a network call gets, even when the observe budget is nearly spent.
MIN_CALL_TIMEOUT = 0.5


@dataclass
class CheckResult:
    key: str  # "health[api]", "guard[no-secret]", "sse", "containers[afo-core]"
    group: str
    ok: bool
    symptom: str | None
    message: str  # one line: what was seen against what was expected
    evidence: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None  # why the check could not run (a skip, never a pass)
    degraded: list[str] = field(default_factory=list)  # passed, with warnings (slow, cert)

    @property
    def outcome(self) -> str:
        if self.skipped:
            return "skipped"
        if self.symptom == PROBE_ERROR:
            return "error"  # not measured (Argo Rollouts' Error), not a failed measurement
        return "passed" if self.ok else "failed"


@dataclass(frozen=True)
class Deadline:
    """The whole observe run's budget (wall clock, so xdist workers share it)."""

    at: float

    @classmethod
    def after(cls, seconds: float, start: float | None = None) -> Deadline:
        return cls((time.time() if start is None else start) + seconds)

    def remaining(self) -> float:
        return self.at - time.time()

    def cap(self, seconds: float) -> float:
        return max(MIN_CALL_TIMEOUT, min(seconds, self.remaining()))
