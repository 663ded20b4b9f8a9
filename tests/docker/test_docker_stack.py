"""DockerStack: containers named like the deployment, labelled, healthchecked, with live
faults through the mounted state dir; stop() removes exactly its own; the CLI's --docker."""

from __future__ import annotations

import contextlib
import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
import requests

from afo_runbook.config import load_config
from afo_runbook.refstack.cli import main
from afo_runbook.refstack.docker_stack import (
    COMPOSE_PROJECT,
    COMPOSE_PROJECT_LABEL,
    COMPOSE_SERVICE_LABEL,
    STATE_DIR_LABEL,
    DockerStack,
)
from afo_runbook.refstack.image import OWNER, OWNER_LABEL, python_mounts
from afo_runbook.refstack.network import free_ports
from afo_runbook.refstack.runbook_toml import render_runbook_toml
from afo_runbook.refstack.services import PROBE_HEADER, SECRET_ENV, SERVICE_NAMES
from afo_runbook.refstack.stack import PortInUseError, StackAlreadyRunningError, StackError
from afo_runbook.refstack.waiting import wait_until

pytestmark = pytest.mark.timeout(90)


def test_containers_look_like_the_deployment(green_stack: DockerStack,
                                             docker_client: docker.DockerClient) -> None:
    suffix = green_stack.name_suffix
    assert green_stack.container_names() == [f"afo-core{suffix}", f"afo-aux{suffix}",
                                             f"afo-dashboard{suffix}"]
    mounts = {m.path for m in python_mounts(green_stack.python)}
    for service in SERVICE_NAMES:
        attrs = docker_client.api.inspect_container(green_stack.container_id(service))
        name = green_stack.container_name(service)
        assert attrs["Name"] == f"/{name}"
        assert attrs["State"]["Health"]["Status"] == "healthy"
        labels = attrs["Config"]["Labels"]
        assert labels[COMPOSE_SERVICE_LABEL] == name
        assert labels[COMPOSE_PROJECT_LABEL] == COMPOSE_PROJECT
        assert labels[OWNER_LABEL] == OWNER
        assert labels[STATE_DIR_LABEL] == str(green_stack.state_dir)
        host = attrs["HostConfig"]
        assert host["RestartPolicy"]["Name"] == "unless-stopped"
        port = green_stack.container_ports[service]
        assert host["PortBindings"] == {
            f"{port}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(green_stack.ports[service])}]}
        test = attrs["Config"]["Healthcheck"]["Test"]
        assert test[:2] == ["CMD", "/bin/wget"]
        assert PROBE_HEADER not in " ".join(test)  # a health-500 must make it unhealthy
        binds = {m["Destination"]: m["RW"] for m in attrs["Mounts"]}
        assert binds == {**dict.fromkeys(mounts, False), str(green_stack.state_dir): True}
        env_names = {item.split("=", 1)[0] for item in attrs["Config"]["Env"]}
        assert (SECRET_ENV in env_names) == (service == "api")
        response = requests.get(green_stack.health_url(service), timeout=5)
        assert response.status_code == 200


def test_live_faults_reach_the_containers(green_stack: DockerStack, secret: str) -> None:
    guard = green_stack.urls["api"] + "/api/revalidate/status"
    assert requests.get(guard, headers={"X-Internal-Secret": secret}, timeout=5).status_code == 200
    green_stack.set_fault("api", "guard-open")
    try:
        wait_until(lambda: requests.get(guard, timeout=5).status_code == 200, timeout=10,
                   message="guard-open did not reach the container")
    finally:
        green_stack.clear_fault("api")
    wait_until(lambda: requests.get(guard, timeout=5).status_code == 401, timeout=10)


def test_down_stops_the_container_and_clearing_it_starts_it(
    make_docker_stack: Callable[..., DockerStack], docker_client: docker.DockerClient,
) -> None:
    stack = make_docker_stack(services=["aux"])
    stack.start()
    first_id = stack.container_id("aux")
    stack.set_fault("aux", "down")
    assert stack.status()["aux"].state == "exited"
    stack.clear_fault("aux", "down")
    status = stack.status()["aux"]
    assert (status.state, status.docker_health, status.health) == ("running", "healthy", 200)
    assert stack.container_id("aux") == first_id  # the same container, started again


def test_stop_removes_exactly_its_own_containers(
    make_docker_stack: Callable[..., DockerStack], docker_client: docker.DockerClient,
) -> None:
    mine = make_docker_stack(services=["aux", "dashboard"])
    other = make_docker_stack(services=["aux"])
    mine.start()
    other.start()
    ids = [mine.container_id("aux"), mine.container_id("dashboard")]
    docker_client.api.remove_container(ids[0], force=True)  # one is gone already
    mine.stop()
    for container_id in ids:
        assert not docker_client.api.containers(all=True, filters={"id": container_id})
    assert other.is_running("aux")
    mine.stop()  # twice is fine


def test_start_refuses_a_second_stack_and_a_taken_port(
    make_docker_stack: Callable[..., DockerStack],
) -> None:
    first = make_docker_stack(services=["aux"])
    first.start()
    again = DockerStack(first.state_dir, ports=first.ports, services=["aux"],
                        name_suffix=first.name_suffix + "x", client=first.client)
    with pytest.raises(StackAlreadyRunningError, match="already exists"):
        again.start()
    taken = make_docker_stack(services=["aux"], ports={"aux": first.ports["aux"]})
    with pytest.raises(PortInUseError, match=str(first.ports["aux"])):
        taken.start()
    assert first.is_running("aux")


def test_a_crashing_service_fails_start_with_its_log(
    make_docker_stack: Callable[..., DockerStack], docker_client: docker.DockerClient,
) -> None:
    stack = make_docker_stack(services=["aux"], python="/no/such/python")
    with pytest.raises(StackError) as failure:
        stack.start(timeout=15)
    assert stack.container_name("aux") in str(failure.value)
    assert not docker_client.api.containers(
        all=True, filters={"name": f"^/{re.escape(stack.container_name('aux'))}$"})


@pytest.fixture
def cli_state_dir(tmp_path: Path) -> Iterator[Path]:
    """A state dir whose docker stack (if the CLI started one) is removed afterwards."""
    path = tmp_path / ".refstack"
    try:
        yield path
    finally:
        with contextlib.suppress(StackError):
            stack = DockerStack.load(path)
            stack.stop()
            stack.close()


def test_cli_docker_round_trip(cli_state_dir: Path, env_file: Path, secret: str,
                               docker_client: docker.DockerClient, base_image: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    ports = dict(zip(SERVICE_NAMES, free_ports(3), strict=True))
    sd = ["--state-dir", str(cli_state_dir)]
    suffix = f"-cli{free_ports(1)[0]}"
    argv = ["start", "--docker", *sd, "--env-file", str(env_file), f"--name-suffix={suffix}",
            "--ports", ",".join(f"{k}={v}" for k, v in ports.items())]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"container afo-core{suffix}" in out
    assert secret not in out

    assert main(["status", *sd]) == 0
    out = capsys.readouterr().out
    assert out.count("state=running") == 3
    assert out.count("docker-health=healthy") == 3

    assert main(["fault", "aux", "health-500", *sd]) == 0
    assert main(["fault", "aux", "--clear", *sd]) == 0

    output = cli_state_dir / "runbook.toml"
    assert main(["config", *sd, "--output", str(output)]) == 0
    text = output.read_text()
    assert secret not in text
    raw = tomllib.loads(text)
    names = [f"afo-core{suffix}", f"afo-aux{suffix}", f"afo-dashboard{suffix}"]
    assert raw["containers"]["names"] == names
    assert raw["containers"]["required"] is True
    assert raw["containers"]["ports"][f"afo-core{suffix}"] == [f"{ports['api']}:8010/tcp"]
    assert raw["recovery"]["mode"] == "docker"
    config = load_config(output)  # the suite's own parser accepts it
    assert config.containers is not None
    assert config.containers.names == tuple(names)
    assert config.recovery is not None
    assert config.recovery.docker is not None
    assert config.recovery.docker.container == f"afo-core{suffix}"
    assert config.recovery.docker.env_file == env_file.resolve()
    assert config.recovery.docker.ready_url == f"http://127.0.0.1:{ports['api']}/api/health"
    assert render_runbook_toml(DockerStack.load(cli_state_dir)) == text

    ids = [DockerStack.load(cli_state_dir).container_id(s) for s in SERVICE_NAMES]
    assert main(["stop", *sd]) == 0
    for container_id in ids:
        assert not docker_client.api.containers(all=True, filters={"id": container_id})
    assert main(["status", *sd]) == 1
    assert capsys.readouterr().out.count("state=missing") == 3


def test_cli_rejects_name_options_without_docker(cli_state_dir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["start", "--state-dir", str(cli_state_dir), "--name-suffix=-x"]) == 2
    assert "--docker" in capsys.readouterr().err
