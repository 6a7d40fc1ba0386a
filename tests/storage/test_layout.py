"""The storage layout (storage/layout.py): path keys, rows of a value, back again."""

from __future__ import annotations

import random

import pytest

from hoodyexec.errors import BadRequest
from hoodyexec.storage import layout

AWKWARD = [
    "",
    "a",
    "a.b",
    "é",
    "日本",
    "\x00",
    "\x01",
    "a\x00b",
    "a\x01",
    "\x01\x02",
    "\x02",
    "~",
    "\x7f",
]


def test_a_subtree_is_exactly_one_key_range():
    """For every path P, the rows of its value are those in [P, P + 0x01): its own
    row and every row under it, and nothing else, whatever the keys hold."""
    rng = random.Random(7)
    paths = {tuple(rng.choice(AWKWARD) for _ in range(rng.randint(1, 3))) for _ in range(400)}
    keys = {p: layout.encode_path(list(p)) for p in paths}
    assert len(set(keys.values())) == len(keys)  # injective
    for p in paths:
        lo, hi = layout.subtree(keys[p])
        inside = {q for q in paths if lo <= keys[q] < hi}
        assert inside == {q for q in paths if q[: len(p)] == p}
        clo, chi = layout.children_range(keys[p])
        assert {q for q in paths if clo <= keys[q] < chi} == inside - {p}
    root_lo, root_hi = layout.subtree(b"")
    assert all(root_lo <= k < root_hi for k in keys.values())


def test_child_is_encode_path_of_one_more_segment():
    for a in AWKWARD:
        for b in AWKWARD:
            assert layout.child(layout.encode_path([a]), b) == layout.encode_path([a, b])
    assert layout.encode_path([]) == b""


DOC = {
    "n": 1,
    "f": 1.0,
    "s": "héllo",
    "t": True,
    "z": None,
    "empty": {},
    "arr": [1, {"x": 2}, []],
    "deep": {"a": {"b": {"c": "d"}}, "e": {}},
    "a.b": "dotted key",
    "": {"\x00": 0},
}


def test_explode_keeps_leaves_and_recompose_gives_the_value_back():
    rows = layout.explode(b"", DOC)
    paths = [p for p, _ in rows]
    # objects are exploded: no row for "deep" or "deep.a"; arrays and {} are values
    assert layout.encode_path(["deep", "a", "b", "c"]) in paths
    assert layout.encode_path(["deep"]) not in paths
    assert (layout.encode_path(["arr"]), b'[1,{"x":2},[]]') in rows
    assert (layout.encode_path(["empty"]), b"{}") in rows
    assert layout.recompose(b"", rows) == DOC
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert layout.recompose(b"", shuffled) == DOC
    # the value at a prefix, from the rows of its range only
    deep = layout.encode_path(["deep"])
    lo, hi = layout.subtree(deep)
    assert layout.recompose(deep, [r for r in rows if lo <= r[0] < hi]) == DOC["deep"]
    assert type(layout.recompose(b"", rows)["f"]) is float
    assert layout.explode(b"", {}) == []


def test_normalise_is_what_json_reads_back():
    assert layout.normalise({1: (2, 3)}) == {"1": [2, 3]}
    assert layout.normalise("x") == "x"
    with pytest.raises(BadRequest, match="JSON values only"):
        layout.normalise({"x": object()})
