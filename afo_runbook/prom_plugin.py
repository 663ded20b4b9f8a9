"""Prometheus outputs of a runbook run (a `pytest11` plugin next to afo_runbook.plugin).

    --runbook-prom PATH         ini runbook_prom          the run as a Prometheus text file
                                                          (node_exporter's textfile collector)
    --runbook-pushgateway URL   ini runbook_pushgateway   the same metrics, pushed (job
                                                          afo_runbook, grouping key deployment)

Written in the controller only (never in an xdist worker), at the very end of the session:
the verdict is decided in pytest_runbook_verdict, but a recovery may still change it there
(a failed one turns it into `escalate`), so the metrics are taken at pytest_sessionfinish,
trylast. Neither output can change the exit code: a failure is one line under the verdict.
prometheus_client is imported only when one of the options is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("runbook", "AFO operations runbook")
    group.addoption("--runbook-prom", dest="runbook_prom", metavar="PATH", default=None,
                    help="write the run's metrics as a Prometheus text file to PATH, "
                    "atomically, for node_exporter's textfile collector (ini runbook_prom)")
    group.addoption("--runbook-pushgateway", dest="runbook_pushgateway", metavar="URL",
                    default=None, help="push the run's metrics to this Pushgateway (job "
                    "afo_runbook, grouping key deployment; 5 s bound; ini "
                    "runbook_pushgateway)")
    parser.addini("runbook_prom", "write the run's metrics as a Prometheus text file here",
                  type="string", default="")
    parser.addini("runbook_pushgateway", "push the run's metrics to this Pushgateway URL",
                  type="string", default="")


def _option(config: pytest.Config, name: str) -> str:
    return (config.getoption(name, None) or config.getini(name) or "").strip()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller holds the verdict
    textfile, gateway = _option(config, "runbook_prom"), _option(config, "runbook_pushgateway")
    if not (textfile or gateway) or config.option.collectonly:
        return
    from afo_runbook.plugin import RUN

    run = config.stash.get(RUN, None)
    if run is None or run.is_worker or run.verdict is None:
        return
    _export(run, textfile, gateway)


def _export(run: Any, textfile: str, gateway: str) -> None:
    """Each failure becomes one note, printed under the verdict (the controller redacts it)."""
    try:
        from afo_runbook.outputs import prometheus
    except ImportError as exc:
        run.notes.append(f"no Prometheus metrics: {exc} (pip install prometheus-client)")
        return
    registry, deployment = prometheus.run_registry(run, run.verdict)
    if textfile:
        path = Path(textfile).expanduser().absolute()
        try:
            prometheus.write_textfile(registry, path)
        except OSError as exc:
            run.notes.append(f"Prometheus text file NOT written to {path}: "
                             f"{exc.strerror or exc}")
    if gateway:
        try:
            prometheus.push(registry, gateway, deployment)
        except prometheus.PushError as exc:
            run.notes.append(f"Pushgateway push to {gateway} failed: {exc}")
