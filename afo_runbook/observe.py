"""Runbook section 1 as library code: each check, the symptom it names, and a concurrent runner.

The pytest checks in `checks/` and the re-observation after a recovery (section 3.3) both call
these functions, so a check means the same thing wherever it runs. A failing check always names
the root cause: a guard or SSE check whose server is unreachable is `service-down`, not a
security or heartbeat symptom.
"""

from __future__ import annotations

import secrets as random_tokens
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from afo_runbook.config import GuardConfig, HealthTarget, RunbookConfig, SseConfig
from afo_runbook.pool import POOL
from afo_runbook.probes.http import HttpSeen, http_get
from afo_runbook.probes.sse import SseSeen, sse_probe
from afo_runbook.results import GROUPS, MIN_CALL_TIMEOUT, CheckResult, Deadline
from afo_runbook.secret import Secret

GUARD_CASES: tuple[str, ...] = ("no-secret", "wrong-secret", "right-secret")
LIVENESS_TIMEOUT = 3.0


# -- 1.1 health --------------------------------------------------------------------------------


def check_health(target: HealthTarget, config: RunbookConfig, deadline: Deadline) -> CheckResult:
    timeout = deadline.cap(config.timeout_for("health", target.timeout))
    seen = http_get(target.url, timeout=timeout, max_body=target.max_body)
    return judge_health(target, seen, timeout)


def judge_health(target: HealthTarget, seen: HttpSeen, timeout: float) -> CheckResult:
    key = f"health[{target.name}]"
    evidence = {**seen.evidence(), "expect": target.expect, "timeout_s": round(timeout, 2)}
    if not seen.answered:
        return _failed(key, "health", "service-down", f"{target.url}: {seen.describe()}", evidence)
    if seen.status != target.expect:
        return _failed(key, "health", "service-down",
                       f"{target.url} answered {seen.describe()}, expected {target.expect}",
                       evidence)
    if seen.oversize:
        return _failed(key, "health", "service-down",
                       f"{target.url} answered {seen.status} with a body over the "
                       f"{target.max_body} byte bound (content length "
                       f"{seen.content_length or 'unknown'}); not read further", evidence)
    if seen.error_class:
        return _failed(key, "health", "service-down",
                       f"{target.url} answered {seen.status} but {seen.error}", evidence)
    return CheckResult(key, "health", True, None,
                       f"{target.url} answered {seen.status} in "
                       f"{evidence['latency_ms']} ms", evidence)


# -- 1.2 security guard ------------------------------------------------------------------------


def wrong_secret(real: str | None) -> str:
    """A random wrong value: never a fixed word that could happen to be someone's secret."""
    while True:
        value = "wrong-" + random_tokens.token_urlsafe(18)
        if value != real:
            return value


def check_guard(case: str, guard: GuardConfig, secret: Secret | None, config: RunbookConfig,
                deadline: Deadline) -> CheckResult:
    if case not in GUARD_CASES:
        raise ValueError(f"unknown guard case {case!r}")
    headers: dict[str, str] = {}
    sent = "no header"
    if case == "wrong-secret":
        headers[guard.header] = wrong_secret(secret.reveal() if secret else None)
        sent = "a random wrong value"
    elif case == "right-secret":
        if secret is None:
            raise ValueError("the right-secret guard check needs the secret")
        headers[guard.header] = secret.reveal()
        sent = f"the configured secret (from {secret.origin})"
    timeout = deadline.cap(config.timeout_for("guard", guard.timeout))
    seen = http_get(guard.url, timeout=timeout, headers=headers, max_body=64 * 1024)
    return judge_guard(case, guard, seen, sent, timeout)


def judge_guard(case: str, guard: GuardConfig, seen: HttpSeen, sent: str,
                timeout: float) -> CheckResult:
    key = f"guard[{case}]"
    evidence = {**seen.evidence(), "header": guard.header, "sent": sent,
                "deny": list(guard.deny), "allow": guard.allow, "timeout_s": round(timeout, 2)}
    refusals = "/".join(str(s) for s in guard.deny)
    if not seen.answered:
        return _failed(key, "guard", "service-down",
                       f"guard unreachable with {sent}: {seen.describe()}", evidence)
    status = seen.status
    if case in ("no-secret", "wrong-secret"):
        if status in guard.deny:
            return CheckResult(key, "guard", True, None,
                               f"refused {sent} with {status}", evidence)
        if status == guard.allow:
            return _failed(key, "guard", "guard-open",
                           f"the guard let {sent} through with {status}, expected {refusals}: "
                           "the guard is open", evidence)
        return _failed(key, "guard", "service-down",
                       f"the guard answered {sent} with {status}, neither a refusal "
                       f"({refusals}) nor {guard.allow}", evidence)
    if status == guard.allow:
        return CheckResult(key, "guard", True, None, f"accepted {sent} with {status}", evidence)
    if status == 503:
        return _failed(key, "guard", "secret-unconfigured",
                       "the right secret got 503: the service has no secret configured",
                       evidence)
    return _failed(key, "guard", "secret-rejected",
                   f"the right secret got {status}, expected {guard.allow}: the service's "
                   "secret differs from the suite's", evidence)


