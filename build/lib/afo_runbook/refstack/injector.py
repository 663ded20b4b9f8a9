"""ASGI middleware that applies a service's connection-level faults to every route.

It is the outermost layer, so `receive` is uvicorn's own bound method and the transport is
reachable for the `reset` fault. It also hands the per-request fault snapshot to the routes in
scope["refstack.faults"], so one request sees one consistent set of faults.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Any

from afo_runbook.refstack.faults import FaultReader, FaultSet, fault_number
from afo_runbook.refstack.services import PROBE_HEADER

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Any  # (scope, receive, send) -> Awaitable[None]

SCOPE_KEY = "refstack.faults"
_PROBE = PROBE_HEADER.lower().encode("latin-1")


def faults_of(scope: Scope) -> FaultSet:
    return scope.get(SCOPE_KEY) or {}


class FaultInjector:
    def __init__(self, app: ASGIApp, reader: FaultReader, log: logging.Logger) -> None:
        self.app = app
        self.reader = reader
        self.log = log

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_probe = any(name == _PROBE for name, _ in scope.get("headers", ()))
        faults = {} if is_probe else dict(self.reader.current())
        scope[SCOPE_KEY] = faults
        path = scope.get("path", "")
        if "reset" in faults:
            self.log.error("injected fault reset: resetting connection for %s", path)
            await reset_connection(receive)
            return
        if "tarpit" in faults:
            self.log.error("injected fault tarpit: holding %s without answering", path)
            await hold_until_disconnect(receive)
            return
        if "slow" in faults:
            delay = fault_number(faults, "slow")
            self.log.warning("injected fault slow: delaying %s by %.1fs", path, delay)
            await asyncio.sleep(delay)
        await self.app(scope, receive, send)


async def hold_until_disconnect(receive: Any) -> None:
    """Swallow the request and wait for the client to go away; never send a byte."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def reset_connection(receive: Any) -> None:
    """Abort the connection with SO_LINGER 0 so the kernel sends RST instead of FIN."""
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None:  # not uvicorn's h11/httptools cycle: cannot reach the socket
        raise RuntimeError("reset fault: no transport reachable from ASGI receive")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    # Let uvicorn see the disconnect before we return, otherwise it tries to answer 500.
    await hold_until_disconnect(receive)
