"""Management API: scripts write/read/list/delete/move/tree and exec ids (in-process)."""

from __future__ import annotations

import os

import falcon.testing
import pytest

from hoodyexec.home import Home

from .scriptenv import management_app


@pytest.fixture
def api(tmp_path):
    home = Home(str(tmp_path / "home"))
    home.prepare()
    app = management_app(home)
    client = falcon.testing.TestClient(app)
    client.home = home
    return client


B = "/api/v1/exec/scripts/"


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


M = "/api/v1/exec/magic-comments/"


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


R = "/api/v1/exec/route/"


def test_route_discover_resolve(api):
    for path, content in {
        "r/users/[id].py": "return params\n",
        "r/users/me.py": "return 'me'\n",
        "r/files/[...rest].py": "return 1\n",
        "r/_lib.py": "X=1\n",
        "r/a.py": "return 1\n",
        "r/a/index.py": "return 2\n",
    }.items():
        api.simulate_post(B + "write", json={"path": path, "content": content, "validate": False})
    r = api.simulate_post(R + "discover", json={"baseDir": "r"})
    routes = {x["route"]: x for x in r.json["routes"]}
    assert {"/r/users/[id]", "/r/users/me", "/r/files/[...rest]", "/r/a"} <= set(routes)
    assert routes["/r/users/[id]"]["kind"] == "dynamic" and routes["/r/users/[id]"]["params"] == [
        "id"
    ]
    dup = [x for x in r.json["routes"] if x["file"] == "r/a/index.py"][0]
    assert dup["active"] is False and "same route" in dup["reason"]
    assert all(not x["file"].startswith("r/_") for x in r.json["routes"])
    r = api.simulate_post(R + "discover", json={"baseDir": "r", "includeMetadata": True})
    assert r.json["routes"][0]["shape"] == "body"
    r = api.simulate_post(R + "resolve", json={"path": "/r/users/42?x=1"})
    assert (
        r.json["matched"] is True
        and r.json["file"] == "r/users/[id].py"
        and r.json["params"] == {"id": "42"}
    )
    assert (
        api.simulate_post(R + "resolve", json={"path": "/r/users/me"}).json["file"]
        == "r/users/me.py"
    )
    assert api.simulate_post(R + "resolve", json={"path": "/r/files/x/y"}).json["params"] == {
        "rest": "x/y"
    }
    assert api.simulate_post(R + "resolve", json={"path": "/nowhere"}).json["matched"] is False
    assert api.simulate_post(R + "resolve", json={}).status_code == 400


def test_route_test_runs_the_script(api):
    api.simulate_post(
        B + "write",
        json={
            "path": "t/echo/[id].py",
            "content": (
                "def handler(id, body, query, metadata, res):\n"
                "    res.header('X-Trigger', metadata.trigger)\n"
                "    return {'id': id, 'body': body, 'query': query, 'trigger': metadata.trigger}\n"
            ),
        },
    )
    r = api.simulate_post(
        R + "test",
        json={"path": "/t/echo/9", "method": "POST", "body": {"a": 1}, "query": {"q": "z"}},
    )
    assert r.status_code == 200
    out = r.json
    assert out["status"] == 200 and out["body"] == {
        "id": "9",
        "body": {"a": 1},
        "query": {"q": "z"},
        "trigger": "test",
    }
    assert out["headers"]["x-trigger"] == "test" and out["durationMs"] >= 0
    api.simulate_post(B + "write", json={"path": "t/boom.py", "content": "raise KeyError('k')\n"})
    out = api.simulate_post(R + "test", json={"path": "t/boom.py"}).json
    assert out["status"] == 500 and out["body"]["type"] == "KeyError"
    out = api.simulate_post(R + "test", json={"path": "/t/missing"}).json
    assert out["status"] == 404


V = "/api/v1/exec/validate/"


