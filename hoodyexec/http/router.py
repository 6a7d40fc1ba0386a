"""One compiled router per exec instance, built on Falcon's ``CompiledRouter``.

Falcon already does what the contract asks: static segments win over fields,
``{name:path}`` catches the rest, and the matcher is compiled to Python code
once per table. Two adjustments let Next.js-style trees through Falcon's rules:

* fields are renamed by position (``{p1}``) so ``[id]/posts.py`` and
  ``[slug].py`` in one folder do not clash on names, and mapped back per route;
* catch-all routes live in a second table consulted only when the first finds
  nothing, which is exactly "static > dynamic > catch-all".
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable

from falcon.routing import CompiledRouter

from ..routes import SKIP_DIRS, NotRoutable, Route, route_for

log = logging.getLogger("hoodyexec.router")
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(:path)?\}")


class _Target:
    __slots__ = ("route", "names")

    def __init__(self, route: Route, names: dict[str, str]) -> None:
        self.route = route
        self.names = names  # positional field -> the file's parameter name


def _positional(template: str) -> tuple[str, dict[str, str]]:
    names: dict[str, str] = {}
    parts = template.split("/")
    for i, part in enumerate(parts):
        m = _FIELD.fullmatch(part)
        if m:
            names[f"p{i}"] = m.group(1)
            parts[i] = "{p%d%s}" % (i, m.group(2) or "")
    return "/".join(parts), names


def scan(root: str) -> tuple[list[Route], list[tuple[str, str]]]:
    """All routes under an instance dir, plus (file, reason) for .py files that are not."""
    routes: list[Route] = []
    skipped: list[tuple[str, str]] = []
    if not os.path.isdir(root):
        return routes, skipped
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith((".", "_")))
        for name in sorted(filenames):
            if not name.endswith(".py") or name.startswith("_"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            try:
                routes.append(route_for(rel))
            except NotRoutable as exc:
                skipped.append((rel, str(exc)))
    return routes, skipped


class InstanceRouter:
    """Path → (Route, params) for one instance."""

    __slots__ = ("_main", "_catch", "routes", "skipped")

    def __init__(self, routes: Iterable[Route]) -> None:
        self._main = CompiledRouter()
        self._catch = CompiledRouter()
        self.routes: list[Route] = []
        self.skipped: list[tuple[str, str]] = []
        order = {"static": 0, "dynamic": 1, "catch-all": 2}
        claimed: dict[str, str] = {}  # positional template -> file
        for route in sorted(routes, key=lambda r: (order[r.kind], r.file.count("/"), r.file)):
            pairs = [_positional(t) for t in route.templates]
            clash = next((claimed[t] for t, _ in pairs if t in claimed), None)
            if clash is not None:
                self._skip(route, f"same route as {clash}")
                continue
            try:
                for template, names in pairs:
                    table = self._catch if template.endswith(":path}") else self._main
                    table.add_route(template, _Target(route, names))
            except ValueError as exc:
                self._skip(route, str(exc))
                continue
            for template, _ in pairs:
                claimed[template] = route.file
            self.routes.append(route)
        self._main.find("/")  # compile now, not on the first request
        self._catch.find("/")

    def _skip(self, route: Route, reason: str) -> None:
        self.skipped.append((route.file, f"route {route.route} not added: {reason}"))
        log.warning("%s: route %s not added: %s", route.file, route.route, reason)

    def find(self, path: str) -> tuple[Route, dict[str, str]] | None:
        found = self._main.find(path) or self._catch.find(path)
        if found is None:
            return None
        target: _Target = found[0]
        params = found[2]
        if not params:
            return target.route, {}
        names = target.names
        return target.route, {names[k]: v for k, v in params.items()}
