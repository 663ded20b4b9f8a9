"""Runbook 3.1, rollback first (security problems), the EXP_007 drill without its sleeps:

    1. stop the current server          -> stop exactly the tracked pid (process mode)
    2. reset AFO_INTERNAL_SECRET        -> the environment comes from the env file
    3. clean restart, `sleep 30`        -> start detached, poll the ready URL
    4. verify health + guarded URL      -> the ready URL, then the guard with the secret

In Docker mode a `docker restart` keeps the old environment and cannot bring back a missing
secret, so the container is recreated with its env file instead.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

import pytest

from afo_runbook.secret import SecretUnavailable, load_secret
from recovery.context import RecoveryContext
from recovery.steps import ActionResult, StepFailed


def rollback(context: RecoveryContext) -> ActionResult:
    if context.recovery.mode == "docker":
        return _rollback_container(context)
    return _rollback_process(context)


def _rollback_process(context: RecoveryContext) -> ActionResult:
    from recovery.process import start_detached, stop_tracked, wait_ready

    process = context.recovery.process
    assert process is not None  # the config guarantees it for mode = "process"
    argv = shlex.split(process.start)
    result = ActionResult("rollback", process.start)
    try:
        stop_tracked(result, process.pidfile, argv, process.stop_timeout)
        proc = start_detached(result, argv, cwd=process.cwd, env_file=process.env_file,
                              log_file=process.log_file, pidfile=process.pidfile)
        wait_ready(result, process.ready_url, process.ready_timeout, proc, process.log_file)
        verify_guard(result, context)
    except StepFailed:
        return result.finish(False)
    return result.finish(True)


def _rollback_container(context: RecoveryContext) -> ActionResult:
    from recovery.containers import recreate_container

    docker = context.recovery.docker
    assert docker is not None
    try:
        client = context.docker_client()
    except Exception as exc:  # noqa: BLE001 - Docker unreachable is a failed action
        result = ActionResult("rollback", docker.container, error=f"Docker unreachable: {exc}")
        return result.finish(False)
    try:
        guard = context.config.guard
        result = recreate_container(client, docker.container, env_file=docker.env_file,
                                    secret_env=guard.secret_env if guard else None,
                                    ready_url=docker.ready_url, timeout=docker.ready_timeout)
        result.action = "rollback"
        if result.ok:
            try:
                verify_guard(result, context)
            except StepFailed:
                return result.finish(False)
        return result
    finally:
        client.close()


def verify_guard(result: ActionResult, context: RecoveryContext) -> None:
    """Step 4: the guarded URL with the secret (from the env file, as the service has it)."""
    from afo_runbook.observe import Deadline, check_guard

    guard = context.config.guard
    if guard is None:
        return
    with result.step("verify the guard accepts the secret") as step:
        secret = context.secret
        if secret is None:
            try:
                secret = load_secret(guard.secret_env, guard.env_file)
            except SecretUnavailable as exc:
                raise StepFailed(str(exc)) from None
        seen = check_guard("right-secret", guard, secret, context.config,
                           Deadline.after(context.config.budgets.guard))
        step.detail = seen.message
        if not seen.ok:
            raise StepFailed(f"after the restart: {seen.message}")


@pytest.hookimpl
def pytest_runbook_recover(action: str, context: RecoveryContext) -> ActionResult | None:
    return rollback(context) if action == "rollback" else None


@pytest.fixture
def rollback_action(runbook) -> Callable[[], ActionResult]:  # type: ignore[no-untyped-def]
    """Runbook 3.1 for this run's config, as a callable: `rollback_action().ok`."""
    return lambda: rollback(RecoveryContext(runbook.config, runbook.secret, runbook.redactor))
