"""runbook.toml: the runbook's numbers and targets as data (Gatus-style: change config, not code).

Every problem is a `ConfigError` whose message is one line naming the file, the key and what is
wrong; the pytest plugin turns it into exit code 4 before any check runs.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from afo_runbook.decision import ACTIONS, DEFAULT_ROWS, PRIORITIES, SYMPTOMS, DecisionRow

CONFIG_ENV = "RUNBOOK_CONFIG"
MiB = 1024 * 1024


class ConfigError(Exception):
    """A runbook.toml problem, phrased as `<file>: <key>: <what is wrong>`."""


@dataclass(frozen=True)
class Budgets:
    """Seconds. The runbook's own limits are the defaults (sections 1 to 3)."""

    observe: float = 60
    health: float = 10
    guard: float = 20
    sse: float = 20
    containers: float = 10
    decide: float = 300
    recover: float = 600

    def for_group(self, group: str) -> float:
        return float(getattr(self, group))


@dataclass(frozen=True)
class Tls:
    """How an https:// target's certificate is checked (keys on [[health]], [guard], [sse])."""

    ca_file: Path | None = None  # trust this CA bundle instead of the system's
    insecure: bool = False  # do not verify at all (named in the evidence)
    cert_min_days: float | None = None  # expiring sooner: degraded; already expired: failed


@dataclass(frozen=True)
class HealthTarget:
    """Runbook 1.1, with its conditions as data (Gatus-like): every one must hold."""

    name: str
    url: str
    expect: tuple[int, ...] = (200,)  # `expect = 200` or `expect = [200, 204]`
    timeout: float | None = None  # per request; None: half the health budget
    max_body: int = MiB  # the most of a body read to evaluate json/contains
    json: Mapping[str, Any] = field(default_factory=dict)  # dotted path -> equal value
    contains: str | None = None  # a substring the body must contain
    headers: Mapping[str, str] = field(default_factory=dict)  # header (any case) contains
    max_latency_ms: float | None = None  # slower: degraded (a warning), not failed
    tls: Tls = field(default_factory=Tls)

    @property
    def reads_body(self) -> bool:
        return bool(self.json) or self.contains is not None


@dataclass(frozen=True)
class GuardConfig:
    url: str
    header: str = "X-Internal-Secret"
    secret_env: str = "AFO_INTERNAL_SECRET"  # noqa: S105 - the variable's name, not a value
    env_file: Path | None = None
    deny: tuple[int, ...] = (401, 503)
    allow: int = 200
    timeout: float | None = None
    tls: Tls = field(default_factory=Tls)


@dataclass(frozen=True)
class SseConfig:
    url: str
    window: float = 10
    max_bytes: int = MiB
    event: str | None = None  # the expected event name (the runbook's: "heartbeat")
    min_events: int = 1  # with 2 or more, that many must arrive inside the window
    tls: Tls = field(default_factory=Tls)


@dataclass(frozen=True)
class ContainersConfig:
    names: tuple[str, ...]
    required: bool = False
    ports: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    logs_since: float = 3600  # seconds of logs read for 4.1 (the runbook's `--since 1h`)
    log_bytes: int = 256 * 1024
    health_grace: float = 3  # how long a `starting` healthcheck may take inside the budget
    logs: str = "failed"  # collect 4.1 log evidence for "failed" containers or "always"


@dataclass(frozen=True)
class ProcessRecovery:
    start: str
    cwd: Path
    pidfile: Path
    env_file: Path | None
    log_file: Path
    ready_url: str
    stop_timeout: float = 10
    ready_timeout: float = 60


@dataclass(frozen=True)
class DockerRecovery:
    container: str
    env_file: Path | None = None
    ready_url: str | None = None
    ready_timeout: float = 60
    compose_file: Path | None = None
    service: str | None = None


@dataclass(frozen=True)
class RecoveryConfig:
    mode: str = "process"
    lock_file: Path | None = None
    review_grace: float = 300  # seconds before an SSE-silent stream is checked again
    process: ProcessRecovery | None = None
    docker: DockerRecovery | None = None


