"""`afo-runbook`: the runbook's commands that are not a plain `pytest -m observe`.

    afo-runbook demo [--fault api:guard-open ...] [--keep]   # observe the bundled stack
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from afo_runbook.plugin import REPO_ROOT

DEMO_STATE = REPO_ROOT / ".refstack" / "demo"


def _demo(args: argparse.Namespace) -> int:
    """Start the reference stack, run the observe phase against it, stop the stack."""
    from afo_runbook.refstack.cli import ensure_env_file
    from afo_runbook.refstack.faults import parse_fault_spec
    from afo_runbook.refstack.runbook_toml import render_runbook_toml
    from afo_runbook.refstack.services import SERVICES
    from afo_runbook.refstack.stack import Stack, StackError, free_ports, port_is_free

    state = Path(args.state_dir).absolute()
    state.mkdir(parents=True, exist_ok=True)
    env_file = state / ".env.afo"
    ensure_env_file(env_file)  # a random secret, mode 600, never printed
    ports = {name: spec.default_port for name, spec in SERVICES.items()}
    if not all(port_is_free("127.0.0.1", port) for port in ports.values()):
        ports = dict(zip(ports, free_ports(len(ports)), strict=True))
        print(f"afo-runbook demo: the runbook's ports are taken; using {ports}", flush=True)
    faults: dict[str, dict[str, object]] = {}
    for spec in args.fault:
        service, fault, value = parse_fault_spec(spec)
        faults.setdefault(service, {})[fault] = value
    stack = Stack(state, ports=ports, env_file=env_file, faults=faults)
    try:
        stack.start()
    except StackError as exc:
        print(f"afo-runbook demo: cannot start the reference stack: {exc}", file=sys.stderr)
        return 3
    try:
        config = state / "runbook.toml"
        config.write_text(render_runbook_toml(stack), encoding="utf-8")
        print(f"afo-runbook demo: reference stack up ({', '.join(stack.urls.values())}); "
              f"config {config}", flush=True)
        argv = [sys.executable, "-m", "pytest", "-m", "observe", "--runbook-config",
                str(config), *args.pytest_args]
        return subprocess.call(argv, cwd=REPO_ROOT)
    finally:
        if not args.keep:
            stack.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="afo-runbook", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="observe the bundled reference stack")
    demo.add_argument("--state-dir", default=str(DEMO_STATE),
                      help="where the stack keeps pids, logs and its env file")
    demo.add_argument("--fault", action="append", default=[], metavar="SERVICE:FAULT[=V]",
                      help="start the stack with a fault, e.g. api:guard-open (repeatable)")
    demo.add_argument("--keep", action="store_true", help="leave the stack running")
    demo.add_argument("pytest_args", nargs=argparse.REMAINDER,
                      help="more pytest arguments, after --")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "pytest_args", None) and args.pytest_args[0] == "--":
        args.pytest_args = args.pytest_args[1:]
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
