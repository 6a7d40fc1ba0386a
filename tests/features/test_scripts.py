"""Scripts feature: write/read/list/delete/move/tree and exec ids (in-process)."""

from __future__ import annotations

import os

import pytest

from .helpers import B


def test_write_read_roundtrip_and_atomic_files(api):
    r = api.simulate_post(
        B + "write", json={"path": "greet.py", "content": "# @description Hi\nreturn 'hi'\n"}
    )
    assert r.status_code == 201, r.json
    assert (
        r.json["success"] is True and r.json["path"] == "greet.py" and r.json["route"] == "/greet"
    )
    target = os.path.join(api.home.instance_dir(), "greet.py")
    assert open(target).read() == "# @description Hi\nreturn 'hi'\n"
    assert not [n for n in os.listdir(api.home.instance_dir()) if ".tmp" in n]
    r = api.simulate_post(B + "write", json={"path": "greet.py", "content": "return 'again'\n"})
    assert r.status_code == 200 and r.json["created"] is False
    r = api.simulate_get(B + "read", params={"path": "greet.py"})
    assert (
        r.json["content"] == "return 'again'\n"
        and r.json["route"] == "/greet"
        and r.json["shape"] == "body"
    )
    assert r.json["magicComments"] == {} and r.json["size"] == len("return 'again'\n")
    r = api.simulate_get(B + "read", params={"path": "greet.py"}).json
    assert r["subdomain"] == "default" and r["execId"] == "1"


def test_write_scoping_query_wins_over_body(api):
    r = api.simulate_post(
        B + "write",
        params={"execId": "7"},
        json={"path": "a.py", "content": "return 1\n", "execId": "8", "subdomain": "api"},
    )
    assert r.status_code == 201 and (r.json["subdomain"], r.json["execId"]) == ("api", "7")
    assert os.path.exists(os.path.join(api.home.scripts, "api", "7", "a.py"))
    r = api.simulate_post(
        B + "write", json={"path": "b.py", "content": "return 1\n", "exec_id": "9"}
    )
    assert (r.json["subdomain"], r.json["execId"]) == ("default", "9")
    r = api.simulate_post(
        B + "write", params={"exec_id": "../x"}, json={"path": "c.py", "content": ""}
    )
    assert r.status_code == 400


@pytest.mark.parametrize(
    "bad",
    [
        "../escape.py",
        "/etc/passwd",
        "a/../../b.py",
        "x/../../../y.py",
        "..",
        "~/x.py",
        "a\\..\\b.py",
    ],
)
def test_path_safety(api, bad):
    r = api.simulate_post(B + "write", json={"path": bad, "content": "x"})
    assert r.status_code == 403 and r.json["error"] == "Path is excluded from access"
    assert api.simulate_get(B + "read", params={"path": bad}).status_code == 403
    assert (
        api.simulate_delete(B + "delete", params={"path": bad, "confirm": "true"}).status_code
        == 403
    )


