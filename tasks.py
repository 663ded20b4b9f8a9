#!/usr/bin/env python3
"""The project's commands on a machine that has nothing but Python 3.11.

    python3 tasks.py demo     # start the reference stack, observe it, write the HTML report
    python3 tasks.py test     # ruff + the full test suite
    python3 tasks.py drill    # the EXP_007 rollback drill against the reference stack
    python3 tasks.py bench    # benchmarks against the runbook's own shell procedure

Each command first makes sure `.venv` exists and holds this project (`pip install -e
.[dev]`), reinstalling only when pyproject.toml changed. Extra arguments go to the command.
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
STAMP = VENV / ".afo-runbook-installed"


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs before the venv exists
        sys.exit(f"afo-runbook needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not (BIN / "python").exists():
        print(f"tasks: creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if not STAMP.exists() or STAMP.read_text().strip() != want:
        print("tasks: installing afo-runbook and its dependencies into .venv", flush=True)
        pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        run([*pip, "-e", f"{ROOT}[dev]"])
        STAMP.write_text(want + "\n")


def run(argv: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(argv, cwd=ROOT, env=env, check=False)
    if result.returncode != 0:
        sys.exit(result.returncode)


def venv_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    return env


def main(argv: list[str]) -> None:
    commands = {
        "demo": [str(BIN / "afo-runbook"), "demo"],
        "test": None,
        "drill": [str(BIN / "afo-runbook"), "drill"],
        "bench": [str(BIN / "python"), "bench/observe_bench.py"],
    }
    if not argv or argv[0] not in commands:
        sys.exit(__doc__)
    name, extra = argv[0], argv[1:]
    ensure_venv()
    env = venv_env()
    if name == "test":
        run([str(BIN / "ruff"), "check", "."], env)
        run([str(BIN / "pytest"), "tests", *extra], env)
        return
    command = commands[name]
    assert command is not None
    run([*command, *extra], env)


if __name__ == "__main__":
    main(sys.argv[1:])
