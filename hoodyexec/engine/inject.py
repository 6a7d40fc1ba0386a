"""Injection plans compiled to getters: how each parameter is filled per request.

``compiler.plan`` resolves every parameter of an entry function once per script
version into a ``Param`` (where its value comes from). Here each ``Param``
becomes one getter, a function of the request's ``Call``, also once per script
version (when the ``Entry`` is made). A request then fills its keyword
arguments with ``{name: get(call) for name, get in entry.inject}``: no
comparison of source names per parameter and request, the way starlette
compiles its path convertors once per route.

No falcon here: ``Call.src`` is the HTTP layer's request, of which only
``content_type`` is read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import msgspec

from hoodyexec.engine.runtime import AI, Metadata, Shared
from hoodyexec.errors import HoodyError

if TYPE_CHECKING:
    from hoodyexec.engine.compiler import Param

Getter = Callable[["Call"], Any]

_FIELD_PATH = re.compile(r"at `(\$[^`]*)`")


class Call:
    """What one request offers to the getters of an entry.

    Built per request, and only for entries with at least one getter; the
    fields are what the sink already holds, so building it costs one small
    object. ``req`` is None unless the entry needs it (``Entry.needs_req``).
    """

    __slots__ = (
        "req",
        "res",
        "console",
        "body",
        "params",
        "raw",
        "src",
        "script",
        "hostname",
        "inst",
        "trigger",
        "magic",
        "store",
    )

    def __init__(
        self,
        req: Any,
        res: Any,
        console: Any,
        body: Any,
        params: dict[str, str],
        raw: bytes,
        src: Any,
        script: str,
        hostname: str,
        inst: Any,
        trigger: str,
        magic: Any,
        store: Any,
    ) -> None:
        self.req = req  # runtime.Req
        self.res = res  # runtime.Res, or None when no parameter is ``res``
        self.console = console
        self.body = body  # parsed body, or None
        self.params = params  # route params
        self.raw = raw  # raw body bytes
        self.src = src  # the HTTP layer's request: only ``content_type`` is read
        self.script = script  # the script's path in its instance
        self.hostname = hostname
        self.inst = inst  # catalog instance: subdomain, exec_id, state_key
        self.trigger = trigger
        self.magic = magic  # the script's magic comments, raw
        self.store = store  # SharedStore


# Sources whose getter reads ``Call.req``: the sink builds a ``Req`` only for
# entries with one of them.
NEEDS_REQ = frozenset({"req", "query", "metadata", "typed-query", "typed"})

# PERF: context values are C-level attribute getters (no Python frame per call).
_DIRECT: dict[str, Getter] = {
    "req": attrgetter("req"),
    "res": attrgetter("res"),
    "console": attrgetter("console"),
    "body": attrgetter("body"),
    "params": attrgetter("params"),
    "query": attrgetter("req.query"),
}


def _metadata(c: Call) -> Metadata:
    inst = c.inst
    return Metadata(c.req, c.script, c.hostname, inst.subdomain, inst.exec_id, c.magic, c.trigger)


def _shared(c: Call) -> Shared:
    return Shared(c.store, c.inst.state_key)


def _ai(c: Call) -> Any:
    return AI


def _route(name: str, tp: Any) -> Getter:
    if tp is None:
        return lambda c: c.params.get(name)
    field = f"$.{name}"

    def get(c: Call) -> Any:
        value = c.params.get(name)
        if value is not None:
            value = convert(value, tp, "route parameter", field, strict=False)
        return value

    return get


def _typed_query(tp: Any) -> Getter:
    return lambda c: convert(dict(c.req.query), tp, "query", None, strict=False)


def _typed_body(tp: Any, query_without_body: bool) -> Getter:
    """A typed ``body`` (or, with ``query_without_body``, any typed struct: read
    from the query string when the request has no body)."""

    def get(c: Call) -> Any:
        if query_without_body and not c.raw:
            return convert(dict(c.req.query), tp, "query", None, strict=False)
        body = c.body
        if isinstance(body, bytes | str) or body is None:
            return decode_raw(c.raw, tp)
        return convert(
            body,
            tp,
            "body",
            None,
            strict=not isinstance(body, dict)
            or (c.src.content_type or "").startswith("application/json"),
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
