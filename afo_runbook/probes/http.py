"""One HTTP GET as the runbook's `curl -sS` does it, but bounded in time and in memory.

Nothing here raises for a bad target: refused, DNS, timeout, reset, TLS or not-HTTP all come
back as an `HttpSeen` whose `error_class` names the cause, so a check fails cleanly with what
was seen instead of a traceback.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
import urllib3

EXCERPT_BYTES = 2048
_READ_CHUNK = 64 * 1024


@dataclass
class HttpSeen:
    url: str
    status: int | None = None
    latency_s: float | None = None  # until the response headers
    elapsed_s: float = 0.0
    error_class: str | None = None  # refused | dns | timeout | reset | closed | tls | not-http
    error: str | None = None
    content_type: str | None = None
    content_length: int | None = None
    bytes_read: int = 0
    body_excerpt: str = ""
    oversize: bool = False  # the body is larger than the bound; the rest was never read

    @property
    def answered(self) -> bool:
        """The target spoke HTTP (any status)."""
        return self.status is not None

    def describe(self) -> str:
        if self.status is not None:
            text = f"HTTP {self.status} in {_ms(self.latency_s)}"
            if self.error_class:
                text += f", then {self.error_class}: {self.error}"
            return text
        return f"{self.error_class}: {self.error} (after {_ms(self.elapsed_s)})"

    def evidence(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "url": self.url,
            "status": self.status,
            "latency_ms": _round_ms(self.latency_s),
            "elapsed_ms": _round_ms(self.elapsed_s),
            "error_class": self.error_class,
            "error": self.error,
            "content_type": self.content_type,
            "bytes": self.bytes_read,
        }
        if self.content_length is not None:
            found["content_length"] = self.content_length
        if self.oversize:
            found["oversize"] = True
        if self.body_excerpt:
            found["body_excerpt"] = self.body_excerpt
        return found


def _ms(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds * 1000:.0f} ms"


def _round_ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def timeout_for(seconds: float) -> urllib3.Timeout:
    """Connect and header wait share one total, so the call cannot take twice its timeout."""
    seconds = max(seconds, 0.05)
    return urllib3.Timeout(connect=seconds, read=seconds, total=seconds)


def open_stream(url: str, headers: Mapping[str, str],
                timeout: float) -> tuple[requests.Response | None, tuple[str, str] | None]:
    """Send the GET (streamed, no redirects followed: as curl without -L) and wait for the
    headers within `timeout`; (response, None), or (None, (error class, description))."""
    try:
        response = requests.get(url, headers=dict(headers), stream=True,
                                allow_redirects=False, timeout=timeout_for(timeout))
    except Exception as exc:  # noqa: BLE001 - every failure is evidence, not a crash
        return None, classify_error(exc)
    return response, None


def http_get(
    url: str,
    *,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    max_body: int = 1024 * 1024,
) -> HttpSeen:
    """GET `url`; read at most `max_body` bytes of body, all within `timeout` seconds."""
    seen = HttpSeen(url=url)
    started = time.monotonic()
    deadline = started + timeout
    response, failure = open_stream(url, headers or {}, timeout)
    if response is None:
        seen.error_class, seen.error = failure or ("error", "no response")
        seen.elapsed_s = time.monotonic() - started
        return seen
    with response:
        seen.latency_s = time.monotonic() - started
        seen.status = response.status_code
        seen.content_type = response.headers.get("content-type")
        seen.content_length = _content_length(response)
        if seen.content_length is not None and seen.content_length > max_body:
            seen.oversize = True  # never download it: an excerpt is enough evidence
            limit = EXCERPT_BYTES
        else:
            limit = max_body + 1
        body = BoundedRead(response, deadline)
        excerpt = body.read(limit, keep=EXCERPT_BYTES)
        seen.bytes_read = body.bytes_read
        seen.body_excerpt = excerpt.decode("utf-8", errors="replace")
        if body.bytes_read > max_body:
            seen.oversize = True
        if body.error_class and not seen.oversize:
            seen.error_class, seen.error = body.error_class, body.error
    seen.elapsed_s = time.monotonic() - started
    return seen


def _content_length(response: requests.Response) -> int | None:
    value = response.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


class BoundedRead:
    """Reads a streamed body chunk by chunk, each read held to the remaining deadline."""

    def __init__(self, response: requests.Response, deadline: float) -> None:
        self.response = response
        self.deadline = deadline
        self.bytes_read = 0
        self.first_byte_at: float | None = None
        self.eof = False
        self.error_class: str | None = None
        self.error: str | None = None

    def chunk(self, size: int = _READ_CHUNK) -> bytes | None:
        """The next bytes that arrive, b"" at the end, None on timeout or error."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self.error_class, self.error = "timeout", "deadline reached while reading the body"
            return None
        connection = self.response.raw.connection
        sock = getattr(connection, "sock", None)
        if sock is not None:
            sock.settimeout(remaining)
        try:
            data = self.response.raw.read1(size)
        except Exception as exc:  # noqa: BLE001 - every failure is evidence, not a crash
            self.error_class, self.error = classify_error(exc)
            if self.error_class == "timeout":
                self.error = "deadline reached while reading the body"
            return None
        if not data:
            self.eof = True
            return b""
        if self.first_byte_at is None:
            self.first_byte_at = time.monotonic()
        self.bytes_read += len(data)
        return data

    def read(self, limit: int, keep: int) -> bytes:
        """Read until EOF, `limit` bytes, or the deadline; return the first `keep` bytes."""
        kept = bytearray()
        while self.bytes_read < limit:
            data = self.chunk(min(_READ_CHUNK, limit - self.bytes_read))
            if not data:
                break
            if len(kept) < keep:
                kept += data[: keep - len(kept)]
        return bytes(kept)


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps (requests -> urllib3 -> socket)."""
    found: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        found.append(current)
        for attr in ("__cause__", "__context__", "reason"):
            inner = getattr(current, attr, None)
            if isinstance(inner, BaseException):
                todo.append(inner)
        todo.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
    return found


def classify_error(exc: BaseException) -> tuple[str, str]:
    """(error class, one-line description) for a failed request."""
    chain = _causes(exc)
    kinds = {type(e) for e in chain}

    def has(*types: type[BaseException]) -> bool:
        return any(issubclass(k, types) for k in kinds)

    if has(ConnectionRefusedError):
        return "refused", "connection refused"
    if has(socket.gaierror) or any("NameResolution" in k.__name__ for k in kinds):
        return "dns", "name does not resolve"
    if has(ssl.SSLError, requests.exceptions.SSLError):
        return "tls", _first_line(next(e for e in chain if isinstance(
            e, ssl.SSLError | requests.exceptions.SSLError)))
    if has(requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError,
           socket.timeout):
        return "timeout", "no answer before the timeout"
    # RemoteDisconnected is a ConnectionResetError: ask for it first.
    if has(http.client.RemoteDisconnected):
        return "closed", "connection closed without a response"
    if has(ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
        return "reset", "connection reset by peer"
    if has(http.client.BadStatusLine, http.client.LineTooLong, http.client.HTTPException,
           urllib3.exceptions.ProtocolError, requests.exceptions.InvalidHeader,
           requests.exceptions.ChunkedEncodingError):
        return "not-http", "the answer is not HTTP"
    if has(OSError):
        err = next(e for e in chain if isinstance(e, OSError))
        return "unreachable", _first_line(err)
    return "error", _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
