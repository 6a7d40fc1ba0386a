"""The SQLite backend: the kit's state database and shared state in it.

The database is opened after fork by each process that needs it (never in the
master), in WAL mode. Every shared-state change is one ``BEGIN IMMEDIATE``
transaction (read, change, write), so concurrent ``incr`` calls from any number
of workers each get a distinct value.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from typing import Any

import msgspec

from .base import Change, SharedStore, T

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

SCHEMA_VERSION = 2

_MIGRATIONS: dict[int, str] = {
    1: """
        CREATE TABLE IF NOT EXISTS meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS shared_state (
            hostname TEXT PRIMARY KEY,
            doc      TEXT NOT NULL,
            version  INTEGER NOT NULL DEFAULT 0
        );
    """,
    # Schedules: one claim per (script, due tick) -- the exactly-once guarantee --
    # and when each schedule was first registered with its expression.
    2: """
        CREATE TABLE IF NOT EXISTS schedule_fires (
            script      TEXT NOT NULL,
            tick        INTEGER NOT NULL,
            run_id      TEXT NOT NULL,
            status      TEXT NOT NULL,
            owner       INTEGER NOT NULL,
            claimed_at  REAL NOT NULL,
            finished_at REAL,
            duration_ms REAL,
            error       TEXT,
            PRIMARY KEY (script, tick)
        );
        CREATE INDEX IF NOT EXISTS schedule_fires_status ON schedule_fires (status);
        CREATE TABLE IF NOT EXISTS schedules (
            script        TEXT PRIMARY KEY,
            expression    TEXT NOT NULL,
            registered_at REAL NOT NULL
        );
    """,
}


class StateDBError(Exception):
    """The state database cannot be opened or migrated."""


def _wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL. Changing the journal mode does not wait on the busy
    handler: processes opening a new database at once (a booting kit's
    workers) would see "database is locked"; retry until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def connect(path: str, *, timeout: float = 5.0) -> sqlite3.Connection:
    """Open the state database and check that it is usable."""
    existed = os.path.exists(path)
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        _wal(conn, timeout)
        conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.DatabaseError as exc:
        raise StateDBError(f"state database {path}: {exc}") from None
    if not existed:
        os.chmod(path, 0o600)
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to ``SCHEMA_VERSION``; returns the version."""
    try:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        for version in range(current + 1, SCHEMA_VERSION + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                # user_version may have moved while we waited for the lock.
                if conn.execute("PRAGMA user_version").fetchone()[0] >= version:
                    conn.execute("COMMIT")
                    continue
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {int(version)}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        final: int = conn.execute("PRAGMA user_version").fetchone()[0]
        return final
    except sqlite3.DatabaseError as exc:
        raise StateDBError(f"state database migration failed: {exc}") from None


class SqliteStore(SharedStore):
    """The process's handle on shared state in SQLite (thread-safe)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect(self.path)
            migrate(self._conn)
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def document(self, key: str) -> dict[str, Any]:
        with self._lock:
            row = (
                self._db()
                .execute("SELECT doc FROM shared_state WHERE hostname = ?", (key,))
                .fetchone()
            )
        return _decode(row[0]) if row else {}

    def update(self, key: str, change: Change[T]) -> T:
        """Run ``change(doc) -> (new_doc, result)`` atomically; returns ``result``."""
        with self._lock:
            conn = self._db()
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT doc FROM shared_state WHERE hostname = ?", (key,)
                ).fetchone()
                doc = _decode(row[0]) if row else {}
                new, result = change(doc)
                conn.execute(
                    "INSERT INTO shared_state (hostname, doc, version) VALUES (?, ?, 1) "
                    "ON CONFLICT(hostname) DO UPDATE SET doc = excluded.doc, version = version + 1",
                    (key, _encode(new)),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return result

    def clear(self, key: str | None = None) -> int:
        with self._lock:
            conn = self._db()
            if key is None:
                cur = conn.execute("DELETE FROM shared_state")
            else:
                cur = conn.execute("DELETE FROM shared_state WHERE hostname = ?", (key,))
            return cur.rowcount
