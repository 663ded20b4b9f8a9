"""The suite as an operator installs it: a wheel in a fresh venv, run from another folder.

The checks ship inside the package (afo_runbook.checks), so `pip install .` is enough for
`pytest -m observe --runbook-config PATH` to run the runbook's checks anywhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv


def test_wheel_install_runs_the_checks_from_anywhere(stack, config_for, tmp_path, env_for,
                                                     repo):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(repo), "-w",
                    str(wheels)], check=True, timeout=300, capture_output=True)
    (wheel,) = wheels.glob("afo_runbook-*.whl")
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    pip = [str(target / "bin" / "python"), "-m", "pip", "install", "-q",
           "--disable-pip-version-check"]
    subprocess.run([*pip, str(wheel)], check=True, timeout=600, capture_output=True)
    elsewhere = tmp_path / "ops"
    elsewhere.mkdir()
    proc = subprocess.run([str(target / "bin" / "pytest"), "-m", "observe", "--runbook-config",
                           str(config_for()), "-p", "no:cacheprovider"], cwd=elsewhere,
                          env=env_for(), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    verdict = json.loads((elsewhere / "reports" / "observe-latest.json").read_text())
    assert verdict["decision"] == "monitor"
    assert "checks/test_health.py::test_health[api]" in {c["id"] for c in verdict["checks"]}
    assert (elsewhere / "reports" / "observe-latest.html").exists()
    # and it was the installed copy that ran, not this checkout
    where = subprocess.run([str(target / "bin" / "python"), "-c",
                            "import afo_runbook.checks as c; print(c.__file__)"],
                           capture_output=True, text=True, check=True, cwd=elsewhere)
    assert where.stdout.startswith(str(target))
