"""Runbook 3 in process mode against the real reference stack: --recover runs the decided
action once, in the controller, under a lock; a failed recovery escalates without a loop."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

from filelock import FileLock

from afo_runbook.incident_log import IncidentLog, recovery_event
from afo_runbook.refstack.waiting import wait_until

INCIDENT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: (INCIDENT|Evidence|Decision|"
                           r"RECOVERY)\b.* \[(inc-[\w-]+)\]$")


def break_secret(stack) -> int:
    """EXP_007's incident: the api restarts without AFO_INTERNAL_SECRET."""
    stack.stop_service("api")
    stack.start_service("api", without_secret=True)
    return stack.pid("api")


def incident_log(config) -> tuple[list[str], str]:
    path = tomllib.loads(config.read_text())["incident_log"]["path"]
    with open(path) as fh:
        return fh.read().splitlines(), path


def test_rollback_brings_the_secret_back(stack, recovery_config, run_suite):
    broken_pid = break_secret(stack)
    config = recovery_config()
    result = run_suite("-m", "observe", "--recover", "--runbook-config", str(config))
    assert result.rc == 1, result.output  # the checks did fail; the target is green again
    verdict = result.verdict
    assert verdict["symptoms"] == ["secret-unconfigured"]
    assert verdict["decision"] == "rollback"
    recovery = verdict["recovery"]
    assert recovery["outcome"] == "recovered", recovery
    assert recovery["ttr_s"] < 5
    steps = [step["name"] for step in recovery["result"]["steps"]]
    assert steps == ["stop the tracked process", "start with the env file's environment",
                     f"wait until {stack.health_url('api')} answers",
                     "verify the guard accepts the secret"]
    assert "Rollback completed in" in result.stdout
    confirmation = {c["key"]: c["outcome"] for c in recovery["confirmation"]}
    assert confirmation["guard[right-secret]"] == "passed"  # 3.3: observed again
    assert set(confirmation.values()) == {"passed"}
    new_pid = stack.pid("api")  # the stack follows the rewritten pidfile
    assert new_pid not in (None, broken_pid)
    # 2.2: the runbook's grep finds the incident and its recovery, under one incident id
    lines, _ = incident_log(config)
    kinds = [INCIDENT_LINE.match(line).group(1) for line in lines]
    assert kinds == ["INCIDENT", "Evidence", "Decision", "RECOVERY"]
    assert {INCIDENT_LINE.match(line).group(2) for line in lines} == {verdict["incident_id"]}
    assert "RECOVERY - rollback: recovered, TTR" in lines[-1]
    # and the target really is green now
    again = run_suite("-m", "observe", "--runbook-config", str(config))
    assert again.rc == 0, again.output


def test_without_recover_nothing_is_touched(stack, recovery_config, run_suite):
    broken_pid = break_secret(stack)
    config = recovery_config()
    result = run_suite("-m", "observe", "-n", "0", "--runbook-config", str(config))
    assert result.rc == 1
    assert result.verdict["recovery"]["outcome"] == "not-run"
    assert "would run rollback" in result.stdout
    assert stack.pid("api") == broken_pid
    lines, _ = incident_log(config)
    assert [INCIDENT_LINE.match(line).group(1) for line in lines] == [
        "INCIDENT", "Evidence", "Decision"]


def test_recover_with_nothing_failing_does_nothing(stack, recovery_config, run_suite,
                                                   tmp_path):
    pid = stack.pid("api")
    config = recovery_config()
    result = run_suite("-m", "observe", "--recover", "--runbook-config", str(config))
    assert result.rc == 0, result.output
    assert result.verdict["recovery"] is None
    assert stack.pid("api") == pid
    assert not (config.parent / "logs" / "afo-incidents.log").exists()


def test_restart_brings_a_dead_service_back(stack, recovery_config, run_suite):
    stack.stop_service("api")
    config = recovery_config()
    result = run_suite("-m", "observe", "-n", "0", "--recover", "--runbook-config", str(config))
    assert result.verdict["decision"] == "restart"
    assert result.verdict["recovery"]["outcome"] == "recovered"
    steps = result.verdict["recovery"]["result"]["steps"]
    assert steps[0]["detail"].startswith(("no pid in", "pid"))  # nothing of ours to stop
    assert "Restart completed in" in result.stdout
    assert stack.is_running("api")


