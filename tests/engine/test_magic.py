"""Magic comments (engine/magic.py): values, defaults, errors with their line, schema;
values never leave their line."""

from __future__ import annotations

import pytest

from hoodyexec.engine import magic


def test_magic_parse_values_and_defaults():
    src = (
        "#!/usr/bin/env python\n# @description  Greeting handler \n# @cors https://a.example, https://b.example\n"
        "# @timeout 5000\n\n# @schedule */5 * * * *\n# @token env:HOOK\n# @tags a, b c\n# @mode thread\n"
        "# @enabled false\n# @log-request-body\n# @ai-temperature 0.5\nimport x\n# @label not-in-block\n"
    )
    m, errors = magic.parse(src)
    assert errors == []
    assert m.description == "Greeting handler"
    assert m.cors == ["https://a.example", "https://b.example"]
    assert (m.timeout, m.schedule, m.token, m.tags, m.mode) == (
        5000,
        "*/5 * * * *",
        "env:HOOK",
        ["a", "b", "c"],
        "thread",
    )
    assert m.enabled is False and m.log_request_body is True and m.ai_temperature == 0.5
    assert m.label is None  # after the leading block: not a magic comment
    assert m.lines["timeout"] == 4 and m.raw["description"] == "Greeting handler"
    d, e = magic.parse("return 1\n", default_timeout=1234)
    assert e == [] and d.timeout == 1234 and d.enabled is True and d.mode == "auto"


@pytest.mark.parametrize(
    "line, needle",
    [
        ("# @nope 1", "unknown magic comment"),
        ("# @timeout fast", "integer"),
        ("# @timeout 0", "between"),
        ("# @schedule * * *", "5-field"),
        ("# @schedule 61 * * * *", "invalid cron"),
        ("# @cors ftp://x", "origins"),
        ("# @mode turbo", "one of"),
        ("# @enabled maybe", "true or false"),
        ("# @token env:1BAD", "env:NAME"),
        ("# @description", "needs a value"),
        ("# @ai-temperature 9", "between"),
    ],
)
def test_magic_errors_name_the_line(line, needle):
    _, errors = magic.parse("# first\n" + line + "\nreturn 1\n")
    assert len(errors) == 1 and errors[0].line == 2 and needle in errors[0].message


def test_magic_duplicate():
    _, errors = magic.parse("# @timeout 1\n# @timeout 2\n")
    assert errors[0].line == 2 and "twice" in errors[0].message


def test_schema_lists_every_name():
    names = {s.name for s in magic.SCHEMA}
    assert {
        "description",
        "cors",
        "timeout",
        "schedule",
        "schedule-overlap",
        "token",
        "websocket",
        "log-level",
        "log-request-body",
        "ai-model",
        "ai-temperature",
        "ai-max-tokens",
        "ai-key",
        "label",
        "tags",
        "mode",
        "enabled",
    } == names


def test_every_character_splitlines_splits_is_refused():
    for code in range(0x110000):
        ch = chr(code)
        if len(f"a{ch}b".splitlines()) > 1:
            assert magic.unsafe_char(f"a{ch}b") == ch, hex(code)
    assert magic.unsafe_char("plain text, émoji 👋 and spaces") is None


def test_magic_rewrite_refuses_unsafe_text_directly():
    with pytest.raises(ValueError, match="line breaks"):
        magic.rewrite("return 1\n", {"description": "a\u2028return 2"})
    with pytest.raises(ValueError, match="line breaks"):
        magic.rewrite("return 1\n", "# @description a\x1bb")
    # the string form still splits on ordinary line breaks
    out = magic.rewrite("return 1\n", "# @timeout 5\r\n# @mode thread")
    assert out == "# @timeout 5\n# @mode thread\nreturn 1\n"


def test_schedule_overlap_is_validated_like_every_magic_comment():
    found, errors = magic.parse("# @schedule * * * * *\n# @schedule-overlap Allow\n")
    assert found.schedule_overlap == "allow" and not errors
    found, errors = magic.parse("# @schedule-overlap sometimes\n")
    assert found.schedule_overlap == "skip"
    (error,) = errors
    assert error.line == 1 and "skip, allow" in error.message
