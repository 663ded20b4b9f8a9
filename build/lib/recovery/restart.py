"""Runbook 3.2, service restart (general problems), and the two restarts that wait for
something first:

    restart            `docker compose restart afo-core`, or restart the process directly
    logs-then-restart  a crashed container: read its logs (4.1) into the evidence, then restart
    review-restart     a silent SSE stream (priority: within 5 min): watch it for the grace
                       period (`[recovery] review_grace`, default 300 s) and restart only if
                       it is still silent
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable

import pytest

from afo_runbook.logs import read_file
from recovery.context import RecoveryContext
from recovery.steps import ActionResult, StepFailed

LOG_BYTES = 256 * 1024


def restart(context: RecoveryContext, action: str = "restart") -> ActionResult:
    recovery = context.recovery
    if recovery.mode == "docker":
        from recovery.containers import restart_container

        docker = recovery.docker
        assert docker is not None
        try:
            client = context.docker_client()
        except Exception as exc:  # noqa: BLE001 - Docker unreachable is a failed action
            return ActionResult(action, docker.container,
                                error=f"Docker unreachable: {exc}").finish(False)
        try:
            result = restart_container(client, docker.container, ready_url=docker.ready_url,
                                       timeout=docker.ready_timeout)
        finally:
            client.close()
        result.action = action
        return result
    from recovery.process import start_detached, stop_tracked, wait_ready

    process = recovery.process
    assert process is not None
    argv = shlex.split(process.start)
    result = ActionResult(action, process.start)
    try:
        stop_tracked(result, process.pidfile, argv, process.stop_timeout)
        proc = start_detached(result, argv, cwd=process.cwd, env_file=process.env_file,
                              log_file=process.log_file, pidfile=process.pidfile)
        wait_ready(result, process.ready_url, process.ready_timeout, proc, process.log_file)
    except StepFailed:
        return result.finish(False)
    return result.finish(True)


def logs_then_restart(context: RecoveryContext) -> ActionResult:
    """4.1 first, so the restart does not wash away the evidence of the crash."""
    recovery = context.recovery
    logs: dict[str, object] = {}
    began = time.time()
    if recovery.mode == "docker":
        logs = _container_logs(context)
    elif recovery.process is not None:
        logs = read_file(recovery.process.log_file, LOG_BYTES).evidence()
    read_s = time.time() - began
    context.evidence["logs"] = context.redactor.data(logs)
    result = restart(context, action="logs-then-restart")
    result.details["logs"] = context.evidence["logs"]
    result.details["logs_read_s"] = round(read_s, 3)
    return result


def _container_logs(context: RecoveryContext) -> dict[str, object]:
    from afo_runbook.probes.docker import find, read_logs

    docker = context.recovery.docker
    assert docker is not None
    containers = context.config.containers
    since = containers.logs_since if containers else 3600
    try:
        client = context.docker_client()
    except Exception as exc:  # noqa: BLE001
        return {"problem": f"Docker unreachable: {exc}"}
    try:
        ids = find(client, docker.container)
        if not ids:
            return {"problem": f"no container {docker.container}"}
        return read_logs(client, ids[0], since_s=since, max_bytes=LOG_BYTES).evidence()
    finally:
        client.close()


def review_restart(context: RecoveryContext) -> ActionResult:
    from afo_runbook.observe import Deadline, check_sse

    sse = context.config.sse
    grace = context.recovery.review_grace
    result = ActionResult("review-restart", sse.url if sse else "sse")
    if sse is None:
        return restart(context, action="review-restart")
    with result.step(f"watch the stream for up to {grace:g} s") as step:
        ends = time.monotonic() + grace
        looks = 0
        while True:
            looks += 1
            window = max(0.5, min(sse.window, ends - time.monotonic()))
            seen = check_sse(sse, context.config, Deadline.after(window + 5))
            if seen.ok:
                step.detail = f"the stream came back by itself ({seen.message}); no restart"
                result.details["restarted"] = False
                return result.finish(True)
            if time.monotonic() >= ends:
                step.detail = f"still silent after {grace:g} s ({looks} looks): {seen.message}"
                break
    restarted = restart(context, action="review-restart")
    result.steps += restarted.steps
    result.error = restarted.error
    result.details["restarted"] = True
    return result.finish(restarted.ok)


HANDLERS: dict[str, Callable[[RecoveryContext], ActionResult]] = {
    "restart": restart,
    "logs-then-restart": logs_then_restart,
    "review-restart": review_restart,
}


@pytest.hookimpl
def pytest_runbook_recover(action: str, context: RecoveryContext) -> ActionResult | None:
    handler = HANDLERS.get(action)
    return handler(context) if handler else None


@pytest.fixture
def restart_action(runbook) -> Callable[[], ActionResult]:  # type: ignore[no-untyped-def]
    """Runbook 3.2 for this run's config, as a callable: `restart_action().ok`."""
    return lambda: restart(RecoveryContext(runbook.config, runbook.secret, runbook.redactor))
