"""Management API: magic comments (schema, read, update, bulk-update)."""

from __future__ import annotations

import os
from typing import Any

import falcon
import falcon.asgi
import msgspec

from hoodyexec.engine import magic
from hoodyexec.engine.store import safe_path, unreadable
from hoodyexec.errors import BadRequest, NotFound
from hoodyexec.files import write_atomic
from hoodyexec.http import errors
from hoodyexec.http.context import Context
from hoodyexec.http.endpoint import FalconApp
from hoodyexec.http.spec import Scoped

from .schemas import (
    BULK,
    READ,
    SCHEMA,
    UPDATE,
    Comments,
    MagicBulkBody,
    MagicReadQuery,
    MagicUpdateBody,
)


def _refused(exc: ValueError) -> BadRequest:
    """A 400 naming the culprit: ``comments.<name>`` for an unsafe value, else ``comments``."""
    name = exc.name if isinstance(exc, magic.UnsafeText) else None
    return BadRequest(str(exc), field=f"comments.{name}" if name else "comments")


def _comments(comments: Comments) -> Comments:
    """The ``comments`` field, checked in full before any file is read or written:
    names and values are one safe line each, and the values are valid (applied to
    an empty file, they must parse without a problem)."""
    try:
        magic.check_comments(comments)
    except ValueError as exc:
        raise _refused(exc) from None
    _apply("", comments)
    return comments


def _apply(source: str, comments: dict[str, Any] | str) -> tuple[str, dict[str, Any]]:
    try:
        new = magic.rewrite(source, comments)
    except ValueError as exc:
        raise _refused(exc) from None
    parsed, problems = magic.parse(new)
    if problems:
        raise BadRequest(
            f"Invalid magic comment: {problems[0]}", problems=[str(p) for p in problems]
        )
    return new, parsed.raw


def _read(target: str, rel: str, errors: str = "strict") -> str:
    """The script's text; 404 when it is not a file (or vanished since it was checked)."""
    try:
        if os.path.isfile(target):
            with open(target, encoding="utf-8", errors=errors) as fh:
                return fh.read()
    except (FileNotFoundError, NotADirectoryError):
        pass
    raise NotFound(f"No such script: {rel}", path=rel)


NOT_A_SCRIPT = "not a script: magic comments live in .py files"


def _script_only(rel: str) -> None:
    """Magic comments are Python comments: written into any other file (a ``.json``)
    they would corrupt it, past the check its own write would have made."""
    if not magic.is_script(rel):
        raise BadRequest(f"{rel} is {NOT_A_SCRIPT}", path=rel, field="path")


class MagicAPI:
    def __init__(self, ctx: Context) -> None:
        assert ctx.store is not None
        self.ctx = ctx
        self.store = ctx.store

    async def schema(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, __: None
    ) -> None:
        # Defaults another feature knows better (the AI feature: @ai-* on this kit).
        found = self.ctx.facts.get("magic-defaults")
        overrides = found() if found is not None else {}
        schema = []
        for spec in magic.SCHEMA:
            item = msgspec.to_builtins(spec)
            if spec.name in overrides:
                item["default"] = overrides[spec.name]
            schema.append(item)
        errors.json_response(
            resp,
            {"success": True, "prefixes": list(magic.PREFIXES), "schema": schema},
        )

    async def read(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, query: MagicReadQuery
    ) -> None:
        target, rel = safe_path(self.ctx.scope(req, None, query), query.path)
        source = _read(target, rel, errors="replace")
        parsed, problems = magic.parse(source)
        values = {k: v for k, v in msgspec.to_builtins(parsed).items() if k not in ("raw", "lines")}
        errors.json_response(
            resp,
            {
                "success": True,
                "path": rel,
                "magicComments": parsed.raw,
                "lines": parsed.lines,
                "values": values,
                "valid": not problems,
                "errors": [msgspec.to_builtins(p) for p in problems],
            },
        )

    async def update(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        body: MagicUpdateBody,
        query: Scoped,
    ) -> None:
        scope = self.ctx.scope(req, body, query)
        target, rel = safe_path(scope, body.path)
        _script_only(rel)
        comments = _comments(body.comments)
        source = _read(target, rel)
        new, parsed = _apply(source, comments)
        dry = body.dry_run
        if not dry and new != source:
            write_atomic(target, new.encode("utf-8"))
            await self.ctx.invalidated(scope, rel)
        errors.json_response(
            resp,
            {
                "success": True,
                "path": rel,
                "dry_run": dry,
                "changed": new != source,
                "magicComments": parsed,
                **({"content": new} if dry else {}),
            },
        )

    async def bulk(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        body: MagicBulkBody,
        query: Scoped,
    ) -> None:
        scope = self.ctx.scope(req, body, query)
        directory = body.directory
        extension = body.extension or ".py"
        if not extension.startswith("."):
            extension = "." + extension
        comments = _comments(body.comments)
        dry = body.dry_run
        recursive = body.recursive
        base, directory = safe_path(scope, directory, allow_root=True)
        if not os.path.isdir(base):
            raise NotFound(f"No such folder: {directory or '/'}", path=directory)
        results = []
        written: list[str] = []
        for rel in self.store.walk(scope, base, recursive):
            if not rel.endswith(extension):
                continue
            if not magic.is_script(rel):
                results.append(
                    {"path": rel, "success": True, "changed": False, "skipped": NOT_A_SCRIPT}
                )
                continue
            path = os.path.join(scope.root, rel)
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    source = fh.read()
            except OSError as exc:
                reason = unreadable(path, exc)
                if reason is not None:  # None: deleted since the walk listed it
                    results.append(
                        {"path": rel, "success": True, "changed": False, "skipped": reason}
                    )
                continue
            try:
                new, parsed = _apply(source, comments)
            except BadRequest as exc:
                results.append({"path": rel, "success": False, "error": exc.message})
                continue
            if not dry and new != source:
                try:
                    write_atomic(path, new.encode("utf-8"))
                except (FileNotFoundError, NotADirectoryError):
                    continue  # its folder was deleted meanwhile: nothing to update
                written.append(rel)
            results.append(
                {"path": rel, "success": True, "changed": new != source, "magicComments": parsed}
            )
        if written:
            await self.ctx.invalidated(scope, *written)
        errors.json_response(
            resp,
            {
                "success": all(r["success"] for r in results),
                "dry_run": dry,
                "directory": directory,
                "extension": extension,
                "results": results,
                "count": len(results),
                "changed": sum(1 for r in results if r.get("changed")),
            },
        )


def register(app: FalconApp, ctx: Context) -> None:
    if ctx.home is None:
        return
    api = MagicAPI(ctx)
    ctx.route(SCHEMA, api.schema)
    ctx.route(READ, api.read)
    ctx.route(UPDATE, api.update)
    ctx.route(BULK, api.bulk)
