#!/usr/bin/env python3
"""Mutation testing of the rules that decide or protect (issue 9), with mutmut 3.

    .venv/bin/python dev/mutate.py                  # every module below
    .venv/bin/python dev/mutate.py decision secret  # some of them (a name, path or module)
    .venv/bin/python dev/mutate.py --show           # also print each survivor's diff

mutmut copies afo_runbook/ and recovery/ to mutants/ (gitignored), rewrites the functions of
the modules in `[tool.mutmut] only_mutate` (pyproject.toml) so that each mutant can be
switched on alone, puts mutants/ first on sys.path (ahead of the editable install, whose
finder only answers for what the path does not have) and runs the unit tests (tests/unit,
in-process and fast) once per mutant. A mutant the tests notice is killed; one they do not
is a survivor: a missing test, or a change that cannot alter behaviour (an equivalent mutant,
explained in dev/MUTATION_SURVIVORS.md).

The score per module is printed as killed / total (%); a timeout counts as killed (the tests
noticed: a mutant that loops forever). Exit code 0 when every module reaches TARGET and every
survivor is explained, 1 otherwise, 2 when mutmut itself failed. One mutmut worker only
(--max-children 1): the machine has two cores and other work to do.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SURVIVORS_FILE = ROOT / "dev" / "MUTATION_SURVIVORS.md"
TARGET = 85.0

# module file -> the functions mutated in it (mutmut's mangled names: `x_name` for a
# function, `xǁClassǁmethod` for a method); "*" is the whole module, "!name" leaves a
# function of it out of the score.
MODULES: dict[str, tuple[str, ...]] = {
    "afo_runbook/decision.py": ("*",),
    "afo_runbook/verdict.py": ("*",),
    "afo_runbook/secret.py": ("*",),
    "afo_runbook/incident_log.py": ("*", "!x_add_log_parser"),  # an argparse declaration
    # the judges and the rules they apply (the probes are tested as probes, the threads
    # that run them end to end)
    "afo_runbook/observe.py": (
        "x_judge_health", "x_route_missing", "x_health_failures", "x__json_failures",
        "x__dig", "x__same", "x__certificate_expired", "x_certificate_warning",
        "x_health_warnings", "x_wrong_secret", "x_guard_request", "x_refused",
        "x_judge_guard_all", "x_judge_guard", "x__guard_warnings", "x_judge_sse",
        "x__wrapped_twice", "x__failed"),
    # what decides a container's symptom (the polling in _settle watches real time)
    "afo_runbook/containers.py": ("x__check", "x__state_problem", "x__ports_problem",
                                  "x__norm"),
    "afo_runbook/probes/sse.py": ("*",),
    # all of section 6 but the argparse declarations: their help texts are prose, and what
    # the options do is tested through main() (the markdown, JSON, HTML and exit codes)
    "afo_runbook/metrics.py": ("*", "!x__add_arguments", "!x_add_parser", "!x_build_parser"),
    "recovery/process.py": ("*",),
}


def dotted(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def glob(path: str, func: str) -> str:
    """mutmut's mutant-name glob for one function: `afo_runbook.observe.x_judge_health__*`."""
    return f"{dotted(path)}.*" if func == "*" else f"{dotted(path)}.{func}__mutmut_*"


def patterns(path: str) -> list[str]:
    return [glob(path, func) for func in MODULES[path] if not func.startswith("!")]


def excluded(path: str) -> list[str]:
    return [glob(path, func[1:]) for func in MODULES[path] if func.startswith("!")]


def counted(name: str, path: str) -> bool:
    def matches(globs: list[str]) -> bool:
        return any(fnmatch.fnmatch(name, g) for g in globs)

    return matches(patterns(path)) and not matches(excluded(path))


