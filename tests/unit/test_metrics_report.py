"""Runbook 6's report as the operator reads it: markdown, JSON, the HTML page, and the
`afo-runbook metrics` command itself, called in-process.

The scenario, worked out by hand (NOW = 2026-11-26T12:00:00Z):
  inc-a  guard-open, from NOW - 2 d, recovered automatically 200 s later  (3.3 min)
  inc-b  from NOW - 12 d, resolved by hand 30 s later                     (outside 7 d)
  inc-c  from NOW - 300 s, its automatic recovery failed: open            (5.0 min)
7 days: 500 s down (99.9173 %), MTTR (200 + 300) / 2 = 250 s (the open one at its age),
        1 security incident, 1 of 2 automatic.
30 days: 530 s down (99.9796 %), MTTR (30 + 200 + 300) / 3 = 176.7 s, 1 of 3 automatic.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from afo_runbook import metrics
from afo_runbook.config import load_config
from afo_runbook.incident_log import Event, IncidentLog

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()
NOW_ISO = "2026-11-26T12:00:00Z"
D = 86400.0
TARGET = "/etc/afo/a/runbook.toml"


def incident(iid: str, observed: float, **extra: Any) -> dict[str, Any]:
    return {"event": "incident", "incident_id": iid, "target": TARGET, "at": observed + 0.5,
            "observed_at": observed, "security": False, "symptoms": ["service-down"], **extra}


def recovery(iid: str, at: float, **extra: Any) -> dict[str, Any]:
    return {"event": "recovery", "incident_id": iid, "target": TARGET, "at": at,
            "outcome": "recovered", "automatic": True, "closed": True, **extra}


EVENTS = [
    incident("inc-a", NOW - 2 * D, security=True, symptoms=["guard-open"],
             target="/srv/<b>.toml"),
    recovery("inc-a", NOW - 2 * D + 200),
    incident("inc-b", NOW - 12 * D),
    recovery("inc-b", NOW - 12 * D + 30, outcome="resolved", automatic=False),
    incident("inc-c", NOW - 300),
    recovery("inc-c", NOW - 200, outcome="failed, escalated", closed=False),
]
WEEKLY = ["2026-11-26T11:55:00Z: INCIDENT - x ```code``` [inc-c]"]


def reports() -> list[metrics.Report]:
    return [metrics.compute(EVENTS, now=NOW, window_s=w) for w in (7 * D, 30 * D)]


MARKDOWN = """\
# AFO runbook 6: performance targets

## Last 7 days (2026-11-19T12:00:00Z to 2026-11-26T12:00:00Z)

2 incidents; 2 targets MISSED.

| metric | value | target | met? |
|---|---|---|---|
| MTTR | 4.2 min (over 1 closed and 1 still open, counted at their age so far) | < 5 min | met |
| availability | 99.9173 % (down 8.3 min) | > 99.9 % | met |
| security incidents | 1 | 0 | MISSED |
| automatic recovery rate | 50.0 % (1 of 2) | > 95 % | MISSED |

Per day (UTC): incidents started, downtime:

- 2026-11-19: 0 incidents, 0.0 min down
- 2026-11-20: 0 incidents, 0.0 min down
- 2026-11-21: 0 incidents, 0.0 min down
- 2026-11-22: 0 incidents, 0.0 min down
- 2026-11-23: 0 incidents, 0.0 min down
- 2026-11-24: 1 incident, 3.3 min down
- 2026-11-25: 0 incidents, 0.0 min down
- 2026-11-26: 1 incident, 5.0 min down

## Last 30 days (2026-10-27T12:00:00Z to 2026-11-26T12:00:00Z)

3 incidents; 2 targets MISSED.

| metric | value | target | met? |
|---|---|---|---|
| MTTR | 2.9 min (over 2 closed and 1 still open, counted at their age so far) | < 5 min | met |
| availability | 99.9796 % (down 8.8 min) | > 99.9 % | met |
| security incidents | 1 | 0 | MISSED |
| automatic recovery rate | 33.3 % (1 of 3) | > 95 % | MISSED |

Per day (UTC): incidents started, downtime:

- 2026-11-14: 1 incident, 0.5 min down
- 2026-11-24: 1 incident, 3.3 min down
- 2026-11-26: 1 incident, 5.0 min down
- the other 28 days: no incidents, no downtime

