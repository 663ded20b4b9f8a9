"""A runbook run, and the monthly targets, as Prometheus metrics (prometheus-client).

Two ways out, both built from one `CollectorRegistry` and never hand-written exposition text:

  - a text file for node_exporter's textfile collector (`--runbook-prom PATH`,
    `afo-runbook metrics --prom PATH`), written atomically by `write_to_textfile`: a temporary
    file beside PATH, renamed over it, removed again when the write fails;
  - a push to a Pushgateway (`--runbook-pushgateway URL`): job `afo_runbook`, grouping key
    `deployment`, the whole exchange bounded by PUSH_TIMEOUT_S.

A run's metrics (one registry per run; `deployment` names the runbook config):

    afo_runbook_check_ok{deployment,check,group}       1 passed, 0 failed or error
    afo_runbook_check_seconds{deployment,check,group}  the check's probe time
    afo_runbook_decision{deployment,decision}          1 for the decision, 0 for every other
    afo_runbook_observe_seconds{deployment}            the observe phase
    afo_runbook_recovery_ttr_seconds{deployment}       time to recover (only when one ran)
    afo_runbook_last_run_timestamp_seconds{deployment} when the run finished

Skipped checks are left out (they say nothing about the target). Every label value comes from
a check key, a group, an action or the config's path, and still passes the run's redactor.

This module imports prometheus_client at the top: import it only when an output is asked for.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

from afo_runbook.decision import ACTIONS

JOB = "afo_runbook"
PUSH_TIMEOUT_S = 5.0
PREFIX = "afo_runbook_"


class PushError(Exception):
    """The Pushgateway did not take the metrics; the message is one line."""


def deployment_name(config: Any) -> str:
    """The `deployment` label: the config file's folder name and stem, e.g.
    `/srv/demo/runbook.toml` -> "demo-runbook".

    Takes a RunbookConfig (or a path). The one place that names a deployment, so that a
    `[deployment] name` key can replace it later.
    """
    path = Path(getattr(config, "path", config))
    return f"{path.parent.name}-{path.stem}" if path.parent.name else path.stem


def _gauge(registry: CollectorRegistry, name: str, documentation: str,
           labels: Iterable[str]) -> Gauge:
    return Gauge(PREFIX + name, documentation, list(labels), registry=registry)


def probe_seconds(record: Any) -> float:
    """How long a check took: its probe's own time (the evidence's `timing`, from the engine
    that starts every probe at once), else the test's duration. The test's duration alone
    would be ~0: a test only waits for a probe that started before it."""
    timing = record.evidence.get("timing") if isinstance(record.evidence, dict) else None
    try:
        return max(0.0, round(float(timing["finished_s"]) - float(timing["started_s"]), 3))
    except (TypeError, KeyError, ValueError):
        return float(record.duration_s)


def run_registry(run: Any, verdict: Any, *, finished_at: float | None = None,
                 ) -> tuple[CollectorRegistry, str]:
    """The metrics of one run (a RunbookRun and its final Verdict), and its deployment label."""
    label: Callable[[str], str] = run.redactor.text
    deployment = label(deployment_name(run.config))
    registry = CollectorRegistry()
    per_check = ("deployment", "check", "group")
    check_ok = _gauge(registry, "check_ok", "1 when the runbook check passed, 0 when it failed "
                      "or could not be carried out (skipped checks are left out)", per_check)
    check_seconds = _gauge(registry, "check_seconds", "how long the runbook check's probe took "
                           "(the test only waits for it; a check without a probe: the test)",
                           per_check)
    for record in verdict.checks:
        if record.outcome == "skipped":
            continue
        labels = (deployment, label(record.key), label(record.group))
        check_ok.labels(*labels).set(0 if record.failing else 1)
        check_seconds.labels(*labels).set(probe_seconds(record))
    decision = _gauge(registry, "decision", "1 for the runbook 2.1 decision of the run, 0 for "
                      "every other action", ("deployment", "decision"))
    for action in dict.fromkeys((*ACTIONS, verdict.decision)):
        decision.labels(deployment, label(action)).set(1 if action == verdict.decision else 0)
    _gauge(registry, "observe_seconds", "how long the observe phase took (runbook 1: 60 s)",
           ("deployment",)).labels(deployment).set(verdict.duration_s)
    ttr = (verdict.recovery or {}).get("ttr_s")
    if ttr is not None:
        _gauge(registry, "recovery_ttr_seconds", "time to recover: from the decision to the "
               "green re-observation (runbook 3.3)", ("deployment",)).labels(
                   deployment).set(ttr)
    _gauge(registry, "last_run_timestamp_seconds", "when the runbook run finished (Unix time)",
           ("deployment",)).labels(deployment).set(
               time.time() if finished_at is None else finished_at)
    return registry, deployment


def targets_registry(reports: Iterable[Any]) -> CollectorRegistry:
    """Runbook 6's targets per window (afo_runbook.metrics Reports). A value that is "n/a"
    (no incident closed, no incidents) is left out, as in the JSON's null; percentages
    become ratios (0..1), Prometheus' base unit."""
    registry = CollectorRegistry()
    window = ("window",)
    mttr = _gauge(registry, "mttr_seconds", "mean time to recover over the incidents closed "
                  "in the window (target < 300 s)", window)
    availability = _gauge(registry, "availability_ratio", "1 - downtime / window "
                          "(target > 0.999)", window)
    security = _gauge(registry, "security_incidents", "incidents with a security symptom in "
                      "the window (target 0)", window)
    automatic = _gauge(registry, "auto_recovery_ratio", "incidents closed by an automatic "
                       "recovery / all incidents in the window (target > 0.95)", window)
    incidents = _gauge(registry, "incidents", "incidents in the window, open ones included",
                       window)
    downtime = _gauge(registry, "downtime_seconds", "the union of the incidents' downtime "
                      "inside the window", window)
    met = _gauge(registry, "target_met", "1 when the runbook 6 target is met in the window",
                 ("window", "target"))
    for report in reports:
        name = report.spec or report.label
        value = {metric.key: metric.value for metric in report.metrics}
        if value["mttr"] is not None:
            mttr.labels(name).set(value["mttr"])
        availability.labels(name).set(value["availability"] / 100)
        security.labels(name).set(value["security_incidents"])
        if value["automatic_recovery_rate"] is not None:
            automatic.labels(name).set(value["automatic_recovery_rate"] / 100)
        incidents.labels(name).set(len(report.incidents))
        downtime.labels(name).set(round(report.downtime_s, 3))  # as the JSON has it
        for metric in report.metrics:
            met.labels(name, metric.key).set(1 if metric.met else 0)
    return registry


