"""Freshness: a recursive inotify watch on the scripts tree.

Drained by the worker's event loop as events arrive (a reader on ``fd``,
``Catalog.watch_from``), or with one non-blocking ``poll()`` per request where
no loop reads it (see ``Catalog.refresh``): a change made by any means (the
API, an editor, ``cp``) has queued its event before the write returned, so the
next request anywhere sees it.
"""

from __future__ import annotations

import logging
import os
import select

from inotify_simple import INotify, flags, parse_events

from hoodyexec.engine.routes import skip_name

log = logging.getLogger("hoodyexec.freshness")

WATCH = (
    flags.CREATE
    | flags.DELETE
    | flags.MOVED_FROM
    | flags.MOVED_TO
    | flags.CLOSE_WRITE
    | flags.MODIFY
    | flags.ATTRIB
    | flags.DELETE_SELF
    | flags.MOVE_SELF
)
STRUCTURAL = (
    flags.CREATE
    | flags.DELETE
    | flags.MOVED_FROM
    | flags.MOVED_TO
    | flags.DELETE_SELF
    | flags.MOVE_SELF
)


class Watcher:
    """Recursive inotify watch on the scripts root; ``changes()`` never blocks."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.inotify = INotify(nonblocking=True)
        self.fd = self.inotify.fileno()
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)
        # PERF: ``queued(0)`` is ``pending()`` without a Python frame (truthy
        # when events wait): the scripts sink's per-request freshness check.
        self.queued = self._poll.poll
        self.dirs: dict[int, str] = {}
        self._add_tree(root)

    def _add_tree(self, top: str) -> None:
        for dirpath, dirnames, _ in os.walk(top):
            dirnames[:] = [d for d in dirnames if not skip_name(d, folder=True)]
            try:
                wd = self.inotify.add_watch(dirpath, WATCH)
            except OSError as exc:  # vanished, or out of watches
                log.warning("cannot watch %s: %s", dirpath, exc)
                continue
            self.dirs[wd] = dirpath

    def pending(self) -> bool:
        """One non-blocking poll() of the inotify fd: is anything queued?"""
        return bool(self._poll.poll(0))

    def changes(self) -> list[tuple[str, int]] | None:
        """(path, mask) of what changed since last call; None means "assume everything"."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        out: list[tuple[str, int]] = []
        while True:
            for event in parse_events(data):
                if event.mask & flags.Q_OVERFLOW:
                    return None
                base = self.dirs.get(event.wd)
                if base is None:
                    continue
                if event.mask & flags.IGNORED:
                    self.dirs.pop(event.wd, None)
                    continue
                path = os.path.join(base, event.name) if event.name else base
                if (
                    event.mask & flags.ISDIR
                    and event.mask & (flags.CREATE | flags.MOVED_TO)
                    and not skip_name(event.name, folder=True)
                ):
                    self._add_tree(path)
                out.append((path, event.mask))
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.inotify.close()
