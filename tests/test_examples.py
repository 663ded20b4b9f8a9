"""The fleet examples as shipped: systemd units (systemd-analyze verify where it exists, and
always their keys), the Kubernetes CronJobs (PyYAML; their runbook.toml loads), and the GitHub
Actions workflows (check-jsonschema's vendored GitHub workflow schema, offline).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from afo_runbook.config import load_config

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
SERVICE = EXAMPLES / "systemd" / "afo-runbook.service"
TIMER = EXAMPLES / "systemd" / "afo-runbook.timer"
CRONJOBS = EXAMPLES / "kubernetes" / "cronjob.yaml"
WORKFLOWS = [EXAMPLES / "github-actions" / "post-deploy-gate.yml",
             EXAMPLES / "github-actions" / "post-deploy-matrix.yml"]
OBSERVE = ["pytest", "-m", "observe", "--runbook-config", "/etc/afo/runbook.toml"]
SECRETISH = re.compile(r"SECRET|TOKEN|PASSWORD|KEY|CREDENTIAL", re.IGNORECASE)


def ci() -> bool:
    return os.environ.get("CI") == "true"


def tool(name: str, install: str) -> str:
    """A tool a test needs: next to this interpreter, else on PATH; skip without it (CI=true:
    fail, CI must never skip silently)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        reason = f"{name} is not installed ({install})"
        if ci():
            pytest.fail(f"{reason}; CI=true: not skipping", pytrace=False)
        pytest.skip(reason)
    return found


# ----------------------------------------------------------------------------- systemd


