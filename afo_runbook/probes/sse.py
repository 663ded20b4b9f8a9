"""Runbook 1.3's stream check, done properly: wait for one complete SSE event, not for bytes.

The runbook counts bytes from `curl -N --max-time 10`, so it always waits 10 s and takes an
HTML error page for a heartbeat. Here the probe returns as soon as the first complete event
(a blank-line-terminated block with an `event:`, `data:` or `id:` field) arrives, and any byte
that is not SSE framing fails the check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sseclient import SSEClient

from afo_runbook.probes.http import EXCERPT_BYTES, BoundedRead, open_stream

if TYPE_CHECKING:
    from afo_runbook.config import Tls

SSE_FIELDS = frozenset({"event", "data", "id", "retry"})
DISPATCHING_FIELDS = frozenset({"event", "data", "id"})
MAX_LINE = 64 * 1024
KEEP_EVENTS = 3
BOM = b"\xef\xbb\xbf"
EVENT_STREAM = "text/event-stream"
# A data line that is itself an SSE field: the server wrapped an event in another one.
_WRAPPED_FIELDS = ("event:", "data:", "id:", "retry:")


class FramingError(Exception):
    """Bytes that are not Server-Sent Events framing."""


@dataclass
class SseEvent:
    event: str
    id: str | None
    data: str
    at_s: float  # since the request started

    @property
    def wrapped(self) -> bool:
        """Its data is itself SSE framing (`event:`/`data:` lines): wrapped twice."""
        return any(line.startswith(_WRAPPED_FIELDS) for line in self.data.splitlines())

    @property
    def inner_event(self) -> str | None:
        """The event name inside a wrapped event's data, if it names one."""
        for line in self.data.splitlines():
            if line.startswith("event:"):
                return line[len("event:"):].strip() or None
        return None

    def evidence(self) -> dict[str, Any]:
        found: dict[str, Any] = {"event": self.event, "id": self.id, "data": self.data[:200],
                                 "at_ms": round(self.at_s * 1000, 1)}
        if self.wrapped:
            found["wrapped"] = True
            found["inner_event"] = self.inner_event
        return found


