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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import afo_runbook
from afo_runbook.config import CONFIG_ENV, ConfigError, RunbookConfig, load_config
from afo_runbook.engine import (
    CHECK_GROUP,
    CHECK_KEY,
    Observed,
    in_process_share,
    make_scheduler,
    worker_share,
)
from afo_runbook.results import GROUPS, CheckResult, Deadline
from afo_runbook.secret import Redactor, Secret, SecretUnavailable, load_secret, redactor_for

if TYPE_CHECKING:
    from afo_runbook.verdict import CheckRecord, Verdict

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
OBSERVED = pytest.StashKey[Observed]()
PRESTARTED = pytest.StashKey["RunbookRun"]()
DIST_OURS = pytest.StashKey[bool]()
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
    explicit = getattr(namespace, "runbook_config", None)
    source = "--runbook-config" if explicit else CONFIG_ENV
    _prestart(early_config, Path(explicit or os.environ[CONFIG_ENV]).expanduser(), source)


def _is_runbook_run(config: pytest.Config) -> bool:
    for arg in config.args:
        path = Path(arg.split("::", 1)[0]).resolve()
        if path == CHECKS_DIR or CHECKS_DIR in path.parents or path in CHECKS_DIR.parents:
            return True
    return False


# -- the engine: in-process by default, xdist on request -----------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_cmdline_main(config: pytest.Config):  # type: ignore[no-untyped-def]
    """In-process by default (see afo_runbook.engine); with `-n N` our xdist scheduler.

    Measured on 2 cores, starting two xdist workers costs more (about 1 s) than every probe of
    a healthy stack together, and the probes are I/O-bound threads anyway, so the default is
    no workers. Never inside a worker: xdist calls this hook again there.
    """
    is_worker = hasattr(config, "workerinput")  # set by xdist before it calls this hook
    if not is_worker and _is_runbook_run(config) and getattr(config.option, "numprocesses",
                                                             None):
        if config.option.dist == "no":
            # Each worker gets its whole share at the start, a section never split.
            config.option.dist = "loadscope"
            config.stash[DIST_OURS] = True
        if getattr(config.option, "maxworkerrestart", None) is None:
            # A crashed worker is reported, not replaced: replacing it re-runs the crashing
            # check, and can deadlock the session (pytest-xdist #784, #1378). The checks it
            # never ran are counted as such in the verdict.
            config.option.maxworkerrestart = 0
    yield


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    return make_scheduler(config, log) if config.stash.get(DIST_OURS, False) else None


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


def _group_selected(config: pytest.Config, group: str) -> bool:
    """Does `-m` leave this section's checks in?"""
    return _marks_select(config.getoption("markexpr", "") or "", group)


def _marks_select(markexpr: str, group: str) -> bool:
    """Does this `-m` expression select a section's checks? (They carry `observe`, `<group>`
    and `recovery` markers.)"""
    if not markexpr:
        return True
    try:
        from _pytest.mark.expression import Expression

        return Expression.compile(markexpr).evaluate(
            lambda name, **_: name in {"observe", group, "recovery"})
    except Exception:  # noqa: BLE001 - a private pytest API; when unsure, say selected
        return True


def _early_start(config: pytest.Config, run: RunbookRun, markexpr: str,
                 option: Any = None) -> bool:
    """In-process, the checks the command line surely selects start before collection (the
    collection's imports cost ~0.1 s, a slow stream's wait starts now). Only the plain forms:
    the whole checks folder, no -k, no --deselect, no --lf, no -n; the rest starts once
    collection has named it."""
    option = option or config.option
    if (run.is_worker or getattr(option, "numprocesses", None)
            or getattr(option, "collectonly", False) or getattr(option, "keyword", "")
            or getattr(option, "deselect", None) or getattr(option, "lf", False)
            or getattr(option, "failedfirst", False)):
        return False
    if option is config.option and [Path(a).resolve() for a in config.args] != [CHECKS_DIR]:
        return False
    present = run.config.configured_groups()
    groups = [g for g in GROUPS if present.get(g) and _marks_select(markexpr, g)]
    if not groups:
        return False
    observed = config.stash[OBSERVED] = Observed(run, lambda: [])
    observed.start_groups(groups)
    return True


def _prestart(early_config: pytest.Config, path: Path, source: str) -> None:
    """`pytest -m observe --runbook-config PATH`: start the checks as soon as the command line
    is read, before the conftests, the ini file and the other plugins' configure."""
    namespace = early_config.known_args_namespace
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # a worker is sent its share; it never starts on its own
    markexpr = getattr(namespace, "markexpr", "") or ""
    try:
        run = _new_run(path, source, _marks_select(markexpr, "guard"), time.time(),
                       is_worker=False)
    except (ConfigError, SecretMissing, OSError):
        return  # pytest_configure says what is wrong, with the exit code it deserves
    if _early_start(early_config, run, markexpr, option=namespace):
        early_config.stash[PRESTARTED] = run


