"""Principle 3 of the runbook: change only what can be undone within 5 minutes.

Before a deploy (or by hand, `pytest -m preflight`): could a rollback run right now? Each
check says what to fix when it fails.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from afo_runbook.config import RunbookConfig
from afo_runbook.results import CheckResult
from afo_runbook.secret import read_env_file

PREFLIGHT_CHECKS = ("env-file", "start-command", "writable-folders", "compose-env-file")


def _result(key: str, ok: bool, message: str, **evidence: Any) -> CheckResult:
    return CheckResult(f"preflight[{key}]", "preflight", ok, None, message, evidence)


def rollback_env_file(config: RunbookConfig) -> tuple[Path | None, str]:
    """The env file a rollback would load, and the variable it must define."""
    recovery, guard = config.recovery, config.guard
    variable = guard.secret_env if guard else "AFO_INTERNAL_SECRET"
    if recovery and recovery.mode == "process" and recovery.process:
        return recovery.process.env_file or (guard.env_file if guard else None), variable
    if recovery and recovery.mode == "docker" and recovery.docker:
        return recovery.docker.env_file or (guard.env_file if guard else None), variable
    return (guard.env_file if guard else None), variable


def env_file(config: RunbookConfig) -> CheckResult:
    path, variable = rollback_env_file(config)
    if path is None:
        return _result("env-file", False, "no env file is configured for the rollback: set "
                       "[recovery.process] env_file (or [recovery.docker] env_file)")
    if not path.is_file():
        return _result("env-file", False, f"{path} does not exist: create it with "
                       f"{variable}=<secret> and chmod 600 it", path=str(path))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return _result("env-file", False, f"{path} has mode {mode:o}, readable beyond its "
                       f"owner: run `chmod 600 {path}`", path=str(path), mode=f"{mode:o}")
    if not read_env_file(path).get(variable):
        return _result("env-file", False, f"{path} does not define {variable}: add "
                       f"{variable}=<secret> to it", path=str(path))
    return _result("env-file", True, f"{path}: mode {mode:o}, defines {variable}",
                   path=str(path), mode=f"{mode:o}")


def start_command(config: RunbookConfig) -> CheckResult:
    recovery = config.recovery
    if recovery is None:
        return _result("start-command", False, f"{config.path} has no [recovery] section: "
                       "add [recovery] with [recovery.process] or [recovery.docker]")
    if recovery.mode == "docker":
        return _container_exists(config)
    process = recovery.process
    assert process is not None
    if not process.cwd.is_dir():
        return _result("start-command", False, f"the start folder {process.cwd} does not "
                       "exist: fix [recovery.process] cwd", cwd=str(process.cwd))
    argv = shlex.split(process.start)
    program = argv[0]
    if "/" in program:
        found = (process.cwd / program) if not Path(program).is_absolute() else Path(program)
        resolved = str(found) if found.is_file() and os.access(found, os.X_OK) else None
    else:
        resolved = shutil.which(program)
    if resolved is None:
        return _result("start-command", False, f"{program!r} of the start command "
                       f"{process.start!r} is not an executable (PATH, or relative to "
                       f"{process.cwd}): fix [recovery.process] start", start=process.start)
    return _result("start-command", True, f"{process.start!r}: {program} -> {resolved}",
                   start=process.start, program=resolved)


def _container_exists(config: RunbookConfig) -> CheckResult:
    from afo_runbook.probes.docker import DockerUnavailable, connect, find

    docker = config.recovery.docker if config.recovery else None
    assert docker is not None
    try:
        client = connect(timeout=5)
    except DockerUnavailable as exc:
        return _result("start-command", False, f"Docker is unreachable ({exc}): a Docker "
                       "rollback cannot run; start the engine or fix DOCKER_HOST")
    try:
        ids = find(client, docker.container)
    finally:
        client.close()
    if not ids:
        return _result("start-command", False, f"no container {docker.container}: a "
                       "recreate needs the container to copy; fix [recovery.docker] container")
    return _result("start-command", True, f"container {docker.container} exists "
                   f"({ids[0][:12]})", container=docker.container)


def _writable(path: Path) -> bool:
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def writable_folders(config: RunbookConfig) -> CheckResult:
    folders: dict[str, Path] = {}
    recovery = config.recovery
    if recovery and recovery.mode == "process" and recovery.process:
        folders["pidfile"] = recovery.process.pidfile.parent
        folders["log_file"] = recovery.process.log_file.parent
    folders["incident log"] = (config.incident_log or config.folder / "logs" /
                               "afo-incidents.log").parent
    bad = {name: str(folder) for name, folder in folders.items() if not _writable(folder)}
    if bad:
        return _result("writable-folders", False, "cannot write to: " + ", ".join(
            f"{name} folder {folder}" for name, folder in bad.items()) + "; create them or "
            "fix their permissions", **bad)
    return _result("writable-folders", True, "writable: " + ", ".join(
        f"{name} ({folder})" for name, folder in folders.items()))


def compose_env_file(config: RunbookConfig) -> CheckResult:
    """Runbook 4.3: `.env.afo` + the compose file's env_file."""
    recovery = config.recovery
    docker = recovery.docker if recovery else None
    if docker is None or docker.compose_file is None:
        return CheckResult("preflight[compose-env-file]", "preflight", True, None,
                           "no compose file configured", skipped="no [recovery.docker] "
                           "compose_file configured")
    import yaml

    try:
        document = yaml.safe_load(docker.compose_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        return _result("compose-env-file", False, f"cannot read {docker.compose_file}: {exc}")
    service_name = docker.service or docker.container
    service = (document.get("services") or {}).get(service_name)
    if not isinstance(service, dict):
        return _result("compose-env-file", False, f"{docker.compose_file} has no service "
                       f"{service_name!r}: set [recovery.docker] service")
    declared = service.get("env_file") or []
    declared = [declared] if isinstance(declared, str | dict) else list(declared)
    paths = [(docker.compose_file.parent / (d["path"] if isinstance(d, dict) else d)).resolve()
             for d in declared]
    wanted, _ = rollback_env_file(config)
    if wanted is None or wanted.resolve() not in paths:
        return _result("compose-env-file", False, f"service {service_name} in "
                       f"{docker.compose_file} does not load {wanted} as env_file: add "
                       f"`env_file: {wanted.name if wanted else '.env.afo'}` to it "
                       "(runbook 4.3)", declared=[str(p) for p in paths])
    return _result("compose-env-file", True, f"service {service_name} loads {wanted}")


CHECKS: dict[str, Callable[[RunbookConfig], CheckResult]] = {
    "env-file": env_file,
    "start-command": start_command,
    "writable-folders": writable_folders,
    "compose-env-file": compose_env_file,
}
