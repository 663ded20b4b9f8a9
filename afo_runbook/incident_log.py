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

The JSONL twin is tamper-evident: each event carries `prev`, the SHA-256 of the previous
line's bytes (the first line: of GENESIS), computed under the same lock, so concurrent writers
still make one chain. `afo-runbook log verify` names the first line that was changed, removed
or inserted, and `afo-runbook metrics` refuses a broken chain: an MTTR cannot be improved by
deleting an incident.
"""

from __future__ import annotations

import contextlib
import hashlib
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
GENESIS = b"afo-runbook incident log, chain v1"


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

    def json_line(self, prev: str = "") -> str:
        record = {"ts": iso(self.at), "at": round(self.at, 3), "event": self.kind,
                  "incident_id": self.incident_id, **self.data}
        if prev:
            record["prev"] = prev
        return json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"


class IncidentLog:
    def __init__(self, path: Path, redact: Callable[[str], str] = lambda s: s) -> None:
        self.path = path
        self.jsonl = jsonl_path(path)
        self.redact = redact
        self._lock = FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the log's lock across a read, a decision and an append (one step); appends
        inside take it again (it is reentrant)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                yield
        except Timeout:
            raise IncidentLogError(f"{self.path}: locked by another writer for "
                                   f"{LOCK_TIMEOUT:g} s") from None
        except OSError as exc:
            raise IncidentLogError(f"{self.path}: cannot write: {exc.strerror or exc}") from None

    def append(self, event: Event) -> None:
        """Both files get the whole event, or neither gets any of it: a write that fails
        (ENOSPC, EFBIG, EIO) is undone by truncating back to the sizes they had."""
        text = self.redact(event.text()).encode("utf-8")
        with self.locked():
            # The chain link is read and written under the lock: one chain, any writers.
            record = self.redact(event.json_line(line_hash(_last_line(self.jsonl))))
            sizes = {path: _size(path) for path in (self.path, self.jsonl)}
            try:
                _append(self.path, text)
                _append(self.jsonl, record.encode("utf-8"))
            except OSError as exc:
                for path, size in sizes.items():
                    with contextlib.suppress(OSError):
                        _truncate(path, size)
                raise IncidentLogError(f"{self.path}: cannot write: {exc.strerror or exc}; "
                                       "nothing of this event was recorded") from None

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
        """The oldest incident of `target` that no recovery has closed (its first event).

        Every incident of the target counts: a closed first incident must not hide a later
        one that is still open (older logs may hold two for one outage)."""
        open_ones: dict[str, dict[str, Any]] = {}
        for record in self.events():
            if record.get("target") != target:
                continue
            incident_id = record.get("incident_id")
            if record["event"] == "incident":
                open_ones.setdefault(incident_id, record)
            elif record["event"] == "recovery" and record.get("closed"):
                open_ones.pop(incident_id, None)
        return next(iter(open_ones.values()), None)

    def recovered_since(self, target: str, since: float) -> dict[str, Any] | None:
        """A recovery of `target` that closed its incident after `since` (another run's)."""
        found = None
        for record in self.events():
            if (record["event"] == "recovery" and record.get("target") == target
                    and record.get("closed") and float(record.get("at", 0)) >= since):
                found = record
        return found


def line_hash(line: bytes | None) -> str:
    """The link to a line: SHA-256 of its bytes without the newline (None: the genesis)."""
    return hashlib.sha256(GENESIS if line is None else line.rstrip(b"\n")).hexdigest()


def _last_line(path: Path) -> bytes | None:
    """The last complete line of a file, read from its end (None: empty or missing)."""
    try:
        with open(path, "rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            if end == 0:
                return None
            chunk, position = b"", end
            while position > 0:
                step = min(4096, position)
                position -= step
                fh.seek(position)
                chunk = fh.read(step) + chunk
                body = chunk[:-1] if chunk.endswith(b"\n") else chunk
                newline = body.rfind(b"\n")
                if newline != -1:
                    return body[newline + 1:]
            return chunk.rstrip(b"\n")
    except FileNotFoundError:
        return None


@dataclass
class ChainReport:
    lines: int
    legacy: int  # leading lines from before the chain (no `prev`), accepted as they are
    problem: str | None = None  # the first break, naming its line

    @property
    def whole(self) -> bool:
        return self.problem is None


def verify_chain(jsonl: Path) -> ChainReport:
    """Check every `prev` link; the first break names the line changed, removed or inserted."""
    try:
        raw = jsonl.read_bytes()
    except FileNotFoundError:
        return ChainReport(0, 0)
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines and _prev_of(lines[-1]) is None:
        lines.pop()  # a torn trailing fragment (an older version's interrupted write): ignored
    hashes = [line_hash(None)] + [line_hash(line) for line in lines]  # hashes[i]: before i
    legacy, chained = 0, False
    for index, line in enumerate(lines):
        number = index + 1
        prev = _prev_of(line)
        if prev is None:
            if chained:
                return ChainReport(len(lines), legacy, f"line {number}: has no chain link: "
                                   "it was inserted, or changed")
            legacy += 1
            continue
        chained = True
        if prev == hashes[index]:
            continue
        earlier = [j for j in range(index) if hashes[j] == prev]
        if earlier and earlier[-1] == index - 1:
            # This line skips the one before it: that one was inserted, unless the next line
            # links to it, and this one is the intruder sharing its predecessor.
            following = _prev_of(lines[index + 1]) if index + 1 < len(lines) else None
            intruder = number if following == hashes[index] else number - 1
            problem = f"line {intruder}: inserted (it breaks the chain's order)"
        elif earlier:
            problem = (f"lines {earlier[-1] + 1}-{number - 1}: inserted (line {number} links "
                       f"to line {earlier[-1]})")
        elif number == 1:
            problem = "line 1: does not link to the start of the log: a line before it was removed"
        else:
            problem = (f"line {number - 1}: changed, or a line after it was removed (line "
                       f"{number} does not link to it)")
        return ChainReport(len(lines), legacy, problem)
    return ChainReport(len(lines), legacy)


def _prev_of(line: bytes) -> str | None:
    try:
        prev = json.loads(line).get("prev")
    except (ValueError, AttributeError, RecursionError):  # not JSON, not an object, too deep
        return None
    return prev if isinstance(prev, str) else None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _truncate(path: Path, size: int) -> None:
    if path.exists():
        os.truncate(path, size)


def _append(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        end = os.lseek(fd, 0, os.SEEK_END)
        if end and os.pread(fd, 1, end - 1) != b"\n":
            data = b"\n" + data  # an older version's torn line: never glue onto it
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


# -- `afo-runbook log verify` --------------------------------------------------------------------


def add_log_parser(subparsers: Any) -> None:
    """`afo-runbook log verify [--log PATH | --runbook-config PATH]`: check the hash chain."""
    log = subparsers.add_parser("log", help="the incident log: `log verify` checks its chain")
    actions = log.add_subparsers(dest="log_command", required=True)
    verify = actions.add_parser("verify", help="exit 0 if the chain is whole, 1 naming the "
                                "first line changed, removed or inserted")
    source = verify.add_mutually_exclusive_group()
    source.add_argument("--log", metavar="PATH", help="the text log (its .jsonl twin is read)")
    source.add_argument("--runbook-config", metavar="PATH",
                        help="read [incident_log] path from this runbook.toml")
    verify.set_defaults(handler=verify_command)


def verify_command(args: Any) -> int:
    from afo_runbook.metrics import UsageError, _log_paths

    try:
        _, jsonl = _log_paths(args)
        report = verify_chain(jsonl)
    except UsageError as exc:
        print(f"afo-runbook log verify: {exc}")
        return 2
    except OSError as exc:
        print(f"afo-runbook log verify: cannot read {exc.filename}: {exc.strerror or exc}")
        return 2
    if report.whole:
        legacy = f" ({report.legacy} older lines before the chain)" if report.legacy else ""
        print(f"{jsonl}: the chain is whole: {report.lines} events{legacy}")
        return 0
    print(f"{jsonl}: the chain is broken: {report.problem}")
    return 1
