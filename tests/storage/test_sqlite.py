"""The shared-state store (storage/sqlite.py): paths, errors, atomic increments."""

from __future__ import annotations

import multiprocessing
import threading

import pytest

from hoodyexec.storage.sqlite import SqliteStore as SharedStore


def test_store_paths_and_errors(tmp_path):
    store = SharedStore(str(tmp_path / "s.db"))
    store.set("h", "a.b.c", 1)
    assert store.get("h") == {"a": {"b": {"c": 1}}}
    store.set("h", "l", [1, 2, 3])
    store.set("h", "l.1", "x")
    assert store.get("h", "l") == [1, "x", 3] and store.get("h", "l.-1") == 3
    assert store.delete("h", "l.0") is True and store.get("h", "l") == ["x", 3]
    assert store.delete("h", "nope") is False
    assert store.merge("h", "a", {"b": {"d": 2}}) == {"b": {"c": 1, "d": 2}}
    assert store.get("other", "a", "dflt") == "dflt"
    with pytest.raises(Exception, match="increment"):
        store.incr("h", "a", 1)
    with pytest.raises(Exception, match="empty segment"):
        store.get("h", "a..b")
    assert store.clear("h") == 1 and store.get("h") == {}


def test_store_incr_is_atomic_across_threads(tmp_path):
    store = SharedStore(str(tmp_path / "s.db"))
    seen: list[int] = []

    def work():
        for _ in range(50):
            seen.append(store.incr("h", "n"))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(1, 201))


def _proc_incr(path: str, q) -> None:
    store = SharedStore(path)
    q.put([store.incr("h", "n") for _ in range(50)])


def test_store_incr_is_atomic_across_processes(tmp_path):
    path = str(tmp_path / "s.db")
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_proc_incr, args=(path, q)) for _ in range(4)]
    for p in procs:
        p.start()
    values = sorted(v for _ in procs for v in q.get(timeout=60))
    for p in procs:
        p.join(30)
    assert values == list(range(1, 201))
