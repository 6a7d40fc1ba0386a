"""The SQLite backend: the kit's state database and shared state in it.

The database is opened after fork by each process that needs it (never in the
master), in WAL mode. Shared state is stored by path (``layout.py``): table
``shared_paths`` holds one row per leaf ``(hostname, path, value)``,
``shared_docs`` the documents that exist. Every shared-state change is one
``BEGIN IMMEDIATE`` transaction on the process's one connection (read the
rows of the path, write the ones that change), so concurrent ``incr`` calls
from any number of workers each get a distinct value; reads are one statement
each, from one snapshot, and never wait on writers (WAL).

Writers contend for one lock. SQLite's busy handler sleeps 1 ms, then 2, 5,
10 ... while another process holds it, far longer than a write holds it
(tens of microseconds): two workers incrementing one counter spent most of
their time asleep. So shared-state writers first queue on a kernel lock,
``flock`` on ``<db>-writer``: a waiting process is woken the moment the
holder releases it, without spinning or a timer, and the kernel releases it
for a process that dies. The holder then nearly always gets SQLite's lock at
once; when something else holds it (the schedules ledger), the connection has
no busy timeout: ``BEGIN IMMEDIATE`` yields the CPU and tries again (then
waits 50 µs, growing to 1 ms) for up to ``BUSY_TIMEOUT`` seconds before
answering 503. The queue is held only for that transaction. A write is durable once it returns: committed to the WAL, it
survives the process being killed (``synchronous = NORMAL``: a power loss may
lose the last transactions, never consistency).

Reads of a path are cached in each process (``ReadCache``), checked against
the database's wal-index header: the first 96 bytes of ``<db>-shm``, which
SQLite rewrites with every commit (its ``iChange`` counter and ``mxFrame``;
https://www.sqlite.org/walformat.html) and keeps in two copies that match
when it is not being written. A cached value is used only while the header
is the one read before the value was read from the database, so any commit
by any process since (of any table: the check is for the whole database)
sends the next read to the database. No lock, no syscall: the file is mapped
once per process (``_wal_index``: never closed while it exists, as SQLite's
POSIX locks on it require), and a header read in the middle of its update
(the two copies differ) counts as a change.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec

from hoodyexec.errors import HoodyError

from . import layout
from .base import Rows, SharedStore, T
from .layout import Row

SCHEMA_VERSION = 3
BUSY_TIMEOUT = 5.0  # seconds a shared-state write waits for the write lock


def _shared_by_path(conn: sqlite3.Connection) -> None:
    """Version 3: shared state by path. Every document of ``shared_state`` (one
    JSON blob per hostname) becomes its rows; the old table goes. Runs inside
    the migration's transaction: a crash midway leaves version 2 untouched."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS shared_paths ("
        " hostname TEXT NOT NULL, path BLOB NOT NULL, value BLOB NOT NULL,"
        " PRIMARY KEY (hostname, path)) WITHOUT ROWID"
    )
    conn.execute("CREATE TABLE IF NOT EXISTS shared_docs (hostname TEXT PRIMARY KEY) WITHOUT ROWID")
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'shared_state'"
    ).fetchone()
    if not exists:
        return
    for hostname, blob in conn.execute("SELECT hostname, doc FROM shared_state").fetchall():
        try:
            doc = layout.decode_value(blob)
        except msgspec.DecodeError as exc:
            raise sqlite3.DatabaseError(f"shared state of {hostname!r}: {exc}") from None
        if not isinstance(doc, dict):
            raise sqlite3.DatabaseError(f"shared state of {hostname!r} is not an object")
        conn.executemany(
            "INSERT OR REPLACE INTO shared_paths (hostname, path, value) VALUES (?, ?, ?)",
            [(hostname, path, value) for path, value in layout.explode(b"", doc)],
        )
        conn.execute("INSERT OR IGNORE INTO shared_docs (hostname) VALUES (?)", (hostname,))
    conn.execute("DROP TABLE shared_state")


