"""The evidence record (runbook 2.2 and 4.2): what an observe run leaves behind for the
incident issue.

- the pytest-html report (self-contained, one file) opens with the verdict: decision,
  priority, symptoms, the matched decision-table rows, the phase timings against the
  runbook's limits and, after `--recover`, the recovery's steps and time-to-recover;
- every check's row carries its evidence (URL, status, latency, error class, a bounded body
  excerpt; SSE content type, time to first byte, bytes, first events; the `docker ps` table
  and the log excerpt);
- the environment block names the config, the targets, the suite's version and git
  revision, and the host;
- JUnit XML gets the decision as suite properties (each test carries its symptom already);
- a run that was not green writes `incident.md` (runbook 4.2's template) beside the HTML.
Everything is redacted before it is written, and the written files are scrubbed again.
"""

from __future__ import annotations

import html
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import afo_runbook
from afo_runbook.decision import SECURITY_SYMPTOMS
from afo_runbook.verdict import Verdict, iso

LIMITS = {"observe": "budgets.observe", "decide": "budgets.decide", "recover": "budgets.recover"}
EXCERPT_CHARS = 2048
STYLE = """
<style>
.runbook-verdict {border: 2px solid #888; padding: 8px 12px; margin: 8px 0; border-radius: 6px}
.runbook-verdict.green {border-color: #2a2; background: #efe}
.runbook-verdict.red {border-color: #c22; background: #fee}
.runbook-verdict h2 {margin: 0 0 6px 0}
.runbook-verdict table, .runbook-evidence table {border-collapse: collapse; margin: 4px 0}
.runbook-verdict td, .runbook-verdict th, .runbook-evidence td, .runbook-evidence th
  {border: 1px solid #bbb; padding: 2px 6px; text-align: left; vertical-align: top}
.runbook-evidence pre {white-space: pre-wrap; max-height: 24em; overflow: auto; margin: 2px 0}
.runbook-over {color: #c22; font-weight: bold}
</style>
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


# -- per check: the evidence row --------------------------------------------------------------


def evidence_html(data: dict[str, Any]) -> str:
    """One check's evidence as an HTML block (data is already redacted)."""
    parts = [f'<div class="runbook-evidence" data-check="{_e(data["key"])}">',
             f"<p><b>{_e(data['key'])}</b>: {_e(data.get('message') or '')}"]
    if data.get("symptom"):
        parts.append(f" &mdash; symptom <b>{_e(data['symptom'])}</b>")
    if data.get("recovery"):
        parts.append(f" &mdash; maps to recovery <i>{_e(data['recovery'])}</i>")
    parts.append("</p>")
    parts.append(_table(data.get("evidence") or {}))
    parts.append("</div>")
    return "".join(parts)


def _table(evidence: dict[str, Any]) -> str:
    rows = []
    for key, value in evidence.items():
        if value is None or value == [] or value == {}:
            continue
        rows.append(f"<tr><th>{_e(key)}</th><td>{_value(key, value)}</td></tr>")
    return f"<table>{''.join(rows)}</table>" if rows else ""


def _value(key: str, value: Any) -> str:
    if key in ("body_excerpt", "docker_ps") and isinstance(value, str):
        return f"<pre>{_e(value[:EXCERPT_CHARS])}</pre>"
    if key in ("error_lines", "tail", "health_log") and isinstance(value, list):
        return f"<pre>{_e(chr(10).join(str(v) for v in value))}</pre>"
    if isinstance(value, dict):
        return _table(value)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return "".join(_table(v) for v in value)
    if isinstance(value, list):
        return _e(", ".join(str(v) for v in value))
    return _e(value)


# -- the verdict block ------------------------------------------------------------------------


def phase_timings(verdict: Verdict, budgets: Any) -> list[tuple[str, float | None, float]]:
    """(phase, seconds taken, the runbook's limit) for observe, decide and recover."""
    recover = verdict.recovery.get("ttr_s") if verdict.recovery else None
    return [
        ("observe", verdict.duration_s, budgets.observe),
        ("decide", max(0.0, verdict.decided_at - verdict.started_at - verdict.duration_s),
         budgets.decide),
        ("recover", recover, budgets.recover),
    ]


