"""Runbook 6's numbers at the edges of their window, where an off-by-one hides.

A window of length L ends at `now`: W = [now - L, now], closed at both ends (the module
docstring of afo_runbook.metrics is the specification). Each rule is tried exactly at an
edge, just before it and just after it. Times are offsets from a fixed NOW, so every
expected number is plain arithmetic on the offsets written next to it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from afo_runbook import metrics

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()
MIN, H, D = 60.0, 3600.0, 86400.0
W7 = 7 * D
START = NOW - W7  # 2026-11-19T12:00:00Z, the window's first instant
EPS = 0.25  # binary-exact: the arithmetic below needs no tolerance
A, B = "/etc/afo/a/runbook.toml", "/etc/afo/b/runbook.toml"


def incident(iid: str, observed: float, *, target: str = A, security: bool = False,
             symptoms: tuple[str, ...] = ("service-down",), at: float | None = None,
             **extra: Any) -> dict[str, Any]:
    """An incident event as recovery/plugin.py writes it (written a moment after observing)."""
    return {"event": "incident", "incident_id": iid, "target": target,
            "at": observed + 0.5 if at is None else at, "observed_at": observed,
            "security": security, "symptoms": list(symptoms), **extra}


def recovery(iid: str, at: float, *, outcome: str = "recovered", automatic: bool = True,
             closed: bool = True, target: str = A) -> dict[str, Any]:
    return {"event": "recovery", "incident_id": iid, "target": target, "at": at,
            "outcome": outcome, "automatic": automatic, "closed": closed}


def week(*events: dict[str, Any], now: float = NOW) -> metrics.Report:
    return metrics.compute(list(events), now=now, window_s=W7)


def value(report: metrics.Report, key: str) -> Any:
    return report.metric(key).value


# -- the window's start ----------------------------------------------------------------------


def test_closed_exactly_at_the_window_start_is_in_the_window() -> None:
    """end(i) >= now - L: in I with no downtime inside W, and its MTTR sample counts
    (now - L <= close(i) <= now)."""
    report = week(incident("inc-1", START - 600), recovery("inc-1", START))
    [only] = report.incidents
    assert (only.id, only.downtime_s, only.duration_s, only.closed_at) == (
        "inc-1", 0.0, 600.0, START)
    assert value(report, "mttr") == 600.0
    assert report.metric("mttr").display == "10.0 min (over 1 closed)"
    assert report.downtime_s == 0
    assert value(report, "availability") == 100.0
    assert value(report, "automatic_recovery_rate") == 100.0


def test_closed_just_before_the_window_start_is_not_in_it() -> None:
    report = week(incident("inc-1", START - 600), recovery("inc-1", START - EPS))
    assert report.incidents == ()
    assert value(report, "mttr") is None
    assert value(report, "automatic_recovery_rate") is None


def test_closed_just_after_the_window_start() -> None:
    report = week(incident("inc-1", START - 600), recovery("inc-1", START + EPS))
    [only] = report.incidents
    assert only.downtime_s == EPS
    assert value(report, "mttr") == 600 + EPS
    assert report.days[0].downtime_s == EPS
    assert report.days[0].incidents == 0  # it started before the window


@pytest.mark.parametrize(("offset", "counted"), [(-EPS, 0), (0.0, 1), (EPS, 1)])
def test_an_incident_starting_at_the_window_start(offset: float, counted: int) -> None:
    """Per day, incidents started inside W count: one starting exactly at now - L does."""
    report = week(incident("inc-1", START + offset), recovery("inc-1", START + 60))
    [only] = report.incidents
    assert only.downtime_s == 60.0 - max(offset, 0.0)
    assert only.duration_s == 60.0 - offset
    assert value(report, "mttr") == 60.0 - offset
    assert report.days[0].incidents == counted
    assert sum(day.incidents for day in report.days) == counted


def test_the_mttr_counts_closed_incidents_whole_and_open_ones_at_their_age() -> None:
    """Open across the window's start and closed inside it: its whole duration is the sample;
    one closed before the window counts nowhere; one still open counts at its age so far."""
    report = week(incident("inc-old", START - 2 * H), recovery("inc-old", START - H),
                  incident("inc-edge", START - 200), recovery("inc-edge", START + 100),
                  incident("inc-open", NOW - 100))
    assert [i.id for i in report.incidents] == ["inc-edge", "inc-open"]
    assert value(report, "mttr") == 200.0  # (300 + 100) / 2
    assert report.metric("mttr").display == (
        "3.3 min (over 1 closed and 1 still open, counted at their age so far)")
    closed_only = week(incident("inc-edge", START - 200), recovery("inc-edge", START + 100))
    assert value(closed_only, "mttr") == 300.0
    assert closed_only.metric("mttr").met is False  # 300 s is not less than 5 min
    assert report.downtime_s == 200.0
    assert value(report, "automatic_recovery_rate") == 50.0


# -- the window's end: now -------------------------------------------------------------------


def test_events_written_after_now_are_not_known_yet() -> None:
    report = week(incident("inc-1", NOW - 600), recovery("inc-1", NOW + EPS),
                  incident("inc-2", NOW - 1, at=NOW + EPS))
    [only] = report.incidents
    assert (only.id, only.closed_at, only.outcome, only.downtime_s) == (
        "inc-1", None, "open", 600.0)


def test_an_event_written_exactly_at_now_is_known() -> None:
    report = week(incident("inc-1", NOW - 600), recovery("inc-1", NOW))
    [only] = report.incidents
    assert (only.closed_at, only.outcome) == (NOW, "recovered")
    assert value(report, "mttr") == 600.0  # closed at now: inside [now - L, now]


def test_an_incident_first_observed_later_than_now_does_not_hide_the_rest() -> None:
    """Its `at` is known but its observation lies after `now` (another host's clock)."""
    report = week(incident("inc-ahead", NOW + 60, at=NOW - 1), incident("inc-1", NOW - 100))
    assert [i.id for i in report.incidents] == ["inc-1"]


def test_an_unknown_event_kind_does_not_hide_the_rest() -> None:
    report = week({"event": "note", "at": NOW - 50, "incident_id": "n"},
                  recovery("inc-0", NOW + 5), incident("inc-1", NOW - 100))
    assert [i.id for i in report.incidents] == ["inc-1"]


@pytest.mark.parametrize(("observed", "known"), [(NOW, True), (NOW + EPS, False)])
def test_an_incident_first_observed_at_now(observed: float, known: bool) -> None:
    report = week(incident("inc-1", observed, at=NOW))
    assert [i.id for i in report.incidents] == (["inc-1"] if known else [])
    if known:
        assert (report.incidents[0].downtime_s, report.days[-1].incidents) == (0.0, 1)


def test_an_open_incident_is_down_until_now() -> None:
    report = week(incident("inc-1", NOW - 1200),
                  recovery("inc-1", NOW - 1100, outcome="failed, escalated", closed=False))
    [only] = report.incidents
    assert (only.closed_at, only.outcome, only.failed_recoveries) == (None, "open", 1)
    assert (only.downtime_s, only.duration_s) == (1200.0, 1200.0)
    assert report.metric("mttr").display == (
        "20.0 min (over 0 closed and 1 still open, counted at their age so far)")
    assert report.metric("mttr").met is False  # open for longer than the target already
    assert value(report, "availability") == round(100 * (1 - 1200 / W7), 9)
    assert value(report, "automatic_recovery_rate") == 0.0


def test_an_incident_open_since_before_the_window_is_down_all_of_it() -> None:
    report = week(incident("inc-1", START - D))
    assert report.incidents[0].downtime_s == W7
    assert value(report, "availability") == 0.0
    assert report.metric("availability").display == "0.0000 % (down 168.0 h)"


# -- one incident, many events ----------------------------------------------------------------


def test_the_first_observation_and_the_first_closing_recovery_decide() -> None:
    t0 = NOW - 3 * H
    report = week(incident("inc-r", t0 + 60, symptoms=("service-down",)),
                  incident("inc-r", t0, target=B, symptoms=("guard-open", "service-down")),
                  recovery("inc-r", t0 + 300, outcome="resolved", automatic=False),
                  recovery("inc-r", t0 + 270),
                  recovery("inc-r", t0 + 100, closed=False))
    [only] = report.incidents
    assert (only.started_at, only.closed_at, only.outcome, only.automatic) == (
        t0, t0 + 270, "recovered", True)
    assert only.target == A  # the first event's target
    assert only.symptoms == ("service-down", "guard-open")  # each once, in order seen
    assert only.security is True  # a symptom says so, though no event has the flag
    assert only.failed_recoveries == 1
    assert only.downtime_s == 270.0


def test_an_automatic_recovery_closes_it_even_after_a_manual_close() -> None:
    """An older log may hold both; the automatic "recovered" one is what happened."""
    t0 = NOW - H
    report = week(incident("inc-1", t0),
                  recovery("inc-1", t0 + 100, outcome="resolved", automatic=False),
                  recovery("inc-1", t0 + 250))
    [only] = report.incidents
    assert (only.closed_at, only.outcome, only.automatic) == (t0 + 250, "recovered", True)
    manual = week(incident("inc-1", t0),
                  recovery("inc-1", t0 + 100, outcome="resolved", automatic=False),
                  recovery("inc-1", t0 + 50, outcome="failed, escalated", closed=False))
    assert (manual.incidents[0].closed_at, manual.incidents[0].automatic) == (t0 + 100, False)
    failed_auto = week(incident("inc-1", t0),
                       recovery("inc-1", t0 + 100, outcome="resolved", automatic=False),
                       recovery("inc-1", t0 + 90, outcome="failed", automatic=True))
    assert failed_auto.incidents[0].closed_at == t0 + 90  # a closing event, though not "recovered"


def test_a_recovery_logged_before_its_first_observation_closes_it_at_once() -> None:
    """Clocks of two hosts disagree: end = max(start, close), never a negative duration."""
    report = week(incident("inc-1", NOW - 100), recovery("inc-1", NOW - 200))
    [only] = report.incidents
    assert (only.duration_s, only.downtime_s) == (0.0, 0.0)
    assert value(report, "mttr") == 0.0


@pytest.mark.parametrize(("outcome", "automatic", "counted"), [
    ("recovered", True, True), ("resolved", True, False), ("recovered", False, False)])
def test_only_a_verified_automatic_recovery_is_automatic(outcome: str, automatic: bool,
                                                         counted: bool) -> None:
    report = week(incident("inc-1", NOW - 100),
                  recovery("inc-1", NOW - 50, outcome=outcome, automatic=automatic))
    assert report.incidents[0].automatic is counted
    assert value(report, "automatic_recovery_rate") == (100.0 if counted else 0.0)


def test_security_incidents_by_flag_or_symptom() -> None:
    report = week(incident("inc-1", NOW - 900, security=True),
                  incident("inc-2", NOW - 800, symptoms=("secret-rejected",)),
                  incident("inc-3", NOW - 700, symptoms=("ports-wrong", "heartbeat-failure")))
    assert [i.security for i in report.incidents] == [True, True, False]
    assert report.metric("security_incidents").value == 2
    assert report.metric("security_incidents").display == "2"
    assert report.metric("security_incidents").met is False
    assert week().metric("security_incidents").met is True


def test_incidents_are_listed_by_start_then_id() -> None:
    report = week(incident("inc-b", NOW - 500), incident("inc-c", NOW - 900),
                  incident("inc-a", NOW - 500))
    assert [i.id for i in report.incidents] == ["inc-c", "inc-a", "inc-b"]


def test_orphans_unknown_kinds_and_malformed_dicts() -> None:
    report = week(recovery("inc-orphan", NOW - 10), {"event": "note", "at": NOW - 5},
                  {"event": "incident"}, "not a dict", incident("inc-1", NOW - 100))  # type: ignore[arg-type]
    assert [i.id for i in report.incidents] == ["inc-1"]
    assert (report.orphan_recoveries, report.ignored_events) == (1, 2)


# -- the union: targets overlapping count once -----------------------------------------------


def test_overlapping_incidents_of_two_targets_count_once() -> None:
    t0 = NOW - 2 * H
    report = week(incident("inc-a", t0, target=A), incident("inc-b", t0 + 300, target=B),
                  recovery("inc-a", t0 + 600, target=A), recovery("inc-b", t0 + 900, target=B))
    assert [i.downtime_s for i in report.incidents] == [600.0, 600.0]
    assert report.downtime_s == 900.0
    assert value(report, "mttr") == 600.0
    assert value(report, "availability") == round(100 * (1 - 900 / W7), 9)


@pytest.mark.parametrize(("intervals", "union"), [
    ([], []),
    ([(5.0, 9.0), (1.0, 3.0)], [(1.0, 3.0), (5.0, 9.0)]),
    ([(1.0, 3.0), (3.0, 4.0)], [(1.0, 4.0)]),  # touching: one stretch of downtime
    ([(1.0, 3.0), (3.5, 4.0)], [(1.0, 3.0), (3.5, 4.0)]),
    ([(1.0, 10.0), (2.0, 3.0), (4.0, 12.0)], [(1.0, 12.0)]),
    ([(1.0, 10.0), (2.0, 3.0)], [(1.0, 10.0)]),  # contained: the longer end stays
])
def test_merge(intervals: list[tuple[float, float]], union: list[tuple[float, float]]) -> None:
    assert metrics._merge(intervals) == union


# -- the targets at their boundaries ---------------------------------------------------------


@pytest.mark.parametrize(("mttr", "met"), [(299.999, True), (300.0, False)])
def test_mttr_must_be_under_five_minutes(mttr: float, met: bool) -> None:
    report = week(incident("inc-1", NOW - H), recovery("inc-1", NOW - H + mttr))
    assert report.metric("mttr").met is met


@pytest.mark.parametrize(("down_s", "shown", "met"), [
    (604.8, "99.9000", False),  # exactly 99.9 %: the target is "more than"
    (604.7, "99.90002", True),  # 99.900016...: never displayed as if it were 99.9000
    (605.0, "99.89997", False),  # 99.899966...: not rounded up to the target
    (0.0, "100.0000", True),
])
def test_availability_at_its_target(down_s: float, shown: str, met: bool) -> None:
    report = week(incident("inc-1", NOW - D), recovery("inc-1", NOW - D + down_s))
    availability = report.metric("availability")
    assert availability.display.startswith(f"{shown} % (down ")
    assert availability.met is met


@pytest.mark.parametrize(("automatic", "met"), [(19, False), (20, True)])
def test_automatic_recovery_rate_must_exceed_95_percent(automatic: int, met: bool) -> None:
    events: list[dict[str, Any]] = []
    for n in range(20):
        t0 = NOW - D + n * H
        events += [incident(f"inc-{n}", t0),
                   recovery(f"inc-{n}", t0 + 10, automatic=n < automatic,
                            outcome="recovered" if n < automatic else "resolved")]
    rate = week(*events).metric("automatic_recovery_rate")
    assert rate.value == automatic * 5.0  # 19 of 20 is exactly 95 %: not more than 95 %
    assert rate.met is met
    assert rate.display == f"{automatic * 5.0:.1f} % ({automatic} of 20)"


def test_no_incidents_meets_every_target() -> None:
    report = week()
    assert [(m.key, m.value, m.display, m.met) for m in report.metrics] == [
        ("mttr", None, "n/a", True),
        ("availability", 100.0, "100.0000 % (down 0.0 s)", True),
        ("security_incidents", 0, "0", True),
        ("automatic_recovery_rate", None, "n/a (no incidents)", True)]
    assert report.all_met
    assert [m.as_json() for m in report.metrics][1] == {
        "label": "availability", "value": 100.0, "unit": "%",
        "display": "100.0000 % (down 0.0 s)",
        "target": {"op": ">", "value": 99.9, "display": "> 99.9 %"}, "met": True}
    assert [(m.label, m.unit, m.target_op, m.target, m.target_display)
            for m in report.metrics] == [
        ("MTTR", "s", "<", 300.0, "< 5 min"),
        ("availability", "%", ">", 99.9, "> 99.9 %"),
        ("security incidents", "incidents", "=", 0, "0"),
        ("automatic recovery rate", "%", ">", 95.0, "> 95 %")]


def test_one_missed_target_misses_the_report() -> None:
    report = week(incident("inc-1", NOW - 100, security=True), recovery("inc-1", NOW - 90))
    assert [m.met for m in report.metrics] == [True, True, False, True]
    assert not report.all_met


# -- days ------------------------------------------------------------------------------------


def test_days_cover_the_window_in_utc_dates() -> None:
    """12:00 to 12:00 over seven days touches eight dates, the first and last half days."""
    report = week()
    assert [d.date for d in report.days] == [f"2026-11-{n}" for n in range(19, 27)]
    midnight = datetime(2026, 11, 26, tzinfo=UTC).timestamp()
    assert [d.date for d in week(now=midnight).days] == [
        f"2026-11-{n}" for n in range(19, 26)]  # midnight to midnight: seven
    short = metrics.compute([], now=NOW, window_s=60)
    assert [d.date for d in short.days] == ["2026-11-26"]


def test_downtime_across_midnight_splits_between_days() -> None:
    start = datetime(2026, 11, 24, 23, 50, tzinfo=UTC).timestamp()
    report = week(incident("inc-m", start), recovery("inc-m", start + 20 * MIN))
    by_date = {d.date: (d.incidents, d.downtime_s) for d in report.days}
    assert by_date["2026-11-24"] == (1, 10 * MIN)
    assert by_date["2026-11-25"] == (0, 10 * MIN)
    assert sum(d.downtime_s for d in report.days) == report.downtime_s


def test_an_incident_starting_at_a_midnight_now_joins_the_last_day() -> None:
    midnight = datetime(2026, 11, 26, tzinfo=UTC).timestamp()
    report = week(incident("inc-1", midnight, at=midnight), now=midnight)
    assert (report.days[-1].date, report.days[-1].incidents) == ("2026-11-25", 1)


def test_each_day_adds_up_its_incidents_and_downtime() -> None:
    """Two incidents on one day, apart: two started, both downtimes counted."""
    day = datetime(2026, 11, 25, tzinfo=UTC).timestamp()
    report = week(incident("inc-1", day + H), recovery("inc-1", day + H + 60),
                  incident("inc-2", day + 5 * H), recovery("inc-2", day + 5 * H + 90))
    by_date = {d.date: (d.incidents, d.downtime_s) for d in report.days}
    assert by_date["2026-11-25"] == (2, 150.0)


def test_a_long_incident_fills_every_day_it_spans() -> None:
    start = datetime(2026, 11, 21, 6, 0, tzinfo=UTC).timestamp()
    report = week(incident("inc-1", start), recovery("inc-1", start + 2 * D + 3 * H))
    down = {d.date: d.downtime_s for d in report.days if d.downtime_s}
    assert down == {"2026-11-21": 18 * H, "2026-11-22": D, "2026-11-23": 9 * H}


# -- the inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "number"), [
    (0, 0.0), (1795688400, 1795688400.0), (1.5, 1.5), (metrics.MAX_TIME - 1, metrics.MAX_TIME - 1),
    (metrics.MAX_TIME, None), (-1, None), (True, None), (False, None), ("1", None), (None, None),
    (math.nan, None), (math.inf, None), (10**400, None),
])
def test_a_time_is_a_finite_number_from_1970_to_9999(raw: Any, number: float | None) -> None:
    assert metrics._number(raw) == number


