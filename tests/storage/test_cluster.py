"""What a shared backend (PostgreSQL, Redis) holds besides shared state: the
node registry (heartbeat and TTL), the schedules' claims and fire history for
the whole cluster — three schedulers on three "nodes" fire each tick once —
and what happens when the server goes away and comes back."""

from __future__ import annotations

import asyncio
import time

import pytest

from hoodyexec.features.schedules.service import Scheduler
from hoodyexec.home import Home
from hoodyexec.storage.backends import open_backend
from hoodyexec.storage.cluster import Node, StateUnavailable, node_id

from ..features.test_schedules import T0, Clock, Runs, write

pytestmark = pytest.mark.timeout(120)


def node(name: str, seen: float, pid: int = 100) -> Node:
    return Node(name, f"10.0.0.{len(name)}:8080", "host-" + name, pid, T0, seen)


def test_nodes_register_beat_expire_and_leave(shared_url):
    registry = open_backend(shared_url, "/nonexistent").nodes()
    assert registry is not None and registry.nodes(T0) == []
    registry.beat(node("a", T0))
    registry.beat(node("b", T0 + 1))
    assert [n.id for n in registry.nodes(T0 + 2)] == ["a", "b"]
    listed = registry.nodes(T0 + 2)[0]
    assert listed == node("a", T0)
    assert listed.to_dict() == {
        "id": "a",
        "bind": "10.0.0.1:8080",
        "host": "host-a",
        "pid": 100,
        "started": T0,
        "lastSeen": T0,
    }
    # b keeps beating, a stops: a is gone once its last beat is older than the TTL.
    registry.beat(node("b", T0 + registry.ttl, pid=101))
    assert [n.id for n in registry.nodes(T0 + registry.ttl + 0.5)] == ["b"]
    assert registry.nodes(T0 + registry.ttl + 0.5)[0].pid == 101  # a beat updates the node
    registry.beat(node("a", T0 + registry.ttl + 1))  # a comes back
    assert [n.id for n in registry.nodes(T0 + registry.ttl + 2)] == ["a", "b"]
    registry.leave("a")
    assert [n.id for n in registry.nodes(T0 + registry.ttl + 2)] == ["b"]
    # Another process sees the same registry.
    other = open_backend(shared_url, "/elsewhere").nodes()
    assert [n.id for n in other.nodes(T0 + registry.ttl + 2)] == ["b"]
    assert other.nodes(T0 + 100 * registry.ttl) == []


def test_node_ids_are_stable_per_home_and_bind():
    a = node_id("/srv/kit", "0.0.0.0:8080", "web1")
    assert a == node_id("/srv/kit", "0.0.0.0:8080", "web1") and a.startswith("web1-")
    assert a != node_id("/srv/kit", "0.0.0.0:8081", "web1")
    assert a != node_id("/srv/kit2", "0.0.0.0:8080", "web1")


def _ledgers(url: str, clock: Clock, *names: str):
    backend = open_backend(url, "/nonexistent")
    registry = backend.nodes()
    assert registry is not None
    out = []
    for name in names:
        ledger = backend.ledger(name, clock)
        assert ledger is not None
        out.append(ledger)
    return registry, out


