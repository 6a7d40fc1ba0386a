"""Management API: validation (script, syntax, typescript, dependencies,
magic-comments, return-type). ``typescript`` means the Python static checks
(see ``hoodyexec/validation.py``)."""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi

from hoodyexec.errors import BadRequest
from hoodyexec.features.validate import service as validation
from hoodyexec.http import errors
from hoodyexec.http.body import json_body, need
from hoodyexec.http.context import Context

_MISSING = object()


class ValidateAPI:
    async def _code(self, req: falcon.asgi.Request) -> str:
        body = await json_body(req)
        return need(body, "code")

    async def on_post_script(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        errors.json_response(resp, validation.validate_script(await self._code(req)))

    async def on_post_syntax(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        errors.json_response(resp, validation.check_syntax(await self._code(req)))

    async def on_post_typescript(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        errors.json_response(resp, validation.check_static(await self._code(req)))

    async def on_post_dependencies(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        errors.json_response(resp, validation.check_dependencies(await self._code(req)))

    async def on_post_magic(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        errors.json_response(resp, validation.check_magic(await self._code(req)))

    async def on_post_return(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body: dict[str, Any] = await json_body(req)
        type_definition = need(body, "typeDefinition")
        value = body.get("value", _MISSING)
        if value is _MISSING:
            raise BadRequest("value is required", field="value")
        errors.json_response(resp, validation.check_return_type(type_definition, value))


def register(app: falcon.asgi.App, ctx: Context) -> None:
    api = ValidateAPI()
    base = "/api/v1/exec/validate/"
    for name, suffix in (
        ("script", "script"),
        ("syntax", "syntax"),
        ("typescript", "typescript"),
        ("dependencies", "dependencies"),
        ("magic-comments", "magic"),
        ("return-type", "return"),
    ):
        app.add_route(base + name, api, suffix=suffix)
