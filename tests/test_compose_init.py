"""`afo-runbook init --from-compose`: a runbook.toml from a compose file.

Real files, the real command in a subprocess, Debian's `docker-compose config` as the judge of
the interpolation and of the reference stack's own compose file, and the generated file run
as `pytest -m observe` against the reference stack: in process mode (health, guard and SSE
from the templates) and as containers (with `[containers]`, on a real engine).

The containerised test publishes free host ports and unique container names, so the compose
file is generated with the stack's own values in the environment (AFO_CORE_PORT, ...,
AFO_NAME_SUFFIX, AFO_ENV_FILE): the refstack compose file interpolates exactly those, which
also tests the interpolation end to end. The Docker fixtures are those of tests/docker
(skip without an engine, fail under CI=true), loaded from their conftest.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import afo_runbook.refstack
from afo_runbook.compose_init import ComposeError, read_compose, render
from afo_runbook.config import load_config

REPO = Path(__file__).resolve().parent.parent
REFSTACK_COMPOSE = Path(afo_runbook.refstack.__file__).parent / "docker-compose.yml"
PORT_VARS = {"api": "AFO_CORE_PORT", "aux": "AFO_AUX_PORT", "dashboard": "AFO_DASHBOARD_PORT"}
SERVICE_OF = {"api": "afo-core", "aux": "afo-aux", "dashboard": "afo-dashboard"}
COMPOSE_VARS = ("AFO_", "COMPOSE_")


def _docker_fixtures() -> Any:
    """tests/docker/conftest.py as a module: its fixtures (docker_client skips without an
    engine and fails under CI=true) are reused here, not rewritten."""
    name = "afo_tests_docker_fixtures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).parent / "docker" / "conftest.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_docker = _docker_fixtures()
docker_client = _docker.docker_client
static_busybox = _docker.static_busybox
session_labels = _docker.session_labels
base_image = _docker.base_image
env_file = _docker.env_file
make_docker_stack = _docker.make_docker_stack
run_runbook = _docker.run_runbook


def ci() -> bool:
    return os.environ.get("CI") == "true"


def base_env(**extra: str) -> dict[str, str]:
    """This environment without compose variables of the caller's (nor the secret)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(COMPOSE_VARS) and not k.startswith(("PYTEST_", "RUNBOOK_"))}
    env.update(extra)
    return env


