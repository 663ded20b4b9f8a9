"""Time `pytest -m observe` against the runbook's own shell procedure, same stack, same run.

    python3 tasks.py bench [--rounds 5] [--skip-hung] [--json results.json]

Four measurements, medians of --rounds runs each, printed with their ratios and, beside ours,
the floor: an empty pytest run of as many tests (same interpreter, same plugins), so the gap
to the limit is visible. Both engines: in-process (the default) and xdist (-n 2).
  1. healthy reference stack: bench/runbook_observe.sh (section 1 as written) vs ours;
                                                                  target: ours <= 0.06 of it
  2. a stack like the real service (the api's first SSE event 5 s after the request, then the
     stream ends: fault sse-late-one-shot=5);                     target: ours <= 1.1x shell
  3. 3 vs 1,000 [[health]] entries, the HTML report on;           target: 1,000 <= 3x of 3
  4. every target hung at once (all URLs on a server that accepts and never answers), the
     runbook's budgets (10/20/20 s, SSE window 10 s);             target: a verdict <= 12 s
     (one check after another, each waiting its whole budget: 110 s; the budget is 60 s)
Every command runs once as a warm-up first, with bytecode caching on (as after a pip install).
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
    timed(argv, env)  # a warm-up, not counted: bytecode caches, page cache
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


def empty_suite(tmp: Path, tests: int) -> Path:
    """The floor: a pytest run of as many tests that do nothing."""
    folder = tmp / f"empty-{tests}"
    folder.mkdir(exist_ok=True)
    (folder / "test_empty.py").write_text(
        f"import pytest\n\n\n@pytest.mark.parametrize('i', range({tests}))\n"
        "def test_nothing(i):\n    pass\n")
    return folder


def floor_argv(folder: Path, reports: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(folder),
            "--html", str(reports / "floor.html"), "--self-contained-html", *extra]


def ratio(label: str, ours: float, theirs: float, target: str) -> float:
    value = ours / theirs
    print(f"  ratio {label} = {value:.3f}   (target {target})")
    return value


def shell_against_ours(rounds: int, script: Path, config: Path, reports: Path,
                       env: dict[str, str], target: str) -> dict[str, float]:
    """The runbook's shell procedure, then ours in both engines, on the stack as it is now."""
    # the shell's exit says little: `docker ps` fails where no engine runs, as written
    shell = median_of(rounds, ["bash", str(script)], env, "shell (runbook section 1)",
                      expect_rc=None)
    ours = median_of(rounds, observe_argv(config, reports), env,
                     "pytest -m observe (in-process, default)")
    xdist = median_of(rounds, observe_argv(config, reports, "-n", "2"), env,
                      "pytest -m observe -n 2 (xdist)")
    return {"shell_s": shell, "in_process_s": ours, "xdist_s": xdist,
            "ratio": ratio("in-process/shell", ours, shell, target),
            "xdist_ratio": ratio("xdist/shell", xdist, shell, "none: the other engine")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-hung", action="store_true", help="skip the slow hung case")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    rounds = args.rounds
    results: dict[str, Any] = {"rounds": rounds, "cpus": len(os.sched_getaffinity(0))}

    with tempfile.TemporaryDirectory(prefix="afo-bench-") as tmpdir:
        tmp = Path(tmpdir)
        secret = secrets.token_urlsafe(24)
        env_file = tmp / ".env.afo"
        env_file.write_text(f"AFO_INTERNAL_SECRET={secret}\n")
        env_file.chmod(0o600)
        ports = dict(RUNBOOK_PORTS)
        if not all(port_is_free("127.0.0.1", p) for p in ports.values()):
            ports = dict(zip(ports, free_ports(len(ports)), strict=True))
        print(f"reference stack on ports {ports}; {results['cpus']} CPUs; medians of "
              f"{rounds} rounds")
        # As an operator runs it: bytecode is cached (a pip install compiles it), whatever
        # this shell says; with PYTHONDONTWRITEBYTECODE=1 every run would compile our modules.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PYTEST_") and k != "PYTHONDONTWRITEBYTECODE"}
        env["AFO_INTERNAL_SECRET"] = secret  # the shell procedure reads it like the runbook
        reports = tmp / "reports"
        reports.mkdir()
        stack = Stack(tmp / "state", ports=ports, env_file=env_file)
        stack.start()
        try:
            script = shell_script(tmp, ports)
            cfg3 = write_config(tmp / "rb3.toml", stack, env_file)
            cfg1000 = write_config(tmp / "rb1000.toml", stack, env_file, health_entries=1000)
            floor7 = empty_suite(tmp, 7)

            print("\n1. healthy stack: the runbook's shell procedure vs pytest -m observe")
            healthy = shell_against_ours(rounds, script, cfg3, reports, env, "<= 0.06")
            floor = median_of(rounds, floor_argv(floor7, reports), env,
                              "floor: 7 empty tests, HTML report on")
            healthy["floor_s"] = floor
            healthy["floor_ratio"] = ratio("floor/shell", floor, healthy["shell_s"], "the limit")
            results["healthy"] = healthy

            print("\n2. like the real service: first SSE event after 5 s, then the stream "
                  "ends")
            stack.set_fault("api", "sse-late-one-shot", 5)
            results["real_like"] = shell_against_ours(rounds, script, cfg3, reports, env,
                                                      "<= 1.10")
            stack.clear_fault("api")

            print("\n3. 3 vs 1,000 [[health]] entries, the HTML report on")
            three = median_of(rounds, observe_argv(cfg3, reports), env, "3 entries")
            many = median_of(rounds, observe_argv(cfg1000, reports), env, "1,000 entries")
            many_xdist = median_of(rounds, observe_argv(cfg1000, reports, "-n", "2"), env,
                                   "1,000 entries, -n 2")
            floor1000 = median_of(rounds, floor_argv(empty_suite(tmp, 1004), reports), env,
                                  "floor: 1,004 empty tests, HTML report on")
            results["scale"] = {"three_s": three, "thousand_s": many,
                                "thousand_xdist_s": many_xdist, "floor_s": floor1000,
                                "ratio": ratio("1,000/3", many, three, "<= 3.00")}

            if not args.skip_hung:
                print("\n4. every target hung at once (runbook budgets: 10/20/20 s)")
                with RawServer("hang") as hung:
                    cfg_hung = write_config(tmp / "rb-hung.toml", stack, env_file,
                                            hung_url=hung.url)
                    hung_ours = _hung(rounds, cfg_hung, reports, env, "in-process (default)")
                    hung_xdist = _hung(rounds, cfg_hung, reports, env, "xdist (-n 2)",
                                       "-n", "2")
                print("  target: a verdict <= 12 s. One check after another, each waiting its "
                      "whole budget: 110 s; the shell procedure never ends (1.1/1.2 curl has "
                      "no --max-time)")
                results["hung"] = {"in_process_s": hung_ours, "xdist_s": hung_xdist,
                                   "sequential_budget_s": 110}
        finally:
            stack.stop()

    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _hung(rounds: int, config: Path, reports: Path, env: dict[str, str], label: str,
          *extra: str) -> float:
    walls, verdicts = [], []
    decision = None
    for _ in range(rounds):
        seconds, _rc, output = timed(observe_argv(config, reports, *extra), env)
        walls.append(seconds)
        found = re.search(r"observe took ([\d.]+) s", output)
        if found:
            verdicts.append(float(found.group(1)))
        decided = re.search(r"decision: (\S+)", output)
        decision = decided.group(1) if decided else "?"
    wall = statistics.median(walls)
    verdict = statistics.median(verdicts) if verdicts else float("nan")
    print(f"  {label:<44} median wall {wall:6.2f} s, verdict after {verdict:.2f} s "
          f"(range {min(walls):.2f}-{max(walls):.2f} s), decision {decision}")
    return wall


if __name__ == "__main__":
    sys.exit(main())
