"""Principle 3: `pytest -m preflight` says whether a rollback could run now, and what to fix."""

from __future__ import annotations

import shutil

import pytest


def preflight(run_suite, config, *extra):
    result = run_suite("-m", "preflight", "-n", "0", "--runbook-config", str(config), *extra)
    return result, {c["key"]: c for c in result.verdict["checks"]}


def test_ready_stack_passes(stack, recovery_config, run_suite):
    result, checks = preflight(run_suite, recovery_config())
    assert result.rc == 0, result.output
    assert {k: c["outcome"] for k, c in checks.items()} == {
        "preflight[env-file]": "passed", "preflight[start-command]": "passed",
        "preflight[writable-folders]": "passed", "preflight[compose-env-file]": "skipped"}
    assert "preflight: 3 of 3 ready" in result.stdout
    assert result.verdict["decision"] == "monitor"  # preflight never decides an incident


@pytest.mark.parametrize(("change", "key", "fix"), [
    ("mode", "preflight[env-file]", "chmod 600"),
    ("no-variable", "preflight[env-file]", "does not define AFO_INTERNAL_SECRET"),
    ("missing", "preflight[env-file]", "does not exist"),
    ("bad-start", "preflight[start-command]", "is not an executable"),
    ("bad-folder", "preflight[writable-folders]", "cannot write to: pidfile folder"),
])
def test_each_problem_says_what_to_fix(change, key, fix, stack, recovery_config,
                                       recovery_dict, run_suite, tmp_path, stack_env_file):
    env_file = tmp_path / "rollback.env"
    shutil.copy(stack_env_file, env_file)
    env_file.chmod(0o600)
    overrides = {"env_file": str(env_file)}
    if change == "mode":
        env_file.chmod(0o644)
    elif change == "no-variable":
        env_file.write_text("OTHER=1\n")
    elif change == "missing":
        env_file.unlink()
    elif change == "bad-start":
        overrides["start"] = "no-such-program-xyz --serve"
    elif change == "bad-folder":
        (tmp_path / "plain-file").write_text("")
        overrides["pidfile"] = str(tmp_path / "plain-file" / "run" / "api.pid")
    result, checks = preflight(run_suite, recovery_config(recovery_dict(**overrides)))
    assert result.rc == 1
    assert checks[key]["outcome"] == "failed"
    assert fix in checks[key]["message"]
    assert "a rollback could NOT run now" in result.stdout
    failed = [k for k, c in checks.items() if c["outcome"] == "failed"]
    assert failed == [key]  # one problem, one finding


@pytest.mark.parametrize("listed", [True, False])
def test_compose_file_must_pass_the_env_file(listed, stack, recovery_config, recovery_dict,
                                             run_suite, tmp_path, stack_env_file):
    compose = tmp_path / "docker-compose.yml"
    env_line = f"    env_file: [{stack_env_file}]\n" if listed else ""
    compose.write_text(f"services:\n  afo-core:\n    image: afo-core:latest\n{env_line}")
    recovery = recovery_dict()
    recovery["docker"] = {"container": "afo-core", "compose_file": str(compose),
                          "env_file": str(stack_env_file)}
    _, checks = preflight(run_suite, recovery_config(recovery))
    compose_check = checks["preflight[compose-env-file]"]
    if listed:
        assert compose_check["outcome"] == "passed", compose_check
    else:
        assert compose_check["outcome"] == "failed"
        assert "add `env_file:" in compose_check["message"]


def test_preflight_needs_no_secret_in_the_environment(run_suite, write_runbook, tmp_path):
    config = write_runbook({"guard": {"url": "http://127.0.0.1:9/g",
                                      "env_file": str(tmp_path / "absent.env")}})
    result, checks = preflight(run_suite, config)
    assert result.rc == 1  # not 4: the guard is not checked here
    assert checks["preflight[start-command]"]["message"].endswith(
        "add [recovery] with [recovery.process] or [recovery.docker]")
