"""Runbook 1.3's stream probe: SSE framing byte by byte, and the probe against real loopback
servers that send what a broken deployment sends (an HTML page, comments only, a reset).

A heartbeat is a complete SSE event (a blank-line-terminated block with `event:`, `data:` or
`id:`), never merely bytes: an error page counted by the runbook's `wc -c` is not one.
"""

from __future__ import annotations

import socket
import struct
import time
import zlib

import pytest
from loopback import Answer, Handler, Loopback

from afo_runbook.probes.http import EXCERPT_BYTES
from afo_runbook.probes.sse import (
    KEEP_EVENTS,
    MAX_LINE,
    EventFramer,
    FramingError,
    SseEvent,
    SseSeen,
    _split_line,
    media_type,
    parse_block,
    sse_probe,
)

HEARTBEAT = b"event: heartbeat\ndata: {}\n\n"


def frames(*chunks: bytes, framer: EventFramer | None = None) -> list[tuple[bytes, set[str]]]:
    framer = framer or EventFramer()
    found: list[tuple[bytes, set[str]]] = []
    for chunk in chunks:
        found += framer.feed(chunk)
    return found


# -- lines and blocks ------------------------------------------------------------------------


@pytest.mark.parametrize(("buffer", "split"), [
    (b"a\nb", (b"a", b"\n", b"b")),
    (b"a\r\nb", (b"a", b"\r\n", b"b")),
    (b"a\rb", (b"a", b"\r", b"b")),
    (b"a\r", (b"a", b"\r", b"")),  # maybe half of a \r\n: the framer remembers
    (b"a\nb\rc", (b"a", b"\n", b"b\rc")),
    (b"a\rb\nc", (b"a", b"\r", b"b\nc")),
    (b"a\rb\rc", (b"a", b"\r", b"b\rc")),  # the first line end, not the last
    (b"\n", (b"", b"\n", b"")),
    (b"abc", (b"abc", None, b"")),
    (b"", (b"", None, b"")),
])
def test_split_line(buffer: bytes, split: tuple[bytes, bytes | None, bytes]) -> None:
    assert _split_line(buffer) == split


def test_a_block_is_its_raw_lines_and_field_names() -> None:
    assert frames(b"event: heartbeat\r\nid: 4\r\ndata: {}\r\nretry: 10\r\n\r\n") == [
        (b"event: heartbeat\r\nid: 4\r\ndata: {}\r\nretry: 10\r\n\r\n",
         {"event", "id", "data", "retry"})]


@pytest.mark.parametrize("block", [b"event: x\n\n", b"data: x\n\n", b"id: 1\n\n", b"data\n\n",
                                   b"data: http://host:8010/x\n\n"])
def test_each_dispatching_field_alone_makes_an_event(block: bytes) -> None:
    assert len(frames(block)) == 1


def test_retry_and_comments_alone_are_not_events() -> None:
    framer = EventFramer()
    assert frames(b": ping\n\n:\n\nretry: 3000\n\n\n", framer=framer) == []
    assert (framer.comments, framer.lines) == (2, 7)


def test_a_comment_inside_an_event_is_kept_in_its_block() -> None:
    framer = EventFramer()
    assert frames(b": hi\nevent: x\n\n", framer=framer) == [(b": hi\nevent: x\n\n", {"event"})]
    assert framer.comments == 1


def test_a_line_end_may_arrive_in_a_chunk_of_its_own() -> None:
    assert frames(b"data: x", b"\n\n") == [(b"data: x\n\n", {"data"})]
    framer = EventFramer()
    assert frames(b"\ndata: x\n\n", framer=framer) == [(b"data: x\n\n", {"data"})]
    assert framer.lines == 3  # a leading blank line is a line like any other
    with pytest.raises(FramingError, match=r"^line 2 is not an SSE field: 'hello'$"):
        frames(b"\nhello\n")


