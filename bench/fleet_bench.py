"""How many deployments one runner observes per minute: N reference stacks, N concurrent
`pytest -m observe` runs, one per stack, on this machine.

    .venv/bin/python bench/fleet_bench.py [--sizes 1 4 8] [--rounds 3] [--json results.json]

Each stack is a process-mode reference stack (afo_runbook.refstack.stack.Stack) on free ports
with its own env file and secret, observed through its own runbook.toml written like
bench/observe_bench.py's `write_config` (3 [[health]], [guard], [sse]). For each N, the N runs
start together; the wall time runs from the first start to the last exit, and deployments per
minute = N / wall * 60. Medians of --rounds rounds, after one warm-up round per N. The stacks
run on the same machine as the observers and compete with them for the CPUs, so a runner
that observes remote deployments has more of it: these numbers are a floor.
Nothing here asserts: it prints numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from observe_bench import observe_argv, write_config

from afo_runbook.refstack.services import SERVICE_NAMES
from afo_runbook.refstack.stack import Stack, free_ports

REPO = Path(__file__).resolve().parent.parent


def start_stacks(tmp: Path, count: int) -> list[tuple[Stack, Path]]:
    """`count` running stacks, each with its config; stopped by the caller."""
    started: list[tuple[Stack, Path]] = []
    try:
        for index in range(count):
            folder = tmp / f"deployment-{index}"
            folder.mkdir()
            env_file = folder / ".env.afo"
            env_file.write_text(f"AFO_INTERNAL_SECRET={secrets.token_urlsafe(24)}\n")
            env_file.chmod(0o600)
            ports = dict(zip(SERVICE_NAMES, free_ports(len(SERVICE_NAMES)), strict=True))
            stack = Stack(folder / "state", ports=ports, env_file=env_file)
            stack.start()
            started.append((stack, write_config(folder / "runbook.toml", stack, env_file)))
    except BaseException:
        for stack, _ in started:
            stack.stop()
        raise
    return started


def fleet_round(configs: list[Path], reports: Path, env: dict[str, str]) -> dict[str, Any]:
    """All runs at once; the wall time until the last one exits."""
    began = time.perf_counter()
    procs = [subprocess.Popen(observe_argv(config, reports / f"d{index}", "-q"), cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for index, config in enumerate(configs)]
    outputs = [proc.communicate()[0] for proc in procs]
    wall = time.perf_counter() - began
    failed = [(proc.returncode, out.decode(errors="replace")[-800:])
              for proc, out in zip(procs, outputs, strict=True) if proc.returncode != 0]
    return {"wall_s": wall, "green": len(configs) - len(failed), "failed": failed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    cpus = len(os.sched_getaffinity(0))
    # As an operator runs it: bytecode cached, no pytest variables of a calling session.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "RUNBOOK_")) and k != "PYTHONDONTWRITEBYTECODE"
           and k != "AFO_INTERNAL_SECRET"}
    results: dict[str, Any] = {"cpus": cpus, "rounds": args.rounds, "fleet": []}
    with tempfile.TemporaryDirectory(prefix="afo-fleet-bench-") as tmpdir:
        tmp = Path(tmpdir)
        print(f"starting {max(args.sizes)} reference stacks ({cpus} CPUs) ...", flush=True)
        stacks = start_stacks(tmp, max(args.sizes))
        try:
            configs = [config for _, config in stacks]
            print(f"{'N':>3}  {'wall (median)':>13}  {'range':>13}  {'deployments/min':>15}"
                  f"  green")
            for size in args.sizes:
                fleet_round(configs[:size], tmp / "reports", env)  # warm-up, not counted
                rounds = [fleet_round(configs[:size], tmp / "reports", env)
                          for _ in range(args.rounds)]
                walls = [r["wall_s"] for r in rounds]
                wall = statistics.median(walls)
                per_minute = size / wall * 60
                green = min(r["green"] for r in rounds)
                print(f"{size:>3}  {wall:>11.2f} s  {min(walls):>5.2f}-{max(walls):<5.2f} s"
                      f"  {per_minute:>15.0f}  {green}/{size}", flush=True)
                for r in rounds:
                    for rc, tail in r["failed"]:
                        print(f"  ! a run exited {rc}:\n{tail}")
                results["fleet"].append({"n": size, "wall_s": wall, "walls_s": walls,
                                         "deployments_per_min": per_minute,
                                         "green": green})
        finally:
            for stack, _ in stacks:
                stack.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
