"""Time `pytest -m observe` against the runbook's own shell procedure, same stack, same run.

    python3 tasks.py bench [--rounds 5] [--skip-hung] [--json results.json]

Three measurements, each printed as medians and ratios:
  1. healthy reference stack: bench/runbook_observe.sh (section 1 as written) vs our observe
     run, parallel (the default) and serial (-n 0);                target: ours <= 1/10
  2. 3 vs 200 [[health]] entries, parallel;                         target: 200 <= 2x of 3
  3. every target hung at once (all URLs on a server that accepts and never answers):
     a verdict inside budgets.observe (60 s), aiming at 25 s; one after the other with each
     check waiting its whole budget would need 3*10 + 3*20 + 20 = 110 s.
Nothing here asserts: it prints numbers. Speed is never a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import tomli_w

from afo_runbook.refstack.rawservers import RawServer
from afo_runbook.refstack.services import SERVICES
from afo_runbook.refstack.stack import Stack, free_ports, port_is_free

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHELL = HERE / "runbook_observe.sh"
RUNBOOK_PORTS = {name: spec.default_port for name, spec in SERVICES.items()}


def timed(argv: list[str], env: dict[str, str], cwd: Path = REPO) -> tuple[float, int, str]:
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    return time.perf_counter() - started, proc.returncode, proc.stdout + proc.stderr


def shell_script(tmp: Path, ports: dict[str, int]) -> Path:
    """The runbook's commands as written; only the ports change if the runbook's are taken."""
    text = SHELL.read_text()
    for name, port in ports.items():
        text = text.replace(f"localhost:{RUNBOOK_PORTS[name]}/", f"localhost:{port}/")
    path = tmp / "runbook_observe.sh"
    path.write_text(text)
    return path


def write_config(path: Path, stack: Stack, env_file: Path, health_entries: int = 3,
                 hung_url: str | None = None) -> Path:
    services = list(SERVICES)
    api = hung_url or stack.urls["api"]
    health = []
    for index in range(health_entries):
        service = services[index % len(services)]
        url = f"{hung_url}/{service}" if hung_url else stack.health_url(service)
        health.append({"name": f"{service}-{index}" if health_entries > 3 else service,
                       "url": url})
    config: dict[str, Any] = {
        "health": health,
        "guard": {"url": f"{api}/api/revalidate/status", "env_file": str(env_file)},
        "sse": {"url": f"{api}/api/thoughts/sse", "window": 10},
    }
    path.write_bytes(tomli_w.dumps(config).encode())
    return path


def observe_argv(config: Path, reports: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "observe",
            "--runbook-config", str(config), "--runbook-reports", str(reports), *extra]


def median_of(rounds: int, argv: list[str], env: dict[str, str], label: str,
              expect_rc: int | None = 0) -> float:
    times = []
    for _ in range(rounds):
        seconds, rc, output = timed(argv, env)
        if expect_rc is not None and rc != expect_rc:
            print(f"  ! {label}: exit {rc}, expected {expect_rc}:\n{output[-1500:]}")
        times.append(seconds)
    value = statistics.median(times)
    spread = f"{min(times):.2f}-{max(times):.2f}"
    print(f"  {label:<44} median {value:6.2f} s  (range {spread} s, {rounds} rounds)")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-hung", action="store_true", help="skip the slow hung case")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"rounds": args.rounds, "cpus": len(os.sched_getaffinity(0))}

    with tempfile.TemporaryDirectory(prefix="afo-bench-") as tmpdir:
        tmp = Path(tmpdir)
        secret = secrets.token_urlsafe(24)
        env_file = tmp / ".env.afo"
        env_file.write_text(f"AFO_INTERNAL_SECRET={secret}\n")
        env_file.chmod(0o600)
        ports = dict(RUNBOOK_PORTS)
        if not all(port_is_free("127.0.0.1", p) for p in ports.values()):
            ports = dict(zip(ports, free_ports(len(ports)), strict=True))
        print(f"reference stack on ports {ports}; {results['cpus']} CPUs")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env["AFO_INTERNAL_SECRET"] = secret  # the shell procedure reads it like the runbook
        reports = tmp / "reports"
        stack = Stack(tmp / "state", ports=ports, env_file=env_file)
        stack.start()
        try:
            script = shell_script(tmp, ports)
            cfg3 = write_config(tmp / "rb3.toml", stack, env_file)
            cfg200 = write_config(tmp / "rb200.toml", stack, env_file, health_entries=200)

            print("\n1. healthy stack: the runbook's shell procedure vs pytest -m observe")
            # the shell's exit says little: `docker ps` fails where no engine runs, as written
            shell = median_of(args.rounds, ["bash", str(script)], env,
                              "shell (runbook section 1)", expect_rc=None)
            parallel = median_of(args.rounds, observe_argv(cfg3, reports), env,
                                 "pytest -m observe (parallel, default)")
            serial = median_of(args.rounds, observe_argv(cfg3, reports, "-n", "0"), env,
                               "pytest -m observe -n 0 (serial)")
            print(f"  ratio parallel/shell = {parallel / shell:.3f}   "
                  f"serial/shell = {serial / shell:.3f}   (target <= 0.100)")
            results["healthy"] = {"shell_s": shell, "parallel_s": parallel, "serial_s": serial,
                                  "parallel_ratio": parallel / shell,
                                  "serial_ratio": serial / shell}

            print("\n2. 3 vs 200 [[health]] entries (parallel)")
            three = median_of(args.rounds, observe_argv(cfg3, reports), env, "3 entries")
            many = median_of(args.rounds, observe_argv(cfg200, reports), env, "200 entries")
            many_serial = median_of(args.rounds, observe_argv(cfg200, reports, "-n", "0"),
                                    env, "200 entries, -n 0")
            print(f"  ratio 200/3 = {many / three:.2f}   (target <= 2.00)")
            results["scale"] = {"three_s": three, "two_hundred_s": many,
                                "two_hundred_serial_s": many_serial, "ratio": many / three}

            if not args.skip_hung:
                print("\n3. every target hung at once (runbook budgets: 10/20/20 s)")
                with RawServer("hang") as hung:
                    cfg_hung = write_config(tmp / "rb-hung.toml", stack, env_file,
                                            hung_url=hung.url)
                    hung_parallel = _hung(cfg_hung, reports, env, "parallel (default)")
                    hung_serial = _hung(cfg_hung, reports, env, "serial (-n 0)", "-n", "0")
                print("  one check after another, each waiting its whole budget: 110 s; "
                      "the shell procedure never ends (1.1/1.2 curl has no --max-time)")
                results["hung"] = {"parallel_s": hung_parallel, "serial_s": hung_serial,
                                   "sequential_budget_s": 110}
        finally:
            stack.stop()

    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _hung(config: Path, reports: Path, env: dict[str, str], label: str, *extra: str) -> float:
    seconds, rc, output = timed(observe_argv(config, reports, *extra), env)
    verdict = re.search(r"observe took ([\d.]+) s", output)
    decision = re.search(r"decision: (\S+)", output)
    print(f"  {label:<44} wall {seconds:6.2f} s  verdict after "
          f"{verdict.group(1) if verdict else '?'} s, decision "
          f"{decision.group(1) if decision else '?'} (exit {rc}; budget 60 s, aim 25 s)")
    return seconds


if __name__ == "__main__":
    sys.exit(main())