## Weekly report (`grep "INCIDENT\\|RECOVERY" /var/log/afo-incidents.log | tail -20`)

````
2026-11-26T11:55:00Z: INCIDENT - x ```code``` [inc-c]
````
"""

QUIET_MARKDOWN = """\
# AFO runbook 6: performance targets

## Last 1 hour (2026-11-26T11:00:00Z to 2026-11-26T12:00:00Z)

No incidents in the last 1 hour; all targets met.

| metric | value | target | met? |
|---|---|---|---|
| MTTR | n/a | < 5 min | met |
| availability | 100.0000 % (down 0.0 s) | > 99.9 % | met |
| security incidents | 0 | 0 | met |
| automatic recovery rate | n/a (no incidents) | > 95 % | met |

Per day (UTC): incidents started, downtime:

- 2026-11-26: 0 incidents, 0.0 min down

## Weekly report (`grep "INCIDENT\\|RECOVERY" afo-incidents.log | tail -20`)

No INCIDENT or RECOVERY lines in the text log.
"""


def test_markdown_report() -> None:
    assert metrics.render_markdown(reports(), weekly=WEEKLY,
                                   log="/var/log/afo-incidents.log") == MARKDOWN


def test_markdown_report_of_a_quiet_hour() -> None:
    assert metrics.render_markdown([metrics.compute([], now=NOW, window_s=3600)]) == \
        QUIET_MARKDOWN


def test_long_windows_list_every_day_with_something_to_say() -> None:
    """An incident across midnight: its second day has downtime but no start, and shows."""
    start = datetime(2026, 11, 10, 23, 55, tzinfo=UTC).timestamp()
    report = metrics.compute([incident("inc-m", start), recovery("inc-m", start + 600)],
                             now=NOW, window_s=30 * D)
    days = [line for line in metrics.render_markdown([report]).splitlines()
            if line.startswith("- ")]
    assert days == ["- 2026-11-10: 1 incident, 5.0 min down",
                    "- 2026-11-11: 0 incidents, 5.0 min down",
                    "- the other 29 days: no incidents, no downtime"]


def test_markdown_counts_in_the_singular() -> None:
    report = metrics.compute([incident("inc-c", NOW - 300)], now=NOW, window_s=7 * D)
    assert "\n1 incident; 2 targets MISSED.\n" in metrics.render_markdown([report])
    one = metrics.compute([incident("inc-c", NOW - 300), recovery("inc-c", NOW - 290)],
                          now=NOW, window_s=7 * D)
    assert "\n1 incident; all targets met.\n" in metrics.render_markdown([one])
    missed_one = metrics.compute([incident("inc-c", NOW - 300, security=True),
                                  recovery("inc-c", NOW - 290)], now=NOW, window_s=7 * D)
    assert "\n1 incident; 1 target MISSED.\n" in metrics.render_markdown([missed_one])
    fenced = metrics.render_markdown([report], weekly=["plain line"])
    assert "\n```\nplain line\n```\n" in fenced  # no backticks inside: three suffice


def test_html_page() -> None:
    page = metrics.render_html(reports()[:1], weekly=["a <line>", "b"], log="/var/log/afo.log",
                               malformed=2)
    charts = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(charts) == 1
    assert "incidents and downtime per day (UTC), last 7 days" in charts[0]
    assert "2026-11-24: 1 incident(s) started" in charts[0]
    assert "2026-11-24: 3.3 min down" in charts[0]
    assert "2026-11-26: 5.0 min down" in charts[0]
    skeleton = page.replace(charts[0], "<svg/>").replace(metrics.CSS, "CSS")
    assert skeleton == """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>AFO runbook 6: performance targets</title>
