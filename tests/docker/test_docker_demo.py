"""The main job with a Docker engine: the demo runs the containerised reference stack
(afo-core, afo-aux, afo-dashboard) and observes all four sections, 1.4 included."""

from __future__ import annotations

import json
import subprocess
import sys


def test_demo_observes_all_four_sections_with_docker(docker_client, base_image, tmp_path,
                                                      env_for):
    verdict_path = tmp_path / "verdict.json"
    proc = subprocess.run(
        [sys.executable, "-m", "afo_runbook.cli", "demo", "--state-dir", str(tmp_path / "st"),
         "--runbook-json", str(verdict_path), "--runbook-reports", str(tmp_path / "r"),
         "-p", "no:cacheprovider"],
        capture_output=True, text=True, timeout=240, env=env_for(), check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "reference stack up as containers afo-core, afo-aux, afo-dashboard" in proc.stdout
    verdict = json.loads(verdict_path.read_text())
    assert {c["group"] for c in verdict["checks"]} == {"health", "guard", "sse", "containers"}
    assert {c["key"] for c in verdict["checks"] if c["group"] == "containers"} == {
        "containers[afo-core]", "containers[afo-aux]", "containers[afo-dashboard]"}
    assert verdict["decision"] == "monitor"
    demo_names = {"/afo-core", "/afo-aux", "/afo-dashboard"}
    left = [c["Names"] for c in docker_client.api.containers(all=True)
            if demo_names & set(c["Names"])]
    assert left == []  # the demo stopped what it started (other tests' stacks carry suffixes)
