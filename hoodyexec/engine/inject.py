"""Injection plans compiled to getters: how each parameter is filled per request.

``compiler.plan`` resolves every parameter of an entry function once per script
version into a ``Param`` (where its value comes from). Here each ``Param``
becomes one getter, a function of the request's ``Call``, also once per script
version (when the ``Entry`` is made). A request then fills its keyword
arguments with one getter call per parameter (``name: get(call)`` for each
``(name, get)`` of ``entry.inject``): no comparison of source names per
parameter and request, the way starlette compiles its path convertors once per
route.

No falcon here: the ``SRC`` value is the HTTP layer's request, of which only
``content_type`` is read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import msgspec

from hoodyexec.engine.runtime import AI, Metadata, Shared
from hoodyexec.errors import HoodyError

if TYPE_CHECKING:
    from hoodyexec.engine.compiler import Param

# What one request offers to the getters: a plain tuple in ``CALL_FIELDS`` order,
# built by the sink only for entries with at least one getter. PERF: a tuple is
# the cheapest context to build per request (an object with slots and an
# ``__init__`` costs several times more than the getters it serves).
CALL_FIELDS = (
    "req",  # runtime.Req, or None unless the entry needs it (Entry.needs_req)
    "res",  # runtime.Res, or None unless a parameter is ``res``
    "console",
    "body",  # the parsed body, or None
    "params",  # route params
    "raw",  # the raw body bytes
    "src",  # the HTTP layer's request: only ``content_type`` is read
    "script",  # the script's path in its instance
    "hostname",
    "inst",  # the catalog's instance: subdomain, exec_id, state_key
    "trigger",
    "magic",  # the script's magic comments, raw
    "store",  # the SharedStore
    "ai",  # the script's runtime.ScriptAI
    "ws",  # a WebSocket session's engine.websocket.WebSocket (only WebSocket calls offer it)
)
(
    REQ,
    RES,
    CONSOLE,
    BODY,
    PARAMS,
    RAW,
    SRC,
    SCRIPT,
    HOSTNAME,
    INST,
    TRIGGER,
    MAGIC,
    STORE,
    AI_FIELD,
    WS,
) = range(len(CALL_FIELDS))
Call = tuple[Any, ...]
Getter = Callable[[Call], Any]

_FIELD_PATH = re.compile(r"at `(\$[^`]*)`")

# Sources whose getter reads ``REQ``: the sink builds a ``Req`` only for
# entries with one of them.
NEEDS_REQ = frozenset({"req", "query", "metadata", "typed-query", "typed"})


def _query(c: Call) -> Any:
    return c[REQ].query


# PERF: context values are C-level item getters (no Python frame per call).
_DIRECT: dict[str, Getter] = {
    "req": itemgetter(REQ),
    "res": itemgetter(RES),
    "console": itemgetter(CONSOLE),
    "body": itemgetter(BODY),
    "params": itemgetter(PARAMS),
    "query": _query,
    "ws": itemgetter(WS),
}


def _metadata(c: Call) -> Metadata:
    inst = c[INST]
    return Metadata(
        c[REQ], c[SCRIPT], c[HOSTNAME], inst.subdomain, inst.exec_id, c[MAGIC], c[TRIGGER]
    )


def _shared(c: Call) -> Shared:
    return Shared(c[STORE], c[INST].state_key)


def _ai(c: Call) -> Any:
    return c[AI_FIELD] or AI


def _route(name: str, tp: Any) -> Getter:
    if tp is None:
        return lambda c: c[PARAMS].get(name)
    field = f"$.{name}"

    def get(c: Call) -> Any:
        value = c[PARAMS].get(name)
        if value is not None:
            value = convert(value, tp, "route parameter", field, strict=False)
        return value

    return get


def _typed_query(tp: Any) -> Getter:
    return lambda c: convert(dict(c[REQ].query), tp, "query", None, strict=False)


def _typed_body(tp: Any, query_without_body: bool) -> Getter:
    """A typed ``body`` (or, with ``query_without_body``, any typed struct: read
    from the query string when the request has no body)."""

    def get(c: Call) -> Any:
        raw = c[RAW]
        if query_without_body and not raw:
            return convert(dict(c[REQ].query), tp, "query", None, strict=False)
        body = c[BODY]
        if isinstance(body, bytes | str) or body is None:
            return decode_raw(raw, tp)
        return convert(
            body,
            tp,
            "body",
            None,
            strict=not isinstance(body, dict)
            or (c[SRC].content_type or "").startswith("application/json"),
        )

    return get


def getter(p: Param) -> Getter | None:
    """The getter of one parameter; None when it keeps its default (not passed)."""
    src = p.source
    direct = _DIRECT.get(src)
    if direct is not None:
        return direct
    if src == "metadata":
        return _metadata
    if src == "shared":
        return _shared
    if src == "ai":
        return _ai
    if src == "route":
        return _route(p.name, p.type)
    if src == "typed-query":
        return _typed_query(p.type)
    if src in ("typed-body", "typed"):
        return _typed_body(p.type, query_without_body=src == "typed")
    if src == "default":
        return None
    raise ValueError(f"unknown injection source {src!r}")


def compile_plan(params: list[Param]) -> tuple[tuple[str, Getter], ...]:
    """(name, getter) per parameter that receives a value, in signature order."""
    out = []
    for p in params:
        get = getter(p)
        if get is not None:
            out.append((p.name, get))
    return tuple(out)


def _field(exc: Exception) -> str | None:
    m = _FIELD_PATH.search(str(exc))
    return m.group(1) if m else None


def convert(value: Any, tp: Any, where: str, field: str | None, strict: bool) -> Any:
    """``value`` as ``tp``; a 400 naming the field (``$.qty``) when it is not."""
    try:
        return msgspec.convert(value, tp, strict=strict)
    except msgspec.ValidationError as exc:
        path = _field(exc) or field
        raise HoodyError(f"Invalid {where}: {exc}", status=400, field=path) from None


def decode_raw(raw: bytes, tp: Any) -> Any:
    """A raw body decoded as JSON straight into ``tp`` (an empty body is ``{}``)."""
    try:
        return msgspec.json.decode(raw or b"{}", type=tp)
    except msgspec.ValidationError as exc:
        raise HoodyError(f"Invalid body: {exc}", status=400, field=_field(exc)) from None
    except msgspec.DecodeError as exc:
        raise HoodyError("Invalid JSON", status=400, detail=str(exc)) from None
    except RecursionError:  # msgspec's answer to nesting like b"[" * 100000
        raise HoodyError("Invalid JSON", status=400, detail="nested too deeply") from None
