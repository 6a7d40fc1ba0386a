"""The PostgreSQL backend: shared state, schedule claims and history, nodes.

For a cluster of kit nodes sharing one database (``state-url =
postgresql://...``). Each process opens its own psycopg 3 connection pool
after fork (never the master, which only checks the database at start).

Shared state is stored by path (``layout.py``) in ``hoodyexec_shared_paths``
``(hostname, path bytea, value bytea)``: ``bytea`` compares bytewise, so a
subtree is one index range, as in SQLite. A write is one transaction that
first takes a transaction-scoped advisory lock on its document: writers of one
document queue on it (readers never wait), then read the rows of the path and
write those that change; READ COMMITTED gives every statement after the lock
the latest committed rows, so two nodes incrementing one counter each get a
distinct value. The lock is released by COMMIT, ROLLBACK or the connection
dying. A read is one statement (one snapshot).

A connection that fails (server down, restarted, network) is dropped by the
pool, which reconnects on its own; the call answers ``StateUnavailable``
(503). A call whose first statement fails on a connection that died while idle
is tried once more on a fresh one (nothing was done yet).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import msgspec
import psycopg
import psycopg_pool

from .base import Rows, SharedStore
from .cluster import (
    HISTORY_KEEP,
    LOST_NOTE,
    Claim,
    ClaimStore,
    HistoryStore,
    NeedsSnapshot,
    Node,
    NodeRegistry,
    OneRead,
    Owners,
    StateUnavailable,
    lock_id,
    matches,
)
from .layout import Row

T = TypeVar("T")

SCHEMA_VERSION = 1
CONNECT_TIMEOUT = 3  # seconds to open a connection
POOL_TIMEOUT = 3.0  # seconds a call waits for a pooled connection before 503
POOL_MAX = 8
_MIGRATION_LOCK = lock_id("hoodyexec", "migration")

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS hoodyexec_meta (
        key text PRIMARY KEY, value text NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS hoodyexec_shared_paths (
        hostname text NOT NULL, path bytea NOT NULL, value bytea NOT NULL,
        PRIMARY KEY (hostname, path))""",
    "CREATE TABLE IF NOT EXISTS hoodyexec_shared_docs (hostname text PRIMARY KEY)",
    """CREATE TABLE IF NOT EXISTS hoodyexec_schedule_fires (
        script text NOT NULL, tick bigint NOT NULL, run_id text NOT NULL,
        status text NOT NULL, node text NOT NULL, owner integer NOT NULL,
        claimed_at double precision NOT NULL, finished_at double precision,
        duration_ms double precision, error text, PRIMARY KEY (script, tick))""",
    """CREATE INDEX IF NOT EXISTS hoodyexec_schedule_fires_status
        ON hoodyexec_schedule_fires (status)""",
    """CREATE TABLE IF NOT EXISTS hoodyexec_schedules (
        script text PRIMARY KEY, expression text NOT NULL,
        registered_at double precision NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS hoodyexec_schedule_history (
        id bigserial PRIMARY KEY, time double precision NOT NULL, script text NOT NULL,
        entry bytea NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS hoodyexec_nodes (
        id text PRIMARY KEY, bind text NOT NULL, host text NOT NULL, pid integer NOT NULL,
        started double precision NOT NULL, last_seen double precision NOT NULL)""",
]


def _unavailable(exc: BaseException) -> StateUnavailable:
    text = str(exc).strip().splitlines()
    return StateUnavailable(f"PostgreSQL: {text[0] if text else type(exc).__name__}")


