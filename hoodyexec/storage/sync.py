"""What a shared backend keeps so that every node serves the same scripts and
packages: the replica of the management API's changes, and the notices that
tell nodes about them.

* **Scripts**: one row per file ``(subdomain, execId, path)`` holding the
  digest of its content (SHA-256; ``None`` once deleted: a tombstone) and the
  sequence number of its last change, taken from one counter in the backend;
  contents are stored once per digest (content-addressed). A node that has
  applied every change up to ``seq`` catches up with ``since(seq)``: the rows
  changed after it, in sequence order, with their contents. A node that
  starts asks ``since(0)``: the whole tree. Of two writes of one path, the
  one with the higher sequence number is the one every node keeps (last
  write wins, by the backend's order).
* **Packages**: the project file and the lock, one versioned record.
* **Progress**: per node, the last script change it applied and the digest of
  the lock it runs (health lists them).
* **Notices**: ``s <seq>`` (scripts changed), ``a <node> <seq>`` (a node
  applied up to ``seq``), ``p <version>`` (packages changed), over PostgreSQL
  ``LISTEN/NOTIFY`` or Redis pub/sub. Notices only wake nodes up: what
  changed is always read from the tables, so a notice lost while a node was
  disconnected costs nothing once it catches up.

``ClusterBus`` runs one listener thread per control worker and hands the
notices to the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from hoodyexec.errors import HoodyError

log = logging.getLogger("hoodyexec.cluster")

CHANNEL = "hoodyexec_sync"
BATCH = 500  # changes read at once while catching up
RECONNECT = 1.0  # seconds between two attempts to listen again


def digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@dataclass(frozen=True)
class Change:
    """One file's latest change: ``content`` None for a deletion."""

    seq: int
    subdomain: str
    exec_id: str
    path: str
    digest: str | None
    content: bytes | None


@dataclass(frozen=True)
class Upsert:
    path: str
    content: bytes
    digest: str


@dataclass
class Publication:
    """The state of some paths of one instance, as the node that changed them
    sees it: ``files`` to store; under each of ``roots`` (a path, a folder,
    ``""`` for the whole instance) every stored file not in ``files`` is gone."""

    subdomain: str
    exec_id: str
    files: list[Upsert] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Packages:
    """The cluster's packages: the project file and lock texts (None: absent)."""

    version: int
    project: str | None
    lock: str | None
    digest: str  # of the lock ("" when there is none)
    node: str


@dataclass(frozen=True)
class Progress:
    node: str
    scripts: int  # the last script change the node applied
    lock: str  # the digest of the lock it runs
    at: float


def lock_digest(lock: str | None) -> str:
    """Short digest of a lock text ("" for none): what health shows per node."""
    return digest(lock.encode())[:16] if lock else ""


class Replica(ABC):
    """The shared tables behind scripts and packages across nodes.

    Every method may raise ``StateUnavailable`` while the backend is down."""

    @abstractmethod
    def publish(self, node: str, pub: Publication) -> int:
        """Store ``pub``'s changes (files whose digest is unchanged are skipped)
        and notify; the sequence number of the last change (the current head
        when nothing changed)."""

    @abstractmethod
    def since(self, seq: int, limit: int = BATCH) -> list[Change]:
        """Changes after ``seq`` in sequence order, at most ``limit``."""

    @abstractmethod
    def head(self) -> int:
        """The sequence number of the last change (0: none yet)."""

    @abstractmethod
    def mark(self, node: str, *, scripts: int | None = None, lock: str | None = None) -> None:
        """Record a node's progress (fields left None keep their value) and notify."""

    @abstractmethod
    def progress(self) -> dict[str, Progress]: ...

    @abstractmethod
    def put_packages(self, node: str, project: str | None, lock: str | None) -> int:
        """Store the project file and lock (a new version, notified)."""

    @abstractmethod
    def packages(self) -> Packages | None: ...

    @abstractmethod
    def listen(self) -> Listener:
        """A connection that receives the notices (a new one per call)."""

    @abstractmethod
    def close(self) -> None: ...


class Listener(ABC):
    @abstractmethod
    def wait(self, timeout: float) -> list[str]:
        """The notices received within ``timeout`` seconds (maybe none);
        ``StateUnavailable`` when the connection is lost."""

    @abstractmethod
    def close(self) -> None: ...


Handler = Callable[[list[str]], None]


class ClusterBus:
    """One listener per control worker: the notices go to every subscriber,
    on the event loop. ``connected`` tells whether notices are being received;
    each (re)connection calls the ``on_connect`` subscribers, which catch up
    on what they may have missed."""

    def __init__(self, replica: Replica, node: str) -> None:
        self.replica = replica
        self.node = node
        self.connected = False
        self._subscribers: list[Handler] = []
        self._on_connect: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def subscribe(self, handler: Handler, on_connect: Callable[[], None] | None = None) -> None:
        self._subscribers.append(handler)
        if on_connect is not None:
            self._on_connect.append(on_connect)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="hoodyexec-sync", daemon=True)
        self._thread.start()

    async def stop(self, drain: float = 0.0) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                listener = self.replica.listen()
            except HoodyError as exc:
                if not failing:
                    log.error("cluster notices: cannot listen: %s %s", exc, exc.extra)
                failing = True
                self._stop.wait(RECONNECT)
                continue
            if failing:
                log.info("cluster notices: listening again")
            failing = False
            try:
                self._serve(listener)
            except HoodyError as exc:
                log.error("cluster notices: connection lost: %s %s", exc, exc.extra)
                failing = True
            finally:
                self._set_connected(False)
                listener.close()

    def _serve(self, listener: Listener) -> None:
        self._set_connected(True)
        while not self._stop.is_set():
            notices = listener.wait(0.5)
            if notices:
                self._call(self._deliver, notices)

    def _set_connected(self, up: bool) -> None:
        self.connected = up
        if up:
            for callback in self._on_connect:
                self._call(callback)

    def _deliver(self, notices: list[str]) -> None:
        for handler in self._subscribers:
            try:
                handler(notices)
            except Exception:  # noqa: BLE001 - one subscriber's bug is not the others'
                log.exception("a cluster notice handler failed")

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # the loop closed meanwhile
                pass


async def keep_in_step(
    wake: asyncio.Event,
    step: Callable[[], Awaitable[None]],
    what: str,
    resync: float,
    retry: float,
) -> None:
    """Run ``step`` whenever ``wake`` is set, and at least every ``resync``
    seconds (a notice may be lost); after a failure, again in ``retry`` seconds.
    The loop of every node-side follower (scripts, packages)."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), resync)
        wake.clear()
        try:
            await step()
        except HoodyError as exc:
            log.error("%s: %s %s", what, exc, exc.extra)
            await asyncio.sleep(retry)
            wake.set()
