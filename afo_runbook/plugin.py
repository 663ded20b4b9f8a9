"""The pytest plugin behind `pytest -m observe` (registered as a `pytest11` entry point).

pytest picks its rootdir and ini file before any conftest or plugin option exists, so in
`pytest -m observe --runbook-config /etc/afo/runbook.toml` the path is first taken for a test
path and `[tool.pytest.ini_options]` may be silently dropped. Everything the runbook needs is
therefore done here, not in the ini file: the options exist before the real parse (entry-point
plugins load before it), the checks folder is added when no test path is given, the markers are
registered, the runs default to parallel (xdist, one runbook section per worker), and each check
gets its group's budget as its pytest-timeout.

Options, ini keys and environment mirror each other, as in pytest-timeout:
    --runbook-config PATH   ini runbook_config   env RUNBOOK_CONFIG
    --runbook-json PATH     ini runbook_json
    --recover               ini runbook_recover
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import afo_runbook
from afo_runbook.config import CONFIG_ENV, ConfigError, RunbookConfig, load_config
from afo_runbook.report import option_path
from afo_runbook.results import GROUPS, CheckResult, Deadline
from afo_runbook.secret import Redactor, Secret, SecretUnavailable, load_secret, redactor_for
from afo_runbook.verdict import (
    FALLBACK_SYMPTOM,
    CheckRecord,
    Verdict,
    build_verdict,
    summary_lines,
    write_json,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def _checks_dir() -> Path:
    """The runbook's checks: the repo's checks/ (editable install), or the copy installed as
    afo_runbook.checks (a wheel)."""
    from importlib.util import find_spec

    spec = find_spec("afo_runbook.checks")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))).resolve()
    return REPO_ROOT / "checks"


CHECKS_DIR = _checks_dir()
REPORTS_ENV = "RUNBOOK_REPORTS"
LATEST = "observe-latest"

SECTIONS = {"health": "1.1", "guard": "1.2", "sse": "1.3", "containers": "1.4"}
MARKERS = {
    "observe": "runbook section 1, the 60 s observe phase (every check below)",
    "health": "runbook 1.1 health checks; timeout: budgets.health (10 s)",
    "guard": "runbook 1.2 security guard checks; timeout: budgets.guard (20 s)",
    "sse": "runbook 1.3 SSE stream check; timeout: budgets.sse (20 s)",
    "containers": "runbook 1.4 container checks; timeout: budgets.containers (10 s)",
    "preflight": "rollback readiness (principle 3): could a rollback run now?",
    "recovery(action)": "the recovery action (runbook 3) this check's failure maps to",
}
CHECK_GROUPS = (*GROUPS, "preflight")

RUN = pytest.StashKey["RunbookRun"]()
CHECK_KEY = pytest.StashKey[str]()
CHECK_GROUP = pytest.StashKey[str]()
RESULT = pytest.StashKey[CheckResult]()


@dataclass
class RunbookRun:
    """One runbook run's state, in the controller and in each xdist worker."""

    config: RunbookConfig
    config_source: str
    secret: Secret | None
    redactor: Redactor
    started_at: float
    deadline: Deadline
    is_worker: bool
    records: dict[str, CheckRecord] = field(default_factory=dict)
    verdict: Verdict | None = None
    json_path: Path | None = None
    html_path: Path | None = None  # this run's evidence record, when we chose its name
    reports_dir: Path | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # said at the end of the verdict

    def deselected(self) -> list[dict[str, str]]:
        missing = [g for g, present in self.config.configured_groups().items() if not present]
        return [{"group": g, "reason": f"no [{g}] section in {self.config.path}"
                 if g != "health" else f"no [[health]] tables in {self.config.path}"}
                for g in missing]


