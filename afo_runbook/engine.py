"""When the checks start: every check a process runs starts as soon as that process knows it.

Two engines give the same verdict:

- in-process (the default): the process that runs the tests starts every selected check the
  moment collection ends, all sections at once (the probes are I/O-bound threads); each test
  then only waits for its own result, under its own pytest-timeout budget. Nothing waits for
  another section's timeout, and no worker start-up is paid.
- pytest-xdist (`-n N`, `-n auto`): `RunbookScheduling` hands every worker its whole share at
  the start (a runbook section stays in one worker, any other test is a share of its own), and
  each worker starts every check of its share at once. It is for users who add slow, blocking
  checks of their own: those then run side by side.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from afo_runbook.results import GROUPS, CheckResult

if TYPE_CHECKING:
    from afo_runbook.observe import Job, Running
    from afo_runbook.plugin import RunbookRun

CHECK_KEY = pytest.StashKey[str]()
CHECK_GROUP = pytest.StashKey[str]()
SHARE_POLL = 0.05  # seconds: how often a waiting test looks for newly assigned checks (xdist)

# The runbook's section modules: under xdist each stays whole in one worker.
MODULE_GROUPS = {"test_health.py": "health", "test_guard.py": "guard", "test_sse.py": "sse",
                 "test_containers.py": "containers", "test_preflight.py": "preflight"}


class Observed:
    """Section 1's checks for this process, each started once and at the earliest moment.

    `share` tells which items this process will run: all of them in-process, or what the
    xdist scheduler has sent this worker so far.
    """

    def __init__(self, run: RunbookRun, share: Callable[[], Iterable[pytest.Item]],
                 fixed: bool = False) -> None:
        self._run = run
        self.share = share
        self.fixed = fixed  # the share never changes (in-process): one look is enough
        self._shared = False
        self._planned: dict[str, dict[str, Job]] = {}
        self._running: dict[str, Running] = {}
        self._lock = threading.Lock()

    def start(self, keys: Iterable[str]) -> None:
        from afo_runbook.observe import Running, plan  # the probes, only where checks run

        with self._lock:
            for key in keys:
                if key in self._running:
                    continue
                group = key.split("[", 1)[0]
                if group not in self._planned:
                    self._planned[group] = plan(self._run.config, self._run.secret,
                                                self._run.deadline, groups=[group])
                job = self._planned[group].get(key)
                if job is not None:
                    self._running[key] = Running(job)

    def start_share(self) -> None:
        if self.fixed and self._shared:
            return
        self.start(item.stash[CHECK_KEY] for item in self.share()
                   if item.stash.get(CHECK_GROUP, None) in GROUPS)
        self._shared = True

    def start_groups(self, groups: Iterable[str]) -> None:
        """Every configured check of these sections (before collection has named them)."""
        from afo_runbook.observe import plan

        for group in groups:
            self.start(plan(self._run.config, self._run.secret, self._run.deadline,
                            groups=[group]))

    def started(self) -> list[str]:
        with self._lock:
            return list(self._running)

    def result(self, key: str) -> CheckResult:
        """This check's result; waiting for it, it keeps starting what else was assigned."""
        self.start_share()
        self.start([key])
        running = self._running.get(key)
        if running is None:
            raise KeyError(f"no configured check {key}")
        while True:
            result = running.poll(SHARE_POLL)
            if result is not None:
                # When it ran, against the run's start: the evidence of "all at once".
                result.evidence["timing"] = {
                    "started_s": round(running.started_at - self._run.started_at, 3),
                    "finished_s": round((running.finished_at or running.started_at)
                                        - self._run.started_at, 3)}
                return result
            self.start_share()


# -- which items this process runs ---------------------------------------------------------------


def in_process_share(session: pytest.Session) -> Callable[[], list[pytest.Item]]:
    return lambda: session.items


def worker_share(config: pytest.Config, session: pytest.Session
                 ) -> Callable[[], list[pytest.Item]]:
    """The items xdist has sent this worker and it has not finished: running, next, queued."""
    interactor = next((p for p in config.pluginmanager.get_plugins()
                       if type(p).__name__ == "WorkerInteractor"), None)

    def share() -> list[pytest.Item]:
        items = session.items
        try:
            with interactor.torun.lock() as queued:  # type: ignore[union-attr]
                pending = [interactor.item_index, interactor.nextitem_index, *queued]  # type: ignore[union-attr]
        except AttributeError:  # not started yet, or an xdist without these internals
            return []
        return [items[i] for i in pending if isinstance(i, int) and 0 <= i < len(items)]

    return share


# -- the xdist scheduler ------------------------------------------------------------------------


def runbook_scope(nodeid: str) -> str:
    """A runbook section is one unit of work; any other test is a unit of its own."""
    path = nodeid.split("::", 1)[0]
    return path if Path(path).name in MODULE_GROUPS else nodeid


def make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's LoadScopeScheduling, with the whole workload sent out at the start."""
    from xdist.scheduler import LoadScopeScheduling

    class RunbookScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return runbook_scope(nodeid)

        def schedule(self) -> None:
            if self.collection is not None or not self._check_nodes_have_same_collection():
                super().schedule()  # a re-schedule, or the collections differ: xdist's way
                return
            self.collection = list(next(iter(self.registered_collections.values())))
            for nodeid in self.collection:
                self.workqueue.setdefault(self._split_scope(nodeid), {})[nodeid] = False
            nodes = self.nodes
            for unused in nodes[len(self.workqueue):]:
                del self.assigned_work[unused]
                unused.shutdown()
            nodes = nodes[:max(1, len(self.workqueue))]
            # Round robin, in collection order: the sections land on different workers, and
            # every worker knows its whole share at once (its checks all start together).
            turn = 0
            while self.workqueue:
                self._assign_work_unit(nodes[turn % len(nodes)])
                turn += 1
            for node in nodes:
                node.shutdown()

        def _reschedule(self, node: Any) -> None:
            # A crashed worker's last events can arrive after its channel closed; sending it
            # work then raised "cannot send (already closed?)" as an INTERNALERROR. Its
            # errordown event follows and the verdict counts what it never ran.
            if node.channel.isclosed():
                return
            try:
                super()._reschedule(node)
            except OSError:
                return

    return RunbookScheduling(config, log)
