"""The EXP_007 drill in Docker mode: a container recreated without its secret, rolled back by
recreating it with the env file, as one command."""

from __future__ import annotations

import json
import re
import subprocess
import sys


def test_docker_mode_drill(docker_client, base_image, tmp_path, env_for):
    out = tmp_path / "drill.json"
    proc = subprocess.run([sys.executable, "-m", "afo_runbook.cli", "drill", "--docker",
                           "--json", str(out)], capture_output=True, text=True, timeout=240,
                          env=env_for(), check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert re.search(r"Rollback completed in [\d.]+ seconds", proc.stdout)
    (only,) = json.loads(out.read_text())["rounds"]
    assert only["symptoms"] == ["secret-unconfigured"]
    assert (only["decision"], only["outcome"]) == ("rollback", "recovered")
    assert only["ttr_s"] < 45
    left = docker_client.api.containers(all=True, filters={"name": "drill"})
    assert left == [], [c["Names"] for c in left]
