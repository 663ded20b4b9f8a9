"""The controller's side of a runbook run (the only process in-process, the xdist controller
under `-n N`): it collects every check's report, decides once all have reported, writes the
verdict and scrubs the artifacts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from afo_runbook.engine import MODULE_GROUPS
from afo_runbook.report import option_path, verdict_first, write_atomic
from afo_runbook.results import GROUPS, PROBE_ERROR
from afo_runbook.verdict import (
    FALLBACK_SYMPTOM,
    CheckRecord,
    Verdict,
    build_verdict,
    summary_lines,
    write_json,
)

if TYPE_CHECKING:
    from afo_runbook.plugin import RunbookRun

LATEST = "observe-latest"


def first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("+", "~", "_", "=")) and not (
                line.startswith("[gw") and " -- Python " in line):  # xdist's worker header
            return line[:300]
    return ""



class RunbookController:
    """The controller's side of a run (the only process under `-n 0`): collects every check's
    report, decides once all have reported, writes the verdict, scrubs the artifacts."""

    def __init__(self, config: pytest.Config, run: RunbookRun) -> None:
        self.config = config
        self.run = run
        self.expected: set[str] = set()  # node ids of the collected checks

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self.expected.update(ids)  # what the workers will run; the controller collects nothing

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.expected.update(item.nodeid for item in session.items)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, "runbook", None) or _without_evidence(report)
        if not data:
            return
        earlier = self.run.records.get(data["id"])
        if earlier is not None and earlier.failing and not report.failed:
            return  # a failure stands, even if a replacement worker ran the check again
        outcome = ("error" if (report.when == "setup" and report.failed)
                   or data["symptom"] == PROBE_ERROR else report.outcome)
        self.run.records[data["id"]] = CheckRecord(
            id=data["id"], key=data["key"], group=data["group"], outcome=outcome,
            symptom=data["symptom"],
            duration_s=report.duration, message=data["message"], evidence=data["evidence"],
            recovery=data["recovery"], degraded=data.get("degraded", []))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtestloop(self, session: pytest.Session):  # type: ignore[no-untyped-def]
        yield
        self.finish()

    def finish(self) -> Verdict:
        """Decide (section 2) once every check has reported; plugins may then act on it."""
        run = self.run
        if run.verdict is None:
            self._never_reported()
            _our_network_down(run.records)
            run.verdict = build_verdict(
                list(run.records.values()), run.config.decision,
                started_at=run.started_at, duration_s=time.time() - run.started_at,
                observe_budget_s=run.config.budgets.observe, config_path=str(run.config.path),
                deselected=run.deselected())
            self.config.hook.pytest_runbook_verdict(config=self.config, run=run,
                                                    verdict=run.verdict)
        return run.verdict

    def _never_reported(self) -> None:
        """A collected check that never reported (its worker died first) is not a pass."""
        if self.config.option.collectonly:
            return  # nothing was meant to run
        for nodeid in sorted(self.expected):
            data = _without_evidence(nodeid=nodeid, message="never ran: the worker running "
                                     "its section stopped before it (see the failures above)")
            if data is not None and data["id"] not in self.run.records:
                self.run.records[data["id"]] = CheckRecord(
                    id=data["id"], key=data["key"], group=data["group"], outcome="error",
                    symptom=data["symptom"], duration_s=0.0, message=data["message"],
                    evidence=data["evidence"], recovery=None)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        _html_written_whole(self.config, self.run)

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int):  # type: ignore[no-untyped-def]
        verdict = self.finish()  # before the other plugins: incident.md, the report, the exit
        try:
            return (yield)
        finally:
            # Last, so that what they could not write is in it (artifact_errors).
            if self.run.json_path is not None:
                try:
                    write_json(verdict, self.run.json_path, redact=self.run.redactor.data)
                except OSError as exc:
                    self.run.notes.append(f"verdict JSON NOT written to {self.run.json_path}: "
                                          f"{exc.strerror or exc}")
                    self.run.json_path = None

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)  # outermost: print after pytest's summary
    def pytest_terminal_summary(self, terminalreporter: Any):  # type: ignore[no-untyped-def]
        yield
        if self.run.verdict is None:
            return
        terminalreporter.write_sep("=", "runbook verdict", bold=True)
        for text, markup in summary_lines(self.run.verdict):
            terminalreporter.write_line(self.run.redactor.text(text), **markup)
        for note in self.run.notes:
            terminalreporter.write_line(f"note: {self.run.redactor.text(note)}", yellow=True)
        if self.run.json_path is not None:
            terminalreporter.write_line(f"verdict JSON: {self.run.json_path}")
        if self.run.html_path is not None:
            terminalreporter.write_line(f"evidence record: {self.run.html_path} "
                                        f"(latest: {self.run.reports_dir}/{LATEST}.html)")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        # Second line of defence: no artifact leaves with the secret in it. A scrub means the
        # first line failed somewhere, so say so loudly.
        artifacts = [self.run.json_path, option_path(config, "htmlpath"),
                     option_path(config, "xmlpath")]
        html = option_path(config, "htmlpath")
        if html is not None and html.exists():
            verdict_first(html)
        for path in artifacts:
            try:
                if path is not None and self.run.redactor.file(path):
                    print(f"afo-runbook: WARNING: scrubbed a secret out of {path}")
            except OSError as exc:
                print(f"afo-runbook: could not check {path} for the secret: "
                      f"{exc.strerror or exc}")
        self._refresh_latest()

    def _refresh_latest(self) -> None:
        run = self.run
        if run.reports_dir is None or run.html_path is None or not run.html_path.exists():
            return
        for source in (run.html_path, run.json_path):
            if source is not None and source.exists():
                latest = run.reports_dir / f"{LATEST}{source.suffix}"
                try:
                    write_atomic(latest, source.read_bytes())
                except OSError as exc:  # a full disk: one line, never a traceback
                    print(f"afo-runbook: {latest} NOT refreshed: {exc.strerror or exc}")


def _html_written_whole(config: pytest.Config, run: RunbookRun) -> None:
    """pytest-html writes its report in place, and raises on a full disk (a traceback, a torn
    file). Its writer is replaced by an atomic one that notes a failure instead."""
    for plugin in config.pluginmanager.get_plugins():
        if not (hasattr(plugin, "_write_report") and hasattr(plugin, "_report_path")):
            continue

        planned = run.html_path

        def write(rendered: str, plugin: Any = plugin, planned: Path | None = planned) -> None:
            try:
                write_atomic(plugin._report_path, rendered.encode("utf-8"))
                run.html_path = planned  # whole again (pytest-html rewrites it as it goes)
            except OSError as exc:
                note = (f"HTML evidence record NOT written to {plugin._report_path}: "
                        f"{exc.strerror or exc}")
                if note not in run.notes:
                    run.notes.append(note)
                    if run.verdict is not None:
                        run.verdict.artifact_errors.append(note)
                run.html_path = None

        plugin._write_report = write


def _our_network_down(records: dict[str, CheckRecord]) -> None:
    """Every section-1 check failed with "network is unreachable": it is the prober's own
    network (no route from here), not every service at once. That is a probe-error."""
    observed = [r for r in records.values() if r.group in GROUPS and r.outcome != "skipped"]
    if not observed or any(not r.failing for r in observed):
        return
    if all("network is unreachable" in str(r.evidence.get("error") or "").lower()
           for r in observed):
        for record in observed:
            record.symptom, record.outcome = PROBE_ERROR, "error"
            record.message = (f"{record.message} (every target is unreachable from here: the "
                              "prober's own network, not the service)")


KEY_PREFIX = {"test_health": "health", "test_guard": "guard", "test_container": "containers",
              "test_preflight": "preflight"}


def _without_evidence(report: pytest.TestReport | None = None, *, nodeid: str = "",
                      message: str = "") -> dict[str, Any] | None:
    """A check that failed without reporting what it saw (an xdist worker that crashed under
    it, or before it): it still counts, with its group's symptom, so the verdict cannot miss
    it."""
    if report is not None:
        if not report.failed:
            return None
        nodeid = report.nodeid
        message = first_line(report.longreprtext) or "the check failed without evidence"
    path, _, name = nodeid.partition("::")
    group = MODULE_GROUPS.get(Path(path).name)
    if group is None:
        return None
    base, _, param = name.partition("[")
    key = "sse" if group == "sse" else (f"{KEY_PREFIX.get(base, group)}[{param}"
                                        if param else f"{group}[{name}]")
    return {"id": f"checks/{Path(path).name}::{name}", "key": key, "group": group,
            "symptom": FALLBACK_SYMPTOM.get(group), "message": message,
            "evidence": {"error": message}, "recovery": None}
