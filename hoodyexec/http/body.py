"""A script call's request body, parsed by content type.

(Management endpoints decode their bodies from their declarations:
``http/spec.py``.)"""

from __future__ import annotations

import email.parser
import email.policy
from typing import Any
from urllib.parse import parse_qs

import msgspec

from hoodyexec.errors import HoodyError

_decode = msgspec.json.Decoder().decode


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
        # The HTTP policy decodes RFC 2231 values to str; only compat32 gives a tuple.
        if not name or not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)  # bytes, or None for a nested multipart
        data = payload if isinstance(payload, bytes) else b""
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
