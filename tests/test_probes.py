"""The probes on their own, against real sockets: every way a target can fail has its name."""

from __future__ import annotations

import socket

import pytest

from afo_runbook.probes.http import http_get
from afo_runbook.probes.sse import EventFramer, FramingError, parse_block, sse_probe
from afo_runbook.refstack.rawservers import RawServer


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_refused():
    seen = http_get(f"http://127.0.0.1:{closed_port()}/", timeout=2)
    assert (seen.error_class, seen.status) == ("refused", None)


def test_dns():
    seen = http_get("http://no-such-host.invalid/", timeout=3)
    assert seen.error_class == "dns"


def test_tls_against_a_plain_http_server(stack):
    seen = http_get(stack.health_url("api").replace("http://", "https://"), timeout=3)
    assert seen.error_class == "tls"


@pytest.mark.parametrize(("mode", "error_class"),
                         [("hang", "timeout"), ("reset", "reset"), ("garbage", "not-http")])
def test_raw_servers(mode, error_class):
    with RawServer(mode) as server:
        seen = http_get(server.url, timeout=1)
    assert seen.error_class == error_class
    assert seen.elapsed_s < 4  # the 1 s timeout held (a margin for a loaded machine)


def test_oversize_body_is_never_read(stack):
    stack.set_fault("api", "huge-body", 50)
    seen = http_get(stack.health_url("api"), timeout=5, max_body=1024 * 1024, need_body=True)
    assert seen.status == 200
    assert seen.oversize
    assert seen.bytes_read <= 64 * 1024


def test_body_over_the_bound_without_content_length_is_cut(stack):
    """A streamed (chunked) SSE body: reading stops at the bound, not at the end."""
    seen = http_get(f"{stack.urls['api']}/api/thoughts/sse", timeout=3, max_body=10,
                    need_body=True)
    assert seen.oversize
    assert seen.bytes_read < 64 * 1024


def test_sse_probe_against_the_stack(stack):
    seen = sse_probe(f"{stack.urls['api']}/api/thoughts/sse", window=5)
    assert seen.ok
    assert seen.first_event is not None
    assert seen.first_event.event == "heartbeat"
    assert seen.ttfb_s is not None
    assert seen.elapsed_s < 4  # returned on the first event, not at the end of the 5 s window


# -- SSE framing, byte by byte --------------------------------------------------------------


def frames(*chunks: bytes) -> list[tuple[bytes, set[str]]]:
    framer = EventFramer()
    found: list[tuple[bytes, set[str]]] = []
    for chunk in chunks:
        found += framer.feed(chunk)
    return found


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_all_three_line_endings(ending):
    block = ending.join([b"event: heartbeat", b"data: {}", b"", b""])
    found = frames(block)
    assert len(found) == 1
    assert parse_block(*found[0], 0.0).event == "heartbeat"


def test_an_event_split_across_chunks_and_inside_crlf():
    data = b"event: heartbeat\r\ndata: 1\r\n\r\n"
    one_by_one = frames(*[data[i:i + 1] for i in range(len(data))])
    assert len(one_by_one) == 1  # a \r\n split across chunks is one line end, not two
    assert not frames(data[:-2])  # no blank line yet: not complete
    assert len(frames(data + b"event: heartbeat\r\n\r\n")) == 2


def test_event_without_data_counts():
    """sseclient-py drops it; the runbook's heartbeat may be just `event: heartbeat`."""
    found = frames(b"event: heartbeat\n\n")
    assert parse_block(*found[0], 0.0).event == "heartbeat"


def test_comments_and_retry_alone_are_not_events():
    assert not frames(b": ping\n\n: ping\n\nretry: 3000\n\n")


def test_leading_bom_is_allowed():
    assert frames(b"\xef\xbb\xbfdata: x\n\n")


@pytest.mark.parametrize("garbage", [b"<html>oops</html>\n", b"hello world\n",
                                     b"data: ok\n\xff\xfe\n", b"x" * 70000])
def test_non_sse_bytes_are_a_framing_error(garbage):
    with pytest.raises(FramingError):
        frames(garbage)
