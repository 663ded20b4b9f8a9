"""afo-runbook: the AFO operations runbook as a pytest suite."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("afo-runbook")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+checkout"
