#!/usr/bin/env python3
"""The project's commands on a machine that has nothing but Python 3.11.

    python3 tasks.py demo     # start the reference stack, observe it, write the HTML report
    python3 tasks.py test     # ruff + the full test suite, with what it needs set up first
    python3 tasks.py drill    # the EXP_007 rollback drill against the reference stack
    python3 tasks.py bench    # benchmarks against the runbook's own shell procedure
    python3 tasks.py bench-drill   # the drill's time-to-recover against the runbook's 45 s
    python3 tasks.py mutate   # mutation testing (mutmut) of the modules that decide or protect

Each command first makes sure two virtualenvs exist, reinstalling only when pyproject.toml
changed: `.venv` holds the suite and its test tools (`pip install -e .[dev]`), `.venv-refstack`
the reference stack (`.[refstack]`: FastAPI, uvicorn, sse-starlette). The stack is a service
under test, so its dependencies stay out of the pytest processes that observe it.
`test` also prepares the machine, as CI must not differ from a newcomer's first run: as root
with apt, it installs the missing Debian packages the Docker and browser tests need (docker.io,
busybox-static, chromium, chromium-driver), starts a private Docker engine under a temp folder
(unless DOCKER_HOST already answers) and stops it by its pid afterwards, on failure and on
Ctrl-C too. Without root or apt those tests skip with the reason (with CI=true they fail).
Extra arguments go to the command.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
REFSTACK_VENV = ROOT / ".venv-refstack"


def ensure_venv(venv_dir: Path, extras: str) -> None:
    """Create `venv_dir` and install this project with `extras` unless already current."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs before the venv exists
        sys.exit(f"afo-runbook needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    stamp = venv_dir / ".afo-runbook-installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    python = venv_dir / "bin" / "python"
    if not python.exists():
        print(f"tasks: creating {venv_dir.name}", flush=True)
        venv.EnvBuilder(with_pip=True).create(venv_dir)
    if not stamp.exists() or stamp.read_text().strip() != want:
        print(f"tasks: installing afo-runbook[{extras}] into {venv_dir.name}", flush=True)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        run([*pip, "-e", f"{ROOT}[{extras}]"])
        stamp.write_text(want + "\n")


# -- the machine the tests need ------------------------------------------------------------------
# Debian package -> the file that says it is there. busybox-static: the reference stack's image
# is a rootfs around a static busybox (no registry here); chromium: the evidence record is
# checked in a real browser; curl: the runbook's own shell procedure (bench); openssl: the
# TLS tests' certificates.
SYSTEM_PACKAGES = {
    "docker.io": ("dockerd", "docker"),
    "busybox-static": ("/bin/busybox",),
    "chromium": ("/usr/bin/chromium",),
    "chromium-driver": ("/usr/bin/chromedriver",),
    "curl": ("curl",),
    "openssl": ("openssl",),  # test certificates for the TLS checks
    "docker-compose": ("docker-compose",),  # `docker-compose config` of the compose examples
}


def _have(what: str) -> bool:
    if what == "/bin/busybox":
        return _static_busybox()
    return Path(what).exists() if what.startswith("/") else shutil.which(what) is not None


def _static_busybox() -> bool:
    """The image needs a statically linked busybox (Debian's `busybox` package is dynamic)."""
    path = Path("/bin/busybox")
    try:
        header = path.read_bytes()[:4096]
    except OSError:
        return False
    return header[:4] == b"\x7fELF" and b"ld-linux" not in header and b"/lib" not in header


def log(text: str) -> None:
    print(f"tasks: {text}", flush=True)


def install_system_packages() -> None:
    """As root with apt: install what is missing. Otherwise say which tests will skip."""
    missing = [pkg for pkg, files in SYSTEM_PACKAGES.items()
               if not all(_have(f) for f in files)]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        why = "not root" if os.geteuid() != 0 else "no apt-get"
        log(f"missing {', '.join(missing)} ({why}): the tests that need them skip with the "
            "reason")
        return
    log(f"installing {' '.join(missing)} (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = {"stdout": subprocess.DEVNULL, "env": env, "check": False}
    subprocess.run(["apt-get", "update", "-qq"], **quiet)  # type: ignore[call-overload]
    result = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                             *missing], **quiet)  # type: ignore[call-overload]
    if result.returncode != 0:
        log(f"apt-get install failed (exit {result.returncode}); the tests that need "
            f"{', '.join(missing)} skip with the reason")


