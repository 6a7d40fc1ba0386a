"""One typed declaration per management endpoint.

An ``Endpoint`` names its method and path, a msgspec Struct for its JSON body
and one for its query string (aliases such as ``exec_id`` → ``execId``
included), and the statuses it can really answer. That one declaration decodes
and validates the request (a bad or missing field is a 400 naming it), is what
``http/endpoint.py`` registers, and is what ``/openapi.json`` is generated from
(``msgspec.json.schema_components``).

No falcon here: features' schemas and the OpenAPI builder import it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec

from hoodyexec.errors import BadRequest

_AT = re.compile(r"at `\$\.?([^`]*)`")
_MISSING = re.compile(r"missing required field `([^`]+)`")

# Statuses every implemented endpoint may answer besides its own.
COMMON: Mapping[int, str] = {401: "Missing or invalid management token"}


class Fields(msgspec.Struct, forbid_unknown_fields=False, omit_defaults=True, kw_only=True):
    """Base of request bodies and queries. ``aliases`` maps other accepted names
    to a field's name (the first spelling present wins)."""

    aliases: ClassVar[dict[str, str]] = {}


class Scoped(Fields, kw_only=True):
    """The instance a call is about: query wins over body, else the Host's."""

    execId: str | None = None  # noqa: N815 - the API's name
    subdomain: str | None = None
    aliases: ClassVar[dict[str, str]] = {"exec_id": "execId"}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    summary: str
    tag: str
    body: type[Fields] | None = None
    query: type[Fields] | None = None
    responses: Mapping[int, str] = field(default_factory=lambda: {200: "OK"})
    body_required: bool = True
    public: bool = False  # no token needed (health, the OpenAPI documents)
    description: str = ""
    extension: bool = False  # ours, not the reference's (x-extension in the document)

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)


def field_of(exc: msgspec.ValidationError) -> str | None:
    """The field a msgspec validation error is about (``None`` for the whole body)."""
    text = str(exc)
    m = _MISSING.search(text) or _AT.search(text)
    if m is None or not m.group(1):
        return None
    return m.group(1)


def _renamed(
    raw: Mapping[str, Any], aliases: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """``raw`` with aliases replaced by field names, and field name → the name sent."""
    out: dict[str, Any] = {}
    sent: dict[str, str] = {}
    for key, value in raw.items():
        name = aliases.get(key, key)
        if name not in out:
            out[name] = value
            sent[name] = key
    return out, sent


def convert(raw: Mapping[str, Any], type_: type[Fields], where: str, *, strict: bool) -> Any:
    """``raw`` (a decoded JSON object or the query parameters) as ``type_``; otherwise a
    400 naming the field as the client spelled it. Query strings convert laxly
    ("5" → 5, "true" → True); so do bodies (``"createDirs": "false"`` is accepted, as
    it always was), but a number is never taken for a string."""
    data, sent = _renamed(raw, type_.aliases)
    try:
        return msgspec.convert(data, type_, strict=strict)
    except msgspec.ValidationError as exc:
        name = field_of(exc)
        shown = sent.get(name, name) if name else None
        if name and _MISSING.search(str(exc)):
            raise BadRequest(f"{shown} is required", field=shown) from None
        message = str(exc).replace(f"$.{name}", f"$.{shown}") if name else str(exc)
        raise BadRequest(f"Invalid {where}: {message}", field=shown) from None


def decode_body(raw: bytes, type_: type[Fields]) -> Any:
    """A JSON body as ``type_``: malformed or too deeply nested JSON, a non-object
    and a bad field are all 400s."""
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise BadRequest("Invalid JSON", detail=str(exc)) from None
    except RecursionError:
        raise BadRequest("Invalid JSON", detail="nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest("the JSON body must be an object")
    return convert(data, type_, "request body", strict=False)