@dataclass(frozen=True)
class RunbookConfig:
    path: Path
    budgets: Budgets = field(default_factory=Budgets)
    health: tuple[HealthTarget, ...] = ()
    guard: GuardConfig | None = None
    sse: SseConfig | None = None
    containers: ContainersConfig | None = None
    decision: tuple[DecisionRow, ...] = DEFAULT_ROWS
    recovery: RecoveryConfig | None = None
    incident_log: Path | None = None
    reports_dir: Path | None = None

    @property
    def folder(self) -> Path:
        return self.path.parent

    def configured_groups(self) -> dict[str, bool]:
        """Which section-1 groups have a section in this file."""
        return {
            "health": bool(self.health),
            "guard": self.guard is not None,
            "sse": self.sse is not None,
            "containers": self.containers is not None,
        }

    def timeout_for(self, group: str, own: float | None = None) -> float:
        """A network call's own timeout: half its group's budget unless set.

        Half, as the runbook does for SSE (`--max-time 10` inside a 20 s budget): the rest of
        the budget is the margin in which pytest-timeout is only the backstop.
        """
        budget = self.budgets.for_group(group)
        return min(own, budget) if own is not None else budget / 2


# -- reading ---------------------------------------------------------------------------------


_MISSING = object()


class _Table:
    """One TOML table being read: each key is taken once; what is left over is unknown."""

    def __init__(self, source: Path, where: str, data: Any) -> None:
        self.source = source
        self.where = where
        if not isinstance(data, dict):
            self.fail(where, f"must be a table, got {_kind(data)}")
        self.data: dict[str, Any] = dict(data)

    def fail(self, key: str, problem: str) -> None:
        raise ConfigError(f"{self.source}: {key}: {problem}")

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def take(
        self,
        name: str,
        kind: type | tuple[type, ...],
        default: Any = _MISSING,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        if name not in self.data:
            if default is _MISSING:
                self.fail(self.key(name), "missing (required)")
            return default
        value = self.data.pop(name)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # TOML booleans are ints to Python; never accept one where a number is meant.
        if isinstance(value, bool) and bool not in kinds:
            self.fail(self.key(name), f"must be {_kind_names(kinds)}, got a boolean")
        if not isinstance(value, kinds):
            self.fail(self.key(name), f"must be {_kind_names(kinds)}, got {_kind(value)}")
        if check is not None:
            problem = check(value)
            if problem:
                self.fail(self.key(name), problem)
        return value

    def table(self, name: str) -> _Table | None:
        if name not in self.data:
            return None
        return _Table(self.source, self.key(name), self.data.pop(name))

    def done(self) -> None:
        for name in self.data:
            self.fail(self.key(name), "unknown key")


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _kind_names(kinds: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "an array", dict: "a table"}
    if set(kinds) == {int, float}:
        return "a number"
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _status(value: int) -> str | None:
    return None if 100 <= value <= 599 else "must be an HTTP status code (100-599)"


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}, got {value!r}"

    return check


def _nonempty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


# RFC 3986: unreserved, reserved, and "%" (only as the start of a %HH escape).
_URL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                       "-._~:/?#[]@!$&'()*+,;=%")
_HEX = frozenset("0123456789abcdefABCDEF")


