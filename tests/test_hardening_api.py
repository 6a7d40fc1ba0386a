"""Management API hardening: magic-comment injection, dot-files, vanishing
entries, path-free errors, deep JSON, scope types, stale temp files (in-process)."""

from __future__ import annotations

import builtins
import os
from typing import Any

import falcon.testing
import pytest

from hoodyexec import files
from hoodyexec.engine import magic
from hoodyexec.engine.inject import decode_raw as _decode_raw
from hoodyexec.errors import HoodyError
from hoodyexec.home import Home
from hoodyexec.http.sink import parse_body

from .scriptenv import ScriptEnv, management_app

B = "/api/v1/exec/scripts/"
M = "/api/v1/exec/magic-comments/"
R = "/api/v1/exec/route/"
T = "/api/v1/exec/templates/"


@pytest.fixture
def api(tmp_path):
    home = Home(str(tmp_path / "home"))
    home.prepare()
    app = management_app(home)
    client = falcon.testing.TestClient(app)
    client.home = home
    client.root = home.instance_dir()
    return client


def _write(api, path: str, content: str = "return 1\n") -> None:
    r = api.simulate_post(B + "write", json={"path": path, "content": content, "validate": False})
    assert r.status_code in (200, 201), r.json


def _snapshot(top: str) -> list[str]:
    """Every file and folder under ``top`` (relative), to show nothing was left behind."""
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, name), top))
    return sorted(out)


def _no_machine_path(api, r: falcon.testing.Result) -> None:
    assert os.path.dirname(api.home.root) not in r.text, r.text  # the test's temp folder


# -- 7. magic-comment values never leave their line ------------------------------------
# Everything str.splitlines() splits on, plus other control characters.
BREAKERS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
CONTROLS = ["\x00", "\x07", "\t", "\x1b", "\x7f", "\x9b"]


def test_every_character_splitlines_splits_is_refused():
    for code in range(0x110000):
        ch = chr(code)
        if len(f"a{ch}b".splitlines()) > 1:
            assert magic.unsafe_char(f"a{ch}b") == ch, hex(code)
    assert magic.unsafe_char("plain text, émoji 👋 and spaces") is None


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


def test_magic_rewrite_refuses_unsafe_text_directly():
    with pytest.raises(ValueError, match="line breaks"):
        magic.rewrite("return 1\n", {"description": "a\u2028return 2"})
    with pytest.raises(ValueError, match="line breaks"):
        magic.rewrite("return 1\n", "# @description a\x1bb")
    # the string form still splits on ordinary line breaks
    out = magic.rewrite("return 1\n", "# @timeout 5\r\n# @mode thread")
    assert out == "# @timeout 5\n# @mode thread\nreturn 1\n"


def test_template_comment_placeholders_use_the_same_check(api):
    code = "# @description {{d}}\nreturn 1\n"
    r = api.simulate_post(
        T + "create-custom",
        json={"name": "c", "code": code, "metadata": {"variables": [{"name": "d"}]}},
    )
    assert r.status_code == 201, r.json
    for ch in ["\x85", "\u2028", "\x0c", "\x1b"]:
        r = api.simulate_post(T + "generate", json={"name": "c", "variables": {"d": f"a{ch}b"}})
        assert r.status_code == 400 and r.json["variable"] == "d", r.json


# -- 10. dot-files are never routed -------------------------------------------------------
def test_dot_files_added_after_the_first_request_are_not_routed(tmp_path):
    env = ScriptEnv(tmp_path)
    env.write("visible.py", "return 'v'\n")
    inst = env.home.instance_dir()

    async def scenario(c):
        seen = []

        async def get(path):
            seen.append((path, (await c.simulate_get(path)).status_code))

        await get("/visible")  # the route table is built: from now on, inotify updates it
        env.write(".hidden.py", "return 'h'\n")
        await get("/.hidden")
        os.makedirs(os.path.join(inst, ".folder"))
        os.makedirs(os.path.join(inst, "sub", ".dot"))
        await get("/visible")  # folders appeared: the table is rebuilt by a scan
        env.write(".folder/x.py", "return 'x'\n")
        env.write("sub/.dot/y.py", "return 'y'\n")
        env.write("sub/.z.py", "return 'z'\n")
        env.write("late.py", "return 'l'\n")
        for path in ("/.folder/x", "/sub/.dot/y", "/sub/.z", "/late"):
            await get(path)
        return seen

    assert env.run(scenario) == [
        ("/visible", 200),
        ("/.hidden", 404),
        ("/visible", 200),
        ("/.folder/x", 404),
        ("/sub/.dot/y", 404),
        ("/sub/.z", 404),
        ("/late", 200),
    ]


