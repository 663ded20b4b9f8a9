"""Runbook section 6, the monthly performance targets, computed from the incident log.

    afo-runbook metrics [--log PATH | --runbook-config PATH] [--window 7d]... [--now ISO]
                        [--json PATH] [--html PATH]

Reads the JSONL twin of the incident log (runbook 2.2, see afo_runbook.incident_log) and the text
log (for the weekly report). Exit code 0 when every target is met in every window, 1 when one
is missed, 2 on a usage error (a log that does not exist is not one: it means no incidents).

Definitions. Times are Unix seconds; days are UTC. A window of length L ends at `now`:
W = [now - L, now].

  Events. Each JSONL line is one event. A line is used when it is a JSON object with `event`
  "incident" or "recovery", a non-empty string `incident_id` and a time `at` (a finite number
  of Unix seconds, 1970 to 9999). An incident event also needs a string `target` and, where
  present, a time `observed_at`, a boolean `security` and a list of strings `symptoms`. A
  recovery event also needs a string `outcome` and booleans `automatic` and `closed`. Any
  other line is malformed: skipped and counted (blank lines are not counted), except an
  object whose `event` is another string: a kind this version does not know, ignored. Events
  with `at` > now are ignored too (a report says what was known at `now`), as are recoveries
  of an incident id that has no incident event.

  Incident i: all events sharing one incident_id, however many incident events repeat it.
    start(i)     = the smallest `observed_at` of its incident events (`at` where absent):
                   its first failing observation.
    close(i)     = the smallest `at` of its recovery events with `closed: true` (an automatic
                   "recovered" one first, when an older log holds a manual close too);
                   with none, i is open.
    end(i)       = max(start(i), close(i)) if closed, else now (an open incident is down
                   until the window ends).
    automatic(i) = i is closed and the recovery event that closed it has `automatic: true`
                   and `outcome: "recovered"` (a failed automatic recovery followed by a
                   manual resolution is not automatic).
    security(i)  = any of its incident events has `security: true` or a symptom guard-open,
                   secret-unconfigured or secret-rejected.
    i is in W    when start(i) <= now and (i is open or end(i) >= now - L).
    downtime(i)  = max(0, min(end(i), now) - max(start(i), now - L)): clipped to W.
  I = the incidents in W; D = the union of the intervals [start(i), end(i)] of I, clipped to W.
  Targets overlapping in time count once.

  MTTR                    = mean of end(i) - start(i) over the i in I with
                            now - L <= close(i) <= now, and of now - start(i) over the open
                            i in I (counted at their age so far: an incident open longer
                            than the target already misses it); I empty: "n/a" (met).
                            Target: MTTR < 5 min (300 s).
  availability            = 100 * (1 - |D| / L) %, rounded to 9 decimals.
                            Target: availability > 99.9 %.
  security incidents      = the number of i in I with security(i). Target: = 0.
  automatic recovery rate = 100 * |{i in I: automatic(i)}| / |I| % (open incidents count in
                            |I|); I empty: "n/a" (met). Target: > 95 %.
  per day (UTC date d, clipped to W): incidents = |{i: start(i) in W, on d}|,
                            downtime = |D on d| in minutes (the days add up to |D|).
  weekly report           = the last 20 lines of the text log whose first word after the
                            timestamp (after the first ": ") is INCIDENT or RECOVERY: the
                            runbook's `grep "INCIDENT\\|RECOVERY" /var/log/afo-*.log | tail -20`
                            without the grep's false hits on Evidence and Decision lines that
                            quote those words.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from html import escape
from pathlib import Path
from typing import Any

from afo_runbook.decision import SECURITY_SYMPTOMS
from afo_runbook.metrics_chart import DayBar, daily_chart

PROG = "afo-runbook metrics"
DAY = 86400.0
DEFAULT_WINDOW = "7d"
WEEKLY_LINES = 20
SHOW_ALL_DAYS = 8  # a 7-day window touches 8 UTC dates
EXIT_MET, EXIT_MISSED, EXIT_USAGE = 0, 1, 2
MAX_TIME = 253402300800.0  # 10000-01-01: beyond it no date can be printed
MAX_WINDOW_S = 3660 * DAY  # ten years: section 6 is about weeks and months
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

MTTR_TARGET_S = 300.0
AVAILABILITY_TARGET_PCT = 99.9
SECURITY_TARGET = 0
AUTOMATIC_TARGET_PCT = 95.0

_UNITS = {"s": (1.0, "second"), "m": (60.0, "minute"), "h": (3600.0, "hour"),
          "d": (DAY, "day"), "w": (7 * DAY, "week")}
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


# -- reading the logs ------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A time in Unix seconds, or None. JSON booleans are ints to Python, and json.loads
    accepts NaN and Infinity: none of them is a time; nor is one before 1970 or after 9999."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits is valid JSON
        return None
    return number if math.isfinite(number) and 0 <= number < MAX_TIME else None


def normalize(record: Any) -> dict[str, Any] | None:
    """The event as compute() uses it, or None when it is malformed (see the module docstring).

    An event of a kind this version does not know comes back unchanged: not malformed (a
    newer writer may add kinds), only not used."""
    if not isinstance(record, dict) or not isinstance(record.get("event"), str):
        return None
    kind = record["event"]
    if kind not in ("incident", "recovery"):
        return dict(record)
    incident_id = record.get("incident_id")
    at = _number(record.get("at"))
    if not isinstance(incident_id, str) or not incident_id or at is None:
        return None
    if kind == "incident":
        target = record.get("target")
        observed = record.get("observed_at", at)
        observed_at = _number(observed)
        security = record.get("security", False)
        symptoms = record.get("symptoms", [])
        if not isinstance(target, str) or observed_at is None or not isinstance(security, bool) \
                or not isinstance(symptoms, list) \
                or not all(isinstance(s, str) for s in symptoms):
            return None
        return {**record, "at": at, "observed_at": observed_at, "security": security,
                "symptoms": symptoms}
    target = record.get("target", "")  # a recovery
    if not isinstance(record.get("outcome"), str) or not isinstance(target, str) \
            or not isinstance(record.get("automatic"), bool) \
            or not isinstance(record.get("closed"), bool):
        return None
    return {**record, "at": at, "target": target}


def load_events(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], int]:
    """The valid events of a JSONL incident log, oldest line first, and how many non-blank
    lines were malformed. A missing file is an empty log; an unreadable one raises OSError."""
    events: list[dict[str, Any]] = []
    malformed = 0
    try:
        handle = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return events, 0
    with handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = normalize(json.loads(line))
            except (ValueError, RecursionError):  # not JSON, or nested beyond reason
                record = None
            if record is None:
                malformed += 1
            else:
                events.append(record)
    return events, malformed


def _kind_of_line(line: str) -> str:
    """The word after the timestamp: `2026-11-26T10:30:00Z: INCIDENT - ...` -> INCIDENT."""
    _, sep, rest = line.partition(": ")
    return rest.split(" ", 1)[0] if sep else ""


def weekly_lines(text_log_path: str | os.PathLike[str], n: int = WEEKLY_LINES) -> list[str]:
    """Runbook 6's `grep "INCIDENT\\|RECOVERY" ... | tail -20` on the text log: the last `n`
    INCIDENT and RECOVERY lines (never Evidence or Decision lines). Missing file: none."""
    from collections import deque

    last: deque[str] = deque(maxlen=max(n, 0))
    try:
        with open(text_log_path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if _kind_of_line(line) in ("INCIDENT", "RECOVERY"):
                    last.append(line.rstrip("\r\n"))
    except FileNotFoundError:
        return []
    return list(last)


# -- the numbers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Incident:
    id: str
    target: str
    started_at: float  # the first failing observation
    closed_at: float | None  # the recovery event that closed it; None while open at `now`
    downtime_s: float  # inside the window, this incident alone
    duration_s: float  # start to close, or to `now` while open
    automatic: bool
    security: bool
    outcome: str  # the closing recovery's outcome (recovered, resolved, ...) or "open"
    failed_recoveries: int  # recovery events that did not close it
    symptoms: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "target": self.target,
            "started_at": _iso(self.started_at), "started_at_unix": self.started_at,
            "closed_at": None if self.closed_at is None else _iso(self.closed_at),
            "closed_at_unix": self.closed_at,
            "downtime_s": round(self.downtime_s, 3), "duration_s": round(self.duration_s, 3),
            "open": self.closed_at is None, "outcome": self.outcome,
            "automatic": self.automatic, "security": self.security,
            "failed_recoveries": self.failed_recoveries, "symptoms": list(self.symptoms),
        }


@dataclass(frozen=True)
class Metric:
    key: str  # mttr | availability | security_incidents | automatic_recovery_rate
    label: str
    value: float | int | None  # None: n/a
    unit: str
    display: str
    target_op: str  # "<", ">" or "="
    target: float
    target_display: str
    met: bool

    def as_json(self) -> dict[str, Any]:
        return {"label": self.label, "value": self.value, "unit": self.unit,
                "display": self.display,
                "target": {"op": self.target_op, "value": self.target,
                           "display": self.target_display},
                "met": self.met}


@dataclass(frozen=True)
class Day:
    date: str  # YYYY-MM-DD, UTC
    incidents: int  # started on this day, inside the window
    downtime_s: float  # union downtime on this day, inside the window


@dataclass(frozen=True)
class Report:
    label: str  # "7 days"
    window_s: float
    start: float
    end: float  # = now
    incidents: tuple[Incident, ...]
    downtime_s: float  # the union
    metrics: tuple[Metric, ...]
    days: tuple[Day, ...]
    ignored_events: int = 0  # dicts that compute() itself found malformed
    orphan_recoveries: int = 0
    spec: str = field(default="")  # the --window text, when there was one

    @property
    def all_met(self) -> bool:
        return all(metric.met for metric in self.metrics)

    def metric(self, key: str) -> Metric:
        return next(metric for metric in self.metrics if metric.key == key)

    def as_json(self) -> dict[str, Any]:
        return {
            "window": self.spec or self.label, "label": self.label, "window_s": self.window_s,
            "start": _iso(self.start), "end": _iso(self.end),
            "start_unix": self.start, "end_unix": self.end,
            "downtime_s": round(self.downtime_s, 3),
            "incidents": [incident.as_json() for incident in self.incidents],
            "metrics": {metric.key: metric.as_json() for metric in self.metrics},
            "days": [{"date": d.date, "incidents": d.incidents,
                      "downtime_s": round(d.downtime_s, 3),
                      "downtime_min": round(d.downtime_s / 60, 3)} for d in self.days],
            "all_met": self.all_met,
            "orphan_recoveries": self.orphan_recoveries, "ignored_events": self.ignored_events,
        }


def compute(events: Iterable[dict[str, Any]], *, now: float, window_s: float,
            label: str | None = None) -> Report:
    """Section 6 over the window [now - window_s, now]; pure: no clock, no files."""
    if _number(now) is None or not 0 < window_s <= MAX_WINDOW_S:
        raise ValueError(f"need now in 1970..9999 and a window of at most ten years, "
                         f"got {now!r}, {window_s!r}")
    window_start = now - window_s
    incident_events: dict[str, list[dict[str, Any]]] = {}
    recoveries: dict[str, list[dict[str, Any]]] = {}
    ignored = 0
    for raw in events:
        event = normalize(raw)
        if event is None:
            ignored += 1
        elif event["event"] not in ("incident", "recovery") or event["at"] > now:
            continue  # a kind this version does not use, or not yet written at `now`
        elif event["event"] == "incident":
            incident_events.setdefault(event["incident_id"], []).append(event)
        else:
            recoveries.setdefault(event["incident_id"], []).append(event)
    orphans = sum(1 for key in recoveries if key not in incident_events)

    incidents: list[Incident] = []
    intervals: list[tuple[float, float]] = []
    mttr_samples: list[float] = []
    open_ages: list[float] = []
    for incident_id, found in incident_events.items():
        start = min(e["observed_at"] for e in found)
        if start > now:
            continue
        own = recoveries.get(incident_id, [])
        closes = [e for e in own if e["closed"]]
        # One close per incident now; an older log may hold a manual "resolved" beside the
        # recovery's "recovered": the automatic one is what happened.
        automatic_closes = [e for e in closes if e["automatic"] and e["outcome"] == "recovered"]
        closing = min(automatic_closes or closes, key=lambda e: e["at"], default=None)
        end = max(start, closing["at"]) if closing else now
        if closing and end < window_start:
            continue  # over before the window began
        clipped = (max(start, window_start), min(end, now))
        if clipped[1] > clipped[0]:
            intervals.append(clipped)
        if closing and window_start <= closing["at"] <= now:
            mttr_samples.append(end - start)
        elif not closing:
            open_ages.append(now - start)  # still open: counted at its age so far
        symptoms = tuple(dict.fromkeys(s for e in found for s in e["symptoms"]))
        incidents.append(Incident(
            id=incident_id, target=found[0]["target"], started_at=start,
            closed_at=closing["at"] if closing else None,
            downtime_s=max(0.0, clipped[1] - clipped[0]), duration_s=end - start,
            automatic=bool(closing and closing["automatic"]
                           and closing["outcome"] == "recovered"),
            security=any(e["security"] for e in found) or bool(SECURITY_SYMPTOMS & set(symptoms)),
            outcome=closing["outcome"] if closing else "open",
            failed_recoveries=sum(1 for e in own if not e["closed"]),
            symptoms=symptoms))
    incidents.sort(key=lambda i: (i.started_at, i.id))
    union = _merge(intervals)
    downtime = sum(b - a for a, b in union)
    metrics = _metrics(incidents, mttr_samples, downtime, window_s, open_ages)
    return Report(label=label or _human(window_s), window_s=window_s, start=window_start,
                  end=now, incidents=tuple(incidents), downtime_s=downtime, metrics=metrics,
                  days=_days(incidents, union, window_start, now), ignored_events=ignored,
                  orphan_recoveries=orphans)


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of intervals, as sorted disjoint intervals (overlap counted once)."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _metrics(incidents: list[Incident], mttr_samples: list[float], downtime: float,
             window_s: float, open_ages: list[float] | None = None) -> tuple[Metric, ...]:
    # An incident still open has already lasted its age: it counts at that age (an open
    # incident older than the target already misses it); "n/a" only with no incidents.
    open_ages = open_ages or []
    samples = mttr_samples + open_ages
    mttr = sum(samples) / len(samples) if samples else None
    if mttr is None:
        mttr_display = "n/a"
    elif open_ages:
        mttr_display = (f"{_duration(mttr)} (over {len(mttr_samples)} closed and "
                        f"{len(open_ages)} still open, counted at their age so far)")
    else:
        mttr_display = f"{_duration(mttr)} (over {len(mttr_samples)} closed)"
    # Rounded once, so the value shown, the JSON and the comparison all agree at the boundary.
    availability = round(100.0 * (1.0 - downtime / window_s), 9)
    security = sum(1 for i in incidents if i.security)
    automatic = sum(1 for i in incidents if i.automatic)
    rate = round(100.0 * automatic / len(incidents), 9) if incidents else None
    rate_display = "n/a (no incidents)" if rate is None else \
        f"{_pct(rate, 1, AUTOMATIC_TARGET_PCT)} % ({automatic} of {len(incidents)})"
    return (
        Metric("mttr", "MTTR", None if mttr is None else round(mttr, 3), "s", mttr_display,
               "<", MTTR_TARGET_S, "< 5 min", mttr is None or mttr < MTTR_TARGET_S),
        Metric("availability", "availability", availability, "%",
               f"{_pct(availability, 4, AVAILABILITY_TARGET_PCT)} % "
               f"(down {_duration(downtime)})",
               ">", AVAILABILITY_TARGET_PCT, "> 99.9 %",
               availability > AVAILABILITY_TARGET_PCT),
        Metric("security_incidents", "security incidents", security, "incidents",
               str(security), "=", SECURITY_TARGET, "0", security == SECURITY_TARGET),
        Metric("automatic_recovery_rate", "automatic recovery rate", rate, "%", rate_display,
               ">", AUTOMATIC_TARGET_PCT, "> 95 %", rate is None or rate > AUTOMATIC_TARGET_PCT),
    )


def _days(incidents: list[Incident], union: list[tuple[float, float]], window_start: float,
          now: float) -> tuple[Day, ...]:
    """UTC days from the one holding the window's start to the one holding `now`, each
    clipped to the window; the work grows with days + incidents, not their product."""
    first = math.floor(window_start / DAY) * DAY
    count = max(1, math.ceil((now - first) / DAY))
    started = [0] * count
    down = [0.0] * count
    for incident in incidents:
        if window_start <= incident.started_at <= now:
            # min(): an incident starting exactly at a midnight `now` joins the last day
            started[min(int((incident.started_at - first) // DAY), count - 1)] += 1
    for a, b in union:
        index = int((a - first) // DAY)
        while a < b and index < count:
            day_end = first + (index + 1) * DAY
            down[index] += min(b, day_end) - a
            a, index = day_end, index + 1
    return tuple(Day(_date(first + index * DAY), started[index], down[index])
                 for index in range(count))


# -- formatting ------------------------------------------------------------------------------


def _stamp(at: float) -> datetime:
    # EPOCH + timedelta: valid for every year datetime can hold, unlike fromtimestamp()
    return EPOCH + timedelta(seconds=at)


def _iso(at: float) -> str:
    stamp = _stamp(at)
    if stamp.microsecond:
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _date(at: float) -> str:
    return _stamp(at).strftime("%Y-%m-%d")


def _human(window_s: float) -> str:
    """604800 -> "7 days"; 5400 -> "90 minutes"."""
    for size, word in ((DAY, "day"), (3600.0, "hour"), (60.0, "minute")):
        if window_s % size == 0:
            return _count(window_s / size, word)
    return _count(window_s, "second")


def _count(count: float, word: str) -> str:
    return f"{count:g} {word}{'' if count == 1 else 's'}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _pct(value: float, decimals: int, target: float) -> str:
    """Rounded to `decimals`, with more decimals while the rounded text would sit on the other
    side of (or exactly on) the target than the value does: 99.89996 never shows as 99.9000."""
    exact = Decimal(repr(value))
    goal = Decimal(repr(target))
    while True:
        text = exact.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN)
        if decimals >= 9 or (text > goal) - (text < goal) == (exact > goal) - (exact < goal):
            return str(text)
        decimals += 1


def _met(metric: Metric) -> str:
    return "met" if metric.met else "MISSED"


def _fence(lines: Sequence[str]) -> str:
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


def _range(report: Report) -> str:
    return f"{_iso(report.start)} to {_iso(report.end)}"


def render_markdown(reports: Sequence[Report], *, weekly: Sequence[str] | None = None,
                    log: str | None = None) -> str:
    """The operator's summary: per window a table (metric, value, target, met?) and the days;
    then the weekly report lines."""
    out = ["# AFO runbook 6: performance targets", ""]
    for report in reports:
        out += [f"## Last {report.label} ({_range(report)})", ""]
        verdict = "all targets met" if report.all_met else \
            f"{_count(sum(not m.met for m in report.metrics), 'target')} MISSED"
        if report.incidents:
            out += [f"{_count(len(report.incidents), 'incident')}; {verdict}.", ""]
        else:
            out += [f"No incidents in the last {report.label}; {verdict}.", ""]
        out += ["| metric | value | target | met? |", "|---|---|---|---|"]
        out += [f"| {m.label} | {m.display} | {m.target_display} | {_met(m)} |"
                for m in report.metrics]
        out += ["", "Per day (UTC): incidents started, downtime:", ""]
        # A week lists every day; longer windows only the days with something to say.
        shown = report.days if len(report.days) <= SHOW_ALL_DAYS else \
            [d for d in report.days if d.incidents or d.downtime_s]
        out += [f"- {d.date}: {_count(d.incidents, 'incident')}, "
                f"{d.downtime_s / 60:.1f} min down" for d in shown]
        if len(shown) < len(report.days):
            out.append(f"- the other {_count(len(report.days) - len(shown), 'day')}: "
                       "no incidents, no downtime")
        out.append("")
    command = f'grep "INCIDENT\\|RECOVERY" {log or "afo-incidents.log"} | tail -{WEEKLY_LINES}'
    out += [f"## Weekly report (`{command}`)", ""]
    lines = list(weekly or [])
    if lines:
        fence = _fence(lines)
        out += [fence, *lines, fence]
    else:
        out.append("No INCIDENT or RECOVERY lines in the text log.")
    return "\n".join(out) + "\n"


def render_json(reports: Sequence[Report], *, weekly: Sequence[str] | None = None,
                log: str | None = None, jsonl: str | None = None,
                malformed: int = 0) -> str:
    data = {
        "log": log, "jsonl": jsonl, "malformed_lines": malformed,
        "all_met": all(report.all_met for report in reports),
        "windows": [report.as_json() for report in reports],
        "weekly_report": list(weekly or []),
    }
    return json.dumps(data, indent=2) + "\n"


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2330;
background:#fff;margin:1.5rem auto;max-width:64rem;padding:0 1rem}
h1{font-size:1.35rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:2rem 0 .5rem;
border-bottom:1px solid #d8dde6;padding-bottom:.2rem}h3{font-size:.95rem;margin:1rem 0 .3rem}
table{border-collapse:collapse;margin:.4rem 0 1rem}th,td{border:1px solid #d8dde6;
padding:.3rem .6rem;text-align:left;vertical-align:top}th{background:#f3f5f9}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.met{color:#11643a;background:#e3f5ea;font-weight:600}
.missed{color:#8f1d1d;background:#fbe4e4;font-weight:600}
.badge{display:inline-block;padding:.15rem .55rem;border-radius:.8rem}
.note{color:#5b6575}.target{word-break:break-all;font-size:12px}.time{white-space:nowrap}
pre{background:#f6f8fa;border:1px solid #d8dde6;padding:.6rem;overflow-x:auto;font-size:12px}
.chart{max-width:100%;height:auto;display:block;margin:.3rem 0 1rem}
""".strip()


