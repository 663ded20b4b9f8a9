"""What a recovery action gets to work with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from afo_runbook.config import RecoveryConfig, RunbookConfig
from afo_runbook.secret import Redactor, Secret


@dataclass
class RecoveryContext:
    config: RunbookConfig
    secret: Secret | None
    redactor: Redactor
    say: Callable[[str], None] = print
    evidence: dict[str, Any] = field(default_factory=dict)  # e.g. the 4.1 logs taken first

    @property
    def recovery(self) -> RecoveryConfig:
        if self.config.recovery is None:
            raise LookupError(f"{self.config.path} has no [recovery] section")
        return self.config.recovery

    def docker_client(self) -> Any:
        from afo_runbook.probes.docker import connect

        return connect(timeout=max(5.0, self.config.budgets.containers))
