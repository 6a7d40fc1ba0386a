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

import builtins
import contextlib
import errno
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from hoodyexec.clock import iso
from hoodyexec.engine import compiler, magic
from hoodyexec.engine.routes import NotRoutable, resolves_inside, route_for, skip_name
from hoodyexec.errors import BadRequest, Forbidden, HoodyError, NotFound
from hoodyexec.files import fsync_dir, write_atomic
from hoodyexec.home import DEFAULT_EXEC_ID, DEFAULT_SUBDOMAIN, Home

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
                raise BadRequest(
                    f"invalid {label} {value!r}: letters, digits, '-' and '_' only", field=label
                )
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
                if value is None or value == "":
                    continue
                if not isinstance(value, str):  # never str(): ``true`` is not an instance "True"
                    raise BadRequest(f"{key} must be a string, got {_json_type(value)}", field=key)
                return value
        return None

    exec_id = first("execId", "exec_id")
    subdomain = first("subdomain")
    if exec_id is None and subdomain is None and host_default is not None:
        subdomain, exec_id = host_default
    return Scope(home, subdomain or DEFAULT_SUBDOMAIN, exec_id or DEFAULT_EXEC_ID)


def _json_type(value: Any) -> str:
    names = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        list: "a list",
        dict: "an object",
    }
    return names.get(type(value), type(value).__name__)


NAME_MAX = 255  # bytes in one file or folder name (Linux filesystems)
PATH_MAX = 4096  # bytes in a whole path


def _size(name: str) -> int:
    return len(name.encode("utf-8", "surrogatepass"))


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
    # Refused here, not by the OS: its ENAMETOOLONG would name the absolute path.
    if any(_size(p) > NAME_MAX for p in parts):
        raise BadRequest(f"a file or folder name is longer than {NAME_MAX} bytes", path=norm)
    if _size(target) >= PATH_MAX:
        raise BadRequest(f"the path is longer than {PATH_MAX} bytes", path=norm)
    # Resolve what exists of the path: a symlink anywhere on it must stay inside
    # (the router applies the same rule, so what is refused here is never served).
    probe = target
    while not os.path.lexists(probe) and probe != scope.root:
        probe = os.path.dirname(probe)
    if not resolves_inside(scope.root, probe):
        raise Forbidden(EXCLUDED, path=rel)
    return target, norm


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
        "modified": iso(st.st_mtime, millis=False),
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
        websocket = info.get("websocket")
        if websocket is None:  # magic comments not asked for: read the one that counts
            websocket = "@websocket" in source and magic.parse(source)[0].websocket
        tree = compiler.parse(source, rel)
        info["shape"] = compiler.analyse(tree, websocket=bool(websocket))["shape"]
    except HoodyError:
        info["shape"] = None
    return info


def unreadable(path: str, exc: OSError) -> str | None:
    """Why an entry a walk listed a moment ago cannot be read: None when it is simply
    gone (deleted since: skip it), else a reason that names no path ("broken
    symlink", or the OS's message)."""
    if not os.path.lexists(path):
        return None
    if os.path.islink(path) and not os.path.exists(path):
        return "broken symlink"
    return exc.strerror or type(exc).__name__


def describe_listed(scope: Scope, rel: str, **options: Any) -> dict[str, Any] | None:
    """``describe`` for an entry a walk listed: None when it vanished since; an
    entry that cannot be read (dangling symlink...) is reported with ``broken``
    and ``reason`` instead of failing the whole listing."""
    try:
        return describe(scope, rel, **options)
    except OSError as exc:
        reason = unreadable(os.path.join(scope.root, rel), exc)
        if reason is None:
            return None
        return _broken(rel, reason)


def _broken(rel: str, reason: str) -> dict[str, Any]:
    return {
        "path": rel,
        "name": os.path.basename(rel),
        "type": "script" if rel.endswith(".py") else "file",
        "route": None,
        "broken": True,
        "reason": reason,
    }


