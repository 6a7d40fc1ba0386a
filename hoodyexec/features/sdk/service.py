"""SDK import, list, get and delete (no falcon here).

An import fetches an OpenAPI 3 document, generates ``_sdk/<id>.py`` (the
client), ``_sdk/_<id>_middleware.py`` (when given) and one proxy script per
route, and writes each through the scripts store (the kit's validation, atomic
writes). What it wrote is recorded in a manifest outside the scripts tree,
``<home>/sdk/<subdomain>/<execId>/<id>.json`` (0600), with each file's SHA-256:
the auth value lives there too, never in a generated file. A delete removes
exactly the files whose content is still what was generated.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import hashlib
import json
import os
import re
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from hoodyexec.clock import iso
from hoodyexec.engine import magic
from hoodyexec.engine.compiler import CONTEXT_NAMES
from hoodyexec.engine.store import Conflict, Scope, ScriptStore, safe_path
from hoodyexec.errors import BadRequest, NotFound
from hoodyexec.files import fsync_dir, write_atomic
from hoodyexec.home import DIR_MODE, Home

from . import document, source
from .generate import File, generate, middleware_path
from .schemas import SdkImport

ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- checking the request ----------------------------------------------------------
def pick_id(name: str | None, title: str) -> str:
    if name is not None:
        if not ID.match(name) or name in CONTEXT_NAMES:
            raise BadRequest(
                "name must be 1-40 of a-z, 0-9 and _, starting with a letter "
                f"(and not one of {', '.join(sorted(CONTEXT_NAMES))})",
                field="name",
            )
        return name
    slug = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")[:40].strip("_")
    if not slug or not slug[0].isalpha():
        slug = ("api_" + slug).strip("_")[:40]
    if slug in CONTEXT_NAMES or slug in ("sdk",):
        slug += "_api"
    return slug


def parse_auth(raw: str | None) -> dict[str, Any] | None:
    """``env:NAME`` or a header value, as stored in the manifest."""
    if raw is None or raw == "":
        return None
    if raw.startswith("env:"):
        name = raw[4:]
        if not _ENV.match(name):
            raise BadRequest(f"source_auth: {name!r} is not a variable name", field="source_auth")
        if name not in os.environ:
            raise BadRequest(
                f"source_auth: the environment variable {name} is not set in the kit's environment",
                field="source_auth",
            )
        return {"type": "env", "name": name, "header": "Authorization"}
    if magic.unsafe_char(raw) is not None or raw != raw.strip():
        raise BadRequest(
            "source_auth must be one header value, without control characters",
            field="source_auth",
        )
    return {"type": "header", "value": raw, "header": "Authorization"}


def auth_now(auth: dict[str, Any] | None) -> tuple[str, str] | None:
    if auth is None:
        return None
    value = os.environ.get(auth["name"], "") if auth["type"] == "env" else auth["value"]
    return str(auth["header"]), value


def check_magic_comments(text: str | None) -> str | None:
    if not text:
        return None
    lines = [line for line in text.splitlines() if line.strip()]
    for number, line in enumerate(lines, start=1):
        if not line.lstrip().startswith("#"):
            raise BadRequest(
                f"magic_comments: line {number} is not a comment: {line[:80]!r}",
                field="magic_comments",
            )
        if (bad := magic.unsafe_char(line)) is not None:
            raise BadRequest(
                f"magic_comments: line {number} holds the control character {bad!r}",
                field="magic_comments",
            )
    block = "\n".join(lines) + "\n"
    _, problems = magic.parse(block)
    if problems:
        raise BadRequest(
            "magic_comments: " + "; ".join(f"@{p.name}: {p.message}" for p in problems),
            field="magic_comments",
            errors=[{"line": p.line, "name": p.name, "message": p.message} for p in problems],
        )
    return block


def check_middleware(code: str | None, store: ScriptStore, scope: Scope, name: str) -> None:
    """The middleware passes the script checks and defines ``middleware(request)``."""
    if code is None:
        return
    rel = middleware_path(name)
    if store.validator is not None:
        folder = os.path.dirname(os.path.join(scope.root, rel))
        result = store.validator(code, folder, rel)
        if not result.get("valid"):
            raise BadRequest("middleware validation failed", field="middleware", validation=result)
    tree = ast.parse(code)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "middleware":
            if len(node.args.posonlyargs) + len(node.args.args) >= 1:
                return
    raise BadRequest(
        "middleware must define a function middleware(request) (sync or async), called "
        "before each upstream call",
        field="middleware",
    )


def shown_url(url: str) -> str:
    """``url`` without a password in it."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