# -- options -----------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("runbook", "AFO operations runbook")
    group.addoption("--runbook-config", dest="runbook_config", metavar="PATH", default=None,
                    help=f"runbook.toml to check against (env {CONFIG_ENV}, ini runbook_config; "
                    "default: the runbook.toml beside the checks)")
    group.addoption("--runbook-json", dest="runbook_json", metavar="PATH", default=None,
                    help="write the verdict as JSON to PATH (ini runbook_json)")
    group.addoption("--recover", dest="runbook_recover", action="store_true", default=None,
                    help="after observing, run the decided recovery once (ini runbook_recover)")
    group.addoption("--runbook-reports", dest="runbook_reports", metavar="DIR", default=None,
                    help="folder for the HTML evidence record and verdict JSON (env "
                    f"{REPORTS_ENV}, ini runbook_reports, [reports] dir; default: the "
                    "repo's reports/; 'none' writes none)")
    parser.addini("runbook_config", "runbook.toml to check against", type="string", default="")
    parser.addini("runbook_json", "write the verdict as JSON to this path", type="string",
                  default="")
    parser.addini("runbook_recover", "run the decided recovery after observing", type="bool",
                  default=False)
    parser.addini("runbook_reports", "folder for the HTML evidence record", type="string",
                  default="")


def _explicit_config(config: pytest.Config) -> tuple[str, str] | None:
    if config.option.runbook_config:
        return config.option.runbook_config, "--runbook-config"
    if os.environ.get(CONFIG_ENV):
        return os.environ[CONFIG_ENV], CONFIG_ENV
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser,
                                  args: list[str]) -> None:
    """With a runbook config and no test path, run the runbook's checks wherever we are."""
    namespace = early_config.known_args_namespace
    if getattr(namespace, "file_or_dir", None):
        return
    if not (getattr(namespace, "runbook_config", None) or os.environ.get(CONFIG_ENV)):
        return
    # Even when pytest found an ini file with `testpaths`: it only uses them when started
    # in the rootdir, and a runbook config asks for the runbook's checks.
    args.append(str(CHECKS_DIR))


def _is_runbook_run(config: pytest.Config) -> bool:
    for arg in config.args:
        path = Path(arg.split("::", 1)[0]).resolve()
        if path == CHECKS_DIR or CHECKS_DIR in path.parents or path in CHECKS_DIR.parents:
            return True
    return False


# -- parallel by default -----------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_cmdline_main(config: pytest.Config):  # type: ignore[no-untyped-def]
    """Default to xdist with one runbook section per worker (`-n 0` runs serially).

    Never inside a worker: xdist resets a worker's `numprocesses` to None and calls this hook
    again, and defaulting it there would make every worker start workers of its own.
    """
    is_worker = hasattr(config, "workerinput")  # set by xdist before it calls this hook
    if not is_worker and _is_runbook_run(config) and hasattr(config.option, "numprocesses"):
        if config.option.numprocesses is None and not config.getoption("collectonly"):
            config.option.numprocesses = "auto"
        if config.option.dist == "no":
            # A section's probes run concurrently inside one worker, as the runbook's `&`.
            config.option.dist = "loadfile"
        if getattr(config.option, "maxworkerrestart", None) is None:
            # A crashed worker is reported, not replaced: replacing it re-runs the crashing
            # check, and under --dist loadfile can deadlock the session (pytest-xdist #784,
            # #1378). The checks it never ran are counted as such in the verdict.
            config.option.maxworkerrestart = 0
    yield


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """No more workers than runbook sections, no more than CPUs: workers cost start-up time."""
    if not _is_runbook_run(config) or os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    sections = 4
    with contextlib.suppress(ConfigError, OSError):  # reported properly in pytest_configure
        sections = max(1, sum(load_config(_config_path(config)[0]).configured_groups().values()))
    return max(1, min(len(os.sched_getaffinity(0)), sections))


# -- configure ---------------------------------------------------------------------------------


def _config_path(config: pytest.Config) -> tuple[Path, str]:
    explicit = _explicit_config(config)
    if explicit:
        return Path(explicit[0]).expanduser(), explicit[1]
    ini = config.getini("runbook_config")
    if ini:
        base = config.inipath.parent if config.inipath else config.rootpath
        return base / Path(ini).expanduser(), "ini runbook_config"
    here = Path.cwd() / "runbook.toml"
    return (here if here.is_file() else REPO_ROOT / "runbook.toml"), "default"


