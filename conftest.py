"""The repository's root conftest.

The runbook's pytest machinery (options, markers, parallelism, budgets, the verdict) is the
`afo_runbook` plugin, loaded as a `pytest11` entry point: pytest may miss this folder's ini file
and conftest (see README, "Known traps"), and the plugin must work wherever it runs. What is
left here is specific to this checkout: folders that hold no tests are not collected, so that
`pytest .` from the repo runs the checks and the suite's own tests, and nothing else.
"""

collect_ignore = ["afo_runbook", "recovery", "bench", "examples", "reports", ".refstack",
                  "packages", "tasks.py"]
collect_ignore_glob = [".venv*"]
