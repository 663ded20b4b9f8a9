"""Runbook 6, the performance targets, from crafted incident logs with answers worked out by hand.

Times are offsets from a fixed NOW (2026-11-26T12:00:00Z), so every expected number below is
plain arithmetic on the offsets written next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from afo_runbook import metrics
from afo_runbook.incident_log import IncidentLog, incident_event, recovery_event

NOW_ISO = "2026-11-26T12:00:00Z"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()
MIN, H, D = 60.0, 3600.0, 86400.0
W7, W30 = 7 * D, 30 * D
WS7 = NOW - W7  # 2026-11-19T12:00:00Z
A, B = "/etc/afo/a/runbook.toml", "/etc/afo/b/runbook.toml"


def incident(iid: str, observed: float, *, target: str = A, security: bool = False,
             symptoms: tuple[str, ...] = ("service-down",), delay: float = 0.5,
             **extra: Any) -> dict[str, Any]:
    """An incident event as recovery/plugin.py writes it (`at` a moment after observing)."""
    at = observed + delay
    return {"ts": metrics._iso(at), "at": at, "event": "incident", "incident_id": iid,
            "target": target, "decision": "restart", "priority": "immediate",
            "symptoms": list(symptoms), "security": security, "failing": {}, "evidence": {},
            "observed_at": observed, "config": target, **extra}


def recovery(iid: str, at: float, *, outcome: str = "recovered", automatic: bool = True,
             closed: bool = True, target: str = A) -> dict[str, Any]:
    return {"ts": metrics._iso(at), "at": at, "event": "recovery", "incident_id": iid,
            "target": target, "action": "restart", "outcome": outcome,
            "automatic": automatic, "closed": closed, "ttr_s": None, "detail": "", "steps": []}


def write_jsonl(path: Path, events: list[dict[str, Any]], raw: tuple[str, ...] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(event) for event in events] + list(raw)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def run_cli(*args: str | Path, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "afo_runbook.metrics", *map(str, args)],
                          capture_output=True, text=True, timeout=60, check=False,
                          env=None if env is None else {**os.environ, **env})
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def values(report: metrics.Report) -> dict[str, Any]:
    return {m.key: m.value for m in report.metrics}


def met(report: metrics.Report) -> dict[str, bool]:
    return {m.key: m.met for m in report.metrics}


# -- the formulas, as pure function calls ----------------------------------------------------


def test_overlapping_incidents_on_two_targets_count_once():
    # a: down 10:00..10:10 (600 s); b: down 10:05..10:15 (600 s). Union 900 s, not 1200 s.
    t0 = NOW - 2 * H
    events = [incident("inc-a", t0, target=A), incident("inc-b", t0 + 300, target=B),
              recovery("inc-a", t0 + 600, target=A), recovery("inc-b", t0 + 900, target=B)]
    report = metrics.compute(events, now=NOW, window_s=W7)
    assert [i.id for i in report.incidents] == ["inc-a", "inc-b"]
    assert [i.downtime_s for i in report.incidents] == [600, 600]
    assert report.downtime_s == 900
    assert values(report) == {
        "mttr": 600.0,  # (600 + 600) / 2
        "availability": round(100 * (1 - 900 / W7), 9),  # 99.851190476
        "security_incidents": 0,
        "automatic_recovery_rate": 100.0,
    }
    assert met(report) == {"mttr": False, "availability": False, "security_incidents": True,
                           "automatic_recovery_rate": True}
    assert not report.all_met
    today = report.days[-1]
    assert (today.date, today.incidents, today.downtime_s) == ("2026-11-26", 2, 900)


def test_unrecovered_incident_is_down_until_the_window_ends():
    # down since NOW - 20 min; the automatic recovery failed and nobody resolved it yet
    events = [incident("inc-open", NOW - 1200),
              recovery("inc-open", NOW - 1100, outcome="failed, escalated", closed=False)]
    report = metrics.compute(events, now=NOW, window_s=W7)
    (only,) = report.incidents
    assert (only.closed_at, only.outcome, only.failed_recoveries) == (None, "open", 1)
    assert only.downtime_s == 1200
    assert only.duration_s == 1200
    # open for 20 min already: counted at its age, it misses the 5 min target (never "met")
    assert report.metric("mttr").value == 1200
    assert not report.metric("mttr").met
    assert report.metric("mttr").display == ("20.0 min (over 0 closed and 1 still open, "
                                             "counted at their age so far)")
    assert report.metric("availability").value == round(100 * (1 - 1200 / W7), 9)
    assert report.metric("automatic_recovery_rate").value == 0.0  # 0 of 1: open ones count
    assert not report.metric("automatic_recovery_rate").met


def test_incidents_across_the_window_edge_are_clipped_and_older_ones_excluded():
    events = [
        incident("inc-before", WS7 - 5000), recovery("inc-before", WS7 - 4000),  # all before
        incident("inc-edge", WS7 - 600), recovery("inc-edge", WS7 + 300),  # 300 s inside
        incident("inc-inside", WS7 + D), recovery("inc-inside", WS7 + D + 60),  # 60 s
    ]
    report = metrics.compute(events, now=NOW, window_s=W7)
    assert [i.id for i in report.incidents] == ["inc-edge", "inc-inside"]
    assert [i.downtime_s for i in report.incidents] == [300, 60]
    assert report.incidents[0].duration_s == 900  # the whole incident, for MTTR
    assert report.downtime_s == 360
    assert report.metric("mttr").value == 480.0  # (900 + 60) / 2: closed inside the window
    assert report.metric("availability").value == round(100 * (1 - 360 / W7), 9)
    assert report.metric("availability").met  # 99.94 %
    # 2026-11-19T12:00 .. 2026-11-26T12:00: eight UTC dates, the first and last half days
    assert [d.date for d in report.days] == [f"2026-11-{day}" for day in range(19, 27)]
    assert (report.days[0].incidents, report.days[0].downtime_s) == (0, 300)  # began before
    assert (report.days[1].incidents, report.days[1].downtime_s) == (1, 60)
    assert sum(d.downtime_s for d in report.days) == report.downtime_s


def test_failed_automatic_recovery_then_manual_resolution_is_not_automatic():
    t0 = NOW - 2 * H
    events = [incident("inc-x", t0, security=True, symptoms=("secret-unconfigured",)),
              recovery("inc-x", t0 + 30, outcome="failed, escalated", automatic=True,
                       closed=False),
              incident("inc-x", t0 + 120, security=True, symptoms=("secret-unconfigured",)),
              recovery("inc-x", t0 + 240, outcome="resolved", automatic=False, closed=True)]
    report = metrics.compute(events, now=NOW, window_s=W7)
    (only,) = report.incidents
    assert (only.closed_at, only.outcome, only.automatic) == (t0 + 240, "resolved", False)
    assert only.failed_recoveries == 1
    assert report.metric("mttr").value == 240.0
    assert report.metric("mttr").met
    assert report.metric("automatic_recovery_rate").value == 0.0
    assert report.metric("security_incidents").value == 1


def test_security_incidents_are_counted():
    t0 = NOW - D
    events = [
        incident("inc-1", t0, security=True, symptoms=("secret-unconfigured",)),
        incident("inc-2", t0 + H),  # service-down: not a security incident
        # an older record without the `security` key: the symptom decides
        {k: v for k, v in incident("inc-3", t0 + 2 * H, symptoms=("guard-open",)).items()
         if k != "security"},
        # the first run saw a crash, a later run of the same incident the secret rejected
        incident("inc-4", t0 + 3 * H),
        incident("inc-4", t0 + 3 * H + 60, security=True, symptoms=("secret-rejected",)),
    ]
    events += [recovery(f"inc-{n}", t0 + (n - 1) * H + 90) for n in (1, 2, 3, 4)]
    report = metrics.compute(events, now=NOW, window_s=W7)
    assert [i.security for i in report.incidents] == [True, False, True, True]
    assert report.metric("security_incidents").value == 3
    assert report.metric("security_incidents").display == "3"
    assert not report.metric("security_incidents").met


def test_repeated_incident_events_with_one_id_are_one_incident():
    t0 = NOW - 3 * H
    # five failing runs of one open incident, written out of order: the first observation wins
    events = [incident("inc-r", t0 + 60), incident("inc-r", t0 + 120), incident("inc-r", t0),
              incident("inc-r", t0 + 180), incident("inc-r", t0 + 240),
              recovery("inc-r", t0 + 270)]
    report = metrics.compute(events, now=NOW, window_s=W7)
    (only,) = report.incidents
    assert (only.started_at, only.closed_at, only.downtime_s) == (t0, t0 + 270, 270)
    assert report.metric("automatic_recovery_rate").display == "100.0 % (1 of 1)"
    assert report.days[-1].incidents == 1


def test_events_written_after_now_are_not_known_yet():
    events = [incident("inc-late", NOW - 600), recovery("inc-late", NOW + 60),
              incident("inc-future", NOW + 5)]
    report = metrics.compute(events, now=NOW, window_s=W7)
    (only,) = report.incidents
    assert (only.id, only.closed_at, only.downtime_s) == ("inc-late", None, 600)


def test_a_recovery_without_its_incident_is_set_aside():
    events = [recovery("inc-orphan", NOW - 100), incident("inc-ok", NOW - 500),
              recovery("inc-ok", NOW - 400)]
    report = metrics.compute(events, now=NOW, window_s=W7)
    assert [i.id for i in report.incidents] == ["inc-ok"]
    assert report.orphan_recoveries == 1


def test_downtime_across_midnight_splits_between_days():
    start = datetime(2026, 11, 24, 23, 50, tzinfo=UTC).timestamp()
    report = metrics.compute([incident("inc-m", start), recovery("inc-m", start + 20 * MIN)],
                             now=NOW, window_s=W7)
    by_date = {d.date: (d.incidents, d.downtime_s) for d in report.days}
    assert by_date["2026-11-24"] == (1, 10 * MIN)
    assert by_date["2026-11-25"] == (0, 10 * MIN)


@pytest.mark.parametrize(("down_s", "shown", "ok"), [
    (604.8, "99.9000", False),  # exactly 99.9 %: the target is "more than"
    (604.7, "99.90002", True),  # 99.900016...: never displayed as if it were 99.9000
    (605.0, "99.89997", False),  # 99.899966...: not rounded up to 99.9000
])
def test_availability_at_the_target_boundary(down_s, shown, ok):
    t0 = NOW - D
    report = metrics.compute([incident("inc-b", t0), recovery("inc-b", t0 + down_s)],
                             now=NOW, window_s=W7)
    availability = report.metric("availability")
    assert availability.display.startswith(f"{shown} %")
    assert availability.met is ok


@pytest.mark.parametrize(("automatic", "ok"), [(19, False), (20, True)])
def test_automatic_recovery_rate_must_exceed_95_percent(automatic, ok):
    events = []
    for n in range(20):
        t0 = NOW - D + n * H
        events += [incident(f"inc-{n}", t0),
                   recovery(f"inc-{n}", t0 + 10, automatic=n < automatic,
                            outcome="recovered" if n < automatic else "resolved")]
    rate = metrics.compute(events, now=NOW, window_s=W7).metric("automatic_recovery_rate")
    assert rate.value == automatic * 5.0  # 19 of 20 is exactly 95 %: not more than 95 %
    assert rate.met is ok


def test_no_incidents_meets_every_target():
    report = metrics.compute([], now=NOW, window_s=W7)
    assert values(report) == {"mttr": None, "availability": 100.0, "security_incidents": 0,
                              "automatic_recovery_rate": None}
    assert report.all_met
    assert len(report.days) == 8
    assert not any(d.incidents or d.downtime_s for d in report.days)


def test_events_from_the_real_writer(tmp_path):
    """The log recovery/plugin.py writes (afo_runbook.incident_log), read back by metrics."""
    log = IncidentLog(tmp_path / "afo-incidents.log")
    verdict = SimpleNamespace(symptoms=["secret-unconfigured"], decision="rollback",
                              priority="immediate", started_at=NOW - 100.0,
                              config_path="/etc/afo/runbook.toml",
                              failing=lambda: [SimpleNamespace(
                                  key="guard[right-secret]", symptom="secret-unconfigured",
                                  message="200 without the secret")])
    log.append(incident_event(verdict, A, "inc-real", NOW - 99.5))
    log.append(recovery_event(A, "inc-real", NOW - 52.0, action="rollback",
                              outcome="recovered", automatic=True, closed=True, ttr_s=47.5,
                              detail="green again"))
    events, malformed = metrics.load_events(log.jsonl)
    assert malformed == 0
    assert len(events) == 2
    report = metrics.compute(events, now=NOW, window_s=W7)
    (only,) = report.incidents
    assert (only.started_at, only.closed_at, only.automatic, only.security) == \
        (NOW - 100.0, NOW - 52.0, True, True)
    assert report.metric("mttr").value == 48.0
    lines = metrics.weekly_lines(log.path)
    assert [line.split(": ", 1)[1].split(" ", 1)[0] for line in lines] == \
        ["INCIDENT", "RECOVERY"]


def test_compute_refuses_a_meaningless_window():
    with pytest.raises(ValueError):
        metrics.compute([], now=NOW, window_s=0)
    with pytest.raises(ValueError):
        metrics.compute([], now=float("nan"), window_s=W7)


def test_garbage_events_never_crash_the_pure_functions():
    rng = random.Random(6)
    pool: list[Any] = [None, True, False, 0, -1, 1e300, float("nan"), float("inf"), "", "x",
                       NOW, NOW - 100, [], ["guard-open"], [1], {}, {"a": 1}, "incident",
                       "recovery", "inc-1", "inc-2"]
    keys = ["event", "incident_id", "at", "observed_at", "target", "security", "symptoms",
            "outcome", "automatic", "closed"]
    events: list[Any] = [1, "x", None, []]
    for _ in range(3000):
        event = {k: rng.choice(pool) for k in keys if rng.random() < 0.8}
        if rng.random() < 0.5:
            event.update(event=rng.choice(["incident", "recovery"]),
                         incident_id=rng.choice(["inc-1", "inc-2", "inc-3"]),
                         at=NOW - rng.uniform(-100, 10 * D))
        events.append(event)
    for window in (W7, W30):
        report = metrics.compute(events, now=NOW, window_s=window)
        assert sum(d.downtime_s for d in report.days) == pytest.approx(report.downtime_s)
        assert 0 <= report.downtime_s <= window
    reports = [metrics.compute(events, now=NOW, window_s=w) for w in (W7, W30)]
    assert metrics.render_markdown(reports)
    assert "<svg" in metrics.render_html(reports)
    json.loads(metrics.render_json(reports))
    ignored = metrics.compute([1, "x", {"event": "incident"}], now=NOW, window_s=W7)
    assert ignored.ignored_events == 3


def test_garbage_lines_never_crash_the_command(tmp_path):
    """Mangled copies of good lines (cut short, bytes flipped, bits of other lines) and random
    bytes: the command still answers, with a count and no traceback."""
    rng = random.Random(2)
    good = [json.dumps(e) for e in sample_events()]
    lines: list[bytes] = []
    for _ in range(2000):
        line = bytearray(rng.choice(good).encode())
        roll = rng.random()
        if roll < 0.3:
            del line[rng.randrange(len(line)):]
        elif roll < 0.6:
            line[rng.randrange(len(line))] = rng.randrange(256)
        elif roll < 0.8:
            line = bytearray(rng.randbytes(rng.randrange(1, 80)))
        lines.append(bytes(line).replace(b"\n", b" "))
    log = tmp_path / "afo-incidents.log"
    log.with_suffix(".jsonl").write_bytes(b"\n".join(lines) + b"\n")
    log.write_bytes(b"\n".join(lines))  # the text log gets the same junk
    proc = run_cli("--log", log, "--now", NOW_ISO, "--window", "7d", "--window", "30d",
                   "--json", tmp_path / "m.json", "--html", tmp_path / "m.html")
    assert proc.returncode in (0, 1), proc.stderr
    assert re.search(r"skipped \d+ malformed line\(s\)", proc.stderr)
    assert json.loads((tmp_path / "m.json").read_text())["malformed_lines"] > 0


# -- reading the files -----------------------------------------------------------------------


MALFORMED = (
    "not json at all",
    "[1, 2, 3]",
    '"a string"',
    '{"event": "incident"}',
    json.dumps({**incident("inc-m", NOW - 60), "at": str(NOW)}),  # at: a string
    json.dumps({**incident("inc-m", NOW - 60), "at": True}),  # at: a boolean
    json.dumps({**incident("inc-m", NOW - 60)}).replace(f'"at": {NOW - 59.5}', '"at": NaN'),
    json.dumps({**incident("inc-m", NOW - 60), "security": "yes"}),
    json.dumps({**incident("inc-m", NOW - 60), "symptoms": "guard-open"}),
    json.dumps({**incident("inc-m", NOW - 60), "incident_id": 42}),
    json.dumps({**incident("inc-m", NOW - 60), "at": 1e20}),  # beyond the year 9999
    json.dumps({**incident("inc-m", NOW - 60), "at": 10**400}),  # too big for a float
    json.dumps({**recovery("inc-m", NOW - 30), "closed": "true"}),
    json.dumps({k: v for k, v in recovery("inc-m", NOW - 30).items() if k != "automatic"}),
    "[" * 100_000,  # nested past the recursion limit
    '{"ts": "2026-11-26T1',  # a torn line
)


def test_malformed_lines_are_skipped_and_counted(tmp_path):
    good = [incident("inc-good", NOW - 600), recovery("inc-good", NOW - 540)]
    unknown_kind = {"event": "note", "text": "a kind a newer writer may add"}
    path = write_jsonl(tmp_path / "afo-incidents.jsonl", [good[0], unknown_kind],
                       raw=(*MALFORMED, "", "   ", json.dumps(good[1])))
    with open(path, "ab") as fh:
        fh.write(b"\xff\xfe{\"event\": \"incident\"}\n")  # not UTF-8
    events, malformed = metrics.load_events(path)
    assert malformed == len(MALFORMED) + 1  # blank lines and the unknown kind do not count
    assert [e["event"] for e in events] == ["incident", "note", "recovery"]
    report = metrics.compute(events, now=NOW, window_s=W7)
    assert [i.id for i in report.incidents] == ["inc-good"]

    proc = run_cli("--log", tmp_path / "afo-incidents.log", "--now", NOW_ISO)
    warnings = [line for line in proc.stderr.splitlines() if "malformed" in line]
    assert warnings == [f"afo-runbook metrics: skipped {malformed} malformed line(s) in {path}"]
    assert proc.returncode == 0, proc.stdout  # the good incident: 60 s, recovered automatically
    assert "| MTTR | 60.0 s (over 1 closed) | < 5 min | met |" in proc.stdout


@pytest.mark.parametrize("state", ["empty", "missing"])
def test_an_empty_or_missing_log_means_no_incidents(tmp_path, state):
    log = tmp_path / "logs" / "afo-incidents.log"
    if state == "empty":
        log.parent.mkdir()
        log.write_text("")
        log.with_suffix(".jsonl").write_text("")
    proc = run_cli("--log", log, "--now", NOW_ISO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    assert "No incidents in the last 7 days; all targets met." in proc.stdout
    assert "| availability | 100.0000 % (down 0.0 s) | > 99.9 % | met |" in proc.stdout
    assert "MISSED" not in proc.stdout
    assert "No INCIDENT or RECOVERY lines" in proc.stdout


def test_weekly_report_keeps_only_the_last_20_incident_and_recovery_lines(tmp_path):
    lines = []
    for n in range(15):
        stamp = metrics._iso(NOW - D + n * 60)
        lines += [f"{stamp}: INCIDENT - service-down (failing: health[api]) [inc-{n}]",
                  f"{stamp}: Evidence: health[api]: body says INCIDENT - RECOVERY [inc-{n}]",
                  f"{stamp}: Decision: restart (priority immediate) [inc-{n}]",
                  f"{stamp}: RECOVERY - restart: recovered, TTR 1.0 s; ok [inc-{n}]"]
    log = tmp_path / "afo-incidents.log"
    log.write_bytes("".join(line + "\r\n" for line in lines).encode())  # CRLF, too
    wanted = [line for line in lines if " Evidence: " not in line and " Decision: " not in line]
    assert len(wanted) == 30
    assert metrics.weekly_lines(log) == wanted[-20:]
    assert metrics.weekly_lines(log)[0].endswith("[inc-5]")  # incidents 5..14, two lines each
    assert metrics.weekly_lines(log, n=3) == wanted[-3:]
    assert metrics.weekly_lines(tmp_path / "nothing.log") == []
    markdown = metrics.render_markdown([metrics.compute([], now=NOW, window_s=W7)],
                                       weekly=metrics.weekly_lines(log), log=str(log))
    block = markdown.split("```\n")[1]
    assert block.splitlines() == wanted[-20:]


# -- the outputs -----------------------------------------------------------------------------


def sample_events() -> list[dict[str, Any]]:
    t0 = NOW - 2 * D
    return [incident("inc-a", t0, target="/srv/<script>alert(1)</script>.toml",
                     security=True, symptoms=("guard-open",)),
            recovery("inc-a", t0 + 200),
            incident("inc-b", NOW - 12 * D), recovery("inc-b", NOW - 12 * D + 30),
            incident("inc-c", NOW - 300)]


def test_html_page_is_self_contained_with_an_svg_chart(tmp_path):
    reports = [metrics.compute(sample_events(), now=NOW, window_s=w) for w in (W7, W30)]
    page = metrics.render_html(reports, weekly=["2026-11-26T11:55:00Z: INCIDENT - x [inc-c]"],
                               malformed=2)
    assert page.startswith("<!doctype html>")
    assert page.count("<svg") == 2  # one chart per window
    assert "<rect" in page
    assert "<style>" in page
    lowered = page.lower()
    for external in ("http", "src=", "href=", "url(", "@import", "<script", "<link", "<img"):
        assert external not in lowered, external
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # a hostile target name, escaped
    assert "skipped 2 malformed line(s)" in page
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.S):
        root = ET.fromstring(svg)  # noqa: S314 - our own output: is it well-formed XML?
        assert root.tag == "svg"
        bars = [rect.find("title").text for rect in root.iter("rect")]
        assert "2026-11-24: 1 incident(s) started" in bars
        assert "2026-11-24: 3.3 min down" in bars


def test_json_output_round_trips(tmp_path):
    log = tmp_path / "afo-incidents.log"
    write_jsonl(log.with_suffix(".jsonl"), sample_events())
    out, html = tmp_path / "out" / "metrics.json", tmp_path / "out" / "metrics.html"
    proc = run_cli("--log", log, "--now", NOW_ISO, "--window", "7d", "--window", "30d",
                   "--json", out, "--html", html)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # a security incident, an open one
    data = json.loads(out.read_text())
    assert [w["window"] for w in data["windows"]] == ["7d", "30d"]
    week, month = data["windows"]
    assert (week["start"], week["end"]) == ("2026-11-19T12:00:00Z", NOW_ISO)
    assert (week["start_unix"], week["end_unix"], week["window_s"]) == (WS7, NOW, W7)
    assert [i["id"] for i in week["incidents"]] == ["inc-a", "inc-c"]
    assert [i["id"] for i in month["incidents"]] == ["inc-b", "inc-a", "inc-c"]
    first = week["incidents"][0]
    assert first == {**first, "started_at": metrics._iso(NOW - 2 * D), "downtime_s": 200,
                     "closed_at": metrics._iso(NOW - 2 * D + 200), "automatic": True,
                     "security": True, "open": False}
    assert week["incidents"][1]["closed_at"] is None
    assert week["incidents"][1]["downtime_s"] == 300
    expected = metrics.compute(sample_events(), now=NOW, window_s=W7)
    for key, metric in week["metrics"].items():
        assert metric["value"] == expected.metric(key).value
        assert metric["met"] is expected.metric(key).met
    # inc-c is still open (300 s so far): counted at its age, (200 + 300) / 2
    assert week["metrics"]["mttr"] == {**week["metrics"]["mttr"], "value": 250.0,
                                       "met": True, "target": {"op": "<", "value": 300.0,
                                                               "display": "< 5 min"}}
    assert month["metrics"]["mttr"]["value"] == round((200 + 30 + 300) / 3, 3)
    assert week["metrics"]["automatic_recovery_rate"]["value"] == 50.0  # 1 of 2
    assert data["all_met"] is False
    assert data["malformed_lines"] == 0
    assert data["jsonl"] == str(log.with_suffix(".jsonl"))
    assert sum(d["downtime_s"] for d in week["days"]) == 500  # 200 s + 300 s
    assert [d["downtime_min"] for d in week["days"] if d["downtime_s"]] == [3.333, 5.0]
    page = html.read_text()
    assert page.count("<svg") == 2
    assert "http" not in page
    # the markdown says the same, one section per window, in the order asked
    assert proc.stdout.index("## Last 7 days") < proc.stdout.index("## Last 30 days")


def test_both_windows_see_different_incidents():
    # one incident ten days ago: outside the week, inside the month
    t0 = NOW - 10 * D
    events = [incident("inc-old", t0), recovery("inc-old", t0 + 600)]
    week, month = (metrics.compute(events, now=NOW, window_s=w) for w in (W7, W30))
    assert week.incidents == ()
    assert week.all_met
    assert [i.id for i in month.incidents] == ["inc-old"]
    assert month.metric("availability").value == round(100 * (1 - 600 / W30), 9)  # 99.977
    assert month.metric("mttr").value == 600.0
    assert not month.metric("mttr").met
    assert len(month.days) == 31
    markdown = metrics.render_markdown([week, month])
    assert "No incidents in the last 7 days; all targets met." in markdown
    assert "1 incident; 1 target MISSED." in markdown
    assert "- 2026-11-16: 1 incident, 10.0 min down" in markdown
    assert "- the other 30 days: no incidents, no downtime" in markdown
    assert "- 2026-11-20: 0 incidents, 0.0 min down" in markdown  # the week lists every day


# -- the command -----------------------------------------------------------------------------


def test_cli_exit_codes(tmp_path):
    good = tmp_path / "good" / "afo-incidents.log"
    write_jsonl(good.with_suffix(".jsonl"), [incident("inc-1", NOW - 600),
                                             recovery("inc-1", NOW - 570)])
    bad = tmp_path / "bad" / "afo-incidents.log"
    write_jsonl(bad.with_suffix(".jsonl"), [incident("inc-1", NOW - 600)])  # still open
    assert run_cli("--log", good, "--now", NOW_ISO).returncode == 0
    # a week later the incident is out of the 7-day window but still inside 30 days
    assert run_cli("--log", good, "--now", "2026-12-04T12:00:00+00:00").returncode == 0
    assert run_cli("--log", bad, "--now", NOW_ISO).returncode == 1
    assert run_cli("--log", good.with_suffix(".jsonl"), "--now", NOW_ISO).returncode == 0
    usage = [
        ("--log", good, "--window", "7x"),
        ("--log", good, "--window", "0d"),
        ("--log", good, "--now", "yesterday"),
        ("--log", good, "--now", ""),
        ("--log", ""),
        ("--log", good, "--json", ""),
        ("--log", good, "--runbook-config", tmp_path / "runbook.toml"),
        ("--runbook-config", tmp_path / "missing.toml"),
        ("--runbook-config", ""),
        ("--log", tmp_path),  # a directory: cannot be read, which is not "no incidents"
        ("--log", good, "--json", good.with_suffix(".jsonl") / "x.json"),  # cannot write
        ("--no-such-option",),
    ]
    for args in usage:
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.strip(), args


def test_runbook_config_names_the_log(tmp_path):
    custom = tmp_path / "a" / "runbook.toml"
    custom.parent.mkdir()
    custom.write_text('[incident_log]\npath = "custom/incidents.log"\n')
    write_jsonl(custom.parent / "custom" / "incidents.jsonl", [incident("inc-c", NOW - 60)])
    plain = tmp_path / "b" / "runbook.toml"
    plain.parent.mkdir()
    plain.write_text("")  # no [incident_log]: <config folder>/logs/afo-incidents.log
    write_jsonl(plain.parent / "logs" / "afo-incidents.jsonl", [incident("inc-p", NOW - 60)])
    for config, iid in ((custom, "inc-c"), (plain, "inc-p")):
        out = tmp_path / f"{iid}.json"
        proc = run_cli("--runbook-config", config, "--now", NOW_ISO, "--json", out)
        assert proc.returncode == 1, proc.stderr  # the incident is still open
        assert [i["id"] for i in json.loads(out.read_text())["windows"][0]["incidents"]] == \
            [iid]


def test_add_parser_wires_the_subcommand(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="afo-runbook")
    metrics.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["metrics", "--log", str(tmp_path / "none.log"), "--now", NOW_ISO,
                              "--window", "24h"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "## Last 24 hours (2026-11-25T12:00:00Z to 2026-11-26T12:00:00Z)" in out
    assert out.count("\n- 2026-11-2") == 2  # the two UTC dates the 24 hours touch


def test_any_text_in_the_log_reaches_any_terminal(tmp_path):
    """Log lines can hold any text (and bytes that are not UTF-8); an ASCII-only stdout still
    gets the report, with escapes instead of a UnicodeEncodeError."""
    log = tmp_path / "afo-incidents.log"
    log.write_bytes("2026-11-26T11:00:00Z: INCIDENT - 보안 가드 열림 [inc-k]\n".encode()
                    + b"2026-11-26T11:01:00Z: RECOVERY - rollback: \xff\xfe [inc-k]\n")
    proc = run_cli("--log", log, "--now", NOW_ISO, env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0, proc.stderr
    assert "INCIDENT - \\ubcf4\\uc548" in proc.stdout
    assert "RECOVERY - rollback: \\ufffd\\ufffd [inc-k]" in proc.stdout
