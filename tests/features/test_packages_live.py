"""Packages against a live kit: hermetic installs from a local find-links folder
of tiny hand-made wheels (no registry), through the kit's real installer."""

from __future__ import annotations

import fcntl
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ..kit import Kit
from ..wheels import hermetic_env, make_wheel

pytestmark = pytest.mark.slow

E = "/api/v1/exec/"
SCRIPT = "import os\nimport tinypkg\nreturn {'v': tinypkg.VALUE, 'pid': os.getpid()}\n"


@pytest.fixture
def wheels(tmp_path) -> Path:
    folder = tmp_path / "wheels"
    make_wheel(folder, "tinypkg", "1.0.0", {"tinypkg/__init__.py": "VALUE = 1\n"})
    make_wheel(folder, "tinypkg", "1.1.0", {"tinypkg/__init__.py": "VALUE = 11\n"})
    make_wheel(folder, "otherpkg", "2.0.0", {"otherpkg.py": "NAME = 'other'\n"}, ["tinypkg>=1"])
    make_wheel(folder, "needsold", "1.0.0", {"needsold.py": "X = 1\n"}, ["msgspec<0.10"])
    return folder


@pytest.fixture
def pkit(make_kit, tmp_path, wheels):
    def start(**kw) -> Kit:
        env = hermetic_env(wheels, tmp_path / "uv-cache")
        env.update(kw.pop("env", {}))
        return make_kit(env=env, **kw).start()

    return start


def install(kit: Kit, modules, **kw):
    return kit.request("POST", E + "dependencies/install", {"modules": modules, **kw}, timeout=60)


def live_target(kit: Kit) -> str:
    return os.readlink(kit.home / "packages" / "site")


def test_install_reaches_every_worker_on_the_next_request_without_restart(pkit):
    kit = pkit()
    (kit.home / "scripts/default/1/usetiny.py").write_text(SCRIPT)
    before = kit.get("/usetiny")
    assert before.status == 500 and "tinypkg" in before.json()["error"]
    pids = set(kit.health()["workers"])
    r = install(kit, "tinypkg==1.0.0")
    assert r.status == 200, r.body
    assert r.json()["installed"] == ["tinypkg"] and r.json()["changed"] == ["+ tinypkg 1.0.0"]
    seen = set()
    for _ in range(40):
        answer = kit.get("/usetiny")
        assert answer.status == 200, answer.body
        assert answer.json()["v"] == 1
        seen.add(answer.json()["pid"])
    assert seen == pids  # both workers, the same processes: no restart
    # The kit's own environment is untouched.
    probe = subprocess.run([sys.executable, "-c", "import tinypkg"], capture_output=True)
    assert probe.returncode != 0
    assert not list(Path(sys.prefix).rglob("tinypkg*"))
    # Validation and the write pipeline see it as installed.
    r = kit.request("POST", E + "validate/dependencies", {"code": "import tinypkg\n"})
    assert r.json()["valid"] is True and r.json()["installed"] == ["tinypkg"]
    r = kit.request("POST", E + "scripts/write", {"path": "t2.py", "content": SCRIPT})
    assert r.status == 201 and r.json()["validated"] is True, r.body
    assert kit.get("/t2").json()["v"] == 1
    r = install(kit, "tinypkg")
    assert r.json()["alreadyInstalled"] == ["tinypkg"] and r.json()["changed"] == []
    r = install(kit, "tinypkg==1.0.0", force=True)  # reinstalled, same version
    assert r.status == 200 and r.json()["installed"] == ["tinypkg"] and r.json()["changed"] == []
    assert kit.get("/usetiny").json()["v"] == 1


