"""One setting, ``state-url``, picks where the kit keeps its state.

* ``sqlite:///<path>`` (or ``sqlite:<path relative to the home>``), the
  default being ``<home>/hoodyexec.db``: one node, nothing else to run.
* ``postgresql://...``: several nodes share one PostgreSQL database.
* ``redis://...`` (``rediss://`` with TLS): several nodes share one Redis.

``open_backend`` is the one factory: every process (request worker, control
worker, the master's check at start, tests) gets its shared-state store, and
with a shared backend the schedule claims, fire history and node registry,
from it. Connections are opened on first use, so a backend is safe to create
before fork; the master only ``check``s it.
"""

from __future__ import annotations

import os
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from hoodyexec.errors import ConfigError

from . import sqlite
from .base import SharedStore
from .cluster import ClaimStore, HistoryStore, NodeRegistry, Owners, StateUnavailable
from .sync import Replica

DEFAULT_FILE = "hoodyexec.db"
SCHEMES = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "redis": "redis",
    "rediss": "redis",
}


def kind_of(url: str) -> str:
    """``sqlite``, ``postgresql`` or ``redis``; ValueError for anything else."""
    scheme = url.partition(":")[0].lower() if ":" in url else ""
    kind = SCHEMES.get(scheme)
    if kind is None:
        raise ValueError(
            f"state-url: unsupported {url.split(':')[0]!r}: use sqlite:///<file>, "
            "postgresql://... or redis://..."
        )
    if kind == "sqlite" and not sqlite_path(url, "/"):
        raise ValueError("state-url: sqlite needs a file: sqlite:///<absolute path>")
    return kind


def sqlite_path(url: str, home: str) -> str:
    """The file of a ``sqlite:`` URL: ``sqlite:///abs/file.db`` is absolute,
    ``sqlite:file.db`` relative to the home."""
    rest = url.partition(":")[2]
    if rest.startswith("//"):
        rest = rest[2:]
        if not rest.startswith("/"):
            raise ValueError("state-url: sqlite:// takes no host: sqlite:///<absolute path>")
    return os.path.join(home, rest) if rest else ""


def display(url: str) -> str:
    """``url`` with its password masked, for logs and errors."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class Backend(ABC):
    kind: str
    shared: bool  # several nodes can share it

    def __init__(self, url: str) -> None:
        self.url = url

    @abstractmethod
    def check(self) -> None:
        """Connect once and prepare the schema; ``ConfigError`` naming the backend
        and the reason when it cannot be used (the kit then refuses to start)."""

    @abstractmethod
    def store(self) -> SharedStore:
        """Shared state (connections opened on first use, in this process)."""

    def nodes(self) -> NodeRegistry | None:
        """The node registry (shared backends only)."""
        return None

    def ledger(
        self, node: str, clock: Callable[[], float] = time.time
    ) -> tuple[ClaimStore, HistoryStore] | None:
        """Schedule claims and fire history for the whole cluster (shared backends
        only; ``node`` is this node's id); None: the scheduler keeps its own."""
        return None

    def replica(self) -> Replica | None:
        """Scripts, packages and their notices across nodes (shared backends only)."""
        return None

    def _refuse(self, reason: object) -> ConfigError:
        return ConfigError(f"state backend {display(self.url)} is unusable: {reason}")


class SqliteBackend(Backend):
    kind = "sqlite"
    shared = False

    def __init__(self, url: str, path: str) -> None:
        super().__init__(url)
        self.path = path

    def check(self) -> None:
        try:
            conn = sqlite.connect(self.path)
            try:
                sqlite.migrate(conn)
            finally:
                conn.close()
        except sqlite.StateDBError as exc:
            raise self._refuse(exc) from None

    def store(self) -> SharedStore:
        return sqlite.SqliteStore(self.path)


class SharedBackend(Backend):
    """PostgreSQL or Redis: the same parts, from that backend's module."""

    shared = True

    def __init__(self, url: str, kind: str, parts: SharedParts) -> None:
        super().__init__(url)
        self.kind = kind
        self.parts = parts

    def check(self) -> None:
        try:
            self.parts.check()
        except StateUnavailable as exc:
            raise self._refuse(exc.extra.get("detail", exc)) from None

    def store(self) -> SharedStore:
        return self.parts.store()

    def nodes(self) -> NodeRegistry:
        return self.parts.nodes()

    def ledger(
        self, node: str, clock: Callable[[], float] = time.time
    ) -> tuple[ClaimStore, HistoryStore]:
        owners = Owners(node, self.nodes(), clock)
        return self.parts.claims(owners, clock), self.parts.history()

    def replica(self) -> Replica:
        return self.parts.replica()


@dataclass(frozen=True)
class SharedParts:
    """How one shared backend makes each of its parts (over one connection pool)."""

    check: Callable[[], object]
    store: Callable[[], SharedStore]
    nodes: Callable[[], NodeRegistry]
    claims: Callable[[Owners, Callable[[], float]], ClaimStore]
    history: Callable[[], HistoryStore]
    replica: Callable[[], Replica]


def _postgres(url: str) -> SharedBackend:
    from . import postgres
    from .pgsync import PostgresReplica

    db = postgres.Database(url)
    parts = SharedParts(
        check=lambda: postgres.check(url),
        store=lambda: postgres.PostgresStore(db),
        nodes=lambda: postgres.PostgresNodes(db),
        claims=lambda owners, clock: postgres.PostgresClaims(db, owners, clock),
        history=lambda: postgres.PostgresHistory(db),
        replica=lambda: PostgresReplica(db),
    )
    return SharedBackend(url, "postgresql", parts)


def _redis(url: str) -> SharedBackend:
    from . import redisdb
    from .redissync import RedisReplica

    db = redisdb.Database(url)
    parts = SharedParts(
        check=lambda: redisdb.check(url),
        store=lambda: redisdb.RedisStore(db),
        nodes=lambda: redisdb.RedisNodes(db),
        claims=lambda owners, clock: redisdb.RedisClaims(db, owners, clock),
        history=lambda: redisdb.RedisHistory(db),
        replica=lambda: RedisReplica(db),
    )
    return SharedBackend(url, "redis", parts)


def open_backend(url: str | None, home: str) -> Backend:
    """The backend ``state-url`` names (None: ``<home>/hoodyexec.db``)."""
    if not url:
        path = os.path.join(home, DEFAULT_FILE)
        return SqliteBackend(f"sqlite://{path}", path)
    try:
        kind = kind_of(url)
        if kind == "sqlite":
            return SqliteBackend(url, sqlite_path(url, home))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return _postgres(url) if kind == "postgresql" else _redis(url)
