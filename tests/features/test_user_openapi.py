"""User OpenAPI in-process: scripts described by the engine (``engine/describe.py``,
what a request worker answers) and the document built from the facts
(``features/user_openapi/build.py``), checked with openapi-spec-validator;
sidecar checks and the merge rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from hoodyexec.engine.catalog import Catalog
from hoodyexec.engine.describe import Describer
from hoodyexec.errors import NotFound
from hoodyexec.features.user_openapi import build, check
from hoodyexec.http.router import table_for
from hoodyexec.ipc.protocol import Describe, Described

TYPED = '''# @description Read or rename a person
# @tags people, admin
# @token s3cret
"""People by id."""
import dataclasses
from typing import Literal, TypedDict

import msgspec


class Patch(msgspec.Struct):
    name: str
    age: int | None = None


@dataclasses.dataclass
class Person:
    id: int
    name: str


class Paging(TypedDict):
    limit: int


def GET(id: int, query: Paging) -> Person:
    """Read one person.

    Longer text."""
    return Person(id=id, name="ann")


def POST(id: int, patch: Patch) -> tuple[Person, Literal[201]]:
    return Person(id=id, name=patch.name), 201


def DELETE(id: int) -> None:
    return None
'''

MIXED = {
    "hello.py": "# @description Hi\nreturn {'hi': 1}\n",
    "text.py": "def handler() -> str:\n    return 'x'\n",
    "raw.py": "def handler() -> bytes:\n    return b'x'\n",
    "feed.py": "def handler():\n    yield 'a'\n",
    "files/[...rest].py": "def handler(rest):\n    return {'rest': rest}\n",
    "docs/[[...slug]].py": "def handler(slug=None):\n    return {'slug': slug}\n",
    "broken.py": "def handler(:\n",
    "off.py": "# @enabled false\nreturn 1\n",
    "_lib.py": "X = 1\n",
    "_hoody/x.py": "return 1\n",
}


def instance(tmp_path: Path, files: dict[str, str]) -> Catalog:
    root = tmp_path / "scripts" / "default" / "1"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return Catalog(str(tmp_path / "scripts"), table_for, watch=False)


def described(tmp_path: Path, files: dict[str, str]) -> Described:
    return Describer(instance(tmp_path, files))(Describe("default", "1"))


def doc_of(tmp_path: Path, files: dict[str, str]) -> dict[str, Any]:
    doc = build.document(described(tmp_path, files), "test")
    validate(doc)  # every generated document is valid OpenAPI 3.1
    return doc


def test_typed_methods_give_params_body_and_responses(tmp_path: Path) -> None:
    doc = doc_of(tmp_path, {"people/[id].py": TYPED})
    item = doc["paths"]["/people/{id}"]
    assert item["x-hoody-script"] == "people/[id].py"
    assert sorted(k for k in item if not k.startswith("x-")) == ["delete", "get", "post"]
    get = item["get"]
    assert get["summary"] == "Read or rename a person"
    assert get["description"].startswith("Read one person.")
    assert get["tags"] == ["people", "admin"]
    params = {p["name"]: p for p in get["parameters"]}
    assert params["id"] == {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer"},
    }
    assert params["limit"]["in"] == "query" and params["limit"]["required"] is True
    ok = get["responses"]["200"]["content"]["application/json"]["schema"]
    person = doc["components"]["schemas"][ok["$ref"].rsplit("/", 1)[-1]]
    assert person["properties"] == {"id": {"type": "integer"}, "name": {"type": "string"}}
    assert set(get["responses"]) == {"200", "400", "401", "5XX"}
    assert get["security"] and "securitySchemes" in doc["components"]
    post = item["post"]
    body = post["requestBody"]
    assert body["required"] is True  # Patch has a required field
    ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert doc["components"]["schemas"][ref]["required"] == ["name"]
    assert "201" in post["responses"] and "200" not in post["responses"]
    assert set(item["delete"]["responses"]) >= {"204", "401"}
    assert "content" not in item["delete"]["responses"]["204"]


def test_shapes_routes_and_what_is_left_out(tmp_path: Path) -> None:
    facts = described(tmp_path, MIXED)
    by_file = {s.file: s for s in facts.scripts}
    assert "_lib.py" not in by_file and "_hoody/x.py" not in by_file  # private: never routed
    assert by_file["broken.py"].error and not by_file["broken.py"].operations
    assert by_file["off.py"].enabled is False
    doc = build.document(facts, "test")
    validate(doc)
    paths = doc["paths"]
    assert "/broken" not in paths and "/off" not in paths
    hello = paths["/hello"]
    assert set(hello) - {"x-hoody-script"} == set(build.METHODS)  # body mode: every method
    assert "default" in hello["get"]["responses"]  # no annotation: anything
    assert paths["/text"]["get"]["responses"]["200"]["content"] == {
        "text/plain": {"schema": {"type": "string"}}
    }
    assert "application/octet-stream" in paths["/raw"]["get"]["responses"]["200"]["content"]
    assert "text/event-stream" in paths["/feed"]["get"]["responses"]["200"]["content"]
    rest = paths["/files/{rest}"]["get"]["parameters"][0]
    assert rest["schema"] == {"type": "string", "minLength": 1}  # an empty segment never matches
    assert "/docs" in paths and "/docs/{slug}" in paths
    assert paths["/docs"]["get"]["operationId"] != paths["/docs/{slug}"]["get"]["operationId"]


def test_unknown_instance_is_404(tmp_path: Path) -> None:
    catalog = instance(tmp_path, {"a.py": "return 1\n"})
    with pytest.raises(NotFound):
        Describer(catalog)(Describe("nope", "9"))


def test_same_struct_name_in_two_scripts_stays_two_components(tmp_path: Path) -> None:
    a = "import msgspec\nclass Item(msgspec.Struct):\n    a: int\ndef POST(item: Item) -> Item:\n    return item\n"
    b = "import msgspec\nclass Item(msgspec.Struct):\n    b: str\ndef POST(item: Item) -> Item:\n    return item\n"
    doc = doc_of(tmp_path, {"a.py": a, "x/[id].py": b.replace("item: Item", "id, item: Item")})
    refs = {
        p: doc["paths"][p]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        for p in ("/a", "/x/{id}")
    }
    # qualified by the script's path, made a valid component name (no brackets)
    assert refs == {
        "/a": "#/components/schemas/a.Item",
        "/x/{id}": "#/components/schemas/x._id_.Item",
    }


def test_sidecar_checks() -> None:
    assert (
        check.sidecar_errors({"get": {"summary": "x", "responses": {"200": {"description": "ok"}}}})
        == []
    )
    assert check.sidecar_errors({"fetch": {}})[0]["path"] == "fetch"
    assert check.sidecar_errors([1])[0]["message"].startswith("a sidecar must be")
    bad = check.sidecar_errors({"get": {"responses": {"200": {"content": {}}}}})
    assert bad and bad[0]["path"].startswith("get")  # a response needs a description
    ref = {
        "get": {
            "responses": {
                "200": {
                    "description": "x",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/T"}}},
                }
            }
        }
    }
    assert check.sidecar_errors(ref, {"schemas": {"T": {"type": "object"}}}) == []


def test_merge_patch() -> None:
    base = {"info": {"title": "a", "version": "1"}, "paths": {"/x": {"get": {"summary": "s"}}}}
    out = build.merge_patch(
        base, {"info": {"title": "b"}, "paths": {"/x": {"get": {"summary": None}}}}
    )
    assert out == {"info": {"title": "b", "version": "1"}, "paths": {"/x": {"get": {}}}}
    assert base["info"]["title"] == "a"  # the original is left alone
