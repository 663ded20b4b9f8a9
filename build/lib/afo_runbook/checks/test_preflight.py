"""Rollback readiness (runbook principle 3): could a rollback run now?

    pytest -m preflight --runbook-config /etc/afo/runbook.toml

Run it before a deploy, or by hand. It does not touch the target: it checks the env file
(exists, mode 600, defines the secret's variable), the start command (or the container), the
folders a rollback writes to, and the compose file's env_file (runbook 4.3). Each failure
says what to fix.
"""

import pytest

from afo_runbook.preflight import CHECKS

pytestmark = [pytest.mark.preflight]


@pytest.mark.parametrize("item", list(CHECKS))
def test_preflight(item: str, runbook, check) -> None:
    check(CHECKS[item](runbook.config))
