"""Poll a condition until it holds or a deadline passes (instead of fixed sleeps)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.05,
    message: str | None = None,
) -> T:
    """Call `predicate` until it returns something truthy and return that value.

    Raises TimeoutError (with `message`, if given) when `timeout` seconds pass first.
    The predicate is always called at least once, and once more right at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(message or f"condition not met within {timeout:.1f}s")
        time.sleep(min(interval, remaining))
