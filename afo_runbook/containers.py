"""Runbook 1.4 (container status) and 4.1 (log analysis) as checks over the docker SDK.

    docker ps --format 'table {{.Names}}\t{{.Status}}\t{{.Ports}}'   # all Up, ports right
    docker logs --since 1h afo-core 2>&1 | grep -i error           # 4.1, for what failed

A container that is not running (exited, dead, paused, created, restarting), keeps restarting,
or whose healthcheck is not healthy is `container-exited` (read the logs, then restart);
published ports other than the configured ones are `ports-wrong`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from afo_runbook.config import ContainersConfig, RunbookConfig
from afo_runbook.probes.docker import (
    ContainerState,
    DockerUnavailable,
    connect,
    find,
    inspect,
    read_logs,
)
from afo_runbook.results import PROBE_ERROR, CheckResult, Deadline

POLL = 0.2
RESTART_WATCH = 1.5  # seconds to watch a container that has restarted before


def plan_containers(config: RunbookConfig, deadline: Deadline
                    ) -> dict[str, tuple[float, Callable[[], CheckResult]]]:
    """{key: (seconds the check may need, the check)} for every configured container."""
    containers = config.containers
    if containers is None:
        return {}
    budget = config.budgets.containers
    # connect + inspect (half the budget), a starting healthcheck's grace, a restart watch
    needs = budget / 2 + containers.health_grace + RESTART_WATCH
    return {f"containers[{name}]": (needs, _job(name, containers, budget, deadline))
            for name in containers.names}


def _job(name: str, containers: ContainersConfig, budget: float,
         deadline: Deadline) -> Callable[[], CheckResult]:
    return lambda: check_container(name, containers, budget, deadline)


def check_container(name: str, containers: ContainersConfig, budget: float,
                    deadline: Deadline) -> CheckResult:
    key = f"containers[{name}]"
    timeout = deadline.cap(budget / 2)
    ends = time.monotonic() + timeout
    try:
        client = connect(timeout)
    except DockerUnavailable as exc:
        evidence = {"docker": "unreachable", "error": str(exc)}
        if not containers.required:
            return CheckResult(key, "containers", False, None, f"Docker unavailable: {exc}",
                               evidence, skipped=f"Docker unavailable ({exc}); "
                               "[containers] required = false")
        # No permission on the socket is our setup, not the engine or the container failing.
        symptom = PROBE_ERROR if "permission denied" in str(exc) else "service-down"
        return CheckResult(key, "containers", False, symptom,
                           f"Docker unreachable, cannot see {name}: {exc}", evidence)
    try:
        return _check(client, name, containers, ends)
    finally:
        client.close()


def _check(client: Any, name: str, containers: ContainersConfig, ends: float) -> CheckResult:
    key = f"containers[{name}]"
    states = [s for s in (inspect(client, cid) for cid in find(client, name)) if s]
    if not states:
        evidence = {"docker_ps": _table([f"{name}\t(no such container)\t"])}
        return CheckResult(key, "containers", False, "container-exited",
                           f"no container named {name} (nor a compose service of that name)",
                           evidence)
    states = _settle(client, states, containers.health_grace, ends)
    problems: list[str] = []
    symptom = None
    for first, last in states:
        problem = _state_problem(first, last)
        if problem:
            problems.append(problem)
            symptom = "container-exited"
    expected = set(containers.ports.get(name, ()))
    running = [last for _, last in states if last.status == "running"]
    if expected and running:  # a stopped container publishes nothing: that is not drift
        problem = _ports_problem(expected, set().union(*(s.ports for s in running)))
        if problem:
            problems.append(problem)
            symptom = symptom or "ports-wrong"
    evidence: dict[str, Any] = {
        "docker_ps": _table([last.ps_row() for _, last in states]),
        "containers": [_state_evidence(last) for _, last in states],
    }
    if expected:
        evidence["expected_ports"] = sorted(expected)
    if problems or containers.logs == "always":
        evidence["logs"] = {last.name: read_logs(client, last.id, since_s=containers.logs_since,
                                                 max_bytes=containers.log_bytes).evidence()
                            for _, last in states}
    if problems:
        return CheckResult(key, "containers", False, symptom, "; ".join(problems), evidence)
    summary = ", ".join(f"{last.name} {last.ps_status}" for _, last in states)
    return CheckResult(key, "containers", True, None, summary, evidence)


def _norm(mapping: str) -> str:
    """`8010:8010` and `8010:8010/tcp` are the same mapping."""
    return mapping if "/" in mapping else f"{mapping}/tcp"


def _split_mapping(mapping: str) -> tuple[str | None, str]:
    """`127.0.0.1:8010:8010/tcp` -> ("127.0.0.1", "8010:8010/tcp"); `[::1]:8010:...` -> ("[::1]",
    ...); `8010:8010/tcp` -> (None, "8010:8010/tcp")."""
    if mapping.startswith("["):
        ip, _, rest = mapping.partition("]:")
        return f"{ip}]", rest
    parts = mapping.split(":")
    if len(parts) == 3:
        return parts[0], f"{parts[1]}:{parts[2]}"
    return None, mapping


def _ports_problem(expected: set[str], published: set[str]) -> str | None:
    """Published `host:container/proto` must equal the expected set; an expected mapping
    that names a host IP (`127.0.0.1:8010:8010/tcp`, `[::1]:8010:8010/tcp`) must also be bound
    to that IP."""
    want = {_norm(p) for p in expected}
    plain_want = {_split_mapping(p)[1] for p in want}
    plain_have = {p for p in published if _split_mapping(p)[0] is None}
    missing = sorted(plain_want - plain_have)
    missing += sorted(p for p in want if _split_mapping(p)[0] is not None
                      and p not in published and _split_mapping(p)[1] in plain_have)
    extra = sorted(plain_have - plain_want)
    if not missing and not extra:
        return None
    parts = [f"missing {', '.join(missing)}" if missing else "",
             f"unexpected {', '.join(extra)}" if extra else ""]
    return "ports differ: " + "; ".join(p for p in parts if p)


def _settle(client: Any, states: list[ContainerState], grace: float,
            ends: float) -> list[tuple[ContainerState, ContainerState]]:
    """Watch briefly: a `starting` healthcheck gets its grace, a container that has restarted
    before is watched for another restart. Returns (first look, last look) pairs."""
    first = {s.id: s for s in states}
    last = dict(first)
    needs_watch = any(s.restart_count > 0 for s in states)
    watch_until = min(ends, time.monotonic() + (RESTART_WATCH if needs_watch else 0))
    grace_until = min(ends, time.monotonic() + grace)
    while True:
        starting = any(s.health == "starting" for s in last.values())
        now = time.monotonic()
        if not ((starting and now < grace_until) or now < watch_until):
            break
        if any(_state_problem(first[i], s) for i, s in last.items() if s.health != "starting"):
            break
        time.sleep(POLL)  # observing a state over time, not waiting for a result
        for container_id in list(last):
            again = inspect(client, container_id)
            if again is not None:
                last[container_id] = again
    return [(first[i], last[i]) for i in first]


def _state_problem(first: ContainerState, last: ContainerState) -> str | None:
    if last.status == "restarting":
        return f"{last.name} keeps restarting ({last.restart_count} restarts)"
    if last.status != "running":
        code = f", exit code {last.exit_code}" if last.exit_code is not None else ""
        return f"{last.name} is {last.status}{code}"
    if last.restart_count > first.restart_count:
        return (f"{last.name} restarted while we looked "
                f"({first.restart_count} -> {last.restart_count} restarts)")
    if last.health == "unhealthy":
        return f"{last.name} healthcheck is unhealthy"
    if last.health == "starting":
        return f"{last.name} healthcheck still starting after the grace period"
    return None


def _state_evidence(state: ContainerState) -> dict[str, Any]:
    return {
        "name": state.name,
        "id": state.id,
        "image": state.image,
        "status": state.status,
        "ps_status": state.ps_status,
        "exit_code": state.exit_code,
        "restart_count": state.restart_count,
        "started_at": state.started_at,
        "health": state.health,
        "health_log": state.health_log,
        "ports": sorted(state.ports),
    }


def _table(rows: list[str]) -> str:
    return "\n".join(["NAMES\tSTATUS\tPORTS", *rows])
