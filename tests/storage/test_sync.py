"""The replica of scripts and packages in a shared backend (PostgreSQL,
Redis): sequence order, content by digest, tombstones under a folder, catching
up from any point, progress per node, packages, and the notices."""

from __future__ import annotations

import pytest

from hoodyexec.storage.backends import open_backend
from hoodyexec.storage.sync import Publication, Replica, Upsert, digest, lock_digest

pytestmark = pytest.mark.timeout(60)


def up(path: str, text: str) -> Upsert:
    data = text.encode()
    return Upsert(path, data, digest(data))


def replica(url: str) -> Replica:
    got = open_backend(url, "/nonexistent").replica()
    assert got is not None
    return got


def test_sqlite_has_no_replica(tmp_path):
    assert open_backend(None, str(tmp_path)).replica() is None


def test_changes_come_back_in_order_with_contents_and_tombstones(shared_url):
    r = replica(shared_url)
    assert r.head() == 0 and r.since(0) == []
    s1 = r.publish(
        "n1", Publication("default", "1", [up("a.py", "A"), up("lib/b.py", "B")], ["a.py"])
    )
    assert s1 == 2 and r.head() == 2
    # same content again: nothing changes, the head is answered
    assert r.publish("n1", Publication("default", "1", [up("a.py", "A")], ["a.py"])) == 2
    s2 = r.publish("n2", Publication("default", "1", [up("a.py", "A2")], ["a.py"]))
    assert s2 == 3
    changes = r.since(0)
    assert [(c.seq, c.path, c.content) for c in changes] == [
        (2, "lib/b.py", b"B"),
        (3, "a.py", b"A2"),
    ]
    assert changes[1].digest == digest(b"A2")
    assert [c.path for c in r.since(2)] == ["a.py"] and r.since(3) == []
    # a folder removed: every file under it gets a tombstone; a sibling name stays
    r.publish("n1", Publication("default", "1", [up("libx.py", "X")], ["libx.py"]))
    s3 = r.publish("n1", Publication("default", "1", [], ["lib"]))
    gone = r.since(s3 - 1)
    assert [(c.path, c.digest, c.content) for c in gone] == [("lib/b.py", None, None)]
    # a move: the old path removed, the new one written, in one publication
    s4 = r.publish("n1", Publication("default", "1", [up("c.py", "A2")], ["a.py", "c.py"]))
    moved = r.since(s3)
    assert s4 == s3 + 2 and {(c.path, c.content) for c in moved} == {
        ("a.py", None),
        ("c.py", b"A2"),
    }
    # the whole instance as one node sees it; another instance is untouched
    r.publish("n1", Publication("other", "2", [up("z.py", "Z")], [""]))
    s5 = r.publish("n1", Publication("default", "1", [up("c.py", "A2")], [""]))
    last = r.since(s5 - 1)
    assert [(c.subdomain, c.path, c.digest) for c in last] == [("default", "libx.py", None)]
    live = {(c.subdomain, c.path) for c in r.since(0) if c.digest}
    assert live == {("default", "c.py"), ("other", "z.py")}
    assert [len(r.since(0, limit=2))] == [2]


def test_progress_packages_and_notices(shared_url):
    r = replica(shared_url)
    listener = r.listen()
    try:
        assert r.packages() is None
        v = r.put_packages("n1", "[project]\n", "tinypkg==1.0\n")
        pk = r.packages()
        assert pk is not None and (pk.version, pk.project, pk.lock, pk.node) == (
            v,
            "[project]\n",
            "tinypkg==1.0\n",
            "n1",
        )
        assert pk.digest == lock_digest("tinypkg==1.0\n") != ""
        r.mark("n1", scripts=4)
        r.mark("n1", lock="abc")
        r.mark("n2", lock="def")
        got = r.progress()
        assert (got["n1"].scripts, got["n1"].lock) == (4, "abc")
        assert (got["n2"].scripts, got["n2"].lock) == (0, "def")
        seq = r.publish("n1", Publication("default", "1", [up("a.py", "A")], ["a.py"]))
        notices: list[str] = []
        for _ in range(20):
            notices += listener.wait(0.2)
            if f"s {seq}" in notices:
                break
        assert notices[:3] == [f"p {v}", "a n1 4", f"s {seq}"]
    finally:
        listener.close()
