"""Runbook 2.2's append-only incident log, in-process: its lock, its fsync, whole lines.

The lock is held by the test itself (a second `FileLock` on the same file, as another run
would hold it), so what a writer does meanwhile is seen directly rather than hoped for from
a race. `os.fsync` and `os.write` are wrapped by spies that record each call and then make
the real call: the data still reaches the disk.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from afo_runbook import incident_log
from afo_runbook.decision import DEFAULT_ROWS
from afo_runbook.incident_log import (
    ChainReport,
    Event,
    IncidentLog,
    IncidentLogError,
    _last_line,
    add_log_parser,
    incident_event,
    jsonl_path,
    line_hash,
    new_incident_id,
    recovery_event,
    verify_chain,
)
from afo_runbook.verdict import CheckRecord, build_verdict

AT = 1795688829.25  # 2026-11-26T10:27:09.25Z
TARGET = "/etc/afo/runbook.toml"


def event(incident_id: str = "inc-1", lines: list[str] | None = None, **data: Any) -> Event:
    return Event("incident", AT, incident_id, lines or ["INCIDENT - service-down"],
                 {"target": TARGET, **data})


def held(log: IncidentLog) -> FileLock:
    """The log's lock, as another run (another process) would take it."""
    return FileLock(str(log.path) + ".lock")


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_the_jsonl_twin_sits_beside_the_log() -> None:
    assert jsonl_path(Path("/var/log/afo-incidents.log")) == Path("/var/log/afo-incidents.jsonl")
    assert jsonl_path(Path("logs/incidents")) == Path("logs/incidents.jsonl")
    assert jsonl_path(Path("logs/incidents.txt")) == Path("logs/incidents.txt.jsonl")


@pytest.mark.usefixtures("host_in_seoul")
def test_incident_ids_carry_the_utc_time_and_differ() -> None:
    first, second = new_incident_id(AT), new_incident_id(AT)
    assert re.fullmatch(r"inc-20261126T102709Z-[0-9a-f]{6}", first), first
    assert first != second


@pytest.mark.usefixtures("host_in_seoul")
def test_event_text_is_one_stamped_line_per_line() -> None:
    """A detail holding a log tail (newlines, blank lines) stays on its own line, so the
    runbook's `grep "INCIDENT\\|RECOVERY"` sees whole events and never a stray fragment."""
    text = event(lines=["INCIDENT - service-down (failing: health[api])",
                        "Evidence: health[api]: first\n\n  second  \r\nthird",
                        "Decision: restart (priority immediate)"]).text()
    assert text == (
        "2026-11-26T10:27:09Z: INCIDENT - service-down (failing: health[api]) [inc-1]\n"
        "2026-11-26T10:27:09Z: Evidence: health[api]: first | second | third [inc-1]\n"
        "2026-11-26T10:27:09Z: Decision: restart (priority immediate) [inc-1]\n")


def test_event_json_line_is_one_compact_sorted_line() -> None:
    line = event(detail="two\nlines", symptoms=["service-down"]).json_line()
    assert line.endswith("}\n")
    assert line.count("\n") == 1
    assert line == json.dumps(json.loads(line), sort_keys=True, separators=(",", ":")) + "\n"
    assert json.loads(line) == {"ts": "2026-11-26T10:27:09Z", "at": 1795688829.25,
                                "event": "incident", "incident_id": "inc-1", "target": TARGET,
                                "detail": "two\nlines", "symptoms": ["service-down"]}
    assert json.loads(Event("recovery", 1.23456, "i", [], {}).json_line())["at"] == 1.235


@pytest.mark.usefixtures("umask_022")
def test_append_writes_both_files_redacted(tmp_path: Path) -> None:
    path = tmp_path / "new" / "logs" / "afo-incidents.log"
    log = IncidentLog(path, redact=lambda text: text.replace("tok-9", "[REDACTED]"))
    log.append(event(lines=["INCIDENT - guard-open: tok-9 seen"], detail="tok-9"))
    assert path.read_text().endswith(": INCIDENT - guard-open: [REDACTED] seen [inc-1]\n")
    [record] = list(log.events())
    assert record["detail"] == "[REDACTED]"
    assert {path.stat().st_mode & 0o777, log.jsonl.stat().st_mode & 0o777} == {0o640}
    log.append(event("inc-2"))  # appended, never truncated
    assert [r["incident_id"] for r in log.events()] == ["inc-1", "inc-2"]
    assert len(path.read_text().splitlines()) == 2


