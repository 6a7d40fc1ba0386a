"""SDK generation in-process: what a document can and cannot put into code,
names, and the checks on an import's fields (the live flow is test_sdk_live.py)."""

from __future__ import annotations

import ast
import json

import pytest

from hoodyexec.errors import BadRequest
from hoodyexec.features.sdk import document, service
from hoodyexec.features.sdk.generate import generate
from hoodyexec.features.validate.service import validate_script

EVIL = "x'); import os; os.system('touch /tmp/pwned'); ('\n@token y\n\"\"\""


def hostile() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": EVIL, "version": "1\n# @cors *"},
        "servers": [{"url": "https://api.example.org/{v}", "variables": {"v": {"default": "v2"}}}],
        "paths": {
            "/items/{body}": {
                "parameters": [{"name": "body", "in": "path", "required": True}],
                "get": {
                    "operationId": EVIL,
                    "summary": EVIL,
                    "parameters": [
                        {"name": "class", "in": "query", "schema": {"type": ["integer", "null"]}},
                        {"name": "X-Req-Id", "in": "header", "schema": {"type": "string"}},
                        {"name": "client", "in": "query", "required": True},
                    ],
                },
                "delete": {"summary": "no operationId"},
            },
            "/a/{x}b": {
                "get": {
                    "operationId": "partial",
                    "parameters": [{"name": "x", "in": "path", "required": True}],
                }
            },
            "/_private": {"get": {"operationId": "priv"}},
            "/dup": {"get": {"operationId": "priv"}},
            "/head": {"head": {"operationId": "headOnly"}},
            "/ext": {"get": {"operationId": "ext", "parameters": [{"$ref": "other.json#/x"}]}},
            "/miss/{id}": {"get": {"operationId": "miss"}},
        },
    }


def test_document_text_never_becomes_code():
    doc = document.read(document.parse(json.dumps(hostile()).encode()), "https://x.test/o", None)
    assert doc.base_url == "https://api.example.org/v2"
    sdk_id = service.pick_id(None, doc.title)
    out = generate(sdk_id, doc, middleware=None, magic_comments="# @cors *\n")
    by_path = {f.path: f.content for f in out.files}
    assert set(by_path) == {f"_sdk/{sdk_id}.py", "items/[body_].py"}
    for rel, text in by_path.items():
        tree = ast.parse(text)
        calls = {
            n.func.attr
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
        }
        assert "system" not in calls, rel
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert "os" not in names, rel
        # every comment line is one the generator meant (no @token smuggled in)
        comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
        assert not any("@token" in line for line in comments), rel
        result = validate_script(text, path=rel)
        assert result["valid"], (rel, result["errors"])
    proxy = by_path["items/[body_].py"]
    assert proxy.startswith("# @cors *\n# @description")
    assert "async def GET(req, res, body_: str):" in proxy
    assert "async def DELETE(req, res, body_: str):" in proxy
    client = by_path[f"_sdk/{sdk_id}.py"]
    # reserved and keyword names renamed, the document's names kept for the wire
    assert "client_: Any, class_: int | None = None, X_Req_Id: str | None = None" in client
    assert "query={'class': class_, 'client': client_}" in client
    ops = {o["operationId"]: o for o in out.operations}
    assert ops["partial"]["file"] is None and "inside the segment" in ops["partial"]["note"]
    assert ops["priv"]["file"] is None and "file name" in ops["priv"]["note"]
    assert ops["headOnly"]["note"] == "no proxy route: scripts do not serve HEAD"
    assert "delete_items_body" in ops
    skipped = {(s.path, s.reason.split(" (")[0]) for s in out.skipped}
    assert ("/dup", "operationId 'priv' is used twice") in skipped
    assert any(p == "/ext" and "outside the document" in r for p, r in skipped)
    assert any(p == "/miss/{id}" and "disagree" in r for p, r in skipped)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b'{"swagger": "2.0", "paths": {}}', "(swagger 2.0)"),
        (b'{"openapi": "2.9", "paths": {}}', "(openapi '2.9')"),
        (b"[1, 2]", "not an object"),
        (b'{"openapi": "3.0.0"}', "no 'paths'"),
        (b"{{{ not: [yaml", "neither JSON nor YAML"),
        (b"title: x\n", "(no 'openapi' field)"),
    ],
)
def test_not_openapi_3(raw, message):
    with pytest.raises(BadRequest) as err:
        document.parse(raw)
    assert message in err.value.message


def test_yaml_and_relative_servers():
    raw = b"openapi: 3.0.1\ninfo: {title: T}\nservers: [{url: /v1}]\npaths: {}\n"
    doc = document.read(document.parse(raw), "http://h.test:81/spec/openapi.yaml", None)
    assert doc.base_url == "http://h.test:81/v1"
    with pytest.raises(BadRequest) as err:
        document.read(document.parse(raw), "file:///home/x/openapi.yaml", None)
    assert err.value.extra["field"] == "base_url"
    assert document.read(document.parse(raw), "specs/o.yaml", "http://b.test").base_url == (
        "http://b.test"
    )


@pytest.mark.parametrize(
    "title, expected",
    [
        ("Pet Store", "pet_store"),
        ("  GitHub v3 REST API!! ", "github_v3_rest_api"),
        ("123 Numbers", "api_123_numbers"),
        ("", "api"),
        ("Req", "req_api"),
        ("é" * 50, "api"),
    ],
)
def test_sdk_ids_from_titles(title, expected):
    assert service.pick_id(None, title) == expected


def test_field_checks():
    assert service.parse_auth("Bearer x") == {
        "type": "header",
        "value": "Bearer x",
        "header": "Authorization",
    }
    for bad in ("env:1X", "env:", "Bearer x\r\nX: 1", " padded"):
        with pytest.raises(BadRequest):
            service.parse_auth(bad)
    assert service.check_magic_comments("# @cors *\n\n# plain note\n") == (
        "# @cors *\n# plain note\n"
    )
    with pytest.raises(BadRequest) as err:
        service.check_magic_comments("# @cors *\n# @cors x\n")
    assert "given twice" in err.value.message
    assert (
        service.shown_url("https://u:pw@h.test:8443/o.json") == "https://u:***@h.test:8443/o.json"
    )
