"""Runbook 1.1, health checks (10 s): every service answers its health URL.

    curl -sS http://localhost:8010/api/health &   # 200
    curl -sS http://localhost:8001/health &       # 200
    curl -sS http://localhost:3000/ &             # 200
    wait

One test per `[[health]]` table in runbook.toml, all probed at once. A status other than the
table's `expect`, no answer at all (refused, DNS, timeout, reset, not HTTP) or a body over its
bound is `service-down`, and the runbook's answer to that is a restart.
"""

import pytest

from afo_runbook.config import HealthTarget

pytestmark = [pytest.mark.observe, pytest.mark.health, pytest.mark.recovery("restart")]


def test_health(service: HealthTarget, observed, check) -> None:
    """`GET <url>` answers `expect` (200)."""
    check(observed.result(f"health[{service.name}]"))
