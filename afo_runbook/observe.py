"""Runbook section 1 as library code: each check, the symptom it names, and a concurrent runner.

The pytest checks in `checks/` and the re-observation after a recovery (section 3.3) both call
these functions, so a check means the same thing wherever it runs. A failing check always names
the root cause: a guard or SSE check whose server is unreachable is `service-down`, not a
security or heartbeat symptom.
"""

from __future__ import annotations

import json
import secrets as random_tokens
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from afo_runbook.config import GuardConfig, HealthTarget, RunbookConfig, SseConfig, Tls
from afo_runbook.pool import POOL
from afo_runbook.probes.http import HttpSeen, failure_text, http_get
from afo_runbook.probes.sse import SseEvent, SseSeen, sse_probe
from afo_runbook.results import GROUPS, MIN_CALL_TIMEOUT, PROBE_ERROR, CheckResult, Deadline
from afo_runbook.secret import Secret

GUARD_CASES: tuple[str, ...] = ("no-secret", "wrong-secret", "right-secret")
LIVENESS_TIMEOUT = 3.0


# -- 1.1 health --------------------------------------------------------------------------------


def check_health(target: HealthTarget, config: RunbookConfig, deadline: Deadline) -> CheckResult:
    timeout = deadline.cap(config.timeout_for("health", target.timeout))
    seen = http_get(target.url, timeout=timeout, max_body=target.max_body,
                    need_body=target.reads_body, tls=target.tls)
    return judge_health(target, seen, timeout)


def judge_health(target: HealthTarget, seen: HttpSeen, timeout: float) -> CheckResult:
    """Every condition of the [[health]] table, each failure in one line with its value."""
    key = f"health[{target.name}]"
    evidence = {**seen.evidence(), "expect": list(target.expect), "timeout_s": round(timeout, 2)}
    if not seen.answered:
        return _failed(key, "health", "service-down", seen.describe(), evidence)
    if seen.status == 404 and 404 not in target.expect:
        return _failed(key, "health", "route-missing", route_missing(target.url), evidence)
    failures = health_failures(target, seen)
    evidence["conditions"] = failures or "all hold"
    if failures:
        return _failed(key, "health", "service-down", f"{key}: " + "; ".join(failures),
                       evidence)
    if seen.error_class:  # the excerpt (or the body the conditions need) never completed
        return _failed(key, "health", "service-down",
                       f"{target.url} answered {seen.status} but "
                       f"{failure_text(seen.error_class, seen.error)}", evidence)
    degraded = health_warnings(target, seen)
    return CheckResult(key, "health", True, None,
                       f"{target.url} answered {seen.status} in {evidence['latency_ms']} ms",
                       evidence, degraded=[f"{key}: {w}" for w in degraded])


def route_missing(url: str) -> str:
    return f"{url} answered 404: the route is missing (moved route or stale config)"


def health_failures(target: HealthTarget, seen: HttpSeen) -> list[str]:
    """The conditions that do not hold, Gatus-style: `[BODY].status ("degraded") == "ok"`."""
    failures: list[str] = []
    if seen.status not in target.expect:
        wanted = (str(target.expect[0]) if len(target.expect) == 1
                  else f"in {list(target.expect)}")
        failures.append(f"[STATUS] ({seen.status}) {'== ' if len(target.expect) == 1 else ''}"
                        f"{wanted}")
    for name, wanted in target.headers.items():
        actual = seen.headers.get(name)
        if actual is None or wanted.lower() not in actual.lower():
            shown = "missing" if actual is None else json.dumps(actual)
            failures.append(f"[HEADER {name}] ({shown}) contains {json.dumps(wanted)}")
    expired = _certificate_expired(seen)
    if expired:
        failures.append(expired)
    if not target.reads_body:
        return failures
    if seen.oversize or seen.error_class:
        why = (f"the body is over max_body ({target.max_body} bytes)" if seen.oversize
               else f"the body did not arrive ({failure_text(seen.error_class, seen.error)})")
        failures += [f"[BODY].{path} cannot be evaluated: {why}" for path in target.json]
        if target.contains is not None:
            failures.append(f"[BODY] contains {json.dumps(target.contains)} cannot be "
                            f"evaluated: {why}")
        return failures
    if target.contains is not None and target.contains.encode() not in seen.body:
        failures.append(f"[BODY] contains {json.dumps(target.contains)} (not in "
                        f"{len(seen.body)} bytes)")
    if target.json:
        failures += _json_failures(target.json, seen.body)
    return failures