def test_a_pid_that_is_not_ours_is_never_killed(stack, recovery_config, run_suite):
    break_secret(stack)
    stranger = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
    try:
        # Point the api's pidfile at a process that is not the configured start command.
        stack.pidfile("api").write_text(f"{stranger.pid}\n")
        config = recovery_config()
        result = run_suite("-m", "observe", "-n", "0", "--recover", "--runbook-config",
                           str(config))
        assert stranger.poll() is None, "the stranger was killed"
        assert result.rc == 6, result.output  # escalate
        assert result.verdict["decision"] == "escalate"
        assert "not ours, left alone" in result.verdict["recovery"]["summary"]
    finally:
        stranger.kill()
        stranger.wait()


def test_broken_start_command_escalates_after_one_attempt(stack, recovery_config,
                                                          recovery_dict, run_suite, tmp_path):
    stack.stop_service("api")
    log_file = tmp_path / "broken.log"
    recovery = recovery_dict(start=f"{sys.executable} -c 'import sys; sys.exit(3)'",
                             log_file=str(log_file), pidfile=str(tmp_path / "broken.pid"))
    config = recovery_config(recovery)
    result = run_suite("-m", "observe", "-n", "0", "--recover", "--runbook-config", str(config))
    assert result.rc == 6, result.output
    verdict = result.verdict
    assert verdict["decision"] == "escalate"
    assert verdict["recovery"]["escalated_from"] == "restart"
    assert "exited with code 3" in verdict["recovery"]["summary"]
    assert "escalate to the dev team" in result.stdout
    # one attempt, no loop
    assert log_file.read_text().count("--- afo-runbook recovery: starting") == 1
    lines, _ = incident_log(config)
    assert lines[-1].split(": ", 1)[1].startswith("RECOVERY - restart: failed, escalated")


def recovery_lock(stack) -> Path:
    """The recovery lock of a process-mode config without `lock_file`: next to the pidfile."""
    pidfile = stack.pidfile("api")
    return pidfile.with_name(pidfile.name + ".recovery.lock")


def test_a_held_recovery_lock_means_in_progress_and_nothing_touched(stack, recovery_config,
                                                                   run_suite):
    """Another run is recovering (the test holds its lock): this run exits 7 at once and
    touches nothing. Once the lock is free, the next run recovers, once."""
    broken_pid = break_secret(stack)
    config = recovery_config()
    log_start = stack.log_file("api").stat().st_size  # the module's stack shares its log
    with FileLock(str(recovery_lock(stack))):
        busy = run_suite("-m", "observe", "-n", "0", "--recover", "--runbook-config",
                         str(config), timeout=60)  # a run waiting for the lock fails here
    assert busy.rc == 7, busy.output
    assert busy.verdict["recovery"]["outcome"] == "in-progress"
    assert "a recovery is already in progress" in busy.stdout
    assert stack.pid("api") == broken_pid
    added = stack.log_file("api").read_bytes()[log_start:].decode()
    assert "afo-runbook recovery: starting" not in added
    lines, _ = incident_log(config)
    assert [INCIDENT_LINE.match(line).group(1) for line in lines] == [
        "INCIDENT", "Evidence", "Decision"]

    again = run_suite("-m", "observe", "-n", "0", "--recover", "--runbook-config", str(config))
    assert again.rc == 1, again.output
    assert again.verdict["recovery"]["outcome"] == "recovered"
    lines, _ = incident_log(config)
    assert sum("RECOVERY - rollback: recovered" in line for line in lines) == 1
    added = stack.log_file("api").read_bytes()[log_start:].decode()
    assert added.count("afo-runbook recovery: starting") == 1


def test_a_recovery_by_another_run_is_not_repeated(stack, recovery_config, run_suite):
    """Another run recovered the target after this one started observing (its RECOVERY
    event is in the log, stamped later than this run's start): `done-by-another-run`,
    nothing touched, and no second RECOVERY line."""
    broken_pid = break_secret(stack)
    config = recovery_config()
    path = Path(tomllib.loads(config.read_text())["incident_log"]["path"])
    IncidentLog(path).append(recovery_event(
        str(config), "inc-by-another-run", time.time() + 600, action="rollback",
        outcome="recovered", automatic=True, closed=True, ttr_s=1.0, detail="green again"))
    result = run_suite("-m", "observe", "-n", "0", "--recover", "--runbook-config",
                       str(config))
    assert result.rc == 1, result.output
    recovery = result.verdict["recovery"]
    assert recovery["outcome"] == "done-by-another-run"
    assert recovery["summary"].startswith("another run recovered this target at ")
    assert stack.pid("api") == broken_pid
    lines, _ = incident_log(config)
    assert sum(" RECOVERY - " in line for line in lines) == 1  # only the other run's


