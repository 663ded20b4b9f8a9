"""The api's SSE heartbeat stream and its faulty variants (async generators)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

_connection_ids = itertools.count(1)

# Non-SSE bytes for sse-garbage: an HTML error page and binary noise; no line starts with a
# field name an SSE parser would act on ("event", "data", "id", "retry").
GARBAGE_CHUNK = (
    b"<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><h1>502 Bad Gateway</h1><hr>nginx</body></html>\n"
    b"\x00\x9f\x92\x96\xff\xfe\x1b[0m\x80\x81\xc3\x28 garbage\r\n"
)


def next_connection_id() -> int:
    return next(_connection_ids)


async def heartbeats(
    log: logging.Logger, interval: float, first_delay: float = 0.0, count: int | None = None
) -> AsyncIterator[dict[str, Any]]:
    """`event: heartbeat` right away (or after `first_delay`), then every `interval` seconds;
    after `count` events (if given) the stream ends.

    Ticks follow a fixed schedule so heartbeats do not drift with send latency.
    """
    conn = next_connection_id()
    loop = asyncio.get_running_loop()
    due = loop.time() + first_delay
    for seq in itertools.count(1):
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        # The runbook greps the service log for "heartbeat": one line per event sent.
        log.info("heartbeat sent conn=%d seq=%d", conn, seq)
        payload = {"type": "heartbeat", "seq": seq, "ts": round(time.time(), 3)}
        yield {"event": "heartbeat", "data": json.dumps(payload, separators=(",", ":"))}
        if count is not None and seq >= count:
            return
        due = max(due + interval, loop.time())


async def silence() -> AsyncIterator[dict[str, Any]]:
    """Never yields: the client gets headers and then nothing, ever."""
    await asyncio.Event().wait()
    yield {}  # pragma: no cover - unreachable, makes this an async generator


async def comments_only(interval: float) -> AsyncIterator[dict[str, Any]]:
    """Keep-alive comments (`: ping`) and never an event."""
    while True:
        yield {"comment": "ping"}
        await asyncio.sleep(interval)


async def garbage(interval: float) -> AsyncIterator[bytes]:
    while True:
        yield GARBAGE_CHUNK
        await asyncio.sleep(interval)