def test_symlink_escaping_is_refused(api, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("return 'secret'\n")
    os.symlink(outside, os.path.join(api.home.instance_dir(), "link"))
    assert api.simulate_get(B + "read", params={"path": "link/secret.py"}).status_code == 403
    r = api.simulate_post(B + "write", json={"path": "link/new.py", "content": "x"})
    assert r.status_code == 403 and not (outside / "new.py").exists()


def test_reserved_paths_are_refused(api):
    for path in ["api/v1/exec/health.py", "openapi.json.py", "api/v1/exec/x/index.py"]:
        r = api.simulate_post(B + "write", json={"path": path, "content": "return 1\n"})
        assert r.status_code == 400 and "reserved" in r.json["error"], path


def test_write_errors(api):
    assert api.simulate_post(B + "write", json={"content": "x"}).json["error"] == "path is required"
    assert api.simulate_post(B + "write", json={"path": "a.py"}).status_code == 400
    assert api.simulate_post(B + "write", json={"path": "a.py", "content": 5}).status_code == 400
    r = api.simulate_post(B + "write", body="{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json["error"] == "Invalid JSON"
    r = api.simulate_post(
        B + "write",
        json={"path": "deep/er/x.py", "content": "x", "createDirs": False, "validate": False},
    )
    assert r.status_code == 404
    r = api.simulate_post(B + "write", json={"path": "data.json", "content": "{bad"})
    assert r.status_code == 400 and r.json["error"] == "Invalid JSON"
    r = api.simulate_post(
        B + "write", json={"path": "data.json", "content": "{bad", "validate": False}
    )
    assert r.status_code == 201
    r = api.simulate_post(B + "write", json={"path": "notes.md", "content": "# not python ("})
    assert r.status_code == 201 and r.json["validated"] is False


def test_delete_needs_confirm(api):
    api.simulate_post(B + "write", json={"path": "d.py", "content": "return 1\n"})
    r = api.simulate_delete(B + "delete", params={"path": "d.py"})
    assert r.status_code == 400 and r.json["error"] == "confirm=true parameter required for safety"
    assert (
        api.simulate_delete(B + "delete", params={"path": "d.py", "confirm": "yes"}).status_code
        == 400
    )
    r = api.simulate_delete(B + "delete", params={"path": "d.py", "confirm": "true"})
    assert r.status_code == 200 and r.json["deleted"] == "d.py"
    assert (
        api.simulate_delete(B + "delete", params={"path": "d.py", "confirm": "true"}).status_code
        == 404
    )
    assert api.simulate_get(B + "read", params={"path": "d.py"}).status_code == 404


def test_move_honours_overwrite(api):
    api.simulate_post(B + "write", json={"path": "m1.py", "content": "return 1\n"})
    api.simulate_post(B + "write", json={"path": "m2.py", "content": "return 2\n"})
    r = api.simulate_post(B + "move", json={"from": "m1.py", "to": "m2.py"})
    assert r.status_code == 409
    r = api.simulate_post(B + "move", json={"from": "m1.py", "to": "m2.py", "overwrite": True})
    assert r.status_code == 200 and r.json["to"] == "m2.py"
    assert api.simulate_get(B + "read", params={"path": "m2.py"}).json["content"] == "return 1\n"
    r = api.simulate_post(B + "move", json={"from": "m2.py", "to": "sub/dir/m3.py"})
    assert r.status_code == 200
    assert api.simulate_post(B + "move", json={"from": "nope.py", "to": "x.py"}).status_code == 404
    assert (
        api.simulate_post(B + "move", json={"from": "sub/dir/m3.py", "to": "../x.py"}).status_code
        == 403
    )
    assert (
        api.simulate_post(
            B + "move", json={"from": "sub/dir/m3.py", "to": "api/v1/exec/z.py"}
        ).status_code
        == 400
    )


def test_list_filters(api):
    files = {
        "a.py": "# @label billing\n# @tags x, y\nreturn 1\n",
        "b.py": "# @mode thread\n# @enabled false\nreturn 1\n",
        "sub/c.py": "# @websocket true\nreturn 1\n",
        "readme.md": "hi",
    }
    for path, content in files.items():
        api.simulate_post(B + "write", json={"path": path, "content": content, "validate": False})
    names = lambda r: sorted(s["path"] for s in r.json["scripts"])  # noqa: E731
    all_ = api.simulate_get(B + "list")
    assert {"a.py", "b.py", "sub/c.py", "readme.md"} <= set(names(all_)) and all_.json[
        "count"
    ] == len(all_.json["scripts"])
    assert names(api.simulate_get(B + "list", params={"label": "billing"})) == ["a.py"]
    assert names(api.simulate_get(B + "list", params={"tags": "x"})) == ["a.py"]
    assert names(api.simulate_get(B + "list", params={"mode": "thread"})) == ["b.py"]
    assert "b.py" in names(api.simulate_get(B + "list", params={"enabled": "false"}))
    assert "b.py" not in names(api.simulate_get(B + "list", params={"enabled": "true"}))
    assert names(api.simulate_get(B + "list", params={"websocket": "true"})) == ["sub/c.py"]
    assert names(api.simulate_get(B + "list", params={"dir": "sub"})) == ["sub/c.py"]
    assert "sub/c.py" not in names(api.simulate_get(B + "list", params={"recursive": "false"}))
    assert names(api.simulate_get(B + "list", params={"filter": "READ"})) == ["readme.md"]
    r = api.simulate_get(B + "list", params={"include_comments": "true", "filter": "a.py"})
    assert r.json["scripts"][0]["magicComments"] == {"label": "billing", "tags": ["x", "y"]}
    r = api.simulate_get(B + "list", params={"metadata": "true", "filter": "b.py"})
    assert r.json["scripts"][0]["shape"] == "body" and r.json["scripts"][0]["enabled"] is False
    assert api.simulate_get(B + "list", params={"dir": "../"}).status_code == 403
    assert api.simulate_get(B + "list", params={"recursive": "maybe"}).status_code == 400


def test_tree(api):
    api.simulate_post(B + "write", json={"path": "t/one.py", "content": "return 1\n"})
    api.simulate_post(B + "write", json={"path": "t/deep/two.py", "content": "return 2\n"})
    r = api.simulate_post(B + "tree", json={"baseDir": "t"})
    tree = r.json["tree"]
    assert tree["type"] == "directory" and {c["name"] for c in tree["children"]} == {
        "one.py",
        "deep",
    }
    r = api.simulate_post(B + "tree", json={"baseDir": "t", "maxDepth": 1})
    deep = next(c for c in r.json["tree"]["children"] if c["name"] == "deep")
    assert deep.get("truncated") is True
    r = api.simulate_post(B + "tree", json={"baseDir": "t", "includeMetadata": True})
    one = next(c for c in r.json["tree"]["children"] if c["name"] == "one.py")
    assert one["route"] == "/t/one" and one["size"] == 9
    assert api.simulate_post(B + "tree").status_code == 200
    assert api.simulate_post(B + "tree", json={"baseDir": "nope"}).status_code == 404
    assert api.simulate_post(B + "tree", json={"maxDepth": "x"}).status_code == 400


def test_exec_ids(api):
    api.simulate_post(
        B + "write", params={"execId": "2"}, json={"path": "x.py", "content": "return 1\n"}
    )
    api.simulate_post(
        B + "write", params={"execId": "2"}, json={"path": "_lib.py", "content": "X = 1\n"}
    )
    r = api.simulate_get("/api/v1/exec/list")
    ids = {e["id"]: e for e in r.json["execIds"]}
    assert ids["default/2"]["scripts"] == 2 and ids["default/2"]["routes"] == 1
    assert ids["default/1"]["scripts"] >= 5  # the seeded examples


def test_write_runs_the_validation_pipeline(api):
    r = api.simulate_post(B + "write", json={"path": "v.py", "content": "def handler(:\n"})
    assert r.status_code == 400 and r.json["error"] == "Script validation failed"
    assert r.json["validation"]["results"]["syntax"]["errors"][0]["line"] == 1
    assert not os.path.exists(os.path.join(api.home.instance_dir(), "v.py"))
    r = api.simulate_post(
        B + "write", json={"path": "v.py", "content": "import missing_mod_xyz\nreturn 1\n"}
    )
    assert (
        r.status_code == 400
        and "missing_mod_xyz" in r.json["validation"]["results"]["dependencies"]["missing"]
    )
    r = api.simulate_post(
        B + "write", json={"path": "v.py", "content": "def handler(:\n", "validate": False}
    )
    assert r.status_code == 201 and r.json["validated"] is False
    r = api.simulate_post(B + "write", json={"path": "v.py", "content": "return 1\n"})
    assert r.status_code == 200 and r.json["validated"] is True