def test_validate_endpoints(api):
    good = "# @cors *\n# @timeout 5000\n# @description Greeting handler\ndef handler(req):\n    return {'hi': 1}\n"
    r = api.simulate_post(V + "script", json={"code": good})
    assert r.status_code == 200 and r.json["valid"] is True
    assert set(r.json["results"]) == {"syntax", "typescript", "dependencies", "magicComments"}
    bad = (
        "# @timeout soon\nimport yaml_not_here_xyz\ndef handler(req):\n    return undefined_name\n"
    )
    r = api.simulate_post(V + "script", json={"code": bad}).json
    assert r["valid"] is False
    assert (
        r["results"]["magicComments"]["valid"] is False
        and r["results"]["magicComments"]["errors"][0]["line"] == 1
    )
    assert "yaml_not_here_xyz" in r["results"]["dependencies"]["missing"]
    assert any(
        "undefined_name" in e["message"] and "line 4" in e["message"]
        for e in r["results"]["typescript"]["errors"]
    )
    r = api.simulate_post(V + "syntax", json={"code": "x = (\n"}).json
    assert r["valid"] is False and r["errors"][0]["line"] == 1
    assert api.simulate_post(V + "syntax", json={"code": "return 1\n"}).json["valid"] is True
    r = api.simulate_post(
        V + "dependencies", json={"code": "import json\nimport yaml\nimport nope_pkg_xyz\n"}
    ).json
    assert r["stdlib"] == ["json"] and "yaml" in r["installed"] and r["missing"] == ["nope_pkg_xyz"]
    assert r["hints"]["yaml"] == "PyYAML"
    r = api.simulate_post(V + "magic-comments", json={"code": good}).json
    assert r["valid"] is True and r["comments"]["timeout"] == 5000
    r = api.simulate_post(
        V + "return-type", json={"typeDefinition": "dict[str, int]", "value": {"a": 1}}
    ).json
    assert r["valid"] is True
    r = api.simulate_post(
        V + "return-type", json={"typeDefinition": "list[int]", "value": [1, "x"]}
    ).json
    assert r["valid"] is False and "$[1]" in r["errors"][0]
    r = api.simulate_post(
        V + "return-type", json={"typeDefinition": "__import__('os').getcwd()", "value": 1}
    ).json
    assert r["valid"] is False and "unsupported" in r["errors"][0]
    assert api.simulate_post(V + "return-type", json={"typeDefinition": "int"}).status_code == 400
    assert api.simulate_post(V + "script", json={}).status_code == 400
    assert api.simulate_post(V + "script", json={"code": 3}).status_code == 400


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


T = "/api/v1/exec/templates/"


def test_templates_endpoints(api):
    r = api.simulate_get(T + "list")
    names = {t["name"] for t in r.json["templates"]}
    assert {
        "json-api",
        "hmac-webhook",
        "shell-command",
        "workflow",
        "scheduled-job",
        "http-call",
        "sse-stream",
        "typed-crud",
    } <= names and r.json["count"] >= 8
    assert all("code" not in t for t in r.json["templates"])
    assert {
        t["category"]
        for t in api.simulate_get(T + "list", params={"category": "api"}).json["templates"]
    } == {"api"}
    assert api.simulate_get(T + "list", params={"includeBuiltin": "false"}).json["count"] == 0
    r = api.simulate_get(
        T + "preview", params={"name": "hello", "variables": '{"greeting": "Hey"}'}
    )
    assert r.status_code == 200 and "'Hey'" in r.json["code"]
    assert api.simulate_get(T + "preview", params={"name": "nope"}).status_code == 404
    assert (
        api.simulate_get(T + "preview", params={"name": "hello", "variables": "{bad"}).status_code
        == 400
    )
    assert (
        api.simulate_get(
            T + "preview", params={"name": "sse-stream", "variables": '{"count": "x"}'}
        ).status_code
        == 400
    )
    r = api.simulate_post(T + "generate", json={"name": "hello", "variables": {"greeting": "Yo"}})
    assert r.status_code == 200 and r.json["saved"] is False
    r = api.simulate_post(
        T + "generate", json={"name": "hello", "saveFile": True, "outputPath": "gen/hi.py"}
    )
    assert r.status_code == 201 and r.json["path"] == "gen/hi.py" and r.json["route"] == "/gen/hi"
    assert os.path.exists(os.path.join(api.home.instance_dir(), "gen", "hi.py"))
    r = api.simulate_post(
        T + "generate", json={"name": "hello", "saveFile": True, "outputPath": "../x.py"}
    )
    assert r.status_code == 403
    # custom templates live in the instance's _hoody/templates/
    code = "# @description mine\nreturn {'n': {{n}}}\n"
    r = api.simulate_post(
        T + "create-custom",
        json={
            "name": "mine",
            "code": code,
            "metadata": {
                "description": "mine",
                "category": "custom",
                "variables": [{"name": "n", "type": "integer", "default": 1}],
            },
        },
    )
    assert r.status_code == 201, r.json
    assert os.path.exists(os.path.join(api.home.instance_dir(), "_hoody", "templates", "mine.py"))
    assert (
        api.simulate_post(
            T + "create-custom", json={"name": "mine", "code": "return 1\n"}
        ).status_code
        == 409
    )
    assert (
        api.simulate_post(T + "create-custom", json={"name": "Bad Name", "code": code}).status_code
        == 400
    )
    r = api.simulate_post(T + "generate", json={"name": "mine", "variables": {"n": 5}})
    assert "return {'n': 5}" in r.json["code"]
    r = api.simulate_put(T + "update-custom/mine", json={"code": "return {{n}} * 2\n"})
    assert r.status_code == 200
    assert (
        "return 5 * 2"
        in api.simulate_post(T + "generate", json={"name": "mine", "variables": {"n": 5}}).json[
            "code"
        ]
    )
    assert (
        api.simulate_put(T + "update-custom/none", json={"code": "return 1\n"}).status_code == 404
    )
    assert (
        api.simulate_put(T + "update-custom/hello", json={"code": "return 1\n"}).status_code == 409
    )
    assert api.simulate_delete(T + "delete-custom/mine").status_code == 200
    assert api.simulate_get(T + "preview", params={"name": "mine"}).status_code == 404
