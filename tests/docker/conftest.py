"""Fixtures for the tests against a real Docker engine (DOCKER_HOST is honoured).

Docker unreachable: every test here is skipped with the reason, unless AFO_REQUIRE_DOCKER=1
or CI=true, where they fail with it instead (CI must never skip them silently).

Everything created carries this session's label (one session per xdist worker), is removed
by the fixture that made it, and a sweep by that label at session end is the safety net.
The base image is built once per run and removed at the end if this run built it; the
workers of one xdist run share it through a reference count under a file lock.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import APIError, DockerException, NotFound
from filelock import FileLock

from afo_runbook.probes.docker import DockerUnavailable, connect
from afo_runbook.refstack.docker_stack import STATE_DIR_LABEL, DockerStack
from afo_runbook.refstack.image import (
    OWNER,
    OWNER_LABEL,
    ImageError,
    build_rootfs,
    busybox_path,
    ensure_image,
    image_tag,
    remove_image,
)
from afo_runbook.refstack.network import free_ports
from afo_runbook.refstack.services import SECRET_ENV, SERVICE_NAMES

# Test modules do not import from here (test folders have no __init__.py); they get
# everything as fixtures.

REPO = Path(__file__).resolve().parents[2]
SESSION_LABEL = "io.afo-runbook.test-session"
SESSION_ID = uuid.uuid4().hex[:12]
SECRET = "tst-" + secrets.token_urlsafe(24)  # random per session, never a literal


def docker_required() -> bool:
    return os.environ.get("AFO_REQUIRE_DOCKER") == "1" or os.environ.get("CI") == "true"


@pytest.fixture(scope="session")
def docker_client(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[docker.DockerClient]:
    """A client for the engine at DOCKER_HOST; skips (or fails, see above) without one."""
    try:
        client = connect(10)
    except DockerUnavailable as exc:
        where = os.environ.get("DOCKER_HOST") or "the default socket"
        reason = f"Docker unreachable at {where}: {exc}"
        if docker_required():
            pytest.fail(f"{reason} (AFO_REQUIRE_DOCKER=1 or CI=true: not skipping)",
                        pytrace=False)
        pytest.skip(reason)
    try:
        yield client
    finally:
        try:
            sweep(client, tmp_path_factory.getbasetemp())
        finally:
            client.close()


def sweep(client: docker.DockerClient, basetemp: Path | None = None) -> None:
    """Remove whatever this session created and a test left behind: containers and
    networks with this session's label, and stack containers whose state dir lies in this
    session's temp dir (the CLI's stacks carry no session label)."""
    label = {"label": f"{SESSION_LABEL}={SESSION_ID}"}
    doomed = {c["Id"] for c in client.api.containers(all=True, filters=label)}
    if basetemp is not None:
        for container in client.api.containers(
                all=True, filters={"label": f"{OWNER_LABEL}={OWNER}"}):
            state_dir = (container.get("Labels") or {}).get(STATE_DIR_LABEL, "")
            if state_dir and Path(state_dir).is_relative_to(basetemp):
                doomed.add(container["Id"])
    for container_id in doomed:
        with suppress(NotFound, APIError):
            client.api.remove_container(container_id, force=True)
    for network in client.api.networks(filters=label):
        with suppress(NotFound, APIError):
            client.api.remove_network(network["Id"])


@pytest.fixture(scope="session")
def static_busybox() -> Path:
    """The host's static busybox (the image's rootfs); skips (or fails, see above) without."""
    try:
        return busybox_path()
    except ImageError as exc:
        reason = f"no static busybox for the reference stack's image: {exc}"
        if docker_required():
            pytest.fail(f"{reason} (AFO_REQUIRE_DOCKER=1 or CI=true: not skipping)",
                        pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def session_labels() -> dict[str, str]:
    return {SESSION_LABEL: SESSION_ID}


@pytest.fixture(scope="session")
def base_image(docker_client: docker.DockerClient, static_busybox: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base image's tag, built once for the whole run (all xdist workers)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this run
    tag = image_tag(build_rootfs())
    counter = root / f"afo-image-{tag.rsplit(':', 1)[1]}.json"
    with FileLock(str(counter) + ".lock", timeout=60):
        data = json.loads(counter.read_text()) if counter.exists() else None
        if data is None:
            existed = bool(docker_client.api.images(name=tag))
            data = {"users": 0, "built_by_us": not existed}
        assert ensure_image(docker_client) == tag
        data["users"] += 1
        counter.write_text(json.dumps(data))
    try:
        yield tag
    finally:
        # Our leftovers first: the last user removes the image only if nothing uses it.
        sweep(docker_client, tmp_path_factory.getbasetemp())
        with FileLock(str(counter) + ".lock", timeout=60):
            data = json.loads(counter.read_text())
            data["users"] -= 1
            if data["users"] == 0:
                counter.unlink()
                if data["built_by_us"]:
                    remove_image(docker_client, tag)
            else:
                counter.write_text(json.dumps(data))


def unique_suffix() -> str:
    return f"-t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    """A dotenv file with the session's secret (mode 0600)."""
    path = tmp_path / ".env.afo"
    path.write_text(f"{SECRET_ENV}={SECRET}\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def secret() -> str:
    return SECRET


@pytest.fixture
def make_docker_stack(
    tmp_path: Path, docker_client: docker.DockerClient, base_image: str,
    session_labels: dict[str, str], env_file: Path,
) -> Iterator[Callable[..., DockerStack]]:
    """Factory for private docker stacks (not started), each removed afterwards."""
    created: list[DockerStack] = []

    def make(**kwargs: Any) -> DockerStack:
        services = kwargs.get("services") or SERVICE_NAMES
        kwargs.setdefault("ports", dict(zip(services, free_ports(len(services)), strict=True)))
        kwargs.setdefault("env_file", env_file)
        kwargs.setdefault("name_suffix", unique_suffix())
        kwargs.setdefault("labels", session_labels)
        kwargs.setdefault("client", docker_client)
        stack = DockerStack(tmp_path / f"dstack{len(created)}", **kwargs)
        created.append(stack)
        return stack

    try:
        yield make
    finally:
        for stack in created:
            stack.stop()


@pytest.fixture(scope="session")
def green_stack(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient,
    base_image: str, session_labels: dict[str, str],
) -> Iterator[DockerStack]:
    """One full running docker stack per session (per xdist worker) for tests that only
    look at it; tests that break something make their own."""
    root = tmp_path_factory.mktemp("green")
    env = root / ".env.afo"
    env.write_text(f"{SECRET_ENV}={SECRET}\n")
    stack = DockerStack(
        root / "state", ports=dict(zip(SERVICE_NAMES, free_ports(3), strict=True)),
        env_file=env, name_suffix=unique_suffix(), labels=session_labels, client=docker_client)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def make_container(
    docker_client: docker.DockerClient, base_image: str, session_labels: dict[str, str],
) -> Iterator[Callable[..., str]]:
    """Run a plain container from the base image (busybox only); returns its id. Removed
    afterwards by id."""
    made: list[tuple[str, str]] = []

    def run(command: list[str], *, name: str | None = None, start: bool = True,
            **kwargs: Any) -> str:
        labels = {**session_labels, **kwargs.pop("labels", {})}
        name = name or f"afo-test{unique_suffix()}"
        # ensure_image again (milliseconds): a concurrent run may have removed its copy.
        image = kwargs.pop("image", None) or ensure_image(docker_client)
        container = docker_client.containers.create(image, command, name=name,
                                                    labels=labels, **kwargs)
        made.append((str(container.id), name))
        if start:
            container.start()
        return str(container.id)

    try:
        yield run
    finally:
        for container_id, name in made:
            with suppress(NotFound, APIError):
                docker_client.api.remove_container(container_id, force=True)
            # A recreate replaced it under the same (unique) name: that one is ours too.
            for other in docker_client.api.containers(
                    all=True, filters={"name": f"^/{re.escape(name)}$",
                                       "label": f"{SESSION_LABEL}={SESSION_ID}"}):
                with suppress(NotFound, APIError):
                    docker_client.api.remove_container(other["Id"], force=True)


@pytest.fixture
def make_network(
    docker_client: docker.DockerClient, session_labels: dict[str, str],
) -> Iterator[Callable[[], str]]:
    """A user-defined bridge network, removed afterwards (after its containers)."""
    made: list[str] = []

    def create() -> str:
        network = docker_client.networks.create(f"afo-test-net{unique_suffix()}",
                                                driver="bridge", labels=session_labels)
        made.append(network.id)
        return str(network.name)

    try:
        yield create
    finally:
        for network_id in made:
            # Request make_network before make_container: its containers are gone by now.
            with suppress(NotFound, APIError, DockerException):
                docker_client.api.remove_network(network_id)


# ----------------------------------------------------------------------------- the suite


@dataclass
class SuiteRun:
    """One `pytest -m ... --runbook-config CFG --runbook-json OUT` run, as a user runs it."""

    rc: int
    output: str
    seconds: float
    json_path: Path

    @property
    def verdict(self) -> dict[str, Any]:
        if not self.json_path.exists():
            raise AssertionError(f"no verdict JSON (rc {self.rc}):\n{self.output[-3000:]}")
        return json.loads(self.json_path.read_text())

    def checks(self) -> dict[str, dict[str, Any]]:
        """The verdict's checks by key (`containers[afo-core-...]`, `guard[right-secret]`)."""
        return {c["key"]: c for c in self.verdict["checks"]}


@pytest.fixture
def run_runbook(tmp_path: Path) -> Callable[..., SuiteRun]:
    """`run_runbook(config_path, "-m", "containers", env={...})` in a subprocess."""
    counter = iter(range(1000))

    def run(config: Path, *args: str, env: dict[str, str] | None = None) -> SuiteRun:
        n = next(counter)
        out = tmp_path / f"verdict-{n}.json"
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith(("PYTEST_", "RUNBOOK_")) and k != SECRET_ENV}
        clean["RUNBOOK_REPORTS"] = str(tmp_path / "reports")  # never the repo's reports/
        clean.update(env or {})
        argv = [sys.executable, "-m", "pytest", *args, "--runbook-config", str(config),
                "--runbook-json", str(out), "-p", "no:cacheprovider", "-n", "0"]
        started = time.monotonic()
        proc = subprocess.run(argv, cwd=REPO, env=clean, capture_output=True, text=True,
                              timeout=120, check=False)
        return SuiteRun(proc.returncode, proc.stdout + proc.stderr,
                        time.monotonic() - started, out)

    return run


@pytest.fixture
def write_toml(tmp_path: Path) -> Callable[[str], Path]:
    """Write TOML text to a fresh runbook.toml (checked to parse); returns its path."""
    counter = iter(range(1000))

    def write(text: str) -> Path:
        tomllib.loads(text)
        path = tmp_path / f"rb{next(counter)}" / "runbook.toml"
        path.parent.mkdir(parents=True)
        path.write_text(text)
        return path

    return write
