"""What a recovery action did, step by step, with times (the evidence of runbook section 3).

Every action (rollback, restart, recreate, ...) returns an `ActionResult`; its steps are timed
with `ActionResult.step(...)`, so the verdict, the incident log and the HTML report can show
what happened and how long each part took.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


class StepFailed(Exception):
    """A step could not do its part; the message says what and why, in one line."""


@dataclass
class Step:
    name: str
    started_at: float  # wall clock
    duration_s: float = 0.0
    ok: bool = True
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "duration_s": round(self.duration_s, 3), "ok": self.ok,
                "detail": self.detail}


@dataclass
class ActionResult:
    action: str  # "rollback", "restart", "recreate", ...
    target: str  # a container name, or the process's start command
    ok: bool = False
    steps: list[Step] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    duration_s: float = 0.0
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str) -> Iterator[Step]:
        """Time a step; a StepFailed inside marks it (and the action) failed and re-raises."""
        step = Step(name, time.time())
        self.steps.append(step)
        began = time.monotonic()
        try:
            yield step
        except StepFailed as exc:
            step.ok = False
            step.detail = step.detail or str(exc)
            self.error = str(exc)
            raise
        finally:
            step.duration_s = time.monotonic() - began

    def finish(self, ok: bool) -> ActionResult:
        self.ok = ok
        self.duration_s = time.time() - self.started_at
        return self

    def as_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "target": self.target,
            "ok": self.ok,
            "duration_s": round(self.duration_s, 3),
            "error": self.error,
            "steps": [s.as_json() for s in self.steps],
            "details": self.details,
        }