def _guard_selected(config: pytest.Config) -> bool:
    """Does `-m` leave the guard checks in? (They carry the `observe` and `guard` markers.)"""
    markexpr = config.getoption("markexpr", "")
    if not markexpr:
        return True
    try:
        from _pytest.mark.expression import Expression

        return Expression.compile(markexpr).evaluate(
            lambda name, **_: name in {"observe", "guard", "recovery"})
    except Exception:  # noqa: BLE001 - a private pytest API; when unsure, require the secret
        return True


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for marker, text in MARKERS.items():
        config.addinivalue_line("markers", f"{marker}: {text}")
    if not _is_runbook_run(config):
        return
    path, source = _config_path(config)
    try:
        runbook_config = load_config(path)
    except ConfigError as exc:
        raise pytest.UsageError(f"runbook config: {exc}") from None

    secret = None
    guard = runbook_config.guard
    if guard is not None:
        try:
            secret = load_secret(guard.secret_env, guard.env_file)
        except SecretUnavailable as exc:
            if _guard_selected(config):
                raise pytest.UsageError(
                    f"runbook config {runbook_config.path}: [guard] is configured but the "
                    f"suite has no secret: {exc}. Export {guard.secret_env} or put it in "
                    f"{guard.env_file}.") from None

    env_files = [guard.env_file if guard else None]
    recovery = runbook_config.recovery
    if recovery and recovery.process:
        env_files.append(recovery.process.env_file)
    if recovery and recovery.docker:
        env_files.append(recovery.docker.env_file)
    redactor = redactor_for(guard.secret_env if guard else None, env_files)

    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        started_at = float(workerinput.get("runbook_started_at", time.time()))
    else:
        started_at = time.time()
    run = RunbookRun(
        config=runbook_config,
        config_source=source,
        secret=secret,
        redactor=redactor,
        started_at=started_at,
        deadline=Deadline.after(runbook_config.budgets.observe, started_at),
        is_worker=workerinput is not None,
    )
    json_option = config.getoption("runbook_json") or config.getini("runbook_json")
    run.json_path = Path(json_option).expanduser().absolute() if json_option else None
    config.stash[RUN] = run
    from afo_runbook.report import EvidenceRecord

    config.pluginmanager.register(EvidenceRecord(config, run), "afo-runbook-evidence")
    if not run.is_worker:
        _plan_reports(config, run)
        config.pluginmanager.register(RunbookController(config, run), "afo-runbook-controller")


def _reports_dir(config: pytest.Config, run: RunbookRun) -> Path | None:
    choice = (config.getoption("runbook_reports") or os.environ.get(REPORTS_ENV)
              or config.getini("runbook_reports"))
    if choice:
        return None if choice.lower() == "none" else Path(choice).expanduser().absolute()
    # Like pytest-html's own paths: relative to where the operator runs it.
    return run.config.reports_dir or Path.cwd() / "reports"


def _plan_reports(config: pytest.Config, run: RunbookRun) -> None:
    """Every observe run leaves a self-contained HTML evidence record (pytest-html) and its
    verdict JSON under reports/, timestamped, and refreshes the `observe-latest` copies."""
    run.reports_dir = _reports_dir(config, run)
    if run.reports_dir is None or config.getoption("collectonly"):
        return
    try:
        run.reports_dir.mkdir(parents=True, exist_ok=True)
        writable = os.access(run.reports_dir, os.W_OK | os.X_OK)
    except OSError:
        writable = False
    if not writable:
        run.notes.append(f"no evidence record written: cannot write to {run.reports_dir} "
                         "(choose another with --runbook-reports DIR)")
        run.reports_dir = None
        return
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(run.started_at))
    stem = f"observe-{stamp}-{os.getpid() % 100000:05d}"  # concurrent runs never collide
    if hasattr(config.option, "htmlpath") and not config.option.htmlpath:
        run.html_path = run.reports_dir / f"{stem}.html"
        config.option.htmlpath = str(run.html_path)
        config.option.self_contained_html = True  # one file, safe to attach to an issue
    if run.json_path is None:
        run.json_path = run.reports_dir / f"{stem}.json"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: every worker measures the observe budget from the controller's start."""
    run = node.config.stash.get(RUN, None)
    if run is not None:
        node.workerinput["runbook_started_at"] = run.started_at


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    run = config.stash.get(RUN, None)
    if run is None:
        return None
    budgets = run.config.budgets
    lines = [
        f"runbook: {run.config.path} ({run.config_source}); "
        f"afo-runbook {afo_runbook.__version__}",
        f"runbook budgets: observe {budgets.observe:g} s, health {budgets.health:g} s, "
        f"guard {budgets.guard:g} s, sse {budgets.sse:g} s, containers {budgets.containers:g} s",
    ]
    if run.secret is not None:
        lines.append(f"runbook secret: {run.secret.env_var} from {run.secret.origin}")
    for item in run.deselected():
        lines.append(f"runbook {SECTIONS[item['group']]} {item['group']} deselected: "
                     f"{item['reason']}")
    return lines


