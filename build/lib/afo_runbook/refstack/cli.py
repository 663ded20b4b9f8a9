"""`afo-refstack`: start, inspect, break and stop the reference stack from a shell.

afo-refstack start  [--state-dir DIR] [--ports api=8010,aux=8001,dashboard=3000]
                    [--env-file PATH] [--fault api:secret-missing ...] [--foreground]
                    [--docker [--name-prefix P] [--name-suffix S]]
afo-refstack stop   [--state-dir DIR]
afo-refstack status [--state-dir DIR]
afo-refstack fault  SERVICE FAULT[=VALUE] [--off] | SERVICE --clear   [--state-dir DIR]
afo-refstack config [--state-dir DIR] [--output PATH|-]

With --docker the services run as containers afo-core, afo-aux and afo-dashboard (see
docker_stack.py); stack.json remembers the mode, so the other commands need no flag.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afo_runbook.refstack.faults import (
    FAULTS,
    FaultMap,
    parse_fault,
    parse_fault_spec,
    validate_fault,
)
from afo_runbook.refstack.services import SECRET_ENV, SERVICE_NAMES, check_service
from afo_runbook.refstack.stack import STACK_FILE, Stack, StackError

if TYPE_CHECKING:
    from afo_runbook.refstack.docker_stack import DockerStack

DEFAULT_STATE_DIR = ".refstack"
DEFAULT_ENV_FILE = ".env.afo"
PROG = "afo-refstack"


class UsageError(Exception):
    pass


def parse_ports(text: str) -> dict[str, int]:
    """'api=8010,aux=8001' -> {'api': 8010, 'aux': 8001}"""
    ports: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise UsageError(f"--ports wants NAME=PORT[,NAME=PORT...], got {item!r}")
        try:
            check_service(name.strip())
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        port = int(value)
        if not 0 < port < 65536:
            raise UsageError(f"port out of range: {item!r}")
        ports[name.strip()] = port
    return ports


def ensure_env_file(path: Path) -> None:
    """Create a dotenv file with a random internal secret (mode 0600) unless it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{SECRET_ENV}={secrets.token_urlsafe(32)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="The AFO reference stack.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=Path(DEFAULT_STATE_DIR),
        help=f"pidfiles, logs, faults (default: ./{DEFAULT_STATE_DIR})",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    start = sub.add_parser("start", parents=[common], help="start the stack")
    start.add_argument("--ports", default="", help="e.g. api=8010,aux=8001,dashboard=3000")
    start.add_argument(
        "--env-file",
        type=Path,
        help=f"dotenv file with {SECRET_ENV} (default: <state-dir>/{DEFAULT_ENV_FILE}, "
        "created with a random secret if missing)",
    )
    start.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SERVICE:FAULT[=VALUE]",
        help=f"fault active from the start (repeatable); faults: {', '.join(FAULTS)}",
    )
    start.add_argument(
        "--foreground", action="store_true", help="stay attached; stop the stack on Ctrl-C"
    )
    start.add_argument(
        "--docker",
        action="store_true",
        help="run the services as Docker containers afo-core, afo-aux, afo-dashboard",
    )
    start.add_argument("--name-prefix", default="", help="--docker: container name prefix")
    start.add_argument("--name-suffix", default="",
                       help="--docker: container name suffix (one starting with '-' needs "
                       "the form --name-suffix=-blue)")

    sub.add_parser("stop", parents=[common], help="stop the stack")
    sub.add_parser("status", parents=[common], help="pid, liveness, health per service")

    fault = sub.add_parser("fault", parents=[common], help="switch a fault on or off, live")
    fault.add_argument("service", choices=SERVICE_NAMES)
    fault.add_argument("fault", nargs="?", metavar="FAULT[=VALUE]")
    mode = fault.add_mutually_exclusive_group()
    mode.add_argument("--off", action="store_true", help="switch FAULT off")
    mode.add_argument("--clear", action="store_true", help="switch all of SERVICE's faults off")

    config = sub.add_parser("config", parents=[common], help="write a runbook.toml for the stack")
    config.add_argument(
        "--output", help="file to write ('-' for stdout; default: <state-dir>/runbook.toml)"
    )
    return parser


