"""Script files → route templates (Next.js-style names, Falcon template syntax).

``echo.py`` → ``/echo``; ``api/users/index.py`` → ``/api/users``;
``api/users/[id].py`` → ``/api/users/{id}``; ``files/[...path].py`` →
``/files/{path:path}``; ``docs/[[...slug]].py`` → ``/docs`` and
``/docs/{slug:path}``. Names starting with ``_`` (files or folders) are private
and never routed. Names starting with ``.`` (files or folders, and tool folders
such as ``node_modules``) are hidden: never routed and never listed, whether
found by a scan or by an inotify event (``is_hidden``). Precedence (static >
dynamic > catch-all) is the router's.
"""

from __future__ import annotations

import os
import re

import msgspec

RESERVED_PREFIX = "/api/v1/exec"
RESERVED_EXACT = frozenset({"/openapi.json", "/openapi.yaml"})
_PARAM = re.compile(r"^\[([A-Za-z_][A-Za-z0-9_]*)\]$")
_CATCH = re.compile(r"^\[\.\.\.([A-Za-z_][A-Za-z0-9_]*)\]$")
_OPT_CATCH = re.compile(r"^\[\[\.\.\.([A-Za-z_][A-Za-z0-9_]*)\]\]$")
_STATIC = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@-]+$")
SKIP_DIRS = frozenset({"__pycache__", "node_modules", ".git", ".venv"})
OUTSIDE = "symlink resolves outside the instance folder (Path is excluded from access)"


class Route(msgspec.Struct, frozen=True):
    file: str  # relative to the instance dir, with "/" separators
    route: str  # the display route ("/api/users/[id]")
    templates: tuple[str, ...]  # Falcon templates this file answers
    params: tuple[str, ...] = ()
    kind: str = "static"  # static | dynamic | catch-all


class NotRoutable(ValueError):
    """A file that can never be a route, with the reason."""


def is_reserved(path: str) -> bool:
    return (
        path == RESERVED_PREFIX or path.startswith(RESERVED_PREFIX + "/") or path in RESERVED_EXACT
    )


def is_private(rel: str) -> bool:
    return any(part.startswith("_") for part in rel.split("/"))


def skip_name(name: str, *, folder: bool = False) -> bool:
    """A file or folder name the kit never routes nor lists: hidden (``.x``), or a
    tool folder (``__pycache__``, ``node_modules``...). The one filter behind
    every scan, listing and inotify update, so they always agree."""
    return name.startswith(".") or (folder and name in SKIP_DIRS)


def resolves_inside(root: str, path: str) -> bool:
    """Does ``path``, every symlink on it followed, stay in ``root`` (or be it)?

    The one containment rule: the management API refuses a path that fails it
    (``store.safe_path``) and the router never serves a file that fails it (its
    scan, its inotify updates, the catalog before compiling), so a symlink the
    API calls excluded cannot be run by a request either.
    """
    root_real = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real + os.sep)


def is_hidden(rel: str, *, folder: bool = False) -> bool:
    """``skip_name`` applied to every part of a relative path (``a/.b/c.py``);
    ``folder`` says the last part is a folder too."""
    parts = rel.replace("\\", "/").strip("/").split("/")
    last = len(parts) - 1
    return any(skip_name(part, folder=folder or i < last) for i, part in enumerate(parts))


def route_for(rel: str) -> Route:
    """The route of a script file; raises ``NotRoutable`` with the reason."""
    rel = rel.replace("\\", "/").strip("/")
    if not rel.endswith(".py"):
        raise NotRoutable("only .py files are routes")
    if is_hidden(rel):
        raise NotRoutable("hidden: a name starts with . (or is a tool folder such as node_modules)")
    if is_private(rel):
        raise NotRoutable("private: a name starts with _")
    parts = rel[:-3].split("/")
    if parts[-1] == "index":
        parts = parts[:-1]
    segments: list[str] = []
    display: list[str] = []
    params: list[str] = []
    kind = "static"
    optional_at: int | None = None
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if m := _PARAM.match(part):
            segments.append("{%s}" % m.group(1))
            params.append(m.group(1))
            kind = "dynamic" if kind == "static" else kind
        elif m := _CATCH.match(part):
            if not last:
                raise NotRoutable(f"catch-all {part} must be the last segment")
            segments.append("{%s:path}" % m.group(1))
            params.append(m.group(1))
            kind = "catch-all"
        elif m := _OPT_CATCH.match(part):
            if not last:
                raise NotRoutable(f"optional catch-all {part} must be the last segment")
            optional_at = len(segments)
            segments.append("{%s:path}" % m.group(1))
            params.append(m.group(1))
            kind = "catch-all"
        elif _STATIC.match(part) and not part.startswith("["):
            segments.append(part)
        else:
            raise NotRoutable(f"segment {part!r} is not a valid route segment")
        display.append(part)
    if len(set(params)) != len(params):
        raise NotRoutable("a route parameter name is used twice")
    template = "/" + "/".join(segments)
    templates = [template]
    if optional_at is not None:
        templates.insert(0, "/" + "/".join(segments[:optional_at]))
    if any(is_reserved(t) for t in templates) or is_reserved("/" + "/".join(display)):
        raise NotRoutable("reserved path: /api/v1/exec/** and /openapi.json|yaml belong to the kit")
    return Route(rel, "/" + "/".join(display), tuple(templates), tuple(params), kind)
