"""Which scripts are scheduled: read from disk, never from a cache of our own.

A script is scheduled when its leading comment block has a valid ``@schedule``
(5-field cron, UTC). Only that block is read (the first 64 KiB of the file);
nothing is compiled or run. ``@enabled false`` keeps it listed but never fired;
a script whose route has parameters cannot be fired (there is no value for
them) and is listed with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from hoodyexec.engine import magic
from hoodyexec.engine.routes import NotRoutable, route_for, skip_name

HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Entry:
    subdomain: str
    exec_id: str
    rel: str  # relative to the instance folder, "/" separators
    path: str  # absolute
    expression: str
    overlap: str  # skip | allow
    enabled: bool
    token: bool
    timeout_ms: int
    route: str | None
    error: str | None = None

    @property
    def key(self) -> str:
        return f"{self.subdomain}/{self.exec_id}/{self.rel}"

    @property
    def fires(self) -> bool:
        return self.enabled and self.route is not None


def read_entry(scripts: str, subdomain: str, exec_id: str, rel: str) -> Entry | None:
    """The schedule of one script file, or None when it has none (or is unreadable)."""
    path = os.path.join(scripts, subdomain, exec_id, rel)
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES).decode("utf-8", "replace")
    except OSError:
        return None
    found, errors = magic.parse(head)
    if found.schedule is None or any(e.name == "schedule" for e in errors):
        return None
    route: str | None = None
    error = None
    try:
        r = route_for(rel)
        if r.params:
            error = f"its route {r.route} has parameters: a scheduled run has no value for them"
        else:
            route = r.templates[0] if r.templates else r.route
    except NotRoutable as exc:
        error = f"not a route: {exc}"
    return Entry(
        subdomain,
        exec_id,
        rel,
        path,
        found.schedule,
        found.schedule_overlap,
        found.enabled,
        found.token is not None,
        found.timeout,
        route,
        error,
    )


def instances(scripts: str) -> list[tuple[str, str]]:
    out = []
    for sub in _dirs(scripts):
        for eid in _dirs(os.path.join(scripts, sub)):
            out.append((sub, eid))
    return out


def scan(scripts: str, only: Iterable[tuple[str, str]] | None = None) -> dict[str, Entry]:
    """Every scheduled script of the given instances (default: all)."""
    found: dict[str, Entry] = {}
    for sub, eid in instances(scripts) if only is None else only:
        root = os.path.join(scripts, sub, eid)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not skip_name(d, folder=True))
            for name in sorted(filenames):
                if not name.endswith(".py") or skip_name(name):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
                entry = read_entry(scripts, sub, eid, rel)
                if entry is not None:
                    found[entry.key] = entry
    return found


def _dirs(path: str) -> list[str]:
    try:
        return sorted(
            e.name for e in os.scandir(path) if e.is_dir(follow_symlinks=False) and e.name[0] != "."
        )
    except OSError:
        return []