# -- manifests -----------------------------------------------------------------------
class Manifests:
    """``<home>/sdk/<subdomain>/<execId>/<id>.json``: outside the scripts tree, 0600."""

    def __init__(self, home: Home) -> None:
        self.root = os.path.join(home.root, "sdk")

    def folder(self, scope: Scope) -> str:
        return os.path.join(self.root, scope.subdomain, scope.exec_id)

    def read(self, scope: Scope, sdk_id: str) -> dict[str, Any] | None:
        try:
            with open(os.path.join(self.folder(scope), sdk_id + ".json"), "rb") as fh:
                data: dict[str, Any] = json.loads(fh.read())
        except FileNotFoundError:
            return None
        return data

    def ids(self, scope: Scope) -> list[str]:
        try:
            names = os.listdir(self.folder(scope))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(n[:-5] for n in names if n.endswith(".json") and ID.match(n[:-5]))

    def save(self, scope: Scope, sdk_id: str, data: dict[str, Any]) -> None:
        folder = self.folder(scope)
        os.makedirs(folder, mode=DIR_MODE, exist_ok=True)
        write_atomic(os.path.join(folder, sdk_id + ".json"), json.dumps(data, indent=1).encode())

    def remove(self, scope: Scope, sdk_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.folder(scope), sdk_id + ".json"))
        fsync_dir(self.folder(scope))


