"""SDK import against a live kit over real HTTP, from a local upstream API that
this test serves (a threaded http.server): the document, and the operations."""

from __future__ import annotations

import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ..kit import Kit

pytestmark = pytest.mark.slow

E = "/api/v1/exec/"
TOKEN_ENV = "PETS_UPSTREAM_TOKEN"


def document(port: int) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "Pet Store", "version": "1.0.0"},
        "servers": [{"url": f"http://127.0.0.1:{port}/v1"}],
        "paths": {
            "/pets": {
                "get": {
                    "operationId": "listPets",
                    "summary": "List pets",
                    "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer"}}],
                },
                "post": {
                    "operationId": "createPet",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}
                        },
                    },
                },
            },
            "/pets/{petId}": {
                "parameters": [{"$ref": "#/components/parameters/PetId"}],
                "get": {"operationId": "showPetById", "summary": "Info for a pet"},
            },
            "/pets/{petId}/photo.{ext}": {
                "get": {
                    "operationId": "petPhoto",
                    "parameters": [
                        {"name": "petId", "in": "path", "required": True},
                        {"name": "ext", "in": "path", "required": True},
                    ],
                }
            },
        },
        "components": {
            "schemas": {"Pet": {"type": "object", "properties": {"name": {"type": "string"}}}},
            "parameters": {
                "PetId": {
                    "name": "petId",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer"},
                }
            },
        },
    }


