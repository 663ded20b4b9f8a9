"""The threads the probes run on: a few shared ones, and one more per waiting probe as soon as
the running ones stop finishing.

A thread per probe is simple, but 1,000 of them (a fleet's `[[health]]` entries) cost twice the
CPU of the same probes on a few threads (measured: 0.75 s against 0.34 s), all under the GIL
the tests need too. A fixed pool, on the other hand, would let a hung target delay the probes
queued behind it. So: quick probes share `SHARED` threads, and while probes wait, every thread
that has been busy with one probe for `STALL` (a hung or slow target) is replaced, twice over,
by new threads for the waiting ones. However many targets hang, a waiting probe gets a thread
within a few ticks (1,000 hung targets: 6 ticks, 0.3 s), never after another probe's timeout.
"""

from __future__ import annotations

import _thread
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable

SHARED = 16
STALL = 0.05  # seconds a probe may hold a shared thread before that thread counts as stuck


class ProbePool:
    def __init__(self, shared: int = SHARED, stall: float = STALL) -> None:
        self._shared = shared
        self._stall = stall
        self._queue: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()
        self._workers = 0
        self._busy: dict[int, float] = {}  # worker -> when its current probe started
        self._watching = False

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            self._queue.append(job)
            spawn = self._workers < self._shared
            if spawn:
                self._workers += 1
            watch = not self._watching
            self._watching = True
        if spawn:
            _thread.start_new_thread(self._work, ())  # no handshake: never waits for a GIL turn
        if watch:
            _thread.start_new_thread(self._watch, ())

    def _work(self) -> None:
        me = _thread.get_ident()
        while True:
            with self._lock:
                if not self._queue:
                    self._workers -= 1
                    self._busy.pop(me, None)
                    return
                job = self._queue.popleft()
                self._busy[me] = time.monotonic()
            with contextlib.suppress(BaseException):  # a job reports its own errors
                job()

    def _watch(self) -> None:
        """While probes wait, replace every stuck thread by two new ones."""
        while True:
            time.sleep(self._stall)  # a scheduler tick, not a synchronisation
            with self._lock:
                if not self._queue:
                    self._watching = False
                    return
                since = time.monotonic() - self._stall
                stuck = sum(1 for started in self._busy.values() if started <= since)
                spawn = min(len(self._queue), 2 * stuck)
                self._workers += spawn
            for _ in range(spawn):
                _thread.start_new_thread(self._work, ())


POOL = ProbePool()
