"""Schema version 3: the version-2 blob table moves to rows by path, losing nothing,
atomically (a crash midway leaves version 2 as it was) and idempotently."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading

import pytest

from hoodyexec.storage import sqlite as db
from hoodyexec.storage.sqlite import SqliteStore

from .reference import create_v2_database
from .test_sqlite import _same

DOCS = {
    "default/1": {
        "visits": 41,
        "ratio": 1.0,  # a float that looks like an int stays a float
        "big": 2**53 + 1,
        "neg": -7,
        "tiny": 1e-300,
        "huge": 1e300,
        "flag": False,
        "nothing": None,
        "name": "Zoë — 日本語 🎉",
        "empty": {},
        "users": {"7": {"name": "Ada", "tags": ["x", "y"], "prefs": {}}, "8": {"name": "Bob"}},
        "list": [1, 2.5, "three", {"four": 4, "nested": {"deep": []}}, [], {}],
        "a.b": {"dotted": "key"},
        "": {"\x00": "nul key", "\x01x": 1},
        "deep": {"l1": {"l2": {"l3": {"l4": {"l5": "bottom"}}}}},
    },
    "default/2": {},  # a document that exists, empty
    "shop/9": {"orders_seq": 3, "orders": {"1": {"total": 9.99}, "2": {"total": 10}}},
}


def _v2(tmp_path, docs=DOCS) -> str:
    path = str(tmp_path / "hoodyexec.db")
    create_v2_database(path, docs)
    return path


def _version(path: str) -> int:
    conn = sqlite3.connect(path)
    try:
        v: int = conn.execute("PRAGMA user_version").fetchone()[0]
        return v
    finally:
        conn.close()


def _tables(path: str) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def _check_all_there(path: str) -> None:
    store = SqliteStore(path)
    for hostname, doc in DOCS.items():
        assert _same(store.get(hostname), doc), hostname
    assert type(store.get("default/1", "ratio")) is float
    assert store.get("default/1", "big") == 2**53 + 1
    assert store.get("default/1", "users.7.tags.1") == "y"
    assert store.get("default/1", "list.3.nested") == {"deep": []}
    assert store.incr("shop/9", "orders_seq") == 4  # and it works as a store
    assert store.clear("default/2") == 1  # the empty document still existed
    store.close()


def test_migration_moves_every_document_losing_nothing(tmp_path):
    path = _v2(tmp_path)
    conn = db.connect(path)
    assert db.migrate(conn) == 3
    conn.close()
    assert _version(path) == 3
    assert "shared_state" not in _tables(path)
    assert {"shared_paths", "shared_docs", "schedule_fires", "schedules"} <= _tables(path)
    _check_all_there(path)


def test_migration_is_idempotent(tmp_path):
    path = _v2(tmp_path)
    for _ in range(3):
        conn = db.connect(path)
        assert db.migrate(conn) == 3
        conn.close()
    # the step itself, run again on a migrated database, changes nothing
    conn = db.connect(path)
    before = conn.execute("SELECT count(*) FROM shared_paths").fetchone()[0]
    conn.execute("BEGIN IMMEDIATE")
    db._shared_by_path(conn)
    conn.execute("COMMIT")
    assert conn.execute("SELECT count(*) FROM shared_paths").fetchone()[0] == before
    conn.close()
    _check_all_there(path)


def test_stores_opening_at_once_migrate_once(tmp_path):
    path = _v2(tmp_path)
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            SqliteStore(path).get("default/1", "visits")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    _check_all_there(path)


def _crash_midway(path: str) -> None:
    """Run the migration and die (SIGKILL-like, no cleanup) after two documents."""
    from hoodyexec.storage import layout

    real = layout.explode
    seen = []

    def explode(p: bytes, value: object) -> list:
        seen.append(p)
        if len(seen) > 2:
            os._exit(9)
        return real(p, value)

    layout.explode = explode
    conn = db.connect(path)
    db.migrate(conn)


def test_a_crash_midway_leaves_version_2_untouched(tmp_path):
    path = _v2(tmp_path)
    proc = multiprocessing.get_context("spawn").Process(target=_crash_midway, args=(path,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 9
    assert _version(path) == 2
    assert "shared_paths" not in _tables(path)
    conn = sqlite3.connect(path)
    kept = dict(conn.execute("SELECT hostname, doc FROM shared_state").fetchall())
    conn.close()
    assert set(kept) == set(DOCS)
    # the next start migrates it all
    _check_all_there(path)
    assert _version(path) == 3


def test_an_unreadable_document_stops_the_migration_and_keeps_everything(tmp_path):
    path = _v2(tmp_path, {**DOCS, "broken/1": "{not json"})
    conn = db.connect(path)
    with pytest.raises(db.StateDBError, match="broken/1"):
        db.migrate(conn)
    conn.close()
    assert _version(path) == 2 and "shared_paths" not in _tables(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM shared_state").fetchone()[0] == len(DOCS) + 1
    conn.close()
