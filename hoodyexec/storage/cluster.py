"""What a state backend shared by several nodes offers beyond shared state.

* ``ClaimStore`` / ``HistoryStore``: the scheduler's exactly-once claims and
  its fire history (``features/schedules`` keeps the SQLite ones; PostgreSQL
  and Redis implement these in the shared database, so every node claims a tick
  in the same place and reads the same history).
* ``NodeRegistry``: the nodes of the cluster, each registering itself with a
  heartbeat; a node whose last beat is older than the TTL is gone.

Every method may raise ``StateUnavailable`` (503) while the backend is down.
"""

from __future__ import annotations

import hashlib
import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from hoodyexec.clock import pid_alive
from hoodyexec.errors import HoodyError

from .base import Rows
from .layout import Row

HEARTBEAT = 5.0  # seconds between two beats of a node
NODE_TTL = 20.0  # seconds after its last beat a node counts as gone
HISTORY_KEEP = 10_000  # fire history entries a shared backend keeps (newest)
LOST_NOTE = "the control worker stopped before the run answered"


class StateUnavailable(HoodyError):
    """The state backend cannot be reached (down, restarting, unreachable)."""

    status = 503

    def __init__(self, detail: str) -> None:
        super().__init__("state backend unavailable", headers={"Retry-After": "1"}, detail=detail)


@dataclass(frozen=True)
class Claim:
    script: str
    tick: int
    run_id: str
    status: str
    owner: int
    claimed_at: float
    finished_at: float | None
    duration_ms: float | None
    error: str | None


@dataclass(frozen=True)
class Node:
    """A kit node: ``id`` (stable for a home and bind on a host), the address it
    serves (``bind``, host:port), its master's pid, when it started and when it
    last beat (epoch seconds)."""

    id: str
    bind: str
    host: str
    pid: int
    started: float
    last_seen: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "bind": self.bind,
            "host": self.host,
            "pid": self.pid,
            "started": self.started,
            "lastSeen": self.last_seen,
        }


def node_id(home: str, bind: str, host: str | None = None) -> str:
    """``<host>-<8 hex>``: the same for a restart of the kit at this home and bind."""
    host = host or socket.gethostname()
    digest = hashlib.blake2b(f"{home}\0{bind}".encode(), digest_size=4).hexdigest()
    return f"{host}-{digest}"


class NodeRegistry(ABC):
    """The cluster's nodes (``ttl``: seconds after its last beat a node is gone)."""

    ttl: float = NODE_TTL

    @abstractmethod
    def beat(self, node: Node) -> None:
        """Register ``node`` or refresh it (``node.last_seen`` is the beat's time)."""

    @abstractmethod
    def leave(self, node_id: str) -> None:
        """Remove a node (a clean stop)."""

    @abstractmethod
    def nodes(self, now: float) -> list[Node]:
        """The live nodes at ``now`` (last beat within ``ttl``), by id."""

    @abstractmethod
    def close(self) -> None: ...


class ClaimStore(ABC):
    """``(script, tick)`` claims: the first ``claim`` wins, in the whole cluster."""

    @abstractmethod
    def claim(self, script: str, tick: int, run_id: str, status: str = "running") -> bool:
        """Take ``(script, tick)``; False when someone already has."""

    @abstractmethod
    def finish(
        self, script: str, tick: int, status: str, duration_ms: float, error: str | None
    ) -> None: ...

    @abstractmethod
    def last_tick(self, script: str) -> int | None: ...

    @abstractmethod
    def last(self) -> dict[str, Claim]:
        """The newest claim of every script."""

    @abstractmethod
    def running_elsewhere(self, script: str) -> bool:
        """A run of ``script`` by another live scheduler."""

    @abstractmethod
    def orphans(self) -> list[Claim]:
        """Mark ``running`` claims of dead owners ``lost``; returns them."""

    @abstractmethod
    def registered(self, script: str, expression: str, now: float) -> float:
        """When ``script`` was registered with ``expression`` (now, if new or changed)."""

    @abstractmethod
    def forget(self, script: str) -> None: ...

    @abstractmethod
    def close(self) -> None: ...


class HistoryStore(ABC):
    """Finished fires (JSON objects), read newest first."""

    @abstractmethod
    def append(self, entry: dict[str, Any]) -> None: ...

    @abstractmethod
    def read(
        self,
        *,
        script: str | None = None,
        since: float | None = None,
        limit: int = 100,
        rotated: bool = False,
    ) -> list[dict[str, Any]]: ...


class Owners:
    """Whether the scheduler that claimed a run is alive: on this node, its
    process; on another node, that node's heartbeat."""

    def __init__(self, node: str, registry: NodeRegistry, clock: Callable[[], float]) -> None:
        self.node = node
        self.registry = registry
        self.clock = clock

    def alive(self, node: str, pid: int, live: set[str] | None = None) -> bool:
        if node == self.node:
            return pid_alive(pid)
        if live is None:
            live = self.live()
        return node in live

    def live(self) -> set[str]:
        return {n.id for n in self.registry.nodes(self.clock())}

    def mine(self, node: str, pid: int) -> bool:
        return node == self.node and pid == os.getpid()


def matches(entry: dict[str, Any], script: str | None, since: float | None) -> bool:
    """A history entry passes the ``script`` and ``since`` filters."""
    if script is not None and entry.get("script") != script:
        return False
    return not (since is not None and float(entry.get("time", 0)) < since)


def lock_id(namespace: str, key: str) -> int:
    """A signed 64-bit number for ``key`` (PostgreSQL advisory locks)."""
    digest = hashlib.blake2b(f"{namespace}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


T = TypeVar("T")


class NeedsSnapshot(Exception):
    """A read asked for more than one range: run it again in a snapshot."""


class OneRead(Rows):
    """A read that makes one ranged read is consistent on its own: the first
    ``locate`` goes straight to ``fetch``; a second raises ``NeedsSnapshot``."""

    __slots__ = ("fetch", "used")

    def __init__(self, fetch: Callable[[list[bytes], bytes, bytes, int], list[Row]]) -> None:
        self.fetch = fetch
        self.used = False

    def locate(self, ancestors: list[bytes], lo: bytes, hi: bytes, limit: int = -1) -> list[Row]:
        if self.used:
            raise NeedsSnapshot
        self.used = True
        return self.fetch(ancestors, lo, hi, limit)

    def put(self, rows: list[Row]) -> None:
        raise TypeError("a read does not write")

    def erase(self, lo: bytes, hi: bytes) -> int:
        raise TypeError("a read does not write")

    def touch(self) -> None:
        raise TypeError("a read does not write")
