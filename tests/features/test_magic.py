"""Magic-comments feature: schema, read, update and bulk-update (in-process); values
never leave their line."""

from __future__ import annotations

import os

import pytest

from .helpers import B, M, _write


def test_magic_schema_and_read(api):
    r = api.simulate_get(M + "schema")
    names = {s["name"] for s in r.json["schema"]}
    assert {"timeout", "cors", "schedule", "token", "enabled"} <= names
    timeout = next(s for s in r.json["schema"] if s["name"] == "timeout")
    assert timeout["type"] == "integer (ms)" and timeout["default"] == 30000
    api.simulate_post(
        B + "write",
        json={
            "path": "m.py",
            "content": "# @timeout 50\n# @bogus x\nreturn 1\n",
            "validate": False,
        },
    )
    r = api.simulate_get(M + "read", params={"path": "m.py"}).json
    assert (
        r["magicComments"] == {"timeout": 50}
        and r["valid"] is False
        and r["errors"][0]["line"] == 2
    )
    assert r["values"]["timeout"] == 50 and r["values"]["mode"] == "auto"
    assert api.simulate_get(M + "read", params={"path": "none.py"}).status_code == 404


def test_magic_update_keeps_code_bytes(api):
    code = "import os\n\n\ndef handler():\n    return {'x': 1}  # @timeout 9 (not magic)\n"
    source = "#!/usr/bin/env python\n# @description old\n# keep me\n" + code
    api.simulate_post(B + "write", json={"path": "u.py", "content": source, "validate": False})
    r = api.simulate_put(
        M + "update",
        json={
            "path": "u.py",
            "comments": {"timeout": 5000, "description": None, "cors": "*"},
            "dry_run": True,
        },
    )
    assert r.status_code == 200 and r.json["dry_run"] is True and r.json["content"].endswith(code)
    assert (
        api.simulate_get(B + "read", params={"path": "u.py"}).json["content"] == source
    )  # untouched
    r = api.simulate_put(
        M + "update",
        json={"path": "u.py", "comments": {"timeout": 5000, "description": None, "cors": "*"}},
    )
    new = api.simulate_get(B + "read", params={"path": "u.py"}).json["content"]
    assert new == "#!/usr/bin/env python\n# @timeout 5000\n# @cors *\n# keep me\n" + code
    assert r.json["magicComments"] == {"timeout": 5000, "cors": ["*"]}
    r = api.simulate_put(M + "update", json={"path": "u.py", "comments": {"timeout": "soon"}})
    assert r.status_code == 400 and "@timeout" in r.json["error"]
    r = api.simulate_put(M + "update", json={"path": "u.py", "comments": {"frob": 1}})
    assert r.status_code == 400
    r = api.simulate_put(
        M + "update", json={"path": "u.py", "comments": "# @mode thread\n# @enabled false"}
    )
    assert r.json["magicComments"] == {"mode": "thread", "enabled": False}
    assert api.simulate_get(B + "read", params={"path": "u.py"}).json["content"].endswith(code)
    assert (
        api.simulate_put(M + "update", json={"path": "../u.py", "comments": {}}).status_code == 403
    )
    assert api.simulate_put(M + "update", json={"comments": {}}).status_code == 400


def test_magic_bulk_update(api):
    for path in ["b/one.py", "b/two.py", "b/deep/three.py", "b/notes.txt"]:
        api.simulate_post(
            B + "write", json={"path": path, "content": "return 1\n", "validate": False}
        )
    r = api.simulate_post(
        M + "bulk-update", json={"directory": "b", "comments": {"tags": ["x"]}, "dry_run": True}
    )
    assert r.json["count"] == 3 and r.json["changed"] == 3 and r.json["dry_run"] is True
    assert api.simulate_get(B + "read", params={"path": "b/one.py"}).json["content"] == "return 1\n"
    r = api.simulate_post(
        M + "bulk-update", json={"directory": "b", "comments": {"tags": ["x"]}, "recursive": False}
    )
    assert sorted(x["path"] for x in r.json["results"]) == ["b/one.py", "b/two.py"]
    assert (
        api.simulate_get(B + "read", params={"path": "b/one.py"}).json["content"]
        == "# @tags x\nreturn 1\n"
    )
    assert (
        api.simulate_get(B + "read", params={"path": "b/deep/three.py"}).json["content"]
        == "return 1\n"
    )
    r = api.simulate_post(
        M + "bulk-update", json={"directory": "b", "comments": {"tags": ["y"]}, "extension": "txt"}
    )
    assert r.json["count"] == 1
    assert (
        api.simulate_post(M + "bulk-update", json={"directory": "zz", "comments": {}}).status_code
        == 404
    )


