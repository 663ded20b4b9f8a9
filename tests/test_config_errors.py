"""Bad input gets a clear error and loses nothing: the run stops before any check with exit
code 4 and one line naming the file, the key and what is wrong."""

from __future__ import annotations

import pytest

GOOD_HEALTH = '[[health]]\nname = "api"\nurl = "http://127.0.0.1:9/h"\n'

CASES = [
    ("unknown-key", GOOD_HEALTH + 'expct = 200\n', "health[1].expct: unknown key"),
    ("unknown-top-key", "[helth]\nx = 1\n", "helth: unknown key"),
    ("wrong-type", '[[health]]\nname = "api"\nurl = "http://x/"\nexpect = "200"\n',
     "health[1].expect: must be an integer or an array, got a string"),
    ("bool-for-int", '[[health]]\nname = "api"\nurl = "http://x/"\nexpect = true\n',
     "health[1].expect: must be an integer or an array, got a boolean"),
    ("missing-url", '[[health]]\nname = "api"\n', "health[1].url: missing (required)"),
    ("bad-url", '[[health]]\nname = "api"\nurl = "localhost:8010/api/health"\n',
     "health[1].url: must be an http:// or https:// URL"),
    ("bad-port", '[[health]]\nname = "api"\nurl = "http://localhost:99999/"\n',
     "health[1].url: not a valid URL"),
    ("duplicate-name", GOOD_HEALTH + GOOD_HEALTH, "health[2].name: duplicate service name"),
    ("guard-no-url", '[guard]\nheader = "X"\n', "guard.url: missing (required)"),
    ("deny-not-status", '[guard]\nurl = "http://x/"\ndeny = [401, "503"]\n',
     "guard.deny[2]: must be an HTTP status code"),
    ("negative-budget", "[budgets]\nhealth = -1\n", "budgets.health: must be greater than 0"),
    ("window-over-budget", '[sse]\nurl = "http://x/"\nwindow = 25\n',
     "sse.window: 25 s must be shorter than budgets.sse (20 s)"),
    ("bad-ports", '[containers]\nnames = ["afo-core"]\nports = { afo-core = ["8010"] }\n',
     "containers.ports.afo-core[1]: must look like"),
    ("not-toml", "[[health]\nname=\n", "not valid TOML"),
    ("decision-unknown-symptom", '[[decision]]\nsymptom = "cosmic-rays"\naction = "restart"\n',
     "decision[1].symptom: unknown symptom 'cosmic-rays'"),
    ("decision-unknown-action", '[[decision]]\nsymptom = "service-down"\naction = "reboot"\n',
     "decision[1].action: unknown action 'reboot'"),
    ("recovery-without-process", '[recovery]\nmode = "process"\n',
     "recovery.process: missing"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_stops_before_any_check(text, message, tmp_path, run_suite):
    path = tmp_path / "runbook.toml"
    path.write_text(text)
    result = run_suite("-m", "observe", "--runbook-config", str(path))
    assert result.rc == 4, result.output
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(error_lines) == 1, result.stderr
    assert str(path) in error_lines[0]
    assert message in error_lines[0]
    assert "Traceback" not in result.output
    assert not result.json_path.exists()  # no check ran, no verdict
    assert "passed" not in result.stdout
    assert "failed" not in result.stdout


def test_missing_config_file(tmp_path, run_suite):
    result = run_suite("-m", "observe", "--runbook-config", str(tmp_path / "nope.toml"))
    assert result.rc == 4
    assert f"{tmp_path / 'nope.toml'}: file not found" in result.stderr


def test_no_secret_for_the_guard_stops_the_run(tmp_path, run_suite, write_runbook):
    config = write_runbook({"guard": {"url": "http://127.0.0.1:9/g",
                                      "env_file": str(tmp_path / "absent.env")}})
    result = run_suite("-m", "observe", "--runbook-config", str(config))
    assert result.rc == 4, result.output
    assert "AFO_INTERNAL_SECRET" in result.stderr
    assert str(tmp_path / "absent.env") in result.stderr
    assert "does not exist" in result.stderr
    assert not result.json_path.exists()


def test_env_file_without_the_variable_names_both(tmp_path, run_suite, write_runbook):
    env_file = tmp_path / "other.env"
    env_file.write_text("SOMETHING_ELSE=1\n")
    config = write_runbook({"guard": {"url": "http://127.0.0.1:9/g", "env_file": str(env_file),
                                      "secret_env": "MY_GUARD_SECRET"}})
    result = run_suite("-m", "observe", "--runbook-config", str(config))
    assert result.rc == 4
    assert "MY_GUARD_SECRET" in result.stderr
    assert f"{env_file} does not define it" in result.stderr


def test_guard_not_selected_does_not_need_the_secret(tmp_path, run_suite, write_runbook):
    config = write_runbook({"guard": {"url": "http://127.0.0.1:9/g",
                                      "env_file": str(tmp_path / "absent.env")},
                            "health": [{"name": "down", "url": "http://127.0.0.1:9/h"}]})
    result = run_suite("-m", "observe and not guard", "--runbook-config", str(config))
    assert result.rc == 1  # the health check ran (and failed: nothing listens on port 9)
    assert result.failing() == {"health[down]": "service-down"}