def test_events_arrive_across_chunks() -> None:
    framer = EventFramer()
    assert frames(b"event: hea", b"rtbeat\ndata: 1", framer=framer) == []
    assert frames(b"\n\nevent: b\n\n", framer=framer) == [
        (b"event: heartbeat\ndata: 1\n\n", {"event", "data"}), (b"event: b\n\n", {"event"})]


def test_a_crlf_split_between_chunks_is_one_line_end() -> None:
    """`\\r` ends one chunk and `\\n` starts the next: still one end, so the field after it
    belongs to the same block (counted as two ends, the block would break in two)."""
    assert frames(b"data: x\r", b"\nevent: y\r\n\r\n") == [
        (b"data: x\revent: y\r\n\r\n", {"data", "event"})]
    # a \n that does not follow a chunk-final \r is a line end of its own
    assert frames(b"data: x\r\n", b"\nevent: y\n\n") == [
        (b"data: x\r\n\n", {"data"}), (b"event: y\n\n", {"event"})]
    assert frames(b"data: x\r", b"", b"\n\n") == [(b"data: x\r\n", {"data"})]


def test_a_leading_bom_is_stripped_once() -> None:
    """WHATWG: one U+FEFF at the very start is not part of the stream, even split across
    reads; anywhere else it is a stray character."""
    assert frames(b"\xef\xbb\xbfevent: x\n\n") == [(b"event: x\n\n", {"event"})]
    assert frames(b"\xef", b"\xbb", b"\xbfevent: x\n\n") == [(b"event: x\n\n", {"event"})]
    assert frames(b"\xef\xbb", b"\xbf", b"data: y\n\n") == [(b"data: y\n\n", {"data"})]
    assert parse_block(*frames(b"\xef\xbb\xbfevent: heartbeat\n\n")[0], 0.0).event == \
        "heartbeat"
    with pytest.raises(FramingError, match="line 3 is not an SSE field"):
        frames(b"data: x\n\n\xef\xbb\xbfdata: y\n\n")
    with pytest.raises(FramingError, match=r"^line 1 is not an SSE field: '\\ufeffdata: z'$"):
        frames(b"\xef\xbb\xbf\xef\xbb\xbfdata: z\n")  # only one is stripped
    with pytest.raises(FramingError, match=r"^line 1 is not UTF-8: b'\\xefe'$"):
        frames(b"\xef", b"e\n")  # not a BOM after all: the byte is kept


def test_short_first_reads_that_are_not_a_bom() -> None:
    framer = EventFramer()
    assert frames(b"e", b"vent: x\n\n", framer=framer) == [(b"event: x\n\n", {"event"})]
    assert frames(b"", b"data: x\n\n") == [(b"data: x\n\n", {"data"})]
    with pytest.raises(FramingError, match=r"^line 1 is not an SSE field: 'x'$"):
        frames(b"x", b"\n")  # two bytes in two reads: judged, not held back as a maybe-BOM
    blank = EventFramer()
    assert frames(b"\n", framer=blank) == []
    assert blank.lines == 1


def test_a_bom_in_a_later_read_is_not_stripped() -> None:
    with pytest.raises(FramingError, match=r"^line 3 is not an SSE field: '\\ufeffdata: y'$"):
        frames(b"data: x\n\n", b"\xef\xbb\xbfdata: y\n\n")


@pytest.mark.parametrize(("stream", "problem"), [
    (b"<html>oops</html>\n", "line 1 is not an SSE field: '<html>oops</html>'"),
    (b"event: a\nhello: world\n", "line 2 is not an SSE field: 'hello: world'"),
    (b"data: ok\n\xff\xfe\n", r"line 2 is not UTF-8: b'\xff\xfe'"),
    (b"x" * 100 + b"\n", "line 1 is not an SSE field: '" + "x" * 60 + "'"),
    (b"\xff" * 50 + b"\n", "line 1 is not UTF-8: " + repr(b"\xff" * 40)),
])
def test_bytes_that_are_not_sse_are_a_framing_error(stream: bytes, problem: str) -> None:
    with pytest.raises(FramingError) as caught:
        frames(stream)
    assert str(caught.value) == problem


