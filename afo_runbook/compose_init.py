"""`afo-runbook init --from-compose docker-compose.yml`: a commented runbook.toml from a compose
file, as `goss autoadd` writes a goss file from what it finds.

    afo-runbook init --from-compose docker-compose.yml [--service NAME ...] [-o runbook.toml]

What is read (PyYAML, after compose's interpolation of `$VAR`, `${VAR}`, `${VAR:-default}`,
`${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}` and `$$`, from
the environment and the `.env` beside the compose file, the environment winning):

- `[containers] names`: each service's `container_name`, else the service name (the container
  check resolves a service name through the `com.docker.compose.service` label);
- `[containers.ports]`: the published ports, as `"HOST:CONTAINER/tcp"`;
- one `[[health]]` per service: the URL its healthcheck fetches with curl or wget (`CMD`,
  `CMD-SHELL` or a string; host localhost/127.0.0.1, the container port mapped to its
  published host port), else its first published port (`http://localhost:PORT/`);
- `[guard]` and `[sse]` as commented-out templates with the runbook's paths, the guard's env
  file taken from the service's `env_file:`.

No secret value is ever copied: a variable of `environment:` whose name looks secret (SECRET,
TOKEN, PASSWORD, KEY, CREDENTIAL, ...) becomes a comment pointing to the env file, and a
warning on stderr. Every problem with the compose file is a `ComposeError` naming the file and
the key (`services.afo-core.ports[1]: ...`), exit code 4 like a bad runbook.toml.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import yaml

from afo_runbook.config import ConfigError, check_url, parse_config
from afo_runbook.refstack.runbook_toml import toml_string

EXIT_OK = 0
EXIT_CANNOT_WRITE = 2
EXIT_COMPOSE_ERROR = 4  # as a bad runbook.toml

GUARD_PATH = "/api/revalidate/status"
SSE_PATH = "/api/thoughts/sse"
SECRET_ENV = "AFO_INTERNAL_SECRET"  # noqa: S105 - the runbook's variable name, not a value
SECRET_HEADER = "X-Internal-Secret"  # noqa: S105 - a header name
DEFAULT_ENV_FILE = ".env.afo"
SSE_WINDOW = 10

# A name that looks like it holds a secret (case-insensitive, anywhere in the name).
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSW(OR)?D|PASSPHRASE|KEY|CREDENTIAL|PRIVATE|AUTH",
                         re.IGNORECASE)
# Values shorter than this are not searched for in the output (a TOKEN_TTL of "60").
_MIN_SECRET_LENGTH = 6
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_ANY_ADDRESS = frozenset({"", "0.0.0.0", "::", "127.0.0.1", "::1", "localhost"})  # noqa: S104
_HTTP_TOOLS = frozenset({"curl", "wget"})
_SHELL_OPERATORS = frozenset({"||", "&&", ";", "|", "&", ";;", "(", ")"})


class ComposeError(Exception):
    """A compose-file problem, phrased as `<file>: <key>: <what is wrong>`."""


def looks_secret(name: str) -> bool:
    return bool(SECRET_NAME.search(name))


# -- interpolation ---------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def interpolate(text: str, env: Mapping[str, str], fail: Any) -> str:
    """Compose's variable substitution in one string value. `fail(problem)` raises."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if nxt == "$":  # `$$` is a literal `$`
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 2)
            if end is None:
                fail(f"invalid interpolation format (no closing brace): {text!r}")
            out.append(_substitute(text[i + 2:end], env, fail, text))
            i = end + 1
        else:
            found = _NAME.match(text, i + 1)
            if found is None:  # a lone `$`: kept, as compose v2 does
                out.append("$")
                i += 1
            else:
                out.append(env.get(found.group(), ""))
                i = found.end()
    return "".join(out)


