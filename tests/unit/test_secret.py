"""The guard's secret: where it is read from, and how every artifact is scrubbed of it.

Every secret here is a random token made for the test (never a literal that could be
somebody's real secret, and never the suite's own), so a failing assertion may show it.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from types import MappingProxyType

import pytest
from loopback import Handler, Loopback

from afo_runbook.probes.http import EXCERPT_BYTES, http_get
from afo_runbook.secret import (
    EDGE_FRAGMENT,
    REDACTED,
    Redactor,
    Secret,
    SecretUnavailable,
    load_secret,
    read_env_file,
    redactor_for,
)

VAR = "AFO_INTERNAL_SECRET"


def token(prefix: str = "tst") -> str:
    return f"{prefix}-{secrets.token_urlsafe(18)}"


def env_file(folder: Path, text: str, name: str = ".env.afo") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def leaks(text: str, *values: str) -> list[int]:
    """Which of `values` occur in `text`, by position only: the values are never shown."""
    return [index for index, value in enumerate(values) if value in text]


# -- loading: environment over env file ------------------------------------------------------


def test_the_environment_wins_over_the_env_file(tmp_path: Path) -> None:
    """As a compose `environment:` entry overrides `env_file:`: both set, different values."""
    in_env, in_file = token("env"), token("file")
    path = env_file(tmp_path, f"{VAR}={in_file}\n")
    secret = load_secret(VAR, path, {VAR: in_env})
    assert (secret.env_var, secret.origin) == (VAR, "environment")
    assert secret.reveal() == in_env


def test_the_env_file_is_used_when_the_environment_lacks_it(tmp_path: Path) -> None:
    in_file = token("file")
    path = env_file(tmp_path, f"OTHER=x\n{VAR}={in_file}\n")
    for environ in ({}, {VAR: ""}, {"UNRELATED": token()}):
        secret = load_secret(VAR, path, environ)
        assert (secret.env_var, secret.origin, secret.reveal() == in_file) == (
            VAR, str(path), True)


def test_the_process_environment_is_the_default(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    in_env = token("env")
    monkeypatch.setenv(VAR, in_env)
    path = env_file(tmp_path, f"{VAR}={token('file')}\n")
    secret = load_secret(VAR, path)
    assert (secret.origin, secret.reveal() == in_env) == ("environment", True)


@pytest.mark.parametrize(("content", "problem"), [
    (None, "the env file {path} does not exist"),
    ("OTHER=1\n", "the env file {path} does not define it"),
    (f"{VAR}=\n", "the env file {path} does not define it"),
    (f"{VAR}\n", "the env file {path} does not define it"),  # a key without a value
])
def test_no_secret_says_where_it_looked(tmp_path: Path, content: str | None,
                                        problem: str) -> None:
    path = tmp_path / ".env.afo"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SecretUnavailable) as caught:
        load_secret(VAR, path, {})
    assert str(caught.value) == (f"{VAR} is not set in the environment and "
                                 + problem.format(path=path))


def test_no_secret_and_no_env_file() -> None:
    with pytest.raises(SecretUnavailable) as caught:
        load_secret(VAR, None, {})
    assert str(caught.value) == f"{VAR} is not set in the environment and no env file configured"


def test_the_secret_never_shows_in_its_own_text(tmp_path: Path) -> None:
    """repr/str/f-strings name the variable and the origin, never the value."""
    value = token()
    secret = Secret(VAR, str(tmp_path / ".env.afo"), value)
    shown = f"<secret {VAR} from {tmp_path / '.env.afo'}>"
    assert [str(secret), repr(secret), f"{secret}", f"{secret!r}"] == [shown] * 4
    assert str([secret]) == f"[{shown}]"
    assert secret.reveal() == value


def test_read_env_file_takes_only_real_values(tmp_path: Path) -> None:
    path = env_file(tmp_path, "A=1\nEMPTY=\nNO_VALUE\n# a comment\nQUOTED=\"x y\"\n")
    assert read_env_file(path) == {"A": "1", "EMPTY": "", "QUOTED": "x y"}


def test_read_env_file_never_raises(tmp_path: Path) -> None:
    """No file, a folder, a name the OS refuses: nothing to read, not a crash."""
    assert read_env_file(None) == {}
    assert read_env_file(tmp_path / "absent") == {}
    assert read_env_file(tmp_path) == {}
    assert read_env_file(tmp_path / ("n" * 300)) == {}  # ENAMETOOLONG is an OSError


# -- the Redactor ----------------------------------------------------------------------------


def test_whole_values_are_replaced_everywhere() -> None:
    one, two = token("one"), token("two")
    redactor = Redactor([one, two])
    text = f"{one} then {two}, again {one}{one}"
    assert redactor.text(text) == f"{REDACTED} then {REDACTED}, again {REDACTED}{REDACTED}"


@pytest.mark.parametrize("where", ["start", "end", "whole", "glued"])
def test_values_at_the_edges_of_a_text(where: str) -> None:
    """A secret cut to the very start or end of a string (a header value, a log line's tail)
    or glued to other characters is still one match."""
    value = token()
    text = {"start": f"{value} rest", "end": f"rest={value}", "whole": value,
            "glued": f"xx{value}yy"}[where]
    scrubbed = Redactor([value]).text(text)
    assert leaks(scrubbed, value) == []
    assert scrubbed == text.replace(value, REDACTED)


@pytest.mark.parametrize("long", ["{short}-and-more", "a-{short}", "a-{short}-b"])
def test_a_value_containing_another_is_replaced_whole(long: str) -> None:
    """Longest first: scrubbing `s-123` inside `a-s-123-b` must not leave `a-` and `-b`."""
    short = token("s")
    long = long.format(short=short)
    for order in ([short, long], [long, short]):
        assert Redactor(order).text(f"<{long}> <{short}>") == f"<{REDACTED}> <{REDACTED}>"


def test_a_secret_cut_by_the_body_excerpt_leaves_no_fragment(loopback: Loopback) -> None:
    """A service that echoes the header back, past byte 2036 of its page: the evidence keeps
    the page's first 2048 bytes, so the first 12 characters of the secret, cut at the edge."""
    value = token()

    def echo(handler: Handler) -> None:
        sent = handler.headers["X-Internal-Secret"].encode()
        handler.reply(503, b"x" * (EXCERPT_BYTES - 12) + sent)

    seen = http_get(loopback.route("/status", echo), timeout=5,
                    headers={"X-Internal-Secret": value})
    assert seen.body_excerpt.endswith(value[:12])  # the cut is where this test says
    evidence = Redactor([value]).data(seen.evidence())
    assert evidence["body_excerpt"] == "x" * (EXCERPT_BYTES - 12) + REDACTED


@pytest.mark.parametrize("kept", [EDGE_FRAGMENT, EDGE_FRAGMENT + 1, 29])
def test_the_start_of_a_secret_at_the_end_of_a_text_is_scrubbed(kept: int) -> None:
    value = "tst-" + secrets.token_hex(13)  # 30 characters
    redactor = Redactor([value])
    assert redactor.text(f"page: {value[:kept]}") == f"page: {REDACTED}"
    assert redactor.text(f"{value[-kept:]} rest") == f"{REDACTED} rest"
    assert redactor.text(value[-kept:] + " mid " + value[:kept]) == f"{REDACTED} mid {REDACTED}"


def test_fragments_shorter_than_the_edge_or_inside_a_text_stay() -> None:
    """Seven characters could be anything; a fragment in the middle was not cut there."""
    value = "tst-" + secrets.token_hex(13)
    redactor = Redactor([value])
    short = EDGE_FRAGMENT - 1
    for text in (f"page: {value[:short]}", f"{value[-short:]} rest",
                 f"a {value[:12]} b", f"a {value[-12:]} b"):
        assert redactor.text(text) == text
    tiny = Redactor()
    tiny.force("abcdefgh")  # no longer than the edge: only ever scrubbed whole
    assert tiny.text("xx abcdefg") == "xx abcdefg"
    assert tiny.text("bcdefgh xx") == "bcdefgh xx"


def test_an_edge_fragment_is_found_past_a_false_start() -> None:
    """The secret's first (or last) characters may also occur before the real cut."""
    value = "abcdefghij-" + secrets.token_hex(8) + "-qrstuvwx"
    redactor = Redactor([value])
    text = "xx abcdefgh-zz " + value[:9]  # "abcdefgh" twice; only the second is the cut
    assert redactor.text(text) == f"xx abcdefgh-zz {REDACTED}"
    text = value[-9:] + " qrstuvwx end"  # the cut first, a look-alike later
    assert redactor.text(text) == f"{REDACTED} qrstuvwx end"
    text = "qqqq" + value[-10:]  # the end of the secret, but not at the start of the text
    assert redactor.text(text) == text


def test_a_text_that_is_nothing_but_a_fragment() -> None:
    value = "tst-" + secrets.token_hex(13)
    redactor = Redactor([value])
    assert redactor.text(value[:12]) == REDACTED
    assert redactor.text(value[-12:]) == REDACTED


def test_the_real_cut_is_found_when_the_fragment_repeats_its_own_start() -> None:
    """`abcdefgh` opens the secret and recurs inside the fragment: the cut is the first one."""
    value = "abcdefgh-abcdefgh-" + "".join(secrets.choice("0123456789") for _ in range(30))
    redactor = Redactor([value])
    assert redactor.text("x " + value[:20]) == f"x {REDACTED}"
    # a look-alike before the cut, and the secret's start again inside the fragment
    assert redactor.text("x abcdefgh-zz " + value[:20]) == f"x abcdefgh-zz {REDACTED}"


def test_a_cut_right_after_a_look_alike_one_character_earlier() -> None:
    """`aaaaaaaa` at two neighbouring positions: the second one is the cut."""
    digits = "".join(secrets.choice("0123456789") for _ in range(10))
    opening = Redactor(["a" * 8 + "b" + digits])  # its start: "aaaaaaaa"
    assert opening.text("xa" + "a" * 8 + "b" + digits[:3]) == f"xa{REDACTED}"
    closing = Redactor([digits + "b" + "a" * 9])  # its end: "aaaaaaaa"
    assert closing.text("b" + "a" * 9 + " rest") == f"{REDACTED} rest"


def test_the_longest_fragment_at_the_start_is_found_past_a_false_start() -> None:
    """The secret's last 8 characters occur early in the text, where they are not its end;
    the real cut comes later (here as late as possible: all but one character)."""
    digits = "".join(secrets.choice("0123456789") for _ in range(4))
    value = "p" * 10 + "bqrstuvwx" + digits + "qrstuvwx"
    redactor = Redactor([value])
    assert redactor.text(value[1:] + " rest") == f"{REDACTED} rest"
    fragment = value[10:]  # "bqrstuvwx" + digits + "qrstuvwx": a look-alike, then the cut
    assert redactor.text(fragment + " qrstuvwx") == f"{REDACTED} qrstuvwx"


def test_short_secrets_do_not_stop_the_search_for_long_ones() -> None:
    """Fragments of every long secret are found, however many short values are known."""
    longs = ["tst-" + secrets.token_hex(13) for _ in range(3)]
    redactor = Redactor(longs)
    for n in range(30):
        redactor.force(f"s{n:02d}")  # short: never looked for at the edges
    for value in longs:
        assert redactor.text("page " + value[:10]) == f"page {REDACTED}"
        assert redactor.text(value[-10:] + " page") == f"{REDACTED} page"


def test_short_and_harmless_values_are_not_scrubbed_unless_forced() -> None:
    """Env files hold ports and flags too; blanking `8010` or `true` would ruin the evidence.
    Four characters is the shortest value scrubbed; the guard secret itself always is."""
    redactor = Redactor(["abc", "8010", "true", "OFF", "Null", "", "abcd"])
    assert redactor.text("abc 8010 true OFF Null abcd") == f"abc 8010 true OFF Null {REDACTED}"
    redactor.force("xy")
    assert redactor.text("xy abc") == f"{REDACTED} abc"
    redactor.force("")  # nothing to scrub: an empty pattern would match between every letter
    redactor.add("")
    assert redactor.text("abc") == "abc"


def test_values_added_later_are_scrubbed_too() -> None:
    first, later = token("a"), token("b")
    redactor = Redactor()
    assert not redactor
    assert redactor.text(f"{first}") == first  # nothing known yet: text passes unchanged
    assert redactor.text("") == ""
    redactor.add(first)
    assert redactor
    redactor.add(first)  # known already
    redactor.add(later)
    assert redactor.text(f"{first} {later}") == f"{REDACTED} {REDACTED}"
    forced = token("c")
    redactor.force(forced)
    assert redactor.text(f"{later}{forced}") == REDACTED * 2


def test_nested_data_is_scrubbed_keys_and_all() -> None:
    value = token()
    redactor = Redactor([value])
    data = {"evidence": {"headers": [f"X-Internal-Secret: {value}", ("t", value)],
                         value: 3, "count": 7, "none": None, "ratio": 0.5},
            "frozen": MappingProxyType({"k": value})}
    assert redactor.data(data) == {
        "evidence": {"headers": [f"X-Internal-Secret: {REDACTED}", ["t", REDACTED]],
                     REDACTED: 3, "count": 7, "none": None, "ratio": 0.5},
        "frozen": {"k": REDACTED}}
    assert redactor.data(value) == REDACTED
    assert redactor.data(42) == 42


def test_a_written_file_is_scrubbed_in_place(tmp_path: Path) -> None:
    """The second line of defence: an artifact is rewritten with the secret replaced, bytes
    that are not UTF-8 kept as they were."""
    value = token()
    path = tmp_path / "report.html"
    path.write_bytes(b"<p>\xff " + value.encode() + b"</p>\n")
    redactor = Redactor([value])
    assert redactor.file(path) is True
    assert path.read_bytes() == b"<p>\xff " + REDACTED.encode() + b"</p>\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


@pytest.mark.usefixtures("host_in_c_locale")
def test_scrubbing_a_file_does_not_depend_on_the_locale(tmp_path: Path) -> None:
    """Env-file values may be any text (a password with an umlaut), reports hold Korean."""
    value = "pässwort-" + secrets.token_hex(8)
    path = tmp_path / "incident.md"
    path.write_text(f"# 장애 보고서\nenv: {value}\n", encoding="utf-8")
    assert Redactor([value]).file(path) is True
    assert path.read_text(encoding="utf-8") == f"# 장애 보고서\nenv: {REDACTED}\n"


def test_a_clean_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "clean.json"
    path.write_text("{}\n")
    before = path.stat()
    assert Redactor([token()]).file(path) is False
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert Redactor().file(path) is False
    assert Redactor([token()]).file(tmp_path / "absent.html") is False
    assert Redactor([token()]).file(tmp_path) is False


def test_redactor_for_knows_the_secret_and_every_env_file_value(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_env, in_file, other, short = token("env"), token("file"), token("other"), "q1"
    first = env_file(tmp_path, f"{VAR}={in_file}\nPORT=8010\nOTHER_TOKEN={other}\n", "a.env")
    second = env_file(tmp_path, f"{VAR}={short}\n", "b.env")
    monkeypatch.setenv(VAR, in_env)
    redactor = redactor_for(VAR, [first, None, second, tmp_path / "absent.env"])
    text = f"{in_env} {in_file} {other} {short} port 8010"
    assert redactor.text(text) == " ".join([REDACTED] * 4) + " port 8010"


def test_redactor_for_without_a_guard_still_knows_env_files(tmp_path: Path) -> None:
    other = token("other")
    path = env_file(tmp_path, f"OTHER_TOKEN={other}\n")
    assert redactor_for(None, [path], {}).text(f"t={other}") == f"t={REDACTED}"
    short = "zz"
    environ = {VAR: short}
    assert redactor_for(VAR, [], environ).text("zz top") == f"{REDACTED} top"
    unset = redactor_for("UNSET_FOR_THIS_TEST", [path], {})
    assert unset.text("zz XXXX") == "zz XXXX"  # an unset variable scrubs nothing at all
