"""The secret is read from the environment or the env file and written nowhere: not in the
terminal, the JSON verdict or JUnit XML, for green and red runs alike. The artifact scrubber
is a second line of defence; these tests also require that it never had to act."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

VERBOSE = ("-vv", "-rA", "--tb=long", "--junitxml")


def _assert_nowhere(result, secret: str) -> None:
    assert secret not in result.output
    assert secret not in result.json_path.read_text()
    assert result.junit_path is not None
    assert secret not in result.junit_path.read_text()
    assert "scrubbed a secret" not in result.output


@pytest.mark.parametrize("source", ["environment", "env-file"])
@pytest.mark.parametrize("outcome", ["green", "rejected"])
def test_secret_appears_in_no_output(source, outcome, stack, config_dict, write_runbook,
                                     tmp_path, run_suite, env_for):
    stack_secret = stack.env_file.read_text().strip().split("=", 1)[1]
    secret = stack_secret if outcome == "green" else "wrong-but-secret-" + "z" * 12
    config = config_dict()
    env = env_for()
    if source == "environment":
        config["guard"]["env_file"] = str(tmp_path / "absent.env")
        env = env_for(AFO_INTERNAL_SECRET=secret)
    else:
        env_file = tmp_path / "suite.env"
        env_file.write_text(f"AFO_INTERNAL_SECRET={secret}\nOTHER_TOKEN=also-sensitive-1\n")
        config["guard"]["env_file"] = str(env_file)
    result = run_suite("-m", "observe", "-n", "0", "-vv", "-rA", "--tb=long",
                       "--runbook-config", str(write_runbook(config)), env=env, junit=True)
    if outcome == "green":
        assert result.rc == 0, result.output
    else:
        assert result.failing() == {"guard[right-secret]": "secret-rejected"}
    _assert_nowhere(result, secret)
    if source == "env-file":
        _assert_nowhere(result, "also-sensitive-1")
    # the evidence still says where the secret came from, not what it is
    sent = result.check("guard[right-secret]")["evidence"]["sent"]
    assert sent.startswith("the configured secret (from ")


class RecordingGuard(ThreadingHTTPServer):
    """A guard on loopback that behaves like the real one (401 without the secret or with a
    wrong one, 200 with it) and records every header value it was sent, in memory only."""

    daemon_threads = True

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.sent: list[str | None] = []
        guard = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                value = self.headers.get("X-Internal-Secret")
                guard.sent.append(value)
                status = 200 if value == guard.secret else 401
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/revalidate/status"


@pytest.fixture
def recording_guard(suite_env_file) -> Iterator[RecordingGuard]:
    secret = suite_env_file.read_text().strip().split("=", 1)[1]
    server = RecordingGuard(secret)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_wrong_secret_is_random_each_run(recording_guard, suite_env_file, write_runbook,
                                         run_suite):
    """The runbook's fixed word WRONG could be somebody's secret; ours is drawn afresh for
    every run. The guard records what each run really sent: two runs, two different values."""
    config = write_runbook({"guard": {"url": recording_guard.url,
                                      "env_file": str(suite_env_file)}})
    wrong: list[str] = []
    for _ in range(2):
        before = len(recording_guard.sent)
        result = run_suite("-m", "guard", "-n", "0", "--runbook-config", str(config))
        assert result.rc == 0, result.output
        sent = recording_guard.sent[before:]
        assert len(sent) == 3  # no-secret, wrong-secret, right-secret
        assert sent.count(None) == 1
        assert sum(value == recording_guard.secret for value in sent) == 1
        wrong += [v for v in sent if v is not None and v != recording_guard.secret]
    assert len(wrong) == 2
    assert wrong[0] != wrong[1]
    assert all(value.upper() != "WRONG" for value in wrong)


def test_junit_carries_symptom_properties(stack, config_for, run_suite):
    stack.set_fault("api", "guard-open")
    result = run_suite("-m", "guard", "-n", "0", "--runbook-config", str(config_for()),
                       junit=True)
    xml = result.junit_path.read_text()
    assert '<property name="symptom" value="guard-open"' in xml
    assert '<property name="runbook_check" value="guard[no-secret]"' in xml