class Upstream:
    """The API the SDK is imported from; records what it was sent."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def answer(self, status: int, body: Any, kind: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def record(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                entry = {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": self.rfile.read(length).decode() if length else "",
                }
                upstream.seen.append(entry)
                return entry

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                entry = self.record()
                path = self.path.split("?")[0]
                if path == "/openapi.json":
                    self.answer(200, document(upstream.port))
                elif path == "/openapi.yaml":
                    self.answer(200, b"openapi: 3.0.0\ninfo: {title: Yaml}\npaths: {}\n", "x")
                elif path == "/swagger.json":
                    self.answer(200, {"swagger": "2.0", "info": {"title": "Old"}, "paths": {}})
                elif path == "/big.json":
                    self.answer(200, b" " * (6 * 1024 * 1024))
                elif path == "/to-file":
                    self.send_response(302)
                    self.send_header("Location", "file:///etc/passwd")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif path == "/v1/pets":
                    self.answer(200, {"pets": ["rex", "tom"], "query": self.path.partition("?")[2]})
                elif path.startswith("/v1/pets/"):
                    pet = path.rsplit("/", 1)[1]
                    if pet == "0":
                        self.answer(404, {"message": "no pet 0"})
                    else:
                        auth = entry["headers"].get("authorization")
                        self.answer(200, {"id": int(pet), "auth": auth})
                else:
                    self.answer(404, {"message": "unknown"})

            def do_POST(self) -> None:  # noqa: N802
                entry = self.record()
                self.answer(201, {"created": json.loads(entry["body"] or "null")})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def last(self, path: str) -> dict[str, Any]:
        return [e for e in self.seen if e["path"].startswith(path)][-1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def upstream():
    server = Upstream()
    yield server
    server.close()


@pytest.fixture
def sdk_kit(make_kit) -> Kit:
    return make_kit(env={TOKEN_ENV: "Bearer from-env"}).start()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sdk_import(kit: Kit, **body: Any) -> Any:
    body.setdefault("execId", "1")
    return kit.request("POST", E + "sdk/import", body, timeout=30)


def files_of(kit: Kit, instance: str = "default/1") -> dict[str, str]:
    root = kit.home / "scripts" / instance
    out = {}
    for path in root.rglob("*.py"):
        out[str(path.relative_to(root))] = path.read_text()
    return out


MIDDLEWARE = (
    "async def middleware(request):\n    request.headers['X-Trace'] = 'mw-' + request.operation\n"
)


def test_import_proxy_client_middleware_list_get_force_delete(sdk_kit, upstream):
    kit = sdk_kit
    r = sdk_import(
        kit,
        source_url=upstream.url("/openapi.json"),
        source_auth="Bearer s3cret",
        middleware=MIDDLEWARE,
        magic_comments="# @cors *\n# @tags sdk, pets\n",
    )
    assert r.status == 201, r.body
    got = r.json()
    assert got["success"] is True and got["id"] == "pet_store" and got["replaced"] is False
    assert got["auth"] == {"type": "header", "header": "Authorization"}
    assert got["baseUrl"] == upstream.url("/v1")
    ops = {o["operationId"]: o for o in got["operations"]}
    assert set(ops) == {"listPets", "createPet", "showPetById", "petPhoto"}
    assert ops["showPetById"]["route"] == "/pets/{petId}"
    assert ops["showPetById"]["file"] == "pets/[petId].py"
    assert ops["petPhoto"]["file"] is None and "inside the segment" in ops["petPhoto"]["note"]
    paths = {f["path"]: f for f in got["files"]}
    assert set(paths) == {
        "_sdk/_pet_store_middleware.py",
        "_sdk/pet_store.py",
        "pets.py",
        "pets/[petId].py",
    }
    assert all(f["status"] == "unchanged" and len(f["sha256"]) == 64 for f in paths.values())

    # the secret is nowhere in the generated files; magic comments lead every proxy
    written = files_of(kit)
    assert not any("s3cret" in text for text in written.values())
    for proxy in ("pets.py", "pets/[petId].py"):
        assert written[proxy].startswith("# @cors *\n# @tags sdk, pets\n"), written[proxy]
    r = kit.request(
        "OPTIONS",
        "/pets",
        headers={"Origin": "http://x.test", "Access-Control-Request-Method": "GET"},
    )
    assert r.headers.get("access-control-allow-origin") in ("*", "http://x.test"), r.headers
    # the kit validates what it wrote: the client is a typed module
    assert "async def showPetById(petId: int) -> Any:" in written["_sdk/pet_store.py"]
    assert "async def listPets(*, limit: int | None = None) -> Any:" in written["_sdk/pet_store.py"]

    # the proxies answer with the upstream's body; auth and middleware upstream
    r = kit.get("/pets?limit=2&token=kit-secret")
    assert r.status == 200, r.body
    assert r.json() == {"pets": ["rex", "tom"], "query": "limit=2"}  # only declared params
    seen = upstream.last("/v1/pets?")
    assert seen["headers"]["authorization"] == "Bearer s3cret"
    assert seen["headers"]["x-trace"] == "mw-listPets"
    r = kit.get("/pets/7")
    assert r.status == 200 and r.json() == {"id": 7, "auth": "Bearer s3cret"}
    assert kit.get("/pets/abc").status == 400  # petId is an integer
    r = kit.request("POST", "/pets", {"name": "kit"})
    assert r.status == 201 and r.json() == {"created": {"name": "kit"}}
    assert upstream.last("/v1/pets")["headers"]["x-trace"] == "mw-createPet"
    r = kit.get("/pets/0")
    assert r.status == 404 and r.json() == {"message": "no pet 0"}

    # any script of the instance imports the client
    script = (
        "from _sdk import pet_store\n"
        "pet = await pet_store.showPetById(int(req.query.get('id', '5')))\n"
        "return {'pet': pet}\n"
    )
    r = kit.request("POST", E + "scripts/write", {"path": "api/uses.py", "content": script})
    assert r.status == 201, r.body
    r = kit.get("/api/uses")
    assert r.status == 200 and r.json() == {"pet": {"id": 5, "auth": "Bearer s3cret"}}
    r = kit.get("/api/uses?id=0")  # an upstream error is a 502 naming its status
    assert r.status == 502 and r.json()["upstreamStatus"] == 404, r.body

    # list and get
    r = kit.get(E + "sdk/list?execId=1")
    assert r.status == 200
    listed = r.json()
    assert listed["success"] is True and listed["count"] == 1
    assert listed["sdks"][0]["id"] == "pet_store" and listed["sdks"][0]["operations"] == 4
    r = kit.get(E + "sdk/pet_store?execId=1")
    assert r.status == 200 and r.json()["source"] == upstream.url("/openapi.json")
    assert kit.get(E + "sdk/nope?execId=1").status == 404
    assert kit.get(E + "sdk/pet_store?execId=2").status == 404  # per instance

    # again without force: 409, nothing touched; with force: replaced
    r = sdk_import(kit, source_url=upstream.url("/openapi.json"))
    assert r.status == 409, r.body
    r = sdk_import(
        kit, source_url=upstream.url("/openapi.json"), source_auth="Bearer two", force=True
    )
    assert r.status == 200 and r.json()["replaced"] is True, r.body
    assert "_sdk/_pet_store_middleware.py" in r.json()["removed"]  # no middleware this time
    assert kit.get("/pets/3").json() == {"id": 3, "auth": "Bearer two"}
    assert "x-trace" not in upstream.last("/v1/pets/3")["headers"]

    # delete: removes exactly its files, keeps an edited one and says so
    edited = written["pets.py"].replace("List pets", "List the pets")
    r = kit.request("POST", E + "scripts/write", {"path": "pets.py", "content": edited})
    assert r.status == 200, r.body
    r = kit.get(E + "sdk/pet_store?execId=1")
    statuses = {f["path"]: f["status"] for f in r.json()["files"]}
    assert statuses["pets.py"] == "edited" and statuses["pets/[petId].py"] == "unchanged"
    r = kit.request("DELETE", E + "sdk/pet_store?execId=1")
    assert r.status == 200, r.body
    gone = r.json()
    assert gone["success"] is True
    assert sorted(gone["removed"]) == ["_sdk/pet_store.py", "pets/[petId].py"]
    assert gone["kept"] == [{"path": "pets.py", "reason": "edited since it was generated"}]
    left = files_of(kit)
    assert "pets.py" in left and "api/uses.py" in left
    assert not any(p.startswith(("_sdk/", "pets/")) for p in left)
    assert not (kit.home / "scripts/default/1/_sdk").exists()  # emptied folders go too
    assert kit.get("/pets/7").status == 404
    assert kit.get(E + "sdk/list?execId=1").json()["count"] == 0
    assert kit.request("DELETE", E + "sdk/pet_store?execId=1").status == 404


def test_env_auth_names_conflicts_and_bad_sources(sdk_kit, upstream, tmp_path):
    kit = sdk_kit
    # env: auth, read from the kit's environment at call time; another instance
    r = sdk_import(
        kit,
        execId="2",
        name="pets",
        source_url=upstream.url("/openapi.json"),
        source_auth=f"env:{TOKEN_ENV}",
    )
    assert r.status == 201, r.body
    assert r.json()["auth"] == {"type": "env", "name": TOKEN_ENV, "header": "Authorization"}
    r = kit.get("/pets/9", headers={"Host": "exec-2.localhost"})
    assert r.status == 200 and r.json() == {"id": 9, "auth": "Bearer from-env"}, r.body
    manifest = kit.home / "sdk/default/2/pets.json"
    assert oct(manifest.stat().st_mode & 0o777) == "0o600"
    assert "from-env" not in manifest.read_text()
    assert kit.get("/pets/9").status == 404  # default/1 has no SDK

    # a file it would write exists and is not its own: 409, nothing written
    kit.request(
        "POST", E + "scripts/write", {"execId": "3", "path": "pets.py", "content": "return 1\n"}
    )
    r = sdk_import(kit, execId="3", source_url=upstream.url("/openapi.json"), force=True)
    assert r.status == 409 and r.json()["conflicts"] == ["pets.py"], r.body
    assert not (kit.home / "scripts/default/3/_sdk").exists()

    # a file under the kit's home; a relative server URL needs base_url then
    spec = kit.home / "specs" / "pets.json"
    spec.parent.mkdir()
    doc = document(upstream.port)
    del doc["servers"]
    spec.write_text(json.dumps(doc))
    r = sdk_import(kit, execId="4", source_url="specs/pets.json")
    assert r.status == 400 and r.json()["field"] == "base_url", r.body
    r = sdk_import(kit, execId="4", source_url=f"file://{spec}", base_url=upstream.url("/v1"))
    assert r.status == 201, r.body
    assert kit.get("/pets/4", headers={"Host": "exec-4.localhost"}).json() == {
        "id": 4,
        "auth": None,
    }

    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(doc))
    bad = [
        (upstream.url("/swagger.json"), 400, "not an OpenAPI 3 document (swagger 2.0)"),
        (upstream.url("/openapi.yaml"), 400, "no operation"),
        (upstream.url("/big.json"), 413, "over 5242880 bytes"),
        (upstream.url("/nothing"), 502, "answered 404"),
        (f"http://127.0.0.1:{closed_port()}/openapi.json", 502, "could not be fetched"),
        (upstream.url("/to-file"), 400, "not http(s)"),
        (f"file://{outside}", 403, "under the kit's home"),
        ("specs/none.json", 404, "no such file"),
        ("ftp://example.org/x.json", 400, "http(s) URL"),
        ("specs/a\x00b.json", 400, "control character"),  # found by schemathesis: was a 500
        ("file:///specs/a%00b.json", 400, "control character"),
        (upstream.url("/openapi.json") + "\n", 400, "control character"),
    ]
    for url, status, reason in bad:
        r = sdk_import(kit, execId="5", source_url=url)
        assert r.status == status, (url, r.body)
        assert reason in r.json()["error"], (url, r.body)
    for field, body in (
        ("source_auth", {"source_auth": "env:NOT_SET_ANYWHERE_42"}),
        ("source_auth", {"source_auth": "Bearer a\nInjected: 1"}),
        ("magic_comments", {"magic_comments": "# @timeout soon"}),
        ("magic_comments", {"magic_comments": "import os"}),
        ("middleware", {"middleware": "def other(request):\n    pass\n"}),
        ("middleware", {"middleware": "def middleware(request):\n    return undefined_name\n"}),
        ("name", {"name": "Bad-Name"}),
    ):
        r = sdk_import(kit, execId="5", source_url=upstream.url("/openapi.json"), **body)
        assert r.status == 400 and r.json()["field"] == field, (body, r.body)
    assert not (kit.home / "scripts/default/5").exists() or not files_of(kit, "default/5")
    assert os.path.isdir(kit.home / "sdk/default/2")