def verdict_html(verdict: Verdict, budgets: Any, incident_md: str | None) -> str:
    colour = "green" if verdict.green and not verdict.failing() else "red"
    title = ("monitor: all checks green" if verdict.decision == "monitor"
             else f"{verdict.decision} (priority {verdict.priority})")
    parts = [VERDICT_START, STYLE, f'<div id="runbook-verdict" class="runbook-verdict {colour}">',
             f"<h2>Runbook verdict: {_e(title)}</h2>",
             f"<p>Observed {_e(iso(verdict.started_at))}; config {_e(verdict.config_path)}"]
    if verdict.incident_id:
        parts.append(f"; incident {_e(verdict.incident_id)}")
    parts.append("</p>")
    if verdict.symptoms:
        parts.append(f"<p>Symptoms: <b>{_e(', '.join(verdict.symptoms))}</b></p>")
    if verdict.rows:
        parts.append("<table><tr><th>symptom</th><th>cause</th><th>priority</th>"
                     "<th>action</th></tr>")
        for row in verdict.rows:
            mark = " (overridden in config)" if row.overridden else ""
            parts.append(f"<tr><td>{_e(row.symptom)}</td><td>{_e(row.cause)}</td>"
                         f"<td>{_e(row.priority)}</td><td>{_e(row.action)}{_e(mark)}</td></tr>")
        parts.append("</table>")
    failing = [c for c in verdict.failing()]
    if failing:
        parts.append("<ul>" + "".join(f"<li>{_e(c.key)}: {_e(c.message)}</li>"
                                      for c in failing) + "</ul>")
    degraded = verdict.degraded()
    if degraded:
        parts.append('<p class="runbook-degraded">Degraded (passed, with a warning):</p><ul>'
                     + "".join(f"<li>{_e(item['message'])}</li>" for item in degraded)
                     + "</ul>")
    from afo_runbook.timeline import svg

    parts.append(svg(verdict.checks, budgets, verdict.duration_s))
    parts.append("<table><tr><th>phase</th><th>took</th><th>runbook limit</th></tr>")
    for phase, seconds, limit in phase_timings(verdict, budgets):
        took = "not run" if seconds is None else f"{seconds:.2f} s"
        over = seconds is not None and seconds > limit
        cls = ' class="runbook-over"' if over else ""
        parts.append(f"<tr><td>{phase}</td><td{cls}>{_e(took)}{' OVER' if over else ''}</td>"
                     f"<td>{limit:g} s</td></tr>")
    parts.append("</table>")
    if verdict.recovery:
        parts.append(_recovery_html(verdict.recovery))
    for item in verdict.deselected:
        parts.append(f"<p><i>deselected: {_e(item['group'])}: {_e(item['reason'])}</i></p>")
    if incident_md:
        parts.append(f"<p>Incident report: {_e(incident_md)}</p>")
    parts.append(f"</div>{VERDICT_END}")
    return "".join(parts)


VERDICT_START, VERDICT_END = "<!-- runbook-verdict -->", "<!-- /runbook-verdict -->"


def verdict_first(path: Path) -> bool:
    """Move the verdict box (pytest-html puts it in the summary, below its environment
    table) to the top of the body: the first thing a reader of the incident issue sees."""
    try:
        page = path.read_text(encoding="utf-8")
    except OSError:
        return False
    start, end = page.find(VERDICT_START), page.find(VERDICT_END)
    body = page.find("<body>")
    if min(start, end, body) < 0 or start < body:
        return False
    block = page[start:end + len(VERDICT_END)]
    page = page[:start] + page[end + len(VERDICT_END):]
    at = page.find("<body>") + len("<body>")
    page = page[:at] + block + page[at:]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True


def _recovery_html(recovery: dict[str, Any]) -> str:
    parts = [f"<h3>Recovery: {_e(recovery.get('outcome'))}</h3>",
             f"<p>{_e(recovery.get('summary', ''))}</p>"]
    result = recovery.get("result") or {}
    steps = result.get("steps") or []
    if steps:
        parts.append("<table><tr><th>step</th><th>took</th><th>ok</th><th>detail</th></tr>")
        for step in steps:
            parts.append(f"<tr><td>{_e(step['name'])}</td><td>{step['duration_s']:.3f} s</td>"
                         f"<td>{'yes' if step['ok'] else 'NO'}</td>"
                         f"<td><pre>{_e(step.get('detail', ''))}</pre></td></tr>")
        parts.append("</table>")
    if recovery.get("ttr_s") is not None:
        parts.append(f"<p>Time to recover: <b>{recovery['ttr_s']:.2f} s</b> "
                     "(runbook EXP_007: 45 s)</p>")
    return "".join(parts)


# -- incident.md (runbook 4.2) ----------------------------------------------------------------

ROOT_CAUSE = {
    "guard-open": "secret missing (the guard lets requests through)",
    "secret-unconfigured": "secret missing",
    "secret-rejected": "secret missing (the service's secret differs from the suite's)",
    "ports-wrong": "container crash (deployment drift: port mapping)",
    "container-exited": "container crash",
    "service-down": "service down",
    "heartbeat-failure": "SSE heartbeat failure",
}
PREVENTION = {
    "secret": "standardise environment variables: check `.env.afo` and the compose file's "
              "`env_file` (runbook 4.3); run `pytest -m preflight` before each deploy",
    "container": "consider a Docker healthcheck for the container (runbook 4.3)",
    "sse": "add heartbeat log monitoring: `grep heartbeat` in the service logs (runbook 4.3)",
    "service": "stronger monitoring: run `pytest -m observe` as the post-deploy gate; add "
               "tests for the failure",
}