# A version is SQL statements, or a function run in the same transaction.
_MIGRATIONS: dict[int, str | Callable[[sqlite3.Connection], None]] = {
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
    3: _shared_by_path,
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
                step = _MIGRATIONS[version]
                if callable(step):
                    step(conn)
                else:
                    for statement in step.split(";"):
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


class StateBusy(HoodyError):
    """The write lock of shared state stayed taken for ``BUSY_TIMEOUT`` seconds."""

    status = 503


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _pause(attempt: int) -> None:
    """Between two tries for the write lock: yield, then wait a little longer."""
    if attempt < 32:
        os.sched_yield()
    else:
        time.sleep(min(0.001, 0.00005 * (attempt - 31)))


_RANGE = (
    "SELECT path, value FROM shared_paths WHERE hostname = ?1 AND path >= ?2 AND path < ?3 "
    "ORDER BY path LIMIT ?4"
)
_LOCATE: dict[int, str] = {}


def _locate_sql(ancestors: int) -> str:
    sql = _LOCATE.get(ancestors)
    if sql is None:
        marks = ", ".join(f"?{i}" for i in range(5, 5 + ancestors))
        sql = _LOCATE[ancestors] = (
            f"SELECT path, value FROM shared_paths WHERE hostname = ?1 AND path IN ({marks}) "
            f"UNION ALL SELECT * FROM ({_RANGE})"
        )
    return sql


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:  # not when what interrupted us came right after COMMIT
        conn.execute("ROLLBACK")


class _Rows(Rows):
    """One document's rows through the store's connection."""

    __slots__ = ("conn", "key")

    def __init__(self, conn: sqlite3.Connection, key: str) -> None:
        self.conn = conn
        self.key = key

    def locate(self, ancestors: list[bytes], lo: bytes, hi: bytes, limit: int = -1) -> list[Row]:
        if ancestors:
            sql, args = _locate_sql(len(ancestors)), (self.key, lo, hi, limit, *ancestors)
        else:
            sql, args = _RANGE, (self.key, lo, hi, limit)
        rows: list[Row] = self.conn.execute(sql, args).fetchall()
        return rows

    def put(self, rows: list[Row]) -> None:
        sql = "INSERT OR REPLACE INTO shared_paths (hostname, path, value) VALUES (?, ?, ?)"
        if len(rows) == 1:
            self.conn.execute(sql, (self.key, *rows[0]))
        elif rows:
            self.conn.executemany(sql, [(self.key, path, value) for path, value in rows])

    def erase(self, lo: bytes, hi: bytes) -> int:
        cur = self.conn.execute(
            "DELETE FROM shared_paths WHERE hostname = ? AND path >= ? AND path < ?",
            (self.key, lo, hi),
        )
        return cur.rowcount

    def touch(self) -> None:
        self.conn.execute("INSERT OR IGNORE INTO shared_docs (hostname) VALUES (?)", (self.key,))


# What the wal-index header holds: two copies of 48 bytes, first in ``<db>-shm``.
_HEADER = 96
# Bounds of ``ReadCache``: entries, and the size of one cached value (a
# string's length, an object's or array's encoded JSON): at most ~4 MB.
CACHE_ENTRIES = 1024
CACHE_VALUE_BYTES = 4096
_ABSENT = object()  # a cached "no value at this path"


# <db>-shm → (descriptor, its mapping or None), for the life of the process.
_WAL_INDEXES: dict[str, tuple[int, mmap.mmap | None]] = {}
_WAL_INDEXES_LOCK = threading.Lock()


def _wal_index(db_path: str) -> mmap.mmap | None:
    """The first bytes of ``<db>-shm``, mapped read-only, or None.

    The descriptor is never closed while the file exists. SQLite's locks on
    that file are POSIX record locks, which belong to the process: closing
    *any* descriptor of the file drops every lock the process's connections
    hold on it (another process then takes the file for unused and truncates
    it, and this one dies of SIGBUS reading it). A file SQLite has removed
    (the last connection anywhere closed) has no connection and no lock left,
    so its descriptor is closed when a new one is mapped."""
    shm = db_path + "-shm"
    with _WAL_INDEXES_LOCK:
        try:
            inode = os.stat(shm).st_ino
        except OSError:
            return None
        held = _WAL_INDEXES.get(shm)
        if held is not None and os.fstat(held[0]).st_ino == inode:
            return held[1]
        for name, (fd, mapped) in list(_WAL_INDEXES.items()):
            if os.fstat(fd).st_nlink == 0:  # removed by SQLite: nothing holds a lock on it
                if mapped is not None:
                    mapped.close()
                os.close(fd)
                del _WAL_INDEXES[name]
        try:
            fd = os.open(shm, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        mapped = None
        try:
            if os.fstat(fd).st_size >= _HEADER:
                mapped = mmap.mmap(fd, _HEADER, mmap.MAP_SHARED, mmap.PROT_READ)
        except (OSError, ValueError):
            mapped = None
        if shm in _WAL_INDEXES:  # a file made again while this process kept the old one open
            _WAL_INDEXES[shm + "\0" + str(_WAL_INDEXES[shm][0])] = _WAL_INDEXES.pop(shm)
        _WAL_INDEXES[shm] = (fd, mapped)
        return mapped


class ReadCache:
    """The last values read per (document, path), valid while the database's
    wal-index header is the one read before each value was (see the module's
    docstring). Objects and arrays are kept encoded (each read gets its own
    copy, which the caller may change); other values as they are."""

    __slots__ = ("_map", "_entries")

    def __init__(self) -> None:
        self._map: mmap.mmap | None = None
        self._entries: dict[tuple[str, str], tuple[bytes, Any]] = {}

    def attach(self, db_path: str) -> None:
        """Map the wal-index (after the process's connection read the
        database in WAL mode); without it, nothing is cached."""
        self.detach()
        self._map = _wal_index(db_path)

    def detach(self) -> None:
        self._entries.clear()
        self._map = None  # the mapping stays the process's (see _wal_index)

    def mark(self) -> bytes | None:
        """The header now, or None when it cannot vouch for anything."""
        m = self._map
        if m is None:
            return None
        try:
            header = m[:_HEADER]
        except ValueError:  # closed: its file is gone (_wal_index)
            return None
        return header if header[:48] == header[48:] else None

    def lookup(self, key: str, path: str, mark: bytes) -> Any:
        """The value cached under ``mark`` (``_ABSENT``: none there), or None."""
        hit = self._entries.get((key, path))
        if hit is None or hit[0] != mark:
            return None
        value = hit[1]
        return layout.decode_value(value) if type(value) is bytes else value

    def keep(self, key: str, path: str, mark: bytes, value: Any) -> None:
        if type(value) is dict or type(value) is list:
            try:
                value = layout.encode_value(value)
            except (TypeError, msgspec.EncodeError):
                return
            if len(value) > CACHE_VALUE_BYTES:
                return
        elif type(value) is str and len(value) > CACHE_VALUE_BYTES:
            return
        entries = self._entries
        if len(entries) >= CACHE_ENTRIES and (key, path) not in entries:
            try:
                del entries[next(iter(entries))]  # the oldest
            except (KeyError, RuntimeError, StopIteration):  # another thread got there first
                pass
        entries[(key, path)] = (mark, value)


class SqliteStore(SharedStore):
    """The process's handle on shared state in SQLite (thread-safe): one
    connection, used by one thread at a time."""

    def __init__(self, path: str, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._writer = -1  # descriptor of the writers' queue file (flock)
        self._lock = threading.Lock()
        self._deadline = 0.0  # of the current wait for the write lock
        self._cache = ReadCache()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = connect(self.path)
            migrate(conn)
            conn.execute("PRAGMA busy_timeout = 0")  # we retry ourselves, without sleeping
            self._writer = os.open(
                self.path + "-writer", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
            self._conn = conn
            self._cache.attach(self.path)  # the connection keeps <db>-shm in place
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._cache.detach()
                self._conn.close()
                self._conn = None
                os.close(self._writer)
                self._writer = -1

    def get(self, key: str, path: str | None = None, default: Any = None) -> Any:
        """PERF: a path read again while no commit happened comes from the
        process's ``ReadCache`` (no lock, no statement, no syscall)."""
        if not path or type(path) is not str:
            return super().get(key, path, default)
        if self._conn is None:
            with self._lock:
                self._db()  # maps the wal-index
        cache = self._cache
        mark = cache.mark()  # read before the database: see ReadCache
        if mark is not None:
            value = cache.lookup(key, path, mark)
            if value is not None:
                return default if value is _ABSENT else value
        value = super().get(key, path, _ABSENT)
        if mark is not None and value is not None:
            cache.keep(key, path, mark, value)
        return default if value is _ABSENT else value

    def _read(self, key: str, fn: Callable[[Rows], T]) -> T:
        attempt = 0
        with self._lock:
            rows = _Rows(self._db(), key)
            while True:
                try:
                    return fn(rows)
                except sqlite3.OperationalError as exc:
                    attempt = self._retry(exc, attempt)

    def _write(self, key: str, fn: Callable[[Rows], T]) -> T:
        with self._lock:
            conn = self._db()
            # Writers of shared state queue on a kernel lock: the next one is woken
            # when the lock is released, neither spinning nor sleeping on a timer.
            fcntl.flock(self._writer, fcntl.LOCK_EX)
            try:
                return self._transaction(conn, _Rows(conn, key), fn)
            finally:
                fcntl.flock(self._writer, fcntl.LOCK_UN)

    def _transaction(self, conn: sqlite3.Connection, rows: _Rows, fn: Callable[[Rows], T]) -> T:
        attempt = 0
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                attempt = self._retry(exc, attempt)
                continue
            try:
                result = fn(rows)
                conn.execute("COMMIT")
                return result
            except sqlite3.OperationalError as exc:
                _rollback(conn)
                attempt = self._retry(exc, attempt)
            except BaseException:
                _rollback(conn)
                raise

    def _retry(self, exc: sqlite3.OperationalError, attempt: int) -> int:
        """Wait before trying again after ``exc``; re-raises what is not a busy lock."""
        if not _busy(exc):
            raise exc
        if attempt == 0:
            self._deadline = time.monotonic() + self.busy_timeout
        elif time.monotonic() > self._deadline:
            raise StateBusy(
                f"shared state is busy: the write lock stayed taken for {self.busy_timeout:g} s"
            ) from None
        _pause(attempt)
        return attempt + 1

    def clear(self, key: str | None = None) -> int:
        def drop(rows: Rows) -> int:
            conn = self._db()
            if key is None:
                count: int = conn.execute(
                    "SELECT count(*) FROM (SELECT hostname FROM shared_paths"
                    " UNION SELECT hostname FROM shared_docs)"
                ).fetchone()[0]
                conn.execute("DELETE FROM shared_paths")
                conn.execute("DELETE FROM shared_docs")
                return count
            removed = rows.erase(*layout.subtree(b""))
            gone = conn.execute("DELETE FROM shared_docs WHERE hostname = ?", (key,)).rowcount
            return 1 if removed or gone else 0

        return self._write(key or "", drop)
