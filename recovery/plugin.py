"""The pytest side of runbook 2.2 and 3 (a `pytest11` plugin next to afo_runbook.plugin).

Once the observe run is decided (in the controller only, never in an xdist worker):
  2.2  a run that is not green appends INCIDENT / Evidence / Decision to the incident log; a
       complete green run closes an incident that was still open for the same config;
  3    with `--recover`, the decided action runs once under a lock (a second run at the same
       time reports that a recovery is in progress), the observe phase runs again (3.3), and
       the time-to-recover is printed and logged. A failed recovery is not retried: the
       verdict becomes `escalate` (manual intervention, runbook section 5).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from afo_runbook.results import GROUPS

if TYPE_CHECKING:
    from afo_runbook.config import RunbookConfig
    from afo_runbook.incident_log import IncidentLog

EXIT_ESCALATE = 6  # --recover ran and the target is still red: the dev team takes over
EXIT_RECOVERY_BUSY = 7  # another run holds the recovery lock; this one did not act


def pytest_configure(config: pytest.Config) -> None:
    if not (config.getoption("runbook_recover", None) or config.getini("runbook_recover")):
        return  # the actions load only for a run that may act (they cost start-up time)
    from recovery import restart, rollback

    for module in (rollback, restart):
        if not config.pluginmanager.is_registered(module):
            config.pluginmanager.register(module)


def incident_log_path(config: RunbookConfig) -> Path:
    return config.incident_log or config.folder / "logs" / "afo-incidents.log"


def lock_path(config: RunbookConfig) -> Path:
    recovery = config.recovery
    if recovery is not None and recovery.lock_file is not None:
        return recovery.lock_file
    if recovery is not None and recovery.mode == "process" and recovery.process is not None:
        pidfile = recovery.process.pidfile
        return pidfile.with_name(pidfile.name + ".recovery.lock")
    container = recovery.docker.container if recovery and recovery.docker else "target"
    return config.folder / "run" / f"recovery-{container}.lock"


def _say(config: pytest.Config, text: str, **markup: bool) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(text, **markup)
    else:
        print(text)  # no terminal reporter (e.g. -p no:terminal)


def _complete(run: Any, verdict: Any) -> bool:
    """Did every configured section-1 group report? Only then does green close an incident."""
    present = {group for group, on in run.config.configured_groups().items() if on}
    reported = {check.group for check in verdict.checks if check.group in GROUPS}
    return bool(present) and present <= reported


@pytest.hookimpl
def pytest_runbook_verdict(config: pytest.Config, run: Any, verdict: Any) -> None:
    # Imported here, at the verdict: at start-up they would delay the checks.
    from afo_runbook.incident_log import IncidentLog, IncidentLogError

    log = IncidentLog(incident_log_path(run.config), redact=run.redactor.text)
    target = str(run.config.path)
    try:
        _record_evidence(config, log, target, run, verdict)
    except IncidentLogError as exc:
        verdict.incident_log_error = str(exc)
        _say(config, f"afo-runbook: the incident log cannot be written: {exc}", red=True)
    if verdict.green:
        return
    action = verdict.decision
    wanted = config.getoption("runbook_recover") or config.getini("runbook_recover")
    if not wanted or action in ("monitor", "escalate"):
        verdict.recovery = {"outcome": "not-run", "action": action,
                            "summary": f"would run {action}; nothing was touched "
                                       "(pass --recover to act)"}
        return
    _recover(config, run, verdict, log, target)


def _record_evidence(config: pytest.Config, log: IncidentLog, target: str, run: Any,
                     verdict: Any) -> None:
    """Read the open incident, decide the id and append, as one step under the log's lock:
    two red runs at once on one target open one incident, not two."""
    from afo_runbook.incident_log import incident_event, new_incident_id, recovery_event

    with log.locked():
        now = time.time()
        open_incident = log.open_incident(target)
        _race_delay()
        if not verdict.green:
            incident_id = open_incident["incident_id"] if open_incident else new_incident_id(now)
            verdict.incident_id = incident_id
            # the incident began at its first failing observation, maybe an earlier run's
            run.extras["incident_first_at"] = float(
                open_incident.get("observed_at", verdict.started_at) if open_incident
                else verdict.started_at)
            log.append(incident_event(verdict, target, incident_id, now))
        elif open_incident and _complete(run, verdict):
            owner = recovery_owner(run.config)
            if owner is not None:
                # A recovery in progress owns its incident: it closes it, exactly once.
                _say(config, f"afo-runbook: green, but a recovery is in progress by {owner}; "
                             f"it closes incident {open_incident['incident_id']}", yellow=True)
                return
            # Someone fixed it by hand (or it healed): the incident ends at this observation.
            log.append(recovery_event(
                target, open_incident["incident_id"], now, action="none", outcome="resolved",
                automatic=False, closed=True, ttr_s=None,
                detail="observed green again without an automatic recovery"))


def _race_delay() -> None:
    """Tests only: widen the read-decide-append window, to show it is one step."""
    delay = os.environ.get("AFO_RUNBOOK_TEST_RACE_DELAY")
    if delay:
        time.sleep(float(delay))


def owner_path(config: RunbookConfig) -> Path:
    path = lock_path(config)
    return path.with_name(path.name + ".owner")


def recovery_owner(config: RunbookConfig) -> str | None:
    """"pid N" of the run recovering this target right now, or None.

    Read from the owner file the recovering run writes while it holds the lock (never by
    taking the lock: that could make a starting recovery report "in progress")."""
    try:
        pid = int(owner_path(config).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # a recovery killed before it could clean up: nobody owns it now
    except PermissionError:
        pass  # alive, someone else's
    return f"pid {pid}"


def _recover(config: pytest.Config, run: Any, verdict: Any, log: IncidentLog,
             target: str) -> None:
    action = verdict.decision
    if run.config.recovery is None:
        _escalate(config, verdict, log, target, action, None,
                  f"--recover, but {run.config.path} has no [recovery] section")
        return
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_path(run.config)), timeout=0)
    try:
        lock_path(run.config).parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        verdict.recovery = {"outcome": "in-progress", "action": action,
                            "summary": f"a recovery is already in progress "
                                       f"(lock {lock.lock_file}); nothing was touched"}
        _say(config, f"afo-runbook: {verdict.recovery['summary']}", yellow=True)
        return
    owner = owner_path(run.config)
    with contextlib.suppress(OSError):  # only for the message of a concurrent green run
        owner.write_text(f"{os.getpid()}\n")
    try:
        other = log.recovered_since(target, run.started_at)
        if other is not None:
            verdict.recovery = {"outcome": "done-by-another-run", "action": action,
                                "summary": f"another run recovered this target at "
                                           f"{other['ts']} ({other['action']}); not repeated"}
            return
        _run_action(config, run, verdict, log, target)
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def _run_action(config: pytest.Config, run: Any, verdict: Any, log: IncidentLog,
                target: str) -> None:
    from afo_runbook.incident_log import new_incident_id, recovery_event
    from recovery.confirm import completed_line, confirm
    from recovery.context import RecoveryContext

    action = verdict.decision
    decided_at = time.time()
    context = RecoveryContext(run.config, run.secret, run.redactor,
                              say=lambda text: _say(config, text))
    _say(config, f"afo-runbook: recovering: {action} (runbook 3)", bold=True)
    result = config.hook.pytest_runbook_recover(action=action,
                                                                     context=context)
    if result is None:
        _escalate(config, verdict, log, target, action, None,
                  f"no recovery implements the action {action!r}")
        return
    confirmation = confirm(context) if result.ok else None
    ttr = time.time() - decided_at
    steps = [step.as_json() for step in result.steps]
    recovery: dict[str, Any] = {"action": action, "result": run.redactor.data(result.as_json()),
                                "ttr_s": round(ttr, 3), "decided_at": decided_at}
    if confirmation is not None:  # 3.3: what the observation after the action saw
        recovery["confirmation"] = [
            {"key": r.key, "outcome": r.outcome, "symptom": r.symptom,
             "message": run.redactor.text(r.message)} for r in confirmation.results]
    if result.ok and confirmation is not None and confirmation.green:
        line = completed_line(action, ttr)
        recovery.update(outcome="recovered", summary=f"{line}; {confirmation.summary()}")
        verdict.recovery = recovery
        _say(config, line, green=True, bold=True)
        _log(config, run, log, recovery_event(
            target, verdict.incident_id or new_incident_id(decided_at), time.time(),
            action=action, outcome="recovered", automatic=True, closed=True, ttr_s=ttr,
            detail=confirmation.summary(), steps=steps))
        return
    why = result.error or (confirmation.summary() if confirmation else "the action failed")
    recovery.update(outcome="failed")
    verdict.recovery = recovery
    _escalate(config, verdict, log, target, action, ttr, run.redactor.text(why), steps)


def _escalate(config: pytest.Config, verdict: Any, log: IncidentLog, target: str, action: str,
              ttr: float | None, why: str, steps: list[dict[str, Any]] | None = None) -> None:
    from afo_runbook.incident_log import IncidentLogError, new_incident_id, recovery_event

    recovery = verdict.recovery or {"action": action, "outcome": "failed"}
    recovery["summary"] = f"{action} did not recover the target: {why}; escalate to the " \
                          "dev team (runbook 5), no retry"
    recovery["escalated_from"] = verdict.decision
    verdict.recovery = recovery
    verdict.decision, verdict.priority = "escalate", "immediate"
    _say(config, f"afo-runbook: {recovery['summary']}", red=True, bold=True)
    try:
        log.append(recovery_event(
            target, verdict.incident_id or new_incident_id(time.time()), time.time(),
            action=action, outcome="failed, escalated", automatic=True, closed=False,
            ttr_s=ttr, detail=why, steps=steps or []))
    except IncidentLogError as exc:
        _say(config, f"afo-runbook: the incident log cannot be written: {exc}", red=True)


def _log(config: pytest.Config, run: Any, log: IncidentLog, event: Any) -> None:
    from afo_runbook.incident_log import IncidentLogError

    try:
        log.append(event)
    except IncidentLogError as exc:
        run.verdict.incident_log_error = str(exc)
        _say(config, f"afo-runbook: the incident log cannot be written: {exc}", red=True)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from afo_runbook.plugin import RUN

    run = session.config.stash.get(RUN, None)
    if run is None or run.is_worker or run.verdict is None or not run.verdict.recovery:
        return
    outcome = run.verdict.recovery.get("outcome")
    if run.verdict.decision == "escalate":
        session.exitstatus = EXIT_ESCALATE
    elif outcome == "in-progress":
        session.exitstatus = EXIT_RECOVERY_BUSY
