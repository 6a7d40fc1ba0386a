"""Scripts and packages across nodes, in PostgreSQL (``sync.py`` says what).

Tables ``hoodyexec_scripts`` (one row per file, the digest or NULL for a
deletion, the sequence number of its last change), ``hoodyexec_script_blobs``
(content by digest; a blob no row refers to any more is deleted by the write
that dropped the last reference), ``hoodyexec_sync_counters`` (the scripts'
sequence and the packages' version), ``hoodyexec_packages`` (one row) and
``hoodyexec_node_sync`` (each node's progress).

A publication is one transaction that increments the counter row first: its
row lock queues concurrent publications, so sequence numbers are committed in
their order and a reader of ``seq > n`` never sees a later change without the
earlier ones. Notices are ``pg_notify`` in the same transaction (delivered on
commit).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from .cluster import StateUnavailable, lock_id
from .postgres import CONNECT_TIMEOUT, Database
from .sync import (
    BATCH,
    CHANNEL,
    Change,
    Listener,
    Packages,
    Progress,
    Publication,
    Replica,
    lock_digest,
)

_LOCK = lock_id("hoodyexec", "sync-migration")
_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS hoodyexec_script_blobs (
        digest text PRIMARY KEY, content bytea NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS hoodyexec_scripts (
        subdomain text NOT NULL, exec_id text NOT NULL, path text NOT NULL,
        digest text, seq bigint NOT NULL, node text NOT NULL,
        at double precision NOT NULL, PRIMARY KEY (subdomain, exec_id, path))""",
    "CREATE INDEX IF NOT EXISTS hoodyexec_scripts_seq ON hoodyexec_scripts (seq)",
    "CREATE INDEX IF NOT EXISTS hoodyexec_scripts_digest ON hoodyexec_scripts (digest)",
    """CREATE TABLE IF NOT EXISTS hoodyexec_sync_counters (
        name text PRIMARY KEY, value bigint NOT NULL)""",
    """INSERT INTO hoodyexec_sync_counters (name, value) VALUES ('scripts', 0), ('packages', 0)
        ON CONFLICT (name) DO NOTHING""",
    """CREATE TABLE IF NOT EXISTS hoodyexec_packages (
        id integer PRIMARY KEY, version bigint NOT NULL, project text, lock text,
        digest text NOT NULL, node text NOT NULL, at double precision NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS hoodyexec_node_sync (
        node text PRIMARY KEY, scripts bigint NOT NULL, lock text NOT NULL,
        at double precision NOT NULL)""",
]

Conn = psycopg.Connection[Any]


def _unavailable(exc: BaseException) -> StateUnavailable:
    text = str(exc).strip().splitlines()
    return StateUnavailable(f"PostgreSQL: {text[0] if text else type(exc).__name__}")


class PostgresReplica(Replica):
    def __init__(self, db: Database) -> None:
        self.db = db
        self._ready = False

    def _run(self, fn: Any) -> Any:
        if not self._ready:
            self.db.run(self._migrate)
            self._ready = True
        return self.db.run(fn)

    @staticmethod
    def _migrate(conn: Conn) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            for statement in _SCHEMA:
                conn.execute(statement)

    # -- scripts ------------------------------------------------------------------
    def publish(self, node: str, pub: Publication) -> int:
        def go(conn: Conn) -> int:
            with conn.transaction():
                return _publish(conn, node, pub)

        return int(self._run(go))

    def since(self, seq: int, limit: int = BATCH) -> list[Change]:
        def go(conn: Conn) -> list[Change]:
            rows = conn.execute(
                "SELECT s.seq, s.subdomain, s.exec_id, s.path, s.digest, b.content "
                "FROM hoodyexec_scripts s LEFT JOIN hoodyexec_script_blobs b "
                "ON b.digest = s.digest WHERE s.seq > %s ORDER BY s.seq LIMIT %s",
                (seq, limit),
            ).fetchall()
            return [
                Change(r[0], r[1], r[2], r[3], r[4], None if r[5] is None else bytes(r[5]))
                for r in rows
            ]

        result: list[Change] = self._run(go)
        return result

    def head(self) -> int:
        return int(
            self._run(
                lambda conn: conn.execute(
                    "SELECT value FROM hoodyexec_sync_counters WHERE name = 'scripts'"
                ).fetchone()[0]
            )
        )

    # -- progress -------------------------------------------------------------------
    def mark(self, node: str, *, scripts: int | None = None, lock: str | None = None) -> None:
        def go(conn: Conn) -> None:
            with conn.transaction():
                conn.execute(
                    "INSERT INTO hoodyexec_node_sync (node, scripts, lock, at) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (node) DO UPDATE SET "
                    "scripts = COALESCE(%s, hoodyexec_node_sync.scripts), "
                    "lock = COALESCE(%s, hoodyexec_node_sync.lock), at = EXCLUDED.at",
                    (node, scripts or 0, lock or "", time.time(), scripts, lock),
                )
                if scripts is not None:
                    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"a {node} {scripts}"))

        self._run(go)

    def progress(self) -> dict[str, Progress]:
        def go(conn: Conn) -> dict[str, Progress]:
            rows = conn.execute("SELECT node, scripts, lock, at FROM hoodyexec_node_sync")
            return {r[0]: Progress(r[0], int(r[1]), r[2], float(r[3])) for r in rows}

        result: dict[str, Progress] = self._run(go)
        return result

    # -- packages -------------------------------------------------------------------
    def put_packages(self, node: str, project: str | None, lock: str | None) -> int:
        def go(conn: Conn) -> int:
            with conn.transaction():
                row = conn.execute(
                    "UPDATE hoodyexec_sync_counters SET value = value + 1 "
                    "WHERE name = 'packages' RETURNING value"
                ).fetchone()
                assert row is not None
                version = int(row[0])
                conn.execute(
                    "INSERT INTO hoodyexec_packages (id, version, project, lock, digest, node, at) "
                    "VALUES (1, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                    "version = EXCLUDED.version, project = EXCLUDED.project, "
                    "lock = EXCLUDED.lock, digest = EXCLUDED.digest, node = EXCLUDED.node, "
                    "at = EXCLUDED.at",
                    (version, project, lock, lock_digest(lock), node, time.time()),
                )
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"p {version}"))
                return version

        return int(self._run(go))

    def packages(self) -> Packages | None:
        def go(conn: Conn) -> Packages | None:
            row = conn.execute(
                "SELECT version, project, lock, digest, node FROM hoodyexec_packages WHERE id = 1"
            ).fetchone()
            return None if row is None else Packages(int(row[0]), row[1], row[2], row[3], row[4])

        result: Packages | None = self._run(go)
        return result

    # -- notices --------------------------------------------------------------------
    def listen(self) -> Listener:
        if not self._ready:
            self.db.run(self._migrate)
            self._ready = True
        return PostgresListener(self.db.url)

    def close(self) -> None:
        self.db.close()