def check(url: str) -> int:
    """Connect once and bring the schema up to date (at the kit's start); raises
    ``StateUnavailable`` with the reason when the database cannot be used."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
            return migrate(conn)
    except psycopg.Error as exc:
        raise _unavailable(exc) from None


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Create the tables (nodes starting together queue on an advisory lock)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO hoodyexec_meta (key, value) VALUES ('schema_version', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (str(SCHEMA_VERSION),),
        )
    return SCHEMA_VERSION


class Database:
    """One process's pool of connections to the database (opened on first use)."""

    def __init__(self, url: str, *, max_size: int = POOL_MAX, timeout: float = POOL_TIMEOUT):
        self.url = url
        self.max_size = max_size
        self.timeout = timeout
        self._pool: psycopg_pool.ConnectionPool[Any] | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._ready = False  # the schema was checked by this process

    def pool(self) -> psycopg_pool.ConnectionPool[Any]:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self.max_size,
                    timeout=self.timeout,
                    kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
                    open=False,
                    name="hoodyexec-state",
                )
                pool.open(wait=False)
                self._pool, self._pid, self._ready = pool, os.getpid(), False
            return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self.pool().connection() as conn:
                yield conn
        except psycopg_pool.PoolTimeout as exc:
            raise _unavailable(exc) from None

    def run(self, fn: Callable[[psycopg.Connection[Any]], T], *, retry: bool = True) -> T:
        """``fn`` on a pooled connection; a connection failure is a 503 (tried a
        second time when ``retry`` and the connection had died while idle)."""
        if not self._ready:  # the tables, once per process (as SQLite's stores do)
            self._migrate()
        for attempt in (0, 1):
            try:
                with self.connection() as conn:
                    return fn(conn)
            except _Fresh as fresh:
                if attempt == 0 and retry:
                    continue
                raise _unavailable(fresh.cause) from None
            except _LOST as exc:
                raise _unavailable(exc) from None
        raise AssertionError("unreachable")

    def _migrate(self) -> None:
        try:
            with self.connection() as conn:
                migrate(conn)
        except _LOST as exc:
            raise _unavailable(exc) from None
        self._ready = True

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close(timeout=1.0)
            self._pool = None


class _Fresh(Exception):
    """The first statement on a pooled connection failed: nothing was done."""

    def __init__(self, cause: BaseException) -> None:
        self.cause = cause


# What a dead or unreachable server raises (a closed connection included).
_LOST = (psycopg.OperationalError, psycopg.InterfaceError)


def _first(conn: psycopg.Connection[Any], sql: Any, args: Any = ()) -> Any:
    """The first statement of a call: its failure may be retried elsewhere."""
    try:
        return conn.execute(sql, args)
    except _LOST as exc:
        raise _Fresh(exc) from None


# -- shared state ---------------------------------------------------------------------

_RANGE = (
    "SELECT path, value FROM hoodyexec_shared_paths WHERE hostname = %(h)s "
    "AND path >= %(lo)s AND path < %(hi)s ORDER BY path LIMIT %(n)s"
)
_LOCATE = (
    "SELECT path, value FROM hoodyexec_shared_paths WHERE hostname = %(h)s "
    f"AND path = ANY(%(a)s) UNION ALL ({_RANGE})"
)
_PUT = (
    "INSERT INTO hoodyexec_shared_paths (hostname, path, value) "
    "SELECT %s, p, v FROM unnest(%s::bytea[], %s::bytea[]) AS t(p, v) "
    "ON CONFLICT (hostname, path) DO UPDATE SET value = EXCLUDED.value"
)
_PUT_ONE = (
    "INSERT INTO hoodyexec_shared_paths (hostname, path, value) VALUES (%s, %s, %s) "
    "ON CONFLICT (hostname, path) DO UPDATE SET value = EXCLUDED.value"
)


def _fetch(
    conn: psycopg.Connection[Any], key: str, first: bool = False
) -> Callable[[list[bytes], bytes, bytes, int], list[Row]]:
    def fetch(ancestors: list[bytes], lo: bytes, hi: bytes, limit: int = -1) -> list[Row]:
        args = {"h": key, "lo": lo, "hi": hi, "n": None if limit < 0 else limit, "a": ancestors}
        sql = _LOCATE if ancestors else _RANGE
        cur = _first(conn, sql, args) if first else conn.execute(sql, args)
        return [(bytes(p), bytes(v)) for p, v in cur.fetchall()]

    return fetch


