"""The EXP_007 drill, end to end, as an operator runs it: one command."""

from __future__ import annotations

import json
import re
import subprocess
import sys


def test_process_mode_drill_recovers_well_under_the_runbooks_45_s(tmp_path, env_for):
    out = tmp_path / "drill.json"
    proc = subprocess.run([sys.executable, "-m", "afo_runbook.cli", "drill", "--json",
                           str(out)], capture_output=True, text=True, timeout=120,
                          env=env_for(), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"Rollback completed in [\d.]+ seconds", proc.stdout)
    rounds = json.loads(out.read_text())["rounds"]
    assert rounds[0]["symptoms"] == ["secret-unconfigured"]
    assert rounds[0]["decision"] == "rollback"
    assert rounds[0]["outcome"] == "recovered"
    assert rounds[0]["ttr_s"] < 45
