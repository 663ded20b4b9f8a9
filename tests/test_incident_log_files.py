"""Runbook 2.2's log under pressure: many writers at once (threads and processes) never tear
or lose a line, and a writer killed with SIGKILL leaves every earlier line whole."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from afo_runbook.incident_log import Event, IncidentLog, IncidentLogError
from afo_runbook.refstack.waiting import wait_until

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: (INCIDENT|Evidence|Decision|RECOVERY)\b"
                  r".*\[inc-w(\d+)-(\d+)\]$")
PER_EVENT = 3  # each event writes three lines at once: INCIDENT, Evidence, Decision

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from afo_runbook.incident_log import Event, IncidentLog
    log = IncidentLog(Path(sys.argv[1]))
    writer, count = int(sys.argv[2]), int(sys.argv[3])
    for seq in range(count if count >= 0 else 10**9):
        log.append(Event("incident", time.time(), f"inc-w{writer}-{seq}",
                         ["INCIDENT - x" * 20, "Evidence: " + "e" * 300, "Decision: restart"],
                         {"writer": writer, "seq": seq, "padding": "p" * 500}))
""")


def event(writer: int, seq: int) -> Event:
    return Event("incident", time.time(), f"inc-w{writer}-{seq}",
                 ["INCIDENT - x" * 20, "Evidence: " + "e" * 300, "Decision: restart"],
                 {"writer": writer, "seq": seq, "padding": "p" * 500})


def read_all(path: Path) -> tuple[list[re.Match[str]], list[dict]]:
    text_lines = path.read_text().splitlines()
    matches = [LINE.match(line) for line in text_lines]
    assert all(matches), [line[:80] for line, m in zip(text_lines, matches, strict=True)
                          if not m][:3]
    records = [json.loads(line) for line in path.with_suffix(".jsonl").read_text().splitlines()]
    return matches, records


def test_concurrent_threads_and_processes(tmp_path):
    path = tmp_path / "afo-incidents.log"
    log = IncidentLog(path)
    threads = [threading.Thread(target=lambda w=w: [log.append(event(w, s)) for s in range(40)])
               for w in range(6)]
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w), "40"])
             for w in range(100, 106)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(proc.wait(60) == 0 for proc in procs)
    matches, records = read_all(path)
    expected = {(w, s) for w in [*range(6), *range(100, 106)] for s in range(40)}
    assert {(r["writer"], r["seq"]) for r in records} == expected
    assert len(records) == len(expected)  # nothing lost, nothing doubled
    assert len(matches) == PER_EVENT * len(expected)
    # an event's lines stay together: no other writer's line in between
    for start in range(0, len(matches), PER_EVENT):
        ids = {m.group(2, 3) for m in matches[start:start + PER_EVENT]}
        assert len(ids) == 1


def test_sigkill_leaves_every_earlier_line_whole(tmp_path):
    path = tmp_path / "afo-incidents.log"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "7", "-1"])
    jsonl = path.with_suffix(".jsonl")
    try:  # let it write a good deal first
        wait_until(lambda: jsonl.exists() and jsonl.stat().st_size > 200_000, timeout=30,
                   interval=0.01, message="the writer wrote too little")
    finally:
        os.kill(writer.pid, signal.SIGKILL)  # exactly the process we started
        writer.wait(10)
    matches, records = read_all(path)  # every line parses: none torn
    assert [r["seq"] for r in records] == list(range(len(records)))
    # the text file is at most one event ahead of its twin (killed between the two writes)
    assert len(matches) // PER_EVENT - len(records) in (0, 1)
    assert len(matches) % PER_EVENT == 0


def test_unwritable_path_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    log = IncidentLog(blocker / "afo-incidents.log")
    with pytest.raises(IncidentLogError, match=re.escape(str(blocker))):
        log.append(event(1, 1))
    assert list(log.events()) == []
