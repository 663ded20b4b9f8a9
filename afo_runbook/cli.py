"""The `afo-runbook` command: placeholder, being written."""


def main() -> int:
    return 0