def _closing_brace(text: str, start: int) -> int | None:
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _substitute(expr: str, env: Mapping[str, str], fail: Any, text: str) -> str:
    found = _NAME.match(expr)
    if found is None:
        fail(f"invalid interpolation format {('${' + expr + '}')!r} in {text!r}")
    name, rest = found.group(), expr[found.end():]
    value = env.get(name)
    if not rest:
        return value or ""
    for operator in (":-", ":?", ":+", "-", "?", "+"):
        if rest.startswith(operator):
            arg = rest[len(operator):]
            break
    else:
        fail(f"invalid interpolation format {('${' + expr + '}')!r} in {text!r}")
    unset_or_empty = not value
    missing = value is None if operator[0] != ":" else unset_or_empty
    kind = operator[-1]
    if kind == "-":
        return interpolate(arg, env, fail) if missing else (value or "")
    if kind == "+":
        return "" if missing else interpolate(arg, env, fail)
    if missing:  # `?`: a required variable
        message = interpolate(arg, env, fail) or "required variable is missing a value"
        fail(f"variable {name} is not set: {message}")
    return value or ""


def _interpolate_tree(node: Any, env: Mapping[str, str], source: Path, where: str) -> Any:
    def fail(problem: str) -> None:
        raise ComposeError(f"{source}: {where or '(top level)'}: {problem}")

    if isinstance(node, str):
        return interpolate(node, env, fail)
    if isinstance(node, list):
        return [_interpolate_tree(item, env, source, f"{where}[{position}]")
                for position, item in enumerate(node, start=1)]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, env, source, _key(where, key))
                for key, value in node.items()}
    return node


def _key(where: str, name: Any) -> str:
    return f"{where}.{name}" if where else str(name)