def test_one_predicate_for_hidden_names():
    from hoodyexec.engine.routes import NotRoutable, is_hidden, route_for
    from hoodyexec.http.router import RouteTable

    assert is_hidden(".x.py") and is_hidden("a/.b/c.py") and is_hidden("node_modules/x.py")
    assert not is_hidden("a/b.py") and not is_hidden("_lib.py")
    with pytest.raises(NotRoutable):
        route_for(".x.py")
    table = RouteTable()
    table.add(".x.py")
    table.add("a/.b/c.py")
    assert table.find("/.x") is None and table.report() == []


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


def _json_endpoints():
    return [
        ("POST", B + "write"),
        ("POST", B + "move"),
        ("POST", B + "tree"),
        ("PUT", M + "update"),
        ("POST", M + "bulk-update"),
        ("POST", R + "discover"),
        ("POST", R + "resolve"),
        ("POST", R + "test"),
        ("POST", T + "generate"),
        ("POST", T + "create-custom"),
        ("PUT", T + "update-custom/x"),
        *(
            ("POST", "/api/v1/exec/validate/" + n)
            for n in (
                "script",
                "syntax",
                "typescript",
                "dependencies",
                "magic-comments",
                "return-type",
            )
        ),
        ("POST", "/api/v1/exec/shared-state/get"),
        ("POST", "/api/v1/exec/shared-state/set"),
        ("POST", "/api/v1/exec/shared-state/clear"),
    ]


@pytest.mark.parametrize("method,path", _json_endpoints())
def test_deeply_nested_json_is_400_everywhere(api, method, path):
    for deep in (b"[" * 100_000, b'{"a":' * 100_000):
        r = api.simulate_request(
            method, path, body=deep, headers={"content-type": "application/json"}
        )
        assert r.status_code == 400, (path, r.json)
        # a typed body may be refused for its shape before its depth: also a 400
        assert r.json["error"] == "Invalid JSON" or "shared-state" in path, (path, r.json)


def test_deeply_nested_template_variables_are_400(api):
    r = api.simulate_get(T + "preview", params={"name": "hello", "variables": "[" * 100_000})
    assert r.status_code == 400, r.json


def test_script_body_parsers_refuse_deep_json():
    import msgspec

    class Body(msgspec.Struct):
        a: Any = None

    for call in (
        lambda: parse_body(b"[" * 100_000, "application/json"),
        lambda: _decode_raw(b'{"a":' * 100_000, Body),
        lambda: _decode_raw(b"[" * 100_000, list),
    ):
        with pytest.raises(HoodyError) as info:
            call()
        assert info.value.status == 400 and info.value.message == "Invalid JSON"


@pytest.mark.parametrize("field", ["execId", "exec_id", "subdomain"])
@pytest.mark.parametrize("value", [True, False, 7, 1.5, [1], {"a": 1}])
def test_scope_fields_must_be_strings(api, field, value):
    before = _snapshot(api.home.scripts)
    r = api.simulate_post(B + "write", json={"path": "a.py", "content": "return 1\n", field: value})
    assert r.status_code == 400 and r.json["field"] == field, r.json
    assert _snapshot(api.home.scripts) == before
    r = api.simulate_post(B + "tree", json={field: value})
    assert r.status_code == 400 and r.json["field"] == field, r.json


def _killed(*args: object) -> None:
    raise KeyboardInterrupt


def test_prepare_removes_stale_temp_files_only(tmp_path, monkeypatch):
    home = Home(str(tmp_path / "home"))
    home.prepare()
    inst = home.instance_dir()
    os.makedirs(os.path.join(inst, "sub"))
    with monkeypatch.context() as m:  # a write killed between the temp file and the rename
        m.setattr(os, "replace", _killed)
        m.setattr(os, "unlink", lambda path: None)
        for folder in (inst, os.path.join(inst, "sub")):
            with pytest.raises(KeyboardInterrupt):
                files.write_atomic(os.path.join(folder, "x.py"), b"return 1\n")
    made = [
        os.path.join(d, n) for d, _, names in os.walk(inst) for n in names if n.endswith(".tmp")
    ]
    assert len(made) == 2
    keep = ["notes.tmp", ".keep.tmp", "x.py.tmp", ".x.py.tmp", "real.py"]
    for name in keep:
        open(os.path.join(inst, name), "w").close()
    assert home.prepare() is False
    assert not any(os.path.exists(p) for p in made)
    assert all(os.path.exists(os.path.join(inst, n)) for n in keep)
