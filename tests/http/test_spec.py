"""Management endpoints decode from their one declaration (http/spec.py): the
debts that paid, and checks that hold for every endpoint."""

from __future__ import annotations

import pytest

from ..features.helpers import B, M, R, T

A = "/api/v1/exec/"


def test_a_missing_required_field_is_named(api):
    r = api.simulate_post(A + "scripts/write", json={"content": "x"})
    assert r.status_code == 400 and r.json == {"error": "path is required", "field": "path"}
    r = api.simulate_post(A + "scripts/move", json={"from": "a.py"})
    assert r.status_code == 400 and r.json["field"] == "to"
    r = api.simulate_get(A + "scripts/read")
    assert r.status_code == 400 and r.json["field"] == "path"


def test_a_wrong_type_is_named_as_the_client_spelled_it(api):
    r = api.simulate_post(A + "scripts/write", json={"path": "a.py", "content": 5})
    assert r.status_code == 400 and r.json["field"] == "content"
    r = api.simulate_post(
        A + "scripts/write", json={"path": "a.py", "content": "return 1\n", "exec_id": 7}
    )
    assert r.status_code == 400 and r.json["field"] == "exec_id"


def test_list_with_a_bogus_mode_is_400(api):
    r = api.simulate_get(A + "scripts/list", params={"mode": "bogus"})
    assert r.status_code == 400 and r.json["field"] == "mode"
    assert api.simulate_get(A + "scripts/list", params={"mode": "thread"}).status_code == 200


def test_list_accepts_directory_as_an_alias_of_dir(api):
    api.simulate_post(A + "scripts/write", json={"path": "sub/x.py", "content": "return 1\n"})
    api.simulate_post(A + "scripts/write", json={"path": "y.py", "content": "return 1\n"})
    by_dir = api.simulate_get(A + "scripts/list", params={"dir": "sub"}).json
    by_alias = api.simulate_get(A + "scripts/list", params={"directory": "sub"}).json
    assert [s["path"] for s in by_alias["scripts"]] == [s["path"] for s in by_dir["scripts"]]
    assert [s["path"] for s in by_dir["scripts"]] == ["sub/x.py"]


def test_delete_custom_of_an_unknown_template_is_404(api):
    r = api.simulate_delete(A + "templates/delete-custom/nope")
    assert r.status_code == 404 and "nope" in r.json["error"]


def test_bulk_update_with_an_invalid_value_is_400_before_any_file_changes(api):
    api.simulate_post(A + "scripts/write", json={"path": "a.py", "content": "return 1\n"})
    before = api.simulate_get(A + "scripts/read", params={"path": "a.py"}).json["content"]
    r = api.simulate_post(A + "magic-comments/bulk-update", json={"comments": {"timeout": "soon"}})
    assert r.status_code == 400, r.json
    after = api.simulate_get(A + "scripts/read", params={"path": "a.py"}).json["content"]
    assert after == before


def test_query_strings_convert_laxly_and_bodies_never_take_a_number_for_a_string(api):
    r = api.simulate_post(A + "scripts/tree", json={"maxDepth": "2"})
    assert r.status_code == 200 and r.json["maxDepth"] == 2
    r = api.simulate_post(A + "scripts/tree", json={"maxDepth": 99})
    assert r.status_code == 400 and r.json["field"] == "maxDepth"
    r = api.simulate_get(A + "scripts/list", params={"metadata": "true"})
    assert r.status_code == 200
    r = api.simulate_get(A + "scripts/list", params={"metadata": "maybe"})
    assert r.status_code == 400 and r.json["field"] == "metadata"


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