class SecretMissing(Exception):
    """The guard is configured and selected, but the suite has no secret."""


def _new_run(path: Path, source: str, guard_selected: bool, started_at: float,
             is_worker: bool) -> RunbookRun:
    """Load the config and the secret; ConfigError or SecretMissing if either is wrong."""
    runbook_config = load_config(path)
    secret = None
    guard = runbook_config.guard
    if guard is not None:
        try:
            secret = load_secret(guard.secret_env, guard.env_file)
        except SecretUnavailable as exc:
            if guard_selected:
                raise SecretMissing(
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
    return RunbookRun(
        config=runbook_config,
        config_source=source,
        secret=secret,
        redactor=redactor,
        started_at=started_at,
        deadline=Deadline.after(runbook_config.budgets.observe, started_at),
        is_worker=is_worker,
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for marker, text in MARKERS.items():
        config.addinivalue_line("markers", f"{marker}: {text}")
    if not _is_runbook_run(config):
        return
    path, source = _config_path(config)
    run = config.stash.get(PRESTARTED, None)
    if run is not None and run.config.path == path.resolve():
        run.config_source = source  # the checks already started, before collection
    else:
        workerinput = getattr(config, "workerinput", None)
        started_at = (float(workerinput.get("runbook_started_at", time.time()))
                      if workerinput is not None else time.time())
        try:
            run = _new_run(path, source, _group_selected(config, "guard"), started_at,
                           is_worker=workerinput is not None)
        except ConfigError as exc:
            raise pytest.UsageError(f"runbook config: {exc}") from None
        except SecretMissing as exc:
            raise pytest.UsageError(str(exc)) from None
        if OBSERVED in config.stash:  # started for another config: not this run's
            del config.stash[OBSERVED]
    json_option = config.getoption("runbook_json") or config.getini("runbook_json")
    run.json_path = Path(json_option).expanduser().absolute() if json_option else None
    config.stash[RUN] = run
    from afo_runbook.controller import RunbookController  # after the checks have started
    from afo_runbook.report import EvidenceRecord

    config.pluginmanager.register(EvidenceRecord(config, run), "afo-runbook-evidence")
    if not run.is_worker:
        _plan_reports(config, run)
        config.pluginmanager.register(RunbookController(config, run), "afo-runbook-controller")
    if OBSERVED not in config.stash:
        _early_start(config, run, config.getoption("markexpr", ""))


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


def pytest_collection_finish(session: pytest.Session) -> None:
    """Every selected check of this process starts now, all sections at once."""
    config = session.config
    run = config.stash.get(RUN, None)
    if run is None or config.option.collectonly or not session.items:
        return
    if run.is_worker:
        config.stash[OBSERVED] = Observed(run, worker_share(config, session))
        return  # its share arrives from the controller; see pytest_runtest_protocol
    observed = config.stash.get(OBSERVED, None)
    if observed is None:
        observed = config.stash[OBSERVED] = Observed(run, in_process_share(session))
    observed.share, observed.fixed = in_process_share(session), True
    observed.start_share()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> None:
    observed = item.config.stash.get(OBSERVED, None)
    if observed is not None:
        observed.start_share()  # under xdist: all this worker was sent so far


class RunbookDegraded(UserWarning):
    """A check passed but is degraded (slower than max_latency_ms, a certificate expiring)."""


# -- fixtures the checks use -------------------------------------------------------------------


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
    """The checks of this process, already running (see afo_runbook.engine)."""
    observed = request.config.stash.get(OBSERVED, None)
    if observed is None:
        observed = request.config.stash[OBSERVED] = Observed(
            runbook, in_process_share(request.session), fixed=True)
    return observed


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
        for warning in result.degraded:  # passed, but the terminal says it is degraded
            import warnings

            warnings.warn(RunbookDegraded(runbook.redactor.text(warning)), stacklevel=2)

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
    degraded: list[str] = []
    if result is not None:
        symptom = result.symptom if report.failed else None
        message = result.message if not result.skipped else result.skipped
        evidence = result.evidence
        degraded = [] if report.failed else result.degraded
    else:
        # The check broke before it could say what it saw: a crash or the timeout backstop.
        from afo_runbook.controller import first_line
        from afo_runbook.verdict import FALLBACK_SYMPTOM

        symptom = FALLBACK_SYMPTOM.get(group) if report.failed else None
        message = first_line(report.longreprtext) or report.outcome
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
        "degraded": [redact.text(d) for d in degraded],
    }
    report.runbook = data  # type: ignore[attr-defined]  # travels through xdist with the report
    # JUnit XML takes properties from the teardown report, which copies the item's.
    if report.failed and symptom:
        item.user_properties.append(("symptom", symptom))
    for warning in data["degraded"]:
        item.user_properties.append(("degraded", warning))
    item.user_properties.append(("runbook_check", data["key"]))
    item.config.hook.pytest_runbook_evidence(item=item, report=report, data=data)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from afo_runbook import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


