"""The kit's SQLite state database.

Opened after fork by each process that needs it (never in the master). WAL mode
lets request workers read while the control worker writes. Opening checks the
file really is a database, so a corrupt state file stops the kit at boot with a
clear message instead of failing on the first request.
"""

from __future__ import annotations

import os
import sqlite3

SCHEMA_VERSION = 1

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
}


class StateDBError(Exception):
    """The state database cannot be opened or migrated."""


def connect(path: str, *, timeout: float = 5.0) -> sqlite3.Connection:
    """Open the state database and check that it is usable."""
    existed = os.path.exists(path)
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        conn.execute("PRAGMA journal_mode = WAL")
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
        return conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StateDBError(f"state database migration failed: {exc}") from None