# -- 1.3 SSE stream ----------------------------------------------------------------------------


def check_sse(sse: SseConfig, config: RunbookConfig, deadline: Deadline) -> CheckResult:
    window = deadline.cap(sse.window)
    # Is it the stream or the whole server? The look at the same server's health goes out
    # alongside the stream, so a failing stream never waits for it afterwards.
    liveness = Liveness(_liveness_url(sse.url, config),
                        deadline.cap(min(LIVENESS_TIMEOUT, sse.window)))
    seen = sse_probe(sse.url, window=window, max_bytes=sse.max_bytes)
    if seen.error_class and seen.error_class not in ("refused", "dns"):
        return judge_sse(sse, seen, liveness.seen())
    return judge_sse(sse, seen, None)


class Liveness:
    """A GET of the SSE server's health URL, started at once in a thread of its own."""

    def __init__(self, url: str, timeout: float) -> None:
        self._url = url
        self._timeout = timeout
        self._seen: HttpSeen | None = None
        self._thread = threading.Thread(target=self._get, name="sse liveness", daemon=True)
        self._thread.start()

    def _get(self) -> None:
        self._seen = http_get(self._url, max_body=64 * 1024, timeout=self._timeout)

    def seen(self) -> HttpSeen | None:
        """Its answer (None if it could not finish: judged as not answering)."""
        self._thread.join(self._timeout + 0.5)  # a trickling answer is not one
        return self._seen


def _liveness_url(url: str, config: RunbookConfig) -> str:
    origin = urlsplit(url)._replace(path="/", query="", fragment="")
    for target in config.health:
        if urlsplit(target.url)[:2] == origin[:2]:
            return target.url
    return origin.geturl()


def judge_sse(sse: SseConfig, seen: SseSeen, liveness: HttpSeen | None) -> CheckResult:
    evidence = seen.evidence()
    if seen.ok:
        first = seen.first_event
        assert first is not None
        return CheckResult("sse", "sse", True, None,
                           f"first event {first.event!r} after {first.at_s * 1000:.0f} ms "
                           f"({seen.bytes_read} bytes)", evidence)
    if seen.error_class:
        if liveness is not None:
            evidence["server_answers_http"] = {"url": liveness.url, "status": liveness.status,
                                               "error_class": liveness.error_class}
        if liveness is None or not liveness.answered:
            return _failed("sse", "sse", "service-down",
                           f"{sse.url}: {seen.error_class}: {seen.error}; the server does not "
                           "answer HTTP", evidence)
        return _failed("sse", "sse", "heartbeat-failure",
                       f"{sse.url}: {seen.error_class}: {seen.error}, while the server answers "
                       f"HTTP ({liveness.status} from {liveness.url})", evidence)
    return _failed("sse", "sse", "heartbeat-failure", f"{sse.url}: {seen.problem}", evidence)


def _failed(key: str, group: str, symptom: str, message: str,
            evidence: dict[str, Any]) -> CheckResult:
    return CheckResult(key, group, False, symptom, message, evidence)


# -- running them, concurrently as the runbook's `&` ... `wait` --------------------------------


@dataclass
class Job:
    """One check to run, and the time by which its result must be there.

    Per-read socket timeouts cannot stop a target that trickles a byte at a time, so the
    runner also holds each job to `limit` seconds (inside its group budget): past it, the
    check fails cleanly as a timeout and pytest-timeout stays a backstop that never fires.
    """

    run: Callable[[], CheckResult]
    limit: float
    key: str
    group: str

    def overrun(self) -> CheckResult:
        # For a container check it is the Docker engine that did not answer in time.
        return CheckResult(self.key, self.group, False, "service-down",
                           f"no complete answer within {self.limit:.1f} s (the target kept "
                           "the connection busy without finishing)",
                           {"error_class": "timeout", "limit_s": round(self.limit, 2)})


