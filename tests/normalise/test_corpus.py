"""The pattern normaliser over a corpus of agent-style scripts.

Each folder of ``corpus/`` holds ``input.txt`` (what an agent sent), optionally
``path.txt`` (the file it is written to), and either ``expected.txt`` (the
stored script) or ``errors.txt`` (the forms refused, ``line: message``). The
``canonical_*`` cases must come back byte for byte.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hoodyexec.features.validate.normalize import normalize
from hoodyexec.features.validate.service import validate_script

CORPUS = Path(__file__).parent / "corpus"
# kept as written (no safe rewrite), so the usual check refuses it
STILL_INVALID = {"magic_ambiguous_kept": "@timeout: expected an integer, got '1.0001s' (line 1)"}
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


def _case(name: str) -> tuple[str, str | None]:
    folder = CORPUS / name
    path_file = folder / "path.txt"
    path = path_file.read_text().strip() if path_file.exists() else None
    return (folder / "input.txt").read_text(), path


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert sum(1 for c in CASES if c.startswith("canonical_")) >= 5


@pytest.mark.parametrize("name", CASES)
def test_case(name: str) -> None:
    code, path = _case(name)
    result = normalize(code, path)
    folder = CORPUS / name
    if (folder / "errors.txt").exists():
        got = "".join(f"{p.line}: {p.message}; {p.suggestion}\n" for p in result.problems)
        assert got == (folder / "errors.txt").read_text()
        assert result.code == code  # a refused form changes nothing
        return
    assert not result.problems
    assert result.code == (folder / "expected.txt").read_text()
    if name.startswith("canonical_") or name.endswith("_kept"):
        assert result.code is code or result.code == code
        assert result.changes == []
    else:
        assert result.changes, "a rewritten script reports its changes"
        ast.parse(result.code)


@pytest.mark.parametrize("name", CASES)
def test_idempotent(name: str) -> None:
    code, path = _case(name)
    once = normalize(code, path)
    twice = normalize(once.code, path)
    assert twice.code == once.code
    if not once.problems:
        assert twice.changes == []


@pytest.mark.parametrize("name", [c for c in CASES if (CORPUS / c / "expected.txt").exists()])
def test_output_validates(name: str) -> None:
    """What the normaliser stores passes the write pipeline's checks."""
    code, path = _case(name)
    result = validate_script(code, path=path, normalize=True)
    if name in STILL_INVALID:  # left as it was: the check that refuses it names the line
        assert not result["valid"] and result["errors"] == [STILL_INVALID[name]]
    else:
        assert result["valid"], result["errors"]


def test_report_lines_are_the_submitted_ones() -> None:
    code, _ = _case("fence_prose")
    report = normalize(code).report()
    assert report[0] == {
        "rule": "markdown-fence",
        "line": 1,
        "before": "Sure! Here is the script:",
        "after": "(prose before the code removed)",
    }
    code, path = _case("fastapi_echo")
    lines = code.split("\n")
    for change in normalize(code, path).report():
        if change["before"].startswith("@"):
            assert lines[change["line"] - 1].startswith("@app.post")


def test_magic_units() -> None:
    out = normalize("# @timeout 1.5 seconds\n# @timeout-x 5s\ndef handler(req):\n    return 1\n")
    assert out.code.startswith("# @timeout 1500\n# @timeout-x 5s\n")
    assert normalize("# @timeout 250ms\nreturn 1\n").code == "# @timeout 250\nreturn 1\n"
    assert normalize("# @timeout 1h\nreturn 1\n").code == "# @timeout 3600000\nreturn 1\n"


def test_magic_lines_keep_their_own_line_endings() -> None:
    """The leading block is numbered by ``str.splitlines`` (a lone CR or a
    group separator ends a line too): fixed lines keep their endings, and
    code whose line breaks ``split("\\n")`` would count otherwise is no
    longer a 500 (schemathesis sent ``"\\r\\x1d..."``)."""
    crlf = "# @timeout 2s\r\n# @cron 0 * * * *\r\nreturn 1\r\n"
    assert normalize(crlf).code == "# @timeout 2000\r\n# @cron 0 * * * *\r\nreturn 1\r\n"
    mixed = "#!x\r# @timeout 2s\x1d# @timeout 3s\nreturn 1\n"
    assert normalize(mixed).code == "#!x\r# @timeout 2000\x1d# @timeout 3000\nreturn 1\n"
    for odd in ("\r\x1d\xe8Q", "\r", "\x1c\x1d\x1e\x85\u2028x", "# @timeout 1s\x0c\r\n"):
        result = validate_script(odd, normalize=True)
        assert isinstance(result["valid"], bool)


def test_validate_reports_and_refuses() -> None:
    code, path = _case("flask_multi_routes")
    result = validate_script(code, path=path, normalize=True)
    assert not result["valid"]
    assert "normalizedCode" not in result
    message = result["results"]["typescript"]["errors"][0]["message"]
    assert "users.py" in message and "(line 11)" in message
    plain = validate_script(code, path=path)
    assert "normalized" not in plain


def test_validate_without_normalize_sees_the_raw_code() -> None:
    code, _ = _case("fence_python")
    assert not validate_script(code)["valid"]
    normalized = validate_script(code, normalize=True)
    assert normalized["valid"]
    assert normalized["normalizedCode"] == 'def handler(req):\n    return {"ok": True}\n'
    assert [c["rule"] for c in normalized["normalized"]] == ["markdown-fence"] * 2