<style>
CSS
</style>
</head>
<body>
<h1>AFO runbook 6: performance targets</h1>
<p><span class="badge missed">2 of 4 targets missed</span> <span class="note">from /var/log/afo.log</span></p>
<p class="note">skipped 2 malformed line(s) of the JSONL log</p>
<h2>Last 7 days <span class="note">(2026-11-19T12:00:00Z to 2026-11-26T12:00:00Z)</span></h2>
<table>
<tr><th>metric</th><th>value</th><th>target</th><th>met?</th></tr>
<tr><td>MTTR</td><td>4.2 min (over 1 closed and 1 still open, counted at their age so far)</td><td>&lt; 5 min</td><td class="met">met</td></tr>
<tr><td>availability</td><td>99.9173 % (down 8.3 min)</td><td>&gt; 99.9 %</td><td class="met">met</td></tr>
<tr><td>security incidents</td><td>1</td><td>0</td><td class="missed">MISSED</td></tr>
<tr><td>automatic recovery rate</td><td>50.0 % (1 of 2)</td><td>&gt; 95 %</td><td class="missed">MISSED</td></tr>
</table>
<svg/>
<h3>Incidents</h3>
<table>
<tr><th>incident</th><th>target</th><th>started</th><th>closed</th><th>downtime in window</th><th>how</th><th>security</th></tr>
<tr><td>inc-a</td><td class="target">/srv/&lt;b&gt;.toml</td><td class="time">2026-11-24T12:00:00Z</td><td class="time">2026-11-24T12:03:20Z</td><td class="num">3.3 min</td><td>automatic</td><td>yes</td></tr>
<tr><td>inc-c</td><td class="target">/etc/afo/a/runbook.toml</td><td class="time">2026-11-26T11:55:00Z</td><td class="time">open</td><td class="num">5.0 min</td><td>open, 1 failed</td><td>no</td></tr>
</table>
<h2>Weekly report <span class="note">(the last 20 INCIDENT and RECOVERY lines)</span></h2>
<pre>a &lt;line&gt;
b</pre>
</body>
</html>
"""  # noqa: E501 - the page's own lines


def test_html_page_of_a_quiet_hour() -> None:
    page = metrics.render_html([metrics.compute([], now=NOW, window_s=3600)])
    body = page.split("<body>\n", 1)[1]
    body = re.sub(r"<svg.*?</svg>", "<svg/>", body, flags=re.S)
    assert body.startswith("<h1>AFO runbook 6: performance targets</h1>\n"
                           '<p><span class="badge met">all targets met</span></p>\n<h2>')
    assert "skipped" not in body
    assert body.endswith('<svg/>\n<p class="note">No incidents in the last 1 hour.</p>\n'
                         '<h2>Weekly report <span class="note">(the last 20 INCIDENT and '
                         'RECOVERY lines)</span></h2>\n<p class="note">No INCIDENT or RECOVERY '
                         "lines in the text log.</p>\n</body>\n</html>\n")


def test_json_report() -> None:
    week, month = reports()
    text = metrics.render_json(reports(), weekly=WEEKLY, log="/l.log", jsonl="/l.jsonl",
                               malformed=3)
    assert text.startswith('{\n  "log": "/l.log",\n  "jsonl": "/l.jsonl",\n')
    assert text.endswith("\n}\n")
    assert json.loads(metrics.render_json([]))["malformed_lines"] == 0
    assert month.metric("automatic_recovery_rate").value == 33.333333333  # 1 of 3
    data = json.loads(text)
    assert (data["log"], data["jsonl"], data["malformed_lines"], data["all_met"]) == (
        "/l.log", "/l.jsonl", 3, False)
    assert data["weekly_report"] == WEEKLY
    assert data["windows"] == [r.as_json() for r in reports()]
    as_json = week.as_json()
    assert {k: as_json[k] for k in as_json if k not in ("incidents", "metrics", "days")} == {
        "window": "7 days", "label": "7 days", "window_s": 7 * D,
        "start": "2026-11-19T12:00:00Z", "end": NOW_ISO, "start_unix": NOW - 7 * D,
        "end_unix": NOW, "downtime_s": 500.0, "all_met": False, "orphan_recoveries": 0,
        "ignored_events": 0}
    assert as_json["incidents"][0] == {
        "id": "inc-a", "target": "/srv/<b>.toml", "started_at": "2026-11-24T12:00:00Z",
        "started_at_unix": NOW - 2 * D, "closed_at": "2026-11-24T12:03:20Z",
        "closed_at_unix": NOW - 2 * D + 200, "downtime_s": 200.0, "duration_s": 200.0,
        "open": False, "outcome": "recovered", "automatic": True, "security": True,
        "failed_recoveries": 0, "symptoms": ["guard-open"]}
    assert as_json["incidents"][1]["closed_at"] is None
    assert as_json["incidents"][1]["open"] is True
    assert list(as_json["metrics"]) == ["mttr", "availability", "security_incidents",
                                        "automatic_recovery_rate"]
    assert as_json["metrics"]["mttr"] == {
        "label": "MTTR", "value": 250.0, "unit": "s",
        "display": "4.2 min (over 1 closed and 1 still open, counted at their age so far)",
        "target": {"op": "<", "value": 300.0, "display": "< 5 min"}, "met": True}
    assert month.metric("mttr").value == 176.667
    assert as_json["days"][5] == {"date": "2026-11-24", "incidents": 1, "downtime_s": 200.0,
                                  "downtime_min": 3.333}
    named = metrics.compute([], now=NOW, window_s=D)
    assert metrics.Report(**{**named.__dict__, "spec": "24h"}).as_json()["window"] == "24h"


def test_rounding_in_the_json() -> None:
    """Milliseconds: enough for a TTR, and the same number in every place it appears."""
    report = metrics.compute([incident("inc-1", NOW - 100.5678), recovery("inc-1", NOW - 0.4)],
                             now=NOW, window_s=D)
    [only] = report.as_json()["incidents"]
    assert (only["downtime_s"], only["duration_s"]) == (100.168, 100.168)
    assert report.as_json()["downtime_s"] == 100.168
    assert report.as_json()["days"][-1]["downtime_s"] == 100.168
    assert report.metric("mttr").value == 100.168


# -- small formatters ------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "shown"), [
    (0.0, "0.0 s"), (119.94, "119.9 s"), (120.0, "2.0 min"), (7199.0, "120.0 min"),
    (7200.0, "2.0 h"), (90000.0, "25.0 h"), (90183.6, "25.1 h")])
def test_durations(seconds: float, shown: str) -> None:
    assert metrics._duration(seconds) == shown


@pytest.mark.parametrize(("window", "label"), [
    (7 * D, "7 days"), (D, "1 day"), (1.5 * D, "36 hours"), (3600.0, "1 hour"),
    (5400.0, "90 minutes"), (60.0, "1 minute"), (90.0, "90 seconds"), (0.5, "0.5 seconds")])
def test_window_labels(window: float, label: str) -> None:
    assert metrics._human(window) == label


@pytest.mark.parametrize(("value", "decimals", "shown"), [
    (99.91733, 4, "99.9173"),
    (99.9, 4, "99.9000"),  # exactly the target: shown as it is
    (99.89996, 4, "99.89996"),  # would round onto the target: one more decimal
    (99.900016, 4, "99.90002"),
    (99.9000000001, 4, "99.900000000"),  # nine decimals at most
    (50.0, 1, "50.0"),
])
def test_percentages_never_round_onto_the_target(value: float, decimals: int,
                                                 shown: str) -> None:
    assert metrics._pct(value, decimals, 99.9 if decimals == 4 else 95.0) == shown


def test_times_are_utc() -> None:
    assert metrics._iso(NOW) == NOW_ISO
    assert metrics._iso(NOW + 0.25) == "2026-11-26T12:00:00.250Z"
    assert metrics._iso(metrics.MAX_TIME - 1) == "9999-12-31T23:59:59Z"
    assert metrics._date(NOW - 1) == "2026-11-26"
    assert metrics._date(NOW - 12 * 3600 - 1) == "2026-11-25"


@pytest.mark.parametrize(("text", "parsed"), [
    ("7d", (7 * D, "7 days")), ("1d", (D, "1 day")), (" 24h ", (D, "24 hours")),
    ("1.5h", (5400.0, "1.5 hours")), ("90m", (5400.0, "90 minutes")),
    ("30s", (30.0, "30 seconds")), ("2w", (14 * D, "2 weeks")),
    ("3660d", (3660 * D, "3660 days")),
])
def test_window_specs(text: str, parsed: tuple[float, str]) -> None:
    assert metrics.parse_window(text) == parsed


@pytest.mark.parametrize("text", ["0d", "7x", "d", "-1d", "7", "3661d", "1 d 2"])
def test_bad_window_specs(text: str) -> None:
    with pytest.raises(metrics.argparse.ArgumentTypeError) as caught:
        metrics.parse_window(text)
    assert str(caught.value).startswith(repr(text) + ": ")


@pytest.mark.usefixtures("host_in_seoul")
@pytest.mark.parametrize(("text", "at"), [
    (NOW_ISO, NOW), ("2026-11-26T12:00:00", NOW), ("2026-11-26T21:00:00+09:00", NOW),
    (str(NOW), NOW), (" 2026-11-26T12:00:00Z ", NOW), ("0", 0.0)])
def test_now_specs(text: str, at: float) -> None:
    """A time without a zone is UTC, as everywhere in the runbook: not the host's KST."""
    assert metrics.parse_now(text) == at


