"""Runbook 3: two recoveries never run at once. While the recovery lock is held (here by the
test itself, as another `--recover` run would hold it), a run fails fast: exit code 7,
outcome `in-progress`, nothing touched. It must not wait for the lock: a run that waited
would act after the other one had already acted.

The target is a loopback server answering 500 (service-down, so the decided action is a
restart); the configured start command would leave a marker file, and must never run.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from loopback import Loopback

BUSY = 7
RUN_TIMEOUT = 60  # a run that waits for the lock is stopped here, and fails the test


def runbook(folder: Path, health_url: str, **recovery: Any) -> dict[str, Any]:
    marker = folder / "started"
    start = shlex.join([sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"])
    return {
        "health": [{"name": "api", "url": health_url}],
        "recovery": {"mode": "process", **recovery, "process": {
            "start": start, "cwd": str(folder), "pidfile": str(folder / "run" / "api.pid"),
            "log_file": str(folder / "logs" / "api.out"), "ready_url": health_url,
            "stop_timeout": 1, "ready_timeout": 2}},
        "incident_log": {"path": str(folder / "logs" / "afo-incidents.log")},
    }


@pytest.mark.parametrize("where", ["beside-the-pidfile", "lock_file"])
def test_a_held_recovery_lock_means_exit_7_and_nothing_touched(
        where: str, loopback: Loopback, tmp_path: Path, write_runbook: Callable[..., Path],
        run_suite: Callable[..., Any]) -> None:
    url = loopback.route("/api/health", lambda h: h.reply(500, b"down\n"))
    folder = tmp_path / "target"
    folder.mkdir()
    if where == "lock_file":  # [recovery] lock_file, relative to the config's folder
        config = write_runbook(runbook(folder, url, lock_file="locks/recovery.lock"))
        lock_file = config.parent / "locks" / "recovery.lock"
    else:  # the default: next to the pidfile
        config = write_runbook(runbook(folder, url))
        lock_file = folder / "run" / "api.pid.recovery.lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_file)):
        try:
            result = run_suite("-m", "observe", "-n", "0", "--recover", "--runbook-config",
                               str(config), timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the run waited for the held lock for {RUN_TIMEOUT} s instead of "
                        "failing fast")
    assert result.rc == BUSY, result.output
    recovery = result.verdict["recovery"]
    assert (recovery["outcome"], recovery["action"]) == ("in-progress", "restart")
    assert recovery["summary"] == (f"a recovery is already in progress (lock {lock_file}); "
                                   "nothing was touched")
    assert "a recovery is already in progress" in result.stdout
    assert not (folder / "started").exists()  # the start command never ran
    assert not (folder / "run" / "api.pid").exists()
    assert loopback.paths() == ["/api/health"]  # observed once; no readiness polling
    log = (folder / "logs" / "afo-incidents.log").read_text().splitlines()
    kinds = [line.split(": ", 1)[1].split(" ", 1)[0] for line in log]
    assert kinds == ["INCIDENT", "Evidence:", "Decision:"]  # and no RECOVERY line