def test_a_held_lock_means_nothing_is_written(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """While another writer holds the lock, an append gives up after LOCK_TIMEOUT with a
    clear error and writes neither file: it never writes beside the lock holder."""
    monkeypatch.setattr(incident_log, "LOCK_TIMEOUT", 0.2)
    log = IncidentLog(tmp_path / "afo-incidents.log")
    with held(log), pytest.raises(IncidentLogError) as caught:
        log.append(event())
    assert str(caught.value) == f"{log.path}: locked by another writer for 0.2 s"
    assert not log.path.exists()
    assert not log.jsonl.exists()
    log.append(event())  # released: the next append goes through
    assert len(list(log.events())) == 1


def test_a_writer_waits_for_the_lock_then_writes(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    log = IncidentLog(tmp_path / "afo-incidents.log")
    waiting = threading.Event()
    real_acquire = log._lock.acquire

    def spy_acquire(*args: Any, **kwargs: Any) -> Any:
        waiting.set()
        return real_acquire(*args, **kwargs)

    monkeypatch.setattr(log._lock, "acquire", spy_acquire)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            log.append(event())
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    lock = held(log)
    lock.acquire()
    writer = threading.Thread(target=write)
    try:
        writer.start()
        assert waiting.wait(10), "the writer never asked for the lock"
        assert writer.is_alive()
        assert not log.path.exists()  # the lock is ours: nothing can have been written
    finally:
        lock.release()
    writer.join(15)
    assert not writer.is_alive()
    assert errors == []
    assert len(list(log.events())) == 1


def spy(monkeypatch: pytest.MonkeyPatch, name: str,
        wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    monkeypatch.setattr(os, name, wrap(getattr(os, name)))


def test_every_file_is_fsynced_before_the_lock_is_released(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = IncidentLog(tmp_path / "afo-incidents.log")
    synced: list[tuple[int, bool, int]] = []

    def wrap(real: Callable[[int], None]) -> Callable[[int], None]:
        def fsync(fd: int) -> None:
            synced.append((os.fstat(fd).st_ino, log._lock.is_locked, os.fstat(fd).st_size))
            real(fd)
        return fsync

    spy(monkeypatch, "fsync", wrap)
    log.append(event())
    files = [log.path.stat(), log.jsonl.stat()]
    # each file once, under the lock, after all of its bytes were written
    assert synced == [(f.st_ino, True, f.st_size) for f in files]


def test_one_write_per_file_per_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole lines in one write(): a concurrent reader or a SIGKILL never sees half of one."""
    log = IncidentLog(tmp_path / "afo-incidents.log")
    writes: list[bytes] = []

    def wrap(real: Callable[[int, Any], int]) -> Callable[[int, Any], int]:
        def write(fd: int, data: Any) -> int:
            writes.append(bytes(data))
            return real(fd, data)
        return write

    spy(monkeypatch, "write", wrap)
    three = event(lines=["INCIDENT - x", "Evidence: y", "Decision: z"])
    log.append(three)
    assert writes == [three.text().encode(), three.json_line(line_hash(None)).encode()]


def test_a_short_write_continues_where_it_stopped(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel may write less than asked (a signal, a full pipe): the rest follows, still
    under the lock, and the line arrives whole and once."""
    log = IncidentLog(tmp_path / "afo-incidents.log")

    def wrap(real: Callable[[int, Any], int]) -> Callable[[int, Any], int]:
        def write(fd: int, data: Any) -> int:
            return real(fd, bytes(data)[:7])  # a real write of the first 7 bytes only
        return write

    spy(monkeypatch, "write", wrap)
    long = event(lines=["INCIDENT - " + "x" * 50], detail="d" * 40)
    log.append(long)
    monkeypatch.undo()
    assert log.path.read_text() == long.text()
    assert log.jsonl.read_text() == long.json_line(line_hash(None))


def test_an_unwritable_log_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    log = IncidentLog(blocker / "afo-incidents.log")
    with pytest.raises(IncidentLogError) as caught:
        log.append(event())
    assert str(caught.value) == f"{log.path}: cannot write: File exists"
    assert list(log.events()) == []


@pytest.mark.usefixtures("host_in_c_locale")
def test_the_log_is_utf_8_whatever_the_locale(tmp_path: Path) -> None:
    log = IncidentLog(tmp_path / "afo-incidents.log")
    log.append(event(lines=["INCIDENT - 서비스 중단"], detail="로그: 오류"))
    assert log.path.read_bytes().decode("utf-8").endswith(": INCIDENT - 서비스 중단 [inc-1]\n")
    assert [r["detail"] for r in log.events()] == ["로그: 오류"]


def test_events_skip_what_is_not_an_event(tmp_path: Path) -> None:
    log = IncidentLog(tmp_path / "afo-incidents.log")
    log.jsonl.write_bytes(b'{"event": "incident", "n": 1}\nnot json\n[1, 2]\n{"no": "event"}\n'
                          b'{"event": "recovery", "n": "\xff"}\n\n')
    assert list(log.events()) == [{"event": "incident", "n": 1},
                                  {"event": "recovery", "n": "\ufffd"}]


def incident(incident_id: str, target: str = TARGET, **extra: Any) -> dict[str, Any]:
    return {"event": "incident", "incident_id": incident_id, "target": target, "at": AT,
            **extra}


def recovery(incident_id: str, at: float, closed: bool = True,
             target: str = TARGET) -> dict[str, Any]:
    return {"event": "recovery", "incident_id": incident_id, "target": target, "at": at,
            "closed": closed}


def write_events(log: IncidentLog, *records: dict[str, Any]) -> None:
    log.jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_open_incident_is_the_one_no_recovery_closed(tmp_path: Path) -> None:
    log = IncidentLog(tmp_path / "afo-incidents.log")
    assert log.open_incident(TARGET) is None  # no log yet
    write_events(log, incident("inc-a"), incident("inc-x", target="/other/runbook.toml"),
                 recovery("inc-a", AT + 1, closed=False),  # a failed recovery: still open
                 incident("inc-a", seq=2))  # a later run of the same incident
    assert log.open_incident(TARGET) == incident("inc-a")  # its first event: its start
    assert log.open_incident("/other/runbook.toml") == incident("inc-x",
                                                                target="/other/runbook.toml")
    write_events(log, incident("inc-a"), recovery("inc-b", AT + 1),  # closes another one
                 recovery("inc-a", AT + 2, target="/other/runbook.toml"))
    assert log.open_incident(TARGET) == incident("inc-a")
    write_events(log, incident("inc-a"), recovery("inc-a", AT + 2))
    assert log.open_incident(TARGET) is None
    write_events(log, incident("inc-a"), recovery("inc-a", AT + 2), incident("inc-c"))
    assert log.open_incident(TARGET) == incident("inc-c")
    # an older log with two incidents for one outage: the closed one hides nothing
    write_events(log, incident("inc-a"), incident("inc-b"), recovery("inc-a", AT + 2))
    assert log.open_incident(TARGET) == incident("inc-b")
    write_events(log, incident("inc-a"), incident("inc-b"))
    assert log.open_incident(TARGET) == incident("inc-a")  # the oldest open one


def test_recovered_since_finds_another_runs_recovery(tmp_path: Path) -> None:
    log = IncidentLog(tmp_path / "afo-incidents.log")
    write_events(log, recovery("inc-a", AT - 5), recovery("inc-b", AT),
                 recovery("inc-c", AT + 3, closed=False),
                 recovery("inc-d", AT + 4, target="/other/runbook.toml"),
                 {"event": "recovery", "incident_id": "inc-e", "target": TARGET,
                  "closed": True})  # no time: from before anything
    assert log.recovered_since(TARGET, AT) == recovery("inc-b", AT)  # at the moment counts
    assert log.recovered_since(TARGET, AT + 0.001) is None
    assert log.recovered_since(TARGET, AT - 10)["incident_id"] == "inc-b"  # the last one
    assert log.recovered_since(TARGET, 0.001)["incident_id"] == "inc-b"
    assert log.recovered_since(TARGET, 0)["incident_id"] == "inc-e"  # no time: time 0
    write_events(log, recovery("inc-b", AT), recovery("inc-a", AT - 5))
    assert log.recovered_since(TARGET, AT - 10)["incident_id"] == "inc-a"


def check(key: str, symptom: str | None, outcome: str = "failed") -> CheckRecord:
    group = key.split("[", 1)[0]
    return CheckRecord(f"checks/test_{group}.py::test_{key}", key, group, outcome, symptom,
                       0.1, message=f"{key} says {symptom}")


def test_incident_event_lines_and_data() -> None:
    verdict = build_verdict(
        [check("health[api]", "service-down"), check("guard[no-secret]", "guard-open"),
         check("sse", None, "passed")], DEFAULT_ROWS, started_at=AT - 1.23456,
        duration_s=1.0, observe_budget_s=60, config_path=TARGET)
    found = incident_event(verdict, TARGET, "inc-1", AT)
    assert (found.kind, found.at, found.incident_id) == ("incident", AT, "inc-1")
    assert found.lines == [
        "INCIDENT - guard-open, service-down (failing: health[api], guard[no-secret])",
        "Evidence: health[api]: health[api] says service-down",
        "Evidence: guard[no-secret]: guard[no-secret] says guard-open",
        "Decision: rollback (priority immediate)"]
    assert found.data == {
        "target": TARGET, "decision": "rollback", "priority": "immediate",
        "symptoms": ["guard-open", "service-down"], "security": True,
        "failing": {"health[api]": "service-down", "guard[no-secret]": "guard-open"},
        "evidence": {"health[api]": "health[api] says service-down",
                     "guard[no-secret]": "guard[no-secret] says guard-open"},
        "observed_at": round(AT - 1.23456, 3), "config": TARGET}


@pytest.mark.parametrize(("symptom", "security"), [
    ("guard-open", True), ("secret-unconfigured", True), ("secret-rejected", True),
    ("ports-wrong", False), ("heartbeat-failure", False)])
def test_incident_event_marks_security_incidents(symptom: str, security: bool) -> None:
    verdict = build_verdict([check("guard[no-secret]", symptom)], DEFAULT_ROWS, started_at=AT,
                            duration_s=1, observe_budget_s=60, config_path=TARGET)
    assert incident_event(verdict, TARGET, "i", AT).data["security"] is security


def test_incident_event_of_a_crash_without_symptom() -> None:
    verdict = build_verdict([check("health[api]", None)], DEFAULT_ROWS, started_at=AT,
                            duration_s=1, observe_budget_s=60, config_path=TARGET)
    found = incident_event(verdict, TARGET, "i", AT)
    assert found.lines[0] == "INCIDENT - unknown (failing: health[api])"
    assert found.data["security"] is False


def test_recovery_event() -> None:
    found = recovery_event(TARGET, "inc-1", AT, action="rollback", outcome="recovered",
                           automatic=True, closed=True, ttr_s=2.0468, detail="all green",
                           steps=iter([{"name": "stop"}]))
    assert (found.kind, found.at, found.incident_id) == ("recovery", AT, "inc-1")
    assert found.lines == ["RECOVERY - rollback: recovered, TTR 2.0 s; all green"]
    assert found.data == {"target": TARGET, "action": "rollback", "outcome": "recovered",
                          "automatic": True, "closed": True, "ttr_s": 2.047,
                          "detail": "all green", "steps": [{"name": "stop"}]}
    manual = recovery_event(TARGET, "inc-1", AT, action="none", outcome="resolved",
                            automatic=False, closed=True, ttr_s=None, detail="green again")
    assert manual.lines == ["RECOVERY - none: resolved; green again"]
    assert (manual.data["ttr_s"], manual.data["steps"]) == (None, [])



# -- the hash chain: a log that was edited says where ----------------------------------------


def chained(tmp_path: Path, count: int = 4) -> IncidentLog:
    log = IncidentLog(tmp_path / "afo-incidents.log")
    for n in range(count):
        log.append(event(f"inc-{n}", seq=n))
    return log


def jsonl_lines(log: IncidentLog) -> list[bytes]:
    return log.jsonl.read_bytes().splitlines(keepends=True)


def test_each_line_links_to_the_one_before(tmp_path: Path) -> None:
    log = chained(tmp_path)
    lines = [line.rstrip(b"\n") for line in jsonl_lines(log)]
    links = [json.loads(line)["prev"] for line in lines]
    assert links[0] == hashlib.sha256(b"afo-runbook incident log, chain v1").hexdigest()
    assert links[1:] == [hashlib.sha256(line).hexdigest() for line in lines[:-1]]
    assert line_hash(None) == links[0]
    assert line_hash(lines[0] + b"\n") == line_hash(lines[0]) == links[1]
    assert verify_chain(log.jsonl) == ChainReport(4, 0, None)
    assert verify_chain(log.jsonl).whole


def test_the_last_line_is_read_from_the_end(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    assert _last_line(path) is None
    path.write_bytes(b"")
    assert _last_line(path) is None
    path.write_bytes(b"only")
    assert _last_line(path) == b"only"
    path.write_bytes(b"one\ntwo\n")
    assert _last_line(path) == b"two"
    long = b"x" * 10_000  # longer than one read from the end
    path.write_bytes(b"first\n" + long + b"\n")
    assert _last_line(path) == long
    path.write_bytes(long + b"\n")
    assert _last_line(path) == long
    path.write_bytes(b"a\n" + b"y" * 4095 + b"\n")  # the newline right at a read's edge
    assert _last_line(path) == b"y" * 4095


def test_a_missing_or_empty_log_is_a_whole_chain(tmp_path: Path) -> None:
    assert verify_chain(tmp_path / "absent.jsonl") == ChainReport(0, 0)
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert verify_chain(tmp_path / "empty.jsonl").whole


def rewrite(log: IncidentLog, lines: list[bytes]) -> ChainReport:
    log.jsonl.write_bytes(b"".join(lines))
    return verify_chain(log.jsonl)


def test_a_changed_line_is_named(tmp_path: Path) -> None:
    log = chained(tmp_path)
    lines = jsonl_lines(log)
    lines[1] = lines[1].replace(b'"seq":1', b'"seq":9')
    assert rewrite(log, lines).problem == ("line 2: changed, or a line after it was removed "
                                           "(line 3 does not link to it)")


def test_a_removed_line_is_named(tmp_path: Path) -> None:
    log = chained(tmp_path)
    lines = jsonl_lines(log)
    assert rewrite(log, lines[:2] + lines[3:]).problem == (
        "line 2: changed, or a line after it was removed (line 3 does not link to it)")
    assert rewrite(log, lines[1:]).problem == (
        "line 1: does not link to the start of the log: a line before it was removed")
    assert rewrite(log, lines[:3]).whole  # the newest line removed: undetectable by design


def test_an_inserted_line_is_named(tmp_path: Path) -> None:
    log = chained(tmp_path)
    lines = jsonl_lines(log)
    copy = lines[1]  # a valid-looking line, linking to line 1, put in a second time
    assert rewrite(log, [*lines[:2], copy, *lines[2:]]).problem == (
        "line 3: inserted (it breaks the chain's order)")
    stranger = json.dumps({"event": "incident", "incident_id": "inc-fake",
                           "prev": line_hash(lines[1])}).encode() + b"\n"
    assert rewrite(log, [*lines[:2], stranger, *lines[2:]]).problem == (
        "line 3: inserted (it breaks the chain's order)")
    assert rewrite(log, [*lines[:3], stranger, *lines[3:]]).problem == (
        "line 4: inserted (it breaks the chain's order)")
    unlinked = b'{"event": "incident", "incident_id": "inc-x"}\n'
    assert rewrite(log, [*lines[:2], unlinked, *lines[2:]]).problem == (
        "line 3: has no chain link: it was inserted, or changed")
    two = [stranger, json.dumps({"event": "recovery", "prev": line_hash(stranger)}).encode()
           + b"\n"]
    assert rewrite(log, [*lines[:2], *two, *lines[2:]]).problem == (
        "lines 3-4: inserted (line 5 links to line 2)")


def test_lines_from_before_the_chain_are_accepted(tmp_path: Path) -> None:
    """A log an older version wrote: its lines have no link; the chain starts after them."""
    log = IncidentLog(tmp_path / "afo-incidents.log")
    log.jsonl.write_bytes(b'{"event": "incident", "n": 1}\n{"event": "recovery", "n": 2}\n')
    log.append(event("inc-new"))
    assert json.loads(jsonl_lines(log)[-1])["prev"] == line_hash(jsonl_lines(log)[1])
    assert verify_chain(log.jsonl) == ChainReport(3, 2, None)


def test_a_torn_last_line_is_not_glued_to(tmp_path: Path) -> None:
    """An older version killed mid-write left half a line: the next event starts on a line
    of its own, and the chain check ignores the fragment."""
    log = chained(tmp_path, 2)
    with log.jsonl.open("ab") as fh:
        fh.write(b'{"event": "incident", "incid')
    assert verify_chain(log.jsonl) == ChainReport(2, 0, None)
    log.append(event("inc-after"))
    lines = jsonl_lines(log)
    assert lines[2] == b'{"event": "incident", "incid\n'
    assert json.loads(lines[3])["incident_id"] == "inc-after"
    assert [r["incident_id"] for r in log.events()] == ["inc-0", "inc-1", "inc-after"]


def test_garbage_lines_have_no_link(tmp_path: Path) -> None:
    log = chained(tmp_path, 1)
    for junk in (b"[1, 2]\n", b"not json\n", b'{"prev": 5}\n', b"[" * 100_000 + b"\n"):
        assert rewrite(log, [*jsonl_lines(log)[:1], junk]).problem == (
            "line 2: has no chain link: it was inserted, or changed"), junk[:20]
        log.jsonl.write_bytes(b"")
        log.append(event("inc-0"))


def test_a_failed_write_leaves_neither_file_changed(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk full after the text line was written: both files go back to their sizes, so the
    twin never lacks an event the text log has, and the chain stays whole."""
    log = chained(tmp_path, 2)
    before = (log.path.read_bytes(), log.jsonl.read_bytes())
    real_write = os.write
    calls = []

    def full_on_the_jsonl(fd: int, data: Any) -> int:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_on_the_jsonl)
    with pytest.raises(IncidentLogError) as caught:
        log.append(event("inc-lost"))
    monkeypatch.undo()
    assert str(caught.value) == (f"{log.path}: cannot write: No space left on device; "
                                 "nothing of this event was recorded")
    assert (log.path.read_bytes(), log.jsonl.read_bytes()) == before
    assert verify_chain(log.jsonl).whole
    log.append(event("inc-next"))
    assert verify_chain(log.jsonl) == ChainReport(3, 0, None)


def test_a_failed_first_write_creates_nothing_it_cannot_undo(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = IncidentLog(tmp_path / "afo-incidents.log")

    def full(fd: int, data: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(IncidentLogError):
        log.append(event("inc-lost"))
    monkeypatch.undo()
    assert log.path.read_bytes() == b""
    assert not log.jsonl.exists() or log.jsonl.read_bytes() == b""


def test_locked_holds_the_lock_across_read_decide_append(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(incident_log, "LOCK_TIMEOUT", 0.2)
    log = IncidentLog(tmp_path / "new" / "afo-incidents.log")
    other = IncidentLog(log.path)
    with log.locked():
        assert log._lock.is_locked
        assert log.open_incident(TARGET) is None
        log.append(event())  # reentrant: the same writer takes it again
        with pytest.raises(IncidentLogError, match=r"locked by another writer for 0\.2 s$"):
            other.append(event("inc-other"))
    assert not log._lock.is_locked
    assert [r["incident_id"] for r in log.events()] == ["inc-1"]
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(IncidentLogError, match="cannot write: File exists"), \
            IncidentLog(blocker / "x.log").locked():
        pass


def verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="afo-runbook")
    add_log_parser(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args(["log", "verify", *args])
    code = parsed.handler(parsed)
    return code, capsys.readouterr().out


def test_log_verify_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = chained(tmp_path, 3)
    assert verify(capsys, "--log", str(log.path)) == (
        0, f"{log.jsonl}: the chain is whole: 3 events\n")
    lines = jsonl_lines(log)
    log.jsonl.write_bytes(b'{"event": "incident"}\n' + b"".join(lines))
    assert verify(capsys, "--log", str(log.path))[0] == 1  # a line put before the chain's first
    log.jsonl.write_bytes(b"".join(lines[:1] + lines[2:]))
    assert verify(capsys, "--log", str(log.path)) == (
        1, f"{log.jsonl}: the chain is broken: line 1: changed, or a line after it was "
           "removed (line 2 does not link to it)\n")
    config = tmp_path / "runbook.toml"
    config.write_text('[incident_log]\npath = "afo-incidents.log"\n')
    log.jsonl.write_bytes(b'{"event": "incident"}\n' + b"".join(lines))
    code, out = verify(capsys, "--runbook-config", str(config))
    assert (code, out.split(": the chain is ")[0]) == (1, str(log.jsonl))
    assert verify(capsys, "--log", "") == (2, "afo-runbook log verify: --log '': not a file "
                                              "path\n")
    folder = tmp_path / "dir.log"
    (tmp_path / "dir.jsonl").mkdir()
    assert verify(capsys, "--log", str(folder)) == (
        2, f"afo-runbook log verify: cannot read {tmp_path / 'dir.jsonl'}: Is a directory\n")
