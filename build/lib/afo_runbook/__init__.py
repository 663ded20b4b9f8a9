"""afo-runbook: the AFO operations runbook as a pytest suite."""

from typing import Any


def __getattr__(name: str) -> Any:
    # Looked up on first use: importlib.metadata costs every pytest process (and each xdist
    # worker) tens of milliseconds at start-up, and most runs never print the version.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("afo-runbook")
        except PackageNotFoundError:  # a checkout that was never installed
            return "0.0.0+checkout"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