def media_type(content_type: str | None) -> str:
    """RFC 9110: the type/subtype, lower-cased, without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


class EventFramer:
    """Splits a byte stream into SSE blocks, validating every line on the way.

    Complete blocks are parsed by sseclient-py; blocks without `data:` (which sseclient-py does
    not dispatch) still count, since the runbook's heartbeat may carry only `event:`.
    """

    def __init__(self) -> None:
        self._pending = b""
        self._block: list[bytes] = []
        self._fields: set[str] = set()
        self._started = False
        self._after_cr = False
        self.comments = 0
        self.lines = 0

    def feed(self, data: bytes) -> list[tuple[bytes, set[str]]]:
        """Complete blocks (raw bytes, field names) found in what has arrived so far."""
        if not self._started:
            # WHATWG: one leading U+FEFF is stripped from the stream, before any parsing
            # (else the first field reads "\ufeffevent" and the event is named "message").
            head = self._pending + data
            if len(head) < len(BOM) and BOM.startswith(head):
                self._pending = head  # maybe a BOM split across reads: wait for more
                return []
            self._pending, data = b"", head.removeprefix(BOM)
            self._started = True
        if self._after_cr and data.startswith(b"\n"):
            data = data[1:]  # the second half of a \r\n split across chunks
        self._after_cr = False
        self._pending += data
        blocks: list[tuple[bytes, set[str]]] = []
        while True:
            line, ending, rest = _split_line(self._pending)
            if ending is None:
                if len(self._pending) > MAX_LINE:
                    raise FramingError(f"a line longer than {MAX_LINE // 1024} KiB")
                break
            self._pending = rest
            self._after_cr = ending == b"\r" and not rest
            done = self._line(line, line + ending)
            if done is not None:
                blocks.append(done)
        return blocks

    def _line(self, line: bytes, raw: bytes) -> tuple[bytes, set[str]] | None:
        self.lines += 1
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise FramingError(f"line {self.lines} is not UTF-8: {line[:40]!r}") from None
        if text == "":
            block, fields = b"".join(self._block) + raw, self._fields
            self._block, self._fields = [], set()
            return (block, fields) if fields & DISPATCHING_FIELDS else None
        self._block.append(raw)
        if text.startswith(":"):
            self.comments += 1
            return None
        name = text.split(":", 1)[0]
        if name not in SSE_FIELDS:
            raise FramingError(f"line {self.lines} is not an SSE field: {text[:60]!r}")
        self._fields.add(name)
        return None


def _split_line(buffer: bytes) -> tuple[bytes, bytes | None, bytes]:
    """(line, line ending, rest); ending None when no complete line is buffered yet."""
    lf, cr = buffer.find(b"\n"), buffer.find(b"\r")
    if cr == -1 or (lf != -1 and lf < cr):
        if lf == -1:
            return buffer, None, b""
        return buffer[:lf], b"\n", buffer[lf + 1 :]
    if cr + 1 < len(buffer) and buffer[cr + 1] == 0x0A:
        return buffer[:cr], b"\r\n", buffer[cr + 2 :]
    return buffer[:cr], b"\r", buffer[cr + 1 :]


def parse_block(block: bytes, fields: set[str], at_s: float) -> SseEvent:
    parsed = next(iter(SSEClient([block]).events()), None)
    if parsed is not None:
        return SseEvent(parsed.event, parsed.id, parsed.data, at_s)
    # sseclient-py only dispatches events with data; read the name ourselves for the rest.
    name, event_id = "message", None
    for line in block.decode("utf-8").splitlines():
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "event" and value:
            name = value
        elif key == "id":
            event_id = value
    return SseEvent(name, event_id, "", at_s)


@dataclass
class SseSeen:
    url: str
    window_s: float
    status: int | None = None
    content_type: str | None = None
    latency_s: float | None = None  # until the response headers
    ttfb_s: float | None = None  # until the first body byte
    elapsed_s: float = 0.0
    bytes_read: int = 0
    comments: int = 0
    events: list[SseEvent] = field(default_factory=list)
    error_class: str | None = None  # transport trouble, as in HttpSeen
    error: str | None = None
    problem: str | None = None  # what is wrong with an HTTP answer, if anything
    body_excerpt: str = ""
    expected_event: str | None = None
    min_events: int = 1
    ended: bool = False  # the server ended the stream
    content_coding: str | None = None  # a Content-Encoding the server used anyway

    def matching(self) -> list[SseEvent]:
        """The events that count: all, or those named `expected_event`."""
        return [e for e in self.events
                if self.expected_event is None or e.event == self.expected_event]

    @property
    def first_event(self) -> SseEvent | None:
        return self.events[0] if self.events else None

    @property
    def ok(self) -> bool:
        return (self.problem is None and self.error_class is None
                and len(self.matching()) >= self.min_events)

    def evidence(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "url": self.url,
            "status": self.status,
            "content_type": self.content_type,
            "latency_ms": _ms(self.latency_s),
            "ttfb_ms": _ms(self.ttfb_s),
            "elapsed_ms": _ms(self.elapsed_s),
            "window_s": self.window_s,
            "bytes": self.bytes_read,
            "comments": self.comments,
            "first_event": self.first_event.event if self.first_event else None,
            "events": [e.evidence() for e in self.events],
            "expected_event": self.expected_event,
            "min_events": self.min_events,
            "stream_ended": self.ended,
            "error_class": self.error_class,
            "error": self.error,
            "problem": self.problem,
        }
        if self.body_excerpt:
            found["body_excerpt"] = self.body_excerpt
        if self.content_coding:
            found["content_coding"] = self.content_coding
        return found


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def sse_probe(url: str, *, window: float, max_bytes: int = 1024 * 1024,
              event: str | None = None, min_events: int = 1, tls: Tls | None = None) -> SseSeen:
    """Open the stream and wait up to `window` s for `min_events` complete events (named
    `event`, if given); return as soon as they are there."""
    seen = SseSeen(url=url, window_s=window, expected_event=event, min_events=min_events)
    started = time.monotonic()
    deadline = started + window
    response, failure = open_stream(
        url, {"Accept": EVENT_STREAM, "Cache-Control": "no-cache"}, window, tls)
    if response is None:
        seen.error_class, seen.error = failure or ("error", "no response")
        seen.elapsed_s = time.monotonic() - started
        return seen
    with response:
        seen.latency_s = time.monotonic() - started
        seen.status = response.status_code
        seen.content_type = response.headers.get("content-type")
        seen.content_coding = response.content_coding
        body = BoundedRead(response, deadline)
        if seen.status != 200 or media_type(seen.content_type) != EVENT_STREAM:
            seen.problem = (
                f"answered HTTP {seen.status} with content type {seen.content_type or 'none'}, "
                "expected 200 text/event-stream"
            )
            # A short look at the body is evidence enough; do not wait out the window for it.
            body.deadline = min(deadline, time.monotonic() + 1.0)
            seen.body_excerpt = body.read(EXCERPT_BYTES, keep=EXCERPT_BYTES).decode(
                "utf-8", errors="replace")
        else:
            _read_events(seen, body, started, max_bytes)
        seen.bytes_read = body.bytes_read
        if body.first_byte_at is not None:
            seen.ttfb_s = body.first_byte_at - started
    seen.elapsed_s = time.monotonic() - started
    return seen


def _read_events(seen: SseSeen, body: BoundedRead, started: float, max_bytes: int) -> None:
    framer = EventFramer()
    excerpt = bytearray()
    while len(seen.matching()) < seen.min_events:
        data = body.chunk()
        if data is None:  # deadline or transport error
            if body.error_class == "timeout":
                seen.problem = f"{_short_of(seen)} within {seen.window_s:g} s " \
                               f"({body.bytes_read} bytes, {framer.comments} comments)"
            else:
                seen.problem = f"stream broke: {body.error_class}: {body.error}"
            break
        if data == b"":
            seen.ended = True
            count = len(seen.events)
            seen.problem = (f"stream ended after {count} event{'s' if count != 1 else ''}"
                            if count else f"stream ended after {body.bytes_read} bytes without "
                            "a complete SSE event")
            break
        if len(excerpt) < EXCERPT_BYTES:
            excerpt += data[: EXCERPT_BYTES - len(excerpt)]
        try:
            blocks = framer.feed(data)
        except FramingError as exc:
            seen.problem = f"not SSE framing: {exc}"
            seen.body_excerpt = excerpt.decode("utf-8", errors="replace")
            break
        at = time.monotonic() - started
        for block, fields in blocks:
            event = parse_block(block, fields, at)
            counts = seen.expected_event in (None, event.event)
            # every event that counts is kept (up to min_events); others only a few, as evidence
            if (counts and len(seen.matching()) < seen.min_events) or \
                    len(seen.events) < KEEP_EVENTS:
                seen.events.append(event)
        if len(seen.matching()) < seen.min_events and body.bytes_read > max_bytes:
            seen.problem = f"{body.bytes_read} bytes without {_wanted(seen)}"
            break
    seen.comments = framer.comments


def _wanted(seen: SseSeen) -> str:
    name = f"{seen.expected_event!r} " if seen.expected_event else ""
    count = seen.min_events
    return (f"{count} complete {name}SSE events" if count > 1
            else f"a complete {name}SSE event")


def _short_of(seen: SseSeen) -> str:
    name = f"{seen.expected_event!r} " if seen.expected_event else ""
    got = len(seen.matching())
    if got:
        return f"only {got} of {seen.min_events} {name}SSE events"
    return f"no complete {name}SSE event"
