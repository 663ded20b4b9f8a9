"""Runbook section 2.1, "classify the problem": the symptom table as data.

| symptom                | cause              | priority     | action            |
|------------------------|--------------------|--------------|-------------------|
| guard-open             | secret missing     | immediate    | rollback          |
| secret-unconfigured    | secret missing     | immediate    | rollback          |
| secret-rejected        | secret mismatch    | immediate    | rollback          |
| ports-wrong            | deployment drift   | immediate    | rollback          |
| container-exited       | crash              | immediate    | logs-then-restart |
| service-down           | service down       | immediate    | restart           |
| heartbeat-failure      | heartbeat failure  | within-5-min | review-restart    |
| route-missing          | moved route / stale config | immediate | escalate      |
| probe-error            | the check could not run    | immediate | escalate      |

The last two are not in the runbook's table: neither a restart nor a rollback is known to fix
a 404 on a configured URL, and a check that could not be carried out (a bug in the prober, the
prober's own network, no permission on the Docker socket) says nothing about the service. Both
hand over to people (runbook section 5); `--recover` never acts on them.

Operators override rows with `[[decision]]` tables in runbook.toml. With several symptoms the
runbook's principle 2 holds: security first, then the most urgent action.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

SYMPTOMS: tuple[str, ...] = (
    "guard-open",
    "secret-unconfigured",
    "secret-rejected",
    "ports-wrong",
    "container-exited",
    "service-down",
    "heartbeat-failure",
    "route-missing",
    "probe-error",
)
SECURITY_SYMPTOMS = frozenset({"guard-open", "secret-unconfigured", "secret-rejected"})

# Most urgent first; `escalate` hands over to the dev team (runbook section 5).
ACTIONS: tuple[str, ...] = (
    "rollback",
    "logs-then-restart",
    "restart",
    "review-restart",
    "escalate",
    "monitor",
)
PRIORITIES: tuple[str, ...] = ("immediate", "within-5-min", "none")


@dataclass(frozen=True)
class DecisionRow:
    symptom: str
    cause: str
    priority: str
    action: str
    overridden: bool = False

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


DEFAULT_ROWS: tuple[DecisionRow, ...] = (
    DecisionRow("guard-open", "secret missing (guard open)", "immediate", "rollback"),
    DecisionRow("secret-unconfigured", "secret missing", "immediate", "rollback"),
    DecisionRow("secret-rejected", "secret mismatch", "immediate", "rollback"),
    DecisionRow("ports-wrong", "deployment drift (port mapping)", "immediate", "rollback"),
    DecisionRow("container-exited", "crash", "immediate", "logs-then-restart"),
    DecisionRow("service-down", "service down", "immediate", "restart"),
    DecisionRow("heartbeat-failure", "heartbeat failure", "within-5-min", "review-restart"),
    DecisionRow("route-missing", "moved route or stale config", "immediate", "escalate"),
    DecisionRow("probe-error", "the check could not be carried out (not the service)",
                "immediate", "escalate"),
)


@dataclass(frozen=True)
class Decision:
    decision: str  # an action, or "monitor" when nothing failed
    priority: str
    symptoms: tuple[str, ...]  # most urgent first
    rows: tuple[DecisionRow, ...]  # the matched rows, most urgent first


MONITOR = Decision("monitor", "none", (), ())


def _urgency(row: DecisionRow) -> tuple[int, int, int, int]:
    return (
        0 if row.symptom in SECURITY_SYMPTOMS else 1,
        PRIORITIES.index(row.priority),
        ACTIONS.index(row.action),
        SYMPTOMS.index(row.symptom),
    )


def decide(symptoms: Iterable[str], rows: Iterable[DecisionRow]) -> Decision:
    """The runbook's verdict for the symptoms seen: the most urgent matched row decides."""
    table = {row.symptom: row for row in rows}
    seen = {s for s in symptoms if s}
    unknown = seen - table.keys()
    if unknown:
        raise ValueError(f"no decision row for symptom(s): {', '.join(sorted(unknown))}")
    if not seen:
        return MONITOR
    matched = tuple(sorted((table[s] for s in seen), key=_urgency))
    first = matched[0]
    return Decision(first.action, first.priority, tuple(r.symptom for r in matched), matched)
