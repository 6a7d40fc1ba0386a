"""Packages, in-process: specs, the project file, pip → uv configuration.

Installs against a live kit are in ``test_packages_live.py``.
"""

from __future__ import annotations

import os
import sys

import pytest

from hoodyexec.errors import BadRequest
from hoodyexec.features.packages import installer, specs

E = "/api/v1/exec/"


# -- specs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "text"),
    [
        ("humanize", "humanize"),
        ("humanize>=4", "humanize>=4"),
        ("lodash@4.17.21", "lodash==4.17.21"),  # npm's exact spelling
        ("rich@latest", "rich"),
        (
            "requests[socks]>=2; python_version >= '3.8'",
            'requests[socks]>=2; python_version >= "3.8"',
        ),
    ],
)
def test_specs_parse_pep508_and_npm_spellings(given, text):
    assert specs.parse(given).text == text


@pytest.mark.parametrize(
    "bad",
    [
        "requests; rm -rf /",
        "--index-url=https://example.invalid/simple",
        "-e .",
        "pkg @ https://example.invalid/pkg.whl",
        "",
        "   ",
        "x" * 600,
        "not a spec!",
    ],
)
def test_specs_refuse_what_is_not_a_requirement(bad):
    with pytest.raises(BadRequest):
        specs.parse(bad)


def test_url_specs_only_when_allowed():
    spec = specs.parse("pkg @ https://example.invalid/pkg.whl", allow_urls=True)
    assert spec.requirement.url == "https://example.invalid/pkg.whl"


@pytest.mark.parametrize(
    ("specifier", "text"),
    [
        ("*", "humanize"),
        ("", "humanize"),
        ("4.9.0", "humanize==4.9.0"),
        (">=4", "humanize>=4"),
        ("^4.1.2", "humanize<5,>=4.1.2"),
        ("^0.2.3", "humanize<0.3,>=0.2.3"),
        ("~1.2.3", "humanize<1.3,>=1.2.3"),
    ],
)
def test_specs_from_an_object_of_specifiers(specifier, text):
    (spec,) = specs.from_mapping({"humanize": specifier})
    assert spec.text == text


def test_specs_many_refuses_the_same_package_twice_differently():
    with pytest.raises(BadRequest, match="twice"):
        specs.parse_many(["a==1", "A==2"])
    assert [s.text for s in specs.parse_many(["a==1", "a==1"])] == ["a==1"]


def test_kit_distributions_and_runtime_closure_come_from_installed_metadata():
    kit = specs.kit_distributions("/nonexistent")
    for name in ("msgspec", "falcon", "gunicorn", "hoodyexec"):
        assert name in kit
    closure = {d.key for d in specs.runtime_closure(kit)}
    assert {"hoodyexec", "falcon", "msgspec", "gunicorn", "packaging", "tomlkit", "uv"} <= closure
    assert "pytest" not in closure  # a test extra, not something the kit runs on


def test_conflicts_name_the_kit_package_and_both_versions():
    kit = specs.kit_distributions("/nonexistent")
    dist = specs.Dist("needsold", "1.0", ("msgspec<0.10", "falcon; python_version < '3'"))
    assert specs.conflicts(dist, kit) == [("msgspec", "<0.10", kit["msgspec"].version)]


# -- pip's configuration, handed to uv ----------------------------------------------