def check_url(value: str) -> str | None:
    """Why `value` is not a usable http(s) URL (RFC 3986), or None."""
    for position, char in enumerate(value):
        if char not in _URL_CHARS:
            shown = repr(char) if char.isprintable() else f"U+{ord(char):04X}"
            return (f"has a character not allowed in a URL ({shown} at position {position + 1}; "
                    f"percent-encode it): {value!r}")
        if char == "%" and not (len(value) >= position + 3
                                and set(value[position + 1:position + 3]) <= _HEX):
            return (f"has a '%' that does not start a %HH escape (position {position + 1}): "
                    f"{value!r}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"not a valid URL ({exc}): {value!r}"
    if parts.scheme not in ("http", "https"):
        return f"must be an http:// or https:// URL, got {value!r}"
    if not parts.hostname:
        return f"has no host: {value!r}"
    return None


def _path(source: Path, value: str) -> Path:
    """Relative paths in a config file resolve against that file's folder."""
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (source.parent / path)


def load_config(path: str | os.PathLike[str]) -> RunbookConfig:
    source = Path(path).expanduser().absolute()
    try:
        raw = source.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{source}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return parse_config(source, data)


def parse_config(source: Path, data: dict[str, Any]) -> RunbookConfig:
    top = _Table(source, "", data)
    budgets = _budgets(top.table("budgets"))
    health = _health(source, top)
    guard = _guard(source, top.table("guard"))
    sse = _sse(source, top.table("sse"))
    containers = _containers(top.table("containers"))
    decision = _decision(source, top)
    recovery = _recovery(source, top.table("recovery"))
    incident_log = _single_path(source, top.table("incident_log"), "path")
    reports_dir = _single_path(source, top.table("reports"), "dir")
    top.done()
    config = RunbookConfig(
        path=source,
        budgets=budgets,
        health=health,
        guard=guard,
        sse=sse,
        containers=containers,
        decision=decision,
        recovery=recovery,
        incident_log=incident_log,
        reports_dir=reports_dir,
    )
    _cross_checks(config)
    return config


def _budgets(table: _Table | None) -> Budgets:
    if table is None:
        return Budgets()
    values = {
        name: float(table.take(name, (int, float), getattr(Budgets, name), _positive))
        for name in ("observe", "health", "guard", "sse", "containers", "decide", "recover")
    }
    table.done()
    return Budgets(**values)


def _health(source: Path, top: _Table) -> tuple[HealthTarget, ...]:
    if "health" not in top.data:
        return ()
    entries = top.data.pop("health")
    if not isinstance(entries, list):
        top.fail("health", "must be an array of tables ([[health]]), got " + _kind(entries))
    targets: list[HealthTarget] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries, start=1):
        table = _Table(source, f"health[{index}]", entry)
        name = table.take("name", str, check=_nonempty)
        if name in seen:
            table.fail(table.key("name"), f"duplicate service name {name!r}")
        seen.add(name)
        url = table.take("url", str, check=check_url)
        targets.append(
            HealthTarget(
                name=name,
                url=url,
                expect=_statuses(table, "expect", 200),
                timeout=_opt_float(table, "timeout"),
                max_body=table.take("max_body", int, MiB, _positive),
                json=_json_conditions(table),
                contains=table.take("contains", str, None, _nonempty),
                headers=_header_conditions(table),
                max_latency_ms=_opt_float(table, "max_latency_ms"),
                tls=_tls(source, table, url),
            )
        )
        table.done()
    return tuple(targets)


def _statuses(table: _Table, name: str, default: int) -> tuple[int, ...]:
    """An HTTP status or a non-empty array of them."""
    value = table.take(name, (int, list), default)
    statuses = value if isinstance(value, list) else [value]
    if not statuses:
        table.fail(table.key(name), "must list at least one status")
    for position, status in enumerate(statuses, start=1):
        if isinstance(status, bool) or not isinstance(status, int) or _status(status):
            where = table.key(f"{name}[{position}]") if isinstance(value, list) else table.key(name)
            table.fail(where, "must be an HTTP status code (100-599)")
    return tuple(statuses)


