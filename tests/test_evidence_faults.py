"""Evidence that survives faults (runbook 2.2): a full disk, two runs racing on one target and
a green run during another run's recovery never tear, split or double an incident."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

LIMIT = 32 * 1024  # the "disk": no file may grow past it (the HTML record is ~50 KiB)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)  # polling, with a deadline


def observe_argv(config: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "observe",
            "--runbook-config", str(config), "--runbook-json", str(tmp_path / "verdict.json"),
            "--runbook-reports", str(tmp_path / "reports"), *extra]


def log_paths(config: Path) -> tuple[Path, Path]:
    path = Path(tomllib.loads(config.read_text())["incident_log"]["path"])
    return path, path.with_suffix(".jsonl")


def events(config: Path) -> list[dict]:
    return [json.loads(line) for line in log_paths(config)[1].read_text().splitlines()]


def fill(path: Path, size: int) -> bytes:
    """Valid older lines up to `size` bytes: what a log holds after months."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = b"2026-11-01T00:00:00Z: RECOVERY - restart: recovered [inc-old]\n"
    data = line * (size // len(line))
    path.write_bytes(data)
    return data


def fsize_limit() -> None:
    """preexec_fn: every file this run writes stops at LIMIT (EFBIG, not SIGXFSZ)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def test_a_full_disk_leaves_every_file_as_it_was_and_the_verdict_arrives(
        stack, recovery_config, tmp_path, env_for):
    stack.set_fault("api", "health-500")
    config = recovery_config()
    text_log, jsonl = log_paths(config)
    before = {text_log: fill(text_log, LIMIT - 40), jsonl: b""}
    jsonl.write_bytes(b"")
    proc = subprocess.run(observe_argv(config, tmp_path), env=env_for(), capture_output=True,
                          text=True, timeout=120, preexec_fn=fsize_limit, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output  # the red verdict's own exit code, unchanged
    assert "Traceback" not in output
    assert "INTERNALERROR" not in output
    assert "runbook verdict" in proc.stdout
    assert "decision: restart" in proc.stdout
    # whole events or none: both files exactly as they were
    assert {path: path.read_bytes() for path in before} == before
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert "nothing of this event was recorded" in verdict["incident_log_error"]
    # the HTML record (larger than the disk) is said to be missing, never left torn
    assert any("HTML evidence record NOT written" in e for e in verdict["artifact_errors"])
    assert "HTML evidence record NOT written" in proc.stdout
    reports = tmp_path / "reports"
    assert not [p.name for p in reports.iterdir() if p.name.startswith(".")]  # no stray temp
    assert not list(reports.glob("observe-2*.html"))


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                    reason="a real tmpfs needs root (the RLIMIT_FSIZE test covers the rest)")
def test_a_real_tiny_tmpfs(stack, config_dict, write_runbook, tmp_path, env_for):
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], check=True)
    try:
        stack.set_fault("api", "health-500")
        config = config_dict()
        config["incident_log"] = {"path": str(disk / "logs" / "afo-incidents.log")}
        path = write_runbook(config)
        text_log = disk / "logs" / "afo-incidents.log"
        kept = fill(text_log, 60 * 1024)
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "observe",
                "--runbook-config", str(path), "--runbook-json", str(disk / "verdict.json"),
                "--runbook-reports", str(disk / "reports")]
        proc = subprocess.run(argv, env=env_for(), capture_output=True, text=True,
                              timeout=120, check=False)
        output = proc.stdout + proc.stderr
        assert "Traceback" not in output
        assert "runbook verdict" in proc.stdout
        assert proc.returncode == 1, output
        assert text_log.read_bytes() == kept  # no 51-byte fragment left behind
        assert not [p.name for p in disk.rglob(".*")]  # no stray `.observe-...` temp file
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_torn_line_from_an_older_version_is_never_glued_onto(stack, recovery_config,
                                                              tmp_path, env_for):
    stack.set_fault("api", "health-500")
    config = recovery_config()
    text_log, jsonl = log_paths(config)
    text_log.parent.mkdir(parents=True)
    text_log.write_bytes(b"2026-11-30T10:00:00Z: INCIDENT - guard-open (failin")
    jsonl.write_bytes(b'{"event":"incident","incident_id":"inc-torn","at":1')
    proc = subprocess.run(observe_argv(config, tmp_path), env=env_for(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stdout
    lines = text_log.read_text().splitlines()
    assert lines[0] == "2026-11-30T10:00:00Z: INCIDENT - guard-open (failin"
    assert lines[1].endswith("]")
    assert ": INCIDENT - service-down" in lines[1]
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    metrics = subprocess.run([sys.executable, "-m", "afo_runbook.cli", "metrics", "--log",
                              str(text_log), "--now", later], capture_output=True, text=True,
                             timeout=60, check=False)
    assert "skipped 1 malformed line(s)" in metrics.stderr
    assert "1 incident;" in metrics.stdout


@pytest.mark.parametrize("round_", [1, 2])
def test_two_red_runs_at_once_open_one_incident(stack, recovery_config, tmp_path, env_for,
                                                round_):
    """The read of the open incident, the id and the append are one step under the lock;
    the race is widened on purpose (each run waits 1 s between its read and its append)."""
    stack.set_fault("api", "health-500")
    config = recovery_config()
    env = env_for(AFO_RUNBOOK_TEST_RACE_DELAY="1.0")
    runs = [subprocess.Popen(observe_argv(config, tmp_path / f"run{n}"), env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for n in range(2)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [1, 1], outputs
    ids = {json.loads((tmp_path / f"run{n}" / "verdict.json").read_text())["incident_id"]
           for n in range(2)}
    assert len(ids) == 1, ids
    incidents = {e["incident_id"] for e in events(config) if e["event"] == "incident"}
    assert incidents == ids


def test_a_green_run_during_a_recovery_leaves_the_close_to_it(stack, recovery_config,
                                                             recovery_dict, tmp_path, env_for):
    """A review-restart is watching the silent stream (it holds the recovery lock); it is
    paused, the stream heals, and a complete green run happens meanwhile: that run says the
    recovery is in progress and closes nothing. Resumed, the recovery closes the incident:
    exactly one close."""
    stack.set_fault("api", "sse-silent")
    recovery = recovery_dict()
    recovery["review_grace"] = 60
    config = recovery_config(recovery, sse={"url": f"{stack.urls['api']}/api/thoughts/sse",
                                            "window": 1})
    owner = Path(str(stack.pidfile("api")) + ".recovery.lock.owner")
    recovering = subprocess.Popen(observe_argv(config, tmp_path / "recovering", "--recover"),
                                  env=env_for(), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(owner.exists, 60, "the recovery holds its lock")
        pid = int(owner.read_text())
        assert pid == recovering.pid
        os.kill(pid, signal.SIGSTOP)  # hold the recovery exactly here
        stack.clear_fault("api")
        green = subprocess.run(observe_argv(config, tmp_path / "green"), env=env_for(),
                               capture_output=True, text=True, timeout=120, check=False)
        assert green.returncode == 0, green.stdout
        assert f"a recovery is in progress by pid {pid}" in green.stdout
        closes = [e for e in events(config) if e["event"] == "recovery" and e["closed"]]
        assert closes == []
        os.kill(pid, signal.SIGCONT)
        output = recovering.communicate(timeout=120)[0]
    finally:
        if recovering.poll() is None:
            os.kill(recovering.pid, signal.SIGCONT)
            recovering.kill()
            recovering.wait()
    assert recovering.returncode in (0, 1), output
    closes = [e for e in events(config) if e["event"] == "recovery" and e["closed"]]
    assert len(closes) == 1, closes
    assert closes[0]["automatic"] is True
    assert not owner.exists()
