"""Normalised scripts through a live kit: written with ``validate: true`` they
answer as their author meant; ``validate: false`` stores them verbatim."""

from __future__ import annotations

from pathlib import Path

from ..kit import Kit

E = "/api/v1/exec/"
CORPUS = Path(__file__).parent / "corpus"


def _input(name: str) -> str:
    return (CORPUS / name / "input.txt").read_text()


def _write(kit: Kit, path: str, content: str, validate: bool = True) -> dict:
    r = kit.request(
        "POST", E + "scripts/write", {"path": path, "content": content, "validate": validate}
    )
    assert r.status in (200, 201), r.body
    return r.json()


def test_normalised_scripts_answer_as_meant(kit: Kit) -> None:
    # a Flask app: / answers the same JSON at the file's route
    written = _write(kit, "hello.py", _input("flask_basic"))
    assert written["validated"] is True
    rules = {c["rule"] for c in written["normalized"]}
    assert rules == {"framework-app", "framework-import"}
    stored = kit.get(E + "scripts/read?path=hello.py").json()["content"]
    assert stored == (CORPUS / "flask_basic" / "expected.txt").read_text()
    r = kit.get("/hello")
    assert r.status == 200 and r.json() == {"message": "hello"}

    # GET and POST on one Flask function, query and JSON body, the 201 kept
    _write(kit, "greet.py", _input("flask_query_post"))
    assert kit.get("/greet?name=ann").json() == {"greeting": "hi ann"}
    r = kit.request("POST", "/greet", {"a": 1})
    assert r.status == 201 and r.json() == {"received": {"a": 1}}

    # a FastAPI POST echo
    _write(kit, "echo.py", _input("fastapi_echo"))
    r = kit.request("POST", "/echo", {"x": [1, 2]})
    assert r.status == 200 and r.json() == {"echo": {"x": [1, 2]}}
    assert kit.get("/echo").status == 405

    # FastAPI query parameters with conversions and defaults
    _write(kit, "search.py", _input("fastapi_query_params"))
    assert kit.get("/search?q=pen&limit=3&exact=true").json() == {
        "q": "pen",
        "limit": 3,
        "exact": True,
    }
    assert kit.get("/search?q=pen").json() == {"q": "pen", "limit": 10, "exact": None}

    # a print(json.dumps(...)) script answers its value instead of 204
    _write(kit, "total.py", _input("print_json_body"))
    r = kit.get("/total")
    assert r.status == 200 and r.json() == {"total": 6}

    # a Falcon-style handler with wrong magic comments
    _write(kit, "falcon.py", _input("handler_falcon_style"))
    r = kit.request("POST", "/falcon", {"k": "v"})
    assert r.status == 201 and r.json() == {"got": {"k": "v"}}

    # validate: false ships the text verbatim (and it answers 204, as before)
    verbatim = _write(kit, "raw.py", _input("print_json_body"), validate=False)
    assert "normalized" not in verbatim
    assert kit.get(E + "scripts/read?path=raw.py").json()["content"] == _input("print_json_body")
    assert kit.get("/raw").status == 204


def test_refused_forms_are_400_with_the_line(kit: Kit) -> None:
    r = kit.request(
        "POST", E + "scripts/write", {"path": "home.py", "content": _input("flask_multi_routes")}
    )
    assert r.status == 400
    errors = r.json()["validation"]["errors"]
    assert any("move users() to its own script users.py" in e and "(line 11)" in e for e in errors)
    assert kit.get(E + "scripts/read?path=home.py").status == 404
    r = kit.request("POST", E + "validate/script", {"code": _input("flask_basic")})
    body = r.json()
    assert r.status == 200 and body["valid"] is True
    assert body["normalizedCode"].startswith("def GET():")
    assert {c["rule"] for c in body["normalized"]} == {"framework-app", "framework-import"}