# -- the service ---------------------------------------------------------------------
class SdkService:
    def __init__(self, home: Home, store: ScriptStore) -> None:
        self.home = home
        self.store = store
        self.manifests = Manifests(home)
        self.lock = asyncio.Lock()  # one import or delete at a time

    async def import_(self, scope: Scope, body: SdkImport) -> tuple[dict[str, Any], bool]:
        """(the answer, whether the SDK is new)."""
        if body.name is not None:
            pick_id(body.name, "")
        auth = parse_auth(body.source_auth)
        comments = check_magic_comments(body.magic_comments)
        raw, url = await source.fetch(body.source_url, self.home.root, auth_now(auth))
        doc = document.read(document.parse(raw), url, body.base_url)
        sdk_id = pick_id(body.name, doc.title)
        check_middleware(body.middleware, self.store, scope, sdk_id)
        generated = generate(sdk_id, doc, middleware=body.middleware, magic_comments=comments)
        if not generated.operations:
            raise BadRequest(
                "the document has no operation to import",
                skipped=[s.to_dict() for s in generated.skipped],
            )
        async with self.lock:
            old = self.manifests.read(scope, sdk_id)
            if old is not None and not body.force:
                raise Conflict(
                    f"SDK {sdk_id!r} exists in {scope.subdomain}/{scope.exec_id} "
                    "(set force to true to replace it)",
                    id=sdk_id,
                )
            self._refuse_foreign_files(scope, generated.files, old)
            hashes = self._write_all(scope, generated.files)
            removed, kept = self._drop_stale(scope, old, {f.path for f in generated.files})
            manifest = {
                "id": sdk_id,
                "subdomain": scope.subdomain,
                "execId": scope.exec_id,
                "title": doc.title,
                "version": doc.version,
                "openapi": doc.openapi,
                "source": shown_url(body.source_url),
                "baseUrl": doc.base_url,
                "auth": auth,
                "middleware": body.middleware is not None,
                "magicComments": comments,
                "created": iso(time.time(), millis=False),
                "operations": generated.operations,
                "skipped": [s.to_dict() for s in generated.skipped],
                "files": [
                    {"path": f.path, "kind": f.kind, "sha256": hashes[f.path]}
                    for f in generated.files
                ],
            }
            self.manifests.save(scope, sdk_id, manifest)
        answer = self.view(scope, manifest)
        answer.update(replaced=old is not None, removed=removed, kept=kept)
        return answer, old is None

    def _refuse_foreign_files(
        self, scope: Scope, files: list[File], old: dict[str, Any] | None
    ) -> None:
        """A file the SDK would write that it did not generate before: 409, nothing written."""
        ours = {f["path"] for f in (old or {}).get("files", [])}
        foreign = []
        for f in files:
            target, rel = safe_path(scope, f.path)
            if os.path.lexists(target) and rel not in ours:
                foreign.append(rel)
        if foreign:
            raise Conflict(
                "files the SDK would write exist and were not generated by it: "
                + ", ".join(foreign),
                conflicts=foreign,
            )

    def _write_all(self, scope: Scope, files: list[File]) -> dict[str, str]:
        """Write every file (validated, atomic) in order; on a failure restore what
        was there before and re-raise."""
        before: list[tuple[str, bytes | None]] = []
        hashes = {}
        try:
            for f in files:
                target, rel = safe_path(scope, f.path)
                try:
                    with open(target, "rb") as fh:
                        before.append((rel, fh.read()))
                except FileNotFoundError:
                    before.append((rel, None))
                self.store.write(scope, rel, f.content)
                hashes[rel] = sha256(f.content.encode())
        except BaseException:
            self._restore(scope, before)
            raise
        return hashes

    def _restore(self, scope: Scope, before: list[tuple[str, bytes | None]]) -> None:
        for rel, data in reversed(before):
            target, _ = safe_path(scope, rel)
            with contextlib.suppress(OSError):
                if data is None:
                    os.unlink(target)
                    _prune(scope, os.path.dirname(target))
                else:
                    write_atomic(target, data)

    def _drop_stale(
        self, scope: Scope, old: dict[str, Any] | None, keep: set[str]
    ) -> tuple[list[str], list[dict[str, str]]]:
        """Remove the old SDK's files the new one no longer has (unless edited)."""
        if old is None:
            return [], []
        stale = [f for f in old.get("files", []) if f["path"] not in keep]
        removed, kept, _ = self._remove_files(scope, stale)
        return removed, kept

    def _remove_files(
        self, scope: Scope, files: list[dict[str, Any]]
    ) -> tuple[list[str], list[dict[str, str]], list[str]]:
        removed: list[str] = []
        kept: list[dict[str, str]] = []
        missing: list[str] = []
        for f in files:
            target, rel = safe_path(scope, f["path"])
            status = file_status(target, f["sha256"])
            if status == "missing":
                missing.append(rel)
            elif status == "edited":
                kept.append({"path": rel, "reason": "edited since it was generated"})
            else:
                os.unlink(target)
                fsync_dir(os.path.dirname(target))
                _prune(scope, os.path.dirname(target))
                removed.append(rel)
        return removed, kept, missing

    # -- reading -------------------------------------------------------------------
    def view(self, scope: Scope, manifest: dict[str, Any]) -> dict[str, Any]:
        """The manifest as the API shows it: the auth without its value, each file's
        status now (unchanged, edited, missing)."""
        out = {k: v for k, v in manifest.items() if k not in ("auth", "files")}
        auth = manifest.get("auth")
        out["auth"] = (
            None
            if auth is None
            else {k: v for k, v in auth.items() if k in ("type", "name", "header")}
        )
        files = []
        for f in manifest.get("files", []):
            target, _ = safe_path(scope, f["path"])
            files.append({**f, "status": file_status(target, f["sha256"])})
        out["files"] = files
        return out

    def list(self, scope: Scope) -> dict[str, Any]:
        sdks = []
        for sdk_id in self.manifests.ids(scope):
            m = self.manifests.read(scope, sdk_id)
            if m is None:
                continue
            sdks.append(
                {
                    "id": sdk_id,
                    "title": m.get("title"),
                    "version": m.get("version"),
                    "source": m.get("source"),
                    "baseUrl": m.get("baseUrl"),
                    "operations": len(m.get("operations", [])),
                    "files": len(m.get("files", [])),
                    "created": m.get("created"),
                }
            )
        return {"sdks": sdks, "count": len(sdks), **scope.to_dict()}

    def get(self, scope: Scope, sdk_id: str) -> dict[str, Any]:
        return self.view(scope, self._manifest(scope, sdk_id))

    async def delete(self, scope: Scope, sdk_id: str) -> dict[str, Any]:
        async with self.lock:
            manifest = self._manifest(scope, sdk_id)
            removed, kept, missing = self._remove_files(scope, manifest.get("files", []))
            self.manifests.remove(scope, sdk_id)
        return {
            "id": sdk_id,
            "deleted": True,
            "removed": removed,
            "kept": kept,
            "missing": missing,
            **scope.to_dict(),
        }

    def _manifest(self, scope: Scope, sdk_id: str) -> dict[str, Any]:
        if not ID.match(sdk_id):
            raise BadRequest(f"invalid SDK id {sdk_id!r}", field="id")
        manifest = self.manifests.read(scope, sdk_id)
        if manifest is None:
            raise NotFound(f"No SDK {sdk_id!r} in {scope.subdomain}/{scope.exec_id}", id=sdk_id)
        return manifest


def file_status(target: str, digest: str) -> str:
    try:
        with open(target, "rb") as fh:
            data = fh.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return "missing"
    return "unchanged" if sha256(data) == digest else "edited"


def _prune(scope: Scope, folder: str) -> None:
    """Remove folders left empty, up to (not including) the instance root."""
    root = os.path.normpath(scope.root)
    folder = os.path.normpath(folder)
    while folder != root and folder.startswith(root + os.sep):
        try:
            os.rmdir(folder)
        except OSError:
            return
        folder = os.path.dirname(folder)
