"""User OpenAPI against a live kit over real HTTP (marked slow): a typed script's
spec, validated and fuzzed with schemathesis (with the seeded examples), the
list, yaml, per-script schema, staleness, sidecars, validate, merge, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate

from ..kit import Kit

pytestmark = pytest.mark.slow

E = "/api/v1/exec/user-openapi/"
TOKEN = "s3cret"
PEOPLE = '''# @description Read or rename a person
# @tags people
import msgspec


class Patch(msgspec.Struct):
    name: str
    age: int | None = None


class Person(msgspec.Struct):
    id: int
    name: str
    age: int | None = None


def GET(id: int) -> Person:
    """Read one person."""
    return Person(id=id, name="ann")


def POST(id: int, patch: Patch) -> Person:
    return Person(id=id, name=patch.name, age=patch.age)
'''
VAULT = f"""# @token {TOKEN}
import msgspec


class Query(msgspec.Struct):
    n: int = 1


def handler(query: Query) -> dict[str, int]:
    return {{"n": query.n}}
"""
SIDECAR = {"get": {"summary": "Fetch a person", "x-owner": "team-a", "deprecated": True}}


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    k = Kit(tmp_path_factory.mktemp("uo") / "home").start()
    try:
        write(k, "people/[id].py", PEOPLE)
        write(k, "vault.py", VAULT)
        yield k
    finally:
        k.stop()


def write(kit: Kit, path: str, content: str) -> None:
    r = kit.request("POST", "/api/v1/exec/scripts/write", {"path": path, "content": content})
    assert r.status in (200, 201), r.body


def spec(kit: Kit, query: str = "") -> dict[str, Any]:
    r = kit.get(E + "spec" + query)
    assert r.status == 200, r.body
    return r.json()


def scripts_dir(kit: Kit) -> Path:
    return kit.home / "scripts" / "default" / "1"


def test_typed_script_spec_is_valid_and_tells_its_types(kit: Kit) -> None:
    doc = spec(kit)
    validate(doc)
    item = doc["paths"]["/people/{id}"]
    assert set(item) == {"x-hoody-script", "get", "post"}
    get, post = item["get"], item["post"]
    assert get["summary"] == "Read or rename a person" and get["tags"] == ["people"]
    assert get["description"] == "Read one person."
    assert get["parameters"] == [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
    ]
    schemas = doc["components"]["schemas"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert schemas[ref.rsplit("/", 1)[-1]]["required"] == ["name"]
    out = get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert set(schemas[out.rsplit("/", 1)[-1]]["properties"]) == {"id", "name", "age"}
    # The spec tells the truth: the script answers what it says.
    r = kit.get("/people/7")
    assert r.status == 200 and r.json() == {"id": 7, "name": "ann", "age": None}
    assert kit.request("POST", "/people/7", {"name": 3}).status == 400  # documented 400
    vault = doc["paths"]["/vault"]["get"]
    assert "401" in vault["responses"] and vault["security"]
    assert [p["name"] for p in vault["parameters"]] == ["n"]
    assert kit.get("/vault").status == 401


def test_generate_stores_under_private_folder(kit: Kit) -> None:
    r = kit.request("POST", E + "generate", {})
    assert r.status == 200, r.body
    report = r.json()
    assert report["path"] == "_hoody/openapi.json" and report["valid"] is True
    assert report["operations"] >= 2 + 8 * 5  # people 2, vault and 4 examples 8 each, items 2
    stored = json.loads((scripts_dir(kit) / "_hoody" / "openapi.json").read_text())
    assert "/people/{id}" in stored["paths"]
    assert kit.get("/_hoody/openapi").status == 404  # never routed
    assert not any(p.startswith("/_hoody") for p in stored["paths"])


def test_list_shape_and_directory(kit: Kit) -> None:
    r = kit.get(E + "list")
    assert r.status == 200
    scripts = {s["path"]: s for s in r.json()["data"]["scripts"]}
    people = scripts["people/[id].py"]
    assert people["routePath"] == "/people/[id]"
    assert people["methods"] == ["GET", "POST"]
    assert people["hasSchema"] is True
    assert scripts["hello.py"]["hasSchema"] is False
    assert "GET" in scripts["hello.py"]["methods"]
    only = kit.get(E + "list?dir=people").json()["data"]["scripts"]
    assert [s["path"] for s in only] == ["people/[id].py"]
    assert kit.get(E + "list?dir=../x").status == 403


def test_yaml_format_and_dir_filter(kit: Kit) -> None:
    r = kit.get(E + "spec?format=yaml")
    assert r.status == 200 and r.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(r.body) == spec(kit)
    assert list(spec(kit, "?dir=people")["paths"]) == ["/people/{id}"]
    assert kit.get(E + "spec?format=xml").status == 400


def test_schema_of_one_script_and_errors(kit: Kit) -> None:
    r = kit.get(E + "schema?file=people/[id].py")
    assert r.status == 200, r.body
    body = r.json()
    assert list(body["paths"]) == ["/people/{id}"] and body["sidecar"] is None
    assert kit.get(E + "schema?path=people/[id].py").json()["paths"] == body["paths"]
    missing = kit.get(E + "schema?file=nope.py")
    assert missing.status == 404 and "nope.py" in missing.json()["error"]
    assert kit.get(E + "schema").status == 400
    assert kit.get(E + "schema?file=../../x.py").status == 403


def test_stale_spec_regenerates_after_an_edit(kit: Kit) -> None:
    spec(kit)  # fresh and stored
    path = scripts_dir(kit) / "later.py"
    path.write_text("def handler() -> str:\n    return 'x'\n")  # written behind the API's back
    try:
        assert "/later" in spec(kit)["paths"]
        time.sleep(0.01)
        path.write_text("def handler() -> int:\n    return 1\n")
        later = spec(kit)["paths"]["/later"]["get"]["responses"]["200"]["content"]
        assert later == {"application/json": {"schema": {"type": "integer"}}}
    finally:
        path.unlink()
    assert "/later" not in spec(kit)["paths"]


def test_sidecar_overrides_and_validate(kit: Kit) -> None:
    sidecar = scripts_dir(kit) / "people" / "[id].openapi.json"
    sidecar.write_text(json.dumps(SIDECAR))
    try:
        get = spec(kit)["paths"]["/people/{id}"]["get"]
        assert get["summary"] == "Fetch a person" and get["deprecated"] is True
        assert get["x-owner"] == "team-a" and get["parameters"][0]["name"] == "id"  # merged
        v = kit.request("POST", E + "validate", {"path": "people/[id].openapi.json"})
        assert v.status == 200 and v.json()["valid"] is True and v.json()["errors"] == []
        v = kit.request("POST", E + "validate", {"path": "people/[id].py"})
        assert v.json()["valid"] is True and v.json()["sidecar"] == "people/[id].openapi.json"
        # An invalid sidecar: reported, and left out of the document.
        sidecar.write_text(json.dumps({"get": {"responses": {"200": {"content": {}}}}}))
        v = kit.request("POST", E + "validate", {"path": "people/[id].openapi.json"}).json()
        assert v["valid"] is False and v["errors"][0]["path"].startswith("get")
        report = kit.request("POST", E + "generate", {}).json()
        bad = [s for s in report["sidecars"] if s["file"] == "people/[id].openapi.json"]
        assert bad and bad[0]["applied"] is False and report["valid"] is True
        assert "deprecated" not in spec(kit)["paths"]["/people/{id}"]["get"]
        sidecar.write_text("{not json")
        v = kit.request("POST", E + "validate", {"path": "people/[id].openapi.json"}).json()
        assert v["valid"] is False and "not valid JSON" in v["errors"][0]["message"]
    finally:
        sidecar.unlink()
    inline = kit.request("POST", E + "validate", {"schema": SIDECAR})
    assert inline.status == 200 and inline.json() == {
        "success": True,
        "valid": True,
        "errors": [],
        "subdomain": "default",
        "execId": "1",
    }
    wrong = kit.request("POST", E + "validate", {"schema": {"fetch": {}}}).json()
    assert wrong["valid"] is False and wrong["errors"][0]["path"] == "fetch"
    assert kit.request("POST", E + "validate", {}).status == 400
    assert kit.request("POST", E + "validate", {"path": "nope.openapi.json"}).status == 404


def test_merge_layer_kept_across_regenerate_and_dropped(kit: Kit) -> None:
    layer = {"info": {"title": "People API", "version": "2.0.0"}, "servers": [{"url": "/"}]}
    r = kit.request("POST", E + "merge", {"spec": layer})
    assert r.status == 200, r.body
    assert r.json()["merge"]["applied"] is True
    assert spec(kit)["info"] == {"title": "People API", "version": "2.0.0"}
    assert kit.request("POST", E + "generate", {}).status == 200
    doc = spec(kit)
    assert doc["info"]["title"] == "People API" and doc["servers"] == [{"url": "/"}]
    validate(doc)
    # A layer that breaks the document is refused and nothing changes.
    bad = kit.request("POST", E + "merge", {"spec": {"paths": {"/x": {"get": {"responses": 5}}}}})
    assert bad.status == 400 and bad.json()["errors"]
    assert spec(kit)["info"]["title"] == "People API"
    assert kit.request("POST", E + "merge", {"spec": None}).status == 200
    assert spec(kit)["info"]["title"] == "hoodyexec scripts default/1"
    assert not (scripts_dir(kit) / "_hoody" / "openapi.merge.json").exists()
    assert kit.request("POST", E + "merge", {}).status == 400  # spec is required
    assert kit.request("POST", E + "merge", {"spec": [1]}).status == 400
    assert (
        kit.request("POST", E + "merge", b"{bad", {"Content-Type": "application/json"}).status
        == 400
    )


def test_unknown_instance_is_404(kit: Kit) -> None:
    r = kit.get(E + "spec?execId=99")
    assert r.status == 404 and "No instance" in r.json()["error"]


def test_schemathesis_finds_no_5xx_and_no_lie(kit: Kit, tmp_path: Path) -> None:
    """The seeded examples, a typed script and a token script, fuzzed.

    ``unsupported_method`` is left out: body mode and a handler answer every
    method by contract, and OpenAPI 3.1 can only name eight of them (a
    ``QUERY`` request is answered too)."""
    path = tmp_path / "spec.json"
    path.write_bytes(kit.get(E + "spec").body)
    st = os.path.join(os.path.dirname(sys.executable), "st")
    cmd = [
        st, "run", str(path), "--url", f"http://127.0.0.1:{kit.port}",
        "--phases", "fuzzing", "--max-examples", "10", "--seed", "1", "--checks", "all",
        "--exclude-checks", "unsupported_method", "-H", f"Authorization: Bearer {TOKEN}",
        "--request-timeout", "10", "--no-color",
    ]  # fmt: skip
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=110, env=env)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout
