"""Scripts feature: write/read/list/delete/move/tree and exec ids (in-process);
hardening: dangling symlinks and vanishing entries, path-free errors that leave
nothing behind, scope fields typed."""

from __future__ import annotations

import builtins
import os

import pytest

from .helpers import B, M, R, _no_machine_path, _snapshot, _write


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


# -- 11. dangling symlinks and vanishing files --------------------------------------------
def test_dangling_symlink_does_not_break_listings(api):
    _write(api, "ok.py")
    _write(api, "d/ok2.py")
    os.symlink("nowhere.py", os.path.join(api.root, "dangling.py"))
    os.symlink("nowhere", os.path.join(api.root, "d", "gone-dir"))
    for params in ({}, {"metadata": "true"}, {"include_comments": "true"}):
        r = api.simulate_get(B + "list", params=params)
        assert r.status_code == 200, r.json
        by_path = {s["path"]: s for s in r.json["scripts"]}
        assert by_path["dangling.py"]["broken"] is True and "ok.py" in by_path
        _no_machine_path(api, r)
    for body in ({}, {"includeMetadata": True}):
        r = api.simulate_post(B + "tree", json=body)
        assert r.status_code == 200, r.json
        top = {c["name"]: c for c in r.json["tree"]["children"]}
        assert top["dangling.py"]["broken"] is True and top["ok.py"].get("broken") is None
        _no_machine_path(api, r)
    for body in ({}, {"includeMetadata": True}):
        r = api.simulate_post(R + "discover", json=body)
        assert r.status_code == 200, r.json
        routes = {x["file"]: x for x in r.json["routes"]}
        assert routes["dangling.py"]["broken"] is True and routes["dangling.py"]["active"] is False
        assert routes["ok.py"]["active"] is True
    r = api.simulate_post(M + "bulk-update", json={"comments": {"label": "x"}})
    assert r.status_code == 200 and r.json["success"] is True, r.json
    results = {x["path"]: x for x in r.json["results"]}
    assert results["dangling.py"]["skipped"] == "broken symlink"
    assert results["ok.py"]["changed"] is True
    assert not os.path.lexists(os.path.join(api.root, "nowhere.py"))  # not written through
    assert api.simulate_get("/api/v1/exec/list").status_code == 200


def test_files_vanishing_during_the_walk_are_skipped(api, monkeypatch):
    paths = ["a.py", "gone1.py", "sub/b.py", "sub/gone2.py", "gonedir/c.py", "z.py"]
    calls = [  # (call, whether it opens or stats each file: then the gone ones are left out)
        (lambda: api.simulate_get(B + "list"), True),
        (lambda: api.simulate_get(B + "list", params={"metadata": "true"}), True),
        (lambda: api.simulate_post(B + "tree", json={}), False),
        (lambda: api.simulate_post(B + "tree", json={"includeMetadata": True}), True),
        (lambda: api.simulate_post(R + "discover", json={}), True),
        (lambda: api.simulate_post(R + "discover", json={"includeMetadata": True}), True),
        (lambda: api.simulate_post(M + "bulk-update", json={"comments": {"label": "x"}}), True),
    ]
    for call, looks in calls:
        for p in paths:
            _write(api, p)
        with monkeypatch.context() as m:
            _vanish_names(m)
            r = call()
        assert r.status_code == 200, r.json
        assert "a.py" in r.text and "sub/b.py" in r.text and '"broken"' not in r.text
        if looks:
            assert "gone1" not in r.text and "gone2" not in r.text, r.json
        assert "gonedir/c.py" not in r.text, r.json


def test_read_of_a_file_deleted_meanwhile_is_404(api, monkeypatch):
    for check in ("isfile", "describe"):
        _write(api, "gone.py")
        with monkeypatch.context() as m:
            if check == "describe":  # passes the isfile check, gone by the stat
                m.setattr(os.path, "isfile", lambda path: True)
            _vanish_names(m)
            r = api.simulate_get(B + "read", params={"path": "gone.py"})
        assert r.status_code == 404, r.json
        _no_machine_path(api, r)


def _vanish_names(m: pytest.MonkeyPatch) -> None:
    """Names starting with ``gone`` are deleted the moment anything stats, lists or
    opens them: between the walk's listing and the next look, as a concurrent
    delete would."""
    import shutil
    import stat as stat_mod

    real_stat, real_scandir, real_open = os.stat, os.scandir, builtins.open
    busy = []

    def vanish(path) -> None:
        if busy or not isinstance(path, str | bytes | os.PathLike):
            return
        if not os.path.basename(os.fsdecode(path)).startswith("gone"):
            return
        busy.append(path)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            busy.pop()
            return
        try:
            if stat_mod.S_ISDIR(st.st_mode):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        finally:
            busy.pop()

    def stat(path, *a, **kw):
        vanish(path)
        return real_stat(path, *a, **kw)

    def scandir(path=".", *a, **kw):
        vanish(path)
        return real_scandir(path, *a, **kw)

    def open_(path, *a, **kw):
        vanish(path)
        return real_open(path, *a, **kw)

    m.setattr(os, "stat", stat)
    m.setattr(os, "scandir", scandir)
    m.setattr(builtins, "open", open_)


