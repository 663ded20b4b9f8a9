"""The command forms operators type, from the repo and from anywhere else.

pytest settles its rootdir and ini file before plugin options exist, so in
`pytest -m observe --runbook-config /some/dir/runbook.toml` the path is first taken for a test
path and `[tool.pytest.ini_options]` can be dropped. These tests run exactly those forms.
"""

from __future__ import annotations

import re
import textwrap

import pytest
import tomli_w


def _green(result) -> None:
    assert result.rc == 0, result.output
    assert result.verdict["decision"] == "monitor"
    assert len(result.verdict["checks"]) == 7
    assert "runbook verdict" in result.stdout
    assert "PytestUnknownMarkWarning" not in result.output


@pytest.mark.parametrize("where", ["repo", "elsewhere"])
def test_space_separated_config_path(where, stack, config_for, run_suite, tmp_path, repo):
    config = config_for()  # lives in a folder of its own, outside the repo
    cwd = repo if where == "repo" else tmp_path
    result = run_suite("-m", "observe", "--runbook-config", str(config), cwd=cwd)
    _green(result)
    assert f"runbook: {config} (--runbook-config)" in result.stdout
    # The trap is real: pytest never read the repo's pyproject.toml and (from the repo too)
    # chose another rootdir, yet markers, parallelism and timeouts all held.
    assert "configfile:" not in result.stdout
    assert f"rootdir: {repo}\n" not in result.stdout


def test_equals_form_and_environment_variable(stack, config_for, run_suite, tmp_path, env_for):
    config = config_for()
    _green(run_suite("-m", "observe", f"--runbook-config={config}", cwd=tmp_path))
    via_env = run_suite("-m", "observe", cwd=tmp_path, env=env_for(RUNBOOK_CONFIG=str(config)))
    _green(via_env)
    assert "(RUNBOOK_CONFIG)" in via_env.stdout


def test_relative_paths_resolve_against_the_config_folder(run_suite, tmp_path, config_dict,
                                                          stack_env_file):
    folder = tmp_path / "deploy"
    folder.mkdir()
    (folder / "secrets.env").write_text(stack_env_file.read_text())
    config = config_dict()
    config["guard"]["env_file"] = "secrets.env"  # relative: next to the config, not the cwd
    path = folder / "runbook.toml"
    path.write_bytes(tomli_w.dumps(config).encode())
    _green(run_suite("-m", "observe", "--runbook-config", str(path), cwd=tmp_path))


def test_markers_select_groups(stack, config_for, run_suite):
    config = config_for(containers={"names": ["afo-core"], "required": False})
    result = run_suite("-m", "observe and not containers", "--strict-markers",
                       "--runbook-config", str(config))
    assert result.rc == 0, result.output
    assert {c["group"] for c in result.verdict["checks"]} == {"health", "guard", "sse"}
    only_guard = run_suite("-m", "guard", "--runbook-config", str(config))
    assert {c["key"] for c in only_guard.verdict["checks"]} == {
        "guard[no-secret]", "guard[wrong-secret]", "guard[right-secret]"}


def test_markers_are_registered_even_without_the_ini_file(run_suite, tmp_path, write_runbook):
    config = write_runbook({"health": [{"name": "x", "url": "http://127.0.0.1:9/"}]})
    result = run_suite("--markers", "--runbook-config", str(config), cwd=tmp_path,
                       json_out=False)
    assert result.rc == 0, result.output
    for marker in ("observe", "health", "guard", "sse", "containers", "preflight",
                   "recovery(action)"):
        assert f"@pytest.mark.{marker}:" in result.stdout


def test_parallel_by_default_serial_with_n0(stack, config_for, run_suite):
    config = str(config_for())
    parallel = run_suite("-m", "observe", "--runbook-config", config)
    _green(parallel)
    created = re.search(r"created: (\d+)/(\d+) workers", parallel.stdout)
    assert created, parallel.stdout
    # one worker per runbook section at most, and never workers of workers
    assert 1 <= int(created.group(1)) <= 3
    assert parallel.stdout.count("created:") == 1
    serial = run_suite("-m", "observe", "-n", "0", "--runbook-config", config)
    _green(serial)
    assert "workers" not in serial.stdout


TIMEOUT_PRINTER = textwrap.dedent("""
    def pytest_collection_finish(session):
        for item in session.items:
            marker = item.get_closest_marker("timeout")
            print("TIMEOUT", item.name, marker.args[0] if marker else None)
""")


def test_each_check_gets_its_group_budget_as_timeout(stack, config_for, run_suite, tmp_path,
                                                     env_for):
    (tmp_path / "timeout_printer.py").write_text(TIMEOUT_PRINTER)
    config = config_for(budgets={"health": 7, "guard": 13, "sse": 17})
    env = env_for(PYTHONPATH=str(tmp_path))
    listed = run_suite("-m", "observe", "-n", "0", "--collect-only", "-p", "timeout_printer",
                       "--runbook-config", str(config), env=env, json_out=False)
    assert listed.rc == 0, listed.output
    timeouts = dict(re.findall(r"^TIMEOUT (\S+) (\S+)$", listed.stdout, re.MULTILINE))
    assert timeouts["test_health[api]"] == "7.0"
    assert timeouts["test_guard[no-secret]"] == "13.0"
    assert timeouts["test_sse_delivers_an_event"] == "17.0"
    # and every network call inside has its own, shorter timeout: half the budget
    run = run_suite("-m", "observe", "-n", "0", "--runbook-config", str(config))
    assert run.check("health[api]")["evidence"]["timeout_s"] == 3.5
    assert run.check("guard[no-secret]")["evidence"]["timeout_s"] == 6.5


def test_missing_sections_are_deselected_with_a_reason(stack, config_for, run_suite):
    config = config_for(sse=None, guard=None)
    result = run_suite("-m", "observe", "--runbook-config", str(config))
    assert result.rc == 0, result.output
    assert {c["group"] for c in result.verdict["checks"]} == {"health"}
    reasons = {d["group"]: d["reason"] for d in result.verdict["deselected"]}
    assert set(reasons) == {"guard", "sse", "containers"}
    assert "no [sse] section" in reasons["sse"]
    assert "runbook 1.3 sse deselected: no [sse] section" in result.stdout
