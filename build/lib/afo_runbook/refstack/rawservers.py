"""Raw TCP fault servers: targets that are not HTTP at all.

    hang     accept, read, never answer; sockets stay open (unlimited concurrent connections)
    reset    accept, read the request, then RST (SO_LINGER 0)
    garbage  accept, read the request, answer random non-HTTP bytes, close

In-process:  ``with RawServer("hang") as srv: requests.get(srv.url, timeout=1)``
As process:  ``python -m afo_runbook.refstack.rawservers hang --port 0`` prints
             ``hang listening on 127.0.0.1:PORT`` and runs until SIGTERM/SIGINT.

One background thread multiplexes every connection with a selector, so `hang` can hold
thousands of sockets without a thread each.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

MODES = ("hang", "reset", "garbage")
_REQUEST_END = b"\r\n\r\n"
_MAX_REQUEST = 64 * 1024


@dataclass
class _Conn:
    sock: socket.socket
    deadline: float  # act even if the request never completes (reset/garbage)
    buffer: bytearray = field(default_factory=bytearray)


class RawServer:
    def __init__(
        self, mode: str, host: str = "127.0.0.1", port: int = 0, request_timeout: float = 2.0
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
        self.mode = mode
        self.host = host
        self._requested_port = port
        self.request_timeout = request_timeout
        self.port = 0
        self.accepted = 0  # connections accepted since start
        self._conns: dict[int, _Conn] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def active_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def start(self) -> RawServer:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self._requested_port))
            listener.listen(1024)
        except OSError:
            listener.close()
            raise
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._thread = threading.Thread(
            target=self._serve,
            args=(listener, self._wake_r),
            name=f"rawserver-{self.mode}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every accepted socket, and join the thread."""
        if self._thread is None:
            return
        self._stopping.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> RawServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------------- loop

    def _serve(self, listener: socket.socket, wake: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ, "listener")
        sel.register(wake, selectors.EVENT_READ, "wake")
        try:
            while not self._stopping.is_set():
                for key, _ in sel.select(timeout=0.2):
                    if key.data == "listener":
                        self._accept_all(sel, listener)
                    elif key.data == "conn":
                        self._on_readable(sel, key.fileobj)  # type: ignore[arg-type]
                self._expire(sel)
        finally:
            with self._lock:
                conns = list(self._conns.values())
                self._conns.clear()
            for conn in conns:
                conn.sock.close()
            sel.close()
            for s in (self._listener, self._wake_r, self._wake_w):
                if s is not None:
                    s.close()

    def _accept_all(self, sel: selectors.BaseSelector, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. EMFILE: leave the rest in the backlog
                return
            sock.setblocking(False)
            conn = _Conn(sock, time.monotonic() + self.request_timeout)
            with self._lock:
                self._conns[sock.fileno()] = conn
                self.accepted += 1
            sel.register(sock, selectors.EVENT_READ, "conn")

    def _on_readable(self, sel: selectors.BaseSelector, sock: socket.socket) -> None:
        conn = self._conns.get(sock.fileno())
        if conn is None:
            return
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self._drop(sel, conn)
            return
        if self.mode == "hang":
            return  # read and forget, never answer
        conn.buffer += data
        if _REQUEST_END in conn.buffer or len(conn.buffer) >= _MAX_REQUEST:
            self._act(sel, conn)

    def _expire(self, sel: selectors.BaseSelector) -> None:
        if self.mode == "hang":
            return
        now = time.monotonic()
        with self._lock:
            due = [c for c in self._conns.values() if c.deadline <= now]
        for conn in due:
            self._act(sel, conn)

    def _act(self, sel: selectors.BaseSelector, conn: _Conn) -> None:
        if self.mode == "reset":
            # Linger 0: close() discards the socket and sends RST instead of FIN.
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif self.mode == "garbage":
            with contextlib.suppress(OSError):
                conn.sock.setblocking(True)
                conn.sock.settimeout(1.0)
                conn.sock.sendall(garbage_bytes())
                conn.sock.shutdown(socket.SHUT_WR)
        self._drop(sel, conn)

    def _drop(self, sel: selectors.BaseSelector, conn: _Conn) -> None:
        with self._lock:
            self._conns.pop(conn.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(conn.sock)
        conn.sock.close()


def garbage_bytes(size: int = 1024) -> bytes:
    """Random bytes that can never be mistaken for an HTTP status line."""
    return b"\x00\xff\xfe garbage \x80\x81\r\n" + os.urandom(size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m afo_runbook.refstack.rawservers")
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--port", type=int, default=0, help="0: pick a free port")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = RawServer(args.mode, args.host, args.port).start()
    print(f"{args.mode} listening on {server.host}:{server.port}", flush=True)
    try:
        while not stop.wait(0.5):  # short waits keep the main thread responsive to signals
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