def write_textfile(registry: CollectorRegistry, path: Path) -> None:
    """Atomically, for node_exporter's textfile collector: prometheus-client writes a temporary
    file beside `path` (not named *.prom, so never collected half-written), renames it over
    `path`, and removes it when the write fails. Raises OSError."""
    path = Path(path)
    with contextlib.suppress(FileExistsError):  # a file in the way: the write says so
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_to_textfile(os.fspath(path), registry)
    finally:
        # Older prometheus-client releases left the temporary file behind on a failed rename.
        leftover = Path(f"{path}.{os.getpid()}.{threading.current_thread().ident}")
        if leftover.is_file():
            leftover.unlink()


def push(registry: CollectorRegistry, url: str, deployment: str, *,
         timeout: float = PUSH_TIMEOUT_S) -> None:
    """Push to the Pushgateway at `url` (PUT /metrics/job/afo_runbook/deployment/<name>).

    The whole exchange is bounded by `timeout`: the socket's timeout covers each read, and a
    gateway that trickles its answer is abandoned when the bound is up (the sending thread is
    a daemon and dies with the process). Raises PushError with one line."""
    failure: list[BaseException] = []

    def send() -> None:
        try:
            push_to_gateway(url, job=JOB, registry=registry,
                            grouping_key={"deployment": deployment}, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - reported as one line, never raised here
            failure.append(exc)

    sender = threading.Thread(target=send, name="afo-runbook pushgateway", daemon=True)
    sender.start()
    sender.join(timeout)
    if sender.is_alive():
        raise PushError(f"no answer within {timeout:g} s")
    if failure:
        raise PushError(_one_line(failure[0], timeout))


def _one_line(exc: BaseException, timeout: float) -> str:
    from urllib.error import HTTPError, URLError

    if isinstance(exc, HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, URLError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason).strip()[:300] or "URL error"
        exc = exc.reason
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    text = str(getattr(exc, "strerror", None) or exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:300]
