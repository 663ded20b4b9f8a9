#!/usr/bin/env python3
"""The project's commands on a machine that has nothing but Python 3.11.

    python3 tasks.py demo     # start the reference stack, observe it, write the HTML report
    python3 tasks.py test     # ruff + the full test suite
    python3 tasks.py drill    # the EXP_007 rollback drill against the reference stack
    python3 tasks.py bench    # benchmarks against the runbook's own shell procedure
    python3 tasks.py bench-drill   # the drill's time-to-recover against the runbook's 45 s

Each command first makes sure two virtualenvs exist, reinstalling only when pyproject.toml
changed: `.venv` holds the suite and its test tools (`pip install -e .[dev]`), `.venv-refstack`
the reference stack (`.[refstack]`: FastAPI, uvicorn, sse-starlette). The stack is a service
under test, so its dependencies stay out of the pytest processes that observe it.
Extra arguments go to the command.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
REFSTACK_VENV = ROOT / ".venv-refstack"


def ensure_venv(venv_dir: Path, extras: str) -> None:
    """Create `venv_dir` and install this project with `extras` unless already current."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs before the venv exists
        sys.exit(f"afo-runbook needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    stamp = venv_dir / ".afo-runbook-installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    python = venv_dir / "bin" / "python"
    if not python.exists():
        print(f"tasks: creating {venv_dir.name}", flush=True)
        venv.EnvBuilder(with_pip=True).create(venv_dir)
    if not stamp.exists() or stamp.read_text().strip() != want:
        print(f"tasks: installing afo-runbook[{extras}] into {venv_dir.name}", flush=True)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        run([*pip, "-e", f"{ROOT}[{extras}]"])
        stamp.write_text(want + "\n")


def run(argv: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(argv, cwd=ROOT, env=env, check=False)
    if result.returncode != 0:
        sys.exit(result.returncode)


def venv_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    env["AFO_REFSTACK_PYTHON"] = str(REFSTACK_VENV / "bin" / "python")
    return env


def main(argv: list[str]) -> None:
    commands = {
        "demo": [str(BIN / "afo-runbook"), "demo"],
        "test": None,
        "drill": [str(BIN / "afo-runbook"), "drill"],
        "bench": [str(BIN / "python"), "bench/observe_bench.py"],
        "bench-drill": [str(BIN / "python"), "bench/drill_bench.py"],
    }
    if not argv or argv[0] not in commands:
        sys.exit(__doc__)
    name, extra = argv[0], argv[1:]
    ensure_venv(VENV, "dev")
    ensure_venv(REFSTACK_VENV, "refstack")
    env = venv_env()
    if name == "test":
        run([str(BIN / "ruff"), "check", "."], env)
        run([str(BIN / "pytest"), "tests", "-n", "auto", *extra], env)
        return
    command = commands[name]
    assert command is not None
    run([*command, *extra], env)


if __name__ == "__main__":
    main(sys.argv[1:])
