"""Runbook 3 in process mode against the real reference stack: --recover runs the decided
action once, in the controller, under a lock; a failed recovery escalates without a loop."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

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


def test_two_runs_at_once_recover_once(stack, recovery_config, run_suite, env_for, tmp_path):
    break_secret(stack)
    config = recovery_config()
    log_start = stack.log_file("api").stat().st_size  # the module's stack shares its log
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "0", "-m",
            "observe", "--recover", "--runbook-config", str(config), "--runbook-reports",
            str(tmp_path / "reports")]
    runs = [subprocess.Popen([*argv, "--runbook-json", str(tmp_path / f"v{i}.json")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env_for()) for i in range(2)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    outcomes = sorted(json.loads((tmp_path / f"v{i}.json").read_text())["recovery"]["outcome"]
                      for i in range(2))
    assert outcomes in (["in-progress", "recovered"], ["done-by-another-run", "recovered"]), \
        outputs
    lines, _ = incident_log(config)
    assert sum("RECOVERY - rollback: recovered" in line for line in lines) == 1
    added = stack.log_file("api").read_bytes()[log_start:].decode()
    assert added.count("afo-runbook recovery: starting") == 1
    busy = [r.returncode for r in runs]
    assert sorted(busy) in ([1, 7], [1, 1])


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
    # The scenario, not a synchronisation: the stream heals by itself 3 s into the grace.
    healing = threading.Timer(3.0, stack.clear_fault, ("api", "sse-silent"))
    healing.start()
    try:
        result = run_suite("-m", "observe", "-n", "0", "--recover", "--runbook-config",
                           str(config))
    finally:
        healing.cancel()
    recovery_result = result.verdict["recovery"]
    assert recovery_result["outcome"] == "recovered", recovery_result
    assert recovery_result["result"]["details"]["restarted"] is False
    assert "came back by itself" in recovery_result["result"]["steps"][0]["detail"]
    assert recovery_result["ttr_s"] < 15  # not the whole 20 s grace
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