@pytest.mark.parametrize("text", ["yesterday", "", "1e20", "-5", "nan"])
def test_bad_now_specs(text: str) -> None:
    with pytest.raises(metrics.argparse.ArgumentTypeError) as caught:
        metrics.parse_now(text)
    assert str(caught.value) == (f"{text!r}: want an ISO 8601 time such as "
                                 "2026-11-26T10:30:00Z (1970 to 9999)")


# -- reading the logs ------------------------------------------------------------------------


def test_load_events_skips_and_counts_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "afo-incidents.jsonl"
    good = [incident("inc-1", NOW - 60), recovery("inc-1", NOW - 30)]
    lines = [json.dumps(good[0]), "", "   ", "not json", "[" * 100_000,
             json.dumps({"event": "note"}), '{"event": "incident"}', json.dumps(good[1])]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'\xff{"event": "recovery"}\n')
    events, malformed = metrics.load_events(path)
    assert [e["event"] for e in events] == ["incident", "note", "recovery"]
    assert events[0] == good[0]
    assert malformed == 4  # blank lines and the unknown kind are not malformed
    assert metrics.load_events(tmp_path / "absent.jsonl") == ([], 0)
    with pytest.raises(OSError):
        metrics.load_events(tmp_path)


def test_weekly_lines_are_the_last_incident_and_recovery_lines(tmp_path: Path) -> None:
    lines = []
    for n in range(15):
        stamp = metrics._iso(NOW - D + n * 60)
        lines += [f"{stamp}: INCIDENT - service-down (failing: health[api]) [inc-{n}]",
                  f"{stamp}: Evidence: health[api]: body says INCIDENT - RECOVERY [inc-{n}]",
                  f"{stamp}: Decision: restart (priority immediate) [inc-{n}]",
                  f"{stamp}: RECOVERY - restart: recovered, TTR 1.0 s; ok [inc-{n}]"]
    log = tmp_path / "afo-incidents.log"
    log.write_bytes("".join(line + "\r\n" for line in [*lines, "INCIDENT without a stamp"])
                    .encode())
    wanted = [line for line in lines if " Evidence: " not in line and " Decision: " not in line]
    assert metrics.weekly_lines(log) == wanted[-20:]
    assert metrics.weekly_lines(log, n=3) == wanted[-3:]
    assert metrics.weekly_lines(log, n=0) == []
    assert metrics.weekly_lines(log, n=-1) == []
    assert metrics.weekly_lines(tmp_path / "nothing.log") == []


