"""Prometheus outputs, used as an operator uses them: `pytest -m observe --runbook-prom PATH`
(node_exporter's textfile collector), `--runbook-pushgateway URL` against a real HTTP receiver
on loopback, and `afo-runbook metrics --prom PATH`. Every file and body is read back with
prometheus-client's own parser."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from prometheus_client.parser import text_string_to_metric_families

from afo_runbook.decision import ACTIONS
from afo_runbook.outputs.prometheus import deployment_name

RUN_METRICS = {"afo_runbook_check_ok", "afo_runbook_check_seconds", "afo_runbook_decision",
               "afo_runbook_observe_seconds", "afo_runbook_last_run_timestamp_seconds"}
TTR = "afo_runbook_recovery_ttr_seconds"
NOT_WRITTEN = "Prometheus text file NOT written to"
PUSH_FAILED = "Pushgateway push to"


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{metric name: {sorted label items: value}}, every family a gauge."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge", family
        samples = out.setdefault(family.name, {})
        for sample in family.samples:
            assert sample.name == family.name
            key = tuple(sorted(sample.labels.items()))
            assert key not in samples, f"duplicate sample {sample}"
            samples[key] = sample.value
    return {name: samples for name, samples in out.items() if samples}


def by(samples: dict[tuple[tuple[str, str], ...], float], *names: str) -> dict[Any, float]:
    """The samples keyed by the values of some labels (one name: the bare value)."""
    keyed = {}
    for key, value in samples.items():
        labels = dict(key)
        picked = tuple(labels[n] for n in names)
        keyed[picked[0] if len(names) == 1 else picked] = value
    assert len(keyed) == len(samples)
    return keyed


def secret_of(stack) -> str:
    return stack.env_file.read_text().strip().split("=", 1)[1]


def one_line_with(text: str, needle: str) -> str:
    lines = [line for line in text.splitlines() if needle in line]
    assert len(lines) == 1, lines
    return lines[0]


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def assert_run_metrics(text: str, result, config: Path) -> dict[str, Any]:
    """Every metric of the text file against the run's verdict JSON."""
    verdict = result.verdict
    metrics = parse(text)
    deployment = f"{config.parent.name}-runbook"
    ttr = (verdict["recovery"] or {}).get("ttr_s")
    expected = RUN_METRICS | ({TTR} if ttr is not None else set())
    assert set(metrics) == expected
    for samples in metrics.values():
        assert {dict(key)["deployment"] for key in samples} == {deployment}
    counted = [c for c in verdict["checks"] if c["outcome"] != "skipped"]
    assert counted, verdict["checks"]
    assert by(metrics["afo_runbook_check_ok"], "check", "group") == {
        (c["key"], c["group"]): 0.0 if c["outcome"] in ("failed", "error") else 1.0
        for c in counted}
    seconds = by(metrics["afo_runbook_check_seconds"], "check", "group")
    assert set(seconds) == {(c["key"], c["group"]) for c in counted}
    for c in counted:  # the probe's own time, from its evidence: the test only waits for it
        timing = c["evidence"]["timing"]
        assert seconds[c["key"], c["group"]] == pytest.approx(
            timing["finished_s"] - timing["started_s"])
    assert by(metrics["afo_runbook_decision"], "decision") == {
        action: float(action == verdict["decision"]) for action in ACTIONS}
    (observe,) = metrics["afo_runbook_observe_seconds"].values()
    assert observe == pytest.approx(verdict["duration_s"], abs=1e-3)
    (last_run,) = metrics["afo_runbook_last_run_timestamp_seconds"].values()
    assert epoch(verdict["decided_at"]) <= last_run <= time.time()
    if TTR in metrics:
        assert list(metrics[TTR].values()) == [verdict["recovery"]["ttr_s"]]
    return metrics


def test_deployment_name_is_the_config_folder_and_stem():
    assert deployment_name("/srv/demo/runbook.toml") == "demo-runbook"
    assert deployment_name(Path("/etc/afo/prod.toml")) == "afo-prod"
    assert deployment_name("/runbook.toml") == "runbook"


