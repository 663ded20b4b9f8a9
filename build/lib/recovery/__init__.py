"""Runbook section 3, "recover": actions tied to the decision of section 2.

    rollback.py   3.1 rollback first (security problems): the EXP_007 procedure
    restart.py    3.2 service restart, logs-then-restart (4.1 first), review-restart (SSE)
    confirm.py    3.3 observe again after any action; time-to-recover
    process.py    process mode: stop exactly the tracked pid, start clean, poll ready
    containers.py Docker mode: restart, recreate with the env file, wait ready
    plugin.py     the pytest side: `--recover`, the lock, the incident log, the fixtures
    steps.py      what an action did, step by step, with times
"""
