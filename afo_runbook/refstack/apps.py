"""The three reference services as FastAPI apps (like the real service), wrapped in the fault
injector. Imported only by the service processes: it pulls in FastAPI and sse-starlette.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from sse_starlette.event import ensure_bytes
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException

from afo_runbook.refstack import heartbeats
from afo_runbook.refstack.faults import FaultReader, FaultSet, fault_number
from afo_runbook.refstack.injector import FaultInjector, faults_of
from afo_runbook.refstack.services import (
    GUARD_PATH,
    MOVED_GUARD_PATH,
    MOVED_SSE_PATH,
    SECRET_HEADER,
    SERVICES,
    SSE_PATH,
)

MIB = 1024 * 1024
SSE_SEP = "\n"
# sse-type-case: what the real service may send; media types are case-insensitive (RFC 9110).
MIXED_CASE_SSE_TYPE = "Text/Event-Stream; charset=UTF-8"
_PAD_BLOCK = b" " * (256 * 1024)  # reused for every huge-body chunk; never grows

DASHBOARD_HTML = (
    "<!doctype html>\n<html><head><title>AFO dashboard</title></head>"
    "<body><h1>AFO dashboard</h1><p>status: ok</p></body></html>\n"
)


def build_app(
    service: str,
    state_dir: Path,
    *,
    secret: str | None = None,
    heartbeat_interval: float = 1.0,
) -> Any:
    """The ASGI app for `service` with its faults applied (outermost: the fault injector)."""
    log = logging.getLogger(f"refstack.{service}")
    app = FastAPI(title=f"refstack-{service}", openapi_url=None, docs_url=None, redoc_url=None)
    health_path = SERVICES[service].health_path
    if service == "dashboard":
        _add_dashboard_routes(app, log, health_path)
    else:
        _add_health_route(app, log, service, health_path)
    if service == "api":
        _add_guard_route(app, log, secret)
        _add_sse_route(app, log, heartbeat_interval)
    return FaultInjector(app, FaultReader(state_dir, service), log)


# ----------------------------------------------------------------------------- health


def _health_fault(
    service: str, faults: FaultSet, log: logging.Logger, ok_body: bytes, media_type: str
) -> Response | None:
    if "health-500" in faults:
        log.error("injected fault health-500: %s health answers 500", service)
        return JSONResponse(
            {"status": "error", "service": service, "detail": "injected fault: health-500"},
            status_code=500,
        )
    body = ok_body
    degraded = "health-degraded" in faults
    if degraded:
        # The real service: 200, and the bad news only in the body.
        log.warning("injected fault health-degraded: %s health answers 200, degraded", service)
        body = JSONResponse(
            {"status": "degraded", "service": service, "checks": {"db": "down", "cache": "up"}}
        ).body
        media_type = "application/json"
    if "huge-body" in faults:
        size = int(fault_number(faults, "huge-body") * MIB)
        log.warning("injected fault huge-body: %s health answers %d bytes", service, size)
        return StreamingResponse(
            _padded_body(body, size),
            media_type=media_type,
            headers={"content-length": str(size)},
        )
    if "health-huge-chunked" in faults:
        size = int(fault_number(faults, "health-huge-chunked") * MIB)
        log.warning("injected fault health-huge-chunked: %s health answers %d bytes chunked, "
                    "without content-length", service, size)
        # No content-length: uvicorn sends an HTTP/1.1 response with Transfer-Encoding: chunked.
        return StreamingResponse(_padded_body(body, size), media_type=media_type)
    if degraded:
        return Response(body, media_type=media_type)
    return None


async def _padded_body(head: bytes, size: int) -> AsyncIterator[bytes]:
    """`head` followed by spaces up to exactly `size` bytes, streamed in fixed blocks.

    Trailing whitespace keeps a JSON body valid JSON; nothing of `size` is held in memory.
    """
    head = head[:size]
    yield head
    remaining = size - len(head)
    while remaining > 0:
        chunk = _PAD_BLOCK if remaining >= len(_PAD_BLOCK) else _PAD_BLOCK[:remaining]
        remaining -= len(chunk)
        yield chunk


def _add_health_route(app: FastAPI, log: logging.Logger, service: str, path: str) -> None:
    ok = {"status": "ok", "service": service}
    ok_body = JSONResponse(ok).body

    @app.get(path)
    async def health(request: Request) -> Response:
        faulty = _health_fault(service, faults_of(request.scope), log, ok_body, "application/json")
        return faulty or JSONResponse(ok)


def _add_dashboard_routes(app: FastAPI, log: logging.Logger, path: str) -> None:
    body = DASHBOARD_HTML.encode()

    @app.get(path)
    async def index(request: Request) -> Response:
        faulty = _health_fault("dashboard", faults_of(request.scope), log, body, "text/html")
        return faulty or HTMLResponse(DASHBOARD_HTML)


# ----------------------------------------------------------------------------- routes


def _check_route(request: Request, faults: FaultSet, moved_path: str, log: logging.Logger) -> None:
    """A route served at its old path and at `moved_path`: without route-moved only the old
    one exists, with it only the new one. The other answers FastAPI's own 404."""
    moved = "route-moved" in faults
    if moved == (request.url.path == moved_path):
        return
    if moved:
        log.warning("injected fault route-moved: %s answers 404 (moved to %s)",
                    request.url.path, moved_path)
    # The very exception the router raises for an unknown path: {"detail":"Not Found"}.
    raise HTTPException(status_code=404)


