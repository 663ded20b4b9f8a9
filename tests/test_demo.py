"""The main job, `python3 tasks.py demo` (`afo-runbook demo`): without a Docker engine it
observes the process stack (sections 1.1-1.3) and says in one line how to get 1.4."""

from __future__ import annotations

import json
import subprocess
import sys


def run_demo(tmp_path, env, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    verdict = tmp_path / "verdict.json"
    proc = subprocess.run(
        [sys.executable, "-m", "afo_runbook.cli", "demo", "--state-dir", str(tmp_path / "st"),
         *extra, "--runbook-json", str(verdict), "--runbook-reports", str(tmp_path / "r"),
         "-p", "no:cacheprovider"],
        capture_output=True, text=True, timeout=240, env=env, check=False)
    assert verdict.exists(), proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc, json.loads(verdict.read_text())


def test_demo_without_docker_says_how_to_get_the_containers(tmp_path, env_for):
    env = env_for(DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
    proc, verdict = run_demo(tmp_path, env)
    assert proc.returncode == 0, proc.stdout[-3000:]
    lines = [line for line in proc.stdout.splitlines() if "1.4 (containers) is left out" in line]
    assert len(lines) == 1
    assert "python3 tasks.py demo --docker" in lines[0]
    assert {c["group"] for c in verdict["checks"]} == {"health", "guard", "sse"}
    assert verdict["decision"] == "monitor"
