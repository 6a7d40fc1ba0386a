"""What the scheduler remembers: claims in the state database, history on disk.

**Claims** (``schedule_fires``): before a tick is dispatched, its row
``(script, tick)`` is inserted; the primary key makes a second insert fail, so
two schedulers (an old and a new control worker during a reload, or a
replacement racing a catch-up) can never both fire one tick. The row's status
goes ``running`` → ``ok | error | timeout``; a tick due while the previous run
still runs is claimed straight as ``skipped``; a ``running`` row whose owner
process is gone (killed between claim and answer) becomes ``lost``.

**History** (``<home>/logs/schedules/fires.log``): one JSON line per finished
fire, manual triggers included, size-rotated to ``fires.log.1`` .. ``.N``.

These are the SQLite backend's. With a shared backend (``state-url`` of
PostgreSQL or Redis) the claims and the history live in the shared database
(``storage/postgres.py``, ``storage/redisdb.py``, same ``ClaimStore`` and
``HistoryStore`` interface): one claim per tick in the whole cluster.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgspec

from hoodyexec.clock import pid_alive
from hoodyexec.storage import sqlite
from hoodyexec.storage.cluster import Claim, ClaimStore, HistoryStore

HISTORY_MAX_BYTES = 5 * 1024 * 1024
HISTORY_BACKUPS = 5
_encode = msgspec.json.Encoder().encode


class Claims(ClaimStore):
    """The claim table, for one process (thread-safe, one connection)."""

    def __init__(self, db_path: str) -> None:
        self.path = db_path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                self._conn = sqlite.connect(self.path)
                sqlite.migrate(self._conn)
            yield self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def claim(self, script: str, tick: int, run_id: str, status: str = "running") -> bool:
        """Take ``(script, tick)``; False when someone already has."""
        with self._db() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO schedule_fires "
                "(script, tick, run_id, status, owner, claimed_at) VALUES (?, ?, ?, ?, ?, ?)",
                (script, tick, run_id, status, os.getpid(), time.time()),
            )
            return cur.rowcount == 1

    def finish(
        self, script: str, tick: int, status: str, duration_ms: float, error: str | None
    ) -> None:
        with self._db() as db:
            db.execute(
                "UPDATE schedule_fires SET status = ?, finished_at = ?, duration_ms = ?, error = ? "
                "WHERE script = ? AND tick = ?",
                (status, time.time(), duration_ms, error, script, tick),
            )

    def last_tick(self, script: str) -> int | None:
        with self._db() as db:
            row = db.execute(
                "SELECT max(tick) FROM schedule_fires WHERE script = ?", (script,)
            ).fetchone()
        return row[0] if row and row[0] is not None else None

    def last(self) -> dict[str, Claim]:
        """The newest claim of every script."""
        with self._db() as db:
            rows = db.execute(
                "SELECT f.* FROM schedule_fires f JOIN (SELECT script, max(tick) AS tick "
                "FROM schedule_fires GROUP BY script) m ON f.script = m.script AND f.tick = m.tick"
            ).fetchall()
        return {r[0]: Claim(*r) for r in rows}

    def running_elsewhere(self, script: str) -> bool:
        """A run of ``script`` by another live scheduler (a reload hand-off)."""
        with self._db() as db:
            rows = db.execute(
                "SELECT owner FROM schedule_fires WHERE script = ? AND status = 'running' "
                "AND owner != ?",
                (script, os.getpid()),
            ).fetchall()
        return any(pid_alive(owner) for (owner,) in rows)

    def orphans(self) -> list[Claim]:
        """Mark ``running`` claims of dead owners ``lost``; returns them."""
        with self._db() as db:
            rows = db.execute(
                "SELECT * FROM schedule_fires WHERE status = 'running' AND owner != ?",
                (os.getpid(),),
            ).fetchall()
            lost = [Claim(*r) for r in rows if not pid_alive(r[4])]
            for c in lost:
                db.execute(
                    "UPDATE schedule_fires SET status = 'lost', finished_at = ?, error = ? "
                    "WHERE script = ? AND tick = ? AND status = 'running'",
                    (
                        time.time(),
                        "the control worker stopped before the run answered",
                        c.script,
                        c.tick,
                    ),
                )
        return lost

    def registered(self, script: str, expression: str, now: float) -> float:
        """When ``script`` was registered with ``expression`` (now, if it is new or changed)."""
        with self._db() as db:
            row = db.execute(
                "SELECT expression, registered_at FROM schedules WHERE script = ?", (script,)
            ).fetchone()
            if row is not None and row[0] == expression:
                return float(row[1])
            db.execute(
                "INSERT OR REPLACE INTO schedules (script, expression, registered_at) "
                "VALUES (?, ?, ?)",
                (script, expression, now),
            )
        return now

    def forget(self, script: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM schedules WHERE script = ?", (script,))


class History(HistoryStore):
    """``fires.log``: JSON lines, rotated by size, read newest first."""

    def __init__(
        self, folder: str, max_bytes: int = HISTORY_MAX_BYTES, backups: int = HISTORY_BACKUPS
    ) -> None:
        self.folder = folder
        self.path = os.path.join(folder, "fires.log")
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()

    def append(self, entry: dict[str, Any]) -> None:
        line = _encode(entry) + b"\n"
        with self._lock:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
            try:
                size = os.path.getsize(self.path)
            except FileNotFoundError:
                size = 0
            if size and size + len(line) > self.max_bytes:
                self._rotate()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)

    def _rotate(self) -> None:
        for n in range(self.backups, 0, -1):
            src = self.path if n == 1 else f"{self.path}.{n - 1}"
            with contextlib.suppress(FileNotFoundError):
                os.replace(src, f"{self.path}.{n}")

    def files(self, rotated: bool) -> list[str]:
        """Newest first."""
        names = [self.path]
        if rotated:
            names += [f"{self.path}.{n}" for n in range(1, self.backups + 1)]
        return [p for p in names if os.path.exists(p)]

    def read(
        self,
        *,
        script: str | None = None,
        since: float | None = None,
        limit: int = 100,
        rotated: bool = False,
    ) -> list[dict[str, Any]]:
        """Newest first, at most ``limit``."""
        out: list[dict[str, Any]] = []
        for path in self.files(rotated):
            try:
                with open(path, "rb") as fh:
                    lines = fh.read().splitlines()
            except FileNotFoundError:
                continue
            for raw in reversed(lines):
                try:
                    entry = msgspec.json.decode(raw)
                except msgspec.DecodeError:
                    continue  # a torn last line of a crash
                if not isinstance(entry, dict):
                    continue
                if script is not None and entry.get("script") != script:
                    continue
                if since is not None and float(entry.get("time", 0)) < since:
                    continue
                out.append(entry)
                if len(out) >= limit:
                    return out
        return out
