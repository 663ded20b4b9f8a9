"""What goes wrong around the checks still ends in a clean verdict: a worker that dies under a
check, and artifacts that cannot be written."""

from __future__ import annotations

import textwrap

CRASHER = textwrap.dedent("""
    import os

    def pytest_runtest_call(item):
        # inside an xdist worker, under one check, every time: the process dies on the spot
        if hasattr(item.config, "workerinput") and item.name == "test_health[aux]":
            os._exit(13)
""")


def test_a_worker_that_dies_under_a_check_is_counted_not_a_hang(stack, config_for, run_suite,
                                                                 tmp_path, env_for):
    """pytest-xdist can deadlock when it replaces a crashed worker (#784, #1378); the plugin
    does not replace it, and counts what it never ran. The crashed worker's last events
    must not make the scheduler send it work ("cannot send (already closed?)")."""
    (tmp_path / "crasher.py").write_text(CRASHER)
    result = run_suite("-m", "observe", "-n", "2", "-p", "crasher", "--runbook-config",
                       str(config_for()), env=env_for(PYTHONPATH=str(tmp_path)), timeout=60)
    assert "INTERNALERROR" not in result.output, result.output
    assert result.rc == 6, result.output  # escalate
    failing = result.failing()
    # the prober died, not the service: nothing is restarted for it (probe-error -> escalate)
    assert failing["health[aux]"] == "probe-error"
    assert "crashed" in result.check("health[aux]")["message"]
    never_ran = {c["key"] for c in result.verdict["checks"]
                 if c["message"].startswith("never ran")}
    # nothing vanished: every check is either passed, the crash, or said to have never run
    assert {c["key"] for c in result.verdict["checks"]} == {
        "health[api]", "health[aux]", "health[dashboard]", "guard[no-secret]",
        "guard[wrong-secret]", "guard[right-secret]", "sse"}
    assert set(failing) == {"health[aux]"} | never_ran
    assert result.verdict["decision"] == "escalate"
    assert {e["key"] for e in result.verdict["probe_errors"]} == {"health[aux]"} | never_ran


def test_unwritable_verdict_json_is_a_note_not_a_crash(stack, config_for, run_suite, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_suite("-m", "observe", "--runbook-config", str(config_for()),
                       "--runbook-json", str(blocker / "verdict.json"), json_out=False)
    assert result.rc == 0, result.output
    assert "note: verdict JSON NOT written" in result.stdout
    assert "INTERNALERROR" not in result.output


def test_unwritable_reports_folder_is_a_note_not_a_crash(stack, config_for, run_suite,
                                                        tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_suite("-m", "observe", "--runbook-config", str(config_for()),
                       "--runbook-reports", str(blocker / "reports"))
    assert result.rc == 0, result.output
    assert "note: no evidence record written: cannot write to" in result.stdout
    assert result.verdict["decision"] == "monitor"
