"""Loopback networking helpers: pick free ports, check a port, probe an HTTP status."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Mapping


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct ports that were free a moment ago (all held open together while picked)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def port_is_free(host: str, port: int) -> bool:
    # SO_REUSEADDR like uvicorn: a TIME_WAIT leftover is not "in use", a listener is.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def http_status(
    host: str, port: int, path: str, timeout: float, headers: Mapping[str, str] | None = None
) -> int | str:
    """Status code of GET `path`, or a word for what went wrong (refused/reset/timeout/...).

    Only the status line and headers are read, so a huge body costs nothing.
    """
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=dict(headers or {}))
        return conn.getresponse().status
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "timeout"
    except (OSError, http.client.HTTPException) as exc:
        return f"error ({type(exc).__name__})"
    finally:
        conn.close()
