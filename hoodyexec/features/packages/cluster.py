"""Packages across nodes (a shared state backend only): the project file and
the lock live in the backend; every node installs from that lock.

* After a package change made through the API on one node (install, pin,
  project update or init), that node writes ``requirements.lock`` from what it
  now runs when the lock no longer says so (exact ``name==version`` pins) and
  stores ``pyproject.toml`` and the lock in the backend as a new version.
* Every node converges: at start, on the ``p <version>`` notice and after a
  reconnection, a node whose lock differs from the stored one writes both
  files and installs exactly the lock (``package/install`` without packages:
  a fresh set, swapped in atomically, workers told), then records the digest
  of the lock it runs (health: ``lock``, and per node in ``nodes``).
* The first node of an empty backend that has a lock or project file of its
  own stores them.

The call that changed packages answers without waiting for the other nodes:
an install may take minutes. Health stays ``starting`` until a starting node
has converged once (a failed install is reported in ``packages.error`` and
does not hold the node back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

from packaging.utils import canonicalize_name

from hoodyexec.errors import HoodyError
from hoodyexec.files import write_atomic
from hoodyexec.storage.sync import ClusterBus, Replica, keep_in_step, lock_digest

from .service import LOCK_HEADER, PackageService

log = logging.getLogger("hoodyexec.cluster")

RESYNC = 30.0  # seconds between two checks without a notice
RETRY = 2.0


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def pins(lock: str | None) -> set[str]:
    """``name==version`` of every requirement line of a lock (hashes, options
    and comments left out), names canonical."""
    out: set[str] = set()
    for raw in (lock or "").splitlines():
        line = raw.split("#", 1)[0].strip().rstrip("\\").strip()
        if not line or line.startswith("-"):
            continue
        requirement = line.split(";", 1)[0].split()[0]
        name, sep, version = requirement.partition("==")
        if sep:
            out.add(f"{canonicalize_name(name)}=={version}")
    return out


class PackageSync:
    def __init__(
        self, service: PackageService, replica: Replica, bus: ClusterBus, node: str
    ) -> None:
        self.service = service
        self.replica = replica
        self.bus = bus
        self.node = node
        self.version = 0  # the stored version this node runs
        self.ready = False
        self.error: str | None = None
        self.running = self.lock()  # the digest of the lock this node runs
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def home(self) -> Any:
        return self.service.home

    def lock(self) -> str:
        return lock_digest(_read(self.home.lock))

    def status(self) -> tuple[bool, dict[str, Any]]:
        facts: dict[str, Any] = {"lock": self.running}
        facts["packages"] = {"synced": self.ready, "version": self.version, "error": self.error}
        return self.ready, facts

    # -- service --------------------------------------------------------------------
    async def start(self) -> None:
        self.bus.subscribe(self._notices, self._wake.set)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, drain: float = 0.0) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _notices(self, notices: list[str]) -> None:
        for notice in notices:
            kind, _, rest = notice.partition(" ")
            if kind == "p" and rest.isdigit() and int(rest) > self.version:
                self._wake.set()

    async def _run(self) -> None:
        await keep_in_step(
            self._wake, self.converge, "cluster packages: cannot converge", RESYNC, RETRY
        )

    # -- converging -------------------------------------------------------------------
    async def converge(self) -> None:
        async with self._lock:
            stored = await asyncio.to_thread(self.replica.packages)
            if stored is None:
                if _read(self.home.lock) is not None or _read(self.home.project) is not None:
                    await self._publish()
            elif stored.version > self.version:
                if stored.digest != self.lock() or stored.project != _read(self.home.project):
                    await self._install(stored.project, stored.lock)
                self.version = stored.version
            self.running = self.lock()
            await asyncio.to_thread(self.replica.mark, self.node, lock=self.running)
            self.ready = True

    async def _install(self, project: str | None, lock: str | None) -> None:
        log.info("cluster packages: installing the cluster's lock (%s)", lock_digest(lock))
        self._put(self.home.project, project)
        self._put(self.home.lock, lock)
        if lock is None or not pins(lock):
            self.error = None
            return
        plan = self.service.plan_sync(dev=True, force=False)  # busy: tried again later
        report = await self.service.execute(plan)
        failed = [r for r in report["results"] if r["status"] == "failed"]
        self.error = "; ".join(str(r.get("error")) for r in failed) or None
        if self.error:
            log.error("cluster packages: install from the lock failed: %s", self.error)

    @staticmethod
    def _put(path: str, text: str | None) -> None:
        if text is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        write_atomic(path, text.encode())

    # -- publishing -------------------------------------------------------------------
    async def changed(self) -> None:
        """A package call changed this node: store its project file and lock."""
        try:
            async with self._lock:
                await self._publish()
                self.running = self.lock()
                await asyncio.to_thread(self.replica.mark, self.node, lock=self.running)
        except HoodyError as exc:
            log.error("cluster packages: could not publish: %s %s", exc, exc.extra)

    async def _publish(self) -> None:
        live = await asyncio.to_thread(self.service.sets.installed)
        kit = self.service.kit()
        running = {
            f"{canonicalize_name(d.name)}=={d.version}" for k, d in live.items() if k not in kit
        }
        lock = _read(self.home.lock)
        if running and pins(lock) != running:  # the lock says what this node runs
            body = "".join(
                f"{d.name}=={d.version}\n" for k, d in sorted(live.items()) if k not in kit
            )
            lock = LOCK_HEADER + body
            write_atomic(self.home.lock, lock.encode())
        self.version = await asyncio.to_thread(
            self.replica.put_packages, self.node, _read(self.home.project), lock
        )
        self.error = None