def init(*args: str, env: dict[str, str] | None = None,
         cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """`afo-runbook init ...` as a user runs it."""
    return subprocess.run([sys.executable, "-m", "afo_runbook.cli", "init", *args],
                          cwd=cwd, env=env if env is not None else base_env(),
                          capture_output=True, text=True, timeout=60, check=False)


def uncomment_templates(text: str) -> str:
    """The generated file with its [guard] and [sse] templates switched on."""
    out, active = [], False
    for line in text.splitlines():
        if line in ("# [guard]", "# [sse]"):
            active = True
        elif active and not line.startswith("# "):
            active = False
        out.append(line[2:] if active else line)
    return "\n".join(out) + "\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        reason = "docker-compose is not installed (Debian: apt-get install docker-compose)"
        if ci():
            pytest.fail(f"{reason}; CI=true: not skipping", pytrace=False)
        pytest.skip(reason)
    return found


def compose_config(compose: Path, env: dict[str, str]) -> dict[str, Any]:
    """`docker-compose config` of the file: compose's own reading of it."""
    proc = subprocess.run([docker_compose(), "-f", str(compose), "config"], cwd=compose.parent,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


# ----------------------------------------------------------------------------- the refstack


def test_the_refstack_compose_file_gives_the_runbooks_targets(tmp_path: Path) -> None:
    out = tmp_path / "deploy" / "runbook.toml"
    proc = init("--from-compose", str(REFSTACK_COMPOSE), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr  # nothing secret inline in it
    config = load_config(out)
    assert [(t.name, t.url) for t in config.health] == [
        ("afo-core", "http://localhost:8010/api/health"),
        ("afo-aux", "http://localhost:8001/health"),
        ("afo-dashboard", "http://localhost:3000/"),
    ]
    assert config.containers is not None
    assert config.containers.names == ("afo-core", "afo-aux", "afo-dashboard")
    assert dict(config.containers.ports) == {"afo-core": ("8010:8010/tcp",),
                                             "afo-aux": ("8001:8001/tcp",),
                                             "afo-dashboard": ("3000:3000/tcp",)}
    # guard and SSE are templates: commented out, with the runbook's paths
    assert config.guard is None
    assert config.sse is None
    text = out.read_text()
    assert '# url = "http://localhost:8010/api/revalidate/status"' in text
    assert '# url = "http://localhost:8010/api/thoughts/sse"' in text
    assert '# event = "heartbeat"' in text
    switched_on = write(tmp_path / "on" / "runbook.toml", uncomment_templates(text))
    on = load_config(switched_on)
    assert on.guard is not None
    assert on.sse is not None
    assert on.guard.url == "http://localhost:8010/api/revalidate/status"
    assert on.guard.secret_env == "AFO_INTERNAL_SECRET"
    # afo-core's env_file (.env.afo beside the compose file), absolute: it is not inside
    # the folder of the runbook.toml
    assert on.guard.env_file == REFSTACK_COMPOSE.parent / ".env.afo"
    assert on.sse.url == "http://localhost:8010/api/thoughts/sse"
    assert on.sse.event == "heartbeat"


def test_without_o_it_writes_to_stdout_and_a_relative_env_file_stays_relative(
        tmp_path: Path) -> None:
    compose = tmp_path / "docker-compose.yml"
    shutil.copy(REFSTACK_COMPOSE, compose)
    proc = init("--from-compose", "docker-compose.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith("# runbook.toml generated by `afo-runbook init")
    assert '# env_file = ".env.afo"' in proc.stdout
    assert not list(tmp_path.glob("*.toml"))  # nothing written
    on = load_config(write(tmp_path / "runbook.toml", uncomment_templates(proc.stdout)))
    assert on.guard is not None
    assert on.guard.env_file == tmp_path / ".env.afo"


def test_docker_compose_config_accepts_the_refstack_file_and_reads_it_as_we_do(
        tmp_path: Path) -> None:
    compose = tmp_path / "docker-compose.yml"
    shutil.copy(REFSTACK_COMPOSE, compose)
    write(tmp_path / ".env.afo", f"AFO_INTERNAL_SECRET=tst-{secrets.token_urlsafe(16)}\n")
    write(tmp_path / ".env", "AFO_AUX_PORT=18001\nAFO_CORE_PORT=1\n")
    env = base_env(AFO_CORE_PORT="18010", AFO_NAME_SUFFIX="-blue")  # the environment wins
    theirs = compose_config(compose, env)["services"]
    ours = read_compose(compose, env).services
    assert sorted(theirs) == sorted(ours) == ["afo-aux", "afo-core", "afo-dashboard"]
    for name, service in ours.items():
        assert theirs[name]["container_name"] == service.container == f"{name}-blue"
        assert _ports_of(theirs[name]) == [f"{p.host_ip}:{p.mapping}" for p in service.ports]
        assert theirs[name]["healthcheck"]["test"][1:] == service.healthcheck
    assert [p.host for p in ours["afo-core"].ports] == [18010]
    assert [p.host for p in ours["afo-aux"].ports] == [18001]
    assert [p.host for p in ours["afo-dashboard"].ports] == [3000]
    assert [w for w, _ in ours["afo-core"].env_files] == [".env.afo"]


# ----------------------------------------------------------------------------- interpolation


# What Debian's docker-compose 1.29 knows (no `+` forms); the `+` forms are tested alone.
INTERPOLATED = """\
services:
  api:
    image: busybox
    container_name: "api${EMPTY-_dash}${EMPTY:-_colon}${UNSET-_unset}"
    ports:
      - "${API_PORT}:8010"
      - "${DOT_ONLY}:9000"
      - "${UNSET:-7300}:9100"
    healthcheck:
      test: ["CMD-SHELL", "curl -f http://localhost:8010/h?home=$$HOME || exit 1"]
"""


def test_interpolation_follows_compose(tmp_path: Path) -> None:
    compose = write(tmp_path / "docker-compose.yml", INTERPOLATED)
    write(tmp_path / ".env", "API_PORT=7000\nDOT_ONLY=7200\nEMPTY=from-dotenv\n")
    env = {"API_PORT": "7100", "EMPTY": ""}  # wins over .env
    api = read_compose(compose, env).services["api"]
    assert api.container == "api_colon_unset"
    assert [p.mapping for p in api.ports] == ["7100:8010/tcp", "7200:9000/tcp", "7300:9100/tcp"]
    assert api.healthcheck == "curl -f http://localhost:8010/h?home=$HOME || exit 1"
    text = render(read_compose(compose, env)).text
    assert 'url = "http://localhost:7100/h?home=$HOME"' in text


def test_the_alternative_forms_and_nested_defaults(tmp_path: Path) -> None:
    compose = write(tmp_path / "docker-compose.yml",
                    "services:\n  api:\n    container_name: "
                    "'a${SET:+_alt}${EMPTY+_set}${EMPTY:+_no}${UNSET+_no}${UNSET:-${SET}_n}'\n")
    api = read_compose(compose, {"SET": "x", "EMPTY": ""}).services["api"]
    assert api.container == "a_alt_setx_n"


def _ports_of(service: dict[str, Any]) -> list[str]:
    """`docker-compose config`'s ports (short or long syntax) as HOST:CONTAINER/proto."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ip = f"{port['host_ip']}:" if port.get("host_ip") else ""
            port = f"{ip}{port['published']}:{port['target']}/{port.get('protocol', 'tcp')}"
        out.append(port if "/" in port else f"{port}/tcp")
    return out


def test_docker_compose_config_interpolates_the_same(tmp_path: Path) -> None:
    compose = write(tmp_path / "docker-compose.yml", INTERPOLATED)
    write(tmp_path / ".env", "API_PORT=7000\nDOT_ONLY=7200\nEMPTY=from-dotenv\n")
    env = {"API_PORT": "7100", "EMPTY": ""}
    theirs = compose_config(compose, base_env(**env))["services"]["api"]
    ours = read_compose(compose, env).services["api"]
    assert theirs["container_name"] == ours.container
    assert _ports_of(theirs) == [p.mapping for p in ours.ports]
    # compose prints `$` escaped again as `$$`
    kind, command = theirs["healthcheck"]["test"]
    assert (kind, command.replace("$$", "$")) == ("CMD-SHELL", ours.healthcheck)


# ----------------------------------------------------------------------------- health URLs


HEALTHCHECKS = [
    pytest.param(["CMD", "curl", "-fsS", "http://localhost:80/healthz"], ["8080:80"],
                 "http://localhost:8080/healthz", id="cmd-curl-mapped-port"),
    pytest.param(["CMD-SHELL", "wget -qO- http://127.0.0.1:3000/ready || exit 1"],
                 ["3001:3000"], "http://localhost:3001/ready", id="cmd-shell-wget"),
    pytest.param("curl -f localhost:5000/status", ["127.0.0.1:5050:5000"],
                 "http://localhost:5050/status", id="string-no-scheme"),
    pytest.param(["CMD", "sh", "-c", "curl -f http://localhost:9000/h"], ["9009:9000"],
                 "http://localhost:9009/h", id="cmd-sh-c"),
    pytest.param(["CMD", "curl", "-f", "http://localhost/"], ["8081:80"],
                 "http://localhost:8081/", id="default-port-80"),
    pytest.param(["CMD", "curl", "http://db:5432/"], ["15432:5432", "18080:8080"],
                 "http://localhost:15432/", id="other-host-first-port"),
    pytest.param(["CMD", "curl", "http://localhost:7000/h"], ["17001:7001"],
                 "http://localhost:17001/", id="port-not-published"),
    pytest.param(["NONE"], ["18000:8000"], "http://localhost:18000/", id="none"),
    pytest.param(["CMD", "pg_isready"], ["15433:5432"], "http://localhost:15433/",
                 id="no-http-tool"),
    pytest.param(["CMD", "curl", "http://localhost:80/h?token=abc&x=1"], ["8082:80"],
                 "http://localhost:8082/h", id="secret-query-dropped"),
    pytest.param(["CMD", "curl", "http://user:pw@localhost:80/h"], ["8083:80"],
                 "http://localhost:8083/h", id="userinfo-dropped"),
    pytest.param(["CMD", "curl", "http://localhost:80/h"],
                 [{"target": 80, "published": "8084", "host_ip": "10.1.2.3"}],
                 "http://10.1.2.3:8084/h", id="long-syntax-host-ip"),
]


@pytest.mark.parametrize(("test", "ports", "url"), HEALTHCHECKS)
def test_the_health_url_comes_from_the_healthcheck_else_the_first_port(
        tmp_path: Path, test: Any, ports: list[Any], url: str) -> None:
    body = {"services": {"web": {"image": "x", "ports": ports, "healthcheck": {"test": test}}}}
    compose = write(tmp_path / "docker-compose.yml", yaml.safe_dump(body))
    proc = init("--from-compose", str(compose), "-o", str(tmp_path / "runbook.toml"))
    assert proc.returncode == 0, proc.stderr
    config = load_config(tmp_path / "runbook.toml")
    assert [(t.name, t.url) for t in config.health] == [("web", url)]


def test_a_service_without_port_or_healthcheck_gets_no_health_entry(tmp_path: Path) -> None:
    body = {"services": {"worker": {"image": "x", "ports": ["9000", "127.0.0.1::9001"]},
                         "web": {"image": "y", "container_name": "web-1",
                                 "ports": ["8000-8001:80-81", "5353:53/udp"]},
                         "mixed": {"image": "z", "ports": ["8500:8500", 9500]}}}
    compose = write(tmp_path / "docker-compose.yml", yaml.safe_dump(body, sort_keys=False))
    out = tmp_path / "runbook.toml"
    assert init("--from-compose", str(compose), "-o", str(out)).returncode == 0
    config = load_config(out)
    assert [(t.name, t.url) for t in config.health] == [
        ("web", "http://localhost:8000/"), ("mixed", "http://localhost:8500/")]
    assert config.containers is not None
    assert config.containers.names == ("worker", "web-1", "mixed")
    # a port the engine picks is never equal to a list: that container's ports go unchecked
    assert dict(config.containers.ports) == {
        "web-1": ("8000:80/tcp", "8001:81/tcp", "5353:53/udp")}
    text = out.read_text()
    assert "# worker: no [[health]] entry" in text
    assert "# mixed: 9500/tcp is published on a host port the engine picks" in text


def test_service_selects_and_keeps_the_compose_order(tmp_path: Path) -> None:
    body = {"services": {name: {"image": "x", "ports": [f"{port}:80"]}
                         for name, port in (("a", 8001), ("b", 8002), ("c", 8003))}}
    compose = write(tmp_path / "docker-compose.yml", yaml.safe_dump(body))
    out = tmp_path / "runbook.toml"
    proc = init("--from-compose", str(compose), "--service", "c", "--service", "a", "-o",
                str(out))
    assert proc.returncode == 0, proc.stderr
    config = load_config(out)
    assert [t.name for t in config.health] == ["a", "c"]
    assert config.containers is not None
    assert config.containers.names == ("a", "c")


# ----------------------------------------------------------------------------- secrets


def test_no_secret_value_is_ever_copied(tmp_path: Path) -> None:
    values = {name: f"tst-{secrets.token_urlsafe(18)}"
              for name in ("inline", "listed", "interpolated", "url")}
    body = {"services": {
        "core": {
            "image": "x", "ports": ["8010:8010"], "env_file": ["./conf/core.env"],
            "environment": {"AFO_INTERNAL_SECRET": values["inline"], "LOG_LEVEL": "info",
                            "API_TOKEN": "${TOKEN_FROM_HOST}"},
            "healthcheck": {"test": ["CMD", "curl", "http://localhost:8010/h/${URL_KEY}"]},
        },
        "db": {"image": "y", "environment": [f"DB_PASSWORD={values['listed']}",
                                             "AWS_CREDENTIALS"]},
    }}
    compose = write(tmp_path / "docker-compose.yml", yaml.safe_dump(body))
    out = tmp_path / "runbook.toml"
    proc = init("--from-compose", str(compose), "-o", str(out),
                env=base_env(TOKEN_FROM_HOST=values["interpolated"], URL_KEY=values["url"]))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    for value in values.values():
        assert value not in text
        assert value not in proc.stderr
    for name in ("AFO_INTERNAL_SECRET", "API_TOKEN", "DB_PASSWORD", "AWS_CREDENTIALS"):
        assert f"environment.{name} looks like a secret" in proc.stderr
        assert f"environment: {name} is " in text
    assert "LOG_LEVEL" not in proc.stderr + text
    assert "#   Keep it in ./conf/core.env." in text  # the comment points to the env file
    # the healthcheck URL would carry the secret: the first published port instead
    config = load_config(out)
    assert [t.url for t in config.health] == ["http://localhost:8010/"]
    on = load_config(write(tmp_path / "runbook.toml", uncomment_templates(text)))
    assert on.guard is not None
    assert on.guard.env_file == tmp_path / "conf" / "core.env"


# ----------------------------------------------------------------------------- errors


ERRORS = [
    pytest.param(None, [], "file not found", id="missing-file"),
    pytest.param("services: [\n", [], "not valid YAML", id="bad-yaml"),
    pytest.param("- a\n- b\n", [], "(top level): must be a mapping", id="not-a-mapping"),
    pytest.param("version: '3'\n", [], "services: missing (required)", id="no-services"),
    pytest.param("services:\n  api:\n    ports: [abc]\n", [],
                 "services.api.ports[1]: must be a port mapping", id="bad-port"),
    pytest.param("services:\n  api:\n    ports: ['99999:80']\n", [],
                 "services.api.ports[1]: port out of range", id="port-range"),
    pytest.param("services:\n  api:\n    healthcheck:\n      test: [RUN, x]\n", [],
                 "services.api.healthcheck.test[1]: must be CMD, CMD-SHELL or NONE",
                 id="bad-healthcheck"),
    pytest.param("services:\n  api:\n    container_name: ${NEEDED:?set NEEDED first}\n", [],
                 "services.api.container_name: variable NEEDED is not set: set NEEDED first",
                 id="required-variable"),
    pytest.param("services:\n  api:\n    image: ${}\n", [],
                 "services.api.image: invalid interpolation format", id="bad-interpolation"),
    pytest.param("services:\n  api:\n    image: x\n", ["--service", "web"],
                 "services.web: no such service (known: api)", id="unknown-service"),
]


@pytest.mark.parametrize(("text", "extra", "message"), ERRORS)
def test_a_bad_compose_file_is_exit_4_naming_the_file_and_the_key(
        tmp_path: Path, text: str | None, extra: list[str], message: str) -> None:
    compose = tmp_path / "docker-compose.yml"
    if text is not None:
        compose.write_text(text)
    out = tmp_path / "runbook.toml"
    proc = init("--from-compose", str(compose), *extra, "-o", str(out))
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.startswith(f"ERROR: compose file: {compose}: "), proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_read_compose_raises_compose_error_in_process(tmp_path: Path) -> None:
    compose = write(tmp_path / "c.yml", "services:\n  api:\n    environment: 5\n")
    with pytest.raises(ComposeError, match=r"services\.api\.environment: must be a mapping"):
        read_compose(compose, {})


# ----------------------------------------------------------------------------- observed


def test_the_generated_file_observes_the_process_reference_stack(
        tmp_path: Path, stack: Any, stack_env_file: Path,
        run_suite: Callable[..., Any]) -> None:
    """Process mode, no Docker: the refstack compose file with the stack's ports in the
    environment; health from the healthchecks, guard and SSE from the templates."""
    env = base_env(AFO_ENV_FILE=str(stack_env_file),
                   **{PORT_VARS[s]: str(stack.ports[s]) for s in PORT_VARS})
    out = tmp_path / "runbook.toml"
    proc = init("--from-compose", str(REFSTACK_COMPOSE), "-o", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    write(out, uncomment_templates(out.read_text()))
    run = run_suite("-m", "observe and not containers", "--runbook-config", str(out))
    assert run.rc == 0, run.output[-3000:]
    checks = run.verdict["checks"]
    assert sorted(c["key"] for c in checks if c["group"] == "health") == [
        "health[afo-aux]", "health[afo-core]", "health[afo-dashboard]"]
    assert {c["group"] for c in checks} == {"health", "guard", "sse"}
    assert {c["outcome"] for c in checks} == {"passed"}


@pytest.mark.timeout(180)
def test_the_generated_file_passes_observe_against_the_containerised_stack(
        tmp_path: Path, make_docker_stack: Callable[..., Any],
        run_runbook: Callable[..., Any]) -> None:
    stack = make_docker_stack()
    stack.start()
    env = base_env(AFO_NAME_SUFFIX=stack.name_suffix, AFO_ENV_FILE=str(stack.env_file),
                   **{PORT_VARS[s]: str(stack.ports[s]) for s in PORT_VARS})
    out = tmp_path / "generated" / "runbook.toml"
    proc = init("--from-compose", str(REFSTACK_COMPOSE), "-o", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    names = [stack.container_name(s) for s in stack.services]
    config = load_config(out)
    assert config.containers is not None
    assert list(config.containers.names) == names

    # as generated: health and containers (guard and SSE are commented out)
    run = run_runbook(out, "-m", "observe")
    assert run.rc == 0, run.output[-3000:]
    outcomes = {key: c["outcome"] for key, c in run.checks().items()}
    assert outcomes == {**{f"health[{SERVICE_OF[s]}]": "passed" for s in stack.services},
                        **{f"containers[{n}]": "passed" for n in names}}
    evidence = run.checks()[f"containers[{names[0]}]"]
    assert "(healthy)" in str(evidence)

    # with the templates switched on: all of section 1
    write(out, uncomment_templates(out.read_text()))
    run = run_runbook(out, "-m", "observe")
    assert run.rc == 0, run.output[-3000:]
    checks = run.checks()
    assert {c["group"] for c in checks.values()} == {"health", "guard", "sse", "containers"}
    assert {c["outcome"] for c in checks.values()} == {"passed"}
