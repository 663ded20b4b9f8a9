"""The guard's secret: read from the environment or the env file, never written anywhere.

`Secret` hides its value from repr/str so it cannot leak through an f-string, a log line or an
assertion message; `Redactor` scrubs every artifact (evidence, terminal lines, JSON, HTML,
JUnit XML, incident log) of the secret and of every value in the env files, as a second line
of defence.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

REDACTED = "[REDACTED]"
# Env-file values that are too common to be secrets and would blank out ports and flags.
_HARMLESS = re.compile(r"^(\d{1,5}|true|false|yes|no|on|off|none|null)$", re.IGNORECASE)
_MIN_SCRUB_LENGTH = 4


class SecretUnavailable(Exception):
    """The suite itself has no secret, so the guard cannot be checked."""


@dataclass(frozen=True)
class Secret:
    env_var: str
    origin: str  # "environment" or the env file's path
    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return f"<secret {self.env_var} from {self.origin}>"

    __repr__ = __str__


def read_env_file(path: Path | None) -> dict[str, str]:
    """Values of a dotenv file (python-dotenv); a missing or unreadable file gives nothing."""
    if path is None:
        return {}
    try:
        if not path.is_file():
            return {}
        values = dotenv_values(path)
    except OSError:
        return {}
    return {k: v for k, v in values.items() if v is not None}


def load_secret(env_var: str, env_file: Path | None,
                environ: Mapping[str, str] | None = None) -> Secret:
    """The environment wins over the env file, as in a compose `environment:` override."""
    environ = os.environ if environ is None else environ
    value = environ.get(env_var, "")
    if value:
        return Secret(env_var, "environment", value)
    from_file = read_env_file(env_file).get(env_var, "")
    if from_file:
        return Secret(env_var, str(env_file), from_file)
    where = f"the env file {env_file}" if env_file else "no env file configured"
    if env_file is not None and not env_file.exists():
        where = f"the env file {env_file} does not exist"
    elif env_file is not None:
        where = f"the env file {env_file} does not define it"
    raise SecretUnavailable(f"{env_var} is not set in the environment and {where}")


EDGE_FRAGMENT = 8  # the shortest piece of a secret scrubbed at a cut edge


class Redactor:
    """Replaces every sensitive string with [REDACTED]."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*values)

    def add(self, *values: str) -> None:
        fresh = {v for v in values if v and len(v) >= _MIN_SCRUB_LENGTH and not _HARMLESS.match(v)}
        # A guard secret shorter than the minimum is still scrubbed: callers add it via force.
        if fresh - self._values:
            self._values |= fresh
            self._compile()

    def force(self, value: str) -> None:
        """Scrub `value` whatever its length (the guard secret itself)."""
        if value and value not in self._values:
            self._values.add(value)
            self._compile()

    def _compile(self) -> None:
        # Longest first so a secret containing another is replaced whole.
        ordered = sorted(self._values, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, value: str) -> str:
        if self._pattern is None or not value:
            return value
        return self._edges(self._pattern.sub(REDACTED, value))

    def _edges(self, value: str) -> str:
        """A string cut out of a longer one (an excerpt, a first line) can end with the start
        of a secret, or begin with its end: scrub such fragments of 8 characters or more."""
        if len(value) < EDGE_FRAGMENT:
            return value
        for secret in self._values:
            if len(secret) <= EDGE_FRAGMENT:
                continue
            # the tail of `value` is a prefix of the secret
            head = secret[:EDGE_FRAGMENT]
            start = value.find(head, max(0, len(value) - len(secret) + 1))
            while start != -1:
                if secret.startswith(value[start:]):
                    value = value[:start] + REDACTED
                    break
                start = value.find(head, start + 1)
            # the head of `value` is a suffix of the secret
            tail = secret[-EDGE_FRAGMENT:]
            end = value.find(tail, 0, len(secret) - 1)
            while end != -1 and end + EDGE_FRAGMENT <= len(secret) - 1:
                cut = end + EDGE_FRAGMENT
                if secret.endswith(value[:cut]):
                    value = REDACTED + value[cut:]
                    break
                end = value.find(tail, end + 1, len(secret) - 1)
        return value

    def data(self, value: Any) -> Any:
        """Redact strings inside nested dicts, lists and tuples."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value

    def file(self, path: Path) -> bool:
        """Scrub a written artifact in place; True if anything was replaced."""
        if self._pattern is None or not path.is_file():
            return False
        original = path.read_text(encoding="utf-8", errors="surrogateescape")
        scrubbed = self.text(original)
        if scrubbed == original:
            return False
        tmp = path.with_name(path.name + ".redacting")
        tmp.write_text(scrubbed, encoding="utf-8", errors="surrogateescape")
        os.replace(tmp, path)
        return True


def redactor_for(env_var: str | None, env_files: Iterable[Path | None],
                 environ: Mapping[str, str] | None = None) -> Redactor:
    """Everything sensitive this run could know: the secret and every env-file value."""
    environ = os.environ if environ is None else environ
    redactor = Redactor()
    for env_file in env_files:
        redactor.add(*read_env_file(env_file).values())
    if env_var:
        redactor.force(environ.get(env_var, ""))
        for env_file in env_files:
            redactor.force(read_env_file(env_file).get(env_var, ""))
    return redactor
