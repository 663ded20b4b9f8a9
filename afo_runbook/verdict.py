"""Runbook section 2: the verdict of one observe run, for the terminal and as JSON."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from afo_runbook.decision import Decision, DecisionRow, decide
from afo_runbook.results import GROUPS, PROBE_ERROR

# What a failing check names when it broke before it could say (an exception in the check,
# its worker crashing, the timeout backstop): the check was not carried out. A bug in the
# prober must never restart or roll back the service.
FALLBACK_SYMPTOM = {group: PROBE_ERROR for group in GROUPS}


@dataclass
class CheckRecord:
    id: str
    key: str  # "health[api]", "guard[no-secret]", "sse", "containers[afo-core]"
    group: str
    outcome: str  # passed | failed | skipped | error
    symptom: str | None
    duration_s: float
    message: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    recovery: str | None = None  # the action the check's `recovery` marker maps to
    degraded: list[str] = field(default_factory=list)  # passed with warnings

    @property
    def failing(self) -> bool:
        return self.outcome in ("failed", "error")

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "group": self.group,
            "outcome": self.outcome,
            "symptom": self.symptom,
            "duration_s": round(self.duration_s, 3),
            "message": self.message,
            "recovery": self.recovery,
            "degraded": self.degraded,
            "evidence": self.evidence,
        }


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Verdict:
    decision: str
    priority: str
    symptoms: list[str]
    rows: list[DecisionRow]
    started_at: float
    duration_s: float
    observe_budget_s: float
    checks: list[CheckRecord]
    config_path: str
    deselected: list[dict[str, str]] = field(default_factory=list)
    recovery: dict[str, Any] | None = None
    incident_id: str | None = None
    incident_log_error: str | None = None
    decided_at: float = field(default_factory=time.time)
    artifact_errors: list[str] = field(default_factory=list)  # files that could not be written

    @property
    def green(self) -> bool:
        return self.decision == "monitor"

    @property
    def over_budget(self) -> bool:
        return self.duration_s > self.observe_budget_s

    def failing(self) -> list[CheckRecord]:
        return [c for c in self.checks if c.failing]

    def degraded(self) -> list[dict[str, str]]:
        """Checks that passed with a warning (slow, a certificate expiring soon)."""
        return [{"key": c.key, "message": message} for c in self.checks if not c.failing
                for message in c.degraded]

    def probe_errors(self) -> list[dict[str, str]]:
        """Checks that could not be carried out: kept apart from the failed ones."""
        return [{"key": c.key, "message": c.message or ""} for c in self.checks
                if c.symptom == PROBE_ERROR]

    def as_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "priority": self.priority,
            "symptoms": self.symptoms,
            "started_at": iso(self.started_at),
            "decided_at": iso(self.decided_at),
            "duration_s": round(self.duration_s, 3),
            "observe_budget_s": self.observe_budget_s,
            "over_budget": self.over_budget,
            "rows": [row.as_dict() for row in self.rows],
            "degraded": self.degraded(),
            "probe_errors": self.probe_errors(),
            "config": self.config_path,
            "deselected": self.deselected,
            "recovery": self.recovery,
            "incident_id": self.incident_id,
            "incident_log_error": self.incident_log_error,
            "artifact_errors": self.artifact_errors,
            "checks": [c.as_json() for c in self.checks],
        }


def build_verdict(records: list[CheckRecord], table: tuple[DecisionRow, ...], *,
                  started_at: float, duration_s: float, observe_budget_s: float,
                  config_path: str, deselected: list[dict[str, str]] | None = None) -> Verdict:
    ordered = sorted(records, key=lambda r: (_group_rank(r.group), r.id))
    # Only section 1 decides; preflight findings are listed, not symptoms of the target.
    decision: Decision = decide((r.symptom for r in ordered
                                 if r.failing and r.symptom and r.group in GROUPS), table)
    return Verdict(
        decision=decision.decision,
        priority=decision.priority,
        symptoms=list(decision.symptoms),
        rows=list(decision.rows),
        started_at=started_at,
        duration_s=duration_s,
        observe_budget_s=observe_budget_s,
        checks=ordered,
        config_path=config_path,
        deselected=list(deselected or []),
    )


def _group_rank(group: str) -> int:
    return GROUPS.index(group) if group in GROUPS else len(GROUPS)


def write_json(verdict: Verdict, path: Path, redact: Any = None) -> None:
    """Write atomically, so a reader never sees half a verdict."""
    data = verdict.as_json()
    if redact is not None:
        data = redact(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no stray half file
        raise


def summary_lines(verdict: Verdict) -> list[tuple[str, dict[str, bool]]]:
    """The short verdict printed at the end of the run: (text, terminal markup)."""
    red, green = {"red": True, "bold": True}, {"green": True, "bold": True}
    yellow = {"yellow": True}
    lines: list[tuple[str, dict[str, bool]]] = []
    observed = [c for c in verdict.checks if c.group in GROUPS]
    preflight = [c for c in verdict.checks if c.group == "preflight"]
    if preflight:
        bad = [c for c in preflight if c.failing]
        counted = [c for c in preflight if c.outcome != "skipped"]
        lines.append((f"preflight: {len(counted) - len(bad)} of {len(counted)} ready"
                      + ("; a rollback could NOT run now" if bad else ""), red if bad else green))
        lines += [(f"  {c.key}: {c.message}", {}) for c in bad]
    if not observed:
        pass  # a preflight-only run decides nothing
    elif verdict.green:
        degraded = {item["key"] for item in verdict.degraded()}
        lines.append(("decision: monitor (all checks green; keep monitoring)" if not degraded
                      else f"decision: monitor (all checks passed, {len(degraded)} degraded; "
                      "keep monitoring)", green))
    else:
        lines.append((f"decision: {verdict.decision} (priority {verdict.priority}); "
                      f"symptoms: {', '.join(verdict.symptoms)}", red))
        for row in verdict.rows:
            lines.append((f"  table: {row.symptom} -> {row.cause} -> {row.priority} -> "
                          f"{row.action}{' (overridden)' if row.overridden else ''}", {}))
        for check in verdict.failing():
            if check.group in GROUPS:
                lines.append((f"  {check.symptom or '?'}: {check.id}: {check.message}", {}))
    for item in verdict.degraded():
        lines.append((f"  degraded: {item['message']}", yellow))  # the message names its key
    skipped = [c for c in verdict.checks if c.outcome == "skipped"]
    for check in skipped:
        lines.append((f"  skipped: {check.id}: {check.message}", yellow))
    for item in verdict.deselected:
        lines.append((f"  deselected: {item['group']}: {item['reason']}", yellow))
    timing = f"observe took {verdict.duration_s:.1f} s of its {verdict.observe_budget_s:g} s budget"
    if observed and verdict.over_budget:
        lines.append((timing + ": OVER BUDGET", red))
    elif observed:
        lines.append((timing, {}))
    if verdict.recovery:
        outcome = verdict.recovery.get("outcome")
        markup = green if outcome == "recovered" else yellow if outcome == "not-run" else red
        lines.append((f"recovery: {verdict.recovery.get('summary', '')}", markup))
    if verdict.incident_id:
        lines.append((f"incident: {verdict.incident_id}", {}))
    if verdict.incident_log_error:
        lines.append((f"incident log NOT written: {verdict.incident_log_error}", red))
    for error in verdict.artifact_errors:
        lines.append((f"artifact NOT written: {error}", red))
    return lines