def _prevention_key(symptom: str) -> str:
    if symptom in SECURITY_SYMPTOMS:
        return "secret"
    if symptom in ("container-exited", "ports-wrong"):
        return "container"
    return "sse" if symptom == "heartbeat-failure" else "service"


def incident_markdown(verdict: Verdict, html_name: str | None, first_failing_at: float,
                      now: float, service_log: dict[str, Any] | None = None) -> str:
    primary = verdict.symptoms[0] if verdict.symptoms else "service-down"
    recovery = verdict.recovery or {}
    recovered = recovery.get("outcome") == "recovered"
    ended = (recovery.get("decided_at", now) + recovery.get("ttr_s", 0)) if recovered else now
    minutes = max(0.0, ended - first_failing_at) / 60
    duration = f"{minutes:.1f} min" if recovered else f"ongoing, {minutes:.1f} min so far"
    if recovered:
        resolution = recovery.get("action", verdict.decision)
    elif verdict.decision == "escalate":
        resolution = "escalate (manual intervention by the dev team, runbook 5)"
    else:
        resolution = f"none yet (decided: {verdict.decision})"
    evidence = [f"HTML evidence record: {html_name} (attach it to this issue)"] if html_name \
        else []
    for check in verdict.failing():
        evidence.append(f"{check.key}: {check.message}")
        logs = check.evidence.get("logs") if check.evidence else None
        for name, excerpt in (logs or {}).items():
            for line in (excerpt or {}).get("error_lines", [])[-5:]:
                evidence.append(f"{name} log: {line}")
    for line in (recovery.get("result") or {}).get("details", {}).get("logs", {}).get(
            "error_lines", [])[-5:]:
        evidence.append(f"log: {line}")
    if service_log:
        evidence.append(f"service log {service_log['source']}: {service_log['error_count']} "
                        f"error lines, {service_log['heartbeat_lines']} heartbeat lines "
                        "(runbook 4.1)")
        evidence += [f"service log: {line}" for line in service_log["error_lines"][-5:]]
    preventions = sorted({PREVENTION[_prevention_key(s)] for s in verdict.symptoms})
    lines = [
        "## Incident Report",
        "",
        f"**Time:** {iso(first_failing_at)}" + (f" ({verdict.incident_id})"
                                                  if verdict.incident_id else ""),
        f"**Duration:** {duration}",
        f"**Impact:** service downtime {minutes:.1f} min "
        f"(symptoms: {', '.join(verdict.symptoms)})",
        f"**Root Cause:** {ROOT_CAUSE.get(primary, primary)}",
        "**Evidence:**",
        *[f"- {item}" for item in evidence],
        f"**Resolution:** {resolution}",
        "**Prevention:**",
        *[f"- {item}" for item in preventions],
        "",
    ]
    if recovery.get("summary"):
        lines.insert(-1, f"_Recovery: {recovery['summary']}_")
    return "\n".join(lines)


# -- environment ------------------------------------------------------------------------------


def git_revision(folder: Path) -> str:
    try:
        found = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short=12", "HEAD"],
                               capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if found.returncode != 0:
        return "unknown (not a git checkout)"
    dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain"],
                           capture_output=True, text=True, timeout=5, check=False).stdout
    return found.stdout.strip() + (" (with local changes)" if dirty.strip() else "")


def targets(config: Any) -> dict[str, str]:
    found = {f"health {t.name}": t.url for t in config.health}
    if config.guard:
        found["guard"] = config.guard.url
    if config.sse:
        found["sse"] = config.sse.url
    if config.containers:
        found["containers"] = ", ".join(config.containers.names)
    return found


# -- the plugin ---------------------------------------------------------------------------------


