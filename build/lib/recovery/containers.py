"""Runbook 3.1 / 3.2 in Docker mode: restart or recreate one named container, then wait.

    docker restart afo-core  /  docker compose restart afo-core        -> restart_container
    `docker compose up --force-recreate` with the env file re-read    -> recreate_container

A restart keeps the container's old environment, so it cannot bring back a missing secret;
`recreate_container` builds the same container again with its environment refreshed from the
dotenv file. Every action acts only on the container named in the call, waits on conditions
with a deadline (never a fixed sleep) and returns an `ActionResult`; a missing container or an
unreachable Docker is a failed result, not an exception. No environment VALUE is ever put in
a result, a message or an exception: only variable names.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from afo_runbook.probes.docker import find
from afo_runbook.secret import Redactor, read_env_file
from recovery.steps import ActionResult, StepFailed

__all__ = ["recreate_container", "restart_container", "wait_ready"]

POLL = 0.1
HTTP_TIMEOUT = 2.0
STOP_TIMEOUT = 10
LOG_TAIL = 10
STABLE_S = 1.0  # how long a container without healthcheck or ready_url must stay up
# Environment variables that never hold a secret (see _env_redactor).
_PLAIN_ENV = frozenset({"PATH", "HOME", "HOSTNAME", "LANG", "LC_ALL", "TERM", "PWD", "SHLVL",
                        "TZ", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"})
# Networks whose endpoints need no configuration to be joined again.
_BUILTIN_NETWORKS = ("bridge", "default", "host", "none")


# ----------------------------------------------------------------------------- public


def restart_container(client: docker.DockerClient, name: str, *, ready_url: str | None = None,
                      timeout: float = 60) -> ActionResult:
    """`docker restart NAME` (a stopped container is started), then wait until it runs, its
    healthcheck (if any) says healthy and `ready_url` (if given) answers 2xx."""
    result = ActionResult("restart", name)
    deadline = time.monotonic() + timeout
    try:
        with result.step("find") as step:
            container_id = _resolve(client, name)
            step.detail = container_id[:12]
        with result.step("restart") as step:
            attrs = client.api.inspect_container(container_id)
            stop_timeout = _stop_timeout(attrs, deadline)
            client.api.restart(container_id, timeout=stop_timeout)
            step.detail = f"was {attrs['State']['Status']}"
        _wait_step(result, client, container_id, name, ready_url, deadline, _env_redactor(attrs))
    except StepFailed:
        return result.finish(False)
    except DockerException as exc:
        return _failed(result, f"Docker error: {_docker_message(exc)}")
    result.details["container_id"] = container_id[:12]
    return result.finish(True)


def wait_ready(client: docker.DockerClient, name: str, *, ready_url: str | None = None,
               timeout: float = 60) -> ActionResult:
    """Wait until NAME runs, is healthy (if it has a healthcheck) and `ready_url` answers 2xx.
    A container that exits or restarts meanwhile fails at once."""
    result = ActionResult("wait-ready", name)
    deadline = time.monotonic() + timeout
    try:
        with result.step("find") as step:
            container_id = _resolve(client, name)
            step.detail = container_id[:12]
        redactor = _env_redactor(client.api.inspect_container(container_id))
        _wait_step(result, client, container_id, name, ready_url, deadline, redactor)
    except StepFailed:
        return result.finish(False)
    except DockerException as exc:
        return _failed(result, f"Docker error: {_docker_message(exc)}")
    return result.finish(True)


def recreate_container(client: docker.DockerClient, name: str, *, env_file: Path | str | None,
                       secret_env: str | None = None, ready_url: str | None = None,
                       timeout: float = 60, image: str | None = None,
                       command: Sequence[str] | None = None) -> ActionResult:
    """Recreate NAME with its environment refreshed from the dotenv `env_file`.

    Values from the file override or add to the old container's environment; everything else
    is kept: image, command, entrypoint, working dir, user, labels, healthcheck, the whole
    host config (ports with their host IPs, binds with their read-only flags, restart
    policy, ...) and its networks with their aliases. `image` / `command` replace those two
    (a rollback to another image; tests use them to make the new container fail).

    Safe order: check the env file (and that it defines `secret_env`, if given) before
    touching anything; stop the old container and rename it aside; create and start the new
    one under NAME; wait until it is ready; only then remove the old one. If any of that
    fails, the new container is removed and the old one gets its name back and is started
    again if it was running; the result is failed either way and says whether the old
    container was restored (restoring has its own `timeout`).
    """
    result = ActionResult("recreate", name)
    deadline = time.monotonic() + timeout
    env_path = Path(env_file) if env_file is not None else None
    redactor = Redactor()
    try:
        with result.step("read env file") as step:
            if env_path is None:
                raise StepFailed("no env file configured: a recreate refreshes the environment "
                                 "from one (a plain restart keeps the old environment)")
            fresh = _read_env(env_path, secret_env)
            redactor.add(*fresh.values())
            if secret_env and fresh.get(secret_env):
                redactor.force(fresh[secret_env])
            step.detail = f"{len(fresh)} variables from {env_path}"
        with result.step("find") as step:
            old_id = _resolve(client, name)
            old = client.api.inspect_container(old_id)
            redactor.add(*(v for k, v in _env_dict(old).items() if k not in _PLAIN_ENV))
            # A compose service name resolves to a container that may be called otherwise.
            real_name = str(old.get("Name", "")).lstrip("/") or name
            step.detail = f"{real_name} {old_id[:12]}"
        env, added, changed = _merge_env(_env_dict(old), fresh)
        result.details.update({"old_id": old_id[:12], "env_file": str(env_path),
                               "env_added": added, "env_changed": changed})
        body = _create_body(client, old, env, image=image, command=command)
        result.details["image"] = body["Image"]
    except StepFailed:
        return result.finish(False)
    except DockerException as exc:
        return _failed(result, f"Docker error: {redactor.text(_docker_message(exc))}")

    was_running = bool(old["State"].get("Running"))
    aside = f"{real_name}-afo-replaced-{old_id[:12]}"
    new_id: str | None = None
    renamed = False
    try:
        if was_running:
            with result.step("stop old"):
                client.api.stop(old_id, timeout=_stop_timeout(old, deadline))
        with result.step("rename old") as step:
            client.api.rename(old_id, aside)
            renamed = True
            step.detail = aside
        with result.step("create new") as step:
            new_id = _create(client, real_name, body, redactor)
            _connect_networks(client, new_id, old)
            step.detail = new_id[:12]
        with result.step("start new"):
            client.api.start(new_id)
        _wait_step(result, client, new_id, real_name, ready_url, deadline, redactor)
    except (StepFailed, DockerException) as exc:
        if isinstance(exc, DockerException):
            result.error = f"Docker error: {redactor.text(_docker_message(exc))}"
            result.steps[-1].ok = False
            result.steps[-1].detail = result.error
        error = result.error or "recreate failed"
        restored = _restore(result, client, old_id, real_name, new_id, renamed, was_running,
                            ready_url, timeout, redactor)
        result.details["restored_old"] = restored
        result.error = (f"{error}; the old container {old_id[:12]} is back as {real_name}"
                        if restored
                        else f"{error}; restoring the old container {old_id[:12]} failed too: "
                        f"{result.details.get('restore_error', '?')}")
        return result.finish(False)
    except BaseException:
        # Interrupted (Ctrl-C, a pytest timeout): still put the old container back first.
        _restore(result, client, old_id, real_name, new_id, renamed, was_running, ready_url,
                 timeout, redactor)
        raise

    try:
        with result.step("remove old"):
            client.api.remove_container(old_id, force=True)
    except DockerException as exc:
        # The new container serves; the old one is only left over under its aside name.
        result.steps[-1].ok = False
        result.steps[-1].detail = redactor.text(_docker_message(exc))
        result.details["leftover"] = aside
    result.details["new_id"] = new_id[:12] if new_id else None
    return result.finish(True)


# ----------------------------------------------------------------------------- finding


def _resolve(client: docker.DockerClient, name: str) -> str:
    """The one container called `name` (or, failing that, the one compose service `name`)."""
    try:
        ids = find(client, name)
    except DockerException as exc:
        raise StepFailed(f"Docker error while looking for {name}: {_docker_message(exc)}") from None
    if not ids:
        raise StepFailed(f"no container named {name} (nor a compose service of that name)")
    if len(ids) > 1:
        raise StepFailed(f"{name} is ambiguous: the compose service has {len(ids)} containers "
                         f"({', '.join(i[:12] for i in ids)}); name one container")
    return ids[0]


def _failed(result: ActionResult, error: str) -> ActionResult:
    result.error = error
    if result.steps and result.steps[-1].ok:
        result.steps[-1].ok = False
        result.steps[-1].detail = error
    return result.finish(False)


def _docker_message(exc: DockerException) -> str:
    explained = isinstance(exc, APIError) and exc.explanation
    text = str(exc.explanation) if explained else str(exc)  # type: ignore[union-attr]
    return " ".join(text.split())[:300]


def _stop_timeout(attrs: Mapping[str, Any], deadline: float) -> int:
    configured = (attrs.get("Config") or {}).get("StopTimeout") or STOP_TIMEOUT
    return max(1, min(int(configured), int(deadline - time.monotonic())))


# ----------------------------------------------------------------------------- waiting


@dataclass
class _Seen:
    status: str = "?"
    health: str | None = None
    url: str = "-"

    def describe(self) -> str:
        health = f", health {self.health}" if self.health else ""
        return f"status {self.status}{health}, ready_url {self.url}"


def _wait_step(result: ActionResult, client: docker.DockerClient, container_id: str, name: str,
               ready_url: str | None, deadline: float, redactor: Redactor | None = None) -> None:
    with result.step("wait ready") as step:
        seen = _wait(client, container_id, name, ready_url, deadline, redactor)
        step.detail = seen.describe()


def _wait(client: docker.DockerClient, container_id: str, name: str, ready_url: str | None,
          deadline: float, redactor: Redactor | None) -> _Seen:
    seen = _Seen()
    baseline: int | None = None
    running_since: float | None = None
    while True:
        attrs = client.api.inspect_container(container_id)
        state = attrs["State"]
        restarts = int(attrs.get("RestartCount") or 0)
        baseline = restarts if baseline is None else baseline
        seen.status = state.get("Status", "?")
        seen.health = (state.get("Health") or {}).get("Status")
        # A container that stops or restarts while we wait for it is not coming up: say so
        # now, with its last log lines, instead of waiting out the deadline.
        if seen.status in ("exited", "dead") or state.get("Restarting") or restarts > baseline:
            tail = _log_tail(client, container_id, redactor)
            raise StepFailed(f"{name} {seen.status} (exit code {state.get('ExitCode')}, "
                             f"{restarts} restarts) while waiting for it to be ready; "
                             f"last log lines: {tail}")
        if seen.status == "running" and seen.health in (None, "healthy"):
            running_since = running_since or time.monotonic()
            if ready_url is not None:
                seen.url = _url_status(ready_url, min(HTTP_TIMEOUT, deadline - time.monotonic()))
                if seen.url.isdigit() and 200 <= int(seen.url) < 300:
                    return seen
            elif seen.health == "healthy":
                seen.url = "not checked"
                return seen
            elif time.monotonic() - running_since >= STABLE_S:
                # Nothing proves it serves, so it must at least stay up a moment: a command
                # that fails at once is "running" for a few milliseconds first.
                seen.url = "not checked"
                return seen
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StepFailed(f"{name} not ready in time: {seen.describe()}")
        time.sleep(min(POLL, remaining))  # polling a condition, bounded by the deadline


def _url_status(url: str, timeout: float) -> str:
    try:
        return str(requests.get(url, timeout=max(0.2, timeout)).status_code)
    except requests.RequestException as exc:
        return type(exc).__name__


def _log_tail(client: docker.DockerClient, container_id: str, redactor: Redactor | None) -> str:
    try:
        raw = client.api.logs(container_id, stdout=True, stderr=True, tail=LOG_TAIL)
    except DockerException:
        return "(unreadable)"
    lines = raw.decode("utf-8", errors="replace").strip().splitlines()
    text = " | ".join(line[:200] for line in lines[-LOG_TAIL:]) or "(empty)"
    return redactor.text(text) if redactor is not None else text


# ----------------------------------------------------------------------------- recreating


def _read_env(path: Path, secret_env: str | None) -> dict[str, str]:
    if not path.is_file():
        raise StepFailed(f"env file {path} does not exist")
    values = read_env_file(path)
    if secret_env and not values.get(secret_env):
        raise StepFailed(f"env file {path} does not define {secret_env}")
    return values


def _env_dict(attrs: Mapping[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in (attrs.get("Config") or {}).get("Env") or []:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def _env_redactor(attrs: Mapping[str, Any]) -> Redactor:
    """Scrubs the container's own environment values out of log lines we quote (but not the
    well-known plain ones, or every `/bin` and `/tmp` in a log line would vanish)."""
    env = _env_dict(attrs)
    return Redactor(v for k, v in env.items() if k not in _PLAIN_ENV)


def _merge_env(old: Mapping[str, str],
               fresh: Mapping[str, str]) -> tuple[dict[str, str], list[str], list[str]]:
    """The new environment and the NAMES that were added or changed (never the values)."""
    merged = dict(old)
    added = sorted(k for k in fresh if k not in old)
    changed = sorted(k for k in fresh if k in old and old[k] != fresh[k])
    merged.update(fresh)
    return merged, added, changed


def _image_ref(client: docker.DockerClient, attrs: Mapping[str, Any]) -> str:
    """The old container's image by the name it was created with if that name still means
    the same image, else by id (the exact software of the old container)."""
    configured = (attrs.get("Config") or {}).get("Image") or ""
    image_id = attrs.get("Image") or configured
    if configured and configured != image_id:
        try:
            if client.api.inspect_image(configured)["Id"] == image_id:
                return configured
        except (ImageNotFound, NotFound):
            pass
        return image_id
    return configured or image_id


def _create_body(client: docker.DockerClient, old: Mapping[str, Any], env: Mapping[str, str],
                 *, image: str | None, command: Sequence[str] | None) -> dict[str, Any]:
    """The create request for the replacement: the old Config and HostConfig as they are
    (inspect data round-trips into the create API), with the new environment."""
    config = dict(old.get("Config") or {})
    if config.get("Hostname") == old["Id"][:12]:
        config.pop("Hostname")  # Docker's default (the id): the new container gets its own
    config.pop("MacAddress", None)
    config["Env"] = [f"{k}={v}" for k, v in env.items()]
    config["Image"] = image or _image_ref(client, old)
    if command is not None:
        config["Cmd"] = list(command)
    config["HostConfig"] = dict(old.get("HostConfig") or {})
    primary = config["HostConfig"].get("NetworkMode") or "default"
    networks = (old.get("NetworkSettings") or {}).get("Networks") or {}
    if primary in networks and not _is_builtin(primary):
        config["NetworkingConfig"] = {
            "EndpointsConfig": {primary: _endpoint(networks[primary], old["Id"])}}
    return config


def _is_builtin(network: str) -> bool:
    return network in _BUILTIN_NETWORKS or network.startswith("container:")


def _endpoint(settings: Mapping[str, Any], old_id: str) -> dict[str, Any]:
    """An endpoint config keeping aliases, static IPs and links; Docker adds the container's
    short id as an alias itself, so the old one is dropped."""
    aliases = [a for a in settings.get("Aliases") or [] if not old_id.startswith(a)]
    endpoint: dict[str, Any] = {"Aliases": aliases or None}
    if settings.get("IPAMConfig"):
        endpoint["IPAMConfig"] = settings["IPAMConfig"]
    if settings.get("Links"):
        endpoint["Links"] = settings["Links"]
    return endpoint


def _create(client: docker.DockerClient, name: str, body: dict[str, Any],
            redactor: Redactor) -> str:
    try:
        created = client.api.create_container_from_config(body, name=name)
    except ImageNotFound as exc:
        raise StepFailed(f"cannot create the new {name}: image {body['Image']} not found "
                         f"({redactor.text(_docker_message(exc))})") from None
    except APIError as exc:
        raise StepFailed(f"cannot create the new {name}: "
                         f"{redactor.text(_docker_message(exc))}") from None
    return str(created["Id"])


def _connect_networks(client: docker.DockerClient, container_id: str,
                      old: Mapping[str, Any]) -> None:
    """Join the old container's other user-defined networks (create takes only one)."""
    primary = (old.get("HostConfig") or {}).get("NetworkMode") or "default"
    networks = (old.get("NetworkSettings") or {}).get("Networks") or {}
    for network, settings in networks.items():
        if network == primary or _is_builtin(network):
            continue
        endpoint = _endpoint(settings, old["Id"])
        client.api.connect_container_to_network(
            container_id, network, aliases=endpoint["Aliases"], links=endpoint.get("Links"),
            ipv4_address=(endpoint.get("IPAMConfig") or {}).get("IPv4Address") or None,
            ipv6_address=(endpoint.get("IPAMConfig") or {}).get("IPv6Address") or None)


def _restore(result: ActionResult, client: docker.DockerClient, old_id: str, name: str,
             new_id: str | None, renamed: bool, was_running: bool, ready_url: str | None,
             timeout: float, redactor: Redactor) -> bool:
    """Undo a failed recreate: drop the new container, give the old one its name back and
    start it again if it was running. True when the old container is back (and ready)."""
    deadline = time.monotonic() + timeout
    try:
        with result.step("restore old") as step:
            try:
                if new_id is not None:
                    client.api.remove_container(new_id, force=True)
                if renamed:
                    client.api.rename(old_id, name)
                if not was_running:
                    step.detail = "renamed back (it was not running)"
                    return True
                client.api.start(old_id)
                step.detail = _wait(client, old_id, name, ready_url, deadline,
                                    redactor).describe()
            except DockerException as exc:
                raise StepFailed(redactor.text(_docker_message(exc))) from None
    except StepFailed as exc:
        result.details["restore_error"] = str(exc)
        return False
    return True
