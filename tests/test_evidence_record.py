"""The evidence record (runbook 2.2, 4.2): the HTML report as a browser shows it, incident.md,
the incident issue, and no secret in any artifact."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _required() -> bool:
    return os.environ.get("AFO_REQUIRE_CHROMIUM") == "1" or os.environ.get("CI") == "true"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's headless Chromium through its own chromedriver (nothing downloaded)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        reason = f"Chromium unavailable: {', '.join(missing)} not installed"
        if _required():
            pytest.fail(reason + " (required here: AFO_REQUIRE_CHROMIUM / CI)")
        pytest.skip(reason)
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def rendered(browser, html: Path) -> dict[str, object]:
    """Open the report, show every row's details, and read what is visible."""
    from selenium.webdriver.common.by import By

    browser.get(html.as_uri())
    verdict = browser.find_element(By.ID, "runbook-verdict")
    browser.find_element(By.ID, "show_all_details").click()
    evidence = {element.get_attribute("data-check"): element
                for element in browser.find_elements(By.CSS_SELECTOR, ".runbook-evidence")}
    environment = browser.find_element(By.ID, "environment")
    return {
        "verdict": verdict.text if verdict.is_displayed() else None,
        "evidence": {key: (el.text if el.is_displayed() else None)
                     for key, el in evidence.items()},
        "environment": environment.text,
    }


@pytest.fixture
def observe(run_suite, tmp_path):
    """Run observe writing its evidence record to tmp_path/reports; returns (result, html)."""
    def run(config, *extra, env=None):
        reports = tmp_path / "reports"
        result = run_suite("-m", "observe", "--runbook-config", str(config),
                           "--runbook-reports", str(reports), *extra, env=env)
        html = reports / "observe-latest.html"
        assert html.exists(), result.output
        return result, html, reports

    return run


def test_green_report_shows_verdict_and_every_checks_evidence(stack, config_for, observe,
                                                               browser):
    result, html, _ = observe(config_for())
    assert result.rc == 0, result.output
    seen = rendered(browser, html)
    assert "Runbook verdict: monitor" in seen["verdict"]
    assert "observe" in seen["verdict"]
    assert "runbook limit" in seen["verdict"]
    assert set(seen["evidence"]) == {c["key"] for c in result.verdict["checks"]}
    for key, text in seen["evidence"].items():
        assert text, f"the evidence of {key} is not visible"
    assert stack.health_url("api") in seen["evidence"]["health[api]"]
    assert "latency_ms" in seen["evidence"]["health[api]"]
    assert "text/event-stream" in seen["evidence"]["sse"]
    assert "ttfb_ms" in seen["evidence"]["sse"]
    assert "heartbeat" in seen["evidence"]["sse"]
    assert "Runbook config" in seen["environment"]
    assert "Git revision" in seen["environment"]
    assert "Host" in seen["environment"]
    assert not (html.parent / "incident.md").exists()  # green: no incident report


