"""Fixtures for the in-process unit tests (tests/unit): fast, real parts, nothing mocked.

The helpers live in loopback.py (a module name of its own: every test folder has a
conftest.py, and none of them is importable by that name).
"""

from __future__ import annotations

import locale
import time
from collections.abc import Iterator

import pytest
from loopback import Loopback


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    """A running loopback HTTP server, stopped (and its held connections released) after."""
    server = Loopback().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def host_in_seoul(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The host's clock set to KST (UTC+9), as on the operators' own machines: whatever
    says `Z` must be UTC, not the local time."""
    monkeypatch.setenv("TZ", "KST-9")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def host_in_c_locale() -> Iterator[None]:
    """A cron job under LANG=C: the locale's encoding is ASCII, while the logs and reports
    hold UTF-8 (Korean text, a password with an umlaut)."""
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, "")
