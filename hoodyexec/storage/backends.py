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


class PostgresBackend(Backend):
    kind = "postgresql"
    shared = True

    def __init__(self, url: str) -> None:
        from . import postgres

        super().__init__(url)
        self._mod = postgres
        self.db = postgres.Database(url)

    def check(self) -> None:
        try:
            self._mod.check(self.url)
        except StateUnavailable as exc:
            raise self._refuse(exc.extra.get("detail", exc)) from None

    def store(self) -> SharedStore:
        return self._mod.PostgresStore(self.db)

    def nodes(self) -> NodeRegistry:
        return self._mod.PostgresNodes(self.db)

    def ledger(
        self, node: str, clock: Callable[[], float] = time.time
    ) -> tuple[ClaimStore, HistoryStore]:
        owners = Owners(node, self.nodes(), clock)
        return self._mod.PostgresClaims(self.db, owners, clock), self._mod.PostgresHistory(self.db)

    def replica(self) -> Replica:
        from .pgsync import PostgresReplica

        return PostgresReplica(self.db)


class RedisBackend(Backend):
    kind = "redis"
    shared = True

    def __init__(self, url: str) -> None:
        from . import redisdb

        super().__init__(url)
        self._mod = redisdb
        self.db = redisdb.Database(url)

    def check(self) -> None:
        try:
            self._mod.check(self.url)
        except StateUnavailable as exc:
            raise self._refuse(exc.extra.get("detail", exc)) from None

    def store(self) -> SharedStore:
        return self._mod.RedisStore(self.db)

    def nodes(self) -> NodeRegistry:
        return self._mod.RedisNodes(self.db)

    def ledger(
        self, node: str, clock: Callable[[], float] = time.time
    ) -> tuple[ClaimStore, HistoryStore]:
        owners = Owners(node, self.nodes(), clock)
        return self._mod.RedisClaims(self.db, owners, clock), self._mod.RedisHistory(self.db)

    def replica(self) -> Replica:
        from .redissync import RedisReplica

        return RedisReplica(self.db)


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
    if kind == "postgresql":
        return PostgresBackend(url)
    return RedisBackend(url)
