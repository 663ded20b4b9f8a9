"""Runbook 1.2, security guard checks (20 s): is the secret configured?

    curl -sS                                              .../api/revalidate/status &  # 401/503
    curl -sS -H "X-Internal-Secret: WRONG"                .../api/revalidate/status &  # 401/503
    curl -sS -H "X-Internal-Secret: ${AFO_INTERNAL_SECRET}" .../api/revalidate/status & # 200
    wait

The three requests go out at once. The wrong value is random on every run (never a fixed word
that could be somebody's real secret); the right one comes from the environment or the env
file, never from runbook.toml. Principle 2: a guard problem is a rollback, at once.
"""

import pytest

from afo_runbook.observe import GUARD_CASES

pytestmark = [pytest.mark.observe, pytest.mark.guard, pytest.mark.recovery("rollback")]


@pytest.mark.parametrize("case", GUARD_CASES)
def test_guard(case: str, observed, check) -> None:
    """no-secret and wrong-secret: one of `deny` (401/503), `allow` there means the guard is
    open; right-secret: `allow` (200), 503 there means the service has no secret."""
    check(observed.result(f"guard[{case}]"))
