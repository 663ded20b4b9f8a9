"""The reference stack's service catalog: names, default ports, health paths.

Kept free of heavy imports: the stack manager, the CLI and the service processes all use it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    default_port: int
    health_path: str


SERVICES: dict[str, ServiceSpec] = {
    # "api" plays afo-core: health, the secret-guarded revalidate endpoint, the SSE stream.
    "api": ServiceSpec("api", 8010, "/api/health"),
    "aux": ServiceSpec("aux", 8001, "/health"),
    "dashboard": ServiceSpec("dashboard", 3000, "/"),
}
SERVICE_NAMES: tuple[str, ...] = tuple(SERVICES)

GUARD_PATH = "/api/revalidate/status"
SSE_PATH = "/api/thoughts/sse"
# Where the real service moved them (fault route-moved); without it these answer 404.
MOVED_GUARD_PATH = "/api/copilot/revalidate/status"
MOVED_SSE_PATH = "/api/education/sse"
SECRET_HEADER = "X-Internal-Secret"  # noqa: S105 - a header name, not a secret
SECRET_ENV = "AFO_INTERNAL_SECRET"  # noqa: S105 - a variable name, not a secret
# The stack's own readiness probe sends this header so that faults (tarpit, reset, slow, ...)
# do not keep a freshly started service from being recognised as up. Nothing else sends it.
PROBE_HEADER = "X-Refstack-Probe"
# The serve module every service process runs; used to recognise our processes in /proc.
SERVE_MODULE = "afo_runbook.refstack.serve"


# The reference stack is a service under test, not part of the suite: it may live in a venv of
# its own (FastAPI and anyio never load into the pytest processes that observe it).
PYTHON_ENV = "AFO_REFSTACK_PYTHON"
REPO_ROOT = Path(__file__).resolve().parents[2]


def default_python() -> str:
    """The interpreter that runs the services: $AFO_REFSTACK_PYTHON, else the repo's
    .venv-refstack, else this interpreter."""
    chosen = os.environ.get(PYTHON_ENV)
    if chosen:
        return chosen
    candidate = REPO_ROOT / ".venv-refstack" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def check_service(name: str) -> ServiceSpec:
    try:
        return SERVICES[name]
    except KeyError:
        known = ", ".join(SERVICE_NAMES)
        raise ValueError(f"unknown service {name!r} (known: {known})") from None