def test_pip_options_reads_files_and_env_env_winning(tmp_path):
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\nfind-links = /from/global\nindex-url = https://idx.invalid/simple\n"
        "[install]\nfind-links = /from/install\n"
    )
    env = {"PIP_CONFIG_FILE": str(conf), "PATH": os.environ["PATH"]}
    import subprocess

    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from hoodyexec.features.packages.installer import pip_options;"
            "import json; print(json.dumps(pip_options()))",
        ],
        env={**env, "PIP_CERT": "/some/ca.pem"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    import json

    found = json.loads(out)
    assert found["find-links"] == "/from/install"
    assert found["index-url"] == "https://idx.invalid/simple"
    assert found["cert"] == "/some/ca.pem"


def test_uv_environment_translates_pip_options_unless_uv_has_its_own():
    pip = {
        "index-url": "https://a.invalid/simple",
        "extra-index-url": "https://b.invalid/simple\nhttps://c.invalid/simple",
        "find-links": "/w1 /w2",
        "no-index": "true",
        "cert": "/ca.pem",
        "trusted-host": "a.invalid",
    }
    assert installer.uv_environment(pip, {})["UV_FIND_LINKS"] == "/w1,/w2"  # uv splits on commas
    env = installer.uv_environment(pip, {"UV_FIND_LINKS": "/mine"})
    assert env["UV_INDEX_URL"] == "https://a.invalid/simple"
    assert env["UV_EXTRA_INDEX_URL"] == "https://b.invalid/simple https://c.invalid/simple"
    assert env["UV_FIND_LINKS"] == "/mine"  # the user's uv setting wins
    assert env["UV_NO_INDEX"] == "1"
    assert env["SSL_CERT_FILE"] == "/ca.pem"
    assert env["UV_INSECURE_HOST"] == "a.invalid"
    assert env["UV_INDEX_STRATEGY"] == "unsafe-best-match"  # pip's choice across indexes
    assert "UV_NO_INDEX" not in installer.uv_environment({"no-index": "false"}, {})


def test_installer_error_is_the_installers_own_line():
    out = installer.Outcome(
        False,
        [
            "Using CPython 3.11",
            "  × No solution found when resolving dependencies:",
            "error: No solution found when resolving dependencies",
            "  cause: nosuchpkg was not found in the package registry",
        ],
    )
    assert out.error.startswith("error: No solution found")
    assert "nosuchpkg was not found" in out.error


def test_install_arguments_are_a_list_with_no_shell_and_kit_packages_excluded(tmp_path):
    kit = specs.kit_distributions("/nonexistent")
    inst = installer.Installer("uv")
    args = inst.install_args(str(tmp_path / "t"), ["tinypkg==1"], kit=kit, files=str(tmp_path))
    assert args[1:3] == ["pip", "install"] and "--target" in args and args[-1] == "tinypkg==1"
    excludes = (tmp_path / "kit-excludes.txt").read_text().split()
    assert "msgspec" in excludes and "falcon" in excludes
    pip = installer.Installer("pip")
    args = pip.install_args(str(tmp_path / "t"), ["tinypkg==1"], kit=kit, files=str(tmp_path))
    assert args[:4] == [sys.executable, "-m", "pip", "install"]
    constraints = (tmp_path / "kit-constraints.txt").read_text()
    assert f"msgspec=={kit['msgspec'].version}" in constraints


# -- the project file ------------------------------------------------------------------


def test_read_before_init_is_404_then_init_creates_the_defaults(api):
    r = api.simulate_get(E + "package/read")
    assert r.status_code == 404 and "package/init" in r.json["error"]
    r = api.simulate_post(E + "package/init", json={})
    assert r.status_code == 200, r.text
    assert r.json["name"] == "hoody-exec-project" and r.json["version"] == "1.0.0"
    assert r.json["description"] == "Hoody Exec project" and r.json["dependencies"] == []
    assert os.path.exists(os.path.join(api.home.root, "pyproject.toml"))
    r = api.simulate_post(E + "package/init", json={"name": "other"})
    assert r.status_code == 409 and "force" in r.json["error"]
    r = api.simulate_post(E + "package/init", json={"name": "other", "force": True})
    assert r.status_code == 200 and r.json["name"] == "other"


def test_update_edits_keep_the_rest_of_the_file(api):
    path = os.path.join(api.home.root, "pyproject.toml")
    with open(path, "w") as fh:
        fh.write(
            '# my notes stay\n[project]\nname = "mine"  # inline comment\nversion = "2.0"\n'
            'dependencies = [\n    "attrs>=23",  # keep me\n    "rich",\n]\n\n'
            "[tool.other]\nx = 1\n"
        )
    r = api.simulate_post(
        E + "package/update",
        json={
            "dependencies": '{"rich": "^13.1", "humanize": "*", "click": "8.1.7"}',
            "scripts": {"test": "pytest"},
            "metadata": {"description": "Mine", "team": "core"},
        },
    )
    assert r.status_code == 200, r.text
    assert r.json["dependencies"] == ["attrs>=23", "rich<14,>=13.1", "humanize", "click==8.1.7"]
    raw = open(path).read()
    for kept in ("# my notes stay", "# inline comment", "# keep me", "[tool.other]"):
        assert kept in raw
    assert r.json["scripts"] == {"test": "pytest"} and r.json["metadata"] == {"team": "core"}
    assert r.json["description"] == "Mine"
    r = api.simulate_post(E + "package/update", json={"remove": ["RICH", "click"]})
    assert r.json["dependencies"] == ["attrs>=23", "humanize"]
    assert sorted(r.json["changes"]["removed"]) == ["click==8.1.7", "rich<14,>=13.1"]
    r = api.simulate_post(E + "package/update", json={"dependencies": ["pytest>=8"], "dev": True})
    assert r.json["devDependencies"] == ["pytest>=8"]
    assert "[dependency-groups]" in open(path).read()


@pytest.mark.parametrize(
    "body",
    [
        {"dependencies": '{"requests": "; rm -rf /"}'},
        {"dependencies": "not json"},
        {"dependencies": {"ok": 3}},
        {"scripts": "[1, 2]"},
        {"dependencies": ["--index-url=https://example.invalid"]},
        {"scripts": {"test": ["pytest"]}},
        {"metadata": {"team": [None]}},
    ],
)
def test_update_refuses_bad_input_and_writes_nothing(api, body):
    api.simulate_post(E + "package/init", json={})
    path = os.path.join(api.home.root, "pyproject.toml")
    before = open(path).read()
    r = api.simulate_post(E + "package/update", json=body)
    assert r.status_code == 400, r.text
    assert open(path).read() == before


def test_a_broken_project_file_is_422_not_a_crash(api):
    with open(os.path.join(api.home.root, "pyproject.toml"), "w") as fh:
        fh.write("[project\nname = ")
    r = api.simulate_get(E + "package/read")
    assert r.status_code == 422 and "not valid TOML" in r.json["error"]
    r = api.simulate_post(E + "package/update", json={"remove": "x"})
    assert r.status_code == 422


def test_check_classifies_code_and_modules(api):
    r = api.simulate_post(
        E + "dependencies/check",
        json={
            "code": "import json\nimport yaml\nimport PIL\n",
            "modules": "msgspec, PyYAML, nosuchmod",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json
    assert "yaml" in body["installed"] and "msgspec" in body["installed"]
    assert "PyYAML" in body["installed"]  # a distribution name works too
    assert set(body["missing"]) == {"PIL", "nosuchmod"}
    assert "Pillow" in body["install"] and body["stdlib"] == ["json"]
    assert body["valid"] is False
    r = api.simulate_post(E + "dependencies/check", json={"modules": ["msgspec<0.1"]})
    assert r.json["missing"] == ["msgspec<0.1"]  # installed, but not that version
    assert api.simulate_post(E + "dependencies/check", json={}).status_code == 400


def test_bundled_lists_the_kit_and_its_dependencies(api):
    body = api.simulate_get(E + "dependencies/bundled").json
    names = {d["name"].lower() for d in body["bundled"]}
    assert {"hoodyexec", "falcon", "msgspec", "gunicorn"} <= names
    assert body["count"] == len(body["bundled"])
    assert body["python"].startswith("3.") and body["stdlib"]["modules"] > 100


def test_installs_refuse_bad_specs_and_kit_conflicts_before_writing(api):
    for modules in (["requests; rm -rf /"], "--index-url=x", [], ["a", 3]):
        r = api.simulate_post(E + "dependencies/install", json={"modules": modules})
        assert r.status_code == 400, (modules, r.text)
    r = api.simulate_post(E + "dependencies/install", json={"modules": "msgspec<0.10"})
    assert r.status_code == 409, r.text
    assert r.json["package"] == "msgspec" and r.json["requested"] == "<0.10"
    assert r.json["kitVersion"] == specs.kit_distributions("/x")["msgspec"].version
    r = api.simulate_post(E + "package/install", json={"packages": ["falcon==1.0"]})
    assert r.status_code == 409
    assert not os.path.exists(os.path.join(api.home.root, "pyproject.toml"))
    r = api.simulate_post(E + "dependencies/install", json={"modules": ["msgspec"]})
    assert r.status_code == 200  # what the kit has is already there: nothing to do
    assert r.json["results"][0]["status"] == "already-installed"
    assert r.json["results"][0]["source"] == "kit"


def test_auto_falls_back_to_pip_when_no_uv_is_found(monkeypatch):
    monkeypatch.setattr(installer, "find_uv", lambda: None)
    assert installer.Installer("auto").name == "pip"
    with pytest.raises(Exception, match="no uv binary"):
        installer.Installer("uv")
