"""The reference stack: a small real service stack (FastAPI + uvicorn + sse-starlette) with
switchable faults, for the runbook suite and its own tests to run against.

Modules: `stack` (Stack, free_ports), `cli` (afo-refstack), `serve` (one service process),
`apps` (the FastAPI apps), `faults`, `injector`, `heartbeats`, `rawservers`, `procs`,
`runbook_toml`, `network`, `waiting` (wait_until). Exports resolve lazily so that a service process
importing `afo_runbook.refstack.serve` pays for nothing it does not use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Stack": "afo_runbook.refstack.stack",
    "DockerStack": "afo_runbook.refstack.docker_stack",
    "StackError": "afo_runbook.refstack.stack",
    "free_ports": "afo_runbook.refstack.stack",
    "RawServer": "afo_runbook.refstack.rawservers",
    "render_runbook_toml": "afo_runbook.refstack.runbook_toml",
    "wait_until": "afo_runbook.refstack.waiting",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