def _os_error(exc: OSError, rel: str) -> HoodyError:
    """An OSError as a client error that names ``rel``, never the absolute path."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ENOTEMPTY):
        return Conflict(f"{rel}: {reason}", path=rel)
    if exc.errno in (errno.ENOENT, errno.ESTALE):
        return Conflict(f"{rel}: changed while being written ({reason})", path=rel)
    if exc.errno in (errno.ENAMETOOLONG, errno.EINVAL, errno.ELOOP, errno.EILSEQ):
        return BadRequest(f"{rel}: {reason}", path=rel)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return Forbidden(f"{rel}: {reason}", path=rel)
    return HoodyError(f"{rel}: {reason}", path=rel)  # ENOSPC, EIO...: still a 500


def _make_folders(scope: Scope, folder: str, rel: str) -> list[str]:
    """Create ``folder`` and its missing parents; returns the ones made (deepest last).

    A file where a folder is needed is a 409 naming the relative path, checked
    before anything is created.
    """
    missing: list[str] = []
    probe = folder
    while not os.path.isdir(probe):
        if os.path.lexists(probe):
            where = os.path.relpath(probe, scope.root).replace(os.sep, "/")
            raise Conflict(f"{where} is a file, not a folder", path=rel)
        missing.append(probe)
        probe = os.path.dirname(probe)
    made: list[str] = []
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if os.path.isdir(path):
                continue  # a concurrent request made it: theirs, not ours to undo
            _remove_folders(made)
            where = os.path.relpath(path, scope.root).replace(os.sep, "/")
            raise Conflict(f"{where} is a file, not a folder", path=rel) from None
        except OSError as exc:
            _remove_folders(made)
            raise _os_error(exc, rel) from None
        made.append(path)
    return made


def _inside(target: str, source: str) -> bool:
    """Would moving ``source`` to ``target`` put a real folder inside itself (symlinks
    on the way to ``target`` resolved)?"""
    if not os.path.isdir(source) or os.path.islink(source):
        return False
    real_source = os.path.realpath(source)
    real_parent = os.path.realpath(os.path.dirname(target))
    return real_parent == real_source or real_parent.startswith(real_source + os.sep)


def _remove_folders(made: list[str]) -> None:
    """Undo ``_make_folders`` after a failure: remove what it made, if still empty."""
    for path in reversed(made):
        with contextlib.suppress(OSError):
            os.rmdir(path)


def _refuse_reserved(rel: str) -> None:
    """A script whose route would be the kit's own is refused (400)."""
    if not rel.endswith(".py"):
        return
    try:
        route_for(rel)
    except NotRoutable as exc:
        if "reserved" in str(exc):
            raise BadRequest(f"{rel} would shadow a reserved path: {exc}", path=rel) from None


def _entries(path: str) -> list[os.DirEntry[str]]:
    """The visible entries of a folder by name; none when it vanished meanwhile."""
    try:
        with os.scandir(path) as it:
            found = [e for e in it if not skip_name(e.name, folder=e.is_dir())]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(found, key=lambda e: e.name)


# (code, folder, path relative to the instance) -> {"valid", "results", ...}
Validator = Callable[[str, str, str], dict[str, Any]]


# -- results: data, not wire answers (the API layer adds "success") --------------
class Result(msgspec.Struct, kw_only=True):
    subdomain: str
    execId: str  # noqa: N815 - the API's name


class Written(Result):
    path: str
    created: bool
    validated: bool
    size: int | msgspec.UnsetType = msgspec.UNSET
    modified: str | msgspec.UnsetType = msgspec.UNSET
    route: str | None | msgspec.UnsetType = msgspec.UNSET
    validation: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    # what the pattern normaliser rewrote before writing ({rule, line, before, after})
    normalized: list[dict[str, Any]] | msgspec.UnsetType = msgspec.UNSET


class Deleted(Result):
    deleted: str
    type: str


class Moved(Result):
    from_: str = msgspec.field(name="from")
    to: str
    overwritten: bool


class Listing(Result):
    dir: str
    scripts: list[dict[str, Any]]
    count: int


class Tree(Result):
    baseDir: str  # noqa: N815
    maxDepth: int  # noqa: N815
    tree: dict[str, Any]


class ExecId(msgspec.Struct):
    subdomain: str
    execId: str  # noqa: N815
    id: str
    scripts: int
    routes: int
    files: int


class ExecIds(msgspec.Struct):
    execIds: list[ExecId]  # noqa: N815
    count: int


