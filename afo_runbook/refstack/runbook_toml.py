"""Render a runbook.toml that points the runbook suite at a running reference stack.

Written by hand (no TOML writer dependency); the output round-trips through tomllib.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from afo_runbook.refstack.services import GUARD_PATH, SECRET_ENV, SECRET_HEADER, SSE_PATH
from afo_runbook.refstack.stack import Stack

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


def render_runbook_toml(stack: Stack) -> str:
    q = toml_string
    env_file = q(stack.env_file) if stack.env_file is not None else '""'
    lines = ["[budgets]"]
    lines += [f"{name} = {seconds}" for name, seconds in BUDGETS.items()]
    lines += [
        "",
        "[[health]]",
        'name = "api"',
        f"url = {q(stack.health_url('api'))}",
        "expect = 200",
        "[[health]]",
        'name = "aux"',
        f"url = {q(stack.health_url('aux'))}",
        "[[health]]",
        'name = "dashboard"',
        f"url = {q(stack.health_url('dashboard'))}",
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
