"""Script templates: built-in starting points and user-made custom ones.

A template is a script in the kit's contract with ``{{name}}`` placeholders.
Rendering is *safe*: a placeholder is replaced by a Python literal (``repr`` of
a type-checked value: str, int, float, bool, None, or lists/dicts of JSON
values), never by raw text, so no value can leave its literal and become code.
To keep that guarantee a placeholder may only stand:

* where an expression is valid (``LIMIT = {{limit}}``, ``f({{x}})``,
  ``{{url}}.upper()``); never inside a string or f-string, as a name, an
  attribute, an argument or an assignment target; or
* inside a comment (``# @schedule {{cron}}``): there the value is written as
  plain text, which is allowed only for a single-line scalar without control
  characters, so it cannot end the comment.

``{{identifier}}`` is always a placeholder (there is no filter syntax such as
``{{x|raw}}``); write ``"{" + "{"`` to get two literal braces. Every rendered
script is parsed again and its magic comments checked before it is returned.

Custom templates live in one folder as ``<name>.py`` (code) and ``<name>.json``
(the other fields); every write is atomic (temp file, fsync, rename).
"""

from __future__ import annotations

import ast
import contextlib
import copy
import io
import math
import os
import re
import secrets
import threading
import tokenize
from typing import Annotated, Any, Literal

import msgspec

from hoodyexec.engine import magic as magic_mod
from hoodyexec.engine.compiler import ScriptLoadError
from hoodyexec.engine.compiler import parse as parse_script
from hoodyexec.errors import HoodyError
from hoodyexec.files import fsync_dir, write_atomic