def compose_environment(compose_file: Path,
                        environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables interpolation sees: the `.env` beside the compose file, overridden by the
    environment (as compose does)."""
    from dotenv import dotenv_values

    values: dict[str, str] = {}
    dotenv = compose_file.parent / ".env"
    if dotenv.is_file():
        values.update({k: v for k, v in dotenv_values(dotenv, interpolate=False).items()
                       if v is not None})
    values.update(os.environ if environ is None else environ)
    return values


# -- the model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishedPort:
    host_ip: str
    host: int
    container: int
    protocol: str = "tcp"

    @property
    def mapping(self) -> str:
        """What `[containers] ports` expects: `HOST:CONTAINER/proto`."""
        return f"{self.host}:{self.container}/{self.protocol}"

    @property
    def url_host(self) -> str:
        if self.host_ip in _ANY_ADDRESS:
            return "localhost"
        return f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip


@dataclass
class ComposeService:
    name: str
    container_name: str | None = None
    ports: list[PublishedPort] = field(default_factory=list)
    unpublished: list[str] = field(default_factory=list)  # container ports, no fixed host
    healthcheck: list[str] | str | None = None  # argv (CMD) or a shell command
    env_files: list[tuple[str, Path]] = field(default_factory=list)  # (as written, resolved)
    environment: dict[str, str | None] = field(default_factory=dict)
    host_network: bool = False

    @property
    def container(self) -> str:
        return self.container_name or self.name

    def host_port_for(self, container_port: int) -> PublishedPort | None:
        for port in self.ports:
            if port.protocol == "tcp" and port.container == container_port:
                return port
        return None

    def first_tcp_port(self) -> PublishedPort | None:
        return next((p for p in self.ports if p.protocol == "tcp"), None)


@dataclass
class ComposeFile:
    path: Path
    services: dict[str, ComposeService]
    secret_values: set[str]  # never to appear in what we write


def read_compose(path: str | os.PathLike[str],
                 environ: Mapping[str, str] | None = None) -> ComposeFile:
    source = Path(path).expanduser().absolute()
    try:
        raw = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ComposeError(f"{source}: file not found") from None
    except IsADirectoryError:
        raise ComposeError(f"{source}: is a directory, not a compose file") from None
    except UnicodeDecodeError:
        raise ComposeError(f"{source}: not UTF-8 text") from None
    except OSError as exc:
        raise ComposeError(f"{source}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(top level)"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ComposeError(f"{source}: {where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ComposeError(f"{source}: (top level): must be a mapping with `services:`, got "
                           f"{_kind(data)}")
    env = compose_environment(source, environ)
    if "services" not in data:
        raise ComposeError(f"{source}: services: missing (required)")
    raw_services = data["services"]
    if not isinstance(raw_services, dict) or not raw_services:
        raise ComposeError(f"{source}: services: must be a mapping of one or more services, "
                           f"got {_kind(raw_services)}")
    services: dict[str, ComposeService] = {}
    for name, body in raw_services.items():
        where = f"services.{name}"
        if not isinstance(name, str) or not name:
            raise ComposeError(f"{source}: {where}: a service name must be a string")
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ComposeError(f"{source}: {where}: must be a mapping, got {_kind(body)}")
        body = _interpolate_tree(body, env, source, where)
        services[name] = _service(source, name, body)
    secret_values = {value for service in services.values()
                     for key, value in service.environment.items()
                     if value and looks_secret(key)}
    # ... and the secret-looking variables the file interpolates (`${DB_PASSWORD}`).
    referenced = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", raw))
    secret_values |= {value for key, value in env.items()
                      if value and key in referenced and looks_secret(key)}
    return ComposeFile(source, services,
                       {v for v in secret_values if len(v) >= _MIN_SECRET_LENGTH})


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping", type(None): "nothing"}.get(type(value),
                                                                         type(value).__name__)


def _service(source: Path, name: str, body: dict[str, Any]) -> ComposeService:
    where = f"services.{name}"

    def fail(key: str, problem: str) -> None:
        raise ComposeError(f"{source}: {where}.{key}: {problem}")

    service = ComposeService(name)
    container_name = body.get("container_name")
    if container_name is not None:
        if not isinstance(container_name, str) or not container_name.strip():
            fail("container_name", f"must be a non-empty string, got {_kind(container_name)}")
        service.container_name = container_name.strip()
    service.host_network = body.get("network_mode") == "host"
    ports = body.get("ports") or []
    if not isinstance(ports, list):
        fail("ports", f"must be a list, got {_kind(ports)}")
    for position, entry in enumerate(ports, start=1):
        published, unpublished = _port(entry, lambda p, k=f"ports[{position}]": fail(k, p))
        service.ports += published
        service.unpublished += unpublished
    service.healthcheck = _healthcheck(body.get("healthcheck"), lambda k, p: fail(k, p))
    service.env_files = _env_files(source, body.get("env_file"), lambda k, p: fail(k, p))
    service.environment = _environment(body.get("environment"), lambda k, p: fail(k, p))
    return service


_PORT_TEXT = re.compile(
    r"^(?:(?P<ip>\[[0-9A-Fa-f:.]+\]|[^:\[\]]*):)??"
    r"(?:(?P<host>\d+(?:-\d+)?)?:)?"
    r"(?P<container>\d+(?:-\d+)?)"
    r"(?:/(?P<proto>[a-z]+))?$")


def _port(entry: Any, fail: Any) -> tuple[list[PublishedPort], list[str]]:
    """One `ports:` entry, short (`"127.0.0.1:8010:8010/tcp"`) or long syntax."""
    if isinstance(entry, bool):
        fail(f"must be a port mapping, got {_kind(entry)}")
    if isinstance(entry, int):  # a container port on an ephemeral host port
        return [], [f"{entry}/tcp"]
    if isinstance(entry, dict):
        return _long_port(entry, fail)
    if not isinstance(entry, str):
        fail(f"must be a port mapping like \"8010:8010\", got {_kind(entry)}")
    text = entry.strip()
    found = _PORT_TEXT.match(text)
    if found is None:
        fail(f"must be a port mapping like \"8010:8010\" or \"127.0.0.1:8010:8010/tcp\", "
             f"got {entry!r}")
    ip = (found.group("ip") or "").strip("[]")
    proto = found.group("proto") or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        fail(f"protocol must be tcp, udp or sctp, got {proto!r} in {entry!r}")
    containers = _port_range(found.group("container"), fail, entry)
    host_text = found.group("host")
    if not host_text:
        return [], [f"{c}/{proto}" for c in containers]
    hosts = _port_range(host_text, fail, entry)
    if len(hosts) != len(containers):
        # "8000-8010:80": the engine picks one host port of the range.
        return [], [f"{c}/{proto}" for c in containers]
    return [PublishedPort(ip, h, c, proto) for h, c in zip(hosts, containers, strict=True)], []


def _port_range(text: str, fail: Any, entry: Any) -> list[int]:
    first, _, last = text.partition("-")
    low, high = int(first), int(last or first)
    if not (1 <= low <= high <= 65535):
        fail(f"port out of range (1-65535) in {entry!r}")
    return list(range(low, high + 1))


def _long_port(entry: dict[str, Any], fail: Any) -> tuple[list[PublishedPort], list[str]]:
    target = entry.get("target")
    if isinstance(target, bool) or not isinstance(target, (int, str)) or not str(target).isdigit():
        fail(f"target: must be a port number, got {target!r}")
    proto = str(entry.get("protocol") or "tcp")
    if proto not in ("tcp", "udp", "sctp"):
        fail(f"protocol: must be tcp, udp or sctp, got {proto!r}")
    container = _port_range(str(target), fail, entry)[0]
    published = entry.get("published")
    if published in (None, ""):
        return [], [f"{container}/{proto}"]
    text = str(published)
    if not re.fullmatch(r"\d+(-\d+)?", text):
        fail(f"published: must be a port number or range, got {published!r}")
    hosts = _port_range(text, fail, entry)
    if len(hosts) != 1:
        return [], [f"{container}/{proto}"]
    return [PublishedPort(str(entry.get("host_ip") or ""), hosts[0], container, proto)], []


def _healthcheck(value: Any, fail: Any) -> list[str] | str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        fail("healthcheck", f"must be a mapping, got {_kind(value)}")
    if value.get("disable") is True:
        return None
    test = value.get("test")
    if test is None:
        return None
    if isinstance(test, str):
        return test  # a string is CMD-SHELL
    if not isinstance(test, list) or not test or not all(isinstance(t, str) for t in test):
        fail("healthcheck.test", "must be a string or a list of strings")
    kind, *rest = test
    if kind == "NONE":
        return None
    if kind == "CMD":
        return rest
    if kind == "CMD-SHELL":
        return " ".join(rest)
    fail("healthcheck.test[1]", f"must be CMD, CMD-SHELL or NONE, got {kind!r}")
    return None


def _env_files(source: Path, value: Any, fail: Any) -> list[tuple[str, Path]]:
    if value is None:
        return []
    entries = value if isinstance(value, list) else [value]
    found: list[tuple[str, Path]] = []
    for position, entry in enumerate(entries, start=1):
        key = f"env_file[{position}]" if isinstance(value, list) else "env_file"
        if isinstance(entry, dict):  # the compose spec's long form {path:, required:}
            entry = entry.get("path")
        if not isinstance(entry, str) or not entry.strip():
            fail(key, f"must be a file path, got {_kind(entry)}")
        path = Path(os.path.expanduser(entry))
        resolved = path if path.is_absolute() else source.parent / path
        found.append((entry, Path(os.path.normpath(resolved))))
    return found


def _environment(value: Any, fail: Any) -> dict[str, str | None]:
    if value is None:
        return {}
    env: dict[str, str | None] = {}
    if isinstance(value, dict):
        for name, item in value.items():
            if isinstance(item, (dict, list)):
                fail(f"environment.{name}", f"must be a scalar, got {_kind(item)}")
            env[str(name)] = None if item is None else _scalar(item)
        return env
    if not isinstance(value, list):
        fail("environment", f"must be a mapping or a list, got {_kind(value)}")
    for position, item in enumerate(value, start=1):
        if not isinstance(item, str) or not item:
            fail(f"environment[{position}]", f"must be NAME=value, got {_kind(item)}")
        name, sep, text = item.partition("=")
        env[name] = text if sep else None
    return env


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- the healthcheck's URL -------------------------------------------------------------------


@dataclass(frozen=True)
class HealthUrl:
    url: str
    note: str  # where it came from, for the comment


def healthcheck_url(service: ComposeService,
                    secrets: Iterable[str] = ()) -> tuple[HealthUrl | None, str | None]:
    """The host-side URL of what the healthcheck fetches, or (None, why not)."""
    if service.healthcheck is None:
        return None, "no healthcheck"
    if isinstance(service.healthcheck, str):
        try:
            lexer = shlex.shlex(service.healthcheck, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            argv = list(lexer)
        except ValueError:
            return None, "the healthcheck's shell command cannot be parsed"
    else:
        argv = _expand(service.healthcheck)  # ["sh", "-c", "curl ..."] too
    tool, raw = _fetched_url(argv)
    if raw is None:
        return None, "the healthcheck fetches no http(s) URL with curl or wget"
    parts = urlsplit(raw)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None, f"the healthcheck's URL has a bad port: {tool}"
    if (parts.hostname or "") not in _LOCAL_HOSTS:
        return None, (f"the healthcheck's {tool} URL is not on localhost/127.0.0.1 (it checks "
                      "another host)")
    if service.host_network:
        published = PublishedPort("", port, port)
        how = f"network_mode host: port {port}"
    else:
        found = service.host_port_for(port)
        if found is None:
            return None, f"the healthcheck's {tool} URL uses container port {port}, which is " \
                         "not published"
        published = found
        how = f"container port {port} -> host {found.host}"
    if parts.username is not None or parts.password is not None:
        how += "; the credentials in its URL were left out"
    query = parts.query
    if query and any(looks_secret(name) for name, _ in parse_qsl(query,
                                                                  keep_blank_values=True)):
        query = ""  # a token in the query string stays in the compose file
        how += "; its query string was left out (it carries a secret-looking parameter)"
    netloc = f"{published.url_host}:{published.host}"
    url = urlunsplit((parts.scheme, netloc, parts.path or "/", query, ""))
    if check_url(url) is not None:
        return None, f"the healthcheck's {tool} URL is not a usable URL"
    if any(secret in url for secret in secrets):
        return None, f"the healthcheck's {tool} URL contains a secret value"
    return HealthUrl(url, f"from the healthcheck ({tool}, {how})"), None


def _expand(argv: list[str]) -> list[str]:
    """A CMD argv with any shell command inside it (`sh -c "curl ..."`) split into words."""
    words: list[str] = []
    for token in argv:
        if any(c.isspace() for c in token):
            try:
                lexer = shlex.shlex(token, posix=True, punctuation_chars=True)
                lexer.whitespace_split = True
                words += list(lexer)
                continue
            except ValueError:
                pass
        words.append(token)
    return words


def _fetched_url(argv: list[str]) -> tuple[str, str | None]:
    """(tool, URL): the first http(s) URL given to curl or wget in the command."""
    tool = ""
    for token in argv:
        if token in _SHELL_OPERATORS:
            tool = ""
            continue
        base = token.rsplit("/", 1)[-1]
        if base in _HTTP_TOOLS:
            tool = base
            continue
        if not tool:
            continue
        if token.startswith(("http://", "https://")):
            return tool, token
        if re.match(r"^(localhost|127\.0\.0\.1|\[::1\])(:\d+)?(/|$)", token):
            return tool, "http://" + token  # curl and wget default to http://
    return "", None


# -- rendering -------------------------------------------------------------------------------
# toml_string: the reference stack's writer's, one escaping rule for every generated file.


def toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else toml_string(name)


def _comment(text: str) -> str:
    """A value shown inside a comment: one line, no control characters."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


@dataclass
class Generated:
    text: str
    warnings: list[str]


def render(compose: ComposeFile, selected: Iterable[str] | None = None,
           output: Path | None = None) -> Generated:
    """The runbook.toml text for the selected services (all by default)."""
    names = _select(compose, selected)
    services = [compose.services[n] for n in names]
    out_dir = (output.parent if output is not None else Path.cwd()).absolute()
    warnings: list[str] = []
    q = toml_string
    try:
        shown = os.path.relpath(compose.path, out_dir)
    except ValueError:
        shown = str(compose.path)
    lines = [
        f"# runbook.toml generated by `afo-runbook init --from-compose {_comment(shown)}`",
        f"# from {_comment(str(compose.path))}, services: {_comment(', '.join(names))}.",
        "# Review it before use: the health URLs are what the healthchecks fetch (or the first",
        "# published port), the guard and SSE sections are templates to uncomment, and no",
        "# secret is ever written here. Reference: the README's \"Configuration\" section.",
        "# [budgets] is left out: the runbook's own (observe 60 s, health 10 s, guard 20 s,",
        "# sse 20 s, containers 10 s) apply.",
        "",
        "# 1.1 health checks, all at once; `expect` defaults to 200.",
    ]
    for service in services:
        found, why = healthcheck_url(service, compose.secret_values)
        if found is None:
            port = service.first_tcp_port()
            if port is None:
                lines += ["", f"# {service.name}: no [[health]] entry ({why}, and no "
                          "published tcp port)."]
                continue
            found = HealthUrl(f"http://{port.url_host}:{port.host}/",
                              f"{why}: its first published port {port.host}")
        lines += [
            "",
            f"# {service.name}: {_comment(found.note)}",
            "[[health]]",
            f"name = {q(service.name)}",
            f"url = {q(found.url)}",
        ]
    lines += _guard_and_sse(services, out_dir, warnings)
    lines += _containers(services)
    text = "\n".join(lines) + "\n"
    leaked = [s for s in compose.secret_values if s in text]
    if leaked:  # the last line of defence; nothing above copies a value of such a variable
        raise ComposeError(f"{compose.path}: refusing to write a runbook.toml that would "
                           "contain a secret value from the compose file or its environment")
    return Generated(text, warnings)


def _select(compose: ComposeFile, selected: Iterable[str] | None) -> list[str]:
    wanted = list(dict.fromkeys(selected or ()))
    for name in wanted:
        if name not in compose.services:
            known = ", ".join(compose.services)
            raise ComposeError(f"{compose.path}: services.{name}: no such service "
                               f"(known: {known})")
    return [n for n in compose.services if not wanted or n in wanted]


def _guard_and_sse(services: list[ComposeService], out_dir: Path,
                   warnings: list[str]) -> list[str]:
    """The runbook's 1.2 and 1.3 as commented-out templates, on the service that has an
    env_file (the one that holds the secret), else on the first one with a published port."""
    with_env = [s for s in services if s.env_files]
    with_port = [s for s in services if s.first_tcp_port() is not None]
    target = (with_env or with_port or [None])[0]
    lines = ["", "# 1.2 security guard (runbook paths): uncomment if "
             f"{target.name if target else 'the service'} serves them. The secret comes from",
             "# `secret_env` or the dotenv file `env_file`, never from this file."]
    env_file = DEFAULT_ENV_FILE
    if target is not None and target.env_files:
        written, resolved = target.env_files[0]
        # Relative (to runbook.toml's folder, as the config resolves it) only when it lies
        # inside that folder; otherwise absolute, not a climb of `../..`.
        inside = not Path(written).is_absolute() and resolved.absolute().is_relative_to(out_dir)
        env_file = os.path.relpath(resolved, out_dir) if inside else str(resolved.absolute())
        lines.append(f"# env_file: {target.name}'s env_file in the compose file.")
    for service in services:
        for name, value in service.environment.items():
            if not looks_secret(name):
                continue
            where = (", ".join(w for w, _ in service.env_files) if service.env_files
                     else f"{DEFAULT_ENV_FILE} (mode 600, named in the service's env_file:)")
            how = "is set" if value is not None else "is passed through"
            lines += [f"# {_comment(service.name)}: environment: {_comment(name)} {how} in the "
                      "compose file; its value is not copied here.",
                      f"#   Keep it in {_comment(where)}."]
            warnings.append(
                f"services.{service.name}.environment.{name} looks like a secret: its value "
                f"is not copied into runbook.toml; the runbook reads a secret from the env "
                f"file ({where}) or the variable, so keep it there rather than in the "
                f"compose file's environment:")
    base = "http://localhost:8010"
    if target is not None:
        found, _ = healthcheck_url(target)
        port = target.first_tcp_port()
        if found is not None:
            parts = urlsplit(found.url)
            base = f"{parts.scheme}://{parts.netloc}"
        elif port is not None:
            base = f"http://{port.url_host}:{port.host}"
    q = toml_string
    lines += [
        "# [guard]",
        f"# url = {q(base + GUARD_PATH)}",
        f"# header = {q(SECRET_HEADER)}",
        f"# secret_env = {q(SECRET_ENV)}",
        f"# env_file = {q(env_file)}",
        "# deny = [401, 503]",
        "# allow = 200",
        "",
        "# 1.3 SSE stream (runbook path): a complete `heartbeat` event within `window` seconds.",
        "# [sse]",
        f"# url = {q(base + SSE_PATH)}",
        f"# window = {SSE_WINDOW}",
        '# event = "heartbeat"',
    ]
    return lines


def _containers(services: list[ComposeService]) -> list[str]:
    q = toml_string
    names = ", ".join(q(s.container) for s in services)
    lines = [
        "",
        "# 1.4 containers (docker SDK; honours DOCKER_HOST): container_name, else the compose",
        "# service name (found through the com.docker.compose.service label).",
        "[containers]",
        f"names = [{names}]",
        "required = false          # true: Docker unreachable fails the check instead of "
        "skipping it",
    ]
    for service in services:
        if service.unpublished:
            # The check wants the published set to equal the list: a host port the engine
            # picks at each start cannot be in it, so that container's ports go unchecked.
            lines.append(f"# {service.name}: {', '.join(service.unpublished)} is published on "
                         "a host port the engine picks: its ports are not checked")
    with_ports = [s for s in services if s.ports and not s.unpublished]
    if with_ports:
        lines += ["", "# The published ports must equal these (HOST:CONTAINER/protocol).",
                  "[containers.ports]"]
        for service in with_ports:
            mappings = ", ".join(q(p.mapping) for p in dict.fromkeys(service.ports))
            lines.append(f"{toml_key(service.container)} = [{mappings}]")
    return lines


def check_generated(text: str, output: Path | None) -> None:
    """The generated file must load like any runbook.toml (a ConfigError here is our bug)."""
    where = (output if output is not None else Path.cwd() / "runbook.toml").absolute()
    parse_config(where, tomllib.loads(text))


# -- the command -----------------------------------------------------------------------------


def add_parser(commands: Any) -> None:
    init = commands.add_parser(
        "init", help="write a runbook.toml from a docker-compose.yml (like goss autoadd)",
        description="Write a commented runbook.toml from a compose file: [containers] from "
                    "its services and published ports, one [[health]] per service from its "
                    "healthcheck URL (else its first published port), the guard and SSE "
                    "sections as templates. Never copies a secret value.")
    init.add_argument("--from-compose", required=True, metavar="FILE",
                      help="the compose file (its .env beside it is read for interpolation)")
    init.add_argument("--service", action="append", default=[], metavar="NAME",
                      help="only this service (repeatable; default: all)")
    init.add_argument("-o", "--output", metavar="PATH",
                      help="write here instead of stdout")
    init.set_defaults(handler=run_init)


def run_init(args: Any) -> int:
    output = Path(args.output).expanduser().absolute() if args.output else None
    try:
        compose = read_compose(args.from_compose)
        generated = render(compose, args.service, output)
    except ComposeError as exc:
        print(f"ERROR: compose file: {exc}", file=sys.stderr)
        return EXIT_COMPOSE_ERROR
    try:
        check_generated(generated.text, output)
    except (ConfigError, tomllib.TOMLDecodeError) as exc:  # pragma: no cover - our bug
        print(f"ERROR: the generated runbook.toml does not load: {exc}", file=sys.stderr)
        return EXIT_COMPOSE_ERROR
    for warning in generated.warnings:
        print(f"afo-runbook init: warning: {warning}", file=sys.stderr)
    if output is None:
        sys.stdout.write(generated.text)
        return EXIT_OK
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.name}.tmp")
        tmp.write_text(generated.text, encoding="utf-8")
        os.replace(tmp, output)
    except OSError as exc:
        print(f"afo-runbook init: cannot write {output}: {exc.strerror}", file=sys.stderr)
        return EXIT_CANNOT_WRITE
    print(f"afo-runbook init: wrote {output} ({', '.join(_select(compose, args.service))})",
          file=sys.stderr)
    return EXIT_OK
