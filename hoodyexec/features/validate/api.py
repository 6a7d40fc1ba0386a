"""Management API: validation (script, syntax, typescript, dependencies,
magic-comments, return-type). ``typescript`` means the Python static checks
(see ``hoodyexec/validation.py``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import falcon
import falcon.asgi

from hoodyexec.features.validate import service as validation
from hoodyexec.http import errors
from hoodyexec.http.context import Context
from hoodyexec.http.endpoint import FalconApp, Handler

from .schemas import (
    DEPENDENCIES,
    MAGIC,
    RETURN_TYPE,
    SCRIPT,
    SYNTAX,
    TYPESCRIPT,
    CodeBody,
    ReturnTypeBody,
)


class ValidateAPI:
    """Each check on ``code`` answers its report; none raises for bad code."""

    @staticmethod
    def check(run: Callable[[str], dict[str, Any]]) -> Handler:
        async def handle(
            req: falcon.asgi.Request, resp: falcon.asgi.Response, body: CodeBody, _: None
        ) -> None:
            errors.json_response(resp, run(body.code))

        return handle

    @staticmethod
    async def return_type(
        req: falcon.asgi.Request, resp: falcon.asgi.Response, body: ReturnTypeBody, _: None
    ) -> None:
        errors.json_response(resp, validation.check_return_type(body.typeDefinition, body.value))


def register(app: FalconApp, ctx: Context) -> None:
    check = ValidateAPI.check
    ctx.route(SCRIPT, check(functools.partial(validation.validate_script, normalize=True)))
    ctx.route(SYNTAX, check(validation.check_syntax))
    ctx.route(TYPESCRIPT, check(validation.check_static))
    ctx.route(DEPENDENCIES, check(validation.check_dependencies))
    ctx.route(MAGIC, check(validation.check_magic))
    ctx.route(RETURN_TYPE, ValidateAPI.return_type)
