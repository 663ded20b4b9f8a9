"""Fault catalog, fault specs ("api:slow=3") and the shared faults.json file.

faults.json maps service -> {fault: value-or-null}. Writers replace it atomically (temp file +
os.replace) under a lock; each service process re-reads it whenever its stat changes, so
faults can be switched on and off while the stack runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from afo_runbook.refstack.services import SERVICE_NAMES, check_service

FaultValue = str | int | float | None
FaultSet = dict[str, FaultValue]
FaultMap = dict[str, FaultSet]

FAULTS_FILE = "faults.json"

log = logging.getLogger("refstack.faults")


@dataclass(frozen=True)
class FaultInfo:
    services: tuple[str, ...]
    default: float | None = None  # numeric parameter's default; None: takes no parameter
    help: str = ""


_ALL = SERVICE_NAMES
FAULTS: dict[str, FaultInfo] = {
    "guard-open": FaultInfo(("api",), help="the guard answers 200 to everyone"),
    "secret-missing": FaultInfo(("api",), help="the guard acts as if no secret is configured"),
    "health-500": FaultInfo(_ALL, help="the health route answers 500"),
    "sse-silent": FaultInfo(("api",), help="SSE: headers, then nothing ever"),
    "sse-comments": FaultInfo(("api",), help="SSE: comment lines only, never an event"),
    "sse-late": FaultInfo(("api",), 15, "SSE: first heartbeat only after N seconds"),
    "sse-late-one-shot": FaultInfo(("api",), 5, "SSE: one heartbeat after N seconds, then "
                                   "the stream ends (as the real service does)"),
    "sse-wrong-type": FaultInfo(("api",), help="SSE: content-type text/plain"),
    "sse-garbage": FaultInfo(("api",), help="SSE: text/event-stream carrying non-SSE bytes"),
    "tarpit": FaultInfo(_ALL, help="every route accepts and never answers"),
    "slow": FaultInfo(_ALL, 3, "every route waits N seconds first"),
    "reset": FaultInfo(_ALL, help="every route resets the TCP connection"),
    "huge-body": FaultInfo(_ALL, 200, "the health route answers N MiB"),
    "down": FaultInfo(_ALL, help="the service process is not running"),
    # What the real AFO service was measured doing; sse-late=5 + sse-double-wrapped +
    # sse-one-shot together are its stream.
    "sse-double-wrapped": FaultInfo(("api",), help="SSE: every event wrapped twice, as the "
                                    "real service sends it: one event whose data lines are "
                                    "themselves SSE framing (event: heartbeat / data: ping)"),
    "sse-one-shot": FaultInfo(("api",), help="SSE: one event, then the stream ends (combines "
                              "with sse-late and sse-double-wrapped)"),
    "route-moved": FaultInfo(("api",), help="the guard and the stream answer 404 at the "
                             "runbook's paths; served at /api/copilot/revalidate/status and "
                             "/api/education/sse instead"),
    "health-degraded": FaultInfo(_ALL, help="the health route answers 200 with a JSON body "
                                 "reporting degraded dependencies (db down)"),
    "sse-gzip": FaultInfo(("api",), help="SSE: Content-Encoding gzip (flushed per event) "
                          "although the client asked for identity"),
    "health-huge-chunked": FaultInfo(_ALL, 200, "the health route answers N MiB, chunked, "
                                     "without Content-Length"),
    "sse-bom": FaultInfo(("api",), help="SSE: a UTF-8 byte order mark before the first event"),
    "sse-type-case": FaultInfo(("api",), help="SSE: Content-Type Text/Event-Stream; "
                               "charset=UTF-8 (mixed case, still valid)"),
}


def parse_value(text: str) -> FaultValue:
    """'3' -> 3, '0.5' -> 0.5, anything else stays a string."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def validate_fault(service: str, fault: str, value: FaultValue = None) -> None:
    check_service(service)
    info = FAULTS.get(fault)
    if info is None:
        raise ValueError(f"unknown fault {fault!r} (known: {', '.join(FAULTS)})")
    if service not in info.services:
        raise ValueError(f"fault {fault!r} does not apply to service {service!r}")
    if value is None:
        return
    if info.default is None:
        raise ValueError(f"fault {fault!r} takes no value")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"fault {fault!r} needs a number, got {value!r}") from None
    if number < 0:
        raise ValueError(f"fault {fault!r} needs a non-negative number, got {value!r}")


def parse_fault(text: str) -> tuple[str, FaultValue]:
    """'slow=3' -> ('slow', 3); 'tarpit' -> ('tarpit', None). Not validated."""
    name, sep, raw = text.partition("=")
    return name.strip(), (parse_value(raw.strip()) if sep else None)


