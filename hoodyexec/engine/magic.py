"""Magic comments: ``# @name value`` lines in a script's leading comment block.

The block is the run of comment and blank lines at the top of the file (a
shebang and an encoding line included). Scripts are Python, so the prefix is
``#``: a ``//`` line (the reference kit's JavaScript prefix) is recognised only to
say so (``SLASH_HINT``), since it cannot compile. Unknown names and bad values
are validation errors that name the line. ``SCHEMA`` is the table served by
``GET /api/v1/exec/magic-comments/schema``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

import msgspec

_LINE = re.compile(r"^\s*(?:#|//)\s*@([A-Za-z][A-Za-z0-9-]*)(?:[ \t]+(.*?))?\s*$")
_COMMENT = re.compile(r"^\s*(?:#|//)")
_SLASHES = re.compile(r"^\s*//")
SLASH_HINT = ".py files use # for comments, not // (write # @name value)"
PREFIXES = ("#",)  # what a .py script's magic comments start with


def is_script(rel: str) -> bool:
    """Only scripts (``.py``) carry magic comments; any other file is data."""
    return rel.endswith(".py")


class MagicError(msgspec.Struct, frozen=True):
    line: int
    name: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: @{self.name}: {self.message}"


class Spec(msgspec.Struct, frozen=True):
    name: str
    type: str
    description: str
    example: str
    default: Any = None


def _int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(v: str) -> int:
        try:
            n = int(v.replace("_", ""))
        except ValueError:
            raise ValueError(f"expected an integer, got {v!r}") from None
        if not lo <= n <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {n}")
        return n

    return parse


def _float(lo: float, hi: float) -> Callable[[str], float]:
    def parse(v: str) -> float:
        try:
            n = float(v)
        except ValueError:
            raise ValueError(f"expected a number, got {v!r}") from None
        if not lo <= n <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {n}")
        return n

    return parse


def _bool(v: str) -> bool:
    low = v.strip().lower()
    if low in ("", "true", "yes", "on", "1"):
        return True
    if low in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"expected true or false, got {v!r}")


def _text(v: str) -> str:
    if not v.strip():
        raise ValueError("needs a value")
    return v.strip()


def _list(v: str) -> list[str]:
    items = [x for x in re.split(r"[,\s]+", v.strip()) if x]
    if not items:
        raise ValueError("needs at least one value")
    return items


def _cors(v: str) -> list[str]:
    items = _list(v)
    for item in items:
        if item != "*" and not re.match(r"^https?://[^/\s]+$", item):
            raise ValueError(f"expected * or origins like https://example.org, got {item!r}")
    return items


def _schedule(v: str) -> str:
    from croniter import croniter

    expr = " ".join(v.split())
    if len(expr.split()) != 5:
        raise ValueError(f"expected a 5-field cron expression (UTC), got {v!r}")
    if not croniter.is_valid(expr):
        raise ValueError(f"invalid cron expression {v!r}")
    return expr


def _choice(*options: str) -> Callable[[str], str]:
    def parse(v: str) -> str:
        low = v.strip().lower()
        if low not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {v!r}")
        return low

    return parse


def _token(v: str) -> str:
    v = _text(v)
    if v.startswith("env:") and not re.match(r"^env:[A-Za-z_][A-Za-z0-9_]*$", v):
        raise ValueError(f"expected env:NAME, got {v!r}")
    return v


# name -> (parser, type, description, example, default)
_TABLE: dict[str, tuple[Callable[[str], Any], str, str, str, Any]] = {
    "description": (
        _text,
        "string",
        "What the script does (listings, OpenAPI).",
        "Greeting handler",
        None,
    ),
    "cors": (_cors, "list[string]", "Allowed origins (* or a list); answers preflight.", "*", None),
    "timeout": (
        _int(1, 3_600_000),
        "integer (ms)",
        "Per-request time limit; 504 when exceeded.",
        "5000",
        30000,
    ),
    "schedule": (
        _schedule,
        "cron (5 fields, UTC)",
        "Run the script on a schedule.",
        "*/5 * * * *",
        None,
    ),
    "schedule-overlap": (
        _choice("skip", "allow"),
        "skip | allow",
        "A tick due while the previous scheduled run still runs: skipped (default) or run.",
        "allow",
        "skip",
    ),
    "token": (
        _token,
        "string | env:NAME",
        "Require this token (Bearer, X-Hoody-Token or ?token=).",
        "env:HOOK_TOKEN",
        None,
    ),
    "websocket": (_bool, "boolean", "The script accepts WebSocket connections.", "true", False),
    "log-level": (
        _choice("debug", "info", "warn", "warning", "error", "off"),
        "debug|info|warn|error|off",
        "Lowest console level written to the script's log.",
        "info",
        "debug",
    ),
    "log-request-body": (
        _bool,
        "boolean",
        "Write each request body to the script's log.",
        "true",
        False,
    ),
    "ai-model": (_text, "string", "Model for the ai helper.", "gpt-4o-mini", None),
    "ai-temperature": (
        _float(0.0, 2.0),
        "number",
        "Sampling temperature for the ai helper.",
        "0.7",
        None,
    ),
    "ai-max-tokens": (
        _int(1, 1_000_000),
        "integer",
        "Token limit for the ai helper.",
        "2048",
        None,
    ),
    "ai-key": (
        _token,
        "string | env:NAME",
        "API key for the ai helper.",
        "env:OPENAI_API_KEY",
        None,
    ),
    "label": (_text, "string", "A label to filter listings by.", "billing", None),
    "tags": (_list, "list[string]", "Tags to filter listings by.", "webhook, github", None),
    "mode": (
        _choice("auto", "inline", "thread"),
        "auto|inline|thread",
        "Where sync code runs.",
        "thread",
        "auto",
    ),
    "enabled": (_bool, "boolean", "false: answers 404 as if absent (still listed).", "false", True),
}

SCHEMA: list[Spec] = [Spec(name, t, d, e, dflt) for name, (_, t, d, e, dflt) in _TABLE.items()]


class Magic(msgspec.Struct, frozen=True):
    """Parsed magic comments with their defaults; ``raw`` keeps what was written."""

    description: str | None = None
    cors: list[str] | None = None
    timeout: int = 30000
    schedule: str | None = None
    schedule_overlap: str = "skip"
    token: str | None = None
    websocket: bool = False
    log_level: str = "debug"
    log_request_body: bool = False
    ai_model: str | None = None
    ai_temperature: float | None = None
    ai_max_tokens: int | None = None
    ai_key: str | None = None
    label: str | None = None
    tags: list[str] = []
    mode: str = "auto"
    enabled: bool = True
    raw: dict[str, Any] = {}
    lines: dict[str, int] = {}


def leading_block(source: str) -> list[tuple[int, str]]:
    """(line number, text) of the leading comment block."""
    out = []
    for number, line in enumerate(source.splitlines(), start=1):
        if not line.strip() or _COMMENT.match(line):
            out.append((number, line))
            continue
        break
    return out


def parse(source: str, *, default_timeout: int = 30000) -> tuple[Magic, list[MagicError]]:
    """Parse the leading block; returns the values and any errors (with lines)."""
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    errors: list[MagicError] = []
    for number, line in leading_block(source):
        m = _LINE.match(line)
        if not m:
            continue
        name, value = m.group(1).lower(), m.group(2) or ""
        if _SLASHES.match(line):
            errors.append(MagicError(number, name, SLASH_HINT))
            continue
        entry = _TABLE.get(name)
        if entry is None:
            errors.append(
                MagicError(number, name, f"unknown magic comment (known: {', '.join(_TABLE)})")
            )
            continue
        if name in values:
            errors.append(MagicError(number, name, f"given twice (first on line {lines[name]})"))
            continue
        try:
            values[name] = entry[0](value)
            lines[name] = number
        except ValueError as exc:
            errors.append(MagicError(number, name, str(exc)))
    fields = {k.replace("-", "_"): v for k, v in values.items()}
    fields.setdefault("timeout", default_timeout)
    return Magic(**fields, raw=values, lines=lines), errors


# -- rewriting the leading block ------------------------------------------------------
_UNSAFE_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


def unsafe_char(text: str) -> str | None:
    """The first character of ``text`` that must not be written into a comment line.

    That is every control character (C0, DEL, C1: tab, form feed, vertical tab,
    ``\x1c``-``\x1e``, ``\x85`` included) and the line and paragraph separators
    U+2028/U+2029: together a superset of what ``str.splitlines()`` splits on, so
    a checked value can never end its comment and start a line of code. The
    one check used by everything that writes magic comments (``rewrite`` and
    template comment placeholders).
    """
    for ch in text:
        if unicodedata.category(ch) in _UNSAFE_CATEGORIES:
            return ch
    return None


class UnsafeText(ValueError):
    """A magic-comment name or value holding a line break or control character."""

    def __init__(self, name: str | None, char: str) -> None:
        where = f"@{name}" if name else "magic comment name"
        super().__init__(
            f"{where}: line breaks and control characters are not allowed (found {char!r})"
        )
        self.name = name


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _format(name: str, value: Any) -> str:
    text = _format_value(value)
    bad = unsafe_char(text)
    if bad is not None:
        raise UnsafeText(name, bad)
    return f"# @{name} {text}".rstrip()


def _checked_line(line: str) -> str:
    """One line of the string form, stripped; its name and value must be safe (what
    ``_LINE`` lets stand around them is whitespace, harmless once ``splitlines`` has
    cut the line)."""
    m = _LINE.match(line)
    if not m:
        raise ValueError(f"not a magic comment line: {line!r}")
    bad = unsafe_char(m.group(1) + " " + (m.group(2) or ""))
    if bad is not None:
        raise UnsafeText(m.group(1).lower(), bad)
    return line.strip()


def _checked_name(name: object) -> str:
    if not isinstance(name, str):
        raise ValueError(f"magic comment names are strings, got {name!r}")
    bad = unsafe_char(name)
    if bad is not None:
        raise UnsafeText(None, bad)
    name = name.lower().lstrip("@")
    if name not in _TABLE:
        raise ValueError(f"unknown magic comment @{name}")
    return name


def check_comments(comments: dict[str, Any] | str) -> None:
    """Raise ValueError (``UnsafeText`` for line breaks) unless ``rewrite`` can render
    ``comments``; lets a caller refuse a request before touching any file."""
    if isinstance(comments, str):
        for line in comments.splitlines():
            if line.strip():
                _checked_line(line)
        return
    for name, value in comments.items():
        name = _checked_name(name)
        if value is not None:
            _format(name, value)


def rewrite(source: str, comments: dict[str, Any] | str) -> str:
    """New source with its magic comments changed; everything after the leading
    comment block is kept byte for byte.

    ``comments`` as a dict sets names (a ``None`` value removes one) and keeps the
    others; as a string of ``# @name value`` lines it replaces every magic line.
    """
    lines = source.splitlines(keepends=True)
    block = leading_block(source)
    end = len(block)  # the block is the first ``end`` lines
    head = lines[:end]
    body = "".join(lines[end:])
    existing: dict[str, int] = {}
    for index, line in enumerate(head):
        m = _LINE.match(line)
        if m:
            existing.setdefault(m.group(1).lower(), index)
    newline = "\n"
    if isinstance(comments, str):
        wanted = [_checked_line(ln) for ln in comments.splitlines() if ln.strip()]
        kept = [ln for i, ln in enumerate(head) if i not in existing.values()]
        insert_at = _insert_point(kept)
        new_head = kept[:insert_at] + [ln + newline for ln in wanted] + kept[insert_at:]
    else:
        slots: list[str | None] = list(head)
        appended: list[str] = []
        for name, value in comments.items():
            name = _checked_name(name)
            if name in existing:
                idx = existing[name]
                slots[idx] = None if value is None else _format(name, value) + newline
            elif value is not None:
                appended.append(_format(name, value) + newline)
        new_head = [ln for ln in slots if ln is not None]
        if appended:
            last_magic = max((i for i, ln in enumerate(new_head) if _LINE.match(ln)), default=None)
            at = last_magic + 1 if last_magic is not None else _insert_point(new_head)
            new_head[at:at] = appended
    text = "".join(new_head)
    if text and not text.endswith(("\n", "\r")) and body:
        text += newline
    return text + body


def _insert_point(head: list[str]) -> int:
    """After a shebang and an encoding line, if any."""
    at = 0
    for line in head[:2]:
        if line.startswith("#!") or ("coding" in line and line.lstrip().startswith("#")):
            at += 1
        else:
            break
    return at
