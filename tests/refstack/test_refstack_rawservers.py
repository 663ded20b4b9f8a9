"""Raw TCP fault servers, in-process and as a process."""

from __future__ import annotations

import selectors
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from afo_runbook.refstack.rawservers import RawServer
from afo_runbook.refstack.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

REQUEST = b"GET / HTTP/1.1\r\nHost: raw\r\n\r\n"


def test_hang_holds_many_connections_and_closes_them_on_stop() -> None:
    clients: list[socket.socket] = []
    server = RawServer("hang").start()
    try:
        assert server.port > 0
        with pytest.raises(requests.ReadTimeout):
            requests.get(server.url, timeout=(2, 0.5))
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=2)
            sock.sendall(REQUEST)
            clients.append(sock)
        wait_until(lambda: server.active_connections >= 200, timeout=5)
    finally:
        server.stop()
    assert server.active_connections == 0
    for sock in clients:  # every accepted socket was closed: the client reads EOF
        sock.settimeout(2)
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass
        finally:
            sock.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_reset_resets_after_reading_the_request() -> None:
    with RawServer("reset") as server:
        with pytest.raises(requests.ConnectionError) as excinfo:
            requests.get(server.url, timeout=5)
        assert "reset" in repr(excinfo.value).lower()
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
            sock.sendall(REQUEST)
            with pytest.raises(ConnectionResetError):
                sock.recv(1)


def test_garbage_answers_non_http_bytes_and_closes() -> None:
    with RawServer("garbage") as server:
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url, timeout=5)
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
            sock.sendall(REQUEST)
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        assert len(data) > 100
        assert not data.startswith(b"HTTP/")


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        RawServer("teapot")


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """First line of the process's stdout, bounded by `timeout`."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise TimeoutError("no output from the raw server process")
    return proc.stdout.readline()


def test_runs_as_a_process_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "afo_runbook.refstack.rawservers", "reset", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = read_line(proc, timeout=10)
        assert line.startswith("reset listening on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/", timeout=5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - t0 < 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
