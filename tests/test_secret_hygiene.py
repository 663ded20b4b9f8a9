"""The secret is read from the environment or the env file and written nowhere: not in the
terminal, the JSON verdict or JUnit XML, for green and red runs alike. The artifact scrubber
is a second line of defence; these tests also require that it never had to act."""

from __future__ import annotations

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


def test_wrong_secret_is_random_each_run(stack, config_for, run_suite):
    """The runbook's fixed word WRONG could be somebody's secret; ours is never the same."""
    config = str(config_for())
    first = run_suite("-m", "guard", "-n", "0", "--runbook-config", config)
    second = run_suite("-m", "guard", "-n", "0", "--runbook-config", config)
    for result in (first, second):
        assert result.check("guard[wrong-secret]")["evidence"]["sent"] == "a random wrong value"
        assert "WRONG" not in result.output


def test_junit_carries_symptom_properties(stack, config_for, run_suite):
    stack.set_fault("api", "guard-open")
    result = run_suite("-m", "guard", "-n", "0", "--runbook-config", str(config_for()),
                       junit=True)
    xml = result.junit_path.read_text()
    assert '<property name="symptom" value="guard-open"' in xml
    assert '<property name="runbook_check" value="guard[no-secret]"' in xml
