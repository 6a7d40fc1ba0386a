"""The user OpenAPI document of one instance: generated, layered, stored, kept fresh.

Generation asks a request worker to describe the instance's scripts
(``engine/describe.py``: user code never runs in the control worker), builds
the document (``build.py``), applies each script's sidecar
(``<script>.openapi.json``, one operation object per method, merged over the
generated operations or adding new ones), then the instance's merge layer
(``_hoody/openapi.merge.json``, from ``user-openapi/merge``), and stores the
result in ``_hoody/openapi.json`` — the kit-private folder, never routed (a
name starting with ``_``).

Freshness: ``_hoody/openapi.state.json`` keeps the fingerprint (mtime and size)
of every ``.py`` file and sidecar of the instance and of the merge layer, taken
before the scripts were described. A stored document is stale when the
fingerprint differs (a script or sidecar edited, added or removed, however it
was written) or it is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from hoodyexec import clock
from hoodyexec.engine.routes import skip_name
from hoodyexec.engine.store import Scope
from hoodyexec.errors import BadRequest, NotFound
from hoodyexec.files import is_temp_name, write_atomic
from hoodyexec.ipc.protocol import Describe, Described, ScriptFacts

from . import build, check

HOODY_DIR = "_hoody"
SPEC_FILE = "_hoody/openapi.json"
STATE_FILE = "_hoody/openapi.state.json"
LAYER_FILE = "_hoody/openapi.merge.json"
SIDECAR = ".openapi.json"

AskDescribe = Callable[[Describe], Awaitable[Described]]
Fingerprint = dict[str, list[int]]


def sidecar_of(rel: str) -> str:
    """``people/[id].py`` → ``people/[id].openapi.json``."""
    return rel[:-3] + SIDECAR


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


def fingerprint(root: str) -> Fingerprint:
    """mtime and size of every script, private module and sidecar of an
    instance, and of its merge layer (the kit-private folder aside)."""
    found: Fingerprint = {}
    for dirpath, dirnames, filenames in os.walk(root):
        top = dirpath == root
        dirnames[:] = [
            d for d in dirnames if not skip_name(d, folder=True) and not (top and d == HOODY_DIR)
        ]
        for name in filenames:
            if skip_name(name) or is_temp_name(name):
                continue
            if name.endswith(".py") or name.endswith(SIDECAR):
                path = os.path.join(dirpath, name)
                stat = _stat(path)
                if stat is not None:
                    found[os.path.relpath(path, root).replace(os.sep, "/")] = stat
    layer = _stat(os.path.join(root, LAYER_FILE))
    if layer is not None:
        found[LAYER_FILE] = layer
    return found


def read_json(path: str) -> Any:
    """A JSON file's value; ``None`` when absent; ``BadRequest`` when not JSON."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return None
    try:
        return json.loads(data)
    except ValueError as exc:
        raise BadRequest(f"{os.path.basename(path)} is not valid JSON: {exc}") from None


def _write(root: str, rel: str, value: Any) -> None:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    write_atomic(path, json.dumps(value, indent=2, ensure_ascii=False).encode() + b"\n")


def has_schema(script: ScriptFacts, sidecar: bool) -> bool:
    """Does the spec of this script say more than the defaults: a sidecar, or a
    typed parameter or return annotation?"""
    typed = any(
        op.returns != "unknown" or any(p.schema is not None for p in op.params)
        for op in script.operations
    )
    return sidecar or typed


def methods_of(script: ScriptFacts) -> list[str]:
    names: list[str] = []
    for op in script.operations:
        names += [m.upper() for m in build.METHODS] if op.method == "*" else [op.method]
    return names


class Assembled(msgspec.Struct):
    doc: dict[str, Any]
    report: dict[str, Any]
    fingerprint: Fingerprint


