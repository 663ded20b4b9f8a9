"""`afo-runbook`: the runbook's commands that are not a plain `pytest -m observe`.

    afo-runbook demo [--fault api:guard-open ...] [--keep] [--docker]   # observe the bundled stack
    afo-runbook drill [--rounds N] [--docker]                # the EXP_007 rollback drill
    afo-runbook incident-issue [reports/incident.md]         # runbook 4.2: open the issue
    afo-runbook metrics [--window 7d] [--html PATH] [--prom PATH]  # runbook 6: the targets
    afo-runbook log verify [--log PATH]                      # the incident log's hash chain
    afo-runbook init --from-compose docker-compose.yml [--service NAME] [-o runbook.toml]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from afo_runbook.plugin import REPO_ROOT

DEMO_STATE = REPO_ROOT / ".refstack" / "demo"


def _demo(args: argparse.Namespace) -> int:
    """Start the reference stack, run the observe phase against it, stop the stack.

    With a Docker engine (or --docker) the stack runs as containers (afo-core, afo-aux,
    afo-dashboard) and all four sections are observed, 1.4 included; without one, the
    process stack and sections 1.1-1.3, and one line says how to get 1.4."""
    from afo_runbook.refstack.cli import ensure_env_file
    from afo_runbook.refstack.faults import parse_fault_spec
    from afo_runbook.refstack.runbook_toml import render_runbook_toml
    from afo_runbook.refstack.services import SERVICES
    from afo_runbook.refstack.stack import Stack, free_ports, port_is_free

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
    engine = _docker_engine(required=args.docker)
    if engine is None and args.docker:
        return 3
    if engine is not None:
        from afo_runbook.refstack.docker_stack import DockerStack

        stack: Any = DockerStack(state / "containers", ports=ports, env_file=env_file,
                                 faults=faults, client=engine)
        kind = "containers afo-core, afo-aux, afo-dashboard"
    else:
        print("afo-runbook demo: no Docker engine answers, so 1.4 (containers) is left out; "
              "start one (or set DOCKER_HOST) and run `python3 tasks.py demo --docker` "
              "to observe the containerised stack too", flush=True)
        stack = Stack(state, ports=ports, env_file=env_file, faults=faults)
        kind = "processes"
    try:
        stack.start()
    except Exception as exc:  # noqa: BLE001 - StackError, ImageError, the engine's errors
        print(f"afo-runbook demo: cannot start the reference stack: {exc}", file=sys.stderr)
        with contextlib.suppress(Exception):
            stack.stop()
        return 3
    try:
        config = state / "runbook.toml"
        config.write_text(render_runbook_toml(stack), encoding="utf-8")
        print(f"afo-runbook demo: reference stack up as {kind} "
              f"({', '.join(stack.urls.values())}); config {config}", flush=True)
        argv = [sys.executable, "-m", "pytest", "-m", "observe", "--runbook-config",
                str(config), *args.pytest_args]
        return subprocess.call(argv, cwd=REPO_ROOT)
    finally:
        if not args.keep:
            stack.stop()


def _docker_engine(required: bool) -> Any:
    """A client for the engine at DOCKER_HOST (or the default socket), or None."""
    try:
        from afo_runbook.probes.docker import DockerUnavailable, connect

        return connect(5)
    except DockerUnavailable as exc:
        if required:
            print(f"afo-runbook demo --docker: no Docker engine: {exc}", file=sys.stderr)
        return None


EXP_007_TTR_S = 45.0  # the runbook's drill: "Rollback completed in 45 seconds"


def _drill(args: argparse.Namespace) -> int:
    """Runbook 3.1 rehearsed: green -> the api restarts without its secret -> observe ->
    rollback -> observe green; the time-to-recover next to the runbook's 45 s."""
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="afo-drill-") as tmp:
        for number in range(1, args.rounds + 1):
            outcome = _drill_round(Path(tmp) / f"round{number}", number, args.docker)
            rounds.append(outcome)
            if outcome.get("outcome") != "recovered":
                break
    ttrs = [r["ttr_s"] for r in rounds if r.get("ttr_s") is not None]
    ok = len(ttrs) == args.rounds and all(r["outcome"] == "recovered" for r in rounds)
    if ttrs:
        median = statistics.median(ttrs)
        print(f"\ndrill ({'docker' if args.docker else 'process'} mode, {len(ttrs)} rounds): "
              f"TTR median {median:.2f} s (min {min(ttrs):.2f}, max {max(ttrs):.2f}); "
              f"runbook EXP_007: {EXP_007_TTR_S:.0f} s -> {EXP_007_TTR_S / median:.0f}x faster")
    if args.json:
        Path(args.json).write_text(json.dumps({"mode": "docker" if args.docker else "process",
                                               "rounds": rounds}, indent=2) + "\n")
    return 0 if ok else 1