def test_check_install_pin_lock_compare(pkit):
    kit = pkit()
    r = kit.request("POST", E + "dependencies/check", {"code": "import tinypkg\n"})
    assert r.json()["missing"] == ["tinypkg"]
    r = install(kit, ["tinypkg>=1.0", "otherpkg"])
    assert r.status == 200, r.body
    assert sorted(r.json()["installed"]) == ["otherpkg", "tinypkg"]
    # Recorded as given, or >= the installed version for a bare name.
    assert kit.get(E + "package/read").json()["dependencies"] == ["tinypkg>=1.0", "otherpkg>=2.0.0"]
    r = kit.request("POST", E + "dependencies/check", {"code": "import tinypkg\n"})
    assert r.json()["installed"] == ["tinypkg"]
    assert r.json()["modules"][0]["version"] == "1.1.0"
    r = kit.request("POST", E + "package/pin", {"packages": ["tinypkg"]}, timeout=60)
    assert r.status == 200, r.body
    assert r.json()["pinned"] == ["tinypkg: >=1.0 → ==1.1.0"]
    r = kit.request("POST", E + "package/pin", {}, timeout=60)
    assert r.json()["pinned"] == ["otherpkg: >=2.0.0 → ==2.0.0"]
    assert r.json()["unchanged"] == ["tinypkg==1.1.0"]
    assert r.json()["lock"]["packages"] == 2
    lock = (kit.home / "requirements.lock").read_text()
    assert "otherpkg==2.0.0" in lock and "tinypkg==1.1.0" in lock and "msgspec" not in lock
    body = kit.request("POST", E + "package/compare", {}).json()
    assert body["inSync"] is True and body["lock"]["drift"] == []
    # Something installed without saving shows as extra; a declared-only one as missing.
    r = kit.request(
        "POST", E + "package/install", {"packages": ["tinypkg==1.0.0"], "save": False}, timeout=60
    )
    assert r.json()["changed"] == ["tinypkg 1.1.0 → 1.0.0"] and r.json()["restartRecommended"]
    kit.request("POST", E + "package/update", {"dependencies": {"absentpkg": "*"}})
    body = kit.request("POST", E + "package/compare", {}).json()
    assert body["inSync"] is False and body["missing"] == ["absentpkg"]
    assert body["mismatched"] == [{"name": "tinypkg", "declared": "==1.1.0", "installed": "1.0.0"}]
    assert body["lock"]["drift"] == [{"name": "tinypkg", "locked": "1.1.0", "installed": "1.0.0"}]


def test_a_fresh_home_with_the_project_file_and_lock_installs_the_same_set(pkit):
    first = pkit()
    assert install(first, ["otherpkg", "tinypkg==1.0.0"]).status == 200
    assert first.request("POST", E + "package/pin", {}, timeout=60).status == 200
    second = pkit()
    for name in ("pyproject.toml", "requirements.lock"):
        (second.home / name).write_bytes((first.home / name).read_bytes())
    r = second.request("POST", E + "package/install", {}, timeout=60)
    assert r.status == 200, r.body
    assert sorted(r.json()["installed"]) == ["otherpkg", "tinypkg"]
    body = second.request("POST", E + "package/compare", {}).json()
    assert body["inSync"] is True, body
    assert {m["version"] for m in body["matched"]} == {"2.0.0", "1.0.0"}


def test_kit_pins_are_protected_and_nothing_is_written(pkit):
    kit = pkit()
    (kit.home / "scripts/default/1/usesmsgspec.py").write_text(
        "import msgspec\nreturn {'v': msgspec.__version__}\n"
    )
    target = live_target(kit) if (kit.home / "packages/site").exists() else None
    r = install(kit, "msgspec<0.10")
    assert r.status == 409 and r.json()["package"] == "msgspec"
    r = install(kit, "needsold")  # it needs an older msgspec: refused after resolving
    assert r.status == 409, r.body
    assert r.json()["package"] == "msgspec" and r.json()["requiredBy"] == "needsold"
    assert not (kit.home / "pyproject.toml").exists()
    assert (live_target(kit) if (kit.home / "packages/site").exists() else None) == target
    assert kit.get("/usesmsgspec").json()["v"] == r.json()["kitVersion"]
    sets = kit.home / "packages" / "sets"
    assert not [p for p in sets.iterdir() if p.name.endswith(".staging")] if sets.exists() else True


def test_a_failed_install_keeps_the_old_set_and_reports_the_installers_error(pkit):
    kit = pkit()
    (kit.home / "scripts/default/1/usetiny.py").write_text(SCRIPT)
    assert install(kit, "tinypkg==1.0.0").status == 200
    target = live_target(kit)
    r = install(kit, "nosuchpkg")
    assert r.status == 422, r.body
    (result,) = r.json()["results"]
    assert result["status"] == "failed" and "nosuchpkg" in result["error"]
    assert live_target(kit) == target and kit.get("/usetiny").json()["v"] == 1
    # One good, one bad: the good one lands, the bad one says why.
    r = install(kit, ["otherpkg", "nosuchpkg"])
    assert r.status == 422
    statuses = {x["name"]: x["status"] for x in r.json()["results"]}
    assert statuses == {"otherpkg": "installed", "nosuchpkg": "failed"}
    assert kit.get(E + "package/read").json()["dependencies"] == [
        "tinypkg==1.0.0",
        "otherpkg>=2.0.0",
    ]