def test_a_line_without_end_is_bounded() -> None:
    framer = EventFramer()
    assert framer.feed(b"data: " + b"x" * (MAX_LINE - 6)) == []  # exactly the bound: waits
    with pytest.raises(FramingError, match=r"^a line longer than 64 KiB$"):
        framer.feed(b"x")


def test_parse_block_with_data() -> None:
    assert parse_block(b"event: tick\nid: 9\ndata: a\ndata: b\n\n", {"event", "id", "data"},
                       0.5) == SseEvent("tick", "9", "a\nb", 0.5)
    assert parse_block(b"data: x\n\n", {"data"}, 0.1).event == "message"


@pytest.mark.parametrize(("block", "event"), [
    (b"event: heartbeat\n\n", SseEvent("heartbeat", None, "", 0.25)),
    (b"event:heartbeat\r\nid: 7\r\n\r\n", SseEvent("heartbeat", "7", "", 0.25)),
    (b"event:  two spaces\n\n", SseEvent(" two spaces", None, "", 0.25)),
    (b"event:\nid\n\n", SseEvent("message", "", "", 0.25)),
    (b"id: 3\nevent: a\n\n", SseEvent("a", "3", "", 0.25)),
])
def test_parse_block_without_data(block: bytes, event: SseEvent) -> None:
    """sseclient-py dispatches only events with data; the heartbeat may carry only a name."""
    assert parse_block(block, {"event"}, 0.25) == event


def test_media_type() -> None:
    assert media_type("text/event-stream") == "text/event-stream"
    assert media_type(" Text/Event-Stream ; charset=utf-8") == "text/event-stream"
    assert media_type("text/event-stream; charset=utf-8; q=1") == "text/event-stream"
    assert media_type(None) == media_type("") == ""


def test_an_event_wrapped_twice_is_recognised() -> None:
    wrapped = SseEvent("message", None, "event: heartbeat\ndata: {}", 0.1)
    assert (wrapped.wrapped, wrapped.inner_event) == (True, "heartbeat")
    for data in ("data: {}", "id: 1", "retry: 5", "x\nevent:"):
        assert SseEvent("message", None, data, 0.1).wrapped, data
    assert SseEvent("m", None, "event:   \ndata: 1", 0).inner_event is None
    plain = SseEvent("heartbeat", None, '{"event: no": 1}', 0.1)
    assert (plain.wrapped, plain.inner_event) == (False, None)
    assert wrapped.evidence() == {"event": "message", "id": None,
                                  "data": "event: heartbeat\ndata: {}", "at_ms": 100.0,
                                  "wrapped": True, "inner_event": "heartbeat"}


def test_matching_events_and_enough_of_them() -> None:
    events = [SseEvent("tick", None, "", 0.1), SseEvent("heartbeat", None, "", 0.2)]
    seen = SseSeen(url="u", window_s=5, events=events)
    assert (seen.matching(), seen.ok) == (events, True)
    named = SseSeen(url="u", window_s=5, events=events, expected_event="heartbeat")
    assert (named.matching(), named.ok) == ([events[1]], True)
    two = SseSeen(url="u", window_s=5, events=events, expected_event="heartbeat",
                  min_events=2)
    assert not two.ok
    assert SseSeen(url="u", window_s=5, events=events, min_events=2).ok