def cmd_start(args: argparse.Namespace) -> int:
    state_dir = args.state_dir.resolve()
    ports = parse_ports(args.ports)
    faults: FaultMap = {}
    for spec in args.fault:
        try:
            service, name, value = parse_fault_spec(spec)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        faults.setdefault(service, {})[name] = value
    if args.env_file is not None:
        env_file = args.env_file.resolve()
        if not env_file.is_file():
            raise StackError(f"env file {env_file} does not exist")
    else:
        env_file = state_dir / DEFAULT_ENV_FILE
        ensure_env_file(env_file)

    if not args.docker and (args.name_prefix or args.name_suffix):
        raise UsageError("--name-prefix and --name-suffix need --docker")

    stop = threading.Event()
    if args.foreground:  # before starting: a SIGTERM during start-up still stops the stack
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    stack: Stack | DockerStack
    if args.docker:
        from afo_runbook.refstack.docker_stack import DockerStack

        stack = DockerStack(state_dir, ports=ports, env_file=env_file, faults=faults,
                            name_prefix=args.name_prefix, name_suffix=args.name_suffix)
    else:
        stack = Stack(state_dir, ports=ports, env_file=env_file, faults=faults)
    stack.start()
    for name, url in stack.urls.items():
        note = "  (down)" if not stack.is_running(name) else ""
        if isinstance(stack, Stack):
            print(f"{name:<10} {url}{note}")
        else:
            print(f"{name:<10} {url}  container {stack.container_name(name)}{note}")
    if "secret-missing" in faults.get("api", {}):
        print(f"{'':<10} api started without {SECRET_ENV}: its guard answers 503")
    print(f"state dir  {state_dir}")
    if not args.foreground:
        return 0

    print("running in the foreground; Ctrl-C stops the stack", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        stack.stop()
    return 0


def load_stack(state_dir: Path) -> Stack | DockerStack:
    """The stack in `state_dir`, in whichever mode its stack.json says it was started."""
    try:
        data = json.loads((Path(state_dir) / STACK_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        data = {}
    if isinstance(data, dict) and data.get("mode") == "docker":
        from afo_runbook.refstack.docker_stack import DockerStack  # imports the docker SDK

        return DockerStack.load(state_dir)
    return Stack.load(state_dir)


def cmd_stop(args: argparse.Namespace) -> int:
    try:
        stack = load_stack(args.state_dir)
    except StackError as exc:
        print(f"{PROG}: nothing to stop: {exc}")
        return 0
    stack.stop()
    print(f"stopped the stack in {stack.state_dir}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    stack = load_stack(args.state_dir)
    statuses: Mapping[str, Any] = stack.status()
    for st in statuses.values():
        if isinstance(stack, Stack):
            print(
                f"{st.name:<10} pid={st.pid or '-':<8} alive={'yes' if st.alive else 'no':<4}"
                f"port={st.port:<6} health={st.health}"
            )
        else:
            print(
                f"{st.name:<10} container={st.container} id={st.id or '-'} state={st.state} "
                f"docker-health={st.docker_health or '-'} alive={'yes' if st.alive else 'no'} "
                f"port={st.port} health={st.health}"
            )
    for service, active in stack.faults().items():
        listed = ", ".join(k if v is None else f"{k}={v}" for k, v in active.items())
        print(f"faults     {service}: {listed}")
    return 0 if all(st.alive for st in statuses.values()) else 1


def cmd_fault(args: argparse.Namespace) -> int:
    stack = load_stack(args.state_dir)
    if args.clear:
        if args.fault:
            raise UsageError("--clear takes no FAULT")
        stack.clear_fault(args.service)
        print(f"cleared all faults of {args.service}")
        return 0
    if not args.fault:
        raise UsageError("give a FAULT[=VALUE], or --clear")
    name, value = parse_fault(args.fault)
    try:
        validate_fault(args.service, name, None if args.off else value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.off:
        stack.clear_fault(args.service, name)
        print(f"{args.service}: {name} off")
    else:
        stack.set_fault(args.service, name, value)
        print(f"{args.service}: {args.fault} on")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from afo_runbook.refstack.runbook_toml import render_runbook_toml

    stack = load_stack(args.state_dir)
    text = render_runbook_toml(stack)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    output = Path(args.output) if args.output else stack.state_dir / "runbook.toml"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output.resolve()}")
    return 0


COMMANDS = {
    "start": cmd_start,
    "stop": cmd_stop,
    "status": cmd_status,
    "fault": cmd_fault,
    "config": cmd_config,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
        return 2
    except (StackError, TimeoutError) as exc:
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if not _is_docker_error(exc):
            raise
        print(f"{PROG} {args.command}: Docker: {exc}", file=sys.stderr)
        return 1


def _is_docker_error(exc: Exception) -> bool:
    if "docker" not in sys.modules:  # process mode never imports the docker SDK
        return False
    from docker.errors import DockerException

    return isinstance(exc, DockerException)


if __name__ == "__main__":
    sys.exit(main())
