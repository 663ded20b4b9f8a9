"""The EXP_007 rollback drill, timed: time-to-recover against the runbook's 45 s.

    python3 tasks.py bench-drill [--rounds 5] [--docker]

Runs `afo-runbook drill` (green -> the api restarts without its secret -> pytest -m observe
--recover -> green) and prints the median TTR (decision -> green re-observation) and the
whole run (observe, decide, recover, observe again). Target: process mode under 5 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

RUNBOOK_TTR_S = 45.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--docker", action="store_true", help="also the Docker-mode drill")
    args = parser.parse_args(argv)
    modes = [("process", [])] + ([("docker", ["--docker"])] if args.docker else [])
    with tempfile.TemporaryDirectory() as tmp:
        for mode, flags in modes:
            out = Path(tmp) / f"{mode}.json"
            proc = subprocess.run([sys.executable, "-m", "afo_runbook.cli", "drill",
                                   "--rounds", str(args.rounds), "--json", str(out), *flags],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0 or not out.exists():
                print(f"{mode}: the drill failed (exit {proc.returncode})\n{proc.stdout[-2000:]}")
                continue
            rounds = json.loads(out.read_text())["rounds"]
            ttr = [r["ttr_s"] for r in rounds]
            whole = [r["observe_to_green_s"] for r in rounds]
            print(f"{mode} mode, {len(rounds)} rounds: TTR median {statistics.median(ttr):.2f} s "
                  f"(range {min(ttr):.2f}-{max(ttr):.2f}); whole run median "
                  f"{statistics.median(whole):.2f} s; runbook EXP_007 {RUNBOOK_TTR_S:.0f} s "
                  f"-> {RUNBOOK_TTR_S / statistics.median(ttr):.0f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
