"""Scripts on disk, as the management API sees them: scoped, safe, atomic.

Every path parameter is resolved inside one instance folder
(``<home>/scripts/<subdomain>/<execId>/``); absolute paths, ``..`` and symlinks
that lead outside it are refused with ``403 Path is excluded from access``.
Writes go to a temp file in the same folder, are fsynced and renamed over the
target (then the folder is fsynced), so a reader never sees half a file and a
failed write leaves the old version. Request workers notice every change through
their inotify watch before the next request (see ``docs/scripts.md``).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from typing import Any

from . import compiler, magic
from .errors import BadRequest, Forbidden, HoodyError, NotFound
from .files import fsync_dir, write_atomic
from .home import DEFAULT_EXEC_ID, DEFAULT_SUBDOMAIN, Home
from .routes import SKIP_DIRS, NotRoutable, route_for

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
EXCLUDED = "Path is excluded from access"


class Conflict(HoodyError):
    status = 409


class Scope:
    """One ``<subdomain>/<execId>`` instance folder."""

    __slots__ = ("subdomain", "exec_id", "root")

    def __init__(self, home: Home, subdomain: str, exec_id: str) -> None:
        for label, value in (("subdomain", subdomain), ("execId", exec_id)):
            if not _NAME.match(value):
                raise BadRequest(f"invalid {label} {value!r}: letters, digits, '-' and '_' only")
        self.subdomain = subdomain
        self.exec_id = exec_id
        self.root = os.path.join(home.scripts, subdomain, exec_id)

    def to_dict(self) -> dict[str, str]:
        return {"subdomain": self.subdomain, "execId": self.exec_id}


def pick_scope(
    home: Home,
    query: Mapping[str, Any],
    body: Mapping[str, Any] | None,
    host_default: tuple[str, str] | None = None,
) -> Scope:
    """``execId``/``exec_id``/``subdomain``: query wins over body; else the Host's instance."""
    body = body or {}

    def first(*keys: str) -> str | None:
        for source in (query, body):
            for key in keys:
                value = source.get(key)
                if value not in (None, ""):
                    return str(value)
        return None

    exec_id = first("execId", "exec_id")
    subdomain = first("subdomain")
    if exec_id is None and subdomain is None and host_default is not None:
        subdomain, exec_id = host_default
    return Scope(home, subdomain or DEFAULT_SUBDOMAIN, exec_id or DEFAULT_EXEC_ID)


def safe_path(scope: Scope, rel: Any, *, allow_root: bool = False) -> tuple[str, str]:
    """(absolute path, normalised relative path) inside the scope, or 403."""
    if not isinstance(rel, str):
        raise BadRequest("path must be a string")
    if rel in ("", ".", "/") and allow_root:
        return scope.root, ""
    if not rel or "\x00" in rel or "\\" in rel or os.path.isabs(rel) or rel.startswith("~"):
        raise Forbidden(EXCLUDED, path=rel)
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise Forbidden(EXCLUDED, path=rel)
    norm = "/".join(parts)
    target = os.path.join(scope.root, *parts)
    root_real = os.path.realpath(scope.root)
    # Resolve what exists of the path: a symlink anywhere on it must stay inside.
    probe = target
    while not os.path.lexists(probe) and probe != scope.root:
        probe = os.path.dirname(probe)
    real = os.path.realpath(probe)
    if real != root_real and not real.startswith(root_real + os.sep):
        raise Forbidden(EXCLUDED, path=rel)
    return target, norm


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat().replace("+00:00", "Z")


def describe(
    scope: Scope, rel: str, *, with_magic: bool = True, with_source: bool = False
) -> dict[str, Any]:
    """Metadata of one file: size, modified, route, shape, magic comments."""
    path = os.path.join(scope.root, rel)
    st = os.stat(path)
    info: dict[str, Any] = {
        "path": rel,
        "name": os.path.basename(rel),
        "size": st.st_size,
        "modified": _iso(st.st_mtime),
        "type": "script" if rel.endswith(".py") else "file",
    }
    if not rel.endswith(".py"):
        return info
    try:
        route = route_for(rel)
        info["route"] = route.route
        info["routable"] = True
        info["params"] = list(route.params)
    except NotRoutable as exc:
        info["route"] = None
        info["routable"] = False
        info["reason"] = str(exc)
    try:
        with open(path, encoding="utf-8") as fh:
            source = fh.read()
    except (OSError, UnicodeDecodeError):
        return info
    if with_source:
        info["content"] = source
    if with_magic:
        parsed, problems = magic.parse(source)
        info["magicComments"] = parsed.raw
        info["description"] = parsed.description
        info["enabled"] = parsed.enabled
        info["mode"] = parsed.mode
        info["websocket"] = parsed.websocket
        info["label"] = parsed.label
        info["tags"] = parsed.tags
        if problems:
            info["magicErrors"] = [str(p) for p in problems]
    try:
        info["shape"] = compiler.analyse(compiler.parse(source, rel))["shape"]
    except HoodyError:
        info["shape"] = None
    return info