def test_event_and_seen_evidence() -> None:
    event = SseEvent("heartbeat", "1", "d" * 300, 0.01234)
    assert event.evidence() == {"event": "heartbeat", "id": "1", "data": "d" * 200,
                                "at_ms": 12.3}
    seen = SseSeen(url="http://x/sse", window_s=5, status=200,
                   content_type="text/event-stream", latency_s=0.00123, ttfb_s=0.00234,
                   elapsed_s=0.5, bytes_read=40, comments=2, events=[event])
    assert seen.evidence() == {
        "url": "http://x/sse", "status": 200, "content_type": "text/event-stream",
        "latency_ms": 1.2, "ttfb_ms": 2.3, "elapsed_ms": 500.0, "window_s": 5, "bytes": 40,
        "comments": 2, "first_event": "heartbeat", "events": [event.evidence()],
        "expected_event": None, "min_events": 1, "stream_ended": False,
        "error_class": None, "error": None, "problem": None}
    assert seen.ok
    empty = SseSeen(url="http://x/sse", window_s=5, body_excerpt="<html>")
    assert empty.evidence()["first_event"] is None
    assert (empty.evidence()["latency_ms"], empty.evidence()["body_excerpt"]) == (None, "<html>")
    assert "content_coding" not in empty.evidence()
    assert not empty.ok
    coded = SseSeen(url="u", window_s=1, content_coding="gzip", ended=True, min_events=2,
                    expected_event="heartbeat")
    assert {k: coded.evidence()[k] for k in ("content_coding", "stream_ended", "min_events",
                                             "expected_event")} == {
        "content_coding": "gzip", "stream_ended": True, "min_events": 2,
        "expected_event": "heartbeat"}


# -- the probe against real servers ----------------------------------------------------------


def serve(loopback: Loopback, *chunks: bytes, hold: bool = True,
          content_type: str = "text/event-stream", status: int = 200) -> str:
    return loopback.route("/sse", lambda h: h.stream(list(chunks), content_type, status, hold))


def test_the_first_heartbeat_passes(loopback: Loopback) -> None:
    """The server keeps the stream open: the probe returns on the event, not at its end."""
    url = serve(loopback, b": hello\n\n", HEARTBEAT)
    before = time.monotonic()
    seen = sse_probe(url, window=20)
    took = time.monotonic() - before
    assert seen.ok
    assert (seen.url, seen.window_s) == (url, 20)
    assert (seen.status, seen.content_type) == (200, "text/event-stream")
    assert seen.events == [SseEvent("heartbeat", None, "{}", seen.events[0].at_s)]
    assert seen.comments == 1
    assert seen.bytes_read == len(b": hello\n\n" + HEARTBEAT)
    assert seen.latency_s is not None
    assert seen.ttfb_s is not None
    # measured from the request's start, inside the test's own measurement of the call
    assert 0 < seen.latency_s <= seen.ttfb_s <= seen.events[0].at_s <= seen.elapsed_s <= took
    assert not loopback.released.is_set()  # the stream was still open
    [request] = loopback.requests
    assert (request.headers["Accept"], request.headers["Cache-Control"]) == (
        "text/event-stream", "no-cache")


def test_only_the_expected_event_counts(loopback: Loopback) -> None:
    url = serve(loopback, b"event: tick\n\nevent: tick\n\n", b"event: heartbeat\n\n")
    seen = sse_probe(url, window=20, event="heartbeat")
    assert seen.ok
    assert [e.event for e in seen.events] == ["tick", "tick", "heartbeat"]
    assert seen.expected_event == "heartbeat"


def test_the_expected_event_after_three_others_counts(loopback: Loopback) -> None:
    url = serve(loopback, b"event: tick\n\n" * 3, b"event: heartbeat\n\n")
    assert sse_probe(url, window=1.5, event="heartbeat").ok


def test_an_event_in_a_big_read_is_not_lost_to_the_bound(loopback: Loopback) -> None:
    """The bound is on bytes *without* an event: a first read that is over it but holds the
    heartbeat passes."""
    seen = sse_probe(serve(loopback, b": " + b"p" * 50 + b"\n\nevent: heartbeat\n\n"),
                     window=5, max_bytes=20)
    assert (seen.ok, seen.problem) == (True, None)


def test_a_compressed_stream_is_read_and_said_so(loopback: Loopback) -> None:
    """We ask for identity; a server that gzips anyway is still read, and the evidence says."""
    packer = zlib.compressobj(wbits=31)
    body = packer.compress(HEARTBEAT) + packer.flush()
    url = loopback.route("/sse", lambda h: h.stream([body], hold=True,
                                                    headers={"Content-Encoding": "gzip"}))
    seen = sse_probe(url, window=5)
    assert seen.ok
    assert seen.content_coding == "gzip"
    assert seen.evidence()["content_coding"] == "gzip"


