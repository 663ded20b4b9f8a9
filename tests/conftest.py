"""Fixtures for the suite's own tests: real stacks on free ports, the suite run as a user runs it.

Test modules do not import from here (test folders have no __init__.py); what they need comes
as a fixture.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from afo_runbook.refstack.services import SERVICE_NAMES
from afo_runbook.refstack.stack import Stack, free_ports, http_status

REPO = Path(__file__).resolve().parent.parent
SECRET_ENV = "AFO_INTERNAL_SECRET"
# One random secret per test session: never a literal that could be somebody's real secret.
SUITE_SECRET = "tst-" + secrets.token_urlsafe(24)


@dataclass
class RunResult:
    """One `pytest -m observe ...` run as a user would see it."""

    argv: list[str]
    cwd: Path
    rc: int
    stdout: str
    stderr: str
    seconds: float
    json_path: Path
    junit_path: Path | None
    max_rss_kib: int  # this one run's peak resident set (its own, from wait4)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def verdict(self) -> dict[str, Any]:
        if not self.json_path.exists():
            raise AssertionError(f"no verdict JSON written (rc {self.rc}):\n{self.output[-3000:]}")
        return json.loads(self.json_path.read_text())

    def check(self, key: str) -> dict[str, Any]:
        """The verdict's record of one check, by its key (`health[api]`, `guard[no-secret]`)."""
        for record in self.verdict["checks"]:
            if record["key"] == key:
                return record
        raise AssertionError(f"no check {key} in {[c['key'] for c in self.verdict['checks']]}")

    def failing(self) -> dict[str, str]:
        """{check key: symptom} of every failing check."""
        return {c["key"]: c["symptom"] for c in self.verdict["checks"]
                if c["outcome"] in ("failed", "error")}


def clean_env(**extra: str | None) -> dict[str, str]:
    """The environment for a run: no pytest/xdist leftovers from this session, no stray secret."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "RUNBOOK_")) and k != SECRET_ENV}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@pytest.fixture
def run_suite(tmp_path: Path) -> Callable[..., RunResult]:
    """Run the runbook suite in a subprocess: `run_suite("-m", "observe", "--runbook-config", p)`.

    A verdict JSON path is added unless the arguments name one.
    """
    counter = iter(range(1000))

    def run(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None,
            timeout: float = 120, junit: bool = False, json_out: bool = True) -> RunResult:
        n = next(counter)
        json_path = tmp_path / f"verdict-{n}.json"
        junit_path = tmp_path / f"junit-{n}.xml" if junit else None
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
        if json_out and "--runbook-json" not in args:
            argv += ["--runbook-json", str(json_path)]
        if not any(a.startswith("--runbook-reports") for a in args):
            argv += ["--runbook-reports", str(tmp_path / "reports")]  # never the repo's
        if junit_path is not None:
            argv += ["--junitxml", str(junit_path)]
        started = time.monotonic()
        out, err = tmp_path / f"stdout-{n}.txt", tmp_path / f"stderr-{n}.txt"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(argv, cwd=cwd, env=env if env is not None else clean_env(),
                                    stdout=stdout, stderr=stderr)
            killer = threading.Timer(timeout, proc.kill)  # a hung run fails, never hangs us
            killer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)  # the rusage of this child alone
            finally:
                killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
        if seconds >= timeout:
            raise subprocess.TimeoutExpired(argv, timeout, out.read_bytes(), err.read_bytes())
        return RunResult(argv, cwd, proc.returncode, out.read_text(errors="replace"),
                         err.read_text(errors="replace"), seconds, json_path, junit_path,
                         usage.ru_maxrss)

    return run


def write_env_file(path: Path, secret: str = SUITE_SECRET) -> Path:
    path.write_text(f"{SECRET_ENV}={secret}\n")
    path.chmod(0o600)
    return path


def stack_config(stack: Stack, env_file: Path, **overrides: Any) -> dict[str, Any]:
    """A runbook config (as a dict) for a process-mode reference stack."""
    api = stack.urls["api"]
    config: dict[str, Any] = {
        "health": [
            {"name": "api", "url": stack.health_url("api"), "expect": 200},
            {"name": "aux", "url": stack.health_url("aux")},
            {"name": "dashboard", "url": stack.health_url("dashboard")},
        ],
        "guard": {"url": f"{api}/api/revalidate/status", "env_file": str(env_file)},
        "sse": {"url": f"{api}/api/thoughts/sse", "window": 5},
    }
    for key, value in overrides.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tomli_w.dumps(config).encode())
    return path


@pytest.fixture
def repo() -> Path:
    """The repository root (where `pytest -m observe` finds its ini file)."""
    return REPO


@pytest.fixture
def env_for() -> Callable[..., dict[str, str]]:
    """`env_for(RUNBOOK_CONFIG="...")`: a clean environment for a run, with changes."""
    return clean_env


@pytest.fixture
def config_dict(stack: Stack, stack_env_file: Path) -> Callable[..., dict[str, Any]]:
    """The module stack's runbook config as a dict, with section overrides."""
    return lambda **overrides: stack_config(stack, stack_env_file, **overrides)