_MISSING = object()


def _json_failures(conditions: dict[str, Any] | Any, body: bytes) -> list[str]:
    try:
        document = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        why = f"the body is not JSON ({type(exc).__name__})"
        return [f"[BODY].{path} cannot be evaluated: {why}" for path in conditions]
    failures = []
    for path, wanted in conditions.items():
        actual = _dig(document, path)
        if actual is _MISSING:
            failures.append(f"[BODY].{path} (missing) == {json.dumps(wanted)}")
        elif not _same(actual, wanted):
            failures.append(f"[BODY].{path} ({json.dumps(actual)}) == {json.dumps(wanted)}")
    return failures


def _dig(document: Any, path: str) -> Any:
    """`checks.db` in {"checks": {"db": "up"}}; a number indexes a list (`items.0`)."""
    current = document
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def _same(actual: Any, wanted: Any) -> bool:
    """JSON equality: true is not 1, 1 is 1.0."""
    if isinstance(actual, bool) or isinstance(wanted, bool):
        return isinstance(actual, bool) and isinstance(wanted, bool) and actual == wanted
    return bool(actual == wanted)


def _certificate_expired(seen: HttpSeen) -> str | None:
    days = (seen.tls or {}).get("days_left")
    if days is not None and days < 0:
        return f"[CERTIFICATE] expired {seen.tls['not_after']} ({days:g} days)"  # type: ignore[index]
    return None


def certificate_warning(seen: HttpSeen, tls: Tls) -> str | None:
    days = (seen.tls or {}).get("days_left")
    if tls.cert_min_days is not None and days is not None and 0 <= days < tls.cert_min_days:
        return (f"[CERTIFICATE] expires {seen.tls['not_after']} (in {days:g} days) "  # type: ignore[index]
                f"< cert_min_days {tls.cert_min_days:g}")
    return None


def health_warnings(target: HealthTarget, seen: HttpSeen) -> list[str]:
    """Passed, but degraded: slower than max_latency_ms, a certificate expiring soon."""
    warnings = []
    latency_ms = (seen.latency_s or 0) * 1000
    if target.max_latency_ms is not None and latency_ms > target.max_latency_ms:
        warnings.append(f"[RESPONSE_TIME] ({latency_ms:.0f} ms) <= {target.max_latency_ms:g} ms")
    cert = certificate_warning(seen, target.tls)
    if cert:
        warnings.append(cert)
    return warnings


# -- 1.2 security guard ------------------------------------------------------------------------


def wrong_secret(real: str | None) -> str:
    """A random wrong value: never a fixed word that could happen to be someone's secret."""
    while True:
        value = "wrong-" + random_tokens.token_urlsafe(18)
        if value != real:
            return value


REFUSED_ALWAYS = 403  # a refusal whatever `deny` says (a WAF, a proxy's own guard)


class GuardProbe:
    """The three requests of 1.2, sent at once and judged together (see judge_guard_all)."""

    def __init__(self, guard: GuardConfig, secret: Secret | None, config: RunbookConfig,
                 deadline: Deadline) -> None:
        self._guard = guard
        self._secret = secret
        self._config = config
        self._deadline = deadline
        self._lock = threading.Lock()
        self._results: dict[str, CheckResult] | None = None

    def result(self, case: str) -> CheckResult:
        with self._lock:  # the first of the three jobs sends all three; the others wait
            if self._results is None:
                self._results = self._observe()
        return self._results[case]

    def _observe(self) -> dict[str, CheckResult]:
        guard = self._guard
        timeout = self._deadline.cap(self._config.timeout_for("guard", guard.timeout))
        plans = {case: guard_request(case, guard, self._secret) for case in GUARD_CASES}
        seen: dict[str, HttpSeen] = {}

        def get(case: str) -> None:
            seen[case] = http_get(guard.url, timeout=timeout, headers=plans[case][0],
                                  max_body=64 * 1024, tls=guard.tls)

        threads = [threading.Thread(target=get, args=(case,), daemon=True) for case in GUARD_CASES]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout + SLACK)
        for case in GUARD_CASES:  # a request that did not even finish inside its timeout
            seen.setdefault(case, HttpSeen(url=guard.url, error_class="timeout",
                                           error=f"after {timeout:.1f} s"))
        return judge_guard_all(guard, seen, {c: plans[c][1] for c in GUARD_CASES}, timeout)