# -- collection --------------------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    run = metafunc.config.stash.get(RUN, None)
    if run is None:
        return
    if "service" in metafunc.fixturenames:
        targets = run.config.health
        metafunc.parametrize("service", targets, ids=[t.name for t in targets])
    if "container" in metafunc.fixturenames:
        names = run.config.containers.names if run.config.containers else ()
        metafunc.parametrize("container", names, ids=list(names))


def _group_of(item: pytest.Item) -> str | None:
    for group in CHECK_GROUPS:
        if item.get_closest_marker(group) is not None:
            return group
    return None


def check_key(item: pytest.Item, group: str) -> str:
    """The observation key of a check item: `health[api]`, `guard[no-secret]`, `sse`, ..."""
    params = item.callspec.params if hasattr(item, "callspec") else {}
    if group == "health" and "service" in params:
        return f"health[{params['service'].name}]"
    if group == "guard" and "case" in params:
        return f"guard[{params['case']}]"
    if group == "containers" and "container" in params:
        return f"containers[{params['container']}]"
    if group == "preflight" and "item" in params:
        return f"preflight[{params['item']}]"
    return group if group == "sse" else f"{group}[{item.name}]"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run = config.stash.get(RUN, None)
    if run is None:
        return
    present = run.config.configured_groups()
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        group = _group_of(item)
        if group is None:
            keep.append(item)
            continue
        if group in present and not present[group]:
            dropped.append(item)
            continue
        item.stash[CHECK_GROUP] = group
        item.stash[CHECK_KEY] = check_key(item, group)
        if group in GROUPS and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(run.config.budgets.for_group(group)))
        keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


# -- fixtures the checks use -------------------------------------------------------------------


class Observed:
    """Section 1's probes for this process: a section's probes start together on first use.

    Under xdist each runbook section runs in one worker (--dist loadfile), so a section's
    targets are probed concurrently there, as the runbook's `curl ... & wait`.
    """

    def __init__(self, run: RunbookRun, items: list[pytest.Item]) -> None:
        self._run = run
        self._wanted: dict[str, set[str]] = {}
        for item in items:
            if CHECK_GROUP in item.stash and item.stash[CHECK_GROUP] in GROUPS:
                self._wanted.setdefault(item.stash[CHECK_GROUP], set()).add(item.stash[CHECK_KEY])
        self._observations: dict[str, Any] = {}

    def result(self, key: str) -> CheckResult:
        group = key.split("[", 1)[0]
        observation = self._observations.get(group)
        if observation is None or key not in observation:
            from afo_runbook.observe import Observation, plan  # only where checks run

            keys = self._wanted.get(group, set()) | {key}
            jobs = plan(self._run.config, self._run.secret, self._run.deadline, groups=[group])
            observation = Observation({k: v for k, v in jobs.items() if k in keys})
            self._observations[group] = observation
        return observation.result(key)


@pytest.fixture(scope="session")
def runbook(request: pytest.FixtureRequest) -> RunbookRun:
    """This run's configuration, secret (hidden) and observe deadline."""
    run = request.config.stash.get(RUN, None)
    if run is None:
        pytest.fail("the runbook's checks need the afo-runbook plugin to be active "
                    "(run them from the checks folder or with --runbook-config)", pytrace=False)
    return run


@pytest.fixture(scope="session")
def observed(request: pytest.FixtureRequest, runbook: RunbookRun) -> Observed:
    return Observed(runbook, request.session.items)


@pytest.fixture
def check(request: pytest.FixtureRequest, runbook: RunbookRun):  # type: ignore[no-untyped-def]
    """Record what a check saw and pass, fail (one clean line) or skip on it."""

    def verify(result: CheckResult) -> None:
        request.node.stash[RESULT] = result
        message = runbook.redactor.text(result.message)
        if result.skipped:
            pytest.skip(runbook.redactor.text(result.skipped))
        if not result.ok:
            pytest.fail(f"{result.symptom}: {message}", pytrace=False)

    return verify


