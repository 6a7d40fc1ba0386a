"""Request bodies: the management API's JSON bodies and a script call's body.

One decoder for every JSON body (deep nesting, malformed input and wrong types
are all 400s naming what is wrong), small typed accessors for hand-read fields,
and the script body parser by content type.
"""

from __future__ import annotations

import email.parser
import email.policy
from typing import Any
from urllib.parse import parse_qs

import falcon.asgi
import msgspec

from hoodyexec.errors import BadRequest, HoodyError

_decode = msgspec.json.Decoder().decode


def decode_json(raw: bytes, type_: Any = None) -> Any:
    """Decode a request body (into ``type_`` when given); every problem is a 400.

    msgspec raises ``RecursionError`` (not ``DecodeError``) for nesting deeper
    than it follows (``[[[[...``); that is malformed input too, not a 500.
    """
    try:
        return _decode(raw) if type_ is None else msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"Invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest("Invalid JSON", detail=str(exc)) from None
    except RecursionError:
        raise BadRequest("Invalid JSON", detail="nested too deeply") from None


async def json_body(req: falcon.asgi.Request, *, required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object; every problem is a 400."""
    raw = await req.stream.read()
    if not raw:
        if required:
            raise BadRequest("a JSON body is required")
        return {}
    body = decode_json(raw)
    if not isinstance(body, dict):
        raise BadRequest("the JSON body must be an object")
    return body


def need(body: dict[str, Any], key: str, kind: type | tuple[type, ...] = str) -> Any:
    if key not in body or body[key] is None:
        raise BadRequest(f"{key} is required", field=key)
    value = body[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise BadRequest(f"{key} must be a {name}", field=key)
    return value


def flag(value: Any, name: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise BadRequest(f"{name} must be true or false", field=name)


async def read_body(req: falcon.asgi.Request, type_: Any) -> Any:
    """Decode a JSON body into ``type_``; every problem is a 400 naming the field."""
    raw = await req.stream.read()
    if not raw:
        raise BadRequest("a JSON body is required")
    return decode_json(raw, type_)


def parse_body(raw: bytes, content_type: str | None) -> Any:
    """Request body by content type; malformed JSON is a 400 before the script runs."""
    if not raw:
        return None
    ct = (content_type or "").split(";", 1)[0].strip().lower()
    if ct == "application/json" or ct.endswith("+json"):
        try:
            return _decode(raw)
        except msgspec.DecodeError as exc:
            raise HoodyError("Invalid JSON", status=400, detail=str(exc)) from None
        except RecursionError:  # msgspec's answer to nesting like b"[" * 100000
            raise HoodyError("Invalid JSON", status=400, detail="nested too deeply") from None
    if ct == "application/x-www-form-urlencoded":
        form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] if len(v) == 1 else v for k, v in form.items()}
    if ct == "multipart/form-data":
        return _multipart(raw, content_type or "")
    if ct.startswith("text/"):
        charset = "utf-8"
        for piece in (content_type or "").split(";")[1:]:
            key, _, value = piece.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip('"')
        try:
            return raw.decode(charset, "replace")
        except LookupError:
            return raw.decode("utf-8", "replace")
    return raw


def _multipart(raw: bytes, content_type: str) -> dict[str, Any]:
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
    )
    if not msg.is_multipart():
        raise HoodyError("Invalid multipart body", status=400)
    out: dict[str, Any] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        value: Any
        if filename is not None:
            value = {"filename": filename, "content_type": part.get_content_type(), "data": data}
        else:
            value = data.decode(part.get_content_charset() or "utf-8", "replace")
        if name in out:
            prev = out[name]
            out[name] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[name] = value
    return out
