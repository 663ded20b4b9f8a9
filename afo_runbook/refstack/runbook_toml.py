"""Render a runbook.toml that points the runbook suite at a running reference stack
(process mode, or docker mode with [containers] and `[recovery] mode = "docker"`).

Written by hand (no TOML writer dependency); the output round-trips through tomllib.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, cast

from afo_runbook.refstack.services import (
    GUARD_PATH,
    SECRET_ENV,
    SECRET_HEADER,
    SERVICE_NAMES,
    SSE_PATH,
)
from afo_runbook.refstack.stack import Stack

if TYPE_CHECKING:  # the docker SDK is only imported by docker-mode stacks themselves
    from afo_runbook.refstack.docker_stack import DockerStack

BUDGETS = {"observe": 60, "health": 10, "guard": 20, "sse": 20, "containers": 10}
SSE_WINDOW = 10
STOP_TIMEOUT = 10


def toml_string(value: str | Path) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = ['"']
    for ch in str(value):
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in "\b\t\n\f\r":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def render_runbook_toml(stack: Stack | DockerStack) -> str:
    """runbook.toml for a running stack; a docker-mode stack also gets [containers] and a
    docker [recovery] instead of the process one."""
    if getattr(stack, "mode", "process") == "docker":
        return _render_docker(cast("DockerStack", stack))
    stack = cast(Stack, stack)
    q = toml_string
    env_file = _env_file(stack)
    lines = _budget_lines()
    lines += _health_lines(stack, SERVICE_NAMES)
    lines += _guard_sse_lines(stack, env_file)
    lines += [
        "",
        "[recovery]",
        'mode = "process"',
        "",
        "[recovery.process]",
        f"start = {q(shlex.join(stack.command('api')))}",
        f"cwd = {q(stack.state_dir)}",
        f"pidfile = {q(stack.pidfile('api'))}",
        f"env_file = {env_file}",
        f"log_file = {q(stack.log_file('api'))}",
        f"ready_url = {q(stack.health_url('api'))}",
        f"stop_timeout = {STOP_TIMEOUT}",
    ]
    return "\n".join(lines) + "\n"


def _render_docker(stack: DockerStack) -> str:
    """The same observe sections for the stack's services, plus runbook 1.4's containers
    (every one required, with its published port) and recovery by container."""
    q = toml_string
    env_file = _env_file(stack)
    lines = _budget_lines()
    lines += _health_lines(stack, stack.services)
    if "api" in stack.services:
        lines += _guard_sse_lines(stack, env_file)
    names = ", ".join(q(stack.container_name(s)) for s in stack.services)
    ports = ", ".join(f"{q(stack.container_name(s))} = [{q(stack.port_mapping(s))}]"
                      for s in stack.services)
    lines += [
        "",
        "[containers]",
        f"names = [{names}]",
        f"ports = {{ {ports} }}",
        "required = true",
    ]
    if "api" in stack.services:
        lines += [
            "",
            "[recovery]",
            'mode = "docker"',
            "",
            "[recovery.docker]",
            f"container = {q(stack.container_name('api'))}",
            f"env_file = {env_file}",
            f"ready_url = {q(stack.health_url('api'))}",
        ]
    return "\n".join(lines) + "\n"


def _env_file(stack: Stack | DockerStack) -> str:
    return toml_string(stack.env_file) if stack.env_file is not None else '""'


def _budget_lines() -> list[str]:
    return ["[budgets]", *(f"{name} = {seconds}" for name, seconds in BUDGETS.items())]


def _health_lines(stack: Stack | DockerStack, services: Iterable[str]) -> list[str]:
    lines = [""]
    for name in services:
        lines += ["[[health]]", f"name = {toml_string(name)}",
                  f"url = {toml_string(stack.health_url(name))}"]
        if name == "api":
            lines.append("expect = 200")
    return lines


def _guard_sse_lines(stack: Stack | DockerStack, env_file: str) -> list[str]:
    q = toml_string
    return [
        "",
        "[guard]",
        f"url = {q(stack.urls['api'] + GUARD_PATH)}",
        f"header = {q(SECRET_HEADER)}",
        f"secret_env = {q(SECRET_ENV)}",
        f"env_file = {env_file}",
        "deny = [401, 503]",
        "allow = 200",
        "",
        "[sse]",
        f"url = {q(stack.urls['api'] + SSE_PATH)}",
        f"window = {SSE_WINDOW}",
        'event = "heartbeat"',
    ]
