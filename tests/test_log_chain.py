"""The tamper-evident incident log: each JSONL event carries the SHA-256 of the line before
it, `afo-runbook log verify` names the first line changed, removed or inserted, and
`afo-runbook metrics` refuses a broken chain (an MTTR is not improved by deleting one)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from afo_runbook.incident_log import Event, IncidentLog

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from afo_runbook.incident_log import Event, IncidentLog

    log = IncidentLog(Path(sys.argv[1]))
    for n in range(int(sys.argv[3])):
        log.append(Event("incident", time.time(), f"inc-{sys.argv[2]}-{n}",
                         [f"INCIDENT - writer {sys.argv[2]} event {n}"], {"target": "t"}))
""")


def afo(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "afo_runbook.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def log(tmp_path: Path) -> IncidentLog:
    """Five incidents and their recoveries, written as the suite writes them."""
    log = IncidentLog(tmp_path / "logs" / "afo-incidents.log")
    for n in range(5):
        at = 1_764_000_000.0 + n * 3600
        log.append(Event("incident", at, f"inc-{n}", [f"INCIDENT - service-down {n}"],
                         {"target": "t", "symptoms": ["service-down"], "security": False}))
        log.append(Event("recovery", at + 60, f"inc-{n}", [f"RECOVERY - restart {n}"],
                         {"target": "t", "action": "restart", "outcome": "recovered",
                          "automatic": True, "closed": True, "ttr_s": 60.0}))
    return log


def lines(log: IncidentLog) -> list[str]:
    return log.jsonl.read_text().splitlines(keepends=True)


def test_a_whole_chain_verifies(log):
    proc = afo("log", "verify", "--log", log.path)
    assert proc.returncode == 0, proc.stdout
    assert "the chain is whole: 10 events" in proc.stdout
    assert all("prev" in json.loads(line) for line in lines(log))


@pytest.mark.parametrize(("edit", "named"), [
    ("change", "line 5: changed"),
    ("remove", "line 4: changed, or a line after it was removed"),
    ("insert", "line 5: inserted"),
])
def test_an_edit_in_the_middle_is_named(log, edit, named):
    found = lines(log)
    if edit == "change":  # a longer outage made shorter
        record = json.loads(found[4])
        record["at"] += 3000
        found[4] = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
    elif edit == "remove":  # an incident deleted
        del found[4]
    else:  # a forged recovery, even with a correct-looking link to the line before it
        forged = json.loads(found[3])
        forged["incident_id"] = "inc-forged"
        found.insert(4, json.dumps(forged, sort_keys=True, separators=(",", ":")) + "\n")
    log.jsonl.write_text("".join(found))
    proc = afo("log", "verify", "--log", log.path)
    assert proc.returncode == 1, proc.stdout
    assert f"the chain is broken: {named}" in proc.stdout
    refused = afo("metrics", "--log", log.path, "--window", "30d")
    assert refused.returncode == 2
    assert "the hash chain is broken" in refused.stderr
    assert "--allow-broken-log" in refused.stderr
    allowed = afo("metrics", "--log", log.path, "--window", "30d", "--allow-broken-log")
    assert allowed.returncode in (0, 1), allowed.stderr
    assert "WARNING" in allowed.stderr


def test_concurrent_writers_still_make_one_chain(tmp_path):
    path = tmp_path / "logs" / "afo-incidents.log"
    (tmp_path / "writer.py").write_text(WRITER)
    writers = [subprocess.Popen([sys.executable, str(tmp_path / "writer.py"), str(path),
                                 str(n), "5"]) for n in range(8)]
    assert [w.wait(timeout=60) for w in writers] == [0] * 8
    proc = afo("log", "verify", "--log", path)
    assert proc.returncode == 0, proc.stdout
    assert "40 events" in proc.stdout


def test_lines_from_before_the_chain_are_accepted(tmp_path):
    """An older version's log (no `prev`) stays readable; the chain starts after it."""
    log = IncidentLog(tmp_path / "afo-incidents.log")
    log.jsonl.write_text(json.dumps({"event": "incident", "incident_id": "old", "at": 1.0})
                         + "\n")
    log.append(Event("incident", 2.0, "new", ["INCIDENT - x"], {"target": "t"}))
    proc = afo("log", "verify", "--log", log.path)
    assert proc.returncode == 0, proc.stdout
    assert "(1 older lines before the chain)" in proc.stdout