def test_claims_are_cluster_wide(shared_url):
    clock = Clock(T0)
    registry, [(a, hist_a), (b, hist_b)] = _ledgers(shared_url, clock, "node-a", "node-b")
    registry.beat(node("node-a", T0))
    registry.beat(node("node-b", T0))
    assert a.claim("default/1/t.py", int(T0), "r1") is True
    assert b.claim("default/1/t.py", int(T0), "r2") is False  # one claim per tick
    assert b.last_tick("default/1/t.py") == int(T0) and a.last_tick("other") is None
    # node b runs the next tick; its run is "elsewhere" for node a while b lives
    assert b.claim("default/1/t.py", int(T0) + 60, "r3") is True
    assert a.running_elsewhere("default/1/t.py") is True
    assert b.running_elsewhere("default/1/t.py") is True  # a's claim (this pid, node a)
    a.finish("default/1/t.py", int(T0), "ok", 12.5, None)
    assert b.running_elsewhere("default/1/t.py") is False
    last = a.last()["default/1/t.py"]
    assert (last.tick, last.run_id, last.status) == (int(T0) + 60, "r3", "running")
    assert a.orphans() == []  # node b is alive
    # node b stops beating: its running claim is lost, reported once in the cluster
    clock.now = T0 + registry.ttl + 1
    registry.beat(node("node-a", clock.now))
    assert a.running_elsewhere("default/1/t.py") is False
    (lost,) = a.orphans()
    assert (lost.tick, lost.run_id) == (int(T0) + 60, "r3")
    assert a.orphans() == [] and b.orphans() == []
    assert a.last()["default/1/t.py"].status == "lost"
    # a skipped claim is not running
    assert a.claim("default/1/s.py", int(T0), "r4", status="skipped") is True
    assert a.running_elsewhere("default/1/s.py") is False
    # registration: the first node's time stands until the expression changes
    assert a.registered("default/1/t.py", "* * * * *", T0) == T0
    assert b.registered("default/1/t.py", "* * * * *", T0 + 30) == T0
    assert b.registered("default/1/t.py", "*/5 * * * *", T0 + 40) == T0 + 40
    a.forget("default/1/t.py")
    assert a.registered("default/1/t.py", "*/5 * * * *", T0 + 50) == T0 + 50


def test_history_is_cluster_wide_newest_first(shared_url):
    clock = Clock(T0)
    _, [(_, hist_a), (_, hist_b)] = _ledgers(shared_url, clock, "node-a", "node-b")
    for i in range(6):
        (hist_a if i % 2 else hist_b).append(
            {"time": T0 + i, "script": f"default/1/{'x' if i < 3 else 'y'}.py", "n": i}
        )
    assert [e["n"] for e in hist_a.read()] == [5, 4, 3, 2, 1, 0]
    assert [e["n"] for e in hist_b.read(script="default/1/x.py")] == [2, 1, 0]
    assert [e["n"] for e in hist_b.read(since=T0 + 4)] == [5, 4]
    assert [e["n"] for e in hist_a.read(limit=2)] == [5, 4]


def test_history_keeps_the_newest_entries(shared_url):
    backend = open_backend(shared_url, "/nonexistent")
    ledger = backend.ledger("n", Clock(T0))
    assert ledger is not None
    history = ledger[1]
    history.keep = 50  # type: ignore[attr-defined]
    for i in range(230):
        history.append({"time": T0 + i, "script": "s", "n": i})
    entries = history.read(limit=1000)
    assert entries[0]["n"] == 229
    assert 50 <= len(entries) <= 150  # trimmed (PostgreSQL: every hundredth insert)


def test_three_schedulers_on_three_nodes_fire_each_tick_once(shared_url, tmp_path):
    """Three nodes (each its own home and scheduler, one shared backend), an
    injected clock: every tick of a ``* * * * *`` schedule runs exactly once in
    the cluster, and the history all three read is the same."""

    async def scenario() -> None:
        clock = Clock(T0 + 10)
        backend = open_backend(shared_url, "/nonexistent")
        schedulers = []
        for i in range(3):
            home = Home(str(tmp_path / f"node{i}"))
            home.prepare()
            write(home, "tick.py", "# @schedule * * * * *\nreturn 1\n")
            ledger = backend.ledger(f"node-{i}", clock)
            assert ledger is not None
            s = Scheduler(home.scripts, *ledger, Runs(), kit_started=T0, clock=clock)
            s.rescan()
            schedulers.append(s)
        for minute in range(1, 6):
            clock.now = T0 + 60 * minute + 0.5
            await asyncio.gather(
                *(s.fire(slot, t) for s in schedulers for slot, t in s.due(clock.now))
            )
        runs = [len(s.run_script.calls) for s in schedulers]
        assert sum(runs) == 5, runs
        views = [s.history.read(limit=100) for s in schedulers]
        assert all(v == views[0] for v in views)
        ticks = sorted(e["tick"] for e in views[0])
        assert len(ticks) == len(set(ticks)) == 5 and {e["status"] for e in views[0]} == {"ok"}

    asyncio.run(scenario())


# -- outages --------------------------------------------------------------------------


