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


def test_in_process_by_default_xdist_on_request(stack, config_for, run_suite):
    config = str(config_for())
    default = run_suite("-m", "observe", "--runbook-config", config)
    _green(default)
    assert "workers" not in default.stdout  # no worker start-up paid by default
    spread = run_suite("-m", "observe", "-n", "2", "--runbook-config", config)
    _green(spread)
    assert "created: 2/2 workers" in spread.stdout
    assert spread.stdout.count("created:") == 1  # never workers of workers
    auto = run_suite("-m", "observe", "-n", "auto", "--runbook-config", config)
    _green(auto)
    created = re.search(r"created: (\d+)/(\d+) workers", auto.stdout)
    assert created, auto.stdout
    assert 1 <= int(created.group(1)) <= 3  # no more workers than sections (3 configured)
    outcomes = [{c["key"]: c["outcome"] for c in r.verdict["checks"]}
                for r in (default, spread, auto)]
    assert outcomes[0] == outcomes[1] == outcomes[2]


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


OPERATOR_CONFTEST = textwrap.dedent('''
    import os
    import time
    from pathlib import Path

    import pytest


    @pytest.fixture
    def blocking_check(request):
        """An operator's own check that blocks its process (a slow CLI, a database query):
        it says it has started, then waits (up to 30 s) until its sibling has started too."""
        def run(me, sibling):
            here = Path(os.environ["RENDEZVOUS"])
            (here / me).write_text(os.environ.get("PYTEST_XDIST_WORKER", "main"))
            deadline = time.monotonic() + 30
            while not (here / sibling).exists():
                assert time.monotonic() < deadline, f"{sibling} never ran beside {me}"
                time.sleep(0.05)  # the work itself: this check blocks
        return run
''')
OPERATOR_CHECKS = textwrap.dedent('''
    def test_backup_is_fresh(blocking_check):
        blocking_check("backup", "queue")


    def test_queue_drains(blocking_check):
        blocking_check("queue", "backup")
''')


def test_operator_blocking_checks_run_side_by_side_under_n2(stack, config_for, run_suite,
                                                            tmp_path, env_for):
    """With -n 2 an operator's own blocking checks, run beside the runbook's, go to different
    workers at once: each only passes if the other one started while it was still running."""
    ops = tmp_path / "ops"
    ops.mkdir()
    (ops / "conftest.py").write_text(OPERATOR_CONFTEST)
    (ops / "test_ops_checks.py").write_text(OPERATOR_CHECKS)
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    from afo_runbook.plugin import CHECKS_DIR

    result = run_suite("-n", "2", "-m", "not preflight", "--runbook-config", str(config_for()),
                       str(CHECKS_DIR),
                       str(ops), env=env_for(RENDEZVOUS=str(rendezvous)), timeout=90)
    assert result.rc == 0, result.output
    assert "created: 2/2 workers" in result.stdout
    workers = {(rendezvous / name).read_text() for name in ("backup", "queue")}
    assert workers == {"gw0", "gw1"}
    assert {c["outcome"] for c in result.verdict["checks"]} == {"passed"}
