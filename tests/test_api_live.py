"""Every implemented management endpoint over real HTTP (forwarded by a request
worker to the control worker), with an error path each."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
A = "/api/v1/exec/"


def test_every_endpoint_over_http(make_kit):
    kit = make_kit(workers=1).start()

    def call(method, path, body=None, expect=200):
        r = kit.request(method, path, body=body)
        assert r.status == expect, (method, path, r.status, r.body[:300])
        return r.json() if r.body else None

    # exec ids, scripts
    assert any(e["id"] == "default/1" for e in call("GET", A + "list")["execIds"])
    call(
        "POST",
        A + "scripts/write",
        {"path": "h/one.py", "content": "# @timeout 900\nreturn 1\n"},
        201,
    )
    call("POST", A + "scripts/write", {"path": "../x.py", "content": "x"}, 403)
    call("POST", A + "scripts/write", {"path": "h/bad.py", "content": "def f(:\n"}, 400)
    assert call("GET", A + "scripts/read?path=h/one.py")["content"].endswith("return 1\n")
    call("GET", A + "scripts/read?path=h/none.py", expect=404)
    assert call("GET", A + "scripts/list?dir=h")["count"] == 1
    call("GET", A + "scripts/list?recursive=sometimes", expect=400)
    assert (
        call("POST", A + "scripts/tree", {"baseDir": "h"})["tree"]["children"][0]["name"]
        == "one.py"
    )
    call("POST", A + "scripts/tree", {"baseDir": "zz"}, 404)
    call("POST", A + "scripts/move", {"from": "h/one.py", "to": "h/two.py"})
    call("POST", A + "scripts/move", {"from": "h/one.py", "to": "h/two.py"}, 404)
    call("DELETE", A + "scripts/delete?path=h/two.py", expect=400)
    # validation
    assert call("POST", A + "validate/script", {"code": "return 1\n"})["valid"] is True
    assert call("POST", A + "validate/syntax", {"code": "x = (\n"})["valid"] is False
    assert call("POST", A + "validate/typescript", {"code": "return nope\n"})["valid"] is False
    assert call("POST", A + "validate/dependencies", {"code": "import json\n"})["stdlib"] == [
        "json"
    ]
    assert call("POST", A + "validate/magic-comments", {"code": "# @mode fast\n"})["valid"] is False
    assert (
        call("POST", A + "validate/return-type", {"typeDefinition": "list[int]", "value": [1]})[
            "valid"
        ]
        is True
    )
    call("POST", A + "validate/script", {}, 400)
    # magic comments
    assert any(s["name"] == "timeout" for s in call("GET", A + "magic-comments/schema")["schema"])
    assert call("GET", A + "magic-comments/read?path=h/two.py")["magicComments"] == {"timeout": 900}
    call("PUT", A + "magic-comments/update", {"path": "h/two.py", "comments": {"timeout": 5}})
    call(
        "PUT", A + "magic-comments/update", {"path": "h/two.py", "comments": {"timeout": "x"}}, 400
    )
    assert (
        call(
            "POST", A + "magic-comments/bulk-update", {"directory": "h", "comments": {"label": "l"}}
        )["count"]
        == 1
    )
    call("POST", A + "magic-comments/bulk-update", {"directory": "../", "comments": {}}, 403)
    # routes
    assert any(
        r["route"] == "/h/two"
        for r in call("POST", A + "route/discover", {"baseDir": "h"})["routes"]
    )
    assert call("POST", A + "route/resolve", {"path": "/h/two"})["file"] == "h/two.py"
    call("POST", A + "route/resolve", {}, 400)
    out = call("POST", A + "route/test", {"path": "/h/two"})
    assert out["status"] == 200 and out["body"] == 1
    call("POST", A + "route/test", {"path": "/h/two", "method": "BREW"}, 400)
    # templates
    assert call("GET", A + "templates/list")["count"] >= 8
    assert "return" in call("GET", A + "templates/preview?name=hello")["code"]
    call("GET", A + "templates/preview?name=nope", expect=404)
    out = call(
        "POST",
        A + "templates/generate",
        {"name": "hello", "saveFile": True, "outputPath": "h/hi.py"},
        201,
    )
    assert kit.get("/h/hi").status == 200
    call("POST", A + "templates/create-custom", {"name": "c1", "code": "return 1\n"}, 201)
    call("PUT", A + "templates/update-custom/c1", {"code": "return 2\n"})
    call("PUT", A + "templates/update-custom/zz", {"code": "return 2\n"}, 404)
    call("DELETE", A + "templates/delete-custom/c1")
    # shared state
    call("POST", A + "shared-state/set", {"hostname": "h", "path": "a", "value": 1})
    assert call("POST", A + "shared-state/get", {"hostname": "h", "path": "a"})["value"] == 1
    call("POST", A + "shared-state/clear", {"hostname": "h"})
    call("POST", A + "shared-state/get", {"path": "a"}, 400)
    # the kit's own description, and what is not built yet
    assert call("GET", "/openapi.json")["openapi"].startswith("3.")
    assert kit.get("/openapi.yaml").body.startswith(b"openapi:")
    assert call("GET", A + "sdk/list")["count"] == 0
    assert call("GET", A + "system/restart-status")["state"] == "idle"
    assert call("POST", A + "cache/clear", {"hostname": "h"})["success"] is True
    # packages, schedules, logs, monitoring: one call and one error each
    assert call("GET", A + "dependencies/bundled")["count"] > 0
    call("POST", A + "dependencies/install", {"modules": "requests; rm -rf /"}, 400)
    assert "schedules" in call("GET", A + "schedules/list")
    call("POST", A + "schedules/trigger", {"scriptPath": "h/one.py"}, 404)
    assert "logs" in call("GET", A + "logs/list")
    call("POST", A + "logs/read", {"file": "../etc/passwd"}, 403)
    call("DELETE", A + "logs/clear", expect=400)
    assert call("GET", A + "monitor/stats")["workers"]
    call("GET", A + "monitor/scripts?sort=nonsense", expect=400)
    # finally delete for real
    call("DELETE", A + "scripts/delete?path=h&confirm=true")
    assert kit.get("/h/hi").status == 404


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_readme_curl_workflows_run_as_written(make_kit):
    kit = make_kit(workers=1).start()
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Management API") : readme.index("## The script contract")]
    script = "\n".join(re.findall(r"```bash\n(.*?)```", section, re.S))
    script = script.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{kit.port}")
    r = subprocess.run(
        ["bash", "-c", "set -e\n" + script], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert '"validated":true' in out and '"route":"/echo2"' in out
    assert '{"ok":true,"body":{"hello":"world"}}' in out
    assert '"deleted":"echo2.py"' in out
    assert out.count('"valid":true') >= 2 and '"timeout":5000' in out
    # the Flask file written through the normaliser answers its JSON
    assert '"rule":"framework-app"' in out and '{"message":"hello"}' in out