def unit_file(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file: {section: {key: [values]}} (keys may repeat), with `\\`
    continuations joined; comments and blank lines dropped."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: {line!r} before any [section]"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not KEY=VALUE: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_service_is_a_oneshot_running_observe_against_etc_afo() -> None:
    unit = unit_file(SERVICE)
    assert set(unit) == {"Unit", "Service"}
    service = unit["Service"]
    assert service["Type"] == ["oneshot"]
    [exec_start] = service["ExecStart"]
    argv = exec_start.split()
    assert Path(argv[0]).name == "pytest"
    assert Path(argv[0]).is_absolute()  # systemd wants an absolute path
    assert argv[1:5] == OBSERVE[1:]
    assert "--runbook-reports" in argv
    reports = Path(argv[argv.index("--runbook-reports") + 1])
    # the reports (and the incident log) must be writable under ProtectSystem=strict
    assert service["ProtectSystem"] == ["strict"]
    writable = service["ReadWritePaths"][0].split()
    assert any(reports.is_relative_to(p) for p in writable)
    assert f"/var/lib/{service['StateDirectory'][0]}" in writable
    # a stuck run is killed before the timer would want the next one
    assert 60 < int(service["TimeoutStartSec"][0]) < 300
    assert "Environment" not in service  # the secret comes from the env file in the config
    assert not [k for k in service if SECRETISH.search(k)]


def test_the_timer_starts_the_service_every_5_minutes() -> None:
    timer = unit_file(TIMER)
    assert set(timer) == {"Unit", "Timer", "Install"}
    assert timer["Timer"]["Unit"] == [SERVICE.name]
    assert timer["Timer"]["OnCalendar"] == ["*:0/5"]
    assert timer["Install"]["WantedBy"] == ["timers.target"]


def test_systemd_analyze_verifies_both_units(tmp_path: Path) -> None:
    """`systemd-analyze verify` of the units as shipped; the only change is ExecStart's
    interpreter, which systemd requires to exist: a stand-in executable at the same place
    in a temp folder (the venv of an install is not on this machine)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the units' keys are still checked "
                    "by the tests above)")
    stand_in = tmp_path / "opt" / "afo-runbook" / "bin" / "pytest"
    stand_in.parent.mkdir(parents=True)
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    units = tmp_path / "units"
    units.mkdir()
    text = SERVICE.read_text()
    assert "/opt/afo-runbook/bin/pytest " in text
    (units / SERVICE.name).write_text(text.replace("/opt/afo-runbook/bin/pytest ",
                                                   f"{stand_in} "))
    shutil.copy(TIMER, units / TIMER.name)
    proc = subprocess.run([analyze, "verify", str(units / SERVICE.name),
                           str(units / TIMER.name)],
                          capture_output=True, text=True, timeout=60, check=False)
    # an unknown key is only a warning (exit 0): any message at all fails the test
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr
    calendar = subprocess.run([analyze, "calendar", "--iterations", "3",
                               unit_file(TIMER)["Timer"]["OnCalendar"][0]],
                              capture_output=True, text=True, timeout=60, check=False)
    assert calendar.returncode == 0, calendar.stderr
    assert "*-*-* *:00/5:00" in calendar.stdout  # every 5 minutes, on the minute


# ----------------------------------------------------------------------------- Kubernetes


def manifests() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(CRONJOBS.read_text()) if d is not None]


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def pod_spec(cronjob: dict[str, Any]) -> dict[str, Any]:
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_one_cronjob_per_deployment_with_its_own_config_secret_and_reports() -> None:
    cronjobs = by_kind("CronJob")
    assert len(cronjobs) >= 2
    deployments = [c["metadata"]["labels"]["afo.example.com/deployment"]
                   for c in cronjobs.values()]
    assert len(set(deployments)) == len(deployments)
    seen: dict[str, set[str]] = {"configmap": set(), "secret": set(), "claim": set()}
    for name, cronjob in cronjobs.items():
        spec = cronjob["spec"]
        assert spec["concurrencyPolicy"] == "Forbid", name
        assert spec["schedule"] == "*/5 * * * *", name
        assert spec["jobTemplate"]["spec"]["backoffLimit"] == 0, name
        pod = pod_spec(cronjob)
        assert pod["restartPolicy"] == "Never"
        [container] = pod["containers"]
        argv = container["command"]
        assert argv[:5] == OBSERVE, name
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        # the config: a ConfigMap of this file, mounted where --runbook-config points
        config_path = Path(argv[argv.index("--runbook-config") + 1])
        configmap = volumes[mounts[str(config_path.parent)]]["configMap"]["name"]
        assert config_path.name in by_kind("ConfigMap")[configmap]["data"], name
        # the secret: from a Kubernetes Secret, never a value in the manifest
        env = {e["name"]: e for e in container["env"]}
        ref = env["AFO_INTERNAL_SECRET"]["valueFrom"]["secretKeyRef"]
        assert "value" not in env["AFO_INTERNAL_SECRET"]
        assert ref["key"] == "AFO_INTERNAL_SECRET"
        assert not [e for e in env.values() if SECRETISH.search(e["name"]) and "value" in e]
        # the reports: a volume (a claim of this file), where --runbook-reports points
        reports = argv[argv.index("--runbook-reports") + 1]
        claim = volumes[mounts[reports]]["persistentVolumeClaim"]["claimName"]
        assert claim in by_kind("PersistentVolumeClaim"), name
        for kind, value in (("configmap", configmap), ("secret", ref["name"]),
                            ("claim", claim)):
            assert value not in seen[kind], f"{name} shares its {kind} {value}"
            seen[kind].add(value)


def test_each_cronjobs_runbook_toml_loads_and_keeps_its_evidence_on_the_volume(
        tmp_path: Path) -> None:
    for name, cronjob in by_kind("CronJob").items():
        pod = pod_spec(cronjob)
        [container] = pod["containers"]
        argv = container["command"]
        config_path = Path(argv[argv.index("--runbook-config") + 1])
        reports = Path(argv[argv.index("--runbook-reports") + 1])
        volume = {v["name"]: v for v in pod["volumes"]}[
            {m["mountPath"]: m["name"] for m in container["volumeMounts"]}[
                str(config_path.parent)]]
        text = by_kind("ConfigMap")[volume["configMap"]["name"]]["data"][config_path.name]
        path = tmp_path / name / config_path.name
        path.parent.mkdir()
        path.write_text(text)
        config = load_config(path)  # valid keys only, like any runbook.toml
        assert config.health, name
        assert config.guard is not None
        assert config.guard.secret_env == "AFO_INTERNAL_SECRET"
        assert config.containers is None  # no Docker engine inside a cluster
        assert config.incident_log is not None
        assert config.incident_log.is_relative_to(reports), name
        assert config.reports_dir == reports


# ----------------------------------------------------------------------------- GitHub Actions


def check_workflow(path: Path) -> subprocess.CompletedProcess[str]:
    checker = tool("check-jsonschema", "pip install check-jsonschema, in the dev extra")
    return subprocess.run([checker, "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_the_workflow_is_valid_against_githubs_schema(workflow: Path) -> None:
    proc = check_workflow(workflow)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok -- validation done" in proc.stdout


def test_the_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    """The validator is really validating: the matrix workflow with a wrong fail-fast type
    and a step without `run` or `uses` is refused."""
    text = WORKFLOWS[1].read_text()
    assert "      fail-fast: false" in text
    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace("      fail-fast: false", "      fail-fast: sometimes")
                      .replace("      - name: Install the runbook suite\n",
                               "      - name: Install the runbook suite\n        shell: bash\n"
                               "      - name: nothing to do\n"))
    proc = check_workflow(broken)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "fail-fast" in proc.stdout + proc.stderr


def test_the_matrix_gates_every_deployment_with_its_own_config_and_secret() -> None:
    workflow = yaml.safe_load(WORKFLOWS[1].read_text())
    observe = workflow["jobs"]["observe"]
    assert observe["strategy"]["fail-fast"] is False
    entries = observe["strategy"]["matrix"]["include"]
    assert len(entries) >= 2
    for key in ("deployment", "config", "secret"):
        values = [e[key] for e in entries]
        assert len(set(values)) == len(values), f"matrix {key}s repeat: {values}"
    assert all(e["config"].endswith("runbook.toml") for e in entries)
    steps = {s.get("name", s.get("uses")): s for s in observe["steps"]}
    [run_step] = [s for s in steps.values() if "pytest -m observe" in s.get("run", "")]
    assert "--runbook-config ${{ matrix.config }}" in run_step["run"]
    assert run_step["env"]["AFO_INTERNAL_SECRET"] == "${{ secrets[matrix.secret] }}"
    uploads = [s for s in observe["steps"]
               if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert len(uploads) == 1
    # artifact names must be unique per run (upload-artifact v4): one per deployment
    assert "${{ matrix.deployment }}" in uploads[0]["with"]["name"]
    assert uploads[0]["if"] == "always()"
    gate = workflow["jobs"]["gate"]
    assert gate["needs"] == "observe"
    assert gate["if"] == "always()"
    assert "test \"$RESULT\" = success" in gate["steps"][0]["run"]