# -- reports -> verdict ------------------------------------------------------------------------


def check_id(item: pytest.Item) -> str:
    """`checks/test_health.py::test_health[api]`, whatever the rootdir turned out to be."""
    try:
        return f"checks/{item.path.relative_to(CHECKS_DIR).as_posix()}::{item.name}"
    except ValueError:
        return item.nodeid


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    run = item.config.stash.get(RUN, None)
    if run is None or CHECK_GROUP not in item.stash:
        return
    if not (report.when == "call" or (report.when == "setup" and not report.passed)):
        return
    group = item.stash[CHECK_GROUP]
    result = item.stash.get(RESULT, None)
    marker = item.get_closest_marker("recovery")
    if result is not None:
        symptom = result.symptom if report.failed else None
        message = result.message if not result.skipped else result.skipped
        evidence = result.evidence
    else:
        # The check broke before it could say what it saw: a crash or the timeout backstop.
        symptom = FALLBACK_SYMPTOM.get(group) if report.failed else None
        message = _first_line(report.longreprtext) or report.outcome
        evidence = {"error": message}
    redact = run.redactor
    data = {
        "id": check_id(item),
        "key": item.stash[CHECK_KEY],
        "group": group,
        "symptom": symptom,
        "message": redact.text(message),
        "evidence": redact.data(evidence),
        "recovery": marker.args[0] if marker and marker.args else None,
    }
    report.runbook = data  # type: ignore[attr-defined]  # travels through xdist with the report
    # JUnit XML takes properties from the teardown report, which copies the item's.
    if report.failed and symptom:
        item.user_properties.append(("symptom", symptom))
    item.user_properties.append(("runbook_check", data["key"]))
    item.config.hook.pytest_runbook_evidence(item=item, report=report, data=data)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("+", "~", "_", "=")) and not (
                line.startswith("[gw") and " -- Python " in line):  # xdist's worker header
            return line[:300]
    return ""


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from afo_runbook import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


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
        outcome = "error" if report.when == "setup" and report.failed else report.outcome
        self.run.records[data["id"]] = CheckRecord(
            id=data["id"], key=data["key"], group=data["group"], outcome=outcome,
            symptom=data["symptom"],
            duration_s=report.duration, message=data["message"], evidence=data["evidence"],
            recovery=data["recovery"])

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtestloop(self, session: pytest.Session):  # type: ignore[no-untyped-def]
        yield
        self.finish()

    def finish(self) -> Verdict:
        """Decide (section 2) once every check has reported; plugins may then act on it."""
        run = self.run
        if run.verdict is None:
            self._never_reported()
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
        for nodeid in sorted(self.expected):
            data = _without_evidence(nodeid=nodeid, message="never ran: the worker running "
                                     "its section stopped before it (see the failures above)")
            if data is not None and data["id"] not in self.run.records:
                self.run.records[data["id"]] = CheckRecord(
                    id=data["id"], key=data["key"], group=data["group"], outcome="error",
                    symptom=data["symptom"], duration_s=0.0, message=data["message"],
                    evidence=data["evidence"], recovery=None)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        verdict = self.finish()
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
        for path in artifacts:
            if path is not None and self.run.redactor.file(path):
                print(f"afo-runbook: WARNING: scrubbed a secret out of {path}")
        self._refresh_latest()

    def _refresh_latest(self) -> None:
        run = self.run
        if run.reports_dir is None or run.html_path is None or not run.html_path.exists():
            return
        for source in (run.html_path, run.json_path):
            if source is not None and source.exists():
                latest = run.reports_dir / f"{LATEST}{source.suffix}"
                tmp = latest.with_name(f".{latest.name}.{os.getpid()}")
                shutil.copyfile(source, tmp)
                os.replace(tmp, latest)


MODULE_GROUPS = {"test_health.py": "health", "test_guard.py": "guard", "test_sse.py": "sse",
                 "test_containers.py": "containers", "test_preflight.py": "preflight"}
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
        message = _first_line(report.longreprtext) or "the check failed without evidence"
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