@pytest.mark.parametrize("engine", ["0", "2"], ids=["in-process", "xdist"])
def test_a_green_run_as_a_textfile(engine, stack, config_for, run_suite, tmp_path):
    config = config_for()
    prom = tmp_path / "textfile" / "afo_runbook.prom"  # a folder that does not exist yet
    result = run_suite("-m", "observe", "-n", engine, "--runbook-config", str(config),
                       "--runbook-prom", str(prom))
    assert result.rc == 0, result.output
    text = prom.read_text()
    metrics = assert_run_metrics(text, result, config)
    assert by(metrics["afo_runbook_check_ok"], "check") == {
        "health[api]": 1, "health[aux]": 1, "health[dashboard]": 1, "guard[no-secret]": 1,
        "guard[wrong-secret]": 1, "guard[right-secret]": 1, "sse": 1}
    assert by(metrics["afo_runbook_decision"], "decision")["monitor"] == 1
    assert secret_of(stack) not in text
    assert os.listdir(prom.parent) == [prom.name]  # no temporary file left beside it
    assert NOT_WRITTEN not in result.output


def test_a_failing_check_is_0_and_the_decision_is_1_via_the_ini_key(stack, config_for,
                                                                     run_suite, tmp_path):
    stack.set_fault("api", "health-500")
    config = config_for()
    prom = tmp_path / "afo_runbook.prom"
    result = run_suite("-m", "observe", "--runbook-config", str(config),
                       "-o", f"runbook_prom={prom}")
    assert result.rc == 1, result.output
    assert result.failing() == {"health[api]": "service-down"}
    text = prom.read_text()
    metrics = assert_run_metrics(text, result, config)
    ok = by(metrics["afo_runbook_check_ok"], "check")
    assert ok["health[api]"] == 0
    assert ok["health[aux]"] == ok["sse"] == 1
    decision = by(metrics["afo_runbook_decision"], "decision")
    assert decision["restart"] == 1
    assert sum(decision.values()) == 1
    assert secret_of(stack) not in text


def test_a_recovery_gives_its_ttr(stack, recovery_config, run_suite, tmp_path):
    stack.stop_service("api")
    stack.start_service("api", without_secret=True)  # EXP_007: the api lost its secret
    config = recovery_config()
    prom = tmp_path / "afo_runbook.prom"
    result = run_suite("-m", "observe", "--recover", "--runbook-config", str(config),
                       "--runbook-prom", str(prom))
    assert result.verdict["recovery"]["outcome"] == "recovered", result.output
    text = prom.read_text()
    metrics = assert_run_metrics(text, result, config)
    assert TTR in metrics
    assert by(metrics["afo_runbook_decision"], "decision")["rollback"] == 1
    assert by(metrics["afo_runbook_check_ok"], "check")["guard[right-secret]"] == 0
    assert secret_of(stack) not in text


def test_a_failed_recovery_is_written_as_escalate(stack, recovery_config, recovery_dict,
                                                  run_suite, tmp_path):
    """The decision changes after pytest_runbook_verdict: the file has the final one."""
    stack.stop_service("api")
    recovery = recovery_dict(start=shlex.join([sys.executable, "-c", "raise SystemExit(3)"]),
                             log_file=str(tmp_path / "broken.log"),
                             pidfile=str(tmp_path / "broken.pid"))
    config = recovery_config(recovery)
    prom = tmp_path / "afo_runbook.prom"
    result = run_suite("-m", "observe", "--recover", "--runbook-config", str(config),
                       "--runbook-prom", str(prom))
    assert result.rc == 6, result.output
    assert result.verdict["recovery"]["escalated_from"] == "restart"
    metrics = assert_run_metrics(prom.read_text(), result, config)
    decision = by(metrics["afo_runbook_decision"], "decision")
    assert (decision["escalate"], decision["restart"]) == (1, 0)


def test_labels_pass_the_redactor(stack, stack_env_file, config_dict, run_suite, tmp_path):
    """A check key and a deployment name that hold the secret are redacted in the labels."""
    secret = secret_of(stack)
    config = config_dict()
    config["health"].append({"name": secret, "url": stack.health_url("aux")})
    path = tmp_path / secret / "runbook.toml"
    path.parent.mkdir()
    path.write_bytes(tomli_w.dumps(config).encode())
    prom = tmp_path / "afo_runbook.prom"
    result = run_suite("-m", "observe", "--runbook-config", str(path), "--runbook-prom",
                       str(prom))
    assert result.rc == 0, result.output
    text = prom.read_text()
    assert secret not in text
    metrics = parse(text)
    assert {dict(k)["deployment"] for k in metrics["afo_runbook_observe_seconds"]} == {
        "[REDACTED]-runbook"}
    assert "health[[REDACTED]]" in by(metrics["afo_runbook_check_ok"], "check")