def test_report_opens_with_the_verdict_and_a_rendered_timeline(stack, config_for, observe,
                                                              browser, tmp_path):
    """The verdict box is the first thing on the page (before pytest-html's environment
    table), and its timeline SVG renders: one bar per check, coloured by outcome."""
    from selenium.webdriver.common.by import By

    stack.set_fault("api", "health-500")
    result, html, _ = observe(config_for())
    browser.set_window_size(1200, 900)
    browser.get(html.as_uri())
    verdict = browser.find_element(By.ID, "runbook-verdict")
    title = browser.find_element(By.ID, "title")
    environment = browser.find_element(By.ID, "environment")
    first = browser.execute_script(
        "return [...document.body.children].find("
        "e => e.getBoundingClientRect().height > 0).id")
    assert first == "runbook-verdict"
    assert verdict.location["y"] < title.location["y"] < environment.location["y"]
    timeline = browser.find_element(By.ID, "runbook-timeline")
    assert timeline.is_displayed()
    assert timeline.size["width"] > 400
    assert timeline.size["height"] > 0
    bars = timeline.find_elements(By.CSS_SELECTOR, "rect.runbook-bar")
    assert len(bars) == len(result.verdict["checks"]) == 7
    fills = {bar.get_attribute("class").split()[-1]: bar.get_attribute("fill") for bar in bars}
    assert fills == {"passed": "#2a2", "failed": "#c22"}
    assert all(float(bar.get_attribute("width")) >= 1 for bar in bars)
    shot = tmp_path / "report.png"
    assert browser.get_screenshot_as_file(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the timeline's own pixels: cropped from the page, not blank
    png = timeline.screenshot_as_png
    assert len(png) > 1000


def test_red_report_names_symptom_rows_and_incident(stack, config_for, observe, browser):
    stack.set_fault("api", "guard-open")
    _result, html, reports = observe(config_for())
    seen = rendered(browser, html)
    assert "Runbook verdict: rollback (priority immediate)" in seen["verdict"]
    assert "guard-open" in seen["verdict"]
    assert "secret missing (guard open)" in seen["verdict"]  # the matched table row
    assert "Incident report:" in seen["verdict"]
    evidence = seen["evidence"]["guard[no-secret]"]
    assert "symptom guard-open" in evidence
    assert "status" in evidence
    assert "200" in evidence
    incident = (reports / "incident.md").read_text()
    assert "**Root Cause:** secret missing" in incident
    # the run's own timestamped record, not the observe-latest copy that the next run replaces
    [record] = [p for p in reports.glob("observe-*.html") if p != html]
    assert f"HTML evidence record: {record.name} (attach it to this issue)" in incident
    assert (reports / f"{record.stem}.incident.md").read_text() == incident


def test_recovered_report_shows_steps_and_ttr(stack, recovery_config, observe, browser):
    stack.stop_service("api")
    stack.start_service("api", without_secret=True)
    result, html, reports = observe(recovery_config(), "--recover")
    assert result.verdict["recovery"]["outcome"] == "recovered", result.output
    seen = rendered(browser, html)
    assert "Recovery: recovered" in seen["verdict"]
    assert "Time to recover:" in seen["verdict"]
    assert "start with the env file's environment" in seen["verdict"]
    incident = (reports / "incident.md").read_text()
    assert "**Resolution:** rollback" in incident
    assert "heartbeat lines (runbook 4.1)" in incident  # the api's own log, analysed
    assert "**Duration:** " in incident
    assert "ongoing" not in incident


ROOT_CAUSES = [
    ("api", "guard-open", None, "secret missing", "env_file"),
    ("api", "secret-missing", None, "secret missing", "preflight"),
    ("aux", "down", None, "service down", "post-deploy gate"),
    ("api", "sse-silent", None, "SSE heartbeat failure", "grep heartbeat"),
]


@pytest.mark.parametrize(("service", "fault", "value", "cause", "prevention"), ROOT_CAUSES,
                         ids=[c[1] for c in ROOT_CAUSES])
def test_incident_md_for_each_root_cause(service, fault, value, cause, prevention, stack,
                                         config_for, observe):
    stack.set_fault(service, fault, value)
    config = config_for(sse={"url": f"{stack.urls['api']}/api/thoughts/sse", "window": 1})
    result, _, reports = observe(config, "-n", "0")
    text = (reports / "incident.md").read_text()
    for field in ("**Time:**", "**Duration:**", "**Impact:**", "**Root Cause:**",
                  "**Evidence:**", "**Resolution:**", "**Prevention:**"):
        assert field in text
    assert f"**Root Cause:** {cause}" in text
    assert prevention in text
    assert "**Resolution:** none yet (decided: " in text
    assert result.verdict["incident_id"] in text


def test_container_crash_root_cause_with_log_excerpt():
    """incident.md for container-exited: the cause and the log's error lines (no engine
    needed: the verdict is built as the plugin builds it)."""
    from afo_runbook.decision import DEFAULT_ROWS
    from afo_runbook.report import incident_markdown
    from afo_runbook.verdict import CheckRecord, build_verdict

    record = CheckRecord("checks/test_containers.py::test_container[afo-core]",
                         "containers[afo-core]", "containers", "failed", "container-exited",
                         0.1, "afo-core is exited, exit code 1",
                         {"logs": {"afo-core": {"error_lines": ["ERROR boom"]}}})
    verdict = build_verdict([record], DEFAULT_ROWS, started_at=1_800_000_000, duration_s=1,
                            observe_budget_s=60, config_path="/x/runbook.toml")
    text = incident_markdown(verdict, "observe-x.html", 1_800_000_000, 1_800_000_600)
    assert "**Root Cause:** container crash" in text
    assert "afo-core log: ERROR boom" in text
    assert "healthcheck" in text
    assert "**Duration:** ongoing, 10.0 min so far" in text


def fake_gh(folder: Path, logged_in: bool) -> Path:
    """A stand-in for the GitHub CLI (GitHub's API cannot run here): records its arguments."""
    script = folder / "gh"
    script.write_text(f"""#!/bin/sh
if [ "$1 $2" = "auth status" ]; then exit {0 if logged_in else 1}; fi
printf '%s\\n' "$@" > "{folder}/gh-args"
echo https://github.com/example/afo/issues/1
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


@pytest.mark.parametrize("logged_in", [True, False])
def test_incident_issue_uses_gh_or_prints_the_command(logged_in, stack, config_for, observe,
                                                      tmp_path, env_for):
    stack.set_fault("api", "guard-open")
    _, _, reports = observe(config_for(), "-n", "0")
    (tmp_path / "bin").mkdir()
    bin_dir = fake_gh(tmp_path / "bin", logged_in)
    env = env_for(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run([sys.executable, "-m", "afo_runbook.cli", "incident-issue",
                           str(reports / "incident.md"), "--repo", "example/afo"],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    meta = json.loads((reports / "incident.json").read_text())
    if logged_in:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        args = (bin_dir / "gh-args").read_text().splitlines()
        assert args[:2] == ["issue", "create"]
        assert args[args.index("--body-file") + 1] == str(reports / "incident.md")
        assert args[args.index("--title") + 1] == meta["title"]
        assert "guard-open -> rollback" in meta["title"]
        assert Path(meta["html"]).name in proc.stdout  # named, so it can be attached
    else:
        assert proc.returncode == 3
        assert "gh is not logged in" in proc.stdout
        assert "gh issue create --title" in proc.stdout
        assert not (bin_dir / "gh-args").exists()


@pytest.mark.parametrize("source", ["environment", "env-file"])
def test_no_secret_in_any_artifact(source, stack, config_dict, write_runbook, observe,
                                   tmp_path, env_for, recovery_dict):
    stack_secret = stack.env_file.read_text().strip().split("=", 1)[1]
    config = config_dict()
    env = env_for()
    if source == "environment":
        config["guard"]["env_file"] = str(tmp_path / "absent.env")
        env = env_for(AFO_INTERNAL_SECRET=stack_secret)
    config["recovery"] = recovery_dict()
    config["incident_log"] = {"path": str(tmp_path / "logs" / "afo-incidents.log")}
    stack.stop_service("api")
    stack.start_service("api", without_secret=True)
    result, _, reports = observe(write_runbook(config), "--recover", "--junitxml",
                                 str(tmp_path / "junit.xml"), "-vv", "-rA", env=env)
    assert result.verdict["recovery"]["outcome"] == "recovered", result.output
    artifacts = [*reports.iterdir(), tmp_path / "junit.xml", *(tmp_path / "logs").iterdir()]
    assert any(p.name == "incident.md" for p in artifacts)
    for path in artifacts:
        assert stack_secret not in path.read_text(errors="replace"), path
    assert stack_secret not in result.output
    assert "scrubbed a secret" not in result.output
