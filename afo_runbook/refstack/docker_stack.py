"""The reference stack as Docker containers, named like the real deployment.

    afo-core (api)  afo-aux (aux)  afo-dashboard (dashboard)

Each service runs `python -m afo_runbook.refstack.serve` in the tiny local base image
(`image.py`) with the host's interpreter, venv and source mounted read-only, and the stack's
state dir mounted read-write at the same path, so faults.json switches faults live exactly as
for the process stack. Every container publishes its port on 127.0.0.1, has a busybox-wget
HEALTHCHECK (1 s interval; it does not send the readiness-probe bypass header, so a
`health-500` fault makes it unhealthy), restart policy `unless-stopped` and compose-style
labels. Ownership labels (owner, state dir, stack id) let `stop()` remove exactly what this
stack created. State is in <state-dir>/stack.json (`"mode": "docker"`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import docker
from docker.errors import APIError, DockerException, NotFound

from afo_runbook.probes.docker import DockerUnavailable, connect
from afo_runbook.refstack.faults import (
    FaultMap,
    FaultValue,
    LiveFaults,
    edit_faults,
    normalise,
    read_faults,
)
from afo_runbook.refstack.image import (
    OWNER,
    OWNER_LABEL,
    ImageError,
    ensure_image,
    python_mounts,
)
from afo_runbook.refstack.network import http_status, port_is_free
from afo_runbook.refstack.services import (
    PROBE_HEADER,
    SECRET_ENV,
    SERVE_MODULE,
    SERVICE_NAMES,
    SERVICES,
    check_service,
    default_python,
)
from afo_runbook.refstack.stack import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_PORTS,
    STACK_FILE,
    PortInUseError,
    ServiceStartError,
    StackAlreadyRunningError,
    StackError,
)
from afo_runbook.refstack.waiting import wait_until

__all__ = [
    "COMPOSE_PROJECT",
    "COMPOSE_PROJECT_LABEL",
    "COMPOSE_SERVICE_LABEL",
    "CONTAINER_NAMES",
    "STACK_ID_LABEL",
    "STATE_DIR_LABEL",
    "ContainerStatus",
    "DockerStack",
]

# The real deployment's container names.
CONTAINER_NAMES: dict[str, str] = {
    "api": "afo-core",
    "aux": "afo-aux",
    "dashboard": "afo-dashboard",
}
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_PROJECT = "afo-refstack"
STATE_DIR_LABEL = "io.afo-runbook.refstack.state-dir"
STACK_ID_LABEL = "io.afo-runbook.refstack.stack-id"
SERVICE_LABEL = "io.afo-runbook.refstack.service"
MODE = "docker"

_NS = 1_000_000_000
HEALTH_INTERVAL_S = 1
HEALTH_TIMEOUT_S = 3
HEALTH_RETRIES = 2
# Failures inside the start period do not count until the first success; after that every
# failure counts, so a live health-500 turns the container unhealthy within ~2 s.
HEALTH_START_PERIOD_S = 30
# Faults that keep the healthcheck from ever passing: start() cannot wait for `healthy` then.
HEALTH_FAULTS = frozenset({"health-500", "tarpit", "reset", "slow", "huge-body"})
DEFAULT_START_TIMEOUT = 30.0
LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class ContainerStatus:
    name: str  # the service: api, aux, dashboard
    container: str  # the container's name
    port: int  # host port
    id: str | None  # short container id; None when it does not exist
    state: str  # running | exited | created | restarting | ... | missing
    docker_health: str | None  # healthy | unhealthy | starting | None
    health: int | str  # what the host gets from the health URL right now; "-" if not running

    @property
    def alive(self) -> bool:
        return self.state == "running"


class DockerStack(LiveFaults):
    """The reference stack in containers; the same spirit and API as `Stack`."""

    mode = MODE
    host = "127.0.0.1"

    def __init__(
        self,
        state_dir: Path,
        ports: Mapping[str, int] | None = None,
        env_file: Path | None = None,
        faults: Mapping[str, Mapping[str, FaultValue]] | None = None,
        *,
        services: Iterable[str] | None = None,
        name_prefix: str = "",
        name_suffix: str = "",
        labels: Mapping[str, str] | None = None,
        container_ports: Mapping[str, int] | None = None,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        python: str | None = None,
        client: docker.DockerClient | None = None,
        stack_id: str | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        for name in [*(ports or {}), *(container_ports or {})]:
            check_service(name)
        self.ports: dict[str, int] = {**DEFAULT_PORTS, **(ports or {})}
        # Inside its own network namespace each service listens on its usual port; the host
        # side is whatever `ports` says (free ports in tests, so stacks can run side by side).
        self.container_ports: dict[str, int] = {**DEFAULT_PORTS, **(container_ports or {})}
        self.env_file = Path(env_file).resolve() if env_file is not None else None
        self.initial_faults: FaultMap = normalise(faults)
        self.services: tuple[str, ...] = tuple(
            check_service(s).name for s in (services if services is not None else SERVICE_NAMES)
        )
        self.name_prefix = name_prefix
        self.name_suffix = name_suffix
        self.extra_labels: dict[str, str] = dict(labels or {})
        self.heartbeat_interval = heartbeat_interval
        self.python = python or default_python()
        self.stack_id = stack_id or uuid.uuid4().hex[:12]
        self._client = client
        self._owns_client = client is None
        self._ids: dict[str, str] = {}

    @classmethod
    def load(cls, state_dir: Path, client: docker.DockerClient | None = None) -> DockerStack:
        """The docker stack described by <state_dir>/stack.json (written by `start`)."""
        path = Path(state_dir) / STACK_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            missing = Path(state_dir).resolve() / STACK_FILE
            raise StackError(f"no stack in {missing.parent} ({STACK_FILE} missing)") from None
        if data.get("mode") != MODE:
            raise StackError(f"{path} describes a process stack, not a docker one")
        stack = cls(
            Path(state_dir),
            ports=data["ports"],
            env_file=Path(data["env_file"]) if data.get("env_file") else None,
            services=data["services"],
            name_prefix=data.get("name_prefix", ""),
            name_suffix=data.get("name_suffix", ""),
            labels=data.get("labels") or {},
            container_ports=data.get("container_ports"),
            heartbeat_interval=data.get("heartbeat_interval", DEFAULT_HEARTBEAT_INTERVAL),
            python=data.get("python", sys.executable),
            client=client,
            stack_id=data["stack_id"],
        )
        stack._ids = dict(data.get("containers") or {})
        return stack

    # ------------------------------------------------------------------------- naming

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = connect(30)
            except DockerUnavailable as exc:
                raise StackError(f"Docker unreachable: {exc}") from None
        return self._client

    @property
    def urls(self) -> dict[str, str]:
        return {name: f"http://{self.host}:{self.ports[name]}" for name in self.services}

    def health_url(self, name: str) -> str:
        check_service(name)
        return f"http://{self.host}:{self.ports[name]}{SERVICES[name].health_path}"

    def container_name(self, service: str) -> str:
        check_service(service)
        return f"{self.name_prefix}{CONTAINER_NAMES[service]}{self.name_suffix}"

    def container_names(self) -> list[str]:
        return [self.container_name(s) for s in self.services]

    def container_id(self, service: str) -> str | None:
        """Full id of this stack's container for `service` (by name and stack label)."""
        found = self.client.api.containers(
            all=True,
            # The name filter is a regular expression: escape the name (`.` in a suffix).
            filters={"name": f"^/{re.escape(self.container_name(service))}$",
                     "label": self._our_labels()},
        )
        return found[0]["Id"] if found else None

    def port_mapping(self, service: str) -> str:
        """`host:container/tcp`, as `[containers] ports` in runbook.toml expects it."""
        return f"{self.ports[service]}:{self.container_ports[service]}/tcp"

    def command(self, name: str) -> list[str]:
        """The argv the container for `name` runs (the host's venv python, mounted)."""
        check_service(name)
        argv = [self.python, "-m", SERVE_MODULE, name,
                "--port", str(self.container_ports[name]),
                "--state-dir", str(self.state_dir),
                # All interfaces of the container's own namespace; the host side is bound to
                # 127.0.0.1 by the port mapping.
                "--host", "0.0.0.0"]  # noqa: S104
        if name == "api" and self.heartbeat_interval != DEFAULT_HEARTBEAT_INTERVAL:
            argv += ["--heartbeat-interval", str(self.heartbeat_interval)]
        return argv

    def _our_labels(self) -> list[str]:
        return [f"{OWNER_LABEL}={OWNER}", f"{STACK_ID_LABEL}={self.stack_id}"]

    # ------------------------------------------------------------------------- lifecycle

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Create every service's container (a `down` one is created but not started); return
        once each started one is running, healthy (unless a fault breaks its healthcheck)
        and answers its URL from the host.

        `secret-missing` given here is the incident "afo-core created without its secret":
        the api container gets no AFO_INTERNAL_SECRET in its environment. The fault is not
        kept in faults.json, so recreating the container with its env file fixes it.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        others = self.client.api.containers(
            all=True, filters={"label": [f"{OWNER_LABEL}={OWNER}",
                                         f"{STATE_DIR_LABEL}={self.state_dir}"]})
        if others:
            names = ", ".join(sorted(c["Names"][0].lstrip("/") for c in others))
            raise StackAlreadyRunningError(
                f"a docker stack already exists in {self.state_dir} ({names})")
        started = [s for s in self.services if "down" not in self.initial_faults.get(s, {})]
        for name in started:
            if not port_is_free(self.host, self.ports[name]):
                raise PortInUseError(
                    f"port {self.ports[name]} for {name} on {self.host} is already in use")
        live = {service: dict(f) for service, f in self.initial_faults.items()}
        without_secret = "secret-missing" in live.get("api", {})
        live.get("api", {}).pop("secret-missing", None)
        with edit_faults(self.state_dir) as faults:  # before any service reads it
            faults.clear()
            faults.update(live)
        try:
            image = self._image()
            self._write_stack_file(image)
            for name in self.services:
                self._create(name, image, without_secret=without_secret and name == "api")
                self._write_stack_file(image)  # stop() finds what exists even if we die now
                if name in started:
                    self._start_container(name, self._ids[name])
            self._wait_ready(started, timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10) -> None:
        """Remove this stack's containers: the ids it recorded and whatever carries its stack
        label (a recreated container keeps it), never anything else. Missing ones are fine."""
        del timeout  # `docker rm -f`: the services keep nothing worth a graceful stop
        ids = set(self._ids.values())
        with contextlib.suppress(DockerException):
            ids |= {c["Id"] for c in self.client.api.containers(
                all=True, filters={"label": self._our_labels()})}
        problems: list[str] = []
        for container_id in sorted(ids):
            try:
                self.client.api.remove_container(container_id, force=True)
            except NotFound:
                pass
            except APIError as exc:
                if exc.status_code != 409:  # 409: removal already in progress
                    problems.append(f"{container_id[:12]}: {exc.explanation or exc}")
        self._ids.clear()
        if (self.state_dir / STACK_FILE).exists():
            self._update_stack_file(containers={})
        if problems:
            raise StackError("could not remove containers: " + "; ".join(problems))

    def close(self) -> None:
        """Close the Docker client if this stack opened it."""
        if self._client is not None and self._owns_client:
            self._client.close()
            self._client = None

    def start_service(self, name: str, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Start `name`'s container (creating it, with its secret, if it is gone); clears its
        `down` fault. A container that exists keeps its environment, like `docker start`."""
        self._check_ours(name)
        with edit_faults(self.state_dir) as faults:
            if "down" in faults.get(name, {}):
                del faults[name]["down"]
        container_id = self.container_id(name)
        if container_id is None:
            image = self._image()
            self._create(name, image)
            self._update_stack_file(containers=self._ids)
            container_id = self._ids[name]
        state = self.client.api.inspect_container(container_id)["State"]
        if not state.get("Running"):
            self._start_container(name, container_id)
        self._wait_ready([name], timeout)

    def recreate_service(self, name: str, *, without_secret: bool = False,
                         timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Replace `name`'s container with a fresh one; `without_secret` rehearses the
        incident of EXP_007 (the api came back without AFO_INTERNAL_SECRET)."""
        self._check_ours(name)
        old = self.container_id(name)
        if old is not None:
            self.client.api.remove_container(old, force=True)
        image = self._image()
        container_id = self._create(name, image, without_secret=without_secret)
        self._update_stack_file(containers=self._ids)
        self._start_container(name, container_id)
        self._wait_ready([name], timeout)

    def stop_service(self, name: str, timeout: float = 10) -> None:
        """`docker stop` the service's container (it stays, Exited, as in the incident)."""
        self._check_ours(name)
        container_id = self.container_id(name)
        if container_id is not None:
            self.client.api.stop(container_id, timeout=max(1, round(timeout)))

    def _check_ours(self, name: str) -> None:
        check_service(name)
        if name not in self.services:
            raise StackError(f"{name} is not part of this stack ({', '.join(self.services)})")

    # ------------------------------------------------------------------------- containers

    def _image(self) -> str:
        try:
            return ensure_image(self.client)
        except ImageError as exc:
            raise StackError(f"no base image: {exc}") from None

    def _labels(self, service: str) -> dict[str, str]:
        return {
            **self.extra_labels,
            OWNER_LABEL: OWNER,
            STATE_DIR_LABEL: str(self.state_dir),
            STACK_ID_LABEL: self.stack_id,
            SERVICE_LABEL: service,
            COMPOSE_SERVICE_LABEL: self.container_name(service),
            COMPOSE_PROJECT_LABEL: COMPOSE_PROJECT,
        }

    def _environment(self, service: str, without_secret: bool) -> dict[str, str]:
        # HOME: the container user may have no home; /tmp is the image's only writable dir.
        env = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/tmp"}  # noqa: S108
        if service != "api":
            return env
        if self.env_file is not None:
            from dotenv import dotenv_values

            if not self.env_file.is_file():
                raise StackError(f"env file {self.env_file} does not exist")
            # Like compose's env_file: the whole file goes into the container's environment.
            env.update({k: v for k, v in dotenv_values(self.env_file).items() if v is not None})
        if without_secret:
            env.pop(SECRET_ENV, None)
        return env

    def _healthcheck(self, service: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.container_ports[service]}{SERVICES[service].health_path}"
        return {
            # No `-T`: Debian's static busybox 1.35 wget segfaults with it (exit 139); a hung
            # request is cut off by the healthcheck's own timeout instead.
            "test": ["CMD", "/bin/wget", "-q", "-O", "/dev/null", url],
            "interval": HEALTH_INTERVAL_S * _NS,
            "timeout": HEALTH_TIMEOUT_S * _NS,
            "retries": HEALTH_RETRIES,
            "start_period": HEALTH_START_PERIOD_S * _NS,
        }

    def _create(self, service: str, image: str, without_secret: bool = False) -> str:
        api = self.client.api
        try:
            mounts = python_mounts(self.python)
        except ImageError as exc:
            raise StackError(str(exc)) from None
        volumes = {m.path: m.volume_spec() for m in mounts}
        volumes[str(self.state_dir)] = {"bind": str(self.state_dir), "mode": "rw"}
        port = self.container_ports[service]
        host_config = api.create_host_config(
            binds=volumes,
            port_bindings={port: (self.host, self.ports[service])},
            restart_policy={"Name": "unless-stopped"},
        )
        name = self.container_name(service)
        try:
            created = api.create_container(
                image,
                command=self.command(service),
                name=name,
                user=f"{os.getuid()}:{os.getgid()}",  # state-dir files stay the user's
                working_dir=str(self.state_dir),
                environment=self._environment(service, without_secret),
                labels=self._labels(service),
                ports=[port],
                healthcheck=self._healthcheck(service),
                host_config=host_config,
                use_config_proxy=False,
            )
        except APIError as exc:
            if exc.status_code == 409:
                raise StackError(f"container name {name} is already in use") from None
            raise StackError(f"cannot create {name}: {exc.explanation or exc}") from None
        self._ids[service] = created["Id"]
        return created["Id"]

    def _start_container(self, service: str, container_id: str) -> None:
        try:
            self.client.api.start(container_id)
        except APIError as exc:  # e.g. the runtime cannot exec the command
            raise ServiceStartError(f"cannot start {self.container_name(service)}: "
                                    f"{exc.explanation or exc}") from None

    def _wait_ready(self, services: Iterable[str], timeout: float) -> None:
        pending = list(services)
        faults = read_faults(self.state_dir)
        last: dict[str, str] = {}

        def ready(service: str) -> bool:
            container_id = self.container_id(service)  # by name: a recreate changes the id
            if container_id is None:
                raise ServiceStartError(f"the container of {service} is gone")
            attrs = self.client.api.inspect_container(container_id)
            state = attrs["State"]
            if state["Status"] in ("exited", "dead") or state.get("Restarting"):
                raise ServiceStartError(
                    f"{self.container_name(service)} exited with code {state.get('ExitCode')} "
                    f"while starting; last lines of its log:\n{self.logs(service)}")
            health = (state.get("Health") or {}).get("Status")
            needs_health = not (HEALTH_FAULTS & set(faults.get(service, {})))
            answer = http_status(self.host, self.ports[service], SERVICES[service].health_path,
                                 timeout=1.0, headers={PROBE_HEADER: "1"})
            last[service] = f"state {state['Status']}, health {health}, answers {answer}"
            return (state["Status"] == "running" and isinstance(answer, int)
                    and (health in (None, "healthy") or not needs_health))

        def all_ready() -> bool:
            pending[:] = [s for s in pending if not ready(s)]
            return not pending

        try:
            wait_until(all_ready, timeout, interval=0.1)
        except TimeoutError:
            service = pending[0]
            raise ServiceStartError(
                f"{self.container_name(service)} not ready within {timeout:g}s "
                f"({last.get(service, 'never inspected')}); last lines of its log:\n"
                f"{self.logs(service)}") from None

    def logs(self, service: str, tail: int = LOG_TAIL_LINES) -> str:
        """The last `tail` lines of the service container's output."""
        container_id = self.container_id(service)
        if container_id is None:
            return "(no container)"
        try:
            raw = self.client.api.logs(container_id, stdout=True, stderr=True, tail=tail)
        except DockerException as exc:
            return f"(cannot read the logs: {exc})"
        return raw.decode("utf-8", errors="replace").rstrip() or "(empty)"

    # ------------------------------------------------------------------------- state file

    def _write_stack_file(self, image: str) -> None:
        data = {
            "mode": MODE,
            "stack_id": self.stack_id,
            "host": self.host,
            "ports": self.ports,
            "container_ports": self.container_ports,
            "services": list(self.services),
            "env_file": str(self.env_file) if self.env_file else None,
            "name_prefix": self.name_prefix,
            "name_suffix": self.name_suffix,
            "labels": self.extra_labels,
            "python": self.python,
            "heartbeat_interval": self.heartbeat_interval,
            "image": image,
            "container_names": {s: self.container_name(s) for s in self.services},
            "containers": dict(self._ids),
            "commands": {s: self.command(s) for s in self.services},
        }
        self._replace_stack_file(data)

    def _update_stack_file(self, **changes: Any) -> None:
        path = self.state_dir / STACK_FILE
        data = json.loads(path.read_text(encoding="utf-8"))
        data.update(changes)
        self._replace_stack_file(data)

    def _replace_stack_file(self, data: dict[str, Any]) -> None:
        tmp = self.state_dir / f".{STACK_FILE}.tmp"
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.state_dir / STACK_FILE)

    # ------------------------------------------------------------------------- status

    def is_running(self, name: str) -> bool:
        container_id = self.container_id(name)
        if container_id is None:
            return False
        with contextlib.suppress(NotFound):
            return bool(self.client.api.inspect_container(container_id)["State"]["Running"])
        return False

    def status(self, timeout: float = 2.0) -> dict[str, ContainerStatus]:
        """Per service: its container, Docker's view of it and what its URL answers now."""
        result: dict[str, ContainerStatus] = {}
        for name in self.services:
            container_id = self.container_id(name)
            state: dict[str, Any] = {}
            if container_id is not None:
                with contextlib.suppress(NotFound):
                    state = self.client.api.inspect_container(container_id)["State"]
            status = state.get("Status", "missing")
            health: int | str = "-"
            if status == "running":
                health = http_status(self.host, self.ports[name], SERVICES[name].health_path,
                                     timeout=timeout)
            result[name] = ContainerStatus(
                name=name,
                container=self.container_name(name),
                port=self.ports[name],
                id=container_id[:12] if container_id else None,
                state=status,
                docker_health=(state.get("Health") or {}).get("Status"),
                health=health,
            )
        return result

    # ------------------------------------------------------------------------- context

    def __enter__(self) -> DockerStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            self.close()