# -- 12. errors without machine paths, nothing left behind ---------------------------------
def test_too_long_names_are_400_and_leave_nothing(api):
    before = _snapshot(api.root)
    for path in ["x" * 300 + ".py", "d" * 300 + "/x.py", "new/" + "y" * 300 + ".py"]:
        r = api.simulate_post(B + "write", json={"path": path, "content": "return 1\n"})
        assert r.status_code == 400, r.json
        _no_machine_path(api, r)
    assert _snapshot(api.root) == before
    # a name the filesystem takes is written (the temp file name stays short enough)
    r = api.simulate_post(B + "write", json={"path": "n" * 250 + ".py", "content": "return 1\n"})
    assert r.status_code == 201, r.json


def test_write_under_a_file_is_409(api):
    _write(api, "a.py")
    before = _snapshot(api.root)
    for path in ["a.py/b.py", "a.py/x/b.py"]:
        r = api.simulate_post(B + "write", json={"path": path, "content": "return 1\n"})
        assert r.status_code == 409, r.json
        _no_machine_path(api, r)
    assert _snapshot(api.root) == before


def test_move_into_itself_is_refused_and_leaves_nothing(api):
    _write(api, "f/one.py")
    before = _snapshot(api.root)
    for to in ["f/sub", "f/x/y/z", "f"]:
        for overwrite in (False, True):
            r = api.simulate_post(B + "move", json={"from": "f", "to": to, "overwrite": overwrite})
            assert r.status_code in (400, 409), r.json
            _no_machine_path(api, r)
            assert _snapshot(api.root) == before
    r = api.simulate_post(B + "move", json={"from": "f/one.py", "to": "f/one.py/x.py"})
    assert r.status_code in (400, 409), r.json
    _no_machine_path(api, r)
    assert _snapshot(api.root) == before


@pytest.mark.parametrize("field", ["execId", "exec_id", "subdomain"])
@pytest.mark.parametrize("value", [True, False, 7, 1.5, [1], {"a": 1}])
def test_scope_fields_must_be_strings(api, field, value):
    before = _snapshot(api.home.scripts)
    r = api.simulate_post(B + "write", json={"path": "a.py", "content": "return 1\n", field: value})
    assert r.status_code == 400 and r.json["field"] == field, r.json
    assert _snapshot(api.home.scripts) == before
    r = api.simulate_post(B + "tree", json={field: value})
    assert r.status_code == 400 and r.json["field"] == field, r.json


def test_delete_honours_body_scope_and_query_wins(env, api):
    for instance in ("default/1", "default/2", "api/3"):
        env.write("x.py", "return 1\n", instance=instance)
    scripts = env.home.scripts

    def exists(instance: str) -> bool:
        return os.path.exists(os.path.join(scripts, instance, "x.py"))

    q = {"path": "x.py", "confirm": "true"}
    r = api.simulate_delete(B + "delete", params=q, json={"execId": "2"})
    assert r.status_code == 200 and (r.json["subdomain"], r.json["execId"]) == ("default", "2")
    assert not exists("default/2") and exists("default/1")
    # the query wins over the body: never the body's instance, never the default one
    r = api.simulate_delete(
        B + "delete", params={**q, "execId": "3", "subdomain": "api"}, json={"execId": "1"}
    )
    assert r.status_code == 200 and not exists("api/3") and exists("default/1")
    # a body that cannot be read deletes nothing
    for bad in ({"execId": 1}, "not json"):
        kw = {"json": bad} if isinstance(bad, dict) else {"body": bad}
        r = api.simulate_delete(
            B + "delete", params=q, headers={"Content-Type": "application/json"}, **kw
        )
        assert r.status_code == 400 and exists("default/1")


def test_write_refuses_uninjectable_handler_parameter_with_its_line(env, api):
    code = "def handler(req,\n            nope):\n    return 1\n"
    r = api.simulate_post(B + "write", json={"path": "bad.py", "content": code})
    assert r.status_code == 400 and r.json["error"] == "Script validation failed", r.json
    [message] = r.json["validation"]["errors"]
    assert "'nope'" in message and "(line 2)" in message
    [item] = r.json["validation"]["results"]["typescript"]["errors"]
    assert item["line"] == 2
    assert not os.path.exists(os.path.join(api.root, "bad.py"))
    # a builtin annotation is no Struct: every call would fail the same way
    r = api.simulate_post(
        B + "write", json={"path": "typed.py", "content": "def GET(limit: int):\n    return 1\n"}
    )
    assert r.status_code == 400 and "'limit'" in r.json["validation"]["errors"][0]
    # the same name as a route param, a Struct, a default, or a private module: fine
    ok = {
        "users/[nope].py": code,
        "s.py": "import msgspec\nclass S(msgspec.Struct):\n    a: int\n"
        "def POST(item: S, limit: int = 5):\n    return item\n",
        "_helpers.py": code,
        "lam.py": "handler = lambda query: query\n",
    }
    for path, content in ok.items():
        r = api.simulate_post(B + "write", json={"path": path, "content": content})
        assert r.status_code == 201 and r.json["validated"] is True, (path, r.json)
    assert env.get("/users/7").json == 1
    # without a path the route is unknown: still only a warning
    r = api.simulate_post("/api/v1/exec/validate/script", json={"code": code})
    assert r.json["valid"] is True and "'nope'" in r.json["warnings"][0]
