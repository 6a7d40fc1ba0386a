"""A worker's view of the scripts tree: routers, compiled scripts, freshness.

Freshness without a stale window: an inotify watch on the whole scripts tree
is drained as its events arrive, by the worker's event loop (``watch_from``: a
reader on the inotify fd), or else polled before every request. A change made
by any means (the API, an editor, ``cp``) has queued its inotify event before
the write returned, so the next request from anyone sees it: the loop runs
the reader callback no later than the I/O step that reads that request, and a
request's task starts after it (see ``watch_from``). Structural changes (files or
folders added, removed, renamed) rebuild that instance's router; content changes
recompile that script; a change to a private module (``_lib.py``) drops the
instance's compiled scripts so importers reload it.

inotify cannot see everything: a network filesystem changed by another
machine, a write through a hard link living outside the tree, or a kit run
with ``inotify: false``. So the control worker also announces every change the
management API makes (``Invalidate``, see ``invalidate``): it rebuilds the
instance's router, drops the named script and has every other compiled script
of that instance checked against its file once (identity) before it runs
again. Without a watch (``watch=False``) every request checks that identity
and an instance's folder is rescanned at most once every ``RESCAN`` seconds.
"""

from __future__ import annotations

import asyncio
import builtins
import importlib.util
import logging
import os
import re
import sys
import time
import types
from collections.abc import Callable
from typing import Any

from inotify_simple import flags

from hoodyexec.engine import compiler
from hoodyexec.engine.compiler import Script, ScriptLoadError
from hoodyexec.engine.freshness import STRUCTURAL, Watcher
from hoodyexec.engine.routes import Route, is_hidden, resolves_inside

log = logging.getLogger("hoodyexec.catalog")

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
# Without inotify, seconds an instance's route table is trusted before a rescan:
# how long a file added or removed by other means than the API may go unseen.
RESCAN = 1.0


def instance_name_ok(name: str) -> bool:
    return _NAME.match(name) is not None


def instance_exists(scripts_root: str, subdomain: str, exec_id: str) -> bool:
    """Do these names address an instance folder? Names come from Host headers and
    API fields: only plain names (letters, digits, ``_``, ``-``) can, whatever a
    ``host-pattern`` captures."""
    return (
        instance_name_ok(subdomain)
        and instance_name_ok(exec_id)
        and os.path.isdir(os.path.join(scripts_root, subdomain, exec_id))
    )


def state_key(subdomain: str, exec_id: str) -> str:
    """The shared-state document of an instance: one per instance, not per Host value."""
    return f"{subdomain}/{exec_id}"


class Instance:
    """One ``<subdomain>/<execId>`` folder: its router and compiled scripts."""

    __slots__ = (
        "subdomain",
        "exec_id",
        "root",
        "_router",
        "scripts",
        "privates",
        "generation",
        "unverified",
        "make_table",
        "max_age",
        "_scanned",
        "state_key",
    )

    def __init__(
        self,
        subdomain: str,
        exec_id: str,
        root: str,
        make_table: Callable[[str], Any],
        max_age: float | None = None,
    ) -> None:
        self.make_table = make_table  # scans ``root`` into a route table (see http/router.py)
        self.max_age = max_age  # rescan after this many seconds (no inotify), else never
        self._scanned = 0.0
        self.state_key = state_key(subdomain, exec_id)  # its shared-state document
        self.subdomain = subdomain
        self.exec_id = exec_id
        self.root = root
        self._router: Any = None
        self.scripts: dict[str, Script | ScriptLoadError] = {}
        self.privates: dict[str, Any] = {}
        self.generation = 0
        # Compiled scripts to check against their file (identity) before their
        # next run, even when inotify vouches for them: an invalidation said
        # something in this instance changed that inotify may not have seen.
        self.unverified: set[str] = set()

    @property
    def router(self) -> Any:
        if self._router is None or (
            self.max_age is not None and time.monotonic() - self._scanned > self.max_age
        ):
            self._router = self.make_table(self.root)
            self._scanned = time.monotonic()
        return self._router

    def file_added(self, rel: str) -> None:
        if self._router is not None:
            self._router.add(rel)

    def file_removed(self, rel: str) -> None:
        if self._router is not None:
            self._router.remove(rel)

    def structure_changed(self) -> None:
        self._router = None

    def looked_up_privates_in(self, rel: str) -> bool:
        """Whether a script in folder ``rel`` (or below) imported a private
        module, or looked for one that was missing: then a change in that
        folder may be a private module its importers still hold."""
        top = os.path.normpath(os.path.join(self.root, rel))
        for key in self.privates:
            folder = key.rpartition(":")[0]
            if folder == top or folder.startswith(top + os.sep):
                return True
        return False

    def drop(self, rel: str | None = None) -> None:
        if rel is None:
            self.scripts.clear()
            self.privates.clear()
            self.unverified.clear()
            self.generation += 1
        else:
            self.scripts.pop(rel, None)