def guard_request(case: str, guard: GuardConfig,
                  secret: Secret | None) -> tuple[dict[str, str], str]:
    """(headers, what was sent, in words) for one of the three requests."""
    if case not in GUARD_CASES:
        raise ValueError(f"unknown guard case {case!r}")
    if case == "no-secret":
        return {}, "no header"
    if case == "wrong-secret":
        return ({guard.header: wrong_secret(secret.reveal() if secret else None)},
                "a random wrong value")
    if secret is None:
        raise ValueError("the right-secret guard check needs the secret")
    return {guard.header: secret.reveal()}, f"the configured secret (from {secret.origin})"


def check_guard(case: str, guard: GuardConfig, secret: Secret | None, config: RunbookConfig,
                deadline: Deadline) -> CheckResult:
    """One case, judged with the other two (used to confirm a recovery, section 3.3)."""
    return GuardProbe(guard, secret, config, deadline).result(case)


def refused(status: int | None, guard: GuardConfig) -> bool:
    return status is not None and (status in guard.deny or status == REFUSED_ALWAYS)


def judge_guard_all(guard: GuardConfig, seen: dict[str, HttpSeen], sent: dict[str, str],
                    timeout: float) -> dict[str, CheckResult]:
    """The three answers as one unit. The right secret's refusal is `secret-rejected` only
    while the other two are refused as well; a 404 is a missing route, never a secret
    symptom."""
    others_refused = all(refused(seen[c].status, guard) for c in ("no-secret", "wrong-secret"))
    return {case: judge_guard(case, guard, seen[case], sent[case], timeout,
                              others_refused=others_refused) for case in GUARD_CASES}


def judge_guard(case: str, guard: GuardConfig, seen: HttpSeen, sent: str,
                timeout: float, others_refused: bool = True) -> CheckResult:
    key = f"guard[{case}]"
    evidence = {**seen.evidence(), "header": guard.header, "sent": sent,
                "deny": list(guard.deny), "allow": guard.allow, "timeout_s": round(timeout, 2)}
    refusals = "/".join(str(s) for s in guard.deny)
    if not seen.answered:
        return _failed(key, "guard", "service-down",
                       f"guard unreachable with {sent}: {seen.describe()}", evidence)
    status = seen.status
    if status == 404:
        return _failed(key, "guard", "route-missing", route_missing(guard.url), evidence)
    if case in ("no-secret", "wrong-secret"):
        if refused(status, guard):
            return CheckResult(key, "guard", True, None,
                               f"refused {sent} with {status}", evidence,
                               degraded=_guard_warnings(key, seen, guard))
        if status == guard.allow:
            return _failed(key, "guard", "guard-open",
                           f"the guard let {sent} through with {status}, expected {refusals}: "
                           "the guard is open", evidence)
        return _failed(key, "guard", "service-down",
                       f"the guard answered {sent} with {status}, neither a refusal "
                       f"({refusals}) nor {guard.allow}", evidence)
    if status == guard.allow:
        return CheckResult(key, "guard", True, None, f"accepted {sent} with {status}", evidence,
                           degraded=_guard_warnings(key, seen, guard))
    if status == 503:
        return _failed(key, "guard", "secret-unconfigured",
                       "the right secret got 503: the service has no secret configured",
                       evidence)
    if refused(status, guard) and others_refused:
        return _failed(key, "guard", "secret-rejected",
                       f"the right secret got {status}, expected {guard.allow}, while no "
                       "secret and a wrong one were refused too: the service's secret "
                       "differs from the suite's", evidence)
    return _failed(key, "guard", "service-down",
                   f"the right secret got {status}, expected {guard.allow}"
                   + ("" if refused(status, guard) else f", and {status} is not a refusal")
                   + ("" if others_refused else "; no secret or a wrong one was not refused "
                      "either: the guard does not work as a guard"), evidence)