def test_several_events_can_be_required(loopback: Loopback) -> None:
    many = b"".join(b"event: heartbeat\nid: %d\n\n" % n for n in range(KEEP_EVENTS + 2))
    seen = sse_probe(serve(loopback, many), window=20, min_events=KEEP_EVENTS + 2)
    assert seen.ok
    assert [e.id for e in seen.events] == [str(n) for n in range(KEEP_EVENTS + 2)]


def test_short_of_the_required_events(loopback: Loopback) -> None:
    url = serve(loopback, b"event: heartbeat\n\n: ping\n\n")
    seen = sse_probe(url, window=0.5, min_events=2)
    assert seen.problem == "only 1 of 2 SSE events within 0.5 s (26 bytes, 1 comments)"
    named = sse_probe(serve(loopback, b"event: tick\n\n"), window=0.5, event="heartbeat")
    assert named.problem == "no complete 'heartbeat' SSE event within 0.5 s (13 bytes, 0 comments)"
    some = sse_probe(serve(loopback, b"event: heartbeat\n\n"), window=0.5, event="heartbeat",
                     min_events=3)
    assert some.problem == "only 1 of 3 'heartbeat' SSE events within 0.5 s (18 bytes, 0 comments)"


def test_a_stream_that_ends_after_some_events(loopback: Loopback) -> None:
    one = sse_probe(serve(loopback, b"event: tick\n\n", hold=False), window=5,
                    event="heartbeat")
    assert (one.problem, one.ended) == ("stream ended after 1 event", True)
    two = sse_probe(serve(loopback, b"event: a\n\nevent: b\n\n", hold=False), window=5,
                    min_events=3)
    assert two.problem == "stream ended after 2 events"


def test_bounded_while_waiting_for_named_or_several_events(loopback: Loopback) -> None:
    noise = b"event: tick\n\n" * 20
    named = sse_probe(serve(loopback, noise), window=5, max_bytes=100, event="heartbeat")
    assert named.problem == "260 bytes without a complete 'heartbeat' SSE event"
    several = sse_probe(serve(loopback, b": " + b"p" * 200 + b"\n\n"), window=5,
                        max_bytes=100, min_events=2)
    assert several.problem == "204 bytes without 2 complete SSE events"


def test_at_most_a_few_events_are_kept(loopback: Loopback) -> None:
    many = b"".join(b"event: e%d\n\n" % n for n in range(KEEP_EVENTS + 3))
    seen = sse_probe(serve(loopback, many), window=20)
    assert [e.event for e in seen.events] == [f"e{n}" for n in range(KEEP_EVENTS)]


def test_an_html_error_page_is_not_a_heartbeat(loopback: Loopback) -> None:
    page = b"<html><body>502 Bad Gateway</body></html>"
    url = loopback.route("/sse", lambda h: h.stream([page], "text/html", 200, hold=True))
    seen = sse_probe(url, window=1.5)
    assert not seen.ok
    assert seen.problem == ("answered HTTP 200 with content type text/html, expected 200 "
                            "text/event-stream")
    assert seen.body_excerpt == page.decode()
    assert seen.bytes_read == len(page)


@pytest.mark.parametrize(("status", "content_type", "shown"), [
    (500, "text/event-stream", "text/event-stream"),
    (302, "", "none"),
    (200, "text/event-streams", "text/event-streams"),
])
def test_a_wrong_status_is_not_a_stream(loopback: Loopback, status: int, content_type: str,
                                        shown: str) -> None:
    def answer(handler: Handler) -> None:
        handler.send_response(status)
        if content_type:
            handler.send_header("Content-Type", content_type)
        handler.send_header("Location", "/elsewhere")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    seen = sse_probe(loopback.route("/sse", answer), window=5)
    assert seen.problem == (f"answered HTTP {status} with content type {shown}, expected 200 "
                            "text/event-stream")
    assert loopback.paths() == ["/sse"]  # a redirect is reported, never followed