def _restart(request, kind: str):
    return request.getfixturevalue("postgres_server" if kind == "postgresql" else "redis_server")


@pytest.mark.parametrize("kind", ["postgresql", "redis"])
def test_a_server_that_goes_away_is_a_503_and_comes_back_on_its_own(request, kind):
    server = _restart(request, kind)
    url = request.getfixturevalue("pg_url" if kind == "postgresql" else "redis_url")
    store = open_backend(url, "/nonexistent").store()
    nodes = open_backend(url, "/nonexistent").nodes()
    assert store.incr("h", "n") == 1
    server.stop()
    try:
        t = time.monotonic()
        with pytest.raises(StateUnavailable) as caught:
            store.incr("h", "n")
        assert time.monotonic() - t < 10
        assert caught.value.status == 503
        assert caught.value.to_dict()["error"] == "state backend unavailable"
        assert kind.replace("postgresql", "PostgreSQL").replace("redis", "Redis") in str(
            caught.value.to_dict()["detail"]
        )
        with pytest.raises(StateUnavailable):
            store.get("h", "n")
        with pytest.raises(StateUnavailable):
            nodes.nodes(time.time())
    finally:
        server.start()
    deadline = time.monotonic() + 15
    while True:  # the same store object reconnects by itself
        try:
            value = store.incr("h", "n")
            break
        except StateUnavailable:
            assert time.monotonic() < deadline, "no reconnection"
            time.sleep(0.2)
    # PostgreSQL kept the data; the test Redis has no persistence (starts empty).
    assert value == (2 if kind == "postgresql" else 1)
    assert store.get("h", "n") == value


def test_an_unreachable_backend_is_refused_at_start_with_the_reason(tmp_path):
    from hoodyexec.errors import ConfigError

    port = _closed_port()
    for url, words in [
        (f"postgresql://kit:s3cret@127.0.0.1:{port}/db", "PostgreSQL"),
        (f"redis://:s3cret@127.0.0.1:{port}/0", "Redis"),
    ]:
        with pytest.raises(ConfigError) as caught:
            open_backend(url, str(tmp_path)).check()
        text = str(caught.value)
        assert "unusable" in text and words in text and "s3cret" not in text and "***" in text
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"not a database" * 100)
    with pytest.raises(ConfigError, match="not a database"):
        open_backend(f"sqlite://{broken}", str(tmp_path)).check()


def test_state_urls_are_parsed_and_checked(tmp_path):
    from hoodyexec.errors import ConfigError
    from hoodyexec.storage.backends import SqliteBackend

    default = open_backend(None, str(tmp_path))
    assert isinstance(default, SqliteBackend) and default.path == str(tmp_path / "hoodyexec.db")
    absolute = open_backend("sqlite:///srv/state.db", str(tmp_path))
    assert isinstance(absolute, SqliteBackend) and absolute.path == "/srv/state.db"
    relative = open_backend("sqlite:state.db", str(tmp_path))
    assert isinstance(relative, SqliteBackend) and relative.path == str(tmp_path / "state.db")
    assert open_backend("postgres://h/db", "/x").kind == "postgresql"
    assert open_backend("rediss://h:6380/1", "/x").kind == "redis"
    for bad in ["mysql://h/db", "sqlite://host/x.db", "sqlite:", "nonsense"]:
        with pytest.raises(ConfigError, match="state-url"):
            open_backend(bad, "/x")


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_read_of_two_ranges_runs_in_one_snapshot(shared_url):
    """The base's reads make one ranged read; a read that makes more is run again
    in a snapshot (PostgreSQL: REPEATABLE READ; Redis: under WATCH) and sees
    the rows of both ranges."""
    from hoodyexec.storage import layout

    store = open_backend(shared_url, "/nonexistent").store()
    store.set("h", None, {"a": {"x": 1}, "b": {"y": 2}})

    def two(rows):
        a = rows.locate([], *layout.subtree(layout.encode_path(["a"])))
        b = rows.locate([], *layout.subtree(layout.encode_path(["b"])))
        return layout.recompose(layout.encode_path(["a"]), a), layout.recompose(
            layout.encode_path(["b"]), b
        )

    assert store._read("h", two) == ({"x": 1}, {"y": 2})
    store.close()
