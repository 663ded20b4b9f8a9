"""Fixtures for the reference stack's own tests: real processes on free loopback ports."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from afo_runbook.refstack.services import SECRET_ENV, SERVICE_NAMES
from afo_runbook.refstack.stack import Stack, free_ports

# Test modules do not import from here (module names "conftest" clash across test dirs
# without __init__.py); everything they need comes as a fixture.

# One random secret per session: never a literal that could leak into fixtures or logs.
SECRET = secrets.token_urlsafe(24)


def _write_env_file(path: Path, secret: str = SECRET) -> Path:
    path.write_text(f"{SECRET_ENV}={secret}\n")
    path.chmod(0o600)
    return path


def _fresh_ports() -> dict[str, int]:
    return dict(zip(SERVICE_NAMES, free_ports(len(SERVICE_NAMES)), strict=True))


@pytest.fixture(scope="session")
def secret() -> str:
    """The internal secret in the env files the fixtures write."""
    return SECRET


@pytest.fixture(scope="session")
def _shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One running stack per session (per xdist worker) for tests that only switch faults."""
    root = tmp_path_factory.mktemp("shared-stack")
    stack = Stack(root / "state", ports=_fresh_ports(), env_file=_write_env_file(root / ".env.afo"))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def stack(_shared_stack: Stack) -> Iterator[Stack]:
    """The shared stack, handed back fault-free and with every service running."""
    try:
        yield _shared_stack
    finally:
        for name in SERVICE_NAMES:
            _shared_stack.clear_fault(name)  # also restarts a service a test took `down`
            if not _shared_stack.is_running(name):
                _shared_stack.start_service(name)


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Factory for private stacks (not started); every one of them is stopped afterwards."""
    created: list[Stack] = []

    def make(**kwargs: Any) -> Stack:
        kwargs.setdefault("ports", _fresh_ports())
        stack = Stack(tmp_path / f"stack{len(created)}", **kwargs)
        created.append(stack)
        return stack

    try:
        yield make
    finally:
        for stack in created:
            stack.stop()


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    """A dotenv file holding the session's secret."""
    return _write_env_file(tmp_path / ".env.afo")


@pytest.fixture
def ports() -> dict[str, int]:
    """Free ports for one stack."""
    return _fresh_ports()