@pytest.mark.usefixtures("host_in_c_locale")
def test_weekly_lines_keep_any_text(tmp_path: Path) -> None:
    """UTF-8 whatever the locale; bytes that are not UTF-8 replaced, never a crash; only the
    line end is cut, not what the line itself ends with."""
    log = tmp_path / "afo-incidents.log"
    log.write_bytes("2026-11-26T11:00:00Z: INCIDENT - 보안 가드 열림 [inc-k]\r\n".encode()
                    + b"2026-11-26T11:01:00Z: RECOVERY - rollback: \xff\xfe box X  \n"
                    + b"2026-11-26T11:02:00Z: RECOVERY - restart: box X\n")
    assert metrics.weekly_lines(log) == [
        "2026-11-26T11:00:00Z: INCIDENT - 보안 가드 열림 [inc-k]",
        "2026-11-26T11:01:00Z: RECOVERY - rollback: \ufffd\ufffd box X  ",
        "2026-11-26T11:02:00Z: RECOVERY - restart: box X"]


@pytest.mark.usefixtures("host_in_c_locale")
def test_load_events_reads_utf_8_whatever_the_locale(tmp_path: Path) -> None:
    """Another tool may write the JSONL without escaping (jq, an editor)."""
    path = tmp_path / "afo-incidents.jsonl"
    raw = json.dumps(incident("inc-1", NOW - 60, target="/srv/서버/runbook.toml"),
                     ensure_ascii=False)
    path.write_bytes(raw.encode() + b"\n")
    events, malformed = metrics.load_events(path)
    assert (malformed, events[0]["target"]) == (0, "/srv/서버/runbook.toml")


