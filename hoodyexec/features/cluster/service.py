"""Scripts across nodes: every management change is stored in the shared
backend, and every node applies every stored change to its own tree.

* **Publishing** (the node that answered the management call): the paths the
  call changed are read right after the change, on the control worker's loop,
  before anything else runs there (``snapshot``), then stored in the backend
  (``Replica.publish``: one sequence number per file changed). The call
  answers once every live node reported it applied that sequence number, or
  after ``ACK_WAIT`` seconds (the nodes that did not are logged).
* **Applying** (every node, the publisher included): a notice wakes the
  applier, which reads the changes after the last one it applied, in sequence
  order, writes each file atomically (``files.write_atomic``) or removes it,
  tells its own request workers (``Context.tell``: the change listeners, then
  ``Invalidate``, waited for) and records its progress in the backend, which
  notifies the publisher.
* **Starting and reconnecting**: nothing is ready (health ``starting``) until
  every change stored so far was applied; the same catch-up runs whenever the
  notices' connection comes back, and every ``RESYNC`` seconds in case a
  notice was lost.

Last write wins by the backend's order: of two changes of one path the one
with the higher sequence number is applied last on every node. Files put in a
node's tree any other way than the management API are not published and stay
on that node (until a management call changes that same path).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hoodyexec.engine.store import Scope, safe_path
from hoodyexec.errors import HoodyError
from hoodyexec.files import is_temp_name, write_atomic
from hoodyexec.home import Home
from hoodyexec.storage.sync import (
    Change,
    ClusterBus,
    Publication,
    Replica,
    Upsert,
    digest,
    keep_in_step,
)

log = logging.getLogger("hoodyexec.cluster")

ACK_WAIT = 2.0  # seconds a management change waits for the other nodes
RESYNC = 5.0  # seconds between two catch-ups without a notice
RETRY = 1.0  # seconds before catching up again after a failure
MAX_FILE = 16 * 1024 * 1024  # a bigger file is not published (logged)
_SKIP_DIRS = {"__pycache__"}

Tell = Callable[[Scope, tuple[str, ...]], Awaitable[None]]
LiveNodes = Callable[[], list[str]]


class ScriptSync:
    def __init__(
        self,
        home: Home,
        replica: Replica,
        bus: ClusterBus,
        node: str,
        tell: Tell,
        live_nodes: LiveNodes,
    ) -> None:
        self.home = home
        self.replica = replica
        self.bus = bus
        self.node = node
        self.tell = tell
        self.live_nodes = live_nodes
        self.applied = 0  # the last change applied to this node's tree
        self.ready = False  # caught up since the notices (re)connected
        self.synced_at: float | None = None
        self.acks: dict[str, int] = {}
        self._acked = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- service ------------------------------------------------------------------
    async def start(self) -> None:
        self.bus.subscribe(self._notices, self._connected)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, drain: float = 0.0) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def status(self) -> tuple[bool, dict[str, Any]]:
        """Health: ready once caught up; what was applied."""
        return self.ready, {
            "scripts": {
                "synced": self.ready,
                "applied": self.applied,
                "listening": self.bus.connected,
            }
        }

    # -- notices (on the loop) ----------------------------------------------------------
    def _connected(self) -> None:
        self.ready = False  # until the catch-up below is done
        self._wake.set()

    def _notices(self, notices: list[str]) -> None:
        for notice in notices:
            kind, _, rest = notice.partition(" ")
            if kind == "s" and _number(rest) > self.applied:
                self._wake.set()
            elif kind == "a":
                node, _, seq = rest.partition(" ")
                self._ack(node, _number(seq))

    def _ack(self, node: str, seq: int) -> None:
        if seq > self.acks.get(node, 0):
            self.acks[node] = seq
            self._acked.set()
            self._acked = asyncio.Event()

    # -- applying ---------------------------------------------------------------------
    async def _run(self) -> None:
        await keep_in_step(
            self._wake, self.catch_up, "cluster scripts: cannot catch up", RESYNC, RETRY
        )

    async def catch_up(self) -> None:
        """Apply every change stored after the last one applied; ready when done
        while the notices are being received (so nothing can have been missed)."""
        listening = self.bus.connected
        start = self.applied
        if not self.acks:
            for node, progress in (await asyncio.to_thread(self.replica.progress)).items():
                self._ack(node, progress.scripts)
        while True:
            changes = await asyncio.to_thread(self.replica.since, self.applied)
            if not changes:
                break
            touched = self._apply(changes)
            self.applied = changes[-1].seq
            for (sub, eid), paths in touched.items():
                await self.tell(Scope(self.home, sub, eid), tuple(paths))
        if self.applied != start or self.synced_at is None:
            await asyncio.to_thread(self.replica.mark, self.node, scripts=self.applied)
            self._ack(self.node, self.applied)
        if listening and self.bus.connected:
            if not self.ready:
                log.info("cluster scripts: in sync at change %d", self.applied)
            self.ready = True
            self.synced_at = time.time()

    def _apply(self, changes: list[Change]) -> dict[tuple[str, str], list[str]]:
        """Write or remove each changed file (on the loop: a management change
        and its snapshot never interleave with it); the paths that changed, by
        instance."""
        touched: dict[tuple[str, str], list[str]] = {}
        for change in changes:
            try:
                scope = Scope(self.home, change.subdomain, change.exec_id)
                target, rel = safe_path(scope, change.path)
                if apply_change(scope, target, change):
                    touched.setdefault((scope.subdomain, scope.exec_id), []).append(rel)
            except (HoodyError, OSError) as exc:
                log.error(
                    "cluster scripts: cannot apply change %d (%s/%s %s): %s",
                    change.seq,
                    change.subdomain,
                    change.exec_id,
                    change.path,
                    exc,
                )
        return touched

    # -- publishing -------------------------------------------------------------------
    def snapshot(self, scope: Scope, paths: tuple[str, ...]) -> Callable[[], Awaitable[None]]:
        """Read what ``paths`` hold now (no path: the whole instance)."""
        pub = Publication(scope.subdomain, scope.exec_id)
        for rel in paths or ("",):
            pub.roots.append(rel)
            pub.files.extend(read_files(scope, rel))

        async def publish() -> None:
            seq = await asyncio.to_thread(self.replica.publish, self.node, pub)
            await self.wait_applied(seq)

        return publish

    async def wait_applied(self, seq: int, timeout: float = ACK_WAIT) -> list[str]:
        """Wait until every live node applied ``seq``; the nodes that did not."""
        deadline = time.monotonic() + timeout
        try:
            live = set(await asyncio.to_thread(self.live_nodes)) | {self.node}
        except HoodyError:
            live = {self.node}
        self._wake.set()  # this node too applies its own change, in order
        while True:
            late = sorted(n for n in live if self.acks.get(n, 0) < seq)
            left = deadline - time.monotonic()
            if not late or left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked.wait(), left)
        if late:
            log.warning(
                "cluster scripts: change %d not applied by %s within %.1f s",
                seq,
                ", ".join(late),
                timeout,
            )
        return late


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def read_files(scope: Scope, rel: str) -> list[Upsert]:
    """The files at ``rel`` (a file, or every file under a folder; symlinked
    folders, caches and temp files left out), as they are now."""
    target = os.path.join(scope.root, rel) if rel else scope.root
    if os.path.isfile(target):
        one = _read(target, rel)
        return [one] if one is not None else []
    out: list[Upsert] = []
    if not os.path.isdir(target) or os.path.islink(target):
        return out
    for folder, dirs, names in os.walk(target):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(names):
            if is_temp_name(name):
                continue
            path = os.path.join(folder, name)
            found = _read(path, os.path.relpath(path, scope.root).replace(os.sep, "/"))
            if found is not None:
                out.append(found)
    return out


def _read(path: str, rel: str) -> Upsert | None:
    try:
        if os.path.getsize(path) > MAX_FILE:
            log.warning("cluster scripts: %s is over %d bytes: not published", rel, MAX_FILE)
            return None
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:  # gone meanwhile, unreadable
        return None
    return Upsert(rel, data, digest(data))


def apply_change(scope: Scope, target: str, change: Change) -> bool:
    """Bring one file to ``change``; False when it already was."""
    if change.digest is None:
        if os.path.isdir(target) and not os.path.islink(target):
            return False  # a folder the change log never held as a file
        try:
            os.unlink(target)
        except FileNotFoundError:
            return False
        _prune(scope.root, os.path.dirname(target))
        return True
    content = change.content if change.content is not None else b""
    try:
        with open(target, "rb") as fh:
            if digest(fh.read()) == change.digest:
                return False
    except (FileNotFoundError, NotADirectoryError):
        pass
    os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
    write_atomic(target, content)
    return True


def _prune(root: str, folder: str) -> None:
    """Remove the folders a deletion left empty, up to the instance folder."""
    while folder != root and folder.startswith(root + os.sep):
        try:
            os.rmdir(folder)
        except OSError:
            return
        folder = os.path.dirname(folder)
