"""The SSE heartbeat stream and its faults, read with requests like a client would."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import requests

from afo_runbook.refstack.services import SSE_PATH
from afo_runbook.refstack.stack import Stack
from afo_runbook.refstack.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

HEARTBEAT = b"event: heartbeat"


@dataclass
class Reading:
    status: int
    content_type: str
    chunks: list[tuple[float, bytes]] = field(default_factory=list)  # (seconds since GET, data)
    timed_out: bool = False  # the read timeout ended the reading

    @property
    def data(self) -> bytes:
        return b"".join(chunk for _, chunk in self.chunks)

    def times_of(self, marker: bytes) -> list[float]:
        return [t for t, chunk in self.chunks for _ in range(chunk.count(marker))]


def read_stream(
    url: str, stop: Callable[[Reading], bool], read_timeout: float, max_seconds: float = 6
) -> Reading:
    """GET `url` and collect chunks as they arrive until `stop(reading)` holds, the stream
    stays silent for `read_timeout` seconds, or `max_seconds` pass."""
    t0 = time.monotonic()
    with requests.get(url, stream=True, timeout=(2, read_timeout)) as resp:
        reading = Reading(resp.status_code, resp.headers.get("content-type", ""))
        try:
            for chunk in resp.iter_content(chunk_size=None):
                reading.chunks.append((time.monotonic() - t0, chunk))
                if stop(reading) or time.monotonic() - t0 > max_seconds:
                    break
        except requests.ConnectionError as exc:  # requests' wrapper for a read timeout
            if "timed out" not in str(exc).lower():
                raise
            reading.timed_out = True
    return reading


def sse_url(stack: Stack) -> str:
    return stack.urls["api"] + SSE_PATH


def test_first_heartbeat_at_once_then_every_second(stack: Stack) -> None:
    reading = read_stream(sse_url(stack), lambda r: len(r.times_of(HEARTBEAT)) >= 2, read_timeout=3)
    assert reading.status == 200
    assert reading.content_type.startswith("text/event-stream")
    first, second = reading.times_of(HEARTBEAT)[:2]
    assert first < 0.5, f"first heartbeat after {first:.2f}s"
    assert 0.7 < second - first < 1.5, f"second heartbeat {second - first:.2f}s after the first"
    assert b"\ndata: {" in reading.data


def test_heartbeats_are_logged(stack: Stack) -> None:
    read_stream(sse_url(stack), lambda r: HEARTBEAT in r.data, read_timeout=3)
    wait_until(
        lambda: "heartbeat" in stack.log_file("api").read_text(),
        timeout=5,
        message="no heartbeat line in the api log",
    )


def test_sse_silent_sends_headers_then_nothing(stack: Stack) -> None:
    stack.set_fault("api", "sse-silent")
    reading = read_stream(sse_url(stack), lambda r: True, read_timeout=1.5)
    assert reading.status == 200
    assert reading.content_type.startswith("text/event-stream")
    assert reading.timed_out
    assert reading.data == b""

    stack.clear_fault("api", "sse-silent")  # new connections are healthy again
    again = read_stream(sse_url(stack), lambda r: HEARTBEAT in r.data, read_timeout=3)
    assert HEARTBEAT in again.data


def test_sse_comments_never_sends_an_event(stack: Stack) -> None:
    stack.set_fault("api", "sse-comments")
    reading = read_stream(sse_url(stack), lambda r: r.data.count(b": ping") >= 2, read_timeout=3)
    assert reading.status == 200
    assert reading.data.count(b": ping\n\n") >= 2
    assert b"event:" not in reading.data
    assert b"data:" not in reading.data


def test_sse_late_delays_the_first_heartbeat(stack: Stack) -> None:
    stack.set_fault("api", "sse-late", 2)
    reading = read_stream(sse_url(stack), lambda r: HEARTBEAT in r.data, read_timeout=4)
    assert reading.status == 200
    first = reading.times_of(HEARTBEAT)[0]
    assert 1.8 < first < 3.0, f"first heartbeat after {first:.2f}s"


def test_sse_wrong_type_sends_heartbeats_as_text_plain(stack: Stack) -> None:
    stack.set_fault("api", "sse-wrong-type")
    reading = read_stream(sse_url(stack), lambda r: HEARTBEAT in r.data, read_timeout=3)
    assert reading.status == 200
    assert reading.content_type.startswith("text/plain")
    assert HEARTBEAT in reading.data


def test_sse_garbage_streams_non_sse_bytes(stack: Stack) -> None:
    stack.set_fault("api", "sse-garbage")
    reading = read_stream(sse_url(stack), lambda r: len(r.chunks) >= 2, read_timeout=3)
    assert reading.status == 200
    assert reading.content_type.startswith("text/event-stream")
    assert b"<html>" in reading.data
    with pytest.raises(UnicodeDecodeError):
        reading.data.decode("utf-8")
    lines = reading.data.splitlines()
    assert not [line for line in lines if line.startswith((b"event:", b"data:", b"id:"))]


def test_slow_applies_to_the_stream_too(stack: Stack) -> None:
    stack.set_fault("api", "slow", 1)
    t0 = time.monotonic()
    reading = read_stream(sse_url(stack), lambda r: HEARTBEAT in r.data, read_timeout=3)
    assert time.monotonic() - t0 >= 1.0
    assert HEARTBEAT in reading.data