__all__ = [
    "BUILTINS",
    "Template",
    "TemplateConflict",
    "TemplateError",
    "TemplateInvalid",
    "TemplateNotFound",
    "TemplateStore",
    "Variable",
    "check_code",
    "parse_variables",
    "render_template",
    "summary",
]

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
VARIABLE_TYPES = ("string", "integer", "number", "boolean", "list", "object")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{\{[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*\}\}")
_FILTERED = re.compile(r"\{\{[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*\|[^{}\n]*\}\}")
_CATEGORY = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_FILENAME_PART = re.compile(r"^[A-Za-z0-9_\-\[\]\.]+$")
_MAX_DEPTH = 32


# -- errors -------------------------------------------------------------------
class TemplateError(HoodyError):
    """Base of the template errors (each maps to its HTTP status)."""


class TemplateNotFound(TemplateError, LookupError):
    status = 404


class TemplateConflict(TemplateError):
    status = 409


class TemplateInvalid(TemplateError, ValueError):
    """Bad name, code, metadata or variable values; ``extra`` names the culprit."""

    status = 400


# -- model --------------------------------------------------------------------
VariableType = Literal["string", "integer", "number", "boolean", "list", "object"]


class Variable(msgspec.Struct, forbid_unknown_fields=True):
    """One ``{{name}}`` a template accepts; the value is checked against ``type``."""

    name: str
    description: str = ""
    type: VariableType = "string"
    default: Any = None
    required: bool = False


class Template(msgspec.Struct, kw_only=True):
    """A script with placeholders plus what listings and the generate endpoint need."""

    name: str
    title: str = ""
    description: str = ""
    category: str = "custom"
    variables: list[Variable] = []
    code: str = ""
    filename: str = ""
    builtin: bool = False
    tags: list[str] = []


class _Meta(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The fields of ``<name>.json`` (everything but the code), as accepted from clients."""

    name: str | None = None
    title: Annotated[str, msgspec.Meta(max_length=200)] = ""
    description: Annotated[str, msgspec.Meta(max_length=4000)] = ""
    category: str = "custom"
    variables: Annotated[list[Variable], msgspec.Meta(max_length=100)] = []
    filename: str = ""
    builtin: bool = False
    tags: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]], msgspec.Meta(max_length=32)
    ] = []


def summary(template: Template) -> dict[str, Any]:
    """A listing entry: every field but the code (listings stay small)."""
    out: dict[str, Any] = msgspec.to_builtins(template)
    out.pop("code", None)
    return out


# -- values -------------------------------------------------------------------
def _json_value(value: Any, where: str, depth: int = 0) -> Any:
    """An exact-typed copy of a JSON value (so ``repr`` is the builtin one), or ValueError."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"{where}: nested deeper than {_MAX_DEPTH} levels")
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not a JSON number")
        return float.__float__(value)
    if isinstance(value, list | tuple):
        return [_json_value(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: object keys must be strings, got {type(k).__name__}")
            out[str.__str__(k)] = _json_value(v, f"{where}.{k}", depth + 1)
        return out
    raise ValueError(f"{where}: {type(value).__name__} is not a JSON value")


def _type_name(value: Any) -> str:
    scalars: dict[type, str] = {bool: "boolean", int: "integer", float: "number", str: "string"}
    containers: dict[type, str] = {list: "list", tuple: "list", dict: "object"}
    return scalars.get(type(value), containers.get(type(value), "")) or type(value).__name__


def coerce(var: Variable, value: Any) -> Any:
    """``value`` checked against ``var.type``; raises TemplateInvalid naming the variable."""
    if value is None:
        return None

    def wrong(detail: str = "") -> TemplateInvalid:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        return TemplateInvalid(
            f"variable {var.name!r}: expected {var.type}, got {_type_name(value)} {shown}"
            + (f" ({detail})" if detail else ""),
            variable=var.name,
        )

    t = var.type
    if t == "string":
        if not isinstance(value, str):
            raise wrong()
        return str.__str__(value)
    if t == "boolean":
        if value is not True and value is not False:
            raise wrong()
        return value
    if t == "integer":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong()
        if isinstance(value, float):
            if not (math.isfinite(value) and value.is_integer()):
                raise wrong("not a whole number")
            return int(value)
        return int.__int__(value)
    if t == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong()
        if isinstance(value, float) and not math.isfinite(value):
            raise wrong("not finite")
        return float.__float__(value) if isinstance(value, float) else int.__int__(value)
    want = list | tuple if t == "list" else dict
    if not isinstance(value, want):
        raise wrong()
    try:
        return _json_value(value, var.name)
    except (ValueError, RecursionError) as exc:
        raise wrong(str(exc)) from None


def parse_variables(text: str | bytes | None) -> dict[str, Any]:
    """Variables given as JSON text (the preview endpoint's query) → dict; 400 otherwise."""
    if text is None or (isinstance(text, str | bytes) and not text.strip()):
        return {}
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise TemplateInvalid(f"variables must be a JSON object: {exc}") from None
    except RecursionError:  # msgspec's answer to nesting like "[[[[..."
        raise TemplateInvalid("variables must be a JSON object: nested too deeply") from None
    if not isinstance(value, dict):
        raise TemplateInvalid(f"variables must be a JSON object, got {_type_name(value)}")
    return value


def _literal(value: Any) -> str:
    """Python source for a checked value; negative numbers parenthesised (``x ** {{n}}``)."""
    text = repr(value)
    if text.startswith("-"):
        text = f"({text})"
    return text


def _comment_text(name: str, value: Any) -> str:
    """Plain text for a comment placeholder: one line, no control characters."""
    if value is None:
        raise TemplateInvalid(
            f"variable {name!r} is used in a comment and needs a value", variable=name
        )
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if not isinstance(value, str):
        raise TemplateInvalid(
            f"variable {name!r} is used in a comment: only a string, number or boolean fits there",
            variable=name,
        )
    if magic_mod.unsafe_char(value) is not None:
        raise TemplateInvalid(
            f"variable {name!r} is used in a comment: line breaks and control characters "
            "are not allowed there",
            variable=name,
        )
    return value


# -- placeholders ---------------------------------------------------------------
class _Slot(msgspec.Struct, frozen=True):
    start: int
    end: int
    name: str
    kind: str  # "expr" | "comment"
    line: int


def _parse(source: str) -> ast.Module:
    try:
        return parse_script(source, "<template>")
    except ScriptLoadError as exc:
        raise TemplateInvalid(
            f"code does not parse: {exc.message}",
            line=exc.extra.get("line"),
            column=exc.extra.get("column"),
        ) from None
    except ValueError as exc:  # e.g. NUL bytes
        raise TemplateInvalid(f"code does not parse: {exc}") from None


def _line_of(code: str, pos: int) -> int:
    return code.count("\n", 0, pos) + 1


def _slots(code: str) -> list[_Slot]:
    """Find placeholders and prove each stands in an expression or a comment.

    Each placeholder is swapped for a unique identifier; the probe must parse,
    and the identifier must come back as a loaded ``Name`` outside any f-string
    (an expression) or inside a comment token. Anything else is refused.
    """
    bad = _FILTERED.search(code)
    if bad:
        raise TemplateInvalid(
            f"unsupported placeholder {bad.group(0)!r}: only {{{{name}}}} is allowed",
            line=_line_of(code, bad.start()),
        )
    matches = list(_PLACEHOLDER.finditer(code))
    if not matches:
        _parse(code)
        return []
    nonce = secrets.token_hex(4)
    while nonce in code:
        nonce = secrets.token_hex(4)
    sentinels = [f"__hoody_ph_{nonce}_{i}__" for i in range(len(matches))]
    index = {s: i for i, s in enumerate(sentinels)}
    pieces, last = [], 0
    for m, s in zip(matches, sentinels, strict=True):
        pieces += [code[last : m.start()], s]
        last = m.end()
    probe = "".join(pieces) + code[last:]
    tree = _parse(probe)

    in_fstring: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            in_fstring.update(id(n) for n in ast.walk(node))
    expressions = {
        index[node.id]
        for node in ast.walk(tree)
        if isinstance(node, ast.Name)
        and node.id in index
        and isinstance(node.ctx, ast.Load)
        and id(node) not in in_fstring
    }
    kinds: dict[int, str] = {}
    find = re.compile(rf"__hoody_ph_{nonce}_(\d+)__")
    try:
        for tok in tokenize.generate_tokens(io.StringIO(probe).readline):
            if tok.type == tokenize.COMMENT:
                for m in find.finditer(tok.string):
                    kinds[int(m.group(1))] = "comment"
            elif tok.type == tokenize.NAME and tok.string in index:
                i = index[tok.string]
                if i in expressions:
                    kinds[i] = "expr"
    except (tokenize.TokenError, SyntaxError) as exc:
        raise TemplateInvalid(f"code does not tokenize: {exc}") from None

    slots = []
    for i, m in enumerate(matches):
        line = _line_of(code, m.start())
        kind = kinds.get(i)
        if kind is None:
            raise TemplateInvalid(
                f"placeholder {m.group(0)} on line {line} must stand where an expression is "
                "valid or inside a comment (not in a string, f-string, name, attribute, "
                "argument or assignment target)",
                line=line,
                variable=m.group(1),
            )
        slots.append(_Slot(m.start(), m.end(), m.group(1), kind, line))
    return slots


def _check_variables(variables: list[Variable]) -> None:
    seen: set[str] = set()
    for var in variables:
        if not _IDENT.match(var.name):
            raise TemplateInvalid(
                f"variable name {var.name!r} must be an identifier", variable=var.name
            )
        if var.name in seen:
            raise TemplateInvalid(f"variable {var.name!r} is declared twice", variable=var.name)
        seen.add(var.name)
        if var.default is not None:
            try:
                coerce(var, var.default)
            except TemplateInvalid as exc:
                raise TemplateInvalid(f"default of {exc.message}", variable=var.name) from None


def check_code(code: str, variables: list[Variable]) -> list[str]:
    """Validate code against its declared variables; returns the placeholder names used.

    Raises TemplateInvalid for syntax errors, misplaced or undeclared
    placeholders, and bad magic comments on lines without placeholders.
    """
    if not isinstance(code, str) or not code.strip():
        raise TemplateInvalid("code must be a non-empty string")
    _check_variables(variables)
    slots = _slots(code)
    declared = {v.name for v in variables}
    for slot in slots:
        if slot.name not in declared:
            raise TemplateInvalid(
                f"placeholder {{{{{slot.name}}}}} on line {slot.line} has no declared variable",
                line=slot.line,
                variable=slot.name,
            )
    templated = {s.line for s in slots}
    _, problems = magic_mod.parse(code)
    for p in problems:
        if p.line not in templated:
            raise TemplateInvalid(f"invalid magic comment: {p}", line=p.line)
    return sorted({s.name for s in slots})


def render_template(template: Template, values: dict[str, Any] | None) -> str:
    """The template's code with every placeholder replaced by its checked value."""
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise TemplateInvalid(f"variables must be an object, got {_type_name(values)}")
    declared = {v.name: v for v in template.variables}
    unknown = sorted(k for k in values if k not in declared)
    if unknown:
        raise TemplateInvalid(
            f"unknown variable(s) for template {template.name!r}: {', '.join(unknown)} "
            f"(known: {', '.join(declared) or 'none'})",
            variable=unknown[0],
        )
    resolved: dict[str, Any] = {}
    for name, var in declared.items():
        if name in values and values[name] is not None:
            resolved[name] = coerce(var, values[name])
        elif var.required:
            raise TemplateInvalid(f"variable {name!r} is required", variable=name)
        else:
            resolved[name] = coerce(var, var.default)

    code = template.code
    slots = _slots(code)
    out, last = [], 0
    for slot in slots:
        if slot.name not in resolved:
            raise TemplateInvalid(
                f"placeholder {{{{{slot.name}}}}} on line {slot.line} has no declared variable",
                line=slot.line,
                variable=slot.name,
            )
        value = resolved[slot.name]
        text = _literal(value) if slot.kind == "expr" else _comment_text(slot.name, value)
        out += [code[last : slot.start], text]
        last = slot.end
    rendered = "".join(out) + code[last:]
    if not rendered.endswith("\n"):
        rendered += "\n"
    _parse(rendered)
    _, problems = magic_mod.parse(rendered)
    if problems:
        p = problems[0]
        culprits = [s.name for s in slots if s.line == p.line]
        extra: dict[str, Any] = {"line": p.line}
        if culprits:
            extra["variable"] = culprits[0]
        raise TemplateInvalid(f"invalid magic comment after substitution: {p}", **extra)
    return rendered


# -- built-in templates ---------------------------------------------------------
_HELLO = """\
# @description Minimal body-mode script: GET /hello?name=you
GREETING = {{greeting}}

name = metadata.query.get("name", {{default_name}})
return {"message": f"{GREETING}, {name}!"}
"""

_JSON_API = """\
# @description JSON API over shared state: GET lists items (one with ?id=), POST adds one
# Items live in shared state under COLLECTION, keyed by id; each write is one atomic
# shared-state operation, so concurrent POSTs from any worker get distinct ids.
COLLECTION = {{collection}}
MAX_ITEMS = {{max_items}}


def GET(query, shared):
    items = shared.get(COLLECTION, {})
    wanted = query.get("id")
    if wanted is not None:
        item = items.get(str(wanted))
        if item is None:
            return {"error": f"no item with id {wanted}"}, 404
        return item
    listed = sorted(items.values(), key=lambda item: item["id"])
    return {"items": listed, "count": len(listed)}


def POST(body, shared):
    if not isinstance(body, dict) or not body:
        return {"error": "expected a non-empty JSON object"}, 400
    if len(shared.get(COLLECTION, {})) >= MAX_ITEMS:
        return {"error": f"the collection is full ({MAX_ITEMS} items)"}, 409
    item_id = shared.incr(f"{COLLECTION}_seq")
    item = {**body, "id": item_id}
    shared.set(f"{COLLECTION}.{item_id}", item)
    return item, 201
"""

_HMAC_WEBHOOK = """\
# @description GitHub-style webhook: verifies X-Hub-Signature-256 (HMAC-SHA256 of the raw body)
# The secret is read from the environment variable SECRET_ENV on every request
# (DEFAULT_SECRET is the fallback); with neither set every delivery is refused.
import hashlib
import hmac
import os

SECRET_ENV = {{secret_env}}
DEFAULT_SECRET = {{secret}}
SIGNATURE_HEADER = "X-Hub-Signature-256"


def POST(req, console):
    secret = os.environ.get(SECRET_ENV) or DEFAULT_SECRET
    if not secret:
        console.error(f"no webhook secret configured: set {SECRET_ENV}")
        return {"error": "webhook secret is not configured"}, 500
    expected = "sha256=" + hmac.new(secret.encode(), req.raw or b"", hashlib.sha256).hexdigest()
    given = req.headers.get(SIGNATURE_HEADER, "")
    if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
        console.warn("rejected a delivery with a missing or wrong signature")
        return {"error": "invalid signature"}, 401
    event = req.headers.get("X-GitHub-Event", "unknown")
    delivery = req.headers.get("X-GitHub-Delivery")
    payload = req.body if isinstance(req.body, dict) else {}
    console.info(f"accepted {event} delivery {delivery}")
    return {"ok": True, "event": event, "delivery": delivery, "action": payload.get("action")}
"""

_SHELL_COMMAND = """\
# @description Run a fixed command (argv list, no shell) and return stdout, stderr and exit code
# @mode thread
import subprocess

ARGV = [str(arg) for arg in {{argv}}]
TIMEOUT_S = {{timeout_s}}


def handler(console):
    if not ARGV:
        return {"error": "no command configured"}, 500
    try:
        done = subprocess.run(
            ARGV,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        console.warn(f"{ARGV[0]} timed out after {TIMEOUT_S} s")
        return {"error": f"{ARGV[0]} timed out after {TIMEOUT_S} s", "argv": ARGV}, 504
    except OSError as exc:
        return {"error": f"cannot run {ARGV[0]}: {exc.strerror or exc}", "argv": ARGV}, 500
    return {
        "argv": ARGV,
        "returncode": done.returncode,
        "stdout": done.stdout,
        "stderr": done.stderr,
    }
"""

_WORKFLOW = '''\
# @description Multi-step async workflow: validate, check, act; reports every step's output
# POST {"customer": "ann", "amount": 42}. Each step is an async function bounded by
# STEP_TIMEOUT_S; the first failing step stops the run and is reported (422).
import asyncio
import datetime
import time

LIMIT = {{limit}}
STORE = {{store_key}}
STEP_TIMEOUT_S = {{step_timeout_s}}


class StepFailed(Exception):
    """A step refused to go on; its message is reported to the caller."""


async def validate(ctx):
    """Step A: turn the request body into a clean order."""
    data = ctx["input"]
    if not isinstance(data, dict):
        raise StepFailed("expected a JSON object body")
    amount = data.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        raise StepFailed("amount must be a number")
    return {"customer": str(data.get("customer") or "anonymous"), "amount": amount}


async def check(ctx):
    """Step B: business rules; a failure here stops the run before anything is written."""
    amount = ctx["validate"]["amount"]
    if amount <= 0:
        raise StepFailed("amount must be positive")
    if amount > LIMIT:
        raise StepFailed(f"amount {amount} is over the limit of {LIMIT}")
    return {"approved": True, "limit": LIMIT}


async def act(ctx):
    """Step C: record the approved order in shared state."""
    shared = ctx["shared"]
    order_id = shared.incr(f"{STORE}_seq")
    at = datetime.datetime.now(datetime.UTC).isoformat()
    shared.set(f"{STORE}.{order_id}", {**ctx["validate"], "at": at})
    return {"orderId": order_id, "at": at}


STEPS = [("validate", validate), ("check", check), ("act", act)]


async def handler(body, shared, console):
    ctx = {"input": body, "shared": shared}
    report = []
    for index, (name, step) in enumerate(STEPS):
        started = time.perf_counter()
        try:
            output = await asyncio.wait_for(step(ctx), STEP_TIMEOUT_S)
        except Exception as exc:
            if isinstance(exc, StepFailed):
                message = str(exc)
            elif isinstance(exc, TimeoutError):
                message = f"timed out after {STEP_TIMEOUT_S} s"
            else:
                message = f"{type(exc).__name__}: {exc}"
            ms = round((time.perf_counter() - started) * 1000, 3)
            report.append({"step": name, "ok": False, "error": message, "ms": ms})
            console.warn(f"workflow stopped at {name}: {message}")
            skipped = [later for later, _ in STEPS[index + 1 :]]
            return {"ok": False, "failed": name, "steps": report, "skipped": skipped}, 422
        ctx[name] = output
        ms = round((time.perf_counter() - started) * 1000, 3)
        report.append({"step": name, "ok": True, "output": output, "ms": ms})
    return {"ok": True, "failed": None, "steps": report, "skipped": []}
'''

_SCHEDULED_JOB = """\
# @description Scheduled job: records every run in shared state (an HTTP call runs it too)
# @schedule {{cron}}
import datetime

STATE_KEY = {{state_key}}

previous = shared.get(STATE_KEY) or {}
now = datetime.datetime.now(datetime.UTC).isoformat()
trigger = metadata.get("trigger", "http")
runs = shared.incr(f"{STATE_KEY}.runs")
shared.merge(STATE_KEY, {"lastRun": now, "trigger": trigger})
console.info(f"run {runs} ({trigger})")
return {"runs": runs, "lastRun": now, "trigger": trigger, "previousRun": previous.get("lastRun")}
"""

_AI_SUMMARIZE = """\
# @description Summarize the posted text with the kit's LLM (ai.generate); ?stream=1 streams it
# @ai-temperature {{temperature}}
# POST {"text": "..."} → {"summary": "..."}; with ?stream=1 the summary arrives as it is
# written (Server-Sent Events when the client asks for text/event-stream).
MAX_WORDS = {{max_words}}


async def POST(body, query, ai):
    text = (body or {}).get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        return {"error": "send {\\"text\\": \\"...\\"}"}, 400
    prompt = f"Summarize in at most {MAX_WORDS} words:\\n\\n{text}"
    if query.get("stream"):
        return ai.stream(prompt)
    answer = await ai.generate(prompt)
    return {"summary": answer.text.strip(), "model": answer.model}
"""

_AI_EXTRACT = """\
# @description Extract a typed contact from posted text with the kit's LLM (ai.object)
# POST {"text": "..."} → {"name", "email", "company"}; the model's answer is checked
# against the Struct (one retry, then 502 naming the field).
import msgspec

INSTRUCTIONS = {{instructions}}


class Contact(msgspec.Struct):
    name: str
    email: str | None = None
    company: str | None = None


async def POST(body, ai):
    text = (body or {}).get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        return {"error": "send {\\"text\\": \\"...\\"}"}, 400
    found = await ai.object(schema=Contact, prompt=f"{INSTRUCTIONS}\\n\\n{text}")
    return msgspec.to_builtins(found)
"""

_HTTP_CALL = """\
# @description Call an upstream HTTP API (stdlib urllib) and relay its answer; 502 when it fails
# @mode thread
# POST/PUT/PATCH forward the request body. The answer is {"status", "contentType", "body"}
# with a JSON body decoded; an unreachable upstream or a 5xx answer gives 502.
import http.client
import json
import urllib.error
import urllib.request

URL = {{url}}
METHOD = {{method}}.upper()
HEADERS = {str(k): str(v) for k, v in {{headers}}.items()}
TIMEOUT_S = {{timeout_s}}
MAX_BYTES = 10 * 1024 * 1024

if not URL.startswith(("http://", "https://")):
    raise ValueError(f"URL must start with http:// or https://, got {URL!r}")


def _decode(raw, content_type, charset):
    text = raw.decode(charset or "utf-8", "replace")
    if "json" in content_type:
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def handler(req, console):
    data = None
    headers = dict(HEADERS)
    if METHOD in ("POST", "PUT", "PATCH"):
        data = req.raw or b""
        if req.headers.get("content-type"):
            headers.setdefault("Content-Type", req.headers["content-type"])
    request = urllib.request.Request(URL, data=data, headers=headers, method=METHOD)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as upstream:
            status, meta, raw = upstream.status, upstream.headers, upstream.read(MAX_BYTES)
    except urllib.error.HTTPError as exc:
        status, meta, raw = exc.code, exc.headers, exc.read(MAX_BYTES)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        console.warn(f"{METHOD} {URL} failed: {reason}")
        return {"error": f"upstream request failed: {reason}", "url": URL}, 502
    content_type = meta.get("Content-Type", "") if meta is not None else ""
    charset = meta.get_content_charset() if meta is not None else None
    answer = {"status": status, "contentType": content_type}
    answer["body"] = _decode(raw, content_type, charset)
    if status >= 500:
        return {"error": f"upstream answered {status}", "url": URL, **answer}, 502
    return answer
"""

_SSE_STREAM = """\
# @description Server-sent events: COUNT "tick" events, one every INTERVAL_MS milliseconds
import asyncio
import datetime

COUNT = {{count}}
INTERVAL_MS = {{interval_ms}}


async def handler(res):
    async def ticks():
        for i in range(1, COUNT + 1):
            if i > 1:
                await asyncio.sleep(INTERVAL_MS / 1000)
            now = datetime.datetime.now(datetime.UTC).isoformat()
            yield {"event": "tick", "id": str(i), "data": {"tick": i, "of": COUNT, "at": now}}

    return res.sse(ticks())
"""

_TYPED_CRUD = '''\
# @description Typed CRUD over shared state: a msgspec Struct validates every write
# Routes: GET /api/notes (list), GET|PUT|DELETE /api/notes/<id> (or ?id=<id>), POST /api/notes.
# A body that does not fit Note is a 400 naming the field, before this code runs.
from typing import Annotated

import msgspec

COLLECTION = {{collection}}
MAX_TITLE = {{max_title}}


class Note(msgspec.Struct, forbid_unknown_fields=True):
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TITLE)]
    body: str = ""
    tags: list[str] = []
    done: bool = False


def _id(id, query):
    """The id from the route (/api/notes/3) or the query (?id=3); None when absent."""
    raw = id if id is not None else query.get("id")
    if raw is None:
        return None
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():
        return int(raw)
    raise ValueError(f"id must be a positive integer, got {raw!r}")


def _bad_id(exc):
    return {"error": str(exc), "field": "$.id"}, 400


def _missing(note_id):
    return {"error": f"note {note_id} not found"}, 404


def GET(query, shared, id=None):
    try:
        note_id = _id(id, query)
    except ValueError as exc:
        return _bad_id(exc)
    notes = shared.get(COLLECTION, {})
    if note_id is None:
        items = [{"id": int(k), **v} for k, v in sorted(notes.items(), key=lambda kv: int(kv[0]))]
        return {"items": items, "count": len(items)}
    note = notes.get(str(note_id))
    if note is None:
        return _missing(note_id)
    return {"id": note_id, **note}


def POST(note: Note, shared):
    note_id = shared.incr(f"{COLLECTION}_seq")
    data = msgspec.to_builtins(note)
    shared.set(f"{COLLECTION}.{note_id}", data)
    return {"id": note_id, **data}, 201


def PUT(note: Note, query, shared, id=None):
    try:
        note_id = _id(id, query)
    except ValueError as exc:
        return _bad_id(exc)
    if note_id is None:
        return {"error": "PUT needs an id: .../<id> or ?id=<id>", "field": "$.id"}, 400
    if shared.get(f"{COLLECTION}.{note_id}") is None:
        return _missing(note_id)
    data = msgspec.to_builtins(note)
    shared.set(f"{COLLECTION}.{note_id}", data)
    return {"id": note_id, **data}


def DELETE(query, shared, id=None):
    try:
        note_id = _id(id, query)
    except ValueError as exc:
        return _bad_id(exc)
    if note_id is None:
        return {"error": "DELETE needs an id: .../<id> or ?id=<id>", "field": "$.id"}, 400
    if not shared.delete(f"{COLLECTION}.{note_id}"):
        return _missing(note_id)
    return {"deleted": note_id}
'''


def _v(name: str, type_: VariableType, default: Any, description: str) -> Variable:
    return Variable(name=name, description=description, type=type_, default=default)


_BUILTIN_LIST = [
    Template(
        name="hello",
        title="Hello",
        description="Minimal body-mode script: returns a greeting for ?name=.",
        category="utility",
        variables=[
            _v("greeting", "string", "Hello", "Word the greeting starts with."),
            _v("default_name", "string", "world", "Name used when ?name= is absent."),
        ],
        code=_HELLO,
        filename="hello.py",
        tags=["starter", "body-mode"],
    ),
    Template(
        name="json-api",
        title="JSON API over shared state",
        description="GET lists the items (or one with ?id=), POST adds one; method functions.",
        category="api",
        variables=[
            _v("collection", "string", "records", "Shared-state key holding the items."),
            _v("max_items", "integer", 1000, "POST answers 409 once this many items exist."),
        ],
        code=_JSON_API,
        filename="api/records.py",
        tags=["json", "shared-state", "methods"],
    ),
    Template(
        name="hmac-webhook",
        title="Signed webhook (GitHub style)",
        description=(
            "Verifies X-Hub-Signature-256 (HMAC-SHA256 over the raw body) with a "
            "constant-time comparison; 401 on a bad signature."
        ),
        category="webhook",
        variables=[
            _v(
                "secret_env",
                "string",
                "WEBHOOK_SECRET",
                "Environment variable holding the shared secret (read per request).",
            ),
            _v(
                "secret",
                "string",
                "",
                "Fallback secret when the environment variable is unset (stored in the "
                "script; prefer the environment). Empty: refuse every delivery.",
            ),
        ],
        code=_HMAC_WEBHOOK,
        filename="webhooks/github.py",
        tags=["github", "hmac", "security"],
    ),
    Template(
        name="shell-command",
        title="Run a command",
        description="Runs a fixed argv (no shell) with a timeout; returns stdout, stderr, code.",
        category="utility",
        variables=[
            _v("argv", "list", ["uname", "-a"], "Command and arguments, run without a shell."),
            _v(
                "timeout_s",
                "number",
                10,
                "Seconds before the command is killed (504); keep it under @timeout.",
            ),
        ],
        code=_SHELL_COMMAND,
        filename="tools/command.py",
        tags=["subprocess", "ops"],
    ),
    Template(
        name="workflow",
        title="Multi-step workflow",
        description=(
            "Async steps validate → check → act, each with a timeout; returns every "
            "step's output and reports the failing one (422)."
        ),
        category="workflow",
        variables=[
            _v("limit", "number", 1000, "Largest amount the check step approves."),
            _v("store_key", "string", "orders", "Shared-state key where approved orders go."),
            _v("step_timeout_s", "number", 5, "Time limit per step, in seconds."),
        ],
        code=_WORKFLOW,
        filename="workflows/order.py",
        tags=["async", "steps"],
    ),
    Template(
        name="scheduled-job",
        title="Scheduled job",
        description="Runs on a cron schedule (@schedule) and records each run in shared state.",
        category="scheduled",
        variables=[
            _v("cron", "string", "*/5 * * * *", "5-field cron expression (UTC)."),
            _v("state_key", "string", "jobs.heartbeat", "Shared-state key of the run record."),
        ],
        code=_SCHEDULED_JOB,
        filename="jobs/heartbeat.py",
        tags=["cron", "schedule", "shared-state"],
    ),
    Template(
        name="http-call",
        title="Outbound HTTP call",
        description=(
            "Calls an upstream URL with urllib (stdlib) and relays status and body; "
            "502 with the error when the upstream fails."
        ),
        category="integration",
        variables=[
            _v("url", "string", "https://api.github.com/zen", "Upstream URL (http or https)."),
            _v("method", "string", "GET", "HTTP method; POST/PUT/PATCH forward the body."),
            _v(
                "headers",
                "object",
                {"Accept": "application/json"},
                "Headers sent upstream.",
            ),
            _v("timeout_s", "number", 10, "Seconds to wait for the upstream."),
        ],
        code=_HTTP_CALL,
        filename="integrations/upstream.py",
        tags=["http", "proxy", "urllib"],
    ),
    Template(
        name="sse-stream",
        title="Server-sent events",
        description="An async generator streaming tick events with res.sse().",
        category="streaming",
        variables=[
            _v("count", "integer", 5, "Number of events sent."),
            _v("interval_ms", "integer", 200, "Pause between events, in milliseconds."),
        ],
        code=_SSE_STREAM,
        filename="streams/ticks.py",
        tags=["sse", "async"],
    ),
    Template(
        name="typed-crud",
        title="Typed CRUD",
        description=(
            "Create, read, update and delete notes in shared state; a msgspec Struct "
            "validates writes (400 naming the field), 404 for unknown ids."
        ),
        category="api",
        variables=[
            _v("collection", "string", "notes", "Shared-state key holding the notes."),
            _v("max_title", "integer", 200, "Longest title accepted."),
        ],
        code=_TYPED_CRUD,
        filename="api/notes/[[...id]].py",
        tags=["crud", "msgspec", "typed"],
    ),
    Template(
        name="ai-summarize",
        title="AI summary",
        description="Summarizes posted text with the built-in ai helper; streams it on request.",
        category="ai",
        variables=[
            _v("max_words", "integer", 60, "Longest summary asked for, in words."),
            _v("temperature", "number", 0.2, "Sampling temperature (@ai-temperature)."),
        ],
        code=_AI_SUMMARIZE,
        filename="ai/summarize.py",
        tags=["ai", "llm", "stream"],
    ),
    Template(
        name="ai-extract",
        title="AI extraction",
        description="Extracts a typed contact (msgspec Struct) from posted text with ai.object.",
        category="ai",
        variables=[
            _v(
                "instructions",
                "string",
                "Extract the contact person mentioned in this text.",
                "What the model is asked to do with the text.",
            )
        ],
        code=_AI_EXTRACT,
        filename="ai/extract.py",
        tags=["ai", "llm", "msgspec", "typed"],
    ),
]
for _t in _BUILTIN_LIST:
    _t.builtin = True

BUILTINS: dict[str, Template] = {t.name: t for t in _BUILTIN_LIST}


def _check_filename(filename: str) -> None:
    parts = filename.split("/")
    if (
        not filename.endswith(".py")
        or len(filename) > 255
        or any(p in ("", ".", "..") or p.startswith(".") for p in parts)
        or not all(_FILENAME_PART.match(p) for p in parts)
    ):
        raise TemplateInvalid(
            f"filename {filename!r} must be a relative path of plain names ending in .py",
            field="filename",
        )


# -- store ----------------------------------------------------------------------
class TemplateStore:
    """Built-in templates plus custom ones kept in ``custom_dir`` (one writer: the control worker)."""

    def __init__(self, custom_dir: str) -> None:
        self.custom_dir = custom_dir
        self._lock = threading.Lock()

    # paths and reading
    def _paths(self, name: str) -> tuple[str, str]:
        base = os.path.join(self.custom_dir, name)
        return base + ".py", base + ".json"

    def _read_meta(self, name: str) -> _Meta | None:
        _, meta_path = self._paths(name)
        try:
            with open(meta_path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        try:
            return msgspec.json.decode(raw, type=_Meta)
        except msgspec.DecodeError as exc:
            raise TemplateError(
                f"stored template {name!r} has unreadable metadata: {exc}", status=500
            ) from None

    def _read_custom(self, name: str) -> Template | None:
        meta = self._read_meta(name)
        if meta is None:
            return None
        code_path, _ = self._paths(name)
        try:
            with open(code_path, encoding="utf-8") as f:
                code = f.read()
        except (FileNotFoundError, UnicodeDecodeError) as exc:
            raise TemplateError(
                f"stored template {name!r} has no readable code: {exc}", status=500
            ) from None
        return self._template(name, meta, code)

    @staticmethod
    def _template(name: str, meta: _Meta, code: str) -> Template:
        return Template(
            name=name,
            title=meta.title or name,
            description=meta.description,
            category=meta.category,
            variables=meta.variables,
            code=code,
            filename=meta.filename or f"{name}.py",
            builtin=False,
            tags=meta.tags,
        )

    def _custom_names(self) -> list[str]:
        try:
            entries = os.listdir(self.custom_dir)
        except FileNotFoundError:
            return []
        names = []
        for entry in entries:
            if entry.endswith(".json") and not entry.startswith("."):
                name = entry[:-5]
                if NAME_RE.match(name) and name not in BUILTINS:
                    names.append(name)
        return sorted(names)

    # validation
    @staticmethod
    def _meta(name: str, metadata: Any) -> _Meta:
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise TemplateInvalid(f"metadata must be an object, got {_type_name(metadata)}")
        try:
            meta = msgspec.convert(metadata, _Meta)
        except msgspec.ValidationError as exc:
            raise TemplateInvalid(f"invalid metadata: {exc}") from None
        if meta.name is not None and meta.name != name:
            raise TemplateInvalid(
                f"metadata name {meta.name!r} does not match {name!r}", field="name"
            )
        if meta.builtin:
            raise TemplateInvalid("a custom template cannot be built-in", field="builtin")
        if not _CATEGORY.match(meta.category):
            raise TemplateInvalid(
                f"category {meta.category!r} must be lowercase letters, digits and dashes",
                field="category",
            )
        meta.name = name
        meta.filename = meta.filename or f"{name}.py"
        _check_filename(meta.filename)
        return meta

    @staticmethod
    def _check_name(name: Any) -> str:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise TemplateInvalid(
                f"template name {name!r} must match {NAME_RE.pattern} (lowercase kebab-case)",
                field="name",
            )
        return name

    def _write(self, name: str, code: str | None, meta: _Meta | None, *, create: bool) -> None:
        os.makedirs(self.custom_dir, mode=0o700, exist_ok=True)
        code_path, meta_path = self._paths(name)
        if code is not None:
            write_atomic(code_path, code.encode("utf-8"))
        if meta is not None:
            data = msgspec.json.format(msgspec.json.encode(meta), indent=2) + b"\n"
            try:
                write_atomic(meta_path, data, exclusive=create)
            except FileExistsError:
                raise TemplateConflict(f"template {name!r} already exists") from None

    # public API
    def list(
        self,
        category: str | None = None,
        include_builtin: bool = True,
        include_custom: bool = True,
    ) -> list[dict[str, Any]]:
        """Summaries (no code): built-ins in their fixed order, then custom ones by name."""
        found: list[Template] = []
        if include_builtin:
            found += BUILTINS.values()
        if include_custom:
            for name in self._custom_names():
                try:
                    meta = self._read_meta(name)
                except TemplateError:
                    continue  # a broken file must not hide the others
                if meta is not None:
                    found.append(self._template(name, meta, ""))
        return [summary(t) for t in found if category is None or t.category == category]

    def get(self, name: str) -> Template:
        """The template with its code (a copy: callers may change it freely)."""
        if name in BUILTINS:
            return copy.deepcopy(BUILTINS[name])
        if isinstance(name, str) and NAME_RE.match(name):
            found = self._read_custom(name)
            if found is not None:
                return found
        raise TemplateNotFound(f"no template named {name!r}", name=name)

    def render(self, name: str, variables: dict[str, Any] | None = None) -> str:
        """Code of ``name`` with ``variables`` (defaults for the rest) substituted safely."""
        return render_template(self.get(name), variables)

    def create_custom(self, name: str, code: str, metadata: dict[str, Any] | None) -> Template:
        """Validate and store a new custom template; 409 when the name is taken."""
        self._check_name(name)
        if name in BUILTINS:
            raise TemplateConflict(f"{name!r} is a built-in template name", name=name)
        meta = self._meta(name, metadata)
        check_code(code, meta.variables)
        with self._lock:
            if os.path.exists(self._paths(name)[1]):
                raise TemplateConflict(f"template {name!r} already exists", name=name)
            self._write(name, code, meta, create=True)
        return self._template(name, meta, code)

    def update_custom(
        self, name: str, code: str | None = None, metadata: dict[str, Any] | None = None
    ) -> Template:
        """Replace the code and/or metadata fields given; the rest is kept."""
        if name in BUILTINS:
            raise TemplateConflict(f"{name!r} is a built-in template and cannot change", name=name)
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise TemplateNotFound(f"no custom template named {name!r}", name=name)
        with self._lock:
            current = self._read_custom(name)
            if current is None:
                raise TemplateNotFound(f"no custom template named {name!r}", name=name)
            meta = None
            if metadata is not None:
                if not isinstance(metadata, dict):
                    raise TemplateInvalid(f"metadata must be an object, got {_type_name(metadata)}")
                merged = summary(current)
                merged.pop("builtin", None)
                merged.update(metadata)
                meta = self._meta(name, merged)
            new_code = current.code if code is None else code
            variables = meta.variables if meta is not None else current.variables
            check_code(new_code, variables)
            self._write(name, code, meta, create=False)
        return self.get(name)

    def delete_custom(self, name: str) -> bool:
        """Remove a custom template; False when there is none (built-ins: 409)."""
        if name in BUILTINS:
            raise TemplateConflict(f"{name!r} is a built-in template and cannot be deleted")
        if not isinstance(name, str) or not NAME_RE.match(name):
            return False
        code_path, meta_path = self._paths(name)
        with self._lock:
            try:
                os.unlink(meta_path)  # first: without metadata the template does not exist
            except FileNotFoundError:
                return False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(code_path)
            fsync_dir(self.custom_dir)
        return True
