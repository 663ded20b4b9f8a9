"""The secret-guarded endpoint: 503 without a secret, 401 none/wrong, 200 right; its faults."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from afo_runbook.refstack.services import GUARD_PATH, SECRET_ENV, SECRET_HEADER
from afo_runbook.refstack.stack import Stack

pytestmark = pytest.mark.timeout(60)

ONLY_API = {"aux": {"down": None}, "dashboard": {"down": None}}
TIMEOUT = 5


def guard_codes(stack: Stack, secret: str) -> tuple[int, int, int]:
    """Status codes for: no header, a wrong secret, the right secret."""
    url = stack.urls["api"] + GUARD_PATH

    def get(headers: dict[str, str]) -> int:
        return requests.get(url, headers=headers, timeout=TIMEOUT).status_code

    return get({}), get({SECRET_HEADER: "wrong-" + secret}), get({SECRET_HEADER: secret})


def api_environ(stack: Stack) -> dict[str, str]:
    pid = stack.pid("api")
    assert pid is not None
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def test_guard_with_secret(stack: Stack, secret: str) -> None:
    assert guard_codes(stack, secret) == (401, 401, 200)
    ok = requests.get(
        stack.urls["api"] + GUARD_PATH, headers={SECRET_HEADER: secret}, timeout=TIMEOUT
    )
    assert ok.json()["status"] == "ok"


def test_guard_open_switched_live(stack: Stack, secret: str) -> None:
    stack.set_fault("api", "guard-open")
    assert guard_codes(stack, secret) == (200, 200, 200)
    stack.clear_fault("api", "guard-open")
    assert guard_codes(stack, secret) == (401, 401, 200)


def test_secret_missing_switched_live(stack: Stack, secret: str) -> None:
    stack.set_fault("api", "secret-missing")
    assert guard_codes(stack, secret) == (503, 503, 503)
    stack.clear_fault("api", "secret-missing")
    assert guard_codes(stack, secret) == (401, 401, 200)


def test_the_secret_never_reaches_logs_or_state_files(stack: Stack, secret: str) -> None:
    guard_codes(stack, secret)
    wrong = "wrong-" + secret
    for path in [*stack.state_dir.rglob("*")]:
        if path.is_file():
            text = path.read_text(errors="replace")
            assert secret not in text, f"secret leaked into {path}"
            assert wrong not in text, f"received header value leaked into {path}"
    assert secret not in json.dumps(stack.command("api"))


def test_no_secret_configured_answers_503(
    make_stack: Callable[..., Stack], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    stack = make_stack(faults=ONLY_API)  # no env file, nothing inherited
    stack.start()
    assert SECRET_ENV not in api_environ(stack)
    assert guard_codes(stack, "anything") == (503, 503, 503)


def test_empty_secret_counts_as_none(
    make_stack: Callable[..., Stack], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, "")
    stack = make_stack(faults=ONLY_API)
    stack.start()
    assert guard_codes(stack, "anything") == (503, 503, 503)


def test_secret_missing_at_start_drops_the_variable_then_restart_recovers(
    make_stack: Callable[..., Stack],
    env_file: Path,
    secret: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Even a secret inherited from the parent environment must not reach the api.
    monkeypatch.setenv(SECRET_ENV, "inherited-" + secret)
    stack = make_stack(env_file=env_file, faults={**ONLY_API, "api": {"secret-missing": None}})
    stack.start()
    assert SECRET_ENV not in api_environ(stack)
    assert guard_codes(stack, secret) == (503, 503, 503)
    # A condition of this start, not a live switch: nothing to clear before recovering.
    assert "secret-missing" not in stack.faults().get("api", {})

    # The rehearsed recovery: restart the api with its env file.
    stack.stop_service("api")
    stack.start_service("api")
    assert api_environ(stack)[SECRET_ENV] == secret  # the env file wins over the parent
    assert guard_codes(stack, secret) == (401, 401, 200)
