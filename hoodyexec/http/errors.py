"""Exceptions → JSON bodies with ``error``, in one place for every app."""

from __future__ import annotations

import logging
from typing import Any

import falcon
import falcon.asgi
import msgspec

from hoodyexec.errors import HoodyError
from hoodyexec.http.endpoint import FalconApp

log = logging.getLogger("hoodyexec.http")
_encode = msgspec.json.Encoder().encode


def _title(ex: falcon.HTTPError) -> str:
    # falcon titles read "404 Not Found"; the status is already on the response.
    title = ex.title or ""
    code, _, rest = title.partition(" ")
    return rest if code.isdigit() and rest else title


def error_body(ex: falcon.HTTPError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": ex.description or _title(ex)}
    if ex.description:
        body["title"] = _title(ex)
    return body


def _serialize(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.data = _encode(error_body(ex))


async def _hoody_error(req: Any, resp: Any, ex: HoodyError, params: Any) -> None:
    resp.status = ex.status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = _encode(ex.to_dict())
    for name, value in ex.headers.items():
        resp.set_header(name, value)
    if ex.status == 503 and "Retry-After" not in ex.headers:
        resp.set_header("Retry-After", "1")


async def _unexpected(req: Any, resp: Any, ex: Exception, params: Any) -> None:
    if isinstance(ex, falcon.HTTPError):
        raise ex
    log.exception("unhandled error on %s %s", req.method, req.path)
    resp.status = 500
    resp.content_type = falcon.MEDIA_JSON
    # The message of an unexpected error may hold machine paths or other
    # internals: it goes to the kit's log, the client gets its type only.
    resp.data = _encode(
        {"error": "internal error (details in the kit's log)", "type": type(ex).__name__}
    )


def install(app: FalconApp) -> None:
    app.set_error_serializer(_serialize)
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(HoodyError, _hoody_error)


def json_response(resp: falcon.Response, body: Any, status: int = 200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = _encode(body)


def ok(resp: falcon.Response, result: Any, status: int = 200) -> None:
    """A service's result on the wire: ``{"success": true, ...its fields}``."""
    json_response(resp, {"success": True, **msgspec.to_builtins(result)}, status)