# ----------------------------------------------------------------------------- guard


def _add_guard_route(app: FastAPI, log: logging.Logger, secret: str | None) -> None:
    # The secret is fixed at process start, like the real service reading its environment.
    expected = secret.encode() if secret else None
    header = SECRET_HEADER.lower()

    @app.get(GUARD_PATH)
    @app.get(MOVED_GUARD_PATH)
    async def revalidate_status(request: Request) -> Response:
        faults = faults_of(request.scope)
        _check_route(request, faults, MOVED_GUARD_PATH, log)
        if "guard-open" in faults:
            log.warning("injected fault guard-open: guard lets the request through unchecked")
            return _guard_ok()
        if expected is None or "secret-missing" in faults:
            log.error("guard: internal secret not configured, answering 503")
            return JSONResponse({"detail": "internal secret not configured"}, status_code=503)
        received = request.headers.get(header)
        if received is None:
            log.info("guard: denied, %s header missing", SECRET_HEADER)
            return _guard_denied()
        # Starlette decodes header bytes as latin-1; encoding back recovers the raw bytes.
        if not hmac.compare_digest(received.encode("latin-1", "replace"), expected):
            log.info("guard: denied, %s header does not match", SECRET_HEADER)
            return _guard_denied()
        log.info("guard: allowed")
        return _guard_ok()


def _guard_ok() -> JSONResponse:
    return JSONResponse({"status": "ok", "revalidate": {"pending": 0, "running": False}})


def _guard_denied() -> JSONResponse:
    return JSONResponse({"detail": "unauthorized"}, status_code=401)


# ----------------------------------------------------------------------------- SSE


def _add_sse_route(app: FastAPI, log: logging.Logger, interval: float) -> None:
    @app.get(SSE_PATH)
    @app.get(MOVED_SSE_PATH)
    async def thoughts_sse(request: Request) -> Response:
        faults = faults_of(request.scope)
        _check_route(request, faults, MOVED_SSE_PATH, log)
        # ping=0: sse-starlette's own keep-alive comments would break sse-silent and blur
        # the other faults; the heartbeat is the keep-alive here.
        sse: dict[str, Any] = {"ping": 0, "sep": SSE_SEP}
        stream = _sse_stream(faults, log, interval)
        media_type = "text/event-stream"
        if "sse-type-case" in faults:
            log.warning("injected fault sse-type-case: content-type %s", MIXED_CASE_SSE_TYPE)
            media_type = MIXED_CASE_SSE_TYPE
        if "sse-wrong-type" in faults:
            log.error("injected fault sse-wrong-type: heartbeats served as text/plain")
            media_type = "text/plain"
        if "sse-bom" in faults:
            log.warning("injected fault sse-bom: a UTF-8 BOM before the first event")
            stream = heartbeats.bom_first(stream)
        headers: dict[str, str] = {}
        if "sse-gzip" in faults:
            # Whatever the request's Accept-Encoding says.
            log.warning("injected fault sse-gzip: stream sent with content-encoding gzip")
            stream = heartbeats.gzipped(stream, _encode_event)
            headers["content-encoding"] = "gzip"
        return EventSourceResponse(stream, media_type=media_type, headers=headers, **sse)


def _encode_event(item: heartbeats.Item) -> bytes:
    """An item's bytes on the wire, exactly as EventSourceResponse would send it."""
    return ensure_bytes(item, SSE_SEP)


def _sse_stream(
    faults: FaultSet, log: logging.Logger, interval: float
) -> AsyncIterator[heartbeats.Item]:
    if "sse-silent" in faults:
        log.error("injected fault sse-silent: stream opened, sending nothing")
        return heartbeats.silence()
    if "sse-comments" in faults:
        log.error("injected fault sse-comments: sending comments only, no heartbeat")
        return heartbeats.comments_only(interval)
    if "sse-garbage" in faults:
        log.error("injected fault sse-garbage: streaming non-SSE bytes")
        return heartbeats.garbage(interval)
    first_delay, count = 0.0, None
    if "sse-late-one-shot" in faults:
        # The real service: its first bytes come 5 s after the request, then it ends.
        first_delay, count = fault_number(faults, "sse-late-one-shot"), 1
        log.warning("injected fault sse-late-one-shot: one heartbeat after %.1fs, then "
                    "the stream ends", first_delay)
    if "sse-late" in faults:
        first_delay = fault_number(faults, "sse-late")
        log.warning("injected fault sse-late: first heartbeat after %.1fs", first_delay)
    if "sse-one-shot" in faults:
        count = 1
        log.warning("injected fault sse-one-shot: the stream ends after one event")
    double_wrapped = "sse-double-wrapped" in faults
    if double_wrapped:
        log.warning("injected fault sse-double-wrapped: every event wrapped in SSE twice")
    return heartbeats.heartbeats(log, interval, first_delay, count, double_wrapped=double_wrapped)
