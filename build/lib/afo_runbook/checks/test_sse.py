"""Runbook 1.3, SSE stream check (20 s): the thought stream delivers heartbeats.

    curl -sS -N --max-time 10 "http://localhost:8010/api/thoughts/sse" > /tmp/sse_check.txt
    wc -c < /tmp/sse_check.txt   # normal: more than 0 bytes (heartbeats included)

Stricter and faster than the shell: the answer must be 200 `text/event-stream`, the check
passes on the first complete SSE event (it does not wait out the 10 s window), and bytes that
are not SSE framing fail it. A silent stream on a server that otherwise answers HTTP is a
`heartbeat-failure` (review a restart within 5 min); an unreachable server is `service-down`.
"""

import pytest

pytestmark = [pytest.mark.observe, pytest.mark.sse, pytest.mark.recovery("review-restart")]


def test_sse_delivers_an_event(observed, check) -> None:
    """The first complete event (e.g. `event: heartbeat`) arrives within `window` seconds."""
    check(observed.result("sse"))