def _drill_round(state: Path, number: int, docker: bool) -> dict[str, Any]:
    from afo_runbook.refstack.cli import ensure_env_file
    from afo_runbook.refstack.runbook_toml import render_runbook_toml
    from afo_runbook.refstack.services import SERVICE_NAMES
    from afo_runbook.refstack.stack import Stack, free_ports

    state.mkdir(parents=True)
    env_file = state / ".env.afo"
    ensure_env_file(env_file)
    ports = dict(zip(SERVICE_NAMES, free_ports(len(SERVICE_NAMES)), strict=True))
    if docker:
        from afo_runbook.refstack.docker_stack import DockerStack

        stack: Any = DockerStack(state / "stack", ports=ports, env_file=env_file,
                                 name_suffix=f"-drill{number}-{secrets.token_hex(3)}")
    else:
        stack = Stack(state / "stack", ports=ports, env_file=env_file)
    print(f"round {number}: 1. start the reference stack green", flush=True)
    stack.start()
    try:
        config = state / "runbook.toml"
        config.write_text(render_runbook_toml(stack), encoding="utf-8")
        print(f"round {number}: 2. break it: the api restarts without AFO_INTERNAL_SECRET",
              flush=True)
        if docker:
            stack.recreate_service("api", without_secret=True)
        else:
            stack.stop_service("api")
            stack.start_service("api", without_secret=True)
        print(f"round {number}: 3. pytest -m observe --recover", flush=True)
        verdict_path = state / "verdict.json"
        observed_from = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "observe",
             "--recover", "--runbook-config", str(config), "--runbook-json", str(verdict_path),
             "--runbook-reports", str(state / "reports")],
            cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        wall = time.monotonic() - observed_from
        for line in proc.stdout.splitlines():
            if "completed in" in line or line.startswith(("decision:", "recovery:")):
                print(f"    {line}")
        verdict = json.loads(verdict_path.read_text()) if verdict_path.exists() else {}
        recovery = verdict.get("recovery") or {}
        outcome = {"round": number, "exit": proc.returncode,
                   "symptoms": verdict.get("symptoms"),
                   "decision": recovery.get("escalated_from") or verdict.get("decision"),
                   "outcome": recovery.get("outcome"), "ttr_s": recovery.get("ttr_s"),
                   "observe_to_green_s": round(wall, 3)}
        if outcome["outcome"] != "recovered":
            print(proc.stdout[-3000:] + proc.stderr[-2000:])
        else:
            print(f"round {number}: 4. recovered: TTR {outcome['ttr_s']:.2f} s "
                  f"(decision -> green), {wall:.2f} s for the whole run (observe, decide, "
                  f"recover, observe again); "
                  f"runbook EXP_007: {EXP_007_TTR_S:.0f} s", flush=True)
        return outcome
    finally:
        stack.stop()