def test_logs_then_restart_reads_the_logs_first(stack, recovery_config, run_suite):
    stack.stop_service("api")
    config = recovery_config(decision=[{"symptom": "service-down",
                                        "action": "logs-then-restart"}])
    result = run_suite("-m", "observe", "-n", "0", "--recover", "--runbook-config", str(config))
    verdict = result.verdict
    assert verdict["decision"] == "logs-then-restart"
    assert verdict["rows"][0]["overridden"] is True
    details = verdict["recovery"]["result"]["details"]
    assert details["logs"]["heartbeat_lines"] > 0  # 4.1: `grep heartbeat`
    assert verdict["recovery"]["outcome"] == "recovered"


def test_review_restart_waits_and_restarts_only_if_still_silent(stack, recovery_config,
                                                                run_suite, stack_env_file,
                                                                recovery_dict):
    stack.set_fault("api", "sse-silent")  # faults.json survives a restart: still silent
    recovery = recovery_dict()
    recovery["review_grace"] = 1.5
    config = recovery_config(recovery, sse={"url": f"{stack.urls['api']}/api/thoughts/sse",
                                            "window": 1})
    pid = stack.pid("api")
    result = run_suite("-m", "observe", "-n", "0", "--recover", "--runbook-config", str(config))
    verdict = result.verdict
    assert verdict["recovery"]["escalated_from"] == "review-restart"
    steps = verdict["recovery"]["result"]["steps"]
    assert steps[0]["name"] == "watch the stream for up to 1.5 s"
    assert "still silent" in steps[0]["detail"]
    assert stack.pid("api") != pid  # it did restart, once, and then escalated
    assert result.rc == 6


def test_review_restart_skips_the_restart_when_the_stream_comes_back(stack, recovery_config,
                                                                     recovery_dict, run_suite):
    stack.set_fault("api", "sse-silent")
    recovery = recovery_dict()
    recovery["review_grace"] = 20
    config = recovery_config(recovery, sse={"url": f"{stack.urls['api']}/api/thoughts/sse",
                                            "window": 1})
    pid = stack.pid("api")
    api_log = stack.log_file("api")
    log_start = api_log.stat().st_size

    def silent_looks() -> int:
        """Connections the silent stream has answered since this test began."""
        return api_log.read_bytes()[log_start:].count(b"injected fault sse-silent")

    ran: dict[str, object] = {}

    def run() -> None:
        try:
            ran["result"] = run_suite("-m", "observe", "-n", "0", "--recover",
                                      "--runbook-config", str(config))
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the test's thread
            ran["error"] = exc

    runner = threading.Thread(target=run, name="observe --recover")
    runner.start()
    try:
        # The stream heals once the review is watching it: after the observe run's look and
        # the review's first one (each logged by the api), never by a fixed delay.
        wait_until(lambda: silent_looks() >= 2 or not runner.is_alive(), timeout=60,
                   message="the review never looked at the stream")
        stack.clear_fault("api", "sse-silent")
    finally:
        runner.join(120)
    assert not runner.is_alive()
    if "error" in ran:
        raise ran["error"]  # type: ignore[misc]
    result = ran["result"]
    recovery_result = result.verdict["recovery"]
    assert recovery_result["outcome"] == "recovered", recovery_result
    assert recovery_result["result"]["details"]["restarted"] is False
    assert "came back by itself" in recovery_result["result"]["steps"][0]["detail"]
    assert stack.pid("api") == pid


def test_unwritable_incident_log_still_gives_the_verdict(stack, config_for, run_suite,
                                                        tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    stack.set_fault("aux", "health-500")
    config = config_for(incident_log={"path": str(blocker / "afo-incidents.log")})
    result = run_suite("-m", "observe", "-n", "0", "--runbook-config", str(config))
    assert result.rc == 1
    assert result.verdict["decision"] == "restart"
    assert "cannot write" in result.verdict["incident_log_error"]
    assert "incident log NOT written" in result.stdout
    assert "Traceback" not in result.output


def test_the_secret_is_in_no_log_line(stack, recovery_config, run_suite, stack_env_file):
    secret = stack_env_file.read_text().strip().split("=", 1)[1]
    break_secret(stack)
    config = recovery_config()
    result = run_suite("-m", "observe", "-n", "0", "--recover", "--runbook-config", str(config))
    assert result.verdict["recovery"]["outcome"] == "recovered"
    lines, path = incident_log(config)
    jsonl = Path(path).with_suffix(".jsonl").read_text()
    for text in ("\n".join(lines), jsonl, result.output, result.json_path.read_text()):
        assert secret not in text