def _json_conditions(table: _Table) -> dict[str, Any]:
    """`json = { status = "ok", "checks.db" = "up" }`: dotted paths into the JSON body."""
    conditions = _flatten(table.take("json", dict, {}))
    for path in conditions:
        if not path or any(not part for part in path.split(".")):
            table.fail(table.key(f"json.{path}"), "must be a dotted path like \"checks.db\"")
    return conditions


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """TOML's `checks.db = "up"` (a nested table) is the dotted path "checks.db"."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _header_conditions(table: _Table) -> dict[str, str]:
    headers = table.take("headers", dict, {})
    for name, value in headers.items():
        if not isinstance(value, str):
            table.fail(table.key(f"headers.{name}"), f"must be a string, got {_kind(value)}")
        if not name.strip() or any(c in name for c in " :\r\n"):
            table.fail(table.key(f"headers.{name}"), "must be a header name")
    return {name.lower(): value for name, value in headers.items()}


def _tls(source: Path, table: _Table, url: str) -> Tls:
    ca_file = table.take("ca_file", str, None, _nonempty)
    insecure = table.take("insecure", bool, False)
    cert_min_days = table.take("cert_min_days", (int, float), None, _positive)
    if (ca_file or insecure or cert_min_days is not None) and not url.startswith("https://"):
        key = "ca_file" if ca_file else "insecure" if insecure else "cert_min_days"
        table.fail(table.key(key), f"only applies to an https:// url, got {url!r}")
    if ca_file and insecure:
        table.fail(table.key("insecure"), "insecure = true and ca_file exclude each other")
    ca_path = _path(source, ca_file) if ca_file else None
    if ca_path is not None and not ca_path.is_file():
        table.fail(table.key("ca_file"), f"no such file: {ca_path}")
    return Tls(ca_file=ca_path, insecure=insecure,
               cert_min_days=None if cert_min_days is None else float(cert_min_days))


def _opt_float(table: _Table, name: str) -> float | None:
    value = table.take(name, (int, float), None, _positive)
    return None if value is None else float(value)


def _guard(source: Path, table: _Table | None) -> GuardConfig | None:
    if table is None:
        return None
    env_file = table.take("env_file", str, ".env.afo", _nonempty)
    deny = table.take("deny", list, [401, 503])
    for position, status in enumerate(deny, start=1):
        if isinstance(status, bool) or not isinstance(status, int) or _status(status):
            table.fail(table.key(f"deny[{position}]"), "must be an HTTP status code (100-599)")
    url = table.take("url", str, check=check_url)
    guard = GuardConfig(
        url=url,
        header=table.take("header", str, "X-Internal-Secret", _nonempty),
        secret_env=table.take("secret_env", str, "AFO_INTERNAL_SECRET", _nonempty),
        env_file=_path(source, env_file),
        deny=tuple(deny),
        allow=table.take("allow", int, 200, _status),
        timeout=_opt_float(table, "timeout"),
        tls=_tls(source, table, url),
    )
    if not guard.deny:
        table.fail(table.key("deny"), "must list at least one status")
    if guard.allow in guard.deny:
        table.fail(table.key("allow"), f"{guard.allow} is also listed in deny")
    table.done()
    return guard


def _sse(source: Path, table: _Table | None) -> SseConfig | None:
    if table is None:
        return None
    url = table.take("url", str, check=check_url)
    sse = SseConfig(
        url=url,
        window=float(table.take("window", (int, float), 10, _positive)),
        max_bytes=table.take("max_bytes", int, MiB, _positive),
        event=table.take("event", str, None, _nonempty),
        min_events=table.take("min_events", int, 1, _positive),
        tls=_tls(source, table, url),
    )
    table.done()
    return sse


def _containers(table: _Table | None) -> ContainersConfig | None:
    if table is None:
        return None
    names = table.take("names", list)
    for position, name in enumerate(names, start=1):
        if not isinstance(name, str) or not name.strip():
            table.fail(table.key(f"names[{position}]"), "must be a non-empty string")
    ports_table = table.table("ports")
    ports: dict[str, tuple[str, ...]] = {}
    if ports_table is not None:
        for name in list(ports_table.data):
            mappings = ports_table.take(name, list)
            for position, mapping in enumerate(mappings, start=1):
                problem = _port_mapping(mapping)
                if problem:
                    ports_table.fail(ports_table.key(f"{name}[{position}]"), problem)
            if name not in names:
                ports_table.fail(ports_table.key(name), "not one of [containers] names")
            ports[name] = tuple(mappings)
    config = ContainersConfig(
        names=tuple(names),
        required=table.take("required", bool, False),
        ports=ports,
        logs_since=float(table.take("logs_since", (int, float), 3600, _positive)),
        log_bytes=table.take("log_bytes", int, 256 * 1024, _positive),
        health_grace=float(table.take("health_grace", (int, float), 3, _positive)),
        logs=table.take("logs", str, "failed", _one_of("failed", "always")),
    )
    if not config.names:
        table.fail(table.key("names"), "must name at least one container")
    table.done()
    return config


def _port_mapping(value: Any) -> str | None:
    """`"8010:8010/tcp"`: host port, container port, optional protocol."""
    if not isinstance(value, str):
        return f"must be a string like \"8010:8010/tcp\", got {_kind(value)}"
    ports, _, proto = value.partition("/")
    host, sep, container = ports.rpartition(":")
    host_port = host.rpartition(":")[2]  # allow "127.0.0.1:8010:8010"
    if not sep or not host_port.isdigit() or not container.isdigit():
        return f"must look like \"8010:8010/tcp\", got {value!r}"
    if proto and proto not in ("tcp", "udp", "sctp"):
        return f"protocol must be tcp, udp or sctp, got {proto!r}"
    return None


def _decision(source: Path, top: _Table) -> tuple[DecisionRow, ...]:
    if "decision" not in top.data:
        return DEFAULT_ROWS
    entries = top.data.pop("decision")
    if not isinstance(entries, list):
        top.fail("decision", "must be an array of tables ([[decision]])")
    rows = {row.symptom: row for row in DEFAULT_ROWS}
    for index, entry in enumerate(entries, start=1):
        table = _Table(source, f"decision[{index}]", entry)
        symptom = table.take("symptom", str)
        if symptom not in SYMPTOMS:
            table.fail(table.key("symptom"), f"unknown symptom {symptom!r} "
                       f"(one of: {', '.join(SYMPTOMS)})")
        base = rows[symptom]
        action = table.take("action", str, base.action)
        if action not in ACTIONS:
            table.fail(table.key("action"), f"unknown action {action!r} "
                       f"(one of: {', '.join(ACTIONS)})")
        priority = table.take("priority", str, base.priority)
        if priority not in PRIORITIES:
            table.fail(table.key("priority"), f"unknown priority {priority!r} "
                       f"(one of: {', '.join(PRIORITIES)})")
        cause = table.take("cause", str, base.cause, _nonempty)
        rows[symptom] = DecisionRow(symptom, cause, priority, action, overridden=True)
        table.done()
    return tuple(rows[s] for s in SYMPTOMS)


def _recovery(source: Path, table: _Table | None) -> RecoveryConfig | None:
    if table is None:
        return None
    mode = table.take("mode", str, "process")
    if mode not in ("process", "docker"):
        table.fail(table.key("mode"), f"must be \"process\" or \"docker\", got {mode!r}")
    lock_file = table.take("lock_file", str, None, _nonempty)
    review_grace = float(table.take("review_grace", (int, float), 300, _positive))
    process = _process_recovery(source, table.table("process"))
    docker = _docker_recovery(source, table.table("docker"))
    table.done()
    if mode == "process" and process is None:
        table.fail(table.key("process"), "missing: mode = \"process\" needs [recovery.process]")
    if mode == "docker" and docker is None:
        table.fail(table.key("docker"), "missing: mode = \"docker\" needs [recovery.docker]")
    return RecoveryConfig(
        mode=mode,
        lock_file=_path(source, lock_file) if lock_file else None,
        review_grace=review_grace,
        process=process,
        docker=docker,
    )


def _process_recovery(source: Path, table: _Table | None) -> ProcessRecovery | None:
    if table is None:
        return None
    env_file = table.take("env_file", str, None, _nonempty)
    process = ProcessRecovery(
        start=table.take("start", str, check=_nonempty),
        cwd=_path(source, table.take("cwd", str, ".", _nonempty)),
        pidfile=_path(source, table.take("pidfile", str, check=_nonempty)),
        env_file=_path(source, env_file) if env_file else None,
        log_file=_path(source, table.take("log_file", str, check=_nonempty)),
        ready_url=table.take("ready_url", str, check=check_url),
        stop_timeout=float(table.take("stop_timeout", (int, float), 10, _positive)),
        ready_timeout=float(table.take("ready_timeout", (int, float), 60, _positive)),
    )
    table.done()
    return process


def _docker_recovery(source: Path, table: _Table | None) -> DockerRecovery | None:
    if table is None:
        return None
    env_file = table.take("env_file", str, None, _nonempty)
    compose_file = table.take("compose_file", str, None, _nonempty)
    docker = DockerRecovery(
        container=table.take("container", str, check=_nonempty),
        env_file=_path(source, env_file) if env_file else None,
        ready_url=table.take("ready_url", str, None, check_url),
        ready_timeout=float(table.take("ready_timeout", (int, float), 60, _positive)),
        compose_file=_path(source, compose_file) if compose_file else None,
        service=table.take("service", str, None, _nonempty),
    )
    table.done()
    return docker


def _single_path(source: Path, table: _Table | None, key: str) -> Path | None:
    if table is None:
        return None
    value = table.take(key, str, check=_nonempty)
    table.done()
    return _path(source, value)


def _cross_checks(config: RunbookConfig) -> None:
    budgets = config.budgets
    for group in ("health", "guard", "sse", "containers"):
        if budgets.for_group(group) > budgets.observe:
            raise ConfigError(
                f"{config.path}: budgets.{group}: {budgets.for_group(group):g} s is longer than "
                f"the whole observe budget ({budgets.observe:g} s)"
            )
    for index, target in enumerate(config.health, start=1):
        if target.timeout is not None and target.timeout >= budgets.health:
            raise ConfigError(
                f"{config.path}: health[{index}].timeout: {target.timeout:g} s must be shorter "
                f"than budgets.health ({budgets.health:g} s)"
            )
    if config.guard and config.guard.timeout is not None and config.guard.timeout >= budgets.guard:
        raise ConfigError(
            f"{config.path}: guard.timeout: {config.guard.timeout:g} s must be shorter than "
            f"budgets.guard ({budgets.guard:g} s)"
        )
    if config.sse and config.sse.window >= budgets.sse:
        raise ConfigError(
            f"{config.path}: sse.window: {config.sse.window:g} s must be shorter than "
            f"budgets.sse ({budgets.sse:g} s)"
        )