def _docker_answers(env: dict[str, str]) -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                           env=env, capture_output=True, timeout=20, check=False)
    return probe.returncode == 0


@contextlib.contextmanager
def private_docker_engine(env: dict[str, str]) -> Iterator[None]:
    """A dockerd of our own under a temp folder, stopped by its pid whatever happens."""
    if env.get("DOCKER_HOST") and _docker_answers(env):
        log(f"using the Docker engine at {env['DOCKER_HOST']}")
        yield
        return
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        why = "not root" if os.geteuid() != 0 else "no dockerd"
        log(f"no private Docker engine ({why}): the container tests skip with the reason")
        yield
        return
    folder = Path(tempfile.mkdtemp(prefix="afo-tasks-docker."))
    sock = folder / "docker.sock"
    with (folder / "dockerd.log").open("wb") as out:
        proc = subprocess.Popen(
            ["dockerd", "--data-root", str(folder / "data"), "--exec-root",
             str(folder / "exec"), "-H", f"unix://{sock}", "--pidfile",
             str(folder / "dockerd.pid")], stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)  # our Ctrl-C reaches it through us, in order
    try:
        env["DOCKER_HOST"] = f"unix://{sock}"
        deadline = time.monotonic() + 60
        while not _docker_answers(env):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (folder / "dockerd.log").read_text(errors="replace")[-3000:]
                log(f"dockerd did not come up (exit {proc.poll()}); the container tests "
                    f"skip with the reason. Its log:\n{tail}")
                env.pop("DOCKER_HOST")
                break
            time.sleep(0.2)  # polling a daemon's start-up, with a deadline
        else:
            log(f"private Docker engine (pid {proc.pid}) at {env['DOCKER_HOST']}")
        yield
    finally:
        _stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop exactly the engine we started: by its pid, TERM then KILL."""
    if proc.poll() is None:
        log(f"stopping dockerd (pid {proc.pid})")
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _sigterm_is_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so the engine is stopped by the same `finally` as on Ctrl-C


def run(argv: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(argv, cwd=ROOT, env=env, check=False)
    if result.returncode != 0:
        sys.exit(result.returncode)


def venv_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    env["AFO_REFSTACK_PYTHON"] = str(REFSTACK_VENV / "bin" / "python")
    return env


def main(argv: list[str]) -> None:
    commands = {
        "demo": [str(BIN / "afo-runbook"), "demo"],
        "test": None,
        "drill": [str(BIN / "afo-runbook"), "drill"],
        "bench": [str(BIN / "python"), "bench/observe_bench.py"],
        "bench-drill": [str(BIN / "python"), "bench/drill_bench.py"],
        "mutate": [str(BIN / "python"), "dev/mutate.py"],
    }
    if not argv or argv[0] not in commands:
        sys.exit(__doc__)
    name, extra = argv[0], argv[1:]
    ensure_venv(VENV, "dev")
    ensure_venv(REFSTACK_VENV, "refstack")
    env = venv_env()
    if name == "test":
        run([str(BIN / "ruff"), "check", "."], env)
        install_system_packages()
        signal.signal(signal.SIGTERM, _sigterm_is_interrupt)
        with private_docker_engine(env):
            code = subprocess.run([str(BIN / "pytest"), "tests", "-n", "auto", *extra],
                                  cwd=ROOT, env=env, check=False).returncode
        sys.exit(code)
    command = commands[name]
    assert command is not None
    run([*command, *extra], env)


if __name__ == "__main__":
    main(sys.argv[1:])
