"""Runbook 1.4 against real containers: `check_container` / `plan_containers` directly, and the
suite run as a user runs it (`pytest -m containers --runbook-config ... --runbook-json ...`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from afo_runbook.config import ContainersConfig, load_config
from afo_runbook.containers import check_container, plan_containers
from afo_runbook.observe import CheckResult, Deadline
from afo_runbook.refstack.docker_stack import COMPOSE_SERVICE_LABEL, DockerStack
from afo_runbook.refstack.network import free_ports
from afo_runbook.refstack.runbook_toml import render_runbook_toml
from afo_runbook.refstack.waiting import wait_until

pytestmark = pytest.mark.timeout(90)

BUDGET = 10
NO_DOCKER = "unix:///nonexistent/afo-test/docker.sock"


def check(name: str, config: ContainersConfig) -> CheckResult:
    return check_container(name, config, BUDGET, Deadline.after(60))


def docker_health(client: docker.DockerClient, container_id: str) -> str | None:
    state = client.api.inspect_container(container_id)["State"]
    return (state.get("Health") or {}).get("Status")


def green_config(stack: DockerStack) -> ContainersConfig:
    names = tuple(stack.container_names())
    ports = {stack.container_name(s): (stack.port_mapping(s),) for s in stack.services}
    return ContainersConfig(names=names, required=True, ports=ports)


# ----------------------------------------------------------------------------- green


def test_a_healthy_stack_is_green(green_stack: DockerStack, tmp_path: Path) -> None:
    path = tmp_path / "runbook.toml"
    path.write_text(render_runbook_toml(green_stack))
    config = load_config(path)
    jobs = plan_containers(config, Deadline.after(60))
    assert sorted(jobs) == sorted(f"containers[{n}]" for n in green_stack.container_names())
    for planned in jobs.values():
        # plan_containers gives {key: (seconds needed, job)} (older: {key: job})
        job = planned[1] if isinstance(planned, tuple) else planned
        result = job()
        assert result.ok, result.message
        assert "(healthy)" in result.evidence["docker_ps"]
        assert "127.0.0.1:" in result.evidence["docker_ps"]


def test_the_suite_is_green_on_a_healthy_docker_stack(
    green_stack: DockerStack, write_toml: Callable[[str], Path], run_runbook: Callable[..., Any],
) -> None:
    """All of section 1 (health, guard, SSE, containers) as a user runs it."""
    run = run_runbook(write_toml(render_runbook_toml(green_stack)), "-m", "observe")
    checks = run.checks()
    assert run.rc == 0, run.output[-3000:]
    assert run.verdict["decision"] == "monitor"
    containers = [c for c in checks.values() if c["group"] == "containers"]
    assert len(containers) == 3
    assert {c["outcome"] for c in checks.values()} == {"passed"}


# ----------------------------------------------------------------------------- broken


def test_a_stopped_container_is_container_exited_with_its_logs(
    make_docker_stack: Callable[..., DockerStack], write_toml: Callable[[str], Path],
    run_runbook: Callable[..., Any],
) -> None:
    stack = make_docker_stack(services=["aux"])
    stack.start()
    stack.set_fault("aux", "down")  # docker stop: the container stays, Exited
    name = stack.container_name("aux")

    result = check(name, green_config(stack))
    assert result.symptom == "container-exited"
    assert f"{name} is exited" in result.message
    assert any("aux starting" in line for line in result.evidence["logs"][name]["tail"])

    run = run_runbook(write_toml(render_runbook_toml(stack)), "-m", "containers")
    record = run.checks()[f"containers[{name}]"]
    assert run.rc == 1
    assert (record["outcome"], record["symptom"]) == ("failed", "container-exited")
    logs = record["evidence"]["logs"][name]
    assert logs["lines"] > 0
    assert any("aux starting" in line for line in logs["tail"])
    assert "Exited" in record["evidence"]["docker_ps"]
    assert run.verdict["symptoms"] == ["container-exited"]


def test_a_crash_looping_container_is_container_exited(
    docker_client: docker.DockerClient, make_container: Callable[..., str],
) -> None:
    container = make_container(["/bin/sh", "-c", "echo 'error: cannot open the database'; exit 1"],
                               restart_policy={"Name": "always"})
    wait_until(lambda: docker_client.api.inspect_container(container)["RestartCount"] >= 1,
               timeout=20, message="the container did not restart")
    name = docker_client.api.inspect_container(container)["Name"].lstrip("/")

    result = check(name, ContainersConfig(names=(name,)))
    assert result.symptom == "container-exited"
    assert any(word in result.message for word in ("restarting", "exited", "restarted")), \
        result.message
    assert result.evidence["containers"][0]["restart_count"] >= 1
    assert "error: cannot open the database" in result.evidence["logs"][name]["error_lines"]


def test_a_missing_port_mapping_is_ports_wrong(green_stack: DockerStack) -> None:
    name = green_stack.container_name("aux")
    expected = green_stack.port_mapping("aux")
    spare = free_ports(1)[0]

    missing = ContainersConfig(names=(name,), ports={name: (expected, f"{spare}:9999/tcp")})
    result = check(name, missing)
    assert result.symptom == "ports-wrong"
    assert f"missing {spare}:9999/tcp" in result.message

    moved = ContainersConfig(names=(name,), ports={name: (f"{spare}:8001/tcp",)})
    result = check(name, moved)
    assert result.symptom == "ports-wrong"
    assert f"unexpected {expected}" in result.message

    wrong_ip = ContainersConfig(names=(name,), ports={name: (f"0.0.0.1:{expected}",)})
    assert check(name, wrong_ip).symptom == "ports-wrong"
    bound_ip = ContainersConfig(names=(name,), ports={name: (f"127.0.0.1:{expected}",)})
    assert check(name, bound_ip).ok


def test_an_unhealthy_healthcheck_is_container_exited(
    make_docker_stack: Callable[..., DockerStack], docker_client: docker.DockerClient,
) -> None:
    stack = make_docker_stack(services=["aux"])
    stack.start()
    container = stack.container_id("aux")
    assert container is not None
    stack.set_fault("aux", "health-500")  # live, through the mounted faults.json
    wait_until(lambda: docker_health(docker_client, container) == "unhealthy", timeout=15,
               message="the healthcheck did not turn unhealthy")

    result = check(stack.container_name("aux"), green_config(stack))
    assert result.symptom == "container-exited"
    assert "unhealthy" in result.message
    assert any("500" in entry for entry in result.evidence["containers"][0]["health_log"])
    assert result.evidence["logs"][stack.container_name("aux")]["error_count"] >= 1

    stack.clear_fault("aux")
    wait_until(lambda: docker_health(docker_client, container) == "healthy", timeout=15)
    assert check(stack.container_name("aux"), green_config(stack)).ok


def test_a_compose_service_name_resolves_via_its_label(
    docker_client: docker.DockerClient, make_container: Callable[..., str],
) -> None:
    service = f"afo-svc-{free_ports(1)[0]}"
    container = make_container(["/bin/sleep", "300"], name=f"afo-refstack-{service}-1",
                               labels={COMPOSE_SERVICE_LABEL: service})
    wait_until(lambda: docker_client.api.inspect_container(container)["State"]["Running"], 10)

    result = check(service, ContainersConfig(names=(service,)))
    assert result.ok, result.message
    assert result.evidence["containers"][0]["name"] == f"afo-refstack-{service}-1"


# ----------------------------------------------------------------------------- no Docker


def test_docker_unreachable_skips_unless_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_DOCKER)
    skipped = check("afo-core", ContainersConfig(names=("afo-core",), required=False))
    assert skipped.outcome == "skipped"
    assert "Docker unavailable" in (skipped.skipped or "")
    failed = check("afo-core", ContainersConfig(names=("afo-core",), required=True))
    assert (failed.outcome, failed.symptom) == ("failed", "service-down")
    assert "unreachable" in failed.message


@pytest.mark.parametrize("required", [False, True])
def test_docker_unreachable_through_the_suite(
    required: bool, write_toml: Callable[[str], Path], run_runbook: Callable[..., Any],
) -> None:
    config = write_toml(f'[containers]\nnames = ["afo-core"]\nrequired = {str(required).lower()}\n')
    run = run_runbook(config, "-m", "containers", env={"DOCKER_HOST": NO_DOCKER})
    record = run.checks()["containers[afo-core]"]
    if required:
        assert run.rc == 1
        assert (record["outcome"], record["symptom"]) == ("failed", "service-down")
    else:
        assert run.rc == 0, run.output[-2000:]
        assert record["outcome"] == "skipped"
        assert "Docker unavailable" in run.output  # the reason, in the terminal output
        assert "no Docker socket" in record["message"]