def _incident_issue(args: argparse.Namespace) -> int:
    """Runbook 4.2, "always open a GitHub issue": with `gh` when it is installed and logged
    in, otherwise print the exact command to run."""
    body = Path(args.incident_md).absolute()
    if not body.is_file():
        print(f"afo-runbook: no incident report at {body} (a green run writes none)",
              file=sys.stderr)
        return 2
    meta_path = body.with_name("incident.json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    title = args.title or meta.get("title") or "AFO incident"
    command = ["gh", "issue", "create", "--title", title, "--body-file", str(body)]
    if args.repo:
        command += ["--repo", args.repo]
    for label in args.label:
        command += ["--label", label]
    html = meta.get("html")
    attach = f"; then attach the evidence record {html} to the issue" if html else ""
    gh = shutil.which("gh")
    ready = gh is not None and subprocess.run(
        [gh, "auth", "status"], capture_output=True, check=False).returncode == 0
    if args.dry_run or not ready:
        why = "dry run" if args.dry_run else (
            "gh is not installed" if gh is None else "gh is not logged in (gh auth login)")
        print(f"afo-runbook: {why}; open the incident issue with:\n  {shlex.join(command)}"
              f"{attach}")
        return 0 if args.dry_run else 3
    created = subprocess.run([gh, *command[1:]], check=False)
    if created.returncode == 0 and html:
        print(f"afo-runbook: attach the evidence record {html} to the issue")
    return created.returncode


def _metrics(args: argparse.Namespace) -> int:
    """`afo-runbook metrics`: afo_runbook.metrics's command, plus `--prom PATH`."""
    from afo_runbook import metrics

    if args.prom is None:
        return metrics.run(args)
    target = Path(args.prom).expanduser()
    if not args.prom.strip() or not target.name:
        print(f"{metrics.PROG}: --prom {args.prom!r}: not a file path", file=sys.stderr)
        return metrics.EXIT_USAGE
    if args.now is None:
        # One `now` for the markdown, JSON, HTML and the text file: the same windows. A line
        # appended to the log meanwhile is later than `now`, so neither reading counts it.
        args.now = str(math.floor(time.time()))
    code = metrics.run(args)
    if code == metrics.EXIT_USAGE:
        return code
    try:
        reports = _target_reports(args)
        from afo_runbook.outputs import prometheus

        prometheus.write_textfile(prometheus.targets_registry(reports), target)
    except metrics.UsageError as exc:
        print(f"{metrics.PROG}: {exc}", file=sys.stderr)
        return metrics.EXIT_USAGE
    except OSError as exc:
        print(f"{metrics.PROG}: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
        return metrics.EXIT_USAGE
    return code


def _target_reports(args: argparse.Namespace) -> list[Any]:
    """The per-window reports `metrics.run` printed, computed by afo_runbook.metrics itself
    from the same log, windows and `now`."""
    from dataclasses import replace

    from afo_runbook import metrics

    now = metrics.parse_now(args.now)
    _, jsonl = metrics._log_paths(args)
    events, _ = metrics.load_events(jsonl)
    return [replace(metrics.compute(events, now=now, window_s=size, label=label), spec=spec)
            for spec, size, label in metrics._windows(args.window)]


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
    demo.add_argument("--docker", action="store_true",
                      help="run the stack as containers and observe 1.4 too (the default "
                      "when a Docker engine answers)")
    demo.add_argument("pytest_args", nargs=argparse.REMAINDER,
                      help="more pytest arguments, after --")
    demo.set_defaults(handler=_demo)
    drill = commands.add_parser("drill", help="the EXP_007 rollback drill on the bundled stack")
    drill.add_argument("--rounds", type=int, default=1)
    drill.add_argument("--docker", action="store_true",
                       help="run the stack as containers (needs a Docker engine)")
    drill.add_argument("--json", help="write each round's numbers here")
    drill.set_defaults(handler=_drill)
    issue = commands.add_parser("incident-issue",
                                help="open the GitHub issue for the last incident (gh)")
    issue.add_argument("incident_md", nargs="?", default=str(REPO_ROOT / "reports" /
                                                             "incident.md"))
    issue.add_argument("--repo", help="owner/name, when not the current repository")
    issue.add_argument("--title", help="default: the incident's id, symptoms and decision")
    issue.add_argument("--label", action="append", default=[])
    issue.add_argument("--dry-run", action="store_true", help="print the command only")
    issue.set_defaults(handler=_incident_issue)
    from afo_runbook import metrics
    from afo_runbook.incident_log import add_log_parser

    add_log_parser(commands)
    targets = metrics.add_parser(commands)
    targets.add_argument("--prom", metavar="PATH",
                         help="also write the numbers as a Prometheus text file (node_exporter's "
                              "textfile collector), atomically")
    targets.set_defaults(handler=_metrics)
    from afo_runbook import compose_init

    compose_init.add_parser(commands)  # `init --from-compose`: a runbook.toml from compose
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if getattr(args, "pytest_args", None) and args.pytest_args[0] == "--":
        args.pytest_args = args.pytest_args[1:]
    if unknown:
        if not hasattr(args, "pytest_args"):
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.pytest_args = [*unknown, *args.pytest_args]  # `demo --runbook-json X`: pytest's
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