class Catalog:
    """Every instance this worker has served, kept fresh."""

    def __init__(
        self,
        scripts_root: str,
        make_table: Callable[[str], Any],
        *,
        watch: bool = True,
        default_timeout: int = 30000,
    ) -> None:
        self.root = os.path.abspath(scripts_root)
        self.make_table = make_table  # folder -> route table (http/router.py: table_for)
        self.instances: dict[tuple[str, str], Instance] = {}
        self.default_timeout = default_timeout
        self.watcher: Watcher | None = None
        # The scripts sink's per-request freshness check: the watcher's
        # non-blocking poll (truthy when events wait), or None when there is
        # no watch or the event loop applies the events (``watch_from``).
        self.check: Callable[[int], Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if watch:
            os.makedirs(self.root, exist_ok=True)
            self.watcher = Watcher(self.root)
            self.check = self.watcher.queued

    def watch_from(self, loop: asyncio.AbstractEventLoop) -> None:
        """Apply inotify events from ``loop`` as they arrive (a reader on the
        inotify fd) instead of a poll before each request.

        PERF: saves the per-request ``poll()`` system call (~0.8 µs in process)
        and keeps the freshness guarantee for requests that arrive over a
        socket: a change queues its event before the writer's call returns, so
        before the client can send the request that follows it; when the loop
        polls for I/O the inotify fd is ready no later than the socket, both
        callbacks run in that step (asyncio and uvloop run every ready I/O
        callback of a poll before the callbacks they schedule), and gunicorn's
        protocol only parses bytes there and starts the request's task with
        ``create_task``, which runs in a later step. Callers in the same
        process that write and then call without going through the loop's I/O
        step (``engine/invoke.py``, in-process tests) call ``refresh()``
        first."""
        watcher = self.watcher
        if watcher is None or self._loop is not None:
            return
        loop.add_reader(watcher.fd, self._on_events)
        self._loop = loop
        self.check = None
        self.refresh()  # what was queued before the reader

    def _on_events(self) -> None:
        try:
            self.refresh()
        except Exception:  # noqa: BLE001 - never leave the loop with a stale cache
            log.exception("applying inotify events failed: everything is invalidated")
            self.invalidate_all()

    def close(self) -> None:
        """Release the inotify watch (a worker's catalog lives as long as the worker)."""
        if self.watcher is not None:
            loop, self._loop = self._loop, None
            if loop is not None and not loop.is_closed():
                loop.remove_reader(self.watcher.fd)
            self.watcher.close()
            self.watcher = None
            self.check = None

    def existing(self, subdomain: str, exec_id: str) -> Instance | None:
        """The instance if its folder exists; never creates one for a mere name."""
        inst = self.instances.get((subdomain, exec_id))
        if inst is not None:
            return inst
        if not instance_exists(self.root, subdomain, exec_id):
            return None
        return self.instance(subdomain, exec_id)

    def instance(self, subdomain: str, exec_id: str) -> Instance:
        key = (subdomain, exec_id)
        inst = self.instances.get(key)
        if inst is None:
            inst = self.instances[key] = Instance(
                subdomain,
                exec_id,
                os.path.join(self.root, subdomain, exec_id),
                self.make_table,
                None if self.watcher is not None else RESCAN,
            )
        return inst

    # -- freshness ------------------------------------------------------------
    def refresh(self) -> None:
        watcher = self.watcher
        if watcher is None or not watcher.pending():
            return
        changes = watcher.changes()
        if changes is None:
            self.invalidate_all()
            return
        for path, mask in changes:
            self._apply(path, mask)

    def _apply(self, path: str, mask: int) -> None:
        rel = os.path.relpath(path, self.root)
        if rel.startswith(".."):
            return
        parts = rel.split(os.sep)
        structural = bool(mask & STRUCTURAL)
        is_dir = bool(mask & flags.ISDIR) or bool(mask & (flags.DELETE_SELF | flags.MOVE_SELF))
        if len(parts) < 2 or rel == ".":  # the root or a subdomain folder
            if structural:
                self.invalidate()
            return
        inst = self.instances.get((parts[0], parts[1]))
        if inst is None:  # not served yet: it will be scanned fresh
            return
        inner = parts[2:]
        if inner and is_hidden("/".join(inner), folder=is_dir):
            return  # never routed (the same filter as a scan): nothing to update
        if not inner or is_dir:
            if structural:  # a folder appeared, vanished or moved: anything under it may differ
                inst.structure_changed()
                inst.drop()
            return
        name = inner[-1]
        if not name.endswith(".py"):
            return  # data files and temp files of atomic writes are not routes
        rel_file = "/".join(inner)
        if mask & (flags.CREATE | flags.MOVED_TO):
            inst.file_added(rel_file)
        elif mask & (flags.DELETE | flags.MOVED_FROM):
            inst.file_removed(rel_file)
        if any(p.startswith("_") for p in inner):
            inst.drop()  # a private module: importers must reload it
        else:
            inst.drop(rel_file)

    def invalidate(
        self, subdomain: str | None = None, exec_id: str | None = None, rel: str | None = None
    ) -> None:
        """Forget what may have changed in the matching instances (``None``: any).

        Their routers are rebuilt on next use. ``rel`` (a file, or a folder with
        ``""`` the instance's own) is dropped and every other compiled script is
        checked against its file before it runs again, which keeps the module
        state of the unchanged ones. Every compiled script is dropped instead
        without ``rel``, or when it may be a private module (importers hold it).
        """
        private = rel is not None and any(p.startswith("_") for p in rel.split("/"))
        for (sub, eid), inst in self.instances.items():
            if (subdomain is None or sub == subdomain) and (exec_id is None or eid == exec_id):
                inst.structure_changed()
                if (
                    rel is None
                    or private
                    or (not rel.endswith(".py") and inst.looked_up_privates_in(rel))
                ):
                    inst.drop()
                else:
                    inst.drop(rel)
                    inst.unverified.update(inst.scripts)

    def invalidate_all(self) -> None:
        self.invalidate()

    def clear(self, subdomain: str | None = None, exec_id: str | None = None) -> tuple[int, int]:
        """``cache/clear``: drop every compiled script and private module of the
        matching instances (``None``: any), and with them their module state;
        the next request compiles afresh. Returns (instances, scripts) dropped."""
        instances = scripts = 0
        for (sub, eid), inst in list(self.instances.items()):
            if (subdomain is None or sub == subdomain) and (exec_id is None or eid == exec_id):
                instances += 1
                scripts += len(inst.scripts) + len(inst.privates)
                inst.structure_changed()
                inst.drop()
        return instances, scripts

    def forget_failures(self) -> int:
        """Drop every cached load failure (a script whose import was missing may
        load now that packages changed); working scripts keep their module
        state. Returns how many were dropped."""
        dropped = 0
        for inst in self.instances.values():
            failed = [rel for rel, s in inst.scripts.items() if type(s) is not Script]
            for rel in failed:
                inst.drop(rel)
            dropped += len(failed)
        return dropped

    # -- loading --------------------------------------------------------------
    def load(self, inst: Instance, route: Route) -> Script:
        """The compiled script for a route, fresh; raises ``ScriptLoadError``."""
        rel = route.file
        cached = inst.scripts.get(rel)
        if cached is not None and self.watcher is not None and rel not in inst.unverified:
            # inotify is the per-request check: any change to this file (or a
            # private module) has already dropped it from the cache in refresh().
            if type(cached) is Script:
                return cached
            raise cached
        path = cached.path if type(cached) is Script else os.path.join(inst.root, rel)
        try:
            identity = compiler.read_identity(path)
        except FileNotFoundError:
            inst.file_removed(rel)
            inst.drop(rel)
            raise
        inst.unverified.discard(rel)  # checked now: reused if unchanged, else recompiled
        if cached is not None:
            if isinstance(cached, Script):
                if cached.identity == identity:
                    return cached
            elif cached.extra.get("_identity") == identity:
                raise cached
        if not resolves_inside(inst.root, path):  # swapped for a link leading out: never run
            raise FileNotFoundError(path)
        try:
            with open(path, encoding="utf-8") as fh:
                source = fh.read()
            script = compiler.load(
                path,
                rel,
                identity,
                source,
                route_params=route.params,
                module_name=f"hoodyexec.scripts.{inst.subdomain}.{inst.exec_id}.{rel[:-3].replace('/', '.')}",
                importer=_PrivateImporter(self, inst, os.path.dirname(path)),
                default_timeout=self.default_timeout,
            )
        except ScriptLoadError as exc:
            exc.extra["_identity"] = identity
            inst.scripts[rel] = exc
            raise
        except UnicodeDecodeError as exc:
            err = ScriptLoadError(f"script is not UTF-8 text: {exc}", type="UnicodeDecodeError")
            err.extra["_identity"] = identity
            inst.scripts[rel] = err
            raise err from None
        script.route = route
        inst.scripts[rel] = script
        return script


class _PrivateImporter:
    """``__import__`` for scripts: ``_name`` resolves to a sibling private module.

    Private modules load per instance (never into the kit's own namespace), from
    the script's folder or a parent folder up to the instance root; anything
    else is the normal import system (installed packages, stdlib).
    """

    __slots__ = ("catalog", "inst", "folder")

    def __init__(self, catalog: Catalog, inst: Instance, folder: str) -> None:
        self.catalog = catalog
        self.inst = inst
        self.folder = folder

    def __call__(
        self, name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
    ) -> Any:
        if level == 0 and name[:1] == "_" and name[:2] != "__":
            top, _, rest = name.partition(".")
            module = self._private(top)
            if module is not None:
                leaf = module
                for part in rest.split(".") if rest else ():
                    leaf = self._submodule(leaf, part, name)
                if fromlist and hasattr(leaf, "__path__"):
                    for item in fromlist:  # ``from _pkg import mod`` loads _pkg/mod.py
                        if item != "*" and not hasattr(leaf, item):
                            self._submodule(leaf, item, None)
                return leaf if fromlist else module
        return builtins.__import__(name, globals, locals, fromlist, level)

    def _submodule(self, package: Any, item: str, wanted: str | None) -> Any:
        """``package.item`` from a private package's folder (``_sdk/client.py``), loaded
        like a private module; None when absent, or ImportError when ``wanted`` names
        a dotted import that needs it."""
        found = getattr(package, item, None)
        if found is not None:
            return found
        for folder in getattr(package, "__path__", ()):
            for candidate in (
                os.path.join(folder, item + ".py"),
                os.path.join(folder, item, "__init__.py"),
            ):
                if os.path.isfile(candidate):
                    module = self._load(f"{package.__name__}.{item}", candidate)
                    setattr(package, item, module)
                    return module
        if wanted is not None:
            raise ModuleNotFoundError(f"No module named {wanted!r}", name=wanted)
        return None

    def _private(self, top: str) -> Any:
        key = f"{self.folder}:{top}"
        privates = self.inst.privates
        if key in privates:
            return privates[key]
        folder = self.folder
        found = None
        while True:
            for candidate in (
                os.path.join(folder, top + ".py"),
                os.path.join(folder, top, "__init__.py"),
            ):
                if os.path.isfile(candidate):
                    found = candidate
                    break
            else:  # a folder without __init__.py: a package of private modules (_sdk/)
                if os.path.isdir(os.path.join(folder, top)):
                    found = os.path.join(folder, top)
            if (
                found
                or os.path.normpath(folder) == os.path.normpath(self.inst.root)
                or folder == "/"
            ):
                break
            folder = os.path.dirname(folder)
        if found is None:
            privates[key] = None
            return None
        modname = f"hoodyexec.private.{self.inst.subdomain}.{self.inst.exec_id}.{abs(hash(found)):x}.{top}"
        module = self._load(modname, found)
        privates[key] = module
        return module

    def _load(self, modname: str, found: str) -> Any:
        """Run a private module (a file, a package's ``__init__.py``, or a bare
        folder) under ``modname``, with this importer for its own imports."""
        if os.path.isdir(found):
            module = types.ModuleType(modname)
            module.__path__ = [found]
            module.__package__ = modname
            sys.modules[modname] = module
            return module
        spec = importlib.util.spec_from_file_location(
            modname,
            found,
            submodule_search_locations=[os.path.dirname(found)]
            if found.endswith("__init__.py")
            else None,
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        module.__dict__["__builtins__"] = dict(
            builtins.__dict__,
            __import__=_PrivateImporter(self.catalog, self.inst, os.path.dirname(found)),
        )
        sys.modules[modname] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(modname, None)
            raise
        return module