def _html_incidents(report: Report) -> list[str]:
    if not report.incidents:
        return [f'<p class="note">No incidents in the last {escape(report.label)}.</p>']
    rows = ["<h3>Incidents</h3>", "<table>",
            "<tr><th>incident</th><th>target</th><th>started</th><th>closed</th>"
            "<th>downtime in window</th><th>how</th><th>security</th></tr>"]
    for i in report.incidents:
        closed = "open" if i.closed_at is None else _iso(i.closed_at)
        how = ("automatic" if i.automatic else i.outcome) + \
            (f", {i.failed_recoveries} failed" if i.failed_recoveries else "")
        rows.append(
            f"<tr><td>{escape(i.id)}</td><td class=\"target\">{escape(i.target)}</td>"
            f'<td class="time">{_iso(i.started_at)}</td><td class="time">{escape(closed)}</td>'
            f'<td class="num">{_duration(i.downtime_s)}</td><td>{escape(how)}</td>'
            f"<td>{'yes' if i.security else 'no'}</td></tr>")
    rows.append("</table>")
    return rows


def render_html(reports: Sequence[Report], *, weekly: Sequence[str] | None = None,
                log: str | None = None, malformed: int = 0) -> str:
    """One self-contained page: inline CSS and SVG, no script, nothing fetched."""
    missed = sum(not m.met for r in reports for m in r.metrics)
    total = sum(len(r.metrics) for r in reports)
    badge = '<span class="badge met">all targets met</span>' if not missed else \
        f'<span class="badge missed">{missed} of {total} targets missed</span>'
    body = ["<h1>AFO runbook 6: performance targets</h1>",
            f"<p>{badge}"
            + (f' <span class="note">from {escape(log)}</span>' if log else "") + "</p>"]
    if malformed:
        body.append(f'<p class="note">skipped {malformed} malformed line(s) of the '
                    "JSONL log</p>")
    for report in reports:
        body += [f"<h2>Last {escape(report.label)} "
                 f'<span class="note">({escape(_range(report))})</span></h2>',
                 "<table>", "<tr><th>metric</th><th>value</th><th>target</th><th>met?</th></tr>"]
        for m in report.metrics:
            css = "met" if m.met else "missed"
            body.append(f"<tr><td>{escape(m.label)}</td><td>{escape(m.display)}</td>"
                        f"<td>{escape(m.target_display)}</td>"
                        f'<td class="{css}">{_met(m)}</td></tr>')
        body.append("</table>")
        bars = [DayBar(d.date, d.incidents, d.downtime_s / 60) for d in report.days]
        body.append(daily_chart(bars, caption=f"incidents and downtime per day (UTC), "
                                              f"last {report.label}"))
        body += _html_incidents(report)
    body.append(f"<h2>Weekly report <span class=\"note\">(the last {WEEKLY_LINES} INCIDENT "
                "and RECOVERY lines)</span></h2>")
    lines = list(weekly or [])
    body.append("<pre>" + escape("\n".join(lines)) + "</pre>" if lines else
                '<p class="note">No INCIDENT or RECOVERY lines in the text log.</p>')
    return ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            "<title>AFO runbook 6: performance targets</title>\n"
            f"<style>\n{CSS}\n</style>\n</head>\n<body>\n" + "\n".join(body)
            + "\n</body>\n</html>\n")


