"""The shared-state store: paths, errors, atomic increments, the layout by path
against the blob store it replaced, contention. The contract tests run against
every backend (``state_url``: SQLite, PostgreSQL, Redis, each fresh); the rest
look inside the SQLite one (storage/sqlite.py)."""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
import threading
import time

import pytest

from hoodyexec.errors import BadRequest
from hoodyexec.storage.backends import open_backend
from hoodyexec.storage.base import SharedStore as Store
from hoodyexec.storage.sqlite import SqliteStore as SharedStore
from hoodyexec.storage.sqlite import StateBusy

from .reference import BlobModel

_opened: list[Store] = []


def open_store(url: str, home: str = "/nonexistent") -> Store:
    """The store ``state-url`` names, as every process of the kit opens it."""
    store = open_backend(url, home).store()
    _opened.append(store)
    return store


@pytest.fixture(autouse=True)
def _close_stores():
    yield
    while _opened:
        _opened.pop().close()


def test_store_paths_and_errors(state_url):
    store = open_store(state_url)
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


def test_store_incr_is_atomic_across_threads(state_url):
    store = open_store(state_url)
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


def _proc_incr(url: str, q) -> None:
    """A node: four threads, 25 increments each, and 25 merges of its own keys."""
    store = open_store(url)
    values: list[int] = []
    name = multiprocessing.current_process().name

    def work(t: int) -> None:
        for i in range(25):
            values.append(store.incr("h", "n"))
            store.merge("h", "m", {f"{name}-{t}-{i}": i})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    q.put(values)


def test_store_incr_is_atomic_across_processes(state_url):
    """200 concurrent increments from two processes (nodes) on one counter are
    200 distinct values; 200 concurrent merges of distinct keys lose none."""
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_proc_incr, args=(state_url, q)) for _ in range(2)]
    for p in procs:
        p.start()
    values = sorted(v for _ in procs for v in q.get(timeout=60))
    for p in procs:
        p.join(30)
    assert values == list(range(1, 201))
    merged = open_store(state_url).get("h", "m")
    assert len(merged) == 200
    assert merged == {f"{p.name}-{t}-{i}": i for p in procs for t in range(4) for i in range(25)}


# -- the store by path answers as the blob store did ------------------------------------

SEGMENTS = ["a", "b", "c", "l", "0", "1", "-1", "2", "é", "n"]


def _value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(10 if depth < 2 else 6)
    if kind == 0:
        return rng.randint(-5, 5)
    if kind == 1:
        return rng.choice([0.5, 1.0, -2.25, 1e20])
    if kind == 2:
        return rng.choice(["", "x", "ünï", "日本", "a.b"])
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4:
        return {}
    if kind == 5:
        return []
    if kind in (6, 7):
        return {
            rng.choice([*SEGMENTS, "", "\x00", "k.k"]): _value(rng, depth + 1)
            for _ in range(rng.randint(1, 3))
        }
    return [_value(rng, depth + 1) for _ in range(rng.randint(1, 3))]


def _path(rng: random.Random) -> str | None:
    if rng.random() < 0.05:
        return rng.choice([None, ""])
    return ".".join(rng.choice(SEGMENTS) for _ in range(rng.randint(1, 3)))


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except BadRequest as exc:
        return ("error", str(exc))