def _refuse_reserved(rel: str) -> None:
    """A script whose route would be the kit's own is refused (400)."""
    if not rel.endswith(".py"):
        return
    try:
        route_for(rel)
    except NotRoutable as exc:
        if "reserved" in str(exc):
            raise BadRequest(f"{rel} would shadow a reserved path: {exc}", path=rel) from None


Validator = Callable[[str, str], dict[str, Any]]


class ScriptStore:
    """The management API's operations on script files."""

    def __init__(self, home: Home, validator: Validator | None = None) -> None:
        self.home = home
        self.validator = validator  # (code, folder) -> {"valid", "results", ...}

    # -- write / read / delete / move -----------------------------------------------
    def write(
        self,
        scope: Scope,
        rel: Any,
        content: Any,
        *,
        create_dirs: bool = True,
        validate: bool = True,
    ) -> dict[str, Any]:
        if not isinstance(content, str):
            raise BadRequest("content must be a string")
        target, rel = safe_path(scope, rel)
        _refuse_reserved(rel)
        validated = False
        validation = None
        if validate and rel.endswith(".py") and self.validator is not None:
            validation = self.validator(content, os.path.dirname(target))
            if not validation.get("valid"):
                raise BadRequest("Script validation failed", path=rel, validation=validation)
            validated = True
        elif validate and rel.endswith(".json"):
            try:
                json.loads(content)
            except ValueError as exc:
                raise BadRequest("Invalid JSON", path=rel, detail=str(exc)) from None
            validated = True
        folder = os.path.dirname(target)
        if not os.path.isdir(folder):
            if not create_dirs:
                raise NotFound(f"folder of {rel} does not exist (createDirs is false)", path=rel)
            os.makedirs(folder, mode=0o700, exist_ok=True)
            safe_path(scope, rel)  # re-check: nothing on the new path may lead outside
        if os.path.isdir(target):
            raise BadRequest(f"{rel} is a folder", path=rel)
        existed = os.path.exists(target)
        write_atomic(target, content.encode("utf-8"))
        out: dict[str, Any] = {
            "success": True,
            "path": rel,
            "created": not existed,
            "validated": validated,
            **scope.to_dict(),
            **{
                k: v
                for k, v in describe(scope, rel, with_magic=False).items()
                if k in ("size", "modified", "route")
            },
        }
        if validation is not None:
            out["validation"] = validation
        return out

    def read(self, scope: Scope, rel: Any) -> dict[str, Any]:
        target, rel = safe_path(scope, rel)
        if not os.path.isfile(target):
            raise NotFound(f"No such script: {rel}", path=rel)
        try:
            info = describe(scope, rel, with_source=True)
        except UnicodeDecodeError:
            raise BadRequest(f"{rel} is not UTF-8 text", path=rel) from None
        if "content" not in info:
            with open(target, encoding="utf-8", errors="replace") as fh:
                info["content"] = fh.read()
        info.setdefault("magicComments", {})
        return {"success": True, **scope.to_dict(), **info}

    def delete(self, scope: Scope, rel: Any) -> dict[str, Any]:
        target, rel = safe_path(scope, rel)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
            kind = "folder"
        elif os.path.lexists(target):
            os.unlink(target)
            kind = "file"
        else:
            raise NotFound(f"No such script: {rel}", path=rel)
        fsync_dir(os.path.dirname(target))
        return {"success": True, "deleted": rel, "type": kind, **scope.to_dict()}

    def move(self, scope: Scope, src: Any, dst: Any, *, overwrite: bool = False) -> dict[str, Any]:
        source, src = safe_path(scope, src)
        target, dst = safe_path(scope, dst)
        if not os.path.lexists(source):
            raise NotFound(f"No such script: {src}", path=src)
        _refuse_reserved(dst)
        if os.path.lexists(target):
            if not overwrite:
                raise Conflict(f"{dst} exists (set overwrite to true to replace it)", path=dst)
            if os.path.isdir(target) != os.path.isdir(source):
                raise BadRequest(
                    "cannot overwrite a file with a folder or a folder with a file", path=dst
                )
            if os.path.isdir(target):
                shutil.rmtree(target)
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        os.replace(source, target)
        fsync_dir(os.path.dirname(target))
        fsync_dir(os.path.dirname(source))
        return {
            "success": True,
            "from": src,
            "to": dst,
            "overwritten": overwrite,
            **scope.to_dict(),
        }

    # -- listings --------------------------------------------------------------------
    def list(
        self,
        scope: Scope,
        *,
        dir: str = "",
        filter: str | None = None,
        metadata: bool = False,
        label: str | None = None,
        tags: list[str] | None = None,
        mode: str | None = None,
        enabled: bool | None = None,
        websocket: bool | None = None,
        recursive: bool = True,
        include_comments: bool = False,
    ) -> dict[str, Any]:
        base, dir = safe_path(scope, dir, allow_root=True)
        scripts: list[dict[str, Any]] = []
        if os.path.isdir(base):
            needs_magic = (
                metadata
                or include_comments
                or any(x is not None for x in (label, tags, mode, enabled, websocket))
            )
            for rel in self.walk(scope, base, recursive):
                if filter and filter.lower() not in rel.lower():
                    continue
                info = describe(scope, rel, with_magic=needs_magic)
                if label is not None and info.get("label") != label:
                    continue
                if tags and not set(tags) <= set(info.get("tags") or []):
                    continue
                if mode is not None and info.get("mode", "auto") != mode:
                    continue
                if enabled is not None and info.get("enabled", True) is not enabled:
                    continue
                if websocket is not None and info.get("websocket", False) is not websocket:
                    continue
                if not include_comments:
                    info.pop("magicComments", None)
                if not metadata:
                    info = {
                        k: v
                        for k, v in info.items()
                        if k
                        in ("path", "name", "route", "size", "modified", "type", "magicComments")
                    }
                scripts.append(info)
        return {
            "success": True,
            **scope.to_dict(),
            "dir": dir,
            "scripts": scripts,
            "count": len(scripts),
        }

    def walk(self, scope: Scope, base: str, recursive: bool) -> list[str]:
        out = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(
                d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")
            )
            for name in sorted(filenames):
                if name.startswith(".") or ".tmp-" in name:
                    continue
                out.append(
                    os.path.relpath(os.path.join(dirpath, name), scope.root).replace(os.sep, "/")
                )
            if not recursive:
                break
        return out

    def tree(
        self,
        scope: Scope,
        *,
        base_dir: str = "",
        max_depth: int = 10,
        include_metadata: bool = False,
    ) -> dict[str, Any]:
        base, base_dir = safe_path(scope, base_dir, allow_root=True)
        if not os.path.isdir(base):
            raise NotFound(f"No such folder: {base_dir or '/'}", path=base_dir)
        max_depth = max(0, min(int(max_depth), 64))

        def node(path: str, rel: str, depth: int) -> dict[str, Any]:
            if os.path.isdir(path):
                item: dict[str, Any] = {
                    "name": os.path.basename(path) or scope.exec_id,
                    "path": rel,
                    "type": "directory",
                }
                if depth < max_depth:
                    children = []
                    for name in sorted(os.listdir(path)):
                        if name.startswith(".") or name in SKIP_DIRS:
                            continue
                        children.append(
                            node(os.path.join(path, name), f"{rel}/{name}".lstrip("/"), depth + 1)
                        )
                    item["children"] = children
                else:
                    item["truncated"] = True
                return item
            if include_metadata:
                return {**describe(scope, rel), "type": "file"}
            return {"name": os.path.basename(path), "path": rel, "type": "file"}

        return {
            "success": True,
            **scope.to_dict(),
            "baseDir": base_dir,
            "maxDepth": max_depth,
            "tree": node(base, base_dir, 0),
        }

    def exec_ids(self) -> dict[str, Any]:
        """Every ``<subdomain>/<execId>`` with its script counts."""
        out = []
        root = self.home.scripts
        if os.path.isdir(root):
            for sub in sorted(os.listdir(root)):
                subdir = os.path.join(root, sub)
                if not os.path.isdir(subdir) or not _NAME.match(sub):
                    continue
                for eid in sorted(os.listdir(subdir)):
                    folder = os.path.join(subdir, eid)
                    if not os.path.isdir(folder) or not _NAME.match(eid):
                        continue
                    scope = Scope(self.home, sub, eid)
                    files = self.walk(scope, folder, True)
                    py = [f for f in files if f.endswith(".py")]
                    routable = 0
                    for f in py:
                        try:
                            route_for(f)
                            routable += 1
                        except NotRoutable:
                            pass
                    out.append(
                        {
                            "subdomain": sub,
                            "execId": eid,
                            "id": f"{sub}/{eid}",
                            "scripts": len(py),
                            "routes": routable,
                            "files": len(files),
                        }
                    )
        return {"success": True, "execIds": out, "count": len(out)}