def parse_fault_spec(spec: str) -> tuple[str, str, FaultValue]:
    """'api:slow=3' -> ('api', 'slow', 3), validated."""
    service, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise ValueError(f"fault spec must look like SERVICE:FAULT[=VALUE], got {spec!r}")
    fault, value = parse_fault(rest)
    validate_fault(service.strip(), fault, value)
    return service.strip(), fault, value


def fault_number(faults: Mapping[str, FaultValue], fault: str) -> float:
    """The numeric parameter of an active fault, or its default when none was given."""
    value = faults.get(fault)
    default = FAULTS[fault].default
    if value is None:
        return float(default or 0)
    try:
        return float(value)
    except (TypeError, ValueError):
        return float(default or 0)


def normalise(faults: Mapping[str, Mapping[str, FaultValue]] | None) -> FaultMap:
    """Validated copy of a service -> faults mapping."""
    result: FaultMap = {}
    for service, service_faults in (faults or {}).items():
        for fault, value in service_faults.items():
            validate_fault(service, fault, value)
        result[service] = dict(service_faults)
    return result


# ----------------------------------------------------------------------------- file access


def faults_path(state_dir: Path) -> Path:
    return Path(state_dir) / FAULTS_FILE


def read_faults(state_dir: Path) -> FaultMap:
    path = faults_path(state_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return {str(k): dict(v) for k, v in data.items() if isinstance(v, dict)}


def write_faults(state_dir: Path, faults: Mapping[str, Mapping[str, FaultValue]]) -> None:
    """Replace faults.json atomically so readers never see a half-written file."""
    path = faults_path(state_dir)
    clean = {service: dict(f) for service, f in faults.items() if f}
    fd, tmp = tempfile.mkstemp(prefix=".faults.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(clean, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp's 0600 is for secrets; faults are not
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def edit_faults(state_dir: Path) -> Iterator[FaultMap]:
    """Read-modify-write faults.json under a lock (the CLI and tests may write concurrently)."""
    from filelock import FileLock  # only writers need it; keeps service start-up lean

    with FileLock(str(faults_path(state_dir)) + ".lock", timeout=10):
        faults = read_faults(state_dir)
        yield faults
        write_faults(state_dir, faults)


class FaultReader:
    """A service's view of its own faults; re-reads faults.json only when its stat changes."""

    def __init__(self, state_dir: Path, service: str) -> None:
        self._path = faults_path(state_dir)
        self._service = service
        self._stamp: tuple[int, int, int] | None = None
        self._faults: FaultSet = {}

    def current(self) -> FaultSet:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            self._stamp, self._faults = None, {}
            return self._faults
        # inode changes on every os.replace, mtime/size catch in-place edits by hand.
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                data = json.loads(self._path.read_text(encoding="utf-8"))
                faults = data.get(self._service) or {}
                self._faults = dict(faults) if isinstance(faults, dict) else {}
                self._stamp = stamp
                log.info("faults for %s now: %s", self._service, _describe(self._faults))
            except (OSError, ValueError, AttributeError) as exc:
                # Keep the previous faults; a hand edit in progress must not crash the service.
                log.error("cannot read %s: %s", self._path, exc)
        return self._faults


def _describe(faults: Mapping[str, FaultValue]) -> str:
    if not faults:
        return "none"
    return ", ".join(name if value is None else f"{name}={value}" for name, value in faults.items())


class LiveFaults:
    """Live fault switching through <state_dir>/faults.json, for either kind of stack (the
    services re-read the file; a container sees it through its state-dir mount)."""

    state_dir: Path

    def start_service(self, name: str) -> None:
        raise NotImplementedError

    def stop_service(self, name: str) -> None:
        raise NotImplementedError

    def faults(self) -> FaultMap:
        return read_faults(self.state_dir)

    def set_fault(self, service: str, fault: str, value: FaultValue = None) -> None:
        """Switch a fault on, live. `down` also stops the service."""
        validate_fault(service, fault, value)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with edit_faults(self.state_dir) as faults:
            faults.setdefault(service, {})[fault] = value
        if fault == "down":
            self.stop_service(service)

    def clear_fault(self, service: str, fault: str | None = None) -> None:
        """Switch one fault (or all of `service`'s) off, live. Clearing `down` starts it."""
        check_service(service)
        if fault is not None:
            validate_fault(service, fault)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with edit_faults(self.state_dir) as faults:
            current = faults.get(service, {})
            removed = dict(current) if fault is None else {}
            if fault is None:
                faults.pop(service, None)
            elif fault in current:
                removed[fault] = current.pop(fault)
        if "down" in removed:
            self.start_service(service)