class _Rows(Rows):
    __slots__ = ("conn", "fetch", "key")

    def __init__(self, conn: psycopg.Connection[Any], key: str) -> None:
        self.conn = conn
        self.key = key
        self.fetch = _fetch(conn, key)

    def locate(self, ancestors: list[bytes], lo: bytes, hi: bytes, limit: int = -1) -> list[Row]:
        return self.fetch(ancestors, lo, hi, limit)

    def put(self, rows: list[Row]) -> None:
        if len(rows) == 1:
            self.conn.execute(_PUT_ONE, (self.key, *rows[0]))
        elif rows:
            self.conn.execute(_PUT, (self.key, [p for p, _ in rows], [v for _, v in rows]))

    def erase(self, lo: bytes, hi: bytes) -> int:
        cur = self.conn.execute(
            "DELETE FROM hoodyexec_shared_paths WHERE hostname = %s AND path >= %s AND path < %s",
            (self.key, lo, hi),
        )
        return cur.rowcount

    def touch(self) -> None:
        self.conn.execute(
            "INSERT INTO hoodyexec_shared_docs (hostname) VALUES (%s) ON CONFLICT DO NOTHING",
            (self.key,),
        )


def _rollback(conn: psycopg.Connection[Any]) -> None:
    if not conn.closed:
        try:
            conn.execute("ROLLBACK")
        except psycopg.Error:
            pass  # the connection is broken: the pool drops it, the server rolls back