@pytest.mark.parametrize(("line", "kind"), [
    ("2026-11-26T10:30:00Z: INCIDENT - x", "INCIDENT"),
    ("2026-11-26T10:30:00Z: RECOVERY - x: y", "RECOVERY"),
    ("2026-11-26T10:30:00Z: Evidence: INCIDENT", "Evidence:"),
    ("no separator at all", ""),
    ("2026-11-26T10:30:00Z: ", ""),
])
def test_the_kind_of_a_line_is_the_word_after_its_stamp(line: str, kind: str) -> None:
    assert metrics._kind_of_line(line) == kind


# -- the command, in-process -----------------------------------------------------------------


def write_log(folder: Path, events: list[dict[str, Any]], text: str = "") -> Path:
    log = folder / "afo-incidents.log"
    folder.mkdir(parents=True, exist_ok=True)
    log.with_suffix(".jsonl").write_text("".join(json.dumps(e) + "\n" for e in events),
                                         encoding="utf-8")
    if text:
        log.write_text(text, encoding="utf-8")
    return log


def test_the_command_prints_markdown_and_writes_json_and_html(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(tmp_path, EVENTS, "2026-11-26T11:55:00Z: INCIDENT - x ```code``` [inc-c]\n"
                    "2026-11-26T11:55:00Z: Decision: restart [inc-c]\n")
    out = tmp_path / "new" / "deeper" / "metrics.json"
    page = tmp_path / "other" / "deeper" / "metrics.html"
    code = metrics.main(["--log", str(log), "--now", NOW_ISO, "--window", "7d",
                         "--window", "30d", "--window", "168h", "--json", str(out),
                         "--html", str(page)])
    assert code == metrics.EXIT_MISSED == 1
    printed = capsys.readouterr()
    assert printed.out == MARKDOWN.replace("/var/log/afo-incidents.log", str(log))
    assert printed.err == ""
    data = json.loads(out.read_text())
    assert [w["window"] for w in data["windows"]] == ["7d", "30d"]  # 168h is 7d again
    assert (data["log"], data["jsonl"]) == (str(log), str(log.with_suffix(".jsonl")))
    assert data["weekly_report"] == WEEKLY
    html = page.read_text()
    assert html.count("<svg") == 2
    assert f'<span class="note">from {log}</span>' in html
    assert "<pre>2026-11-26T11:55:00Z: INCIDENT - x ```code``` [inc-c]</pre>" in html


@pytest.mark.usefixtures("host_in_c_locale")
def test_the_command_writes_utf_8_whatever_the_locale(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(tmp_path, [incident("inc-k", NOW - 60)],
                    "2026-11-26T11:59:00Z: INCIDENT - 보안 가드 열림 [inc-k]\n")
    with log.with_suffix(".jsonl").open("a", encoding="utf-8") as fh:
        fh.write("garbage\n")
    page = tmp_path / "metrics.html"
    assert metrics.main(["--log", str(log), "--now", NOW_ISO, "--html", str(page)]) == 1
    html = page.read_text(encoding="utf-8")
    assert "<pre>2026-11-26T11:59:00Z: INCIDENT - 보안 가드 열림 [inc-k]</pre>" in html
    assert "skipped 1 malformed line(s) of the JSONL log" in html
    capsys.readouterr()


def test_the_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_log(tmp_path / "good", [incident("inc-1", NOW - 600),
                                         recovery("inc-1", NOW - 570)])
    bad = write_log(tmp_path / "bad", [incident("inc-1", NOW - 600)])
    assert metrics.main(["--log", str(good), "--now", NOW_ISO]) == 0
    assert metrics.main(["--log", str(bad), "--now", NOW_ISO]) == 1
    # the twin named directly is taken for the log it belongs to, and the text log beside it
    bad.write_text("2026-11-26T11:50:00Z: INCIDENT - service-down [inc-1]\n")
    capsys.readouterr()
    assert metrics.main(["--log", str(bad.with_suffix(".jsonl")), "--now", NOW_ISO]) == 1
    shown = capsys.readouterr().out
    assert f'grep "INCIDENT\\|RECOVERY" {bad} | tail -20' in shown
    assert "\n2026-11-26T11:50:00Z: INCIDENT - service-down [inc-1]\n" in shown
    assert metrics.main(["--log", str(tmp_path / "none" / "afo-incidents.log")]) == 0
    shown = capsys.readouterr().out
    assert "No incidents in the last 7 days; all targets met." in shown
    stamp = re.search(r"to (\S+)\)", shown)
    assert stamp is not None
    # without --now, now is the current whole second (no milliseconds in the report)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp.group(1)), stamp.group(1)


def test_malformed_lines_are_reported_on_stderr(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(tmp_path, [incident("inc-1", NOW - 60), recovery("inc-1", NOW - 30)])
    with log.with_suffix(".jsonl").open("a") as fh:
        fh.write("garbage\n{}\n")
    out = tmp_path / "m.json"
    assert metrics.main(["--log", str(log), "--now", NOW_ISO, "--json", str(out)]) == 0
    assert capsys.readouterr().err == (f"afo-runbook metrics: skipped 2 malformed line(s) in "
                                       f"{log.with_suffix('.jsonl')}\n")
    assert json.loads(out.read_text())["malformed_lines"] == 2


@pytest.mark.parametrize(("args", "message"), [
    (["--window", "7x"], "--window '7x': want a positive number and a unit s, m, h, d or w "
                         "(7d, 30d, 24h)"),
    (["--window", "3661d"], "--window '3661d': longer than ten years"),
    (["--now", "yesterday"], "--now 'yesterday': want an ISO 8601 time such as "
                             "2026-11-26T10:30:00Z (1970 to 9999)"),
])
def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             args: list[str], message: str) -> None:
    log = write_log(tmp_path, [])
    assert metrics.main(["--log", str(log), *args]) == metrics.EXIT_USAGE == 2
    assert capsys.readouterr().err == f"afo-runbook metrics: {message}\n"


def test_unusable_paths_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(tmp_path / "x", [])
    for args, message in (
        (["--log", ""], "--log '': not a file path"),
        (["--log", "/"], "--log '/': not a file path"),
        (["--log", str(tmp_path)], f"cannot read {tmp_path}: Is a directory"),
        (["--log", str(log), "--json", str(log.with_suffix(".jsonl") / "m.json")],
         f"cannot write {log.with_suffix('.jsonl') / 'm.json'}: File exists"),
        (["--runbook-config", " "], "--runbook-config: empty path"),
        (["--runbook-config", str(tmp_path / "missing.toml")],
         f"{tmp_path / 'missing.toml'}: file not found"),
    ):
        assert metrics.main([*args, "--now", NOW_ISO]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith(f"afo-runbook metrics: {message}"), (args, err)


def test_a_folder_given_as_log_is_not_no_incidents(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "afo-incidents.log"
    folder.mkdir()
    jsonl = tmp_path / "afo-incidents.jsonl"
    jsonl.mkdir()
    assert metrics.main(["--log", str(folder), "--now", NOW_ISO]) == 2
    assert capsys.readouterr().err == f"afo-runbook metrics: cannot read {jsonl}: Is a directory\n"


def test_a_log_that_was_edited_is_refused(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Deleting an incident must not improve the MTTR: a broken hash chain stops the report,
    unless asked for anyway (then with a warning)."""
    log = tmp_path / "afo-incidents.log"
    writer = IncidentLog(log)
    for record in (incident("inc-1", NOW - 900), recovery("inc-1", NOW - 800),
                   incident("inc-2", NOW - 600), recovery("inc-2", NOW - 100)):
        data = {k: v for k, v in record.items() if k not in ("event", "at", "incident_id")}
        writer.append(Event(record["event"], record["at"], record["incident_id"], ["x"], data))
    lines = log.with_suffix(".jsonl").read_bytes().splitlines(keepends=True)
    assert metrics.main(["--log", str(log), "--now", NOW_ISO]) == 1  # whole: inc-2 too long
    capsys.readouterr()
    log.with_suffix(".jsonl").write_bytes(b"".join(lines[:2]) + lines[3])  # inc-2's start gone
    jsonl = log.with_suffix(".jsonl")
    assert metrics.main(["--log", str(log), "--now", NOW_ISO]) == 2
    problem = ("line 2: changed, or a line after it was removed (line 3 does not link to it)")
    assert capsys.readouterr().err == (
        f"afo-runbook metrics: {jsonl}: the hash chain is broken at {problem}; refusing to "
        "compute targets from a log that was edited (pass --allow-broken-log to compute "
        "anyway)\n")
    out = tmp_path / "anyway.json"
    assert metrics.main(["--log", str(log), "--now", NOW_ISO, "--allow-broken-log",
                         "--json", str(out)]) == 0  # what is left looks fine: that is the point
    assert capsys.readouterr().err == (f"afo-runbook metrics: WARNING: {jsonl}: the hash chain "
                                       f"is broken at {problem}\n")
    assert [i["id"] for i in json.loads(out.read_text())["windows"][0]["incidents"]] == ["inc-1"]


def test_the_runbook_config_names_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    custom = tmp_path / "a" / "runbook.toml"
    custom.parent.mkdir()
    custom.write_text('[incident_log]\npath = "custom/incidents.log"\n')
    write_log(custom.parent / "custom", [incident("inc-c", NOW - 60)])
    (custom.parent / "custom" / "afo-incidents.jsonl").rename(
        custom.parent / "custom" / "incidents.jsonl")
    plain = tmp_path / "b" / "runbook.toml"
    plain.parent.mkdir()
    plain.write_text("")  # no [incident_log]: <config folder>/logs/afo-incidents.log
    write_log(plain.parent / "logs", [incident("inc-p", NOW - 60)])
    for config, iid in ((custom, "inc-c"), (plain, "inc-p")):
        out = tmp_path / f"{iid}.json"
        assert metrics.main(["--runbook-config", str(config), "--now", NOW_ISO,
                             "--json", str(out)]) == 1
        assert [i["id"] for i in json.loads(out.read_text())["windows"][0]["incidents"]] == [iid]
    monkeypatch.setenv("RUNBOOK_CONFIG", str(plain))
    out = tmp_path / "env.json"
    assert metrics.main(["--now", NOW_ISO, "--json", str(out)]) == 1
    assert json.loads(out.read_text())["log"] == str(plain.parent / "logs" / "afo-incidents.log")
    capsys.readouterr()


def test_without_a_config_the_one_beside_the_checks_names_the_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """No --log, no --runbook-config, no RUNBOOK_CONFIG: the runbook.toml of the suite itself
    (read, never written: the report goes to tmp_path)."""
    monkeypatch.delenv("RUNBOOK_CONFIG", raising=False)
    own = Path(metrics.__file__).resolve().parent.parent / "runbook.toml"
    expected = load_config(own).incident_log or own.parent / "logs" / "afo-incidents.log"
    out = tmp_path / "default.json"
    assert metrics.main(["--now", NOW_ISO, "--json", str(out)]) in (0, 1)
    assert json.loads(out.read_text())["log"] == str(expected)
    capsys.readouterr()


def test_the_report_reaches_any_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ASCII-only stdout gets escapes instead of a UnicodeEncodeError."""
    buffer = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(buffer, encoding="ascii"))
    metrics._print("INCIDENT - 보안\n")
    assert buffer.getvalue() == b"INCIDENT - \\ubcf4\\uc548\n"


def test_a_reader_that_went_away_ends_the_output_quietly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`afo-runbook metrics | head -3`: the pipe closes early; the rest goes to /dev/null
    (on the pipe's own descriptor, never this process's real stdout)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    stream = open(write_end, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    monkeypatch.setattr(sys, "stdout", stream)
    try:
        metrics._print("x" * 100_000)  # more than the pipe and any buffer holds
        assert os.write(write_end, b"still writable") == len(b"still writable")
        assert os.path.samestat(os.fstat(write_end), os.stat(os.devnull))
    finally:
        monkeypatch.undo()
        stream.close()


def test_the_subcommand_wires_the_same_options(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    parser = metrics.argparse.ArgumentParser(prog="afo-runbook")
    metrics.add_parser(parser.add_subparsers(dest="command", required=True))
    log = write_log(tmp_path, [])
    args = parser.parse_args(["metrics", "--log", str(log), "--now", NOW_ISO,
                              "--window", "24h", "--window", "1h"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "## Last 24 hours (2026-11-25T12:00:00Z to 2026-11-26T12:00:00Z)" in out
    assert out.index("## Last 24 hours") < out.index("## Last 1 hour (")
    with pytest.raises(SystemExit):
        parser.parse_args(["metrics", "--log", str(log), "--runbook-config", "x"])
    capsys.readouterr()