def _same(a, b) -> bool:
    """Equal, and ints stay ints and floats floats."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("seed", range(6))
def test_every_operation_answers_as_the_blob_store(state_url, seed):
    """Random operations on random paths (nested, list indexes, negative indexes,
    unicode, keys with dots or NUL inside values): the store by path returns what
    the version-2 blob store returned, raises what it raised, and holds the same
    document, read whole and at every prefix."""
    rng = random.Random(seed)
    store = open_store(state_url)
    model = BlobModel()
    # Each step reads the document at every prefix: a network round trip each on
    # the shared backends, which run fewer steps per seed.
    for step in range(500 if state_url.startswith("sqlite") else 150):
        key = rng.choice(["h", "h", "other"])
        op = rng.choice(["set", "set", "merge", "merge", "delete", "incr", "incr", "get", "clear"])
        path = _path(rng)
        if op == "set":
            value = _value(rng)
            if path in (None, "") and rng.random() < 0.7:
                value = {rng.choice(SEGMENTS): _value(rng)}
            args: tuple = (key, path, value)
        elif op == "merge":
            args = (
                key,
                path,
                _value(rng) if rng.random() < 0.3 else {rng.choice(SEGMENTS): _value(rng)},
            )
        elif op == "incr":
            args = (key, path or "n", rng.choice([1, 2, -1, 0.5]))
        elif op == "clear":
            args = (key if rng.random() < 0.8 else None,)
        else:
            args = (key, path)
        want = _outcome(getattr(model, op), *args)
        got = _outcome(getattr(store, op), *args)
        assert got[0] == want[0] and _same(got[1], want[1]) or got == want, (
            step,
            op,
            args,
            got,
            want,
        )
        for k in ("h", "other"):
            doc = model.document(k)
            assert _same(store.get(k), doc), (step, op, args)
            for prefix in _prefixes(doc):
                assert _same(store.get(k, prefix), model.get(k, prefix)), (step, prefix)


def _prefixes(doc, base: str = ""):
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k and "." not in k:
                path = f"{base}.{k}" if base else k
                yield path
                yield from _prefixes(v, path)
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield f"{base}.{i}"
            yield from _prefixes(v, f"{base}.{i}")


def test_operations_on_nested_paths_and_prefixes(state_url):
    store = open_store(state_url)
    store.set("h", "users.7", {"name": "Ada", "tags": ["x"], "seen": {}})
    store.incr("h", "users.7.visits")
    store.incr("h", "users.7.visits", 2.5)
    assert store.get("h", "users") == {
        "7": {"name": "Ada", "tags": ["x"], "seen": {}, "visits": 3.5}
    }
    assert store.get("h", "users.7.tags.0") == "x" and store.get("h", "users.7.tags.-1") == "x"
    store.set("h", "users.7.tags.0", "y")
    assert store.merge("h", "users.7", {"seen": {"at": 1}, "name": "Ada L."}) == {
        "name": "Ada L.",
        "tags": ["y"],
        "seen": {"at": 1},
        "visits": 3.5,
    }
    assert store.delete("h", "users.7.seen.at") is True
    assert store.get("h", "users.7.seen") == {}  # an emptied object stays, empty
    assert store.delete("h", "users.7") is True and store.get("h") == {"users": {}}
    assert store.get("h", "users.7.name", "gone") == "gone"
    store.set("h", "users.1", 1)
    with pytest.raises(BadRequest, match="cannot increment 'users': it holds a dict"):
        store.incr("h", "users")
    with pytest.raises(BadRequest, match="incr needs a path"):
        store.incr("h", "")
    with pytest.raises(BadRequest, match="incr amount must be a number"):
        store.incr("h", "n", True)  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="whole document must be an object"):
        store.set("h", None, [1])
    with pytest.raises(BadRequest, match="JSON values only"):
        store.set("h", "x", {"o": object()})
    assert store.get("h") == {"users": {"1": 1}}  # failed writes left nothing behind


def _rows_changed(store, fn) -> int:
    conn = store._db()
    before = conn.total_changes
    fn()
    return conn.total_changes - before


def test_writes_touch_only_the_rows_of_their_path(tmp_path):
    """With 500 KB in the document, incr/set/merge/delete of one key change one row
    (two for a merge of two keys) — not the document."""
    store = SharedStore(str(tmp_path / "s.db"))
    big = {f"item{i}": {"name": "x" * 100, "n": i, "tags": [1, 2, 3]} for i in range(3000)}
    store.set("h", "items", big)
    assert store._db().execute("SELECT count(*) FROM shared_paths").fetchone()[0] == 9000
    assert _rows_changed(store, lambda: store.incr("h", "n")) == 1
    assert _rows_changed(store, lambda: store.incr("h", "items.item5.n")) == 1
    assert _rows_changed(store, lambda: store.set("h", "items.item6.name", "y")) == 1
    assert _rows_changed(store, lambda: store.merge("h", "items.item7", {"n": 0, "new": 1})) == 2
    assert _rows_changed(store, lambda: store.delete("h", "items.item8.name")) <= 2
    assert store.get("h", "items.item5.n") == 6 and store.get("h", "items.item6.name") == "y"
    assert len(store.get("h", "items")) == 3000


def test_clear_and_documents_that_exist_empty(state_url):
    store = open_store(state_url)
    assert store.clear("h") == 0
    store.delete("h", "x")  # any write creates the document, even one that finds nothing
    assert store.get("h") == {} and store.clear("h") == 1 and store.clear("h") == 0
    store.set("a", "x", 1)
    store.set("b", None, {})
    store.set("c", "y", {"z": 2})
    assert store.clear(None) == 3 and store.get("a") == {} and store.get("c") == {}


def test_a_held_write_lock_is_a_503_after_the_busy_timeout(tmp_path):
    path = str(tmp_path / "s.db")
    SharedStore(path).incr("h", "n")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    store = SharedStore(path, busy_timeout=0.3)
    assert store.get("h", "n") == 1  # readers never wait on a writer
    t = time.monotonic()
    with pytest.raises(StateBusy) as caught:
        store.incr("h", "n")
    assert caught.value.status == 503 and 0.3 <= time.monotonic() - t < 2
    holder.execute("ROLLBACK")
    assert store.incr("h", "n") == 2


def _hammer(url: str, seconds: float, q) -> None:
    store = open_store(url)
    values, errors = [], []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            values.append(store.incr("h", "n"))
        except Exception as exc:  # noqa: BLE001 - reported to the test
            errors.append(repr(exc))
    q.put((values, errors))


def test_two_processes_hammering_incr_never_see_a_locked_database(state_url):
    """Contention: two processes incrementing one counter as fast as they can for
    a second: no "database is locked" (no error at all), every value distinct,
    none lost, and both make progress (no process starves behind the other's
    retries)."""
    open_store(state_url).set("h", "big", {f"k{i}": i for i in range(2000)})
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(state_url, 1.0, q)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    errors = [e for _, errs in results for e in errs]
    assert errors == []
    values = sorted(v for vals, _ in results for v in vals)
    assert values == list(range(1, len(values) + 1))
    assert all(len(vals) > 50 for vals, _ in results)
    assert open_store(state_url).get("h", "n") == len(values)


# -- the read cache (SqliteStore.get, ReadCache) ----------------------------------------


def _no_database(store: SharedStore) -> None:
    """Make every read of ``store`` that reaches the database fail."""

    def refuse(key, fn):
        raise AssertionError("read the database")

    store._read = refuse  # type: ignore[method-assign]


def test_a_read_again_comes_from_the_cache_until_any_commit(tmp_path):
    db = str(tmp_path / "state.db")
    reader, writer = SharedStore(db), SharedStore(db)
    try:
        writer.set("h", "n", 1)
        writer.set("h", "obj", {"a": [1, 2.0], "b": "x"})
        assert reader.get("h", "n") == 1 and reader.get("h", "obj")["b"] == "x"
        assert reader.get("h", "gone", "d1") == "d1"
        read = reader._read
        _no_database(reader)
        assert reader.get("h", "n") == 1  # cached: the database was not read
        assert reader.get("h", "gone", "d2") == "d2"  # a cached absence, the caller's default
        first = reader.get("h", "obj")
        first["a"].append(3)  # the caller's copy: the cache keeps its own
        again = reader.get("h", "obj")
        assert again == {"a": [1, 2.0], "b": "x"} and type(again["a"][1]) is float
        reader._read = read  # type: ignore[method-assign]
        # A commit by another connection (another process, as well) of any path
        # or table makes the next read go to the database.
        writer.incr("other", "x")
        _no_database(reader)
        with pytest.raises(AssertionError, match="read the database"):
            reader.get("h", "n")
        reader._read = read  # type: ignore[method-assign]
        writer.set("h", "n", 2)
        assert reader.get("h", "n") == 2
        writer.delete("h", "gone")  # a write that changes nothing still commits
        writer.set("h", "gone", 5)
        assert reader.get("h", "gone", "d3") == 5
        # the reader's own write, too
        reader.set("h", "n", 3)
        assert reader.get("h", "n") == 3
    finally:
        reader.close()
        writer.close()


def _proc_set(db: str, value: int) -> None:
    store = SharedStore(db)
    store.set("h", "n", value)
    store.close()


def test_a_write_by_another_process_is_read_at_once(tmp_path):
    db = str(tmp_path / "state.db")
    store = SharedStore(db)
    try:
        store.set("h", "n", 0)
        ctx = multiprocessing.get_context("spawn")
        for value in (1, 2, 3):
            assert store.get("h", "n") == value - 1
            p = ctx.Process(target=_proc_set, args=(db, value))
            p.start()
            p.join(60)
            assert p.exitcode == 0
            assert store.get("h", "n") == value
    finally:
        store.close()


def test_the_read_cache_is_bounded_and_vouches_only_for_a_whole_header(tmp_path):
    from hoodyexec.storage import sqlite as backend

    db = str(tmp_path / "state.db")
    store = SharedStore(db)
    try:
        store.set("h", "k", {f"k{i}": i for i in range(backend.CACHE_ENTRIES + 50)})
        store.set("h", "big", "x" * (backend.CACHE_VALUE_BYTES + 1))
        store.set("h", "list", list(range(2000)))  # over the size bound once encoded
        for i in range(backend.CACHE_ENTRIES + 50):
            assert store.get("h", f"k.k{i}") == i
        assert len(store._cache._entries) == backend.CACHE_ENTRIES
        assert ("h", "k.k0") not in store._cache._entries  # the oldest went first
        assert store.get("h", "big") == "x" * (backend.CACHE_VALUE_BYTES + 1)
        assert store.get("h", "list") == list(range(2000))
        assert ("h", "big") not in store._cache._entries
        assert ("h", "list") not in store._cache._entries
        cache = store._cache
        assert cache.mark() is not None
        header = cache._map[:96]
        # The two copies differ while SQLite rewrites the header: no answer from the cache.
        cache._map.close()
        cache._map = header[:48] + bytes(48)  # type: ignore[assignment]
        assert cache.mark() is None
        cache._map = None
        assert store.get("h", "k.k1") == 1  # no mapping: every read from the database
    finally:
        store._cache._map = None
        store.close()


def test_the_read_cache_follows_a_wal_index_made_again(tmp_path):
    """When every connection closed, SQLite removed ``<db>-shm``; the next one
    makes a new file, and a store that reopens reads through the new one (the
    old mapping would never change again)."""
    import os

    db = str(tmp_path / "state.db")
    a = SharedStore(db)
    a.set("h", "n", 1)
    assert a.get("h", "n") == 1
    a.close()
    assert not os.path.exists(db + "-shm")  # the last connection removed it
    b = SharedStore(db)
    try:
        b.set("h", "n", 2)
        assert a.get("h", "n") == 2  # a reopened: its cache reads the new file
        b.set("h", "n", 3)
        assert a.get("h", "n") == 3
    finally:
        a.close()
        b.close()