class PostgresStore(SharedStore):
    """Shared state in PostgreSQL (thread-safe: one pooled connection per call)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def close(self) -> None:
        self.db.close()

    def _read(self, key: str, fn: Callable[[Rows], T]) -> T:
        def once(conn: psycopg.Connection[Any]) -> T:
            try:
                return fn(OneRead(_fetch(conn, key, first=True)))
            except NeedsSnapshot:
                pass
            _first(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                return fn(_Rows(conn, key))
            finally:
                _rollback(conn)

        return self.db.run(once)

    def _write(self, key: str, fn: Callable[[Rows], T]) -> T:
        lock = lock_id("shared", key)

        def transaction(conn: psycopg.Connection[Any]) -> T:
            # One round trip opens the transaction and queues on the document.
            _first(conn, f"BEGIN; SELECT pg_advisory_xact_lock({int(lock)})")
            try:
                result = fn(_Rows(conn, key))
                conn.execute("COMMIT")
                return result
            except BaseException:
                _rollback(conn)
                raise

        return self.db.run(transaction)

    def clear(self, key: str | None = None) -> int:
        def drop(conn: psycopg.Connection[Any]) -> int:
            _first(conn, "BEGIN")
            try:
                count = self._drop(conn, key)
                conn.execute("COMMIT")
                return count
            except BaseException:
                _rollback(conn)
                raise

        return self.db.run(drop)

    @staticmethod
    def _drop(conn: psycopg.Connection[Any], key: str | None) -> int:
        if key is None:
            row = conn.execute(
                "SELECT count(*) FROM (SELECT hostname FROM hoodyexec_shared_paths"
                " UNION SELECT hostname FROM hoodyexec_shared_docs) AS d"
            ).fetchone()
            conn.execute("DELETE FROM hoodyexec_shared_paths")
            conn.execute("DELETE FROM hoodyexec_shared_docs")
            return int(row[0]) if row else 0
        conn.execute(f"SELECT pg_advisory_xact_lock({int(lock_id('shared', key))})")
        removed = conn.execute(
            "DELETE FROM hoodyexec_shared_paths WHERE hostname = %s", (key,)
        ).rowcount
        gone = conn.execute(
            "DELETE FROM hoodyexec_shared_docs WHERE hostname = %s", (key,)
        ).rowcount
        return 1 if removed or gone else 0


# -- nodes ----------------------------------------------------------------------------


class PostgresNodes(NodeRegistry):
    def __init__(self, db: Database, ttl: float | None = None) -> None:
        self.db = db
        if ttl is not None:
            self.ttl = ttl

    def beat(self, node: Node) -> None:
        def upsert(conn: psycopg.Connection[Any]) -> None:
            _first(
                conn,
                "INSERT INTO hoodyexec_nodes (id, bind, host, pid, started, last_seen) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                "bind = EXCLUDED.bind, host = EXCLUDED.host, pid = EXCLUDED.pid, "
                "started = EXCLUDED.started, last_seen = EXCLUDED.last_seen",
                (node.id, node.bind, node.host, node.pid, node.started, node.last_seen),
            )
            # Long-gone nodes leave the table (ten TTLs: still listed as gone a while).
            conn.execute(
                "DELETE FROM hoodyexec_nodes WHERE last_seen < %s",
                (node.last_seen - 10 * self.ttl,),
            )

        self.db.run(upsert)

    def leave(self, node_id: str) -> None:
        self.db.run(
            lambda conn: _first(conn, "DELETE FROM hoodyexec_nodes WHERE id = %s", (node_id,))
        )

    def nodes(self, now: float) -> list[Node]:
        def select(conn: psycopg.Connection[Any]) -> list[Node]:
            cur = _first(
                conn,
                "SELECT id, bind, host, pid, started, last_seen FROM hoodyexec_nodes "
                "WHERE last_seen > %s ORDER BY id",
                (now - self.ttl,),
            )
            return [Node(*row) for row in cur.fetchall()]

        return self.db.run(select)

    def close(self) -> None:
        self.db.close()


# -- schedules ------------------------------------------------------------------------

_CLAIM_COLUMNS = "script, tick, run_id, status, owner, claimed_at, finished_at, duration_ms, error"


class PostgresClaims(ClaimStore):
    """Schedule claims in the shared database: ``(script, tick)`` is the primary
    key, so of all the nodes' schedulers exactly one claims a tick."""

    def __init__(self, db: Database, owners: Owners, clock: Callable[[], float] = time.time):
        self.db = db
        self.owners = owners
        self.clock = clock

    def _one(
        self, sql: str, args: tuple[Any, ...] = (), retry: bool = True
    ) -> list[tuple[Any, ...]]:
        def go(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            cur = _first(conn, sql, args)
            return cur.fetchall() if cur.description else [(cur.rowcount,)]

        return self.db.run(go, retry=retry)

    def claim(self, script: str, tick: int, run_id: str, status: str = "running") -> bool:
        rows = self._one(
            "INSERT INTO hoodyexec_schedule_fires "
            "(script, tick, run_id, status, node, owner, claimed_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (script, tick, run_id, status, self.owners.node, os.getpid(), self.clock()),
            retry=False,  # a claim the server took before the connection died stays taken
        )
        return bool(rows[0][0] == 1)

    def finish(
        self, script: str, tick: int, status: str, duration_ms: float, error: str | None
    ) -> None:
        self._one(
            "UPDATE hoodyexec_schedule_fires SET status = %s, finished_at = %s, "
            "duration_ms = %s, error = %s WHERE script = %s AND tick = %s",
            (status, self.clock(), duration_ms, error, script, tick),
        )

    def last_tick(self, script: str) -> int | None:
        rows = self._one(
            "SELECT max(tick) FROM hoodyexec_schedule_fires WHERE script = %s", (script,)
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def last(self) -> dict[str, Claim]:
        rows = self._one(
            f"SELECT DISTINCT ON (script) {_CLAIM_COLUMNS} FROM hoodyexec_schedule_fires "
            "ORDER BY script, tick DESC"
        )
        return {r[0]: Claim(*r) for r in rows}

    def _running(self, script: str | None) -> list[tuple[Claim, str]]:
        where = "status = 'running'" + (" AND script = %s" if script is not None else "")
        rows = self._one(
            f"SELECT {_CLAIM_COLUMNS}, node FROM hoodyexec_schedule_fires WHERE {where}",
            (script,) if script is not None else (),
        )
        return [(Claim(*r[:9]), r[9]) for r in rows]

    def running_elsewhere(self, script: str) -> bool:
        running = [(c, n) for c, n in self._running(script) if not self.owners.mine(n, c.owner)]
        if not running:
            return False
        live = self.owners.live()
        return any(self.owners.alive(n, c.owner, live) for c, n in running)

    def orphans(self) -> list[Claim]:
        running = [(c, n) for c, n in self._running(None) if not self.owners.mine(n, c.owner)]
        if not running:
            return []
        live = self.owners.live()
        lost = [c for c, n in running if not self.owners.alive(n, c.owner, live)]
        out = []
        for c in lost:
            changed = self._one(
                "UPDATE hoodyexec_schedule_fires SET status = 'lost', finished_at = %s, "
                "error = %s WHERE script = %s AND tick = %s AND status = 'running'",
                (self.clock(), LOST_NOTE, c.script, c.tick),
            )
            if changed[0][0] == 1:  # another node's sweep may have marked it first
                out.append(c)
        return out

    def registered(self, script: str, expression: str, now: float) -> float:
        # The first node to register (script, expression) sets the time; a changed
        # expression starts it again.
        rows = self._one(
            "INSERT INTO hoodyexec_schedules AS s (script, expression, registered_at) "
            "VALUES (%s, %s, %s) ON CONFLICT (script) DO UPDATE SET "
            "expression = EXCLUDED.expression, registered_at = EXCLUDED.registered_at "
            "WHERE s.expression IS DISTINCT FROM EXCLUDED.expression",
            (script, expression, now),
        )
        if rows[0][0] == 1:
            return now
        found = self._one(
            "SELECT registered_at FROM hoodyexec_schedules WHERE script = %s", (script,)
        )
        return float(found[0][0]) if found else now

    def forget(self, script: str) -> None:
        self._one("DELETE FROM hoodyexec_schedules WHERE script = %s", (script,))

    def close(self) -> None:
        self.db.close()


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class PostgresHistory(HistoryStore):
    """The fire history of the whole cluster (the newest ``keep`` entries)."""

    def __init__(self, db: Database, keep: int = HISTORY_KEEP) -> None:
        self.db = db
        self.keep = keep

    def append(self, entry: dict[str, Any]) -> None:
        def insert(conn: psycopg.Connection[Any]) -> None:
            cur = _first(
                conn,
                "INSERT INTO hoodyexec_schedule_history (time, script, entry) "
                "VALUES (%s, %s, %s) RETURNING id",
                (float(entry.get("time", 0)), str(entry.get("script", "")), _encode(entry)),
            )
            row = cur.fetchone()
            if row and row[0] % 100 == 0:  # now and then, drop what is past the window
                conn.execute(
                    "DELETE FROM hoodyexec_schedule_history WHERE id <= %s",
                    (int(row[0]) - self.keep,),
                )

        self.db.run(insert, retry=False)

    def read(
        self,
        *,
        script: str | None = None,
        since: float | None = None,
        limit: int = 100,
        rotated: bool = False,
    ) -> list[dict[str, Any]]:
        def select(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
            cur = _first(
                conn,
                "SELECT entry FROM hoodyexec_schedule_history WHERE "
                "(%(s)s::text IS NULL OR script = %(s)s) AND "
                "(%(t)s::float8 IS NULL OR time >= %(t)s) ORDER BY id DESC LIMIT %(n)s",
                {"s": script, "t": since, "n": limit},
            )
            out = [_decode(bytes(raw)) for (raw,) in cur.fetchall()]
            return [e for e in out if isinstance(e, dict) and matches(e, script, since)]

        return self.db.run(select)
