"""Runbook 1.4's judges: which container state is `container-exited`, which ports are
`ports-wrong`, and what one container check reports.

The state and port rules are fed `ContainerState`s directly. `_check` needs an engine to
ask; no Docker engine runs in the unit tests (they are in-process and fast; the real engine
is tests/docker's), so `Engine` below answers the three Docker API calls the probe makes
(`containers`, `inspect_container`, `logs`) with what a real engine returns for them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from docker.errors import NotFound

from afo_runbook.config import ContainersConfig
from afo_runbook.containers import _check, _norm, _ports_problem, _state_problem
from afo_runbook.probes.docker import COMPOSE_SERVICE_LABEL, ContainerState

PORT = "8010:8010/tcp"


def state(status: str = "running", *, restarts: int = 0, health: str | None = None,
          exit_code: int | None = None, ports: set[str] | None = None) -> ContainerState:
    return ContainerState(id="0123456789ab", name="afo-core", image="afo:1", status=status,
                          exit_code=exit_code, restart_count=restarts,
                          started_at="2026-11-26T10:00:00Z", health=health, health_log=[],
                          ports={PORT} if ports is None else ports, ps_status="Up 3 minutes",
                          ps_ports="0.0.0.0:8010->8010/tcp")


# -- the state of one container ------------------------------------------------------------


@pytest.mark.parametrize("health", [None, "healthy"])
def test_a_running_container_is_fine(health: str | None) -> None:
    assert _state_problem(state(restarts=2), state(restarts=2, health=health)) is None


@pytest.mark.parametrize(("status", "exit_code", "problem"), [
    ("exited", 137, "afo-core is exited, exit code 137"),
    ("exited", 0, "afo-core is exited, exit code 0"),
    ("dead", None, "afo-core is dead"),
    ("paused", None, "afo-core is paused"),
    ("created", None, "afo-core is created"),
])
def test_a_container_that_is_not_running(status: str, exit_code: int | None,
                                         problem: str) -> None:
    assert _state_problem(state(), state(status, exit_code=exit_code)) == problem


def test_a_restarting_container_says_how_often() -> None:
    found = _state_problem(state(restarts=3), state("restarting", restarts=5, exit_code=1))
    assert found == "afo-core keeps restarting (5 restarts)"


def test_a_restart_while_we_looked_is_a_crash() -> None:
    """Up now, but its restart count rose between the first and the last look."""
    found = _state_problem(state(restarts=1), state(restarts=2, health="healthy"))
    assert found == "afo-core restarted while we looked (1 -> 2 restarts)"


@pytest.mark.parametrize(("health", "problem"), [
    ("unhealthy", "afo-core healthcheck is unhealthy"),
    ("starting", "afo-core healthcheck still starting after the grace period"),
])
def test_a_healthcheck_that_is_not_healthy(health: str, problem: str) -> None:
    assert _state_problem(state(), state(health=health)) == problem


# -- published ports -------------------------------------------------------------------------


def test_ports_are_normalised_to_tcp() -> None:
    assert _norm("8010:8010") == PORT
    assert _norm("53:53/udp") == "53:53/udp"
    assert _ports_problem({"8010:8010"}, {PORT}) is None


def test_missing_and_unexpected_ports_are_both_named() -> None:
    assert _ports_problem({PORT, "9000:9000/tcp"}, {PORT}) == \
        "ports differ: missing 9000:9000/tcp"
    assert _ports_problem({PORT}, {PORT, "8011:8010/tcp"}) == \
        "ports differ: unexpected 8011:8010/tcp"
    assert _ports_problem({"8010:8010", "9001:9001"}, {"9002:9002/tcp", "9003:9003/tcp"}) == (
        "ports differ: missing 8010:8010/tcp, 9001:9001/tcp; "
        "unexpected 9002:9002/tcp, 9003:9003/tcp")


def test_a_mapping_bound_to_an_ip_must_be_bound_to_that_ip() -> None:
    """`127.0.0.1:8010:8010` keeps the api off the network; published on 0.0.0.0 it is
    reachable from anywhere: drift, although the port numbers agree."""
    bound = "127.0.0.1:8010:8010/tcp"
    assert _ports_problem({"127.0.0.1:8010:8010"}, {PORT, bound}) is None
    assert _ports_problem({bound}, {PORT}) == f"ports differ: missing {bound}"
    assert _ports_problem({bound}, {"9999:9999/tcp"}) == (
        "ports differ: missing 8010:8010/tcp; unexpected 9999:9999/tcp")


def test_a_mapping_bound_to_ipv6_loopback_must_be_bound_there() -> None:
    assert _ports_problem({"[::1]:8010:8010/tcp"}, {PORT}) == \
        "ports differ: missing [::1]:8010:8010/tcp"


def test_an_expected_wildcard_mapping_accepts_any_binding() -> None:
    assert _ports_problem({PORT}, {PORT, "127.0.0.1:8010:8010/tcp"}) is None


# -- one container check, against an engine's answers ----------------------------------------


@dataclass
class Box:
    """One container as the Docker API describes it."""

    id: str
    name: str
    status: str = "running"
    exit_code: int = 0
    restarts: int = 0
    health: str | None = None
    ports: dict[str, list[dict[str, str]]] = field(
        default_factory=lambda: {"8010/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8010"}]})
    labels: dict[str, str] = field(default_factory=dict)
    log: bytes = b"heartbeat 1\nERROR: boom\nheartbeat 2\n"
    later: dict[str, Any] = field(default_factory=dict)  # how it looks from the 2nd look on
    looks: int = 0

    def look(self) -> dict[str, Any]:
        self.looks += 1
        if self.looks == 2:
            for name, value in self.later.items():
                setattr(self, name, value)
        return self.attrs()

    def attrs(self) -> dict[str, Any]:
        state: dict[str, Any] = {"Status": self.status, "ExitCode": self.exit_code,
                                 "StartedAt": "2026-11-26T10:00:00Z"}
        if self.health:
            state["Health"] = {"Status": self.health, "Log": []}
        return {"Id": self.id, "Name": f"/{self.name}", "State": state,
                "RestartCount": self.restarts, "Config": {"Image": "afo:1",
                                                          "Labels": self.labels},
                "NetworkSettings": {"Ports": self.ports}}

    def listing(self) -> dict[str, Any]:
        up = "Up 3 minutes" if self.status == "running" else "Exited (1) 2 seconds ago"
        return {"Id": self.id, "Status": up, "Ports": []}


class Api:
    def __init__(self, *boxes: Box) -> None:
        self.boxes = {box.id: box for box in boxes}
        self.logs_read: list[str] = []

    def containers(self, all: bool = False, filters: dict[str, str] | None = None
                   ) -> list[dict[str, Any]]:
        assert all, "stopped containers must be listed too"
        filters = filters or {}
        found = list(self.boxes.values())
        if "name" in filters:
            found = [b for b in found if re.search(filters["name"], f"/{b.name}")]
        if "label" in filters:
            key, _, value = filters["label"].partition("=")
            found = [b for b in found if b.labels.get(key) == value]
        if "id" in filters:
            found = [b for b in found if b.id.startswith(filters["id"])]
        return [b.listing() for b in found]

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        for box in self.boxes.values():
            if box.id.startswith(container_id):
                return box.look()
        raise NotFound(f"No such container: {container_id}")

    def logs(self, container_id: str, **options: Any) -> Iterator[bytes]:
        box = self.boxes[container_id] if container_id in self.boxes else next(
            b for b in self.boxes.values() if b.id.startswith(container_id))
        self.logs_read.append(box.name)
        return iter([box.log])


class Engine:
    def __init__(self, *boxes: Box) -> None:
        self.api = Api(*boxes)


def config(**options: Any) -> ContainersConfig:
    options.setdefault("names", ("afo-core",))
    return ContainersConfig(**options)


def judge(engine: Engine, name: str = "afo-core", **options: Any) -> Any:
    return _check(engine, name, config(**options), time.monotonic() + 5)


def test_a_healthy_container_passes_without_reading_logs() -> None:
    engine = Engine(Box("c1" * 6, "afo-core", health="healthy"))
    result = judge(engine, ports={"afo-core": ("8010:8010",)})
    assert (result.key, result.group, result.ok, result.symptom) == (
        "containers[afo-core]", "containers", True, None)
    assert result.message == "afo-core Up 3 minutes"
    assert result.evidence["docker_ps"] == "NAMES\tSTATUS\tPORTS\nafo-core\tUp 3 minutes\t"
    assert result.evidence["expected_ports"] == ["8010:8010"]  # as configured
    [seen] = result.evidence["containers"]
    assert (seen["name"], seen["status"], seen["health"], seen["ports"]) == (
        "afo-core", "running", "healthy", [PORT])
    assert "logs" not in result.evidence
    assert engine.api.logs_read == []


def test_logs_always_means_always() -> None:
    engine = Engine(Box("c1" * 6, "afo-core"))
    result = judge(engine, logs="always")
    assert result.ok
    assert result.evidence["logs"]["afo-core"]["heartbeat_lines"] == 2
    assert "expected_ports" not in result.evidence


def test_no_such_container_is_container_exited() -> None:
    result = judge(Engine(Box("c1" * 6, "afo-aux")))
    assert (result.key, result.group, result.ok, result.symptom) == (
        "containers[afo-core]", "containers", False, "container-exited")
    assert result.message == "no container named afo-core (nor a compose service of that name)"
    assert result.evidence == {
        "docker_ps": "NAMES\tSTATUS\tPORTS\nafo-core\t(no such container)\t"}


def test_an_exited_container_fails_with_its_logs() -> None:
    engine = Engine(Box("c1" * 6, "afo-core", status="exited", exit_code=1, ports={}))
    result = judge(engine, ports={"afo-core": (PORT,)})
    assert (result.key, result.group, result.ok, result.symptom) == (
        "containers[afo-core]", "containers", False, "container-exited")
    assert result.message == "afo-core is exited, exit code 1"  # a stopped one publishes nothing
    logs = result.evidence["logs"]["afo-core"]
    assert (logs["error_count"], logs["heartbeat_lines"]) == (1, 2)


def test_wrong_ports_on_a_running_container_are_ports_wrong() -> None:
    engine = Engine(Box("c1" * 6, "afo-core",
                        ports={"8010/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18010"}]}))
    result = judge(engine, ports={"afo-core": (PORT,)})
    assert (result.ok, result.symptom) == (False, "ports-wrong")
    assert result.message == f"ports differ: missing {PORT}; unexpected 18010:8010/tcp"
    assert engine.api.logs_read == ["afo-core"]


def test_a_crash_outranks_drift_among_a_services_replicas() -> None:
    """A compose service of two: one replica exited, the other published wrong ports."""
    label = {COMPOSE_SERVICE_LABEL: "api"}
    engine = Engine(
        Box("a1" * 6, "afo-api-1", status="exited", exit_code=2, labels=label, ports={}),
        Box("b2" * 6, "afo-api-2", labels=label,
            ports={"8010/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18010"}]}))
    result = judge(engine, "api", names=("api",), ports={"api": (PORT,)})
    assert result.symptom == "container-exited"
    assert result.message == ("afo-api-1 is exited, exit code 2; ports differ: missing "
                              f"{PORT}; unexpected 18010:8010/tcp")
    assert sorted(result.evidence["logs"]) == ["afo-api-1", "afo-api-2"]
    assert result.evidence["docker_ps"].splitlines()[1:] == [
        "afo-api-1\tExited (1) 2 seconds ago\t", "afo-api-2\tUp 3 minutes\t"]


def test_the_replicas_ports_are_judged_together() -> None:
    """Each replica publishes one of the expected mappings: together they are right."""
    label = {COMPOSE_SERVICE_LABEL: "api"}
    engine = Engine(
        Box("a1" * 6, "afo-api-1", labels=label),
        Box("b2" * 6, "afo-api-2", labels=label,
            ports={"8011/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8011"}]}))
    result = judge(engine, "api", names=("api",),
                   ports={"api": (PORT, "8011:8011/tcp")})
    assert (result.ok, result.message) == (True, "afo-api-1 Up 3 minutes, afo-api-2 Up 3 minutes")


def test_a_starting_healthcheck_gets_its_grace() -> None:
    """`starting` at the first look, `healthy` at the next: a pass, not a failure."""
    box = Box("c1" * 6, "afo-core", health="starting", later={"health": "healthy"})
    result = judge(Engine(box), health_grace=5)
    assert (result.ok, result.message) == (True, "afo-core Up 3 minutes")
    assert result.evidence["containers"][0]["health"] == "healthy"
    assert box.looks >= 2


def test_a_restart_seen_while_watching_is_a_crash() -> None:
    """A container that restarted before is watched; a further restart during the watch is
    `container-exited`, reported from the first and the last look."""
    box = Box("c1" * 6, "afo-core", restarts=1, later={"restarts": 2})
    result = judge(Engine(box))
    assert (result.ok, result.symptom) == (False, "container-exited")
    assert result.message == "afo-core restarted while we looked (1 -> 2 restarts)"
