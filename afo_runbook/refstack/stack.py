"""Start, watch and stop the reference stack: one OS process per service.

State lives in the state dir: <name>.pid (the source of truth for the running process, which
another component may rewrite when it restarts a service), logs/<name>.log, faults.json and
stack.json (ports, host, commands), so that another process (the CLI) can take over.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from afo_runbook.refstack import procs
from afo_runbook.refstack.faults import (
    FaultMap,
    FaultValue,
    LiveFaults,
    edit_faults,
    normalise,
)
from afo_runbook.refstack.network import free_ports, http_status, port_is_free
from afo_runbook.refstack.services import (
    PROBE_HEADER,
    SECRET_ENV,
    SERVE_MODULE,
    SERVICE_NAMES,
    SERVICES,
    check_service,
    default_python,
)

__all__ = [
    "DEFAULT_PORTS",
    "PortInUseError",
    "ServiceStartError",
    "ServiceStatus",
    "Stack",
    "StackAlreadyRunningError",
    "StackError",
    "free_ports",
    "http_status",
    "port_is_free",
]

DEFAULT_PORTS: dict[str, int] = {name: spec.default_port for name, spec in SERVICES.items()}
STACK_FILE = "stack.json"
DEFAULT_HEARTBEAT_INTERVAL = 1.0


class StackError(RuntimeError):
    """A stack operation failed; the message is meant for humans."""


class PortInUseError(StackError):
    pass


class StackAlreadyRunningError(StackError):
    pass


class ServiceStartError(StackError):
    pass


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    port: int
    pid: int | None
    alive: bool
    health: int | str  # status code, or "refused"/"timeout"/... ; "-" when not running


@dataclass
class _Spawned:
    proc: subprocess.Popen[bytes]
    log_offset: int  # where this run's output starts in the (appended) log


class Stack(LiveFaults):
    def __init__(
        self,
        state_dir: Path,
        ports: Mapping[str, int] | None = None,
        env_file: Path | None = None,
        faults: Mapping[str, Mapping[str, FaultValue]] | None = None,
        host: str = "127.0.0.1",
        python: str | None = None,
        *,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        for name in ports or {}:
            check_service(name)
        self.ports: dict[str, int] = {**DEFAULT_PORTS, **(ports or {})}
        self.env_file = Path(env_file).resolve() if env_file is not None else None
        self.initial_faults: FaultMap = normalise(faults)
        self.host = host
        self.python = python or default_python()
        self.heartbeat_interval = heartbeat_interval
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    @classmethod
    def load(cls, state_dir: Path) -> Stack:
        """The stack described by <state_dir>/stack.json (written by a previous start)."""
        path = Path(state_dir) / STACK_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            missing = Path(state_dir).resolve() / STACK_FILE
            raise StackError(f"no stack in {missing.parent} ({STACK_FILE} missing)") from None
        return cls(
            Path(state_dir),
            ports=data["ports"],
            env_file=Path(data["env_file"]) if data.get("env_file") else None,
            host=data["host"],
            python=data["python"],
            heartbeat_interval=data.get("heartbeat_interval", DEFAULT_HEARTBEAT_INTERVAL),
        )

    # ------------------------------------------------------------------------- naming

    @property
    def urls(self) -> dict[str, str]:
        return {name: f"http://{self.host}:{self.ports[name]}" for name in SERVICE_NAMES}

    def health_url(self, name: str) -> str:
        return self.urls[name] + SERVICES[name].health_path

    def pidfile(self, name: str) -> Path:
        check_service(name)
        return self.state_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        check_service(name)
        return self.state_dir / "logs" / f"{name}.log"

    def command(self, name: str) -> list[str]:
        """The exact argv that starts `name` (also what a recovery step should run)."""
        check_service(name)
        argv = [
            self.python,
            "-m",
            SERVE_MODULE,
            name,
            "--port",
            str(self.ports[name]),
            "--state-dir",
            str(self.state_dir),
            "--host",
            self.host,
        ]
        if name == "api" and self.heartbeat_interval != DEFAULT_HEARTBEAT_INTERVAL:
            argv += ["--heartbeat-interval", str(self.heartbeat_interval)]
        return argv

    # ------------------------------------------------------------------------- processes

    def pid(self, name: str) -> int | None:
        """Pid of the running process for `name` (per its pidfile), or None."""
        found = self._running(name)
        return found[0].pid if found else None

    def is_running(self, name: str) -> bool:
        return self.pid(name) is not None

    def _running(self, name: str) -> list[procs.ServeProcess]:
        """Live processes of `name` that are provably ours: the pidfile's (if its cmdline is
        our serve command for this state dir) and any child we spawned that is still up."""
        found: dict[int, procs.ServeProcess] = {}
        pid = procs.read_pidfile(self.pidfile(name))
        if pid is not None:
            verified = procs.verify_serve_process(pid, name, self.state_dir)
            if verified is not None:
                found[pid] = verified
        child = self._children.get(name)
        if child is not None and child.poll() is None and child.pid not in found:
            # Our own unreaped child: its pid cannot have been recycled.
            started = procs.start_time(child.pid)
            if started is not None:
                found[child.pid] = procs.ServeProcess(child.pid, started)
        return list(found.values())

    def start(self, timeout: float = 15) -> None:
        """Start every service not marked `down`; return once all answer their health URL.

        `secret-missing` given here is the incident "the api restarted without its secret":
        the api starts without AFO_INTERNAL_SECRET in its environment, and the fault is not
        kept in faults.json, so restarting the api with its env file (the recovery) fixes it.
        """
        self._prepare_dirs()
        running = [name for name in SERVICE_NAMES if self._running(name)]
        if running:
            raise StackAlreadyRunningError(
                f"a stack already runs in {self.state_dir} ({', '.join(running)})"
            )
        wanted = [n for n in SERVICE_NAMES if "down" not in self.initial_faults.get(n, {})]
        self._check_ports(wanted)
        live = {service: dict(f) for service, f in self.initial_faults.items()}
        without_secret = "secret-missing" in live.get("api", {})
        live.get("api", {}).pop("secret-missing", None)
        with edit_faults(self.state_dir) as faults:  # before any service reads it
            faults.clear()
            faults.update(live)
        self._write_stack_file()
        try:
            spawned = {
                name: self._spawn(name, without_secret=without_secret and name == "api")
                for name in wanted
            }
            self._wait_ready(spawned, timeout)
        except BaseException:
            self.stop(timeout=5)
            raise

    def stop(self, timeout: float = 10) -> None:
        """Stop the stack's processes (pidfiles and own children), never anything else."""
        self._terminate(SERVICE_NAMES, timeout)

    def start_service(self, name: str, timeout: float = 15, *,
                      without_secret: bool = False) -> None:
        """(Re)start one service unless it already runs; clears its `down` fault.

        The api gets its secret here (a restart is how the secret comes back), unless
        `without_secret`: the incident EXP_007 rehearses, a restart that lost the secret.
        """
        check_service(name)
        self._prepare_dirs()
        with edit_faults(self.state_dir) as faults:
            if "down" in faults.get(name, {}):
                del faults[name]["down"]
        if self._running(name):
            return
        self._check_ports([name])
        if not (self.state_dir / STACK_FILE).exists():
            self._write_stack_file()
        spawned = self._spawn(name, without_secret=without_secret and name == "api")
        try:
            self._wait_ready({name: spawned}, timeout)
        except BaseException:
            self.stop_service(name, timeout=5)
            raise

    def stop_service(self, name: str, timeout: float = 10) -> None:
        check_service(name)
        self._terminate([name], timeout)

    def _terminate(self, names: Iterable[str], timeout: float) -> None:
        names = list(names)
        targets = {name: self._running(name) for name in names}
        children = {c.pid: c for c in self._children.values()}
        procs.terminate([p for ps in targets.values() for p in ps], children, timeout)
        for name in names:
            stopped = {p.pid for p in targets[name]}
            pidfile = self.pidfile(name)
            pid = procs.read_pidfile(pidfile)
            # Drop the pidfile if it named what we stopped or nothing of ours; keep it if
            # someone started a new process of ours meanwhile.
            if pid is not None and (
                pid in stopped or procs.verify_serve_process(pid, name, self.state_dir) is None
            ):
                with contextlib.suppress(FileNotFoundError):
                    pidfile.unlink()
            child = self._children.get(name)
            if child is not None and child.poll() is not None:
                del self._children[name]

    def _prepare_dirs(self) -> None:
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)

    def _check_ports(self, names: Iterable[str]) -> None:
        for name in names:
            port = self.ports[name]
            if not port_is_free(self.host, port):
                raise PortInUseError(f"port {port} for {name} on {self.host} is already in use")

    def _write_stack_file(self) -> None:
        data = {
            "host": self.host,
            "ports": self.ports,
            "python": self.python,
            "env_file": str(self.env_file) if self.env_file else None,
            "heartbeat_interval": self.heartbeat_interval,
            "commands": {name: self.command(name) for name in SERVICE_NAMES},
        }
        tmp = self.state_dir / f".{STACK_FILE}.tmp"
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.state_dir / STACK_FILE)

    def _service_env(self, name: str, without_secret: bool = False) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if name != "api":
            return env
        if self.env_file is not None:
            from dotenv import dotenv_values

            if not self.env_file.is_file():
                raise StackError(f"env file {self.env_file} does not exist")
            secret = dotenv_values(self.env_file).get(SECRET_ENV)
            if secret:
                env[SECRET_ENV] = secret
        if without_secret:
            # The incident to rehearse: the api restarted without its secret at all, not even
            # one inherited from our own environment.
            env.pop(SECRET_ENV, None)
        return env

    def _spawn(self, name: str, without_secret: bool = False) -> _Spawned:
        log_path = self.log_file(name)
        env = self._service_env(name, without_secret)
        argv = self.command(name)
        with open(log_path, "ab") as log:
            offset = log.tell()
            log.write(f"--- refstack: starting {name}: {shlex.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                env=env,
                start_new_session=True,  # Ctrl-C in a terminal must not hit the services
            )
        self._children[name] = proc
        procs.write_pidfile(self.pidfile(name), proc.pid)
        return _Spawned(proc, offset)

    def _wait_ready(self, spawned: Mapping[str, _Spawned], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = dict(spawned)
        while True:
            for name, sp in list(pending.items()):
                code = sp.proc.poll()
                if code is not None:
                    raise ServiceStartError(
                        f"{name} exited with code {code} while starting; "
                        f"last lines of {self.log_file(name)}:\n{self._log_tail(name, sp)}"
                    )
                if self._answers(name):
                    del pending[name]
            if not pending:
                return
            if time.monotonic() >= deadline:
                name, sp = next(iter(pending.items()))
                raise ServiceStartError(
                    f"{name} did not answer {self.health_url(name)} within {timeout:g}s; "
                    f"last lines of {self.log_file(name)}:\n{self._log_tail(name, sp)}"
                )
            time.sleep(0.02)

    def _answers(self, name: str) -> bool:
        # The probe header bypasses faults: "ready" means the process serves HTTP.
        status = http_status(
            self.host,
            self.ports[name],
            SERVICES[name].health_path,
            timeout=1.0,
            headers={PROBE_HEADER: "1"},
        )
        return isinstance(status, int)

    def _log_tail(self, name: str, spawned: _Spawned, lines: int = 20) -> str:
        try:
            with open(self.log_file(name), "rb") as fh:
                fh.seek(spawned.log_offset)
                text = fh.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty)"

    # ------------------------------------------------------------------------- status

    def status(self, timeout: float = 2.0) -> dict[str, ServiceStatus]:
        """Per service: pid, liveness and what its health URL answers right now."""
        result: dict[str, ServiceStatus] = {}
        for name in SERVICE_NAMES:
            pid = self.pid(name)
            health: int | str = "-"
            if pid is not None:
                health = http_status(
                    self.host, self.ports[name], SERVICES[name].health_path, timeout=timeout
                )
            result[name] = ServiceStatus(name, self.ports[name], pid, pid is not None, health)
        return result

    # ------------------------------------------------------------------------- context

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