def test_one_install_at_a_time(pkit):
    kit = pkit()
    lock = kit.home / "packages" / ".install.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        r = install(kit, "tinypkg")
        assert r.status == 409 and "in progress" in r.json()["error"]
        assert r.headers.get("retry-after")
        assert kit.request("POST", E + "package/pin", {}).status in (404, 409)
    assert install(kit, "tinypkg").status == 200


def test_progress_streams_when_asked(pkit):
    kit = pkit()
    r = kit.request(
        "POST",
        E + "dependencies/install",
        {"modules": ["tinypkg"]},
        headers={"Accept": "text/event-stream"},
        timeout=60,
    )
    assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [block.split("\n") for block in r.body.decode().strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    assert names[0] == "start" and names[-1] == "result" and "progress" in names
    result = json.loads(events[-1][1].removeprefix("data: "))
    assert result["status"] == 200 and result["installed"] == ["tinypkg"]


def test_pip_is_the_fallback_installer(pkit):
    kit = pkit(args=["--packages-installer", "pip"])
    (kit.home / "scripts/default/1/usetiny.py").write_text(SCRIPT)
    r = install(kit, "tinypkg==1.1.0")
    assert r.status == 200, r.body
    assert r.json()["installer"] == "pip"
    assert kit.get("/usetiny").json()["v"] == 11
    assert kit.get(E + "dependencies/bundled").json()["installer"] == "pip"


class _StallingLinks(http.server.BaseHTTPRequestHandler):
    """A find-links page whose wheel download never finishes."""

    wheel = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's API
        if self.path.endswith(".whl"):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            time.sleep(30)
            return
        page = f'<html><body><a href="/{self.wheel}">{self.wheel}</a></body></html>'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: object) -> None:
        pass


def test_a_control_worker_killed_mid_install_leaves_the_old_set(pkit, tmp_path, wheels):
    make_wheel(tmp_path / "slow", "slowpkg", "1.0.0", {"slowpkg.py": "X = 1\n"})
    _StallingLinks.wheel = "slowpkg-1.0.0-py3-none-any.whl"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StallingLinks)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    links = f"{wheels} http://127.0.0.1:{server.server_address[1]}/"
    kit = pkit(env={"PIP_FIND_LINKS": links, "UV_OFFLINE": "0", "UV_HTTP_TIMEOUT": "60"})
    try:
        (kit.home / "scripts/default/1/usetiny.py").write_text(SCRIPT)
        assert install(kit, "tinypkg==1.0.0").status == 200
        target = live_target(kit)
        control = kit.health()["control"]
        threading.Thread(target=lambda: install(kit, "slowpkg"), daemon=True).start()
        sets = kit.home / "packages" / "sets"
        deadline = time.monotonic() + 20
        while not any(p.name.endswith(".staging") for p in sets.iterdir()):
            assert time.monotonic() < deadline, "the install never started"
            time.sleep(0.05)
        time.sleep(0.5)
        os.kill(control, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (kit.health() or {}).get("control") in (None, control):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert live_target(kit) == target
        assert kit.get("/usetiny").json()["v"] == 1
        r = install(kit, "otherpkg")  # the next install cleans up and works
        assert r.status == 200, r.body
        assert not [p for p in sets.iterdir() if p.name.endswith(".staging")]
    finally:
        server.shutdown()


@pytest.mark.network
def test_a_real_package_from_the_registry(make_kit, tmp_path):
    probe = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-d",
            str(tmp_path / "dl"),
            "humanize",
        ],
        capture_output=True,
        timeout=120,
    )
    if probe.returncode != 0:
        pytest.skip("the package registry is not reachable")
    kit = make_kit().start()
    (kit.home / "scripts/default/1/human.py").write_text(
        "import humanize\nreturn {'size': humanize.naturalsize(1000000)}\n"
    )
    r = install(kit, "humanize")
    assert r.status == 200, r.body
    assert kit.get("/human").json() == {"size": "1.0 MB"}
    r = kit.request("POST", E + "package/pin", {"packages": ["humanize"]}, timeout=120)
    assert r.json()["pinned"][0].startswith("humanize: >=")