def pick(names: list[str]) -> list[str]:
    """`decision`, `afo_runbook.decision`, `afo_runbook/decision.py`, `process` -> the file."""
    if not names:
        return list(MODULES)
    chosen: list[str] = []
    for name in names:
        wanted = name.removesuffix(".py").replace(".", "/")
        found = [path for path in MODULES
                 if path.removesuffix(".py") == wanted or Path(path).stem == wanted]
        if len(found) != 1:
            sys.exit(f"mutate: unknown module {name!r}; one of: "
                     + ", ".join(Path(p).stem for p in MODULES))
        chosen += [path for path in found if path not in chosen]
    return chosen


def mutmut_command() -> list[str]:
    """The venv's `mutmut` script, installed on first use (`pip install mutmut>=3`).

    The script, not `python -m mutmut`: mutmut forks its workers and imports its own
    `mutmut.__main__`, which must not run a second time as `__main__`.
    """
    script = Path(sys.executable).parent / "mutmut"
    if not script.exists():
        print("mutate: installing mutmut into this venv", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
                        "-q", "mutmut>=3"], check=True)
    if not script.exists():
        sys.exit(f"mutate: no mutmut script at {script} after installing it")
    return [str(script)]


def results(mutmut: list[str]) -> dict[str, str]:
    """{mutant name: status} of every mutant mutmut knows, from `mutmut results --all`."""
    out = subprocess.run([*mutmut, "results", "--all", "true"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep:
            found[name] = status
    return found


def explained() -> set[str]:
    """The survivors explained as equivalent: `| module | mutant | ... |` rows naming one."""
    if not SURVIVORS_FILE.exists():
        return set()
    return set(re.findall(r"`([\w.ǁ]+__mutmut_\d+)`", SURVIVORS_FILE.read_text("utf-8")))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="modules to mutate (default: all)")
    parser.add_argument("--show", action="store_true", help="print each survivor's diff")
    parser.add_argument("--keep", action="store_true",
                        help="reuse mutants/ from the last run (default: start clean, so that "
                             "changed tests are always measured afresh)")
    parser.add_argument("--max-children", type=int, default=1, help="mutmut workers (1)")
    args = parser.parse_args(argv)
    chosen = pick(args.modules)
    mutmut = mutmut_command()
    if not args.keep:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    globs = [g for path in chosen for g in patterns(path)]
    print(f"mutate: mutmut run over {', '.join(chosen)} with tests/unit", flush=True)
    run = subprocess.run([*mutmut, "run", "--max-children", str(args.max_children), *globs],
                         cwd=ROOT, check=False, capture_output=True, text=True)
    if run.returncode != 0:
        print(run.stdout[-4000:] + run.stderr[-4000:], file=sys.stderr)
        print(f"mutate: mutmut run failed (exit code {run.returncode})", file=sys.stderr)
        return 2
    statuses = results(mutmut)
    known = explained()
    failed = False
    unexplained: list[str] = []
    print(f"\n{'module':34} {'killed':>6} / {'total':<5} {'score':>7}  other")
    for path in chosen:
        mine = {name: status for name, status in statuses.items() if counted(name, path)}
        counts = Counter(mine.values())
        killed = counts["killed"] + counts["timeout"]
        total = len(mine)
        score = 100.0 * killed / total if total else 0.0
        others = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())
                           if status != "killed")
        mark = "" if score >= TARGET else f"  < {TARGET:g} %"
        failed |= score < TARGET
        print(f"{path:34} {killed:>6} / {total:<5} {score:6.1f} %  {others}{mark}")
        unexplained += [name for name, status in sorted(mine.items())
                        if status not in ("killed", "timeout") and name not in known]
    equivalent = sorted(name for name, status in statuses.items()
                        if name in known and status == "survived")
    print(f"\nsurvivors explained as equivalent in {SURVIVORS_FILE.relative_to(ROOT)}: "
          f"{len(equivalent)}")
    if unexplained:
        failed = True
        print(f"survivors NOT explained ({len(unexplained)}): a test is missing, or the "
              "mutant is equivalent and belongs in that file:")
        for name in unexplained:
            print(f"  {name}: {statuses[name]}")
    if args.show:
        for name in unexplained or equivalent:
            show = subprocess.run([*mutmut, "show", name], cwd=ROOT, check=False,
                                  capture_output=True, text=True)
            print(show.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
