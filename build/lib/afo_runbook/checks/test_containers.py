"""Runbook 1.4, container status (10 s): every container Up, port mappings as expected.

    docker ps --format 'table {{.Names}}\t{{.Status}}\t{{.Ports}}'

One test per name in `[containers] names` (a container name or a compose service name). A
container that is not running, keeps restarting or is unhealthy is `container-exited`: read
its logs (4.1, collected into the evidence), then restart. Ports other than `[containers]
ports` are `ports-wrong`. Docker unreachable skips with the reason, or fails when
`required = true`.
"""

import pytest

pytestmark = [pytest.mark.observe, pytest.mark.containers,
              pytest.mark.recovery("logs-then-restart")]


def test_container(container: str, observed, check) -> None:
    """The container (or compose service) is running, healthy, with the expected ports."""
    check(observed.result(f"containers[{container}]"))
