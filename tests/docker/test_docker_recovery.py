"""Runbook 3.1 / 3.2 in Docker mode against real containers: restart, recreate with the env
file (the missing-secret incident), what a recreate keeps, and putting the old container back
when the new one cannot run."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from afo_runbook.config import ContainersConfig, load_config
from afo_runbook.containers import check_container
from afo_runbook.observe import GUARD_CASES, Deadline, check_guard
from afo_runbook.refstack.docker_stack import DockerStack
from afo_runbook.refstack.runbook_toml import render_runbook_toml
from afo_runbook.refstack.services import SECRET_ENV
from afo_runbook.refstack.waiting import wait_until
from afo_runbook.secret import load_secret
from recovery.containers import recreate_container, restart_container, wait_ready
from recovery.steps import ActionResult

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 30


def leaks(result: ActionResult, secret: str) -> bool:
    return secret in json.dumps(result.as_json()) or secret in repr(result)


def kept(attrs: dict[str, Any]) -> dict[str, Any]:
    """What a recreate must keep, from `docker inspect`."""
    config = attrs["Config"]
    return {
        "name": attrs["Name"],
        "image": config["Image"],
        "image_id": attrs["Image"],
        "cmd": config["Cmd"],
        "entrypoint": config["Entrypoint"],
        "working_dir": config["WorkingDir"],
        "user": config["User"],
        "labels": config["Labels"],
        "healthcheck": config.get("Healthcheck"),
        "stop_signal": config.get("StopSignal"),
        "exposed": config.get("ExposedPorts"),
        "host_config": attrs["HostConfig"],  # ports + host IPs, binds + ro, restart policy...
        "mounts": sorted((m["Source"], m["Destination"], m["RW"]) for m in attrs["Mounts"]),
        "networks": sorted(attrs["NetworkSettings"]["Networks"]),
        "ports": attrs["NetworkSettings"]["Ports"],
    }


def guard_results(stack: DockerStack, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "guard.toml"
    path.write_text(render_runbook_toml(stack))
    config = load_config(path)
    assert config.guard is not None
    secret = load_secret(config.guard.secret_env, config.guard.env_file, environ={})
    return {case: check_guard(case, config.guard, secret, config, Deadline.after(30))
            for case in GUARD_CASES}


# ----------------------------------------------------------------------------- restart


def test_restart_brings_a_stopped_container_back(
    make_docker_stack: Callable[..., DockerStack], docker_client: docker.DockerClient,
) -> None:
    stack = make_docker_stack(services=["aux"])
    stack.start()
    name = stack.container_name("aux")
    stack.set_fault("aux", "down")
    config = ContainersConfig(names=(name,), ports={name: (stack.port_mapping("aux"),)})
    assert check_container(name, config, 10, Deadline.after(30)).symptom == "container-exited"

    result = restart_container(docker_client, name, ready_url=stack.health_url("aux"),
                              timeout=TIMEOUT)
    assert result.ok, result.as_json()
    assert [s.name for s in result.steps] == ["find", "restart", "wait ready"]
    assert result.steps[1].detail == "was exited"
    assert "healthy" in result.steps[2].detail
    assert check_container(name, config, 10, Deadline.after(30)).ok


def test_wait_ready_and_actions_on_a_missing_container_fail_cleanly(
    docker_client: docker.DockerClient, env_file: Path,
) -> None:
    missing = "afo-no-such-container-for-this-test"
    for result in (restart_container(docker_client, missing, timeout=5),
                   wait_ready(docker_client, missing, timeout=5),
                   recreate_container(docker_client, missing, env_file=env_file, timeout=5)):
        assert not result.ok
        assert result.error is not None
        assert f"no container named {missing}" in result.error


# ----------------------------------------------------------------------------- recreate


def test_recreate_with_the_env_file_brings_the_secret_back(
    make_docker_stack: Callable[..., DockerStack], docker_client: docker.DockerClient,
    secret: str, tmp_path: Path, write_toml: Callable[[str], Path],
    run_runbook: Callable[..., Any],
) -> None:
    """The incident: afo-core created without AFO_INTERNAL_SECRET, its guard answers 503.
    A restart keeps the old environment; a recreate with the env file fixes it, keeping
    everything else about the container."""
    stack = make_docker_stack(services=["api"], faults={"api": {"secret-missing": None}})
    stack.start()
    assert stack.env_file is not None
    name = stack.container_name("api")
    before = guard_results(stack, tmp_path)
    assert before["right-secret"].symptom == "secret-unconfigured"

    restarted = restart_container(docker_client, name, ready_url=stack.health_url("api"),
                                  timeout=TIMEOUT)
    assert restarted.ok
    assert guard_results(stack, tmp_path)["right-secret"].symptom == "secret-unconfigured"

    old = docker_client.api.inspect_container(name)
    result = recreate_container(docker_client, name, env_file=stack.env_file,
                                secret_env=SECRET_ENV, ready_url=stack.health_url("api"),
                                timeout=TIMEOUT)
    assert result.ok, result.as_json()
    assert [s.name for s in result.steps] == ["read env file", "find", "stop old", "rename old",
                                              "create new", "start new", "wait ready",
                                              "remove old"]
    assert result.details["env_added"] == [SECRET_ENV]
    assert result.details["env_changed"] == []
    assert not leaks(result, secret)

    new = docker_client.api.inspect_container(name)
    assert new["Id"] != old["Id"]
    assert kept(new) == kept(old)
    old_env = set(old["Config"]["Env"])
    new_env = set(new["Config"]["Env"])
    assert {e.split("=", 1)[0] for e in new_env - old_env} == {SECRET_ENV}
    assert old_env <= new_env
    assert not docker_client.api.containers(all=True, filters={"id": old["Id"]})  # removed

    after = guard_results(stack, tmp_path)
    assert all(r.ok for r in after.values()), {k: r.message for k, r in after.items()}
    run = run_runbook(write_toml(render_runbook_toml(stack)), "-m", "guard or containers")
    assert run.rc == 0, run.output[-3000:]
    assert run.verdict["decision"] == "monitor"
    assert secret not in run.output


def test_recreate_keeps_networks_aliases_and_refreshes_changed_values(
    docker_client: docker.DockerClient, make_network: Callable[[], str],
    make_container: Callable[..., str], tmp_path: Path,
) -> None:
    network = make_network()
    extra = make_network()
    container = make_container(
        ["-c", "exec sleep 300"], entrypoint=["/bin/sh"], working_dir="/tmp", user="65534",
        environment={"MODE": "old", "KEEP": "kept"}, network=network,
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
        read_only=True, ports={"7000/tcp": ("127.0.0.1", None)},  # any free host port
        stop_signal="SIGKILL",  # sh as pid 1 ignores SIGTERM; kept by the recreate too
        networking_config={network: docker_client.api.create_endpoint_config(
            aliases=["svc-alias"])})
    docker_client.networks.get(extra).connect(container, aliases=["second-alias"])
    name = docker_client.api.inspect_container(container)["Name"].lstrip("/")
    wait_until(lambda: docker_client.api.inspect_container(container)["State"]["Running"], 10)
    old = docker_client.api.inspect_container(container)
    env_file = tmp_path / "app.env"
    env_file.write_text("MODE=new-value\nADDED=yes\n")

    result = recreate_container(docker_client, name, env_file=env_file, timeout=TIMEOUT)
    assert result.ok, result.as_json()
    assert result.details["env_added"] == ["ADDED"]
    assert result.details["env_changed"] == ["MODE"]
    assert "new-value" not in json.dumps(result.as_json())

    new = docker_client.api.inspect_container(name)
    assert kept(new) == kept(old) | {"ports": new["NetworkSettings"]["Ports"]}
    env = dict(item.split("=", 1) for item in new["Config"]["Env"])
    assert (env["MODE"], env["KEEP"], env["ADDED"]) == ("new-value", "kept", "yes")
    networks = new["NetworkSettings"]["Networks"]
    assert "svc-alias" in networks[network]["Aliases"]
    assert "second-alias" in networks[extra]["Aliases"]
    assert new["Id"][:12] in networks[network]["Aliases"]  # the new id, not the old one
    assert old["Id"][:12] not in networks[network]["Aliases"]
    assert new["HostConfig"]["ReadonlyRootfs"] is True


@pytest.mark.parametrize("broken", ["image", "command"])
def test_a_failed_recreate_puts_the_old_container_back(
    broken: str, make_docker_stack: Callable[..., DockerStack],
    docker_client: docker.DockerClient, secret: str,
) -> None:
    stack = make_docker_stack(services=["api"])
    stack.start()
    assert stack.env_file is not None
    name = stack.container_name("api")
    old = docker_client.api.inspect_container(name)
    change: dict[str, Any] = (
        {"image": "afo-refstack-base:no-such-tag"} if broken == "image"
        else {"command": ["/bin/sh", "-c", "echo 'error: bad config'; exit 3"]})

    result = recreate_container(docker_client, name, env_file=stack.env_file,
                                ready_url=stack.health_url("api"), timeout=TIMEOUT, **change)
    assert not result.ok
    assert result.details["restored_old"] is True
    assert result.error is not None
    assert f"the old container {old['Id'][:12]} is back as {name}" in result.error
    failed_step = "create new" if broken == "image" else "wait ready"
    assert [s.name for s in result.steps if not s.ok] == [failed_step]
    assert result.steps[-1].name == "restore old"
    if broken == "command":
        assert "error: bad config" in result.error  # the new container's log, as evidence
    assert not leaks(result, secret)

    now = docker_client.api.inspect_container(name)
    assert now["Id"] == old["Id"]
    assert now["State"]["Running"]
    assert now["State"]["Health"]["Status"] == "healthy"
    ours = docker_client.api.containers(all=True, filters={"name": name})
    assert [c["Id"] for c in ours] == [old["Id"]]  # no new one, no renamed leftover


def test_recreate_refuses_an_env_file_without_the_secret(
    make_docker_stack: Callable[..., DockerStack], docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    stack = make_docker_stack(services=["aux"])
    stack.start()
    name = stack.container_name("aux")
    before = docker_client.api.inspect_container(name)
    empty = tmp_path / "empty.env"
    empty.write_text("OTHER=1\n")

    result = recreate_container(docker_client, name, env_file=empty, secret_env=SECRET_ENV,
                                timeout=TIMEOUT)
    assert not result.ok
    assert result.error == f"env file {empty} does not define {SECRET_ENV}"
    assert [s.name for s in result.steps] == ["read env file"]  # nothing was touched
    after = docker_client.api.inspect_container(name)
    assert (after["Id"], after["State"]["StartedAt"]) == (before["Id"],
                                                          before["State"]["StartedAt"])

    result = recreate_container(docker_client, name, env_file=None, timeout=TIMEOUT)
    assert not result.ok
    assert result.error is not None
    assert "no env file configured" in result.error
    assert docker_client.api.inspect_container(name)["Id"] == before["Id"]


def test_a_restart_that_crashes_fails_at_once_with_a_scrubbed_log(
    docker_client: docker.DockerClient, make_container: Callable[..., str],
) -> None:
    token = "tok-" + secrets.token_urlsafe(16)
    container = make_container(["/bin/sh", "-c", 'echo "error: bad token $TOKEN"; exit 1'],
                               environment={"TOKEN": token})
    name = docker_client.api.inspect_container(container)["Name"].lstrip("/")

    result = restart_container(docker_client, name, timeout=TIMEOUT)
    assert not result.ok
    assert result.duration_s < TIMEOUT / 2  # it did not wait out the deadline
    assert result.error is not None
    assert "exit code 1" in result.error
    assert "error: bad token [REDACTED]" in result.error
    assert not leaks(result, token)
