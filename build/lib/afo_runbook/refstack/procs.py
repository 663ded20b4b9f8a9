"""Process identity and termination via /proc (Linux), never by name.

A pid from a pidfile is only signalled after /proc/<pid>/cmdline shows it is still our serve
command for that service and state dir; the start time taken at that check is re-verified
before every signal, so a pid recycled in between is left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from afo_runbook.refstack.services import SERVE_MODULE


def read_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # "pid (comm) state ppid ..." - comm may contain spaces and parentheses.
    return raw[raw.rfind(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """Kernel start time of `pid` in clock ticks (field 22 of /proc/<pid>/stat)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def is_running(pid: int) -> bool:
    """True if `pid` exists and is not a zombie waiting to be reaped."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] not in ("Z", "X")


def is_serve_command(
    argv: list[str], service: str, state_dir: Path, cwd: Path | None = None
) -> bool:
    """Is `argv` `... -m afo_runbook.refstack.serve SERVICE ... --state-dir STATE_DIR ...`?

    A relative --state-dir is resolved against `cwd` (the process's working directory).
    """
    try:
        i = argv.index(SERVE_MODULE)
    except ValueError:
        return False
    if i == 0 or argv[i - 1] != "-m" or i + 1 >= len(argv) or argv[i + 1] != service:
        return False
    options = argv[i + 2 :]
    for j, arg in enumerate(options):
        if arg == "--state-dir" and j + 1 < len(options):
            value = options[j + 1]
        elif arg.startswith("--state-dir="):
            value = arg.split("=", 1)[1]
        else:
            continue
        path = Path(cwd or ".", value) if not os.path.isabs(value) else Path(value)
        return os.path.realpath(path) == os.path.realpath(state_dir)
    return False


@dataclass(frozen=True)
class ServeProcess:
    """A live process verified to be our serve command, pinned by its start time."""

    pid: int
    started: int

    def still_ours(self) -> bool:
        return is_running(self.pid) and start_time(self.pid) == self.started


def verify_serve_process(pid: int, service: str, state_dir: Path) -> ServeProcess | None:
    started = start_time(pid)
    argv = read_cmdline(pid)
    if started is None or not argv or not is_running(pid):
        return None
    try:
        cwd: Path | None = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        cwd = None
    if not is_serve_command(argv, service, state_dir, cwd):
        return None
    if start_time(pid) != started:  # replaced between the two reads
        return None
    return ServeProcess(pid, started)


def read_pidfile(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def write_pidfile(path: Path, pid: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, path)


def send_signal(p: ServeProcess, sig: signal.Signals) -> None:
    """Signal `p` only if it is still the very process we verified.

    With a pidfd the check and the signal refer to the same process, so a pid recycled in
    between cannot be hit; without pidfd support the window is a few microseconds.
    """
    fd: int | None = None
    with contextlib.suppress(AttributeError, OSError):
        fd = os.pidfd_open(p.pid)
    try:
        if not p.still_ours():
            return
        if fd is not None:
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(p.pid, sig)
    except ProcessLookupError:
        pass
    finally:
        if fd is not None:
            os.close(fd)


def terminate(
    processes: list[ServeProcess],
    children: dict[int, subprocess.Popen[bytes]],
    timeout: float,
) -> None:
    """SIGTERM all, wait for them to go with a deadline, then SIGKILL the rest.

    `children` are Popen objects of processes we spawned ourselves: polling them reaps the
    zombie so it stops counting as alive.
    """

    def gone(p: ServeProcess) -> bool:
        child = children.get(p.pid)
        if child is not None and child.poll() is not None:
            return True
        return not p.still_ours()

    def signal_all(sig: signal.Signals, targets: list[ServeProcess]) -> None:
        for p in targets:
            if not gone(p):
                send_signal(p, sig)

    def wait(targets: list[ServeProcess], seconds: float) -> list[ServeProcess]:
        deadline = time.monotonic() + seconds
        alive = [p for p in targets if not gone(p)]
        while alive and time.monotonic() < deadline:
            time.sleep(0.02)
            alive = [p for p in alive if not gone(p)]
        return alive

    signal_all(signal.SIGTERM, processes)
    stubborn = wait(processes, timeout)
    if stubborn:
        signal_all(signal.SIGKILL, stubborn)
        wait(stubborn, 5)
