"""Runbook 2.2, "record the evidence": the append-only incident log.

Two files, written together under one lock:
  <path>          the runbook's own lines, so `grep "INCIDENT\\|RECOVERY"` still works:
                  2026-11-26T10:30:00Z: INCIDENT - guard-open: ... [inc-...]
                  2026-11-26T10:30:00Z: Evidence: guard[no-secret]: ... [inc-...]
                  2026-11-26T10:30:00Z: Decision: rollback (priority immediate) [inc-...]
                  2026-11-26T10:30:02Z: RECOVERY - rollback: recovered, TTR 2.1 s [inc-...]
  <path>.jsonl    one JSON object per event, with the incident id linking one incident's
                  events (read by `afo-runbook metrics`).

Every event is written with a single write() per file under a filelock and fsynced before the
lock is released: concurrent runs and xdist workers never interleave or tear a line, and a run
killed with SIGKILL leaves every earlier line whole. Text is redacted before it is written.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from afo_runbook.verdict import iso

LOCK_TIMEOUT = 10.0


class IncidentLogError(Exception):
    """The incident log cannot be written (the verdict must still reach the operator)."""


def jsonl_path(path: Path) -> Path:
    """afo-incidents.log -> afo-incidents.jsonl (any other name gets .jsonl appended)."""
    if path.suffix == ".log":
        return path.with_suffix(".jsonl")
    return path.with_name(path.name + ".jsonl")


def new_incident_id(at: float) -> str:
    return f"inc-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(at))}-{secrets.token_hex(3)}"


@dataclass
class Event:
    kind: str  # incident | recovery
    at: float
    incident_id: str
    lines: list[str]  # the human lines, without timestamp
    data: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        stamp = iso(self.at)
        # One log line per line of the event, whatever a detail (a log tail) contains.
        flat = (" | ".join(part.strip() for part in line.splitlines() if part.strip())
                for line in self.lines)
        return "".join(f"{stamp}: {line} [{self.incident_id}]\n" for line in flat)

    def json_line(self) -> str:
        record = {"ts": iso(self.at), "at": round(self.at, 3), "event": self.kind,
                  "incident_id": self.incident_id, **self.data}
        return json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"


class IncidentLog:
    def __init__(self, path: Path, redact: Callable[[str], str] = lambda s: s) -> None:
        self.path = path
        self.jsonl = jsonl_path(path)
        self.redact = redact
        self._lock = FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT)

    def append(self, event: Event) -> None:
        text = self.redact(event.text()).encode("utf-8")
        record = self.redact(event.json_line()).encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                _append(self.path, text)
                _append(self.jsonl, record)
        except Timeout:
            raise IncidentLogError(f"{self.path}: locked by another writer for "
                                   f"{LOCK_TIMEOUT:g} s") from None
        except OSError as exc:
            raise IncidentLogError(f"{self.path}: cannot write: {exc.strerror or exc}") from None

    def events(self) -> Iterator[dict[str, Any]]:
        """The JSONL events, oldest first; malformed lines are skipped."""
        try:
            with open(self.jsonl, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(record, dict) and "event" in record:
                        yield record
        except OSError:
            return  # nothing readable; a write will say what is wrong

    def open_incident(self, target: str) -> dict[str, Any] | None:
        """The newest incident for `target` that no recovery has closed yet."""
        current: dict[str, Any] | None = None
        for record in self.events():
            if record.get("target") != target:
                continue
            if record["event"] == "incident" and current is None:
                current = record
            elif record["event"] == "recovery" and record.get("closed") and current and \
                    record.get("incident_id") == current.get("incident_id"):
                current = None
        return current

    def recovered_since(self, target: str, since: float) -> dict[str, Any] | None:
        """A recovery of `target` that closed its incident after `since` (another run's)."""
        found = None
        for record in self.events():
            if (record["event"] == "recovery" and record.get("target") == target
                    and record.get("closed") and float(record.get("at", 0)) >= since):
                found = record
        return found


def _append(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        view = memoryview(data)
        while view:  # a short write continues where it stopped, still under the lock
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the events of runbook 2.2 and 3 ---------------------------------------------------------


def incident_event(verdict: Any, target: str, incident_id: str, at: float) -> Event:
    failing = verdict.failing()
    summary = ", ".join(verdict.symptoms) or "unknown"
    keys = ", ".join(c.key for c in failing)
    lines = [f"INCIDENT - {summary} (failing: {keys})"]
    lines += [f"Evidence: {c.key}: {c.message}" for c in failing]
    lines.append(f"Decision: {verdict.decision} (priority {verdict.priority})")
    data = {
        "target": target,
        "decision": verdict.decision,
        "priority": verdict.priority,
        "symptoms": list(verdict.symptoms),
        "security": any(s in ("guard-open", "secret-unconfigured", "secret-rejected")
                        for s in verdict.symptoms),
        "failing": {c.key: c.symptom for c in failing},
        "evidence": {c.key: c.message for c in failing},
        "observed_at": round(verdict.started_at, 3),
        "config": verdict.config_path,
    }
    return Event("incident", at, incident_id, lines, data)


def recovery_event(target: str, incident_id: str, at: float, *, action: str, outcome: str,
                   automatic: bool, closed: bool, ttr_s: float | None, detail: str,
                   steps: Iterable[dict[str, Any]] = ()) -> Event:
    ttr = f", TTR {ttr_s:.1f} s" if ttr_s is not None else ""
    line = f"RECOVERY - {action}: {outcome}{ttr}; {detail}"
    data = {"target": target, "action": action, "outcome": outcome, "automatic": automatic,
            "closed": closed, "ttr_s": None if ttr_s is None else round(ttr_s, 3),
            "detail": detail, "steps": list(steps)}
    return Event("recovery", at, incident_id, [line], data)
