"""The api's SSE heartbeat stream and its faulty variants (async generators)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

_connection_ids = itertools.count(1)

# Non-SSE bytes for sse-garbage: an HTML error page and binary noise; no line starts with a
# field name an SSE parser would act on ("event", "data", "id", "retry").
GARBAGE_CHUNK = (
    b"<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><h1>502 Bad Gateway</h1><hr>nginx</body></html>\n"
    b"\x00\x9f\x92\x96\xff\xfe\x1b[0m\x80\x81\xc3\x28 garbage\r\n"
)


# sse-double-wrapped: what the real service sends for each heartbeat. It wraps its heartbeat in
# SSE framing twice, so a client sees ONE event (type "message") whose data is itself SSE text.
DOUBLE_WRAPPED_HEARTBEAT = b"data: event: heartbeat\r\ndata: data: ping\r\ndata: \r\ndata: \r\n\r\n"
UTF8_BOM = b"\xef\xbb\xbf"

Item = dict[str, Any] | bytes  # what EventSourceResponse accepts: an event, or raw bytes


def next_connection_id() -> int:
    return next(_connection_ids)


async def heartbeats(
    log: logging.Logger,
    interval: float,
    first_delay: float = 0.0,
    count: int | None = None,
    *,
    double_wrapped: bool = False,
) -> AsyncIterator[Item]:
    """`event: heartbeat` right away (or after `first_delay`), then every `interval` seconds;
    after `count` events (if given) the stream ends. `double_wrapped`: each event is
    DOUBLE_WRAPPED_HEARTBEAT's raw bytes instead.

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
        if double_wrapped:
            yield DOUBLE_WRAPPED_HEARTBEAT
        else:
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


async def bom_first(stream: AsyncIterator[Item]) -> AsyncIterator[Item]:
    """`stream`, with a UTF-8 BOM sent just before its first item."""
    async with aclosing(stream):
        first = True
        async for item in stream:
            if first:
                first = False
                yield UTF8_BOM
            yield item


async def gzipped(
    stream: AsyncIterator[Item], encode: Callable[[Item], bytes]
) -> AsyncIterator[bytes]:
    """`stream` as one gzip member: every item encoded, compressed and sync-flushed so it
    arrives as soon as it is made; the end of `stream` finishes the member."""
    compressor = zlib.compressobj(wbits=31)  # 31: gzip header and trailer
    async with aclosing(stream):
        async for item in stream:
            yield compressor.compress(encode(item)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    yield compressor.flush()