class EvidenceRecord:
    """Registered per run (controller and workers) by afo_runbook.plugin."""

    def __init__(self, config: pytest.Config, run: Any) -> None:
        self.config = config
        self.run = run
        self.incident_md: Path | None = None
        self._git: threading.Thread | None = None
        self._git_found: list[str] = []

    @pytest.hookimpl
    def pytest_runbook_evidence(self, item: pytest.Item, report: pytest.TestReport,
                                data: dict[str, Any]) -> None:
        from pytest_html import extras

        report.extras = [*getattr(report, "extras", []),  # type: ignore[attr-defined]
                         extras.html(evidence_html(data))]

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if self.run.is_worker:
            return
        try:
            from pytest_metadata.plugin import metadata_key
        except ImportError:
            return
        metadata = self.config.stash.get(metadata_key, None)
        if metadata is None:
            return
        # Two git calls cost more than the checks of a healthy stack: they run beside them.
        folder = Path(afo_runbook.__file__).resolve().parent.parent
        self._git = threading.Thread(target=lambda: self._git_found.append(git_revision(folder)),
                                     name="git revision", daemon=True)
        self._git.start()
        metadata.update({
            "Runbook config": str(self.run.config.path),
            "Targets": targets(self.run.config),
            "afo-runbook": afo_runbook.__version__,
            "Git revision": "unknown",
            "Host": socket.gethostname(),
        })
        for key, value in list(metadata.items()):
            metadata[key] = self.run.redactor.data(value)

    def _fill_git_revision(self) -> None:
        if self._git is None:
            return
        self._git.join(6)
        from pytest_metadata.plugin import metadata_key

        metadata = self.config.stash.get(metadata_key, None)
        if metadata is not None and self._git_found:
            metadata["Git revision"] = self._git_found[0]

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_report_title(self, report: Any) -> None:
        report.title = f"AFO runbook evidence record: observe run of {iso(self.run.started_at)}"

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list[str], summary: list[str],
                                    postfix: list[str], session: pytest.Session) -> None:
        verdict = self.run.verdict
        if verdict is None:
            return
        name = self.incident_md.name if self.incident_md else None
        prefix.append(self.run.redactor.text(verdict_html(verdict, self.run.config.budgets,
                                                          name)))

    @pytest.hookimpl(tryfirst=True)  # before pytest-html renders the environment
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self._fill_git_revision()
        verdict = self.run.verdict
        if self.run.is_worker or verdict is None:
            return
        self._junit_properties(verdict)
        if verdict.failing() and any(c.group != "preflight" for c in verdict.failing()):
            try:
                self._write_incident_md(verdict)
            except OSError as exc:  # a full disk: a note, never a traceback
                self.incident_md = None
                verdict.artifact_errors.append(
                    f"incident.md NOT written to {exc.filename or 'the reports folder'}: "
                    f"{exc.strerror or exc}")

    def _service_log(self) -> dict[str, Any] | None:
        """4.1 for a process-mode deployment: the service's own log (errors, heartbeats)."""
        recovery = self.run.config.recovery
        if recovery is None or recovery.process is None:
            return None
        from afo_runbook.logs import read_file

        excerpt = read_file(recovery.process.log_file, 256 * 1024)
        return None if excerpt.problem else self.run.redactor.data(excerpt.evidence())

    def _junit_properties(self, verdict: Verdict) -> None:
        try:
            from _pytest.junitxml import xml_key
        except ImportError:
            return
        xml = self.config.stash.get(xml_key, None)
        if xml is None:
            return
        xml.add_global_property("runbook_decision", verdict.decision)
        xml.add_global_property("runbook_priority", verdict.priority)
        xml.add_global_property("runbook_symptoms", ",".join(verdict.symptoms))
        if verdict.incident_id:
            xml.add_global_property("runbook_incident", verdict.incident_id)

    def _write_incident_md(self, verdict: Verdict) -> None:
        html_path = self.run.html_path or option_path(self.config, "htmlpath")
        folder = html_path.parent if html_path else self.run.reports_dir
        if folder is None:
            return
        stem = html_path.stem if html_path else f"observe-{int(verdict.started_at)}"
        first = verdict.started_at
        if verdict.incident_id:
            first = min(first, self.run.extras.get("incident_first_at", first))
        text = incident_markdown(verdict, html_path.name if html_path else None, first,
                                 time.time(), service_log=self._service_log())
        folder.mkdir(parents=True, exist_ok=True)
        self.incident_md = folder / f"{stem}.incident.md"
        _write(self.incident_md, self.run.redactor.text(text))
        _write(folder / "incident.md", self.run.redactor.text(text))
        meta = {"incident_md": str(self.incident_md), "html": str(html_path) if html_path
                else None, "incident_id": verdict.incident_id,
                "title": issue_title(verdict)}
        _write(folder / "incident.json", json.dumps(meta, indent=2) + "\n")


def issue_title(verdict: Verdict) -> str:
    return (f"Incident {verdict.incident_id or ''}: {', '.join(verdict.symptoms)} -> "
            f"{verdict.decision} ({iso(verdict.started_at)})").replace("  ", " ")


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a temp file in the same folder, renamed; removed on failure."""
    write_atomic(path, text.encode("utf-8"))


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def option_path(config: pytest.Config, name: str) -> Path | None:
    """A path option (--html, --junitxml), absolute, or None when not given."""
    value = getattr(config.option, name, None)
    return Path(value).expanduser().absolute() if value else None
