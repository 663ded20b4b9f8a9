"""Runbook 4.1, log analysis, for containers and processes alike:

    docker logs --since 1h afo-core 2>&1 | grep -i error
    grep "heartbeat" /var/log/afo-*.log
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEEP_LINES = 20


@dataclass
class LogExcerpt:
    source: str
    since_s: float | None
    lines: int = 0
    bytes: int = 0
    truncated: bool = False
    error_count: int = 0
    error_lines: list[str] = field(default_factory=list)
    heartbeat_lines: int = 0
    tail: list[str] = field(default_factory=list)
    problem: str | None = None

    def evidence(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "since_s": self.since_s,
            "lines": self.lines,
            "bytes": self.bytes,
            "truncated": self.truncated,
            "error_count": self.error_count,
            "error_lines": self.error_lines,
            "heartbeat_lines": self.heartbeat_lines,
            "tail": self.tail,
            "problem": self.problem,
        }


def analyse(excerpt: LogExcerpt, text: str) -> LogExcerpt:
    """Count and keep what the runbook greps for: error lines and heartbeats."""
    lines = text.splitlines()
    excerpt.lines = len(lines)
    errors = [line for line in lines if "error" in line.lower()]
    excerpt.error_count = len(errors)
    excerpt.error_lines = [line[:300] for line in errors[-KEEP_LINES:]]
    excerpt.heartbeat_lines = sum(1 for line in lines if "heartbeat" in line)
    excerpt.tail = [line[:300] for line in lines[-KEEP_LINES:]]
    return excerpt


def read_file(path: Path, max_bytes: int) -> LogExcerpt:
    """The newest `max_bytes` of a process's log file, analysed."""
    excerpt = LogExcerpt(source=str(path), since_s=None)
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - max_bytes))
            data = fh.read(max_bytes)
    except OSError as exc:
        excerpt.problem = f"cannot read {path}: {exc.strerror or exc}"
        return excerpt
    excerpt.bytes = len(data)
    excerpt.truncated = size > max_bytes
    text = data.decode("utf-8", errors="replace")
    if excerpt.truncated:
        text = text.split("\n", 1)[-1]  # drop the partial first line
    return analyse(excerpt, text)