def test_normalize_keeps_what_compute_needs() -> None:
    full = incident("inc-1", NOW - 10, extra="kept")
    assert metrics.normalize(full) == full
    without_observed = {k: v for k, v in full.items() if k not in ("observed_at", "security",
                                                                   "symptoms")}
    assert metrics.normalize(without_observed) == {
        **without_observed, "observed_at": NOW - 9.5, "security": False, "symptoms": []}
    rec = recovery("inc-1", NOW)
    assert metrics.normalize(rec) == rec
    assert metrics.normalize({k: v for k, v in rec.items() if k != "target"})["target"] == ""
    note = {"event": "note", "text": "a newer writer's kind"}
    assert metrics.normalize(note) == note
    assert metrics.normalize(note) is not note


@pytest.mark.parametrize("broken", [
    None, [], "incident", {"event": 3}, {"no": "event"},
    {**incident("i", NOW), "incident_id": ""}, {**incident("i", NOW), "incident_id": 7},
    {**incident("i", NOW), "at": "now"}, {**incident("i", NOW), "target": None},
    {**incident("i", NOW), "observed_at": -5}, {**incident("i", NOW), "security": "yes"},
    {**incident("i", NOW), "symptoms": "guard-open"}, {**incident("i", NOW), "symptoms": [1]},
    {**recovery("i", NOW), "outcome": None}, {**recovery("i", NOW), "target": 5},
    {**recovery("i", NOW), "automatic": "true"}, {**recovery("i", NOW), "closed": 1},
    {k: v for k, v in recovery("i", NOW).items() if k != "closed"},
])
def test_normalize_refuses_what_is_not_an_event(broken: Any) -> None:
    assert metrics.normalize(broken) is None


def test_compute_refuses_a_meaningless_window() -> None:
    for now, window in ((NOW, 0), (NOW, -1), (NOW, metrics.MAX_WINDOW_S + 1),
                        (math.nan, W7), (-1.0, W7)):
        with pytest.raises(ValueError, match=r"^need now in 1970\.\.9999"):
            metrics.compute([], now=now, window_s=window)
    assert metrics.compute([], now=NOW, window_s=metrics.MAX_WINDOW_S).window_s == \
        metrics.MAX_WINDOW_S
    for short in (1.0, 0.5):  # any positive window, however short
        assert metrics.compute([], now=NOW, window_s=short).window_s == short


def test_a_report_labels_its_window() -> None:
    report = week()
    assert (report.label, report.start, report.end, report.window_s) == (
        "7 days", START, NOW, W7)
    assert metrics.compute([], now=NOW, window_s=5400, label="my window").label == "my window"
