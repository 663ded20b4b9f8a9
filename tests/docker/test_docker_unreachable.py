"""The docker tests themselves without Docker: skipped with the reason, but failed with it
when AFO_REQUIRE_DOCKER=1 or CI=true (CI must never skip them silently)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
ONE_TEST = "tests/docker/test_docker_image.py::test_the_image_is_ours_and_reused"
NO_DOCKER = "unix:///nonexistent/afo-test/docker.sock"


def run_without_docker(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("PYTEST_") and k not in ("CI", "AFO_REQUIRE_DOCKER")}
    clean.update(DOCKER_HOST=NO_DOCKER, **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", ONE_TEST, "-p", "no:cacheprovider", "-n", "0", "-rs"],
        cwd=REPO, env=clean, capture_output=True, text=True, timeout=60, check=False)


def test_skipped_with_the_reason_by_default() -> None:
    run = run_without_docker()
    assert run.returncode == 0, run.stdout[-2000:]
    assert "1 skipped" in run.stdout
    assert f"Docker unreachable at {NO_DOCKER}" in run.stdout


@pytest.mark.parametrize("env", [{"AFO_REQUIRE_DOCKER": "1"}, {"CI": "true"}])
def test_failed_with_the_reason_when_required(env: dict[str, str]) -> None:
    run = run_without_docker(**env)
    assert run.returncode == 1, run.stdout[-2000:]
    assert "1 error" in run.stdout
    assert "skipped" not in run.stdout.splitlines()[-1]
    assert f"Docker unreachable at {NO_DOCKER}" in run.stdout
    assert "not skipping" in run.stdout