def test_comments_only_is_silence(loopback: Loopback) -> None:
    seen = sse_probe(serve(loopback, b": ping\n\n", b": ping\n\n"), window=0.5)
    assert seen.problem == "no complete SSE event within 0.5 s (16 bytes, 2 comments)"
    assert (seen.comments, seen.events, seen.error_class) == (2, [], None)


def test_a_stream_that_ends_without_an_event(loopback: Loopback) -> None:
    seen = sse_probe(serve(loopback, b": bye\n", b"retry: 10\n\n", hold=False), window=5)
    assert seen.problem == "stream ended after 17 bytes without a complete SSE event"
    assert (seen.comments, seen.ended) == (1, True)
    assert sse_probe(serve(loopback, b": x\n"), window=0.5).ended is False


def test_garbage_on_the_stream_fails_with_an_excerpt(loopback: Loopback) -> None:
    """A proxy's error page behind an SSE content type. It arrives in two pieces (the
    scenario: a pause between them); whether they are read as one or two, the excerpt is the
    stream's first EXCERPT_BYTES."""
    first = b": connected\n"
    garbage = b"<html>" + b"x" * (2 * EXCERPT_BYTES) + b"\n"
    url = loopback.route("/sse", lambda h: h.stream([first, garbage], pause=0.2, hold=True))
    seen = sse_probe(url, window=5)
    assert seen.problem == "not SSE framing: line 2 is not an SSE field: '<html>" + \
        "x" * 54 + "'"
    assert seen.body_excerpt == (first + garbage)[:EXCERPT_BYTES].decode()
    assert seen.comments == 1


def test_bytes_that_are_not_utf_8_are_shown_replaced(loopback: Loopback) -> None:
    seen = sse_probe(serve(loopback, b"data: ok\n\xff\xfe\n"), window=5)
    assert seen.problem == r"not SSE framing: line 2 is not UTF-8: b'\xff\xfe'"
    assert seen.body_excerpt == "data: ok\n\ufffd\ufffd\n"
    page = loopback.route("/page", lambda h: h.stream([b"<p>\xe9t\xe9</p>"], "text/html",
                                                       hold=False))
    assert sse_probe(page, window=5).body_excerpt == "<p>\ufffdt\ufffd</p>"


def test_endless_comments_are_bounded(loopback: Loopback) -> None:
    seen = sse_probe(serve(loopback, b": " + b"p" * 200 + b"\n\n"), window=5, max_bytes=100)
    assert seen.problem == "204 bytes without a complete SSE event"
    assert seen.comments == 1
    exact = sse_probe(serve(loopback, b": " + b"p" * 96 + b"\n\n"), window=0.5, max_bytes=100)
    assert exact.problem is not None
    assert exact.problem.startswith("no complete SSE event within 0.5 s (100 bytes")


def reset_after(data: bytes) -> Answer:
    def answer(handler: Handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        handler.wfile.write(data)
        handler.wfile.flush()
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      struct.pack("ii", 1, 0))
        handler.connection.close()  # an RST, not a clean end
    return answer


def test_a_stream_that_breaks_says_how(loopback: Loopback) -> None:
    url = loopback.route("/sse", reset_after(b": ping\n"))
    seen = sse_probe(url, window=5)
    assert seen.problem is not None
    assert seen.problem.startswith("stream broke: ")
    assert seen.problem.split(": ")[1] in ("reset", "closed", "not-http")


def test_an_unreachable_stream_is_a_transport_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    before = time.monotonic()
    seen = sse_probe(f"http://127.0.0.1:{port}/sse", window=2)
    took = time.monotonic() - before
    assert (seen.error_class, seen.error, seen.status) == ("refused", "connection refused", None)
    assert 0 < seen.elapsed_s <= took
    assert seen.problem is None