def _guard_warnings(key: str, seen: HttpSeen, guard: GuardConfig) -> list[str]:
    warning = certificate_warning(seen, guard.tls)
    return [f"{key}: {warning}"] if warning else []


# -- 1.3 SSE stream ----------------------------------------------------------------------------


def check_sse(sse: SseConfig, config: RunbookConfig, deadline: Deadline) -> CheckResult:
    window = deadline.cap(sse.window)
    # Is it the stream or the whole server? The look at the same server's health goes out
    # alongside the stream, so a failing stream never waits for it afterwards.
    liveness = Liveness(_liveness_url(sse.url, config),
                        deadline.cap(min(LIVENESS_TIMEOUT, sse.window)), sse.tls)
    seen = sse_probe(sse.url, window=window, max_bytes=sse.max_bytes, event=sse.event,
                     min_events=sse.min_events, tls=sse.tls)
    if seen.error_class and seen.error_class not in ("refused", "dns"):
        return judge_sse(sse, seen, liveness.seen())
    return judge_sse(sse, seen, None)


class Liveness:
    """A GET of the SSE server's health URL, started at once in a thread of its own."""

    def __init__(self, url: str, timeout: float, tls: Tls | None = None) -> None:
        self._url = url
        self._timeout = timeout
        self._tls = tls
        self._seen: HttpSeen | None = None
        self._thread = threading.Thread(target=self._get, name="sse liveness", daemon=True)
        self._thread.start()

    def _get(self) -> None:
        self._seen = http_get(self._url, timeout=self._timeout, tls=self._tls)

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
    wrapped = next((e for e in seen.events if e.wrapped), None)
    if seen.ok:
        first = seen.matching()[0]
        count = len(seen.matching())
        degraded = []
        if wrapped is not None:  # no `event` expectation caught it: still worth saying
            degraded.append(f"sse: {_wrapped_twice(wrapped)}")
        return CheckResult("sse", "sse", True, None,
                           f"{'first ' if count == 1 else f'{count} events, the first '}"
                           f"event {first.event!r} after {first.at_s * 1000:.0f} ms "
                           f"({seen.bytes_read} bytes)", evidence, degraded=degraded)
    if seen.error_class:
        if liveness is not None:
            evidence["server_answers_http"] = {"url": liveness.url, "status": liveness.status,
                                               "error_class": liveness.error_class}
        detail = failure_text(seen.error_class, seen.error)
        if liveness is None or not liveness.answered:
            return _failed("sse", "sse", "service-down",
                           f"{sse.url}: {detail}; the server does not answer HTTP", evidence)
        return _failed("sse", "sse", "heartbeat-failure",
                       f"{sse.url}: {detail}, while the server answers "
                       f"HTTP ({liveness.status} from {liveness.url})", evidence)
    if seen.status == 404:
        return _failed("sse", "sse", "route-missing", route_missing(sse.url), evidence)
    problem = seen.problem
    if wrapped is not None and sse.event is not None and not seen.matching():
        problem = (f"no {sse.event!r} event: {_wrapped_twice(wrapped)} ({problem})")
    return _failed("sse", "sse", "heartbeat-failure", f"{sse.url}: {problem}", evidence)


def _wrapped_twice(event: SseEvent) -> str:
    inner = f" {event.inner_event!r}" if event.inner_event else ""
    return (f"the server wraps its events twice: event {event.event!r} carries SSE framing "
            f"as its data (an inner event{inner})")


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
            # Not the service failing: the check could not be carried out (probe-error).
            result = CheckResult(self.job.key, self.job.group, False, PROBE_ERROR,
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
        probe = GuardProbe(config.guard, secret, config, deadline)  # one unit, three checks
        for case in GUARD_CASES:
            add(f"guard[{case}]", "guard", config.timeout_for("guard", config.guard.timeout),
                _bind(probe.result, case))
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
