"""A thin backend over the docker SDK: find, inspect and read the logs of named containers.

It honours DOCKER_HOST like the docker CLI, holds every API call to a timeout, and says why
Docker is unreachable instead of raising through the caller.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import docker
from docker.errors import DockerException, NotFound

from afo_runbook.logs import LogExcerpt, analyse

COMPOSE_SERVICE_LABEL = "com.docker.compose.service"


class DockerUnavailable(Exception):
    """Docker cannot be reached (no engine, no permission, a hung daemon)."""


def connect(timeout: float) -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=max(1, round(timeout)))
        client.ping()
        return client
    except DockerException as exc:
        raise DockerUnavailable(_cause(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a hung or odd daemon raises requests errors
        raise DockerUnavailable(_cause(exc)) from None


def _cause(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    for needle, cause in (
        ("FileNotFoundError", "no Docker socket"),
        ("No such file", "no Docker socket"),
        ("Connection refused", "connection refused"),
        ("Permission denied", "permission denied on the Docker socket"),
        ("timed out", "the Docker engine did not answer in time"),
        ("Read timed out", "the Docker engine did not answer in time"),
    ):
        if needle in text:
            return f"{cause} ({text[:160]})"
    return text[:200] or type(exc).__name__


@dataclass
class ContainerState:
    """What `docker inspect` says about one container, reduced to what the runbook asks."""

    id: str
    name: str
    image: str
    status: str  # running | exited | dead | paused | created | restarting | removing
    exit_code: int | None
    restart_count: int
    started_at: str
    health: str | None  # healthy | unhealthy | starting | None (no healthcheck)
    health_log: list[str]
    ports: set[str]  # "8010:8010/tcp" (and "127.0.0.1:8010:8010/tcp" when bound to an IP)
    ps_status: str  # the STATUS column of `docker ps`
    ps_ports: str  # the PORTS column of `docker ps`
    labels: dict[str, str] = field(default_factory=dict)

    def ps_row(self) -> str:
        return f"{self.name}\t{self.ps_status}\t{self.ps_ports}"


def find(client: docker.DockerClient, name: str) -> list[str]:
    """Ids of the container named `name`, else of the compose service called `name`."""
    # Docker matches the name filter as a regular expression.
    exact = client.api.containers(all=True, filters={"name": f"^/{re.escape(name)}$"})
    if exact:
        return [c["Id"] for c in exact]
    by_service = client.api.containers(
        all=True, filters={"label": f"{COMPOSE_SERVICE_LABEL}={name}"})
    return sorted(c["Id"] for c in by_service)


def inspect(client: docker.DockerClient, container_id: str) -> ContainerState | None:
    try:
        attrs = client.api.inspect_container(container_id)
        listed = client.api.containers(all=True, filters={"id": container_id})
    except NotFound:
        return None
    state = attrs.get("State") or {}
    health = state.get("Health") or None
    listing = listed[0] if listed else {}
    return ContainerState(
        id=attrs["Id"][:12],
        name=attrs.get("Name", "").lstrip("/"),
        image=(attrs.get("Config") or {}).get("Image", ""),
        status=state.get("Status", "unknown"),
        exit_code=state.get("ExitCode"),
        restart_count=int(attrs.get("RestartCount") or 0),
        started_at=state.get("StartedAt", ""),
        health=health.get("Status") if health else None,
        health_log=[_health_entry(e) for e in (health or {}).get("Log", [])[-3:]],
        ports=published_ports(attrs),
        ps_status=listing.get("Status", state.get("Status", "")),
        ps_ports=format_ps_ports(listing.get("Ports") or []),
        labels=(attrs.get("Config") or {}).get("Labels") or {},
    )


def _health_entry(entry: dict[str, Any]) -> str:
    output = " ".join(str(entry.get("Output", "")).split())[:160]
    return f"exit {entry.get('ExitCode')}: {output}"


def published_ports(attrs: dict[str, Any]) -> set[str]:
    """Published mappings, IPv4 and IPv6 twins folded into one `host:container/proto`."""
    found: set[str] = set()
    ports = ((attrs.get("NetworkSettings") or {}).get("Ports")) or {}
    for container_port, bindings in ports.items():
        for binding in bindings or []:
            host_port = binding.get("HostPort")
            if not host_port:
                continue
            found.add(f"{host_port}:{container_port}")
            ip = binding.get("HostIp", "")
            if ip and ip not in ("0.0.0.0", "::"):  # noqa: S104 - reading, not binding
                shown = f"[{ip}]" if ":" in ip else ip  # IPv6 in brackets, as Docker writes it
                found.add(f"{shown}:{host_port}:{container_port}")
    return found


def format_ps_ports(ports: list[dict[str, Any]]) -> str:
    """The PORTS column as `docker ps` prints it."""
    parts: list[str] = []
    for port in sorted(ports, key=lambda p: (p.get("PrivatePort", 0), p.get("IP", ""))):
        private = f"{port.get('PrivatePort')}/{port.get('Type', 'tcp')}"
        if port.get("PublicPort"):
            ip = port.get("IP", "0.0.0.0")  # noqa: S104 - reading, not binding
            host = f"[{ip}]" if ":" in ip and ip != "::" else ip
            parts.append(f"{host}:{port['PublicPort']}->{private}")
        else:
            parts.append(private)
    seen: list[str] = []
    for part in parts:
        if part not in seen:
            seen.append(part)
    return ", ".join(seen)


MAX_TAIL_LINES = 5000


def read_logs(client: docker.DockerClient, container_id: str, *, since_s: float,
              max_bytes: int) -> LogExcerpt:
    """The last `since_s` seconds of stdout+stderr, at most `max_bytes` of it, newest kept."""
    excerpt = LogExcerpt(source=f"docker logs {container_id[:12]}", since_s=since_s)
    chunks: list[bytes] = []
    try:
        stream = client.api.logs(container_id, stdout=True, stderr=True, stream=True,
                                 follow=False, since=int(time.time() - since_s),
                                 tail=MAX_TAIL_LINES)
        for chunk in stream:
            chunks.append(chunk)
            excerpt.bytes += len(chunk)
            # Keep the newest bytes: drop the oldest once past the bound.
            while excerpt.bytes > max_bytes and len(chunks) > 1:
                excerpt.bytes -= len(chunks.pop(0))
                excerpt.truncated = True
    except Exception as exc:  # noqa: BLE001 - unreadable logs are evidence, not a crash
        excerpt.problem = f"could not read the logs: {_cause(exc)}"
    analyse(excerpt, b"".join(chunks)[-max_bytes:].decode("utf-8", errors="replace"))
    return excerpt