class Running:
    """One job in its own thread; its result, or the overrun once its limit has passed."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.done = threading.Event()
        self._lock = threading.Lock()
        self.result: CheckResult | None = None
        self.started = time.monotonic()
        self.started_at = time.time()  # wall clock: comparable across processes
        self.finished_at: float | None = None
        # On the probe pool's threads (see afo_runbook.pool): never one that holds the process
        # open; a probe stuck on a hostile target is abandoned at exit, like a daemon.
        POOL.submit(self._run)

    def _run(self) -> None:
        self.started_at = time.time()
        try:
            result = self.job.run()
        except Exception as exc:  # noqa: BLE001 - a bug must still give a clean check result
            result = CheckResult(self.job.key, self.job.group, False, "service-down",
                                 f"the check itself failed: {type(exc).__name__}: {exc}",
                                 {"error": f"{type(exc).__name__}: {exc}"})
        self._settle(result)

    def _settle(self, result: CheckResult) -> None:
        with self._lock:  # the first of the answer and the overrun stands
            if self.result is None:
                self.result = result
                self.finished_at = time.time()
            self.done.set()

    def poll(self, seconds: float) -> CheckResult | None:
        """The result, waiting at most `seconds`; once the job's limit has passed, the overrun."""
        remaining = self.started + self.job.limit - time.monotonic()
        if not self.done.wait(max(0.0, min(seconds, remaining))):
            if remaining > seconds:
                return None
            self._settle(self.job.overrun())
        return self.result

    def wait(self) -> CheckResult:
        result = self.poll(self.job.limit + 1)
        while result is None:  # only if the clock jumped
            result = self.poll(self.job.limit + 1)
        return result


class Observation:
    """Starts its checks at once, each in its own thread; each result is waited for alone."""

    def __init__(self, jobs: dict[str, Job]) -> None:
        self._jobs = jobs
        self._running: dict[str, Running] = {}
        self._lock = threading.Lock()

    def start(self) -> Observation:
        with self._lock:
            if not self._running:
                self._running = {key: Running(job) for key, job in self._jobs.items()}
        return self

    def result(self, key: str) -> CheckResult:
        self.start()
        return self._running[key].wait()

    def results(self) -> list[CheckResult]:
        self.start()
        return [self._running[key].wait() for key in self._jobs]

    def __contains__(self, key: str) -> bool:
        return key in self._jobs


SLACK = 1.0  # seconds a job may take beyond its network timeout (parsing, evidence)


def _limit(config: RunbookConfig, group: str, network: float, deadline: Deadline) -> float:
    """When a job's result must be there: after its own timeouts, before the backstop."""
    budget = config.budgets.for_group(group)
    return max(MIN_CALL_TIMEOUT, min(network + SLACK, budget - 0.5,
                                     deadline.remaining() + SLACK))


def plan(config: RunbookConfig, secret: Secret | None, deadline: Deadline,
         groups: Iterable[str] = GROUPS) -> dict[str, Job]:
    """Every configured check of the given groups, keyed like `health[api]`."""
    wanted = set(groups)
    jobs: dict[str, Job] = {}

    def add(key: str, group: str, network: float, run: Callable[[], CheckResult]) -> None:
        jobs[key] = Job(run, _limit(config, group, network, deadline), key, group)

    if "health" in wanted:
        for target in config.health:
            add(f"health[{target.name}]", "health",
                config.timeout_for("health", target.timeout),
                _bind(check_health, target, config, deadline))
    if "guard" in wanted and config.guard is not None:
        for case in GUARD_CASES:
            add(f"guard[{case}]", "guard", config.timeout_for("guard", config.guard.timeout),
                _bind(check_guard, case, config.guard, secret, config, deadline))
    if "sse" in wanted and config.sse is not None:
        add("sse", "sse", config.sse.window,
            _bind(check_sse, config.sse, config, deadline))
    if "containers" in wanted and config.containers is not None:
        from afo_runbook.containers import plan_containers  # the docker SDK only when needed

        for key, (network, run) in plan_containers(config, deadline).items():
            add(key, "containers", network, run)
    return jobs


def _bind(func: Callable[..., CheckResult], *args: Any) -> Callable[[], CheckResult]:
    return lambda: func(*args)


def observe(config: RunbookConfig, secret: Secret | None, deadline: Deadline | None = None,
            groups: Iterable[str] = GROUPS) -> list[CheckResult]:
    """All of section 1 at once, outside pytest (used to confirm a recovery, section 3.3)."""
    deadline = deadline or Deadline.after(config.budgets.observe)
    return Observation(plan(config, secret, deadline, groups)).results()