def _publish(conn: Conn, node: str, pub: Publication) -> int:
    now = time.time()
    conn.execute("SELECT value FROM hoodyexec_sync_counters WHERE name = 'scripts' FOR UPDATE")
    scope = (pub.subdomain, pub.exec_id)
    current = _current(conn, pub)
    last = 0
    dropped: set[str] = set()

    def bump() -> int:
        row = conn.execute(
            "UPDATE hoodyexec_sync_counters SET value = value + 1 "
            "WHERE name = 'scripts' RETURNING value"
        ).fetchone()
        assert row is not None
        return int(row[0])

    def put(path: str, new: str | None) -> None:
        nonlocal last
        last = bump()
        conn.execute(
            "INSERT INTO hoodyexec_scripts (subdomain, exec_id, path, digest, seq, node, at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (subdomain, exec_id, path) "
            "DO UPDATE SET digest = EXCLUDED.digest, seq = EXCLUDED.seq, "
            "node = EXCLUDED.node, at = EXCLUDED.at",
            (*scope, path, new, last, node, now),
        )
        old = current.get(path)
        if old is not None and old != new:
            dropped.add(old)

    written = set()
    for item in pub.files:
        written.add(item.path)
        if current.get(item.path) == item.digest:
            continue
        conn.execute(
            "INSERT INTO hoodyexec_script_blobs (digest, content) VALUES (%s, %s) "
            "ON CONFLICT (digest) DO NOTHING",
            (item.digest, item.content),
        )
        put(item.path, item.digest)
    for path, old in sorted(current.items()):
        if old is not None and path not in written and _under(path, pub.roots):
            put(path, None)
    for old in dropped:  # blobs nothing refers to any more
        conn.execute(
            "DELETE FROM hoodyexec_script_blobs WHERE digest = %s AND NOT EXISTS "
            "(SELECT 1 FROM hoodyexec_scripts WHERE digest = %s)",
            (old, old),
        )
    if last:
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"s {last}"))
        return last
    row = conn.execute("SELECT value FROM hoodyexec_sync_counters WHERE name = 'scripts'")
    return int(row.fetchone()[0])  # type: ignore[index]


def _current(conn: Conn, pub: Publication) -> dict[str, str | None]:
    """The stored digests of the paths ``pub`` is about (its files and roots)."""
    out: dict[str, str | None] = {}
    paths = [f.path for f in pub.files] + list(pub.roots)
    prefixes = [f"{_escape(r)}/%" for r in pub.roots if r]
    whole = "" in pub.roots
    rows = conn.execute(
        "SELECT path, digest FROM hoodyexec_scripts WHERE subdomain = %s AND exec_id = %s "
        "AND (%s OR path = ANY(%s) OR path LIKE ANY(%s))",
        (pub.subdomain, pub.exec_id, whole, paths, prefixes),
    )
    for path, dig in rows:
        out[path] = dig
    return out


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _under(path: str, roots: list[str]) -> bool:
    return any(r == "" or path == r or path.startswith(r + "/") for r in roots)


class PostgresListener(Listener):
    def __init__(self, url: str) -> None:
        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
            self.conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            raise _unavailable(exc) from None

    def wait(self, timeout: float) -> list[str]:
        try:
            return [n.payload for n in self.conn.notifies(timeout=timeout, stop_after=1)]
        except psycopg.Error as exc:
            raise _unavailable(exc) from None

    def close(self) -> None:
        try:
            self.conn.close()
        except psycopg.Error:
            pass