@pytest.fixture
def write_runbook(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    """Write any runbook config (a dict) to a fresh runbook.toml; returns its path."""
    counter = iter(range(1000))

    def write(config: dict[str, Any]) -> Path:
        return write_config(tmp_path / f"rb{next(counter)}" / "runbook.toml", config)

    return write


@pytest.fixture
def suite_env_file(tmp_path: Path) -> Path:
    """A dotenv file with the session's secret, for configs that need one."""
    return write_env_file(tmp_path / "suite.env")


@pytest.fixture(scope="module")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One running reference stack per test module (and xdist worker)."""
    root = tmp_path_factory.mktemp("stack")
    env_file = write_env_file(root / ".env.afo")
    ports = dict(zip(SERVICE_NAMES, free_ports(len(SERVICE_NAMES)), strict=True))
    stack = Stack(root / "state", ports=ports, env_file=env_file)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def stack(shared_stack: Stack) -> Iterator[Stack]:
    """The module's stack, handed back without faults, with every service up and the api
    holding its secret (a test may have restarted it without, as the incident does)."""
    try:
        yield shared_stack
    finally:
        for name in SERVICE_NAMES:
            shared_stack.clear_fault(name)
            if not shared_stack.is_running(name):
                shared_stack.start_service(name)
        if not _accepts_secret(shared_stack):
            shared_stack.stop_service("api")
            shared_stack.start_service("api")


def _accepts_secret(stack: Stack) -> bool:
    assert stack.env_file is not None
    secret = stack.env_file.read_text().strip().split("=", 1)[1]
    status = http_status(stack.host, stack.ports["api"], "/api/revalidate/status", timeout=5,
                         headers={"X-Internal-Secret": secret})
    return status == 200


@pytest.fixture
def stack_env_file(shared_stack: Stack) -> Path:
    assert shared_stack.env_file is not None
    return shared_stack.env_file


def recovery_section(stack: Stack, stack_env: Path, **process: Any) -> dict[str, Any]:
    """[recovery] for a process-mode stack: exactly how the stack itself starts its api."""
    return {"mode": "process", "process": {
        "start": shlex.join(stack.command("api")),
        "cwd": str(stack.state_dir),
        "pidfile": str(stack.pidfile("api")),
        "env_file": str(stack_env),
        "log_file": str(stack.log_file("api")),
        "ready_url": stack.health_url("api"),
        "stop_timeout": 5,
        "ready_timeout": 15,
        **process,
    }}


@pytest.fixture
def recovery_dict(stack: Stack, stack_env_file: Path) -> Callable[..., dict[str, Any]]:
    """`recovery_dict(start="...")`: the stack's [recovery] section with process overrides."""
    return lambda **process: recovery_section(stack, stack_env_file, **process)


@pytest.fixture
def recovery_config(tmp_path: Path, stack: Stack, stack_env_file: Path) -> Callable[..., Path]:
    """A runbook.toml for the module's stack with [recovery] and a private incident log."""
    counter = iter(range(1000))

    def make(recovery: dict[str, Any] | None = None, **overrides: Any) -> Path:
        folder = tmp_path / f"rec{next(counter)}"
        config = stack_config(stack, stack_env_file, **overrides)
        config["recovery"] = recovery or recovery_section(stack, stack_env_file)
        config.setdefault("incident_log", {"path": str(folder / "logs" / "afo-incidents.log")})
        return write_config(folder / "runbook.toml", config)

    return make


@pytest.fixture
def config_for(tmp_path: Path, stack: Stack, stack_env_file: Path) -> Callable[..., Path]:
    """Write a runbook.toml for the module's stack, with section overrides."""
    counter = iter(range(1000))

    def make(**overrides: Any) -> Path:
        return write_config(tmp_path / f"cfg{next(counter)}" / "runbook.toml",
                            stack_config(stack, stack_env_file, **overrides))

    return make