class ScriptStore:
    """The management API's operations on script files."""

    def __init__(self, home: Home, validator: Validator | None = None) -> None:
        self.home = home
        self.validator = validator

    # -- write / read / delete / move -----------------------------------------------
    def write(
        self,
        scope: Scope,
        rel: Any,
        content: Any,
        *,
        create_dirs: bool = True,
        validate: bool = True,
    ) -> Written:
        if not isinstance(content, str):
            raise BadRequest("content must be a string")
        target, rel = safe_path(scope, rel)
        _refuse_reserved(rel)
        validated = False
        validation = None
        if validate and rel.endswith(".py") and self.validator is not None:
            validation = self.validator(content, os.path.dirname(target), rel)
            if not validation.get("valid"):
                raise BadRequest("Script validation failed", path=rel, validation=validation)
            validated = True
            # the validator may normalise: the checked (rewritten) code is what is stored
            content = validation.pop("normalizedCode", content)
        elif validate and rel.endswith(".json"):
            try:
                json.loads(content)
            except ValueError as exc:
                raise BadRequest("Invalid JSON", path=rel, detail=str(exc)) from None
            validated = True
        folder = os.path.dirname(target)
        made: list[str] = []
        if not os.path.isdir(folder):
            if not create_dirs:
                if os.path.lexists(folder):
                    raise Conflict(f"the folder of {rel} is a file", path=rel)
                raise NotFound(f"folder of {rel} does not exist (createDirs is false)", path=rel)
            made = _make_folders(scope, folder, rel)
        try:
            if made:
                safe_path(scope, rel)  # re-check: nothing on the new path may lead outside
            if os.path.isdir(target):
                raise BadRequest(f"{rel} is a folder", path=rel)
            existed = os.path.exists(target)
            write_atomic(target, content.encode("utf-8"))
        except BaseException as exc:
            _remove_folders(made)
            if isinstance(exc, OSError):
                raise _os_error(exc, rel) from None
            raise
        info = describe_listed(scope, rel, with_magic=False) or {}
        return Written(
            path=rel,
            created=not existed,
            validated=validated,
            subdomain=scope.subdomain,
            execId=scope.exec_id,
            **{k: v for k, v in info.items() if k in ("size", "modified", "route")},
            validation=msgspec.UNSET if validation is None else validation,
            normalized=msgspec.UNSET if validation is None else validation.pop("normalized", []),
        )

    def read(self, scope: Scope, rel: Any) -> dict[str, Any]:
        target, rel = safe_path(scope, rel)
        try:
            if not os.path.isfile(target):
                raise FileNotFoundError
            info = describe(scope, rel, with_source=True)
            if "content" not in info:
                with open(target, encoding="utf-8", errors="replace") as fh:
                    info["content"] = fh.read()
        except (FileNotFoundError, NotADirectoryError):  # also: deleted while being read
            raise NotFound(f"No such script: {rel}", path=rel) from None
        except UnicodeDecodeError:
            raise BadRequest(f"{rel} is not UTF-8 text", path=rel) from None
        except OSError as exc:
            raise _os_error(exc, rel) from None
        info.setdefault("magicComments", {})
        return {**scope.to_dict(), **info}

    def delete(self, scope: Scope, rel: Any) -> Deleted:
        target, rel = safe_path(scope, rel)
        try:
            if os.path.isdir(target) and not os.path.islink(target):
                # entries deleted meanwhile are fine; whatever else stays is reported
                shutil.rmtree(target, ignore_errors=True)
                if os.path.lexists(target):
                    raise Conflict(f"{rel}: some entries could not be deleted", path=rel)
                kind = "folder"
            elif os.path.lexists(target):
                os.unlink(target)
                kind = "file"
            else:
                raise FileNotFoundError
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"No such script: {rel}", path=rel) from None
        except OSError as exc:
            raise _os_error(exc, rel) from None
        fsync_dir(os.path.dirname(target))
        return Deleted(deleted=rel, type=kind, **scope.to_dict())

    def move(self, scope: Scope, src: Any, dst: Any, *, overwrite: bool = False) -> Moved:
        source, src = safe_path(scope, src)
        target, dst = safe_path(scope, dst)
        if not os.path.lexists(source):
            raise NotFound(f"No such script: {src}", path=src)
        _refuse_reserved(dst)
        if src == dst:
            raise BadRequest("from and to are the same path", path=dst)
        if _inside(target, source):
            raise BadRequest(f"cannot move the folder {src} into itself ({dst})", path=dst)
        if os.path.lexists(target):
            if not overwrite:
                raise Conflict(f"{dst} exists (set overwrite to true to replace it)", path=dst)
            if os.path.isdir(target) != os.path.isdir(source):
                raise BadRequest(
                    "cannot overwrite a file with a folder or a folder with a file", path=dst
                )
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
        made = _make_folders(scope, os.path.dirname(target), dst)
        try:
            os.replace(source, target)
        except BaseException as exc:
            _remove_folders(made)
            if isinstance(exc, OSError):
                raise _os_error(exc, dst) from None
            raise
        fsync_dir(os.path.dirname(target))
        fsync_dir(os.path.dirname(source))
        return Moved(from_=src, to=dst, overwritten=overwrite, **scope.to_dict())

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
    ) -> Listing:
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
                info = describe_listed(scope, rel, with_magic=needs_magic)
                if info is None:  # deleted since the walk listed it
                    continue
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
                if not metadata and not info.get("broken"):
                    info = {
                        k: v
                        for k, v in info.items()
                        if k
                        in ("path", "name", "route", "size", "modified", "type", "magicComments")
                    }
                scripts.append(info)
        return Listing(dir=dir, scripts=scripts, count=len(scripts), **scope.to_dict())

    def walk(self, scope: Scope, base: str, recursive: bool) -> builtins.list[str]:
        """Relative paths of the files under ``base``, hidden names left out (the
        router's filter). Folders that vanish meanwhile are skipped by ``os.walk``;
        files that do are the caller's to skip (see ``describe_listed``)."""
        out = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not skip_name(d, folder=True))
            for name in sorted(filenames):
                if skip_name(name):
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
    ) -> Tree:
        base, base_dir = safe_path(scope, base_dir, allow_root=True)
        if not os.path.isdir(base):
            raise NotFound(f"No such folder: {base_dir or '/'}", path=base_dir)
        max_depth = max(0, min(int(max_depth), 64))

        def folder(path: str, rel: str, depth: int) -> dict[str, Any]:
            item: dict[str, Any] = {
                "name": os.path.basename(path) or scope.exec_id,
                "path": rel,
                "type": "directory",
            }
            if depth >= max_depth:
                item["truncated"] = True
                return item
            children = []
            for entry in _entries(path):
                child_rel = f"{rel}/{entry.name}".lstrip("/")
                child = node(entry, child_rel, depth + 1)
                if child is not None:
                    children.append(child)
            item["children"] = children
            return item

        def node(entry: os.DirEntry[str], rel: str, depth: int) -> dict[str, Any] | None:
            if entry.is_dir(follow_symlinks=False):
                return folder(entry.path, rel, depth)
            if entry.is_symlink() and entry.is_dir():
                # like the router's scan and scripts/list: a linked folder is not entered
                return {"name": entry.name, "path": rel, "type": "directory", "symlink": True}
            if include_metadata:
                info = describe_listed(scope, rel)
                return None if info is None else {**info, "type": "file"}
            if entry.is_symlink() and not os.path.exists(entry.path):
                return {**_broken(rel, "broken symlink"), "type": "file"}
            return {"name": entry.name, "path": rel, "type": "file"}

        return Tree(
            baseDir=base_dir, maxDepth=max_depth, tree=folder(base, base_dir, 0), **scope.to_dict()
        )

    def exec_ids(self) -> ExecIds:
        """Every ``<subdomain>/<execId>`` with its script counts."""
        out = []
        root = self.home.scripts
        for sub_entry in _entries(root):
            sub = sub_entry.name
            if not sub_entry.is_dir() or not _NAME.match(sub):
                continue
            for eid_entry in _entries(sub_entry.path):
                eid, folder = eid_entry.name, eid_entry.path
                if not eid_entry.is_dir() or not _NAME.match(eid):
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
                    ExecId(
                        subdomain=sub,
                        execId=eid,
                        id=f"{sub}/{eid}",
                        scripts=len(py),
                        routes=routable,
                        files=len(files),
                    )
                )
        return ExecIds(execIds=out, count=len(out))