class RecordingHandler(BaseHTTPRequestHandler):
    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.pushes.append((self.command, self.path, body.decode()))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_POST = _record

    def log_message(self, *args: Any) -> None:
        pass


class Receiver(ThreadingHTTPServer):
    """A Pushgateway stand-in on loopback: records each push's method, path and body."""

    daemon_threads = True

    def __init__(self) -> None:
        self.pushes: list[tuple[str, str, str]] = []
        super().__init__(("127.0.0.1", 0), RecordingHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_pushgateway_gets_the_same_metrics(stack, config_for, run_suite, tmp_path, receiver):
    stack.set_fault("api", "health-500")
    config = config_for()
    prom = tmp_path / "afo_runbook.prom"
    result = run_suite("-m", "observe", "--runbook-config", str(config), "--runbook-prom",
                       str(prom), "--runbook-pushgateway", receiver.url)
    assert result.rc == 1, result.output
    assert PUSH_FAILED not in result.output
    ((method, path, body),) = receiver.pushes
    assert method == "PUT"
    assert path == f"/metrics/job/afo_runbook/deployment/{config.parent.name}-runbook"
    pushed = assert_run_metrics(body, result, config)
    assert pushed == parse(prom.read_text())
    assert by(pushed["afo_runbook_decision"], "decision")["restart"] == 1
    assert secret_of(stack) not in body


@pytest.mark.parametrize("where", ["under-a-file", "a-directory"])
def test_an_unwritable_textfile_is_one_line_and_the_verdict_stands(where, stack, config_for,
                                                                   run_suite, tmp_path):
    config = config_for()
    if where == "under-a-file":
        (tmp_path / "plain").write_text("a regular file\n")
        prom = tmp_path / "plain" / "afo_runbook.prom"
    else:  # the temporary file is written, the rename over a directory fails
        prom = tmp_path / "out" / "afo_runbook.prom"
        prom.mkdir(parents=True)
    result = run_suite("-m", "observe", "--runbook-config", str(config), "--runbook-prom",
                       str(prom))
    assert result.rc == 0, result.output
    line = one_line_with(result.output, NOT_WRITTEN)
    assert str(prom) in line
    assert line in result.stdout.splitlines()
    assert "decision: monitor" in result.stdout
    assert "Traceback" not in result.output
    assert "INTERNALERROR" not in result.output
    assert result.verdict["decision"] == "monitor"
    if where == "a-directory":
        assert os.listdir(prom.parent) == [prom.name]  # the temporary file was removed


@pytest.fixture
def silent_gateway() -> Iterator[str]:
    """A socket that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()
        assert held, "the run never connected"


def test_a_pushgateway_that_never_answers_is_a_warning(stack, config_for, run_suite,
                                                       silent_gateway):
    config = config_for()
    result = run_suite("-m", "observe", "--runbook-config", str(config),
                       "--runbook-pushgateway", silent_gateway, timeout=60)
    assert result.rc == 0, result.output
    line = one_line_with(result.output, PUSH_FAILED)
    assert line.endswith(f"{PUSH_FAILED} {silent_gateway} failed: no answer within 5 s")
    assert "decision: monitor" in result.stdout
    assert "Traceback" not in result.output


def import_profile_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "RUNBOOK_")) and k != "AFO_INTERNAL_SECRET"}
    return {**env, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPROFILEIMPORTTIME": "1"}


def test_prometheus_client_is_imported_only_when_asked_for(stack, config_for, run_suite,
                                                            tmp_path):
    config = config_for()
    env = import_profile_env()
    plain = run_suite("-m", "observe", "--runbook-config", str(config), env=env)
    assert plain.rc == 0, plain.output
    assert "afo_runbook.controller" in plain.stderr  # the profile is there ...
    assert "prometheus_client" not in plain.stderr  # ... and prometheus_client is not in it
    asked = run_suite("-m", "observe", "--runbook-config", str(config), "--runbook-prom",
                      str(tmp_path / "afo_runbook.prom"), env=env)
    assert asked.rc == 0, asked.output
    assert "prometheus_client" in asked.stderr


# -- afo-runbook metrics --prom ------------------------------------------------------------


def event(kind: str, iid: str, at: float, **fields: Any) -> dict[str, Any]:
    base = {"event": kind, "incident_id": iid, "at": at, "target": "/etc/afo/a/runbook.toml"}
    if kind == "incident":
        base.update(observed_at=at - 0.5, symptoms=["service-down"], security=False)
    else:
        base.update(outcome="recovered", automatic=True, closed=True)
    return {**base, **fields}


def afo_runbook(*args: str | Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "afo_runbook.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_metrics_prom_equals_the_json(tmp_path):
    """Without --now: the text file and the JSON must describe the same moment, although an
    open incident makes availability change every second."""
    now = time.time()
    events = [
        event("incident", "inc-a", now - 2 * 86400, symptoms=["guard-open"], security=True),
        event("recovery", "inc-a", now - 2 * 86400 + 200),
        event("incident", "inc-b", now - 12 * 86400),
        event("recovery", "inc-b", now - 12 * 86400 + 30, automatic=False, outcome="resolved"),
        event("incident", "inc-c", now - 300),  # still open
    ]
    log = tmp_path / "logs" / "afo-incidents.log"
    log.parent.mkdir()
    log.with_suffix(".jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    out, prom = tmp_path / "metrics.json", tmp_path / "textfile" / "targets.prom"
    proc = afo_runbook("metrics", "--log", log, "--window", "1h", "--window", "7d",
                       "--window", "30d", "--json", out, "--prom", prom)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # a security incident, an open one
    assert "| MTTR |" in proc.stdout  # the markdown is still printed
    windows = json.loads(out.read_text())["windows"]
    metrics = parse(prom.read_text())
    assert set(metrics) == {
        "afo_runbook_mttr_seconds", "afo_runbook_availability_ratio",
        "afo_runbook_security_incidents", "afo_runbook_auto_recovery_ratio",
        "afo_runbook_incidents", "afo_runbook_downtime_seconds", "afo_runbook_target_met"}

    def per_window(name: str) -> dict[str, float]:
        return by(metrics[name], "window")

    value = {w["window"]: {k: m["value"] for k, m in w["metrics"].items()} for w in windows}
    assert [w["window"] for w in windows] == ["1h", "7d", "30d"]
    # nothing closed in the last hour, but inc-c is open: counted at its age so far (~300 s)
    assert 299 <= value["1h"]["mttr"] <= 360
    assert per_window("afo_runbook_mttr_seconds") == {
        w: v["mttr"] for w, v in value.items() if v["mttr"] is not None}
    assert per_window("afo_runbook_availability_ratio") == {
        w: v["availability"] / 100 for w, v in value.items()}
    assert value["1h"]["availability"] < 100  # the open incident
    assert per_window("afo_runbook_security_incidents") == {
        w: v["security_incidents"] for w, v in value.items()}
    assert per_window("afo_runbook_auto_recovery_ratio") == {
        w: v["automatic_recovery_rate"] / 100 for w, v in value.items()}
    assert per_window("afo_runbook_incidents") == {
        w["window"]: len(w["incidents"]) for w in windows}
    assert per_window("afo_runbook_downtime_seconds") == {
        w["window"]: w["downtime_s"] for w in windows}
    assert by(metrics["afo_runbook_target_met"], "window", "target") == {
        (w["window"], key): float(m["met"]) for w in windows for key, m in w["metrics"].items()}
    assert os.listdir(prom.parent) == [prom.name]


def test_metrics_prom_unwritable_is_exit_2_in_one_line(tmp_path):
    (tmp_path / "plain").write_text("a regular file\n")
    prom = tmp_path / "plain" / "targets.prom"
    proc = afo_runbook("metrics", "--log", tmp_path / "none.log", "--prom", prom)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"afo-runbook metrics: cannot write {prom}: Not a directory"]
    assert "No incidents in the last 7 days" in proc.stdout
