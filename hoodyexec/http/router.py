"""Per-instance route table: exact paths in a dict, patterns in Falcon's router.

Most script routes are static (``hello.py`` → ``/hello``); they live in a dict,
so a lookup is one hash and adding or removing a script is O(1). Routes with
fields (``[id]``) or catch-alls use Falcon's ``CompiledRouter``, which already
implements what the contract asks (static segments beat fields, ``{x:path}``
catches the rest) but recompiles its whole table on every change, which is too
slow for thousands of routes; patterns are few, so only they pay that cost.

Lookup order is static → dynamic → catch-all, which is the precedence rule.
Two adjustments let Next.js-style trees through Falcon's own rules: fields are
renamed by position (``{p1}``) so ``[id]/posts.py`` and ``[slug].py`` in one
folder do not clash, and catch-alls live in a second Falcon router consulted
only when the first finds nothing.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from typing import cast

from falcon.routing import CompiledRouter

from hoodyexec.engine.routes import (
    OUTSIDE,
    NotRoutable,
    Route,
    is_hidden,
    resolves_inside,
    route_for,
    skip_name,
)

log = logging.getLogger("hoodyexec.router")
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(:path)?\}")
_ORDER = {"static": 0, "dynamic": 1, "catch-all": 2}


def _rank(route: Route) -> tuple[int, int, str]:
    return (_ORDER[route.kind], route.file.count("/"), route.file)


class _Target:
    __slots__ = ("route", "names")

    def __init__(self, route: Route, names: dict[str, str]) -> None:
        self.route = route
        self.names = names  # positional field -> the file's parameter name


def _empty_param(params: dict[str, str] | None) -> bool:
    """A Falcon match with an empty field (``/users/`` against ``/users/{id}``,
    ``/a//b``): not a match under the kit's rule (see ``RouteTable.find``)."""
    return params is not None and "" in params.values()


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
        dirnames[:] = sorted(
            d for d in dirnames if not skip_name(d, folder=True) and not d.startswith("_")
        )
        for name in sorted(filenames):
            if not name.endswith(".py") or skip_name(name) or name.startswith("_"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            # os.walk does not enter linked folders, so only a linked file can lead out.
            if os.path.islink(path) and not resolves_inside(root, path):
                skipped.append((rel, OUTSIDE))
                continue
            try:
                routes.append(route_for(rel))
            except NotRoutable as exc:
                skipped.append((rel, str(exc)))
    return routes, skipped


class RouteTable:
    """Path → (Route, params) for one instance, updatable file by file."""

    __slots__ = (
        "files",
        "static",
        "_patterns",
        "_main",
        "_catch",
        "_names",
        "skipped",
        "_invalid",
        "root",
    )

    def __init__(
        self,
        routes: Iterable[Route] = (),
        invalid: Iterable[tuple[str, str]] = (),
        root: str | None = None,
    ) -> None:
        self.root = root  # the instance folder: files added later must resolve inside it
        self.files: dict[str, Route] = {}
        self.static: dict[str, Route] = {}
        self._patterns: dict[str, Route] = {}
        self._main: CompiledRouter | None = None
        self._catch: CompiledRouter | None = None
        self._names: dict[str, dict[str, str]] = {}
        self._invalid: dict[str, str] = dict(invalid)
        self.skipped: list[tuple[str, str]] = []
        for route in sorted(routes, key=_rank):
            self.files[route.file] = route
        self._rebuild_static()
        self._patterns = {f: r for f, r in self.files.items() if r.kind != "static"}

    # -- updates ------------------------------------------------------------------
    def add(self, rel: str) -> None:
        """A .py file appeared (or was replaced): route it if it is new.

        Hidden files are ignored exactly as ``scan`` ignores them, and a file
        that now resolves outside the instance (a symlink, possibly renamed over
        a routed file) is taken out, so a file that appears while the table is
        live is routed only if a rescan would.
        """
        if is_hidden(rel):
            return
        if self.root is not None:
            if not resolves_inside(self.root, os.path.join(self.root, rel)):
                self.remove(rel)
                self._invalid[rel] = OUTSIDE
                return
            if self._invalid.get(rel) == OUTSIDE:  # a real file took the link's place
                del self._invalid[rel]
        if rel in self.files or rel in self._invalid:
            return
        try:
            route = route_for(rel)
        except NotRoutable as exc:
            self._invalid[rel] = str(exc)
            return
        self.files[rel] = route
        if route.kind == "static":
            owner = self.static.get(route.templates[0])
            if owner is None or _rank(route) < _rank(owner):
                self.static[route.templates[0]] = route
        else:
            self._patterns[rel] = route
            self._main = self._catch = None

    def remove(self, rel: str) -> None:
        self._invalid.pop(rel, None)
        route = self.files.pop(rel, None)
        if route is None:
            return
        if route.kind == "static":
            if self.static.get(route.templates[0]) is route:
                self._rebuild_static()
        else:
            self._patterns.pop(rel, None)
            self._main = self._catch = None

    def _rebuild_static(self) -> None:
        static: dict[str, Route] = {}
        for route in sorted((r for r in self.files.values() if r.kind == "static"), key=_rank):
            static.setdefault(route.templates[0], route)
        self.static = static

    def _compile(self) -> tuple[CompiledRouter, CompiledRouter]:
        main, catch = CompiledRouter(), CompiledRouter()
        claimed: dict[str, str] = {t: r.file for t, r in self.static.items()}
        skipped = [
            (f, f"route {r.route} not added: same route as {self.static[r.templates[0]].file}")
            for f, r in self.files.items()
            if r.kind == "static" and self.static.get(r.templates[0]) is not r
        ]
        for route in sorted(self._patterns.values(), key=_rank):
            pairs = [_positional(t) for t in route.templates]
            clash = next((claimed[t] for t, _ in pairs if t in claimed), None)
            if clash is None:
                clash = next((claimed[t] for t in route.templates if t in claimed), None)
            if clash is not None:
                skipped.append(
                    (route.file, f"route {route.route} not added: same route as {clash}")
                )
                continue
            try:
                for template, names in pairs:
                    target = _Target(route, names)
                    (catch if template.endswith(":path}") else main).add_route(template, target)
            except ValueError as exc:
                skipped.append((route.file, f"route {route.route} not added: {exc}"))
                continue
            for template, _ in pairs:
                claimed[template] = route.file
        main.find("/")  # compile now, not inside a request
        catch.find("/")
        self._main, self._catch = main, catch
        for file, reason in skipped:
            log.warning("%s: %s", file, reason)
        self.skipped = skipped + sorted(self._invalid.items())
        return main, catch

    # -- lookup -------------------------------------------------------------------
    def find(self, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route answering ``path``, with its params.

        One rule for trailing slashes and empty segments: a route matches only
        with every param non-empty, so ``/users/`` is not ``[id]`` with an empty
        id, and a path ending in ``/`` (other than ``/``) matches only a route
        written exactly so, which no file name makes: ``/hello/`` and
        ``/users/`` are both 404.
        """
        route = self.static.get(path)
        if route is not None:
            return route, {}
        if not self._patterns or (path[-1:] == "/" and path != "/"):
            return None
        main, catch = self._main, self._catch
        if main is None or catch is None:
            main, catch = self._compile()
        found = main.find(path)
        if found is None or _empty_param(found[2]):
            found = catch.find(path)
            if found is None or _empty_param(found[2]):
                return None
        target = cast(_Target, found[0])  # falcon types a route's resource as object
        params = found[2]
        if not params:
            return target.route, {}
        names = target.names
        return target.route, {names[k]: v for k, v in params.items()}

    @property
    def routes(self) -> list[Route]:
        if self._main is None and self._patterns:
            self._compile()
        skipped = {f for f, _ in self.skipped}
        return [r for r in sorted(self.files.values(), key=_rank) if r.file not in skipped]

    def report(self) -> list[tuple[str, str]]:
        if self._main is None:
            self._compile()
        return self.skipped


def InstanceRouter(routes: Iterable[Route]) -> RouteTable:  # noqa: N802 - kept for callers and tests
    return RouteTable(routes)


def table_for(root: str) -> RouteTable:
    """Scan an instance folder into its route table (what ``Catalog`` is given)."""
    routes, invalid = scan(root)
    return RouteTable(routes, invalid, root)
