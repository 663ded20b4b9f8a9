"""Real loopback HTTP servers for the unit tests (an `http.server` thread each), nothing mocked.

A `Loopback` is an `http.server` thread on 127.0.0.1, port 0, whose answers a test writes as
small functions; it records every request it received, so a test can say what the code under
test actually sent (a header, a path it should never have followed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = Callable[["Handler"], None]


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]


class Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        loopback = self.server.loopback
        loopback.requests.append(Request(self.path, dict(self.headers.items())))
        answer = loopback.routes.get(self.path.split("?", 1)[0])
        if answer is None:
            self.reply(404, b"no such route\n")
            return
        answer(self)

    def reply(self, status: int, body: bytes = b"", content_type: str = "text/plain",
              headers: dict[str, str] | None = None) -> None:
        """One whole answer with a Content-Length."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def stream(self, chunks: list[bytes], content_type: str = "text/event-stream",
               status: int = 200, hold: bool = False, pause: float = 0.0,
               headers: dict[str, str] | None = None) -> None:
        """A body without a length (HTTP/1.0: it ends when the connection closes), written
        chunk by chunk (`pause` seconds apart: a stream that trickles, the scenario and not a
        synchronisation); `hold` keeps the connection open until the test is over."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        for index, chunk in enumerate(chunks):
            if index and pause:
                time.sleep(pause)
            self.wfile.write(chunk)
            self.wfile.flush()
        if hold:
            self.server.loopback.released.wait(30)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test output is for the tests."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    loopback: Loopback


class Loopback:
    """An HTTP server on a free loopback port; `routes` maps a path to its answer."""

    def __init__(self) -> None:
        self.routes: dict[str, Answer] = {}
        self.requests: list[Request] = []
        self.released = threading.Event()
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.loopback = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, path: str, answer: Answer) -> str:
        """Serve `answer` at `path`; returns the full URL."""
        self.routes[path] = answer
        return self.base + path

    def start(self) -> Loopback:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def paths(self) -> list[str]:
        return [request.path for request in self.requests]
