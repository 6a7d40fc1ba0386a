"""Private packages, which SDK clients live in (``_sdk/<name>.py``): imported by
any script of the instance, in every spelling, from any folder; and the write
pipeline's validation agrees with the engine on where they are found."""

from __future__ import annotations

import pytest

from hoodyexec.features.validate.service import validate_script


@pytest.mark.parametrize(
    "source",
    [
        'from _sdk import pets\nreturn {"v": pets.NAME}\n',
        'import _sdk.pets\nreturn {"v": _sdk.pets.NAME}\n',
        'from _sdk.pets import NAME\nreturn {"v": NAME}\n',
        'import _sdk.pets as p\nreturn {"v": p.NAME}\n',
    ],
)
def test_a_module_in_a_private_folder_imports_from_a_nested_script(env, source):
    env.write("_sdk/pets.py", "import _helper\nNAME = _helper.PREFIX + 'pets'\n")
    env.write("_sdk/_helper.py", "PREFIX = 'sdk:'\n")
    env.write("a/b/use.py", source)
    r = env.get("/a/b/use")
    assert r.status_code == 200, r.text
    assert r.json == {"v": "sdk:pets"}


def test_a_missing_module_of_a_private_folder_is_an_import_error(env):
    env.write("_sdk/pets.py", "NAME = 1\n")
    env.write("use.py", "import _sdk.nope\nreturn 1\n")
    env.write("use2.py", "from _sdk import nope\nreturn 1\n")
    for path in ("/use", "/use2"):
        r = env.get(path)
        assert r.status_code == 500
        assert "nope" in r.json["error"], r.json


def test_an_edited_private_submodule_is_reloaded(env):
    env.write("_sdk/pets.py", "NAME = 'one'\n")
    env.write("use.py", 'from _sdk import pets\ndef handler():\n    return {"v": pets.NAME}\n')

    async def scenario(c):
        first = await c.simulate_get("/use")
        env.write("_sdk/pets.py", "NAME = 'two'\n")
        second = await c.simulate_get("/use")
        return first.json["v"], second.json["v"]

    assert env.run(scenario) == ("one", "two")


def test_validation_finds_private_modules_in_parent_folders(tmp_path):
    root = tmp_path / "inst"
    (root / "_sdk").mkdir(parents=True)
    (root / "_sdk" / "pets.py").write_text("NAME = 1\n")
    code = "from _sdk import pets\nreturn pets.NAME\n"
    nested = validate_script(code, script_dir=str(root / "a" / "b"), path="a/b/use.py")
    assert nested["valid"], nested["errors"]
    assert nested["results"]["dependencies"]["private"] == ["_sdk"]
    # not above the instance root, and not when absent
    (root / "_sdk" / "pets.py").unlink()
    (root / "_sdk").rmdir()
    (tmp_path / "_sdk").mkdir()
    missing = validate_script(code, script_dir=str(root / "a"), path="a/use.py")
    assert not missing["valid"]
    assert "_sdk" in missing["errors"][0]