class UserOpenAPIService:
    def __init__(self, ask: AskDescribe) -> None:
        self.ask = ask
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, scope: Scope) -> asyncio.Lock:
        return self._locks.setdefault(scope.root, asyncio.Lock())

    async def describe(self, scope: Scope) -> Described:
        return await self.ask(Describe(scope.subdomain, scope.exec_id))

    # -- building -----------------------------------------------------------
    async def assemble(
        self, scope: Scope, layer: Any = None, *, stored_layer: bool = True
    ) -> Assembled:
        """Describe, build, apply sidecars and the merge layer (``layer``, else the
        stored one when ``stored_layer``), validate. Nothing is written."""
        fp = await asyncio.to_thread(fingerprint, scope.root)
        described = await self.describe(scope)
        doc = build.document(described, f"hoodyexec scripts {scope.subdomain}/{scope.exec_id}")
        sidecars = await asyncio.to_thread(self._apply_sidecars, scope, described, doc)
        if layer is None and stored_layer:
            layer = await asyncio.to_thread(read_json, os.path.join(scope.root, LAYER_FILE))
        merge: dict[str, Any] = {"layer": layer is not None, "applied": False, "errors": []}
        if layer is not None:
            merged = build.merge_patch(doc, layer)
            merge["errors"] = await asyncio.to_thread(check.document_errors, merged)
            if not merge["errors"]:
                doc, merge["applied"] = merged, True
        errors = await asyncio.to_thread(check.document_errors, doc)
        report = {
            "valid": not errors,
            "errors": errors,
            "scripts": len(described.scripts),
            "paths": len(doc.get("paths") or {}),
            "operations": sum(
                1
                for item in (doc.get("paths") or {}).values()
                for key in item
                if key in check.SIDECAR_METHODS
            ),
            "failed": [
                {"file": s.file, "error": s.error} for s in described.scripts if s.error is not None
            ],
            "disabled": [s.file for s in described.scripts if not s.enabled],
            "skipped": [{"file": f, "reason": r} for f, r in described.skipped],
            "sidecars": sidecars,
            "merge": merge,
        }
        return Assembled(doc, report, fp)

    @staticmethod
    def _apply_sidecars(
        scope: Scope, described: Described, doc: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Merge each served script's sidecar into its path items; a sidecar that
        is not valid is reported and left out."""
        out = []
        components = doc.get("components") or {}
        for script in described.scripts:
            rel = sidecar_of(script.file)
            try:
                sidecar = read_json(os.path.join(scope.root, rel))
            except BadRequest as exc:
                out.append(
                    {
                        "file": rel,
                        "applied": False,
                        "errors": [{"path": "", "message": exc.message}],
                    }
                )
                continue
            if sidecar is None:
                continue
            errors = check.sidecar_errors(sidecar, components)
            applied = not errors and build.served(script)
            if applied:
                for template in script.templates:
                    item = doc["paths"][build.openapi_path(template)]
                    for method, op in sidecar.items():
                        item[method] = build.merge_patch(item.get(method), op)
            out.append({"file": rel, "applied": applied, "errors": errors})
        return out

    # -- stored document ----------------------------------------------------
    def _store(self, scope: Scope, built: Assembled) -> None:
        _write(scope.root, SPEC_FILE, built.doc)
        state = {
            "generatedAt": clock.iso(time.time()),
            "fingerprint": built.fingerprint,
            "report": built.report,
        }
        _write(scope.root, STATE_FILE, state)

    def _stored(self, scope: Scope) -> dict[str, Any] | None:
        """The stored document if it is current, else ``None``."""
        try:
            state = read_json(os.path.join(scope.root, STATE_FILE))
            doc = read_json(os.path.join(scope.root, SPEC_FILE))
        except BadRequest:
            return None
        if not isinstance(state, dict) or not isinstance(doc, dict):
            return None
        if state.get("fingerprint") != fingerprint(scope.root):
            return None
        return doc

    async def generate(self, scope: Scope) -> dict[str, Any]:
        async with self._lock(scope):
            built = await self.assemble(scope)
            await asyncio.to_thread(self._store, scope, built)
        return {"path": SPEC_FILE, **built.report}

    async def current(self, scope: Scope) -> dict[str, Any]:
        """The stored document, regenerated first when stale or absent."""
        async with self._lock(scope):
            doc = await asyncio.to_thread(self._stored, scope)
            if doc is None:
                built = await self.assemble(scope)
                await asyncio.to_thread(self._store, scope, built)
                doc = built.doc
        return doc

    async def merge(self, scope: Scope, layer: dict[str, Any] | None) -> dict[str, Any]:
        """Store (or with ``None`` drop) the merge layer and regenerate. A layer
        that would make the document invalid is refused (400) and nothing changes."""
        async with self._lock(scope):
            built = await self.assemble(scope, layer, stored_layer=False)
            if layer is not None and not built.report["merge"]["applied"]:
                raise BadRequest(
                    "the merged document is not valid OpenAPI",
                    errors=built.report["merge"]["errors"],
                )
            path = os.path.join(scope.root, LAYER_FILE)
            if layer is None:
                await asyncio.to_thread(_remove, path)
                built.fingerprint.pop(LAYER_FILE, None)
            else:
                await asyncio.to_thread(_write, scope.root, LAYER_FILE, layer)
                stat = _stat(path)
                if stat is not None:
                    built.fingerprint[LAYER_FILE] = stat
            await asyncio.to_thread(self._store, scope, built)
        return {
            "path": SPEC_FILE,
            "layerPath": LAYER_FILE if layer is not None else None,
            **built.report,
        }

    # -- per script ----------------------------------------------------------
    async def schema(self, scope: Scope, target: str, rel: str) -> dict[str, Any]:
        """The path items of one script (sidecar merged) with the document's components."""
        doc = await self.current(scope)
        paths = {
            path: item
            for path, item in (doc.get("paths") or {}).items()
            if isinstance(item, dict) and item.get(build.SCRIPT_KEY) == rel
        }
        if not paths:
            await asyncio.to_thread(_must_exist, target, rel)
            raise NotFound(
                f"{rel} answers nothing the document can describe: {self._why(scope, rel)}",
                file=rel,
            )
        sidecar = sidecar_of(rel)
        return {
            "file": rel,
            "sidecar": sidecar if os.path.exists(os.path.join(scope.root, sidecar)) else None,
            "paths": paths,
            "components": doc.get("components") or {},
        }

    @staticmethod
    def _why(scope: Scope, rel: str) -> str:
        try:
            state = read_json(os.path.join(scope.root, STATE_FILE)) or {}
        except BadRequest:
            state = {}
        report = state.get("report") or {}
        for failed in report.get("failed") or ():
            if failed.get("file") == rel:
                return f"it does not load ({failed.get('error')})"
        if rel in (report.get("disabled") or ()):
            return "it is disabled (@enabled false)"
        for skipped in report.get("skipped") or ():
            if skipped.get("file") == rel:
                return f"not a route ({skipped.get('reason')})"
        return "not a routed script"

    async def validate_path(self, scope: Scope, target: str, rel: str) -> dict[str, Any]:
        """A sidecar file checked as operations, or a script's effective path
        items (generated, its sidecar merged) checked as a document."""
        if rel.endswith(SIDECAR):
            await asyncio.to_thread(_must_exist, target, rel)
            try:
                sidecar = await asyncio.to_thread(read_json, target)
            except BadRequest as exc:
                return {
                    "valid": False,
                    "path": rel,
                    "errors": [{"path": "", "message": exc.message}],
                }
            doc = await self.current(scope)
            errors = await asyncio.to_thread(check.sidecar_errors, sidecar, doc.get("components"))
            return {"valid": not errors, "path": rel, "errors": errors}
        if not rel.endswith(".py"):
            raise BadRequest(f"path must be a script (.py) or a sidecar (*{SIDECAR})", field="path")
        found = await self.schema(scope, target, rel)
        doc = {
            "openapi": build.OPENAPI,
            "info": {"title": rel, "version": "0"},
            "paths": found["paths"],
            "components": found["components"],
        }
        errors = await asyncio.to_thread(check.document_errors, doc)
        return {"valid": not errors, "path": rel, "sidecar": found["sidecar"], "errors": errors}

    async def validate_inline(self, scope: Scope, sidecar: Any) -> dict[str, Any]:
        doc = await self.current(scope)
        errors = await asyncio.to_thread(check.sidecar_errors, sidecar, doc.get("components"))
        return {"valid": not errors, "errors": errors}


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _must_exist(target: str, rel: str) -> None:
    if not os.path.isfile(target):
        raise NotFound(f"No such file: {rel}", file=rel)
