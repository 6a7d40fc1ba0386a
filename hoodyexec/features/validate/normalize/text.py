"""The rules that work on lines rather than on the syntax tree: a script wrapped
in a Markdown fence, and magic comments written the wrong way. Both only ever
look at text that is not Python code (fences and prose, comment lines)."""

from __future__ import annotations

import ast
import re

from hoodyexec.engine import magic as magic_mod

from .model import Change, Outcome, Problem

FENCE = "```"
_PYTHON_TAGS = frozenset({"", "python", "py", "python3", "py3"})

# One comment line of the leading block: prefix, gap, @name, separator, value.
_MAGIC = re.compile(
    r"^(?P<indent>[ \t]*)(?P<prefix>#|//)(?P<gap>[ \t]*)@(?P<name>[A-Za-z][A-Za-z0-9-]*)"
    r"(?P<sep>[ \t]*[:=])?[ \t]*(?P<value>.*?)[ \t]*$"
)
_DURATION = re.compile(
    r"^(?P<n>\d+(?:\.\d+)?)[ \t]*(?P<unit>ms|millis(?:econds?)?|s|secs?|seconds?|m|mins?"
    r"|minutes?|h|hrs?|hours?)$",
    re.IGNORECASE,
)
_KNOWN = {spec.name: spec for spec in magic_mod.SCHEMA}


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _is_fence(line: str) -> bool:
    return line.strip().startswith(FENCE)


def strip_fences(code: str) -> tuple[Outcome, int]:
    """``code`` without a Markdown fence around it (and the prose before and after).
    Also returns how many lines went from the top, to report later lines by the
    submitted text. Code that parses as it is (a fence inside a string) is kept."""
    lines = code.split("\n")
    fences = [i for i, line in enumerate(lines) if _is_fence(line)]
    if not fences or _parses(code):
        return Outcome(code), 0
    first = fences[0]
    tag = lines[first].strip()[len(FENCE) :].strip().lower()
    if tag not in _PYTHON_TAGS:
        problem = Problem(
            "markdown-fence",
            first + 1,
            f"the code block is marked {tag!r}, not Python",
            "send the Python source itself, without Markdown",
        )
        return Outcome(code, problems=[problem]), 0
    closing = next((i for i in fences[1:] if lines[i].strip() == FENCE), None)
    end = closing if closing is not None else len(lines)
    later = [i for i in fences if i > end]
    if later:
        problem = Problem(
            "markdown-fence",
            later[0] + 1,
            f"several code blocks (lines {first + 1} and {later[0] + 1})",
            "send one script per file, without Markdown",
        )
        return Outcome(code, problems=[problem]), 0
    body = "\n".join(lines[first + 1 : end]).rstrip("\n") + "\n"
    changes = []
    prose = [ln for ln in lines[:first] if ln.strip()]
    if prose:
        changes.append(Change("markdown-fence", 1, prose[0], "(prose before the code removed)"))
    changes.append(Change("markdown-fence", first + 1, lines[first], "(fence removed)"))
    if closing is not None:
        after = [ln for ln in lines[closing + 1 :] if ln.strip()]
        what = "(fence and the prose after it removed)" if after else "(fence removed)"
        changes.append(Change("markdown-fence", closing + 1, lines[closing], what))
    return Outcome(body, changes), first + 1


def _unit_ms(unit: str) -> int:
    unit = unit.lower()
    if unit == "ms" or unit.startswith("milli"):
        return 1
    if unit.startswith("s"):
        return 1000
    if unit.startswith("m"):
        return 60_000
    return 3_600_000


def _duration_ms(value: str) -> int | None:
    """``5s`` → 5000, ``1.5 min`` → 90000; None unless a whole number of ms."""
    m = _DURATION.match(value.strip())
    if m is None:
        return None
    ms = float(m.group("n")) * _unit_ms(m.group("unit"))
    return int(ms) if ms == int(ms) else None


def _canonical(line: str) -> str | None:
    """The canonical form of a wrong-form comment line of the leading block; None
    when the line is fine as it is (or not a form this rule knows)."""
    m = _MAGIC.match(line)
    if m is None:
        if line.lstrip().startswith("//"):
            indent = line[: len(line) - len(line.lstrip())]
            return indent + "#" + line.lstrip()[2:]
        return None
    name = m.group("name").lower()
    if name not in _KNOWN:
        if m.group("prefix") == "//":
            return m.group("indent") + "#" + line.lstrip()[2:]
        return None
    value = m.group("value")
    converted = value
    if "(ms)" in _KNOWN[name].type and not value.replace("_", "").isdigit():
        ms = _duration_ms(value)
        if ms is None:
            return None  # left for the magic-comment check to refuse, with its line
        converted = str(ms)
    wrong = m.group("prefix") == "//" or not m.group("gap") or m.group("sep") or converted != value
    if not wrong:
        return None
    return f"{m.group('indent')}# @{name} {converted}".rstrip()


def fix_magic(code: str) -> Outcome:
    """Canonical ``# @name value`` lines in the leading comment block."""
    # Split as ``leading_block`` numbers its lines (``str.splitlines``: a lone
    # "\r" or "\x1d" ends a line too), each line keeping its own ending.
    lines = code.splitlines(keepends=True)
    changes = []
    for number, text in magic_mod.leading_block(code):
        ending = lines[number - 1][len(text) :]
        new = _canonical(text)
        if new is None:
            continue
        lines[number - 1] = new + ending
        changes.append(Change("magic-comment", number, text, new))
    if not changes:
        return Outcome(code)
    return Outcome("".join(lines), changes)