# -- the command -----------------------------------------------------------------------------


def parse_window(text: str) -> tuple[float, str]:
    """`7d` -> (604800.0, "7 days"); units s, m, h, d, w."""
    match = _WINDOW.match(text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: want a positive number and a unit s, m, h, d or w (7d, 30d, 24h)")
    size, word = _UNITS[match.group(2)]
    count = float(match.group(1))
    if count * size > MAX_WINDOW_S:
        raise argparse.ArgumentTypeError(f"{text!r}: longer than ten years")
    return count * size, _count(count, word)


def parse_now(text: str) -> float:
    """An ISO 8601 time (UTC when it names no zone) or Unix seconds."""
    value: float | None
    try:
        value = float(text)
    except ValueError:
        try:
            stamp = datetime.fromisoformat(text.strip())
        except ValueError:
            value = None
        else:
            value = (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
    if value is None or _number(value) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r}: want an ISO 8601 time such as 2026-11-26T10:30:00Z (1970 to 9999)")
    return value


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--log", metavar="PATH",
                        help="the text incident log (its JSONL twin is read for the numbers)")
    source.add_argument("--runbook-config", metavar="PATH",
                        help="read [incident_log] path from this runbook.toml (default: "
                             "$RUNBOOK_CONFIG, else the runbook.toml beside the checks)")
    parser.add_argument("--window", action="append", metavar="N{s,m,h,d,w}",
                        help=f"the window ending at --now (default {DEFAULT_WINDOW}); "
                             "repeat for several, e.g. --window 7d --window 30d")
    parser.add_argument("--now", metavar="ISO", help="the window's end (default: now)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    parser.add_argument("--html", metavar="PATH",
                        help="also write a self-contained HTML page with a chart")
    parser.add_argument("--allow-broken-log", action="store_true",
                        help="compute even when the log's hash chain is broken (see "
                             "`afo-runbook log verify`); the numbers may then be wrong")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """`afo-runbook metrics`: add to the subparsers of afo_runbook.cli."""
    parser = subparsers.add_parser("metrics", help="runbook 6: the performance targets",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    parser.set_defaults(handler=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    return parser


class UsageError(Exception):
    """A problem with the command line or the files it names: exit code 2."""


def _log_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """(text log, JSONL log) from --log, or from the runbook config's [incident_log]."""
    from afo_runbook.incident_log import jsonl_path

    if args.log is not None:
        path = Path(args.log).expanduser()
        if not path.name:  # "" or "/": no file to name, nor a twin to find
            raise UsageError(f"--log {args.log!r}: not a file path")
        if path.suffix == ".jsonl":  # named the twin itself: accept it rather than miss it
            return path.with_suffix(".log"), path
        return path, jsonl_path(path)
    from afo_runbook.config import CONFIG_ENV, ConfigError, load_config

    config_file = args.runbook_config
    if config_file is None:  # as the pytest plugin finds it: the env, else the repo's own
        config_file = os.environ.get(CONFIG_ENV) or \
            str(Path(__file__).resolve().parent.parent / "runbook.toml")
    if not config_file.strip():
        raise UsageError("--runbook-config: empty path")
    try:
        config = load_config(config_file)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    path = config.incident_log or config.folder / "logs" / "afo-incidents.log"
    return path, jsonl_path(path)


def _windows(specs: list[str] | None) -> list[tuple[str, float, str]]:
    seen: dict[float, tuple[str, float, str]] = {}
    for spec in specs or [DEFAULT_WINDOW]:
        try:
            size, label = parse_window(spec)
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"--window {exc}") from None
        seen.setdefault(size, (spec.strip(), size, label))  # 7d twice is one section
    return list(seen.values())


def _write(path: str, text: str) -> None:
    target = Path(path).expanduser()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None


def _print(text: str) -> None:
    """The markdown on stdout, whatever the terminal's encoding (log lines may hold any
    text) and even when the reader has gone (`| head`)."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    windows = _windows(args.window)
    if args.now is not None:
        try:
            now = parse_now(args.now)
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"--now {exc}") from None
    else:
        now = float(math.floor(datetime.now(UTC).timestamp()))  # whole seconds read better
    text_log, jsonl = _log_paths(args)
    from afo_runbook.incident_log import verify_chain

    try:
        chain = verify_chain(jsonl)
    except OSError as exc:
        raise UsageError(f"cannot read {exc.filename or jsonl}: "
                         f"{exc.strerror or exc}") from None
    if not chain.whole:
        if not getattr(args, "allow_broken_log", False):
            raise UsageError(f"{jsonl}: the hash chain is broken at {chain.problem}; "
                             "refusing to compute targets from a log that was edited "
                             "(pass --allow-broken-log to compute anyway)")
        print(f"{PROG}: WARNING: {jsonl}: the hash chain is broken at {chain.problem}",
              file=sys.stderr)
    try:
        events, malformed = load_events(jsonl)
        weekly = weekly_lines(text_log)
    except OSError as exc:  # a directory, no permission: not "no incidents"
        raise UsageError(f"cannot read {exc.filename or jsonl}: "
                         f"{exc.strerror or exc}") from None
    if malformed:
        print(f"{PROG}: skipped {malformed} malformed line(s) in {jsonl}", file=sys.stderr)
    reports = []
    for spec, size, label in windows:
        reports.append(replace(compute(events, now=now, window_s=size, label=label),
                               spec=spec))
    _print(render_markdown(reports, weekly=weekly, log=str(text_log)))
    if args.json is not None:
        _write(args.json, render_json(reports, weekly=weekly, log=str(text_log),
                                      jsonl=str(jsonl), malformed=malformed))
    if args.html is not None:
        _write(args.html, render_html(reports, weekly=weekly, log=str(text_log),
                                      malformed=malformed))
    return EXIT_MET if all(report.all_met for report in reports) else EXIT_MISSED


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