# -- 7. magic-comment values never leave their line ------------------------------------
# Everything str.splitlines() splits on, plus other control characters.
BREAKERS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
CONTROLS = ["\x00", "\x07", "\t", "\x1b", "\x7f", "\x9b"]


@pytest.mark.parametrize("ch", BREAKERS + CONTROLS)
def test_magic_update_refuses_line_breaks_in_values(api, ch):
    source = "# @description old\nreturn 1\n"
    _write(api, "m.py", source)
    evil = f"x{ch}return {{'pwned': True}}"
    for comments, field in [
        ({"description": evil}, "comments.description"),
        ({"tags": ["ok", evil]}, "comments.tags"),
        ({f"descr{ch}iption": "x"}, "comments"),
        (f"# @description {evil}", "comments.description"),
    ]:
        if isinstance(comments, str) and ch in BREAKERS:
            # in the string form a line break separates lines: the second one is refused
            r = api.simulate_put(M + "update", json={"path": "m.py", "comments": comments})
            assert r.status_code == 400 and r.json["field"] == "comments", r.json
            continue
        r = api.simulate_put(M + "update", json={"path": "m.py", "comments": comments})
        assert r.status_code == 400, (comments, r.json)
        assert r.json["field"] == field, r.json
        r = api.simulate_post(
            M + "bulk-update", json={"directory": "", "comments": comments, "dry_run": False}
        )
        assert r.status_code == 400 and r.json["field"] == field, r.json
    assert open(os.path.join(api.root, "m.py"), encoding="utf-8", newline="").read() == source


def test_slash_comments_are_not_offered_and_are_explained(env, api):
    r = api.simulate_get("/api/v1/exec/magic-comments/schema")
    assert r.json["prefixes"] == ["#"]
    r = api.simulate_post(
        B + "write", json={"path": "js.py", "content": "// @description x\nreturn 1\n"}
    )
    # Written through the API, the normaliser makes it the canonical comment.
    assert r.status_code == 201, r.json
    assert [c["after"] for c in r.json["normalized"]] == ["# @description x"], r.json
    with open(os.path.join(api.root, "js.py")) as f:
        assert f.read() == "# @description x\nreturn 1\n"
    env.write("magic.py", "// @description x\nreturn 1\n")
    env.write("plain.py", "// just a note\nreturn 1\n")
    for path in ("/magic", "/plain"):
        r = env.get(path)
        assert r.status_code == 500 and r.json["line"] == 1, r.json
        assert ".py files use # for comments" in r.json["error"]
    r = api.simulate_get("/api/v1/exec/magic-comments/read", params={"path": "magic.py"})
    assert r.json["valid"] is False and ".py files use #" in r.json["errors"][0]["message"]


def test_magic_comment_updates_refuse_non_script_files(env, api):
    M = "/api/v1/exec/magic-comments/"
    env.write("data.json", '{"a": 1}\n')
    env.write("notes.txt", "hello\n")
    env.write("ok.py", "return 1\n")
    for path in ("data.json", "notes.txt"):
        for dry in (False, True):
            r = api.simulate_put(
                M + "update", json={"path": path, "comments": {"label": "x"}, "dry_run": dry}
            )
            assert r.status_code == 400 and r.json["field"] == "path", r.json
            assert "not a script" in r.json["error"]
    for extension in (".json", "txt"):
        r = api.simulate_post(
            M + "bulk-update", json={"comments": {"label": "x"}, "extension": extension}
        )
        assert r.status_code == 200, r.json
        [result] = r.json["results"]
        assert result["changed"] is False and "not a script" in result["skipped"]
    r = api.simulate_post(M + "bulk-update", json={"comments": {"label": "x"}})
    assert [x["path"] for x in r.json["results"]] == ["ok.py"] and r.json["changed"] == 1
    with open(os.path.join(api.root, "data.json")) as fh:
        assert fh.read() == '{"a": 1}\n'
    with open(os.path.join(api.root, "notes.txt")) as fh:
        assert fh.read() == "hello\n"
