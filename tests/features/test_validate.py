"""Validate feature: static validation of scripts (syntax, names, annotations,
imports, magic, return types) and its endpoints."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from textwrap import dedent

import pytest

from hoodyexec.features.validate import service as validation
from hoodyexec.features.validate.service import (
    DISTRIBUTION_HINTS,
    check_dependencies,
    check_magic,
    check_return_type,
    check_static,
    check_syntax,
    parse_type,
    validate_script,
)

from .helpers import V


def src(text: str) -> str:
    return dedent(text).lstrip("\n")


def messages(result: dict) -> list[str]:
    return [e["message"] for e in result["errors"]]


def assert_json(result: dict) -> None:
    """Every result must survive a JSON round trip unchanged."""
    assert json.loads(json.dumps(result)) == result


# -- check_syntax -------------------------------------------------------------
@pytest.mark.parametrize(
    "code, shape",
    [
        ("return {'ok': True}\n", "body"),
        ("x = await thing()\nreturn x\n", "body"),
        ("yield 1\n", "body"),
        ("x = 1\n", "body"),
        ("def handler(req):\n    return 1\n", "handler"),
        ("def main():\n    return 1\n", "handler"),
        ("async def GET(req):\n    return 1\ndef POST(body):\n    return body\n", "methods"),
        ("from __future__ import annotations\nreturn 1\n", "body"),
    ],
)
def test_syntax_valid_shapes(code: str, shape: str) -> None:
    result = check_syntax(code)
    assert result == {"valid": True, "errors": [], "shape": shape}
    assert_json(result)


def test_syntax_parse_error_has_line_and_column() -> None:
    result = check_syntax("x = 1\ndef f(:\n    pass\n")
    assert result["valid"] is False
    assert result["shape"] is None
    [error] = result["errors"]
    assert error["line"] == 2
    assert error["column"] > 0
    assert "line 2" in error["message"]
    assert error["message"].startswith("SyntaxError:")


def test_syntax_indentation_error_is_named() -> None:
    [error] = check_syntax("def handler():\nreturn 1\n")["errors"]
    assert error["message"].startswith("IndentationError:")
    assert error["line"] == 2


@pytest.mark.parametrize(
    "code, line, shape, fragment",
    [
        ("def handler():\n    pass\nclass A:\n    return 2\n", 4, "handler", "'return' outside"),
        ("x = 1\ndef f():\n    await g()\nreturn x\n", 3, "body", "'await' outside async"),
        ("def handler():\n    pass\nnonlocal x\n", 3, "handler", "nonlocal"),
        ("x = 1\nnonlocal x\nreturn x\n", 2, "body", "nonlocal"),
        ("x = 1\nbreak\n", 2, "body", "'break' outside loop"),
        ("def handler():\n    continue\n", 2, "handler", "'continue' not properly in loop"),
        ("async def f():\n    yield 1\n    return 2\n", 3, "body", "'return' with value"),
    ],
)
def test_syntax_compile_time_errors(code: str, line: int, shape: str, fragment: str) -> None:
    result = check_syntax(code)
    assert result["valid"] is False
    assert result["shape"] == shape
    [error] = result["errors"]
    assert error["line"] == line
    assert fragment in error["message"]
    assert f"(line {line})" in error["message"]


def test_syntax_star_import_fails_in_body_mode_like_the_kit() -> None:
    # Body mode wraps the module in a function, where `import *` is not allowed.
    assert check_syntax("from os import *\nreturn 1\n")["valid"] is False
    assert check_syntax("from os import *\ndef handler():\n    return sep\n")["valid"] is True


def test_syntax_null_byte_names_its_line() -> None:
    [error] = check_syntax("x = 1\ny = '\0'\n")["errors"]
    assert error["line"] == 2
    assert "line 2" in error["message"]


def test_syntax_uses_the_given_filename_and_never_runs_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').close()\nreturn 1\n"
    assert check_syntax(code, filename="x.py")["valid"] is True
    assert check_static(code)["valid"] is True
    assert not marker.exists()


# -- check_static -------------------------------------------------------------
def test_static_reports_undefined_names_with_lines() -> None:
    result = check_static("x = 1\ny = x + 2\nreturn foo(y) + bar\n")
    assert result["valid"] is False
    assert messages(result) == [
        "name 'foo' is used but never defined (line 3)",
        "name 'bar' is used but never defined (line 3)",
    ]
    assert [e["line"] for e in result["errors"]] == [3, 3]
    assert_json(result)


def test_static_syntax_errors_come_first() -> None:
    result = check_static("return (\n")
    assert result["valid"] is False
    assert result["errors"][0]["message"].startswith("SyntaxError")
    assert result["warnings"] == []


def test_static_knows_every_way_to_define_a_name() -> None:
    code = src(
        """
        import os.path
        import json as j
        from typing import Any as A
        from collections import abc
        global g
        print(__file__, __name__, __doc__, __spec__, __builtins__, len, req, res)
        print(metadata, shared, console, ai, body, query, params)

        def f(a, /, b, *args, c, d=1, **kw) -> None:
            nonlocal_user = lambda x, *ys, **zs: (x, ys, zs, a, b, args, c, d, kw)
            return nonlocal_user

        class C:
            attr = 1

            def m(self):
                return __class__, super()

        squares = [n * n for n in range(3)]
        pairs = {k: v for k, v in {}.items()}
        gen = sum(i for i in range(3))
        for idx, (p, q) in enumerate([]):
            pass
        with open(os.devnull) as fh, open(os.devnull) as (fh2):
            pass
        try:
            pass
        except ValueError as exc:
            print(exc)
        if (w := 3) > 2:
            print(w)
        match {"k": 1}:
            case {"k": kk, **rest}:
                print(kk, rest)
            case [first, *others]:
                print(first, others)
            case C(attr=captured) | C(attr=captured):
                print(captured)
            case _:
                pass
        counter = 0
        counter += 1
        tmp = 1
        del tmp
        print(f"{counter!r:>{idx}} {j} {A} {abc}", g, squares, pairs, gen, fh, fh2)
        return f
        """
    )
    result = check_static(code)
    assert result == {"valid": True, "errors": [], "warnings": []}


def test_static_augmented_assignment_and_del_read_the_name() -> None:
    result = check_static("total += 1\ndel missing\nreturn total\n")
    assert messages(result) == [
        "name 'total' is used but never defined (line 1)",
        "name 'missing' is used but never defined (line 2)",
        "name 'total' is used but never defined (line 3)",
    ]


def test_static_names_inside_fstrings_are_checked() -> None:
    assert messages(check_static('return f"{nowhere}"\n')) == [
        "name 'nowhere' is used but never defined (line 1)"
    ]


def test_static_scope_is_module_wide() -> None:
    # Defined anywhere counts: later, or only inside another function.
    code = "def handler():\n    return helper()\ndef other():\n    helper = 1\n"
    assert check_static(code)["valid"] is True


def test_static_undefined_name_reported_once_per_line() -> None:
    result = check_static("return (nope, nope,\n        nope)\n")
    assert [e["line"] for e in result["errors"]] == [1, 2]


def test_static_star_import_skips_the_undefined_name_check() -> None:
    code = "from os.path import *\ndef handler(x: Whatever = 1):\n    return join(anything)\n"
    assert check_static(code) == {"valid": True, "errors": [], "warnings": []}


def test_static_unresolvable_annotations_are_errors() -> None:
    code = src(
        """
        from typing import Optional
        def handler(body: Payload, q: Optional[int] = None) -> "Reply":
            x: Mystery = 1
            y: typo.Thing = 2
            return x
        """
    )
    result = check_static(code)
    assert result["valid"] is False
    assert messages(result) == [
        "annotation 'Payload' cannot be resolved (line 2)",
        "annotation 'Reply' cannot be resolved (line 2)",
        "annotation 'Mystery' cannot be resolved (line 3)",
        "annotation 'typo.Thing' cannot be resolved (line 4)",
    ]


def test_static_typing_constructs_must_be_imported() -> None:
    result = check_static("def handler(q: Optional[int] = None):\n    return q\n")
    assert messages(result) == ["annotation 'Optional' cannot be resolved (line 1)"]
    ok = "import typing\ndef handler(q: typing.Optional[int] = None) -> dict:\n    return {}\n"
    assert check_static(ok)["valid"] is True


def test_static_string_annotations_are_parsed_and_checked() -> None:
    code = src(
        """
        from typing import Annotated, Literal
        import msgspec
        class Item(msgspec.Struct):
            name: str
        def handler(body: "list[Item]", mode: Literal["fast", "slow"] = "fast") -> "dict[str, Item]":
            a: Annotated[int, "just metadata"] = 1
            b: "list['Item']" = []
            return {}
        """
    )
    assert check_static(code) == {"valid": True, "errors": [], "warnings": []}
    bad = check_static('x: "list[Nope]" = []\ny: "not valid (" = 1\nreturn x\n')
    assert messages(bad) == [
        "annotation 'Nope' cannot be resolved (line 1)",
        "annotation 'not valid (' is not a valid expression (line 2)",
    ]


def test_static_annotated_metadata_names_must_exist() -> None:
    code = "from typing import Annotated\nx: Annotated['Ghost', meta] = 1\nreturn x\n"
    assert messages(check_static(code)) == [
        "annotation 'Ghost' cannot be resolved (line 2)",
        "annotation 'meta' cannot be resolved (line 2)",
    ]


def test_static_uninjectable_handler_parameter_is_a_warning() -> None:
    code = src(
        """
        import msgspec
        class Body(msgspec.Struct):
            n: int
        def handler(req, res, body, query, params, data: Body, limit=10, id=None, *a, slug, **kw):
            return 1
        """
    )
    result = check_static(code)
    assert result["valid"] is True
    [warning] = result["warnings"]
    assert warning["line"] == 4
    assert "'slug'" in warning["message"]
    assert "(line 4)" in warning["message"]


def test_static_method_functions_are_checked_too() -> None:
    code = (
        "def GET(req, id):\n    return id\n\nasync def POST(\n    body, user_id\n):\n    return 1\n"
    )
    result = check_static(code)
    assert result["valid"] is True
    assert [(w["line"], "'" + w["message"].split("'")[1] + "'") for w in result["warnings"]] == [
        (1, "'id'"),
        (5, "'user_id'"),
    ]
    assert result["warnings"][0]["message"].startswith("GET(): ")


def test_static_positional_only_parameters_cannot_be_injected() -> None:
    [warning] = check_static("def handler(req, /):\n    return 1\n")["warnings"]
    assert "positional-only" in warning["message"] and "(line 1)" in warning["message"]


def test_static_body_mode_has_no_parameter_warnings() -> None:
    assert check_static("def helper(x):\n    return x\nreturn helper(1)\n")["warnings"] == []


def test_static_compiler_warnings_are_reported() -> None:
    result = check_static('x = 1\nif x is 1:\n    pass\nreturn "\\d"\n')
    assert result["valid"] is True
    lines = {w["line"]: w["message"] for w in result["warnings"]}
    assert "with a literal" in lines[2] and "(line 2)" in lines[2]
    assert "escape sequence" in lines[4]


# -- check_dependencies -------------------------------------------------------
@pytest.fixture
def script_dir(tmp_path: Path) -> Path:
    (tmp_path / "_helpers.py").write_text("X = 1\n")
    (tmp_path / "_pkg").mkdir()
    (tmp_path / "_pkg" / "__init__.py").write_text("")
    return tmp_path


def by_name(result: dict) -> dict[str, dict]:
    return {i["name"]: i for i in result["imports"]}


def test_dependencies_classify_each_import(script_dir: Path, tmp_path: Path) -> None:
    extra = tmp_path / "site"
    (extra / "vendored_mod").mkdir(parents=True)
    (extra / "single_file_mod.py").write_text("")
    code = src(
        """
        import os, json as j
        import os.path
        from collections.abc import Mapping
        import msgspec
        from yaml import safe_load
        import _helpers, _pkg.sub
        import vendored_mod, single_file_mod
        from . import sibling
        from ..parent import thing
        import cv2
        import sklearn.linear_model
        """
    )
    result = check_dependencies(code, script_dir=str(script_dir), extra_paths=[str(extra)])
    assert_json(result)
    assert result["valid"] is False
    assert result["stdlib"] == ["collections", "json", "os"]
    assert result["installed"] == ["msgspec", "single_file_mod", "vendored_mod", "yaml"]
    assert result["private"] == ["_helpers", "_pkg"]
    assert result["missing"] == ["cv2", "sklearn"]
    imports = by_name(result)
    assert imports["os.path"] == {
        "module": "os",
        "name": "os.path",
        "line": 2,
        "status": "stdlib",
        "distribution": None,
        "optional": False,
    }
    assert imports["collections.abc"]["module"] == "collections"
    assert imports["yaml"]["status"] == "installed"
    assert imports["yaml"]["distribution"] == "PyYAML"
    assert imports["msgspec"]["distribution"] == "msgspec"
    assert imports["vendored_mod"]["distribution"] is None
    assert imports["_pkg.sub"]["status"] == "private"
    assert imports["."]["status"] == "local"
    assert imports["..parent"]["status"] == "local"
    assert imports["cv2"] == {
        "module": "cv2",
        "name": "cv2",
        "line": 10,
        "status": "missing",
        "distribution": "opencv-python",
        "optional": False,
    }
    assert imports["sklearn.linear_model"]["distribution"] == "scikit-learn"
    assert result["hints"] == {
        "msgspec": "msgspec",
        "yaml": "PyYAML",
        "cv2": "opencv-python",
        "sklearn": "scikit-learn",
    }
    assert [e["message"] for e in result["errors"]] == [
        "import 'cv2' cannot be resolved: module 'cv2' is not installed "
        "(pip install opencv-python) (line 10)",
        "import 'sklearn.linear_model' cannot be resolved: module 'sklearn' is not "
        "installed (pip install scikit-learn) (line 11)",
    ]


def test_dependencies_private_modules_need_a_sibling(script_dir: Path) -> None:
    result = check_dependencies("import _helpers\nimport _absent\n", script_dir=str(script_dir))
    assert by_name(result)["_helpers"]["status"] == "private"
    assert by_name(result)["_absent"]["status"] == "missing"
    assert by_name(result)["_absent"]["distribution"] is None
    assert result["valid"] is False
    assert "line 2" in result["errors"][0]["message"]
    # Without a folder to look in, any non-stdlib `_name` is taken as private.
    assert check_dependencies("import _absent\n")["private"] == ["_absent"]
    # `_thread` is stdlib, never private.
    assert check_dependencies("import _thread\n")["stdlib"] == ["_thread"]


def test_dependencies_everything_present_is_valid() -> None:
    result = check_dependencies("import sys\nfrom __future__ import annotations\n")
    assert result["valid"] is True
    assert result["errors"] == []
    assert result["stdlib"] == ["__future__", "sys"]


def test_dependencies_guarded_imports_are_optional() -> None:
    code = src(
        """
        import contextlib
        try:
            import not_a_real_module_xyz as fast
        except ImportError:
            fast = None
        with contextlib.suppress(ModuleNotFoundError):
            import also_not_real_xyz
        try:
            import third_not_real_xyz
        finally:
            pass
        """
    )
    result = check_dependencies(code)
    assert result["missing"] == ["also_not_real_xyz", "not_a_real_module_xyz", "third_not_real_xyz"]
    imports = by_name(result)
    assert imports["not_a_real_module_xyz"]["optional"] is True
    assert imports["also_not_real_xyz"]["optional"] is True
    assert imports["third_not_real_xyz"]["optional"] is False
    assert result["valid"] is False
    assert [e["line"] for e in result["errors"]] == [9]
    assert [w["line"] for w in result["warnings"]] == [3, 7]


def test_dependencies_imports_inside_functions_count() -> None:
    result = check_dependencies("def handler():\n    import bs4\n    return 1\n")
    assert by_name(result)["bs4"]["line"] == 2
    assert by_name(result)["bs4"]["distribution"] == "beautifulsoup4"


@pytest.mark.parametrize(
    "code, hint",
    [
        ("import PIL.Image", "Pillow"),
        ("from dateutil import parser", "python-dateutil"),
        ("from google.protobuf import message", "protobuf"),
        ("from google import protobuf", "protobuf"),
        ("import Crypto.Cipher", "pycryptodome"),
        ("import some_unknown_package_xyz", "some_unknown_package_xyz"),
    ],
)
def test_dependencies_hints_for_missing_modules(
    code: str, hint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(validation, "_findable", lambda top: False)
    result = check_dependencies(code)
    assert result["imports"][0]["status"] == "missing"
    assert result["imports"][0]["distribution"] == hint
    assert hint in result["errors"][0]["message"]


def test_dependencies_hint_table_covers_the_usual_mismatches() -> None:
    expected = {
        "yaml": "PyYAML",
        "cv2": "opencv-python",
        "PIL": "Pillow",
        "sklearn": "scikit-learn",
        "bs4": "beautifulsoup4",
        "dateutil": "python-dateutil",
        "jwt": "PyJWT",
        "dotenv": "python-dotenv",
        "magic": "python-magic",
        "Crypto": "pycryptodome",
        "OpenSSL": "pyOpenSSL",
        "google.protobuf": "protobuf",
        "serial": "pyserial",
        "usb": "pyusb",
        "attr": "attrs",
        "skimage": "scikit-image",
        "docx": "python-docx",
        "pptx": "python-pptx",
        "fitz": "PyMuPDF",
        "telegram": "python-telegram-bot",
        "slugify": "python-slugify",
        "zmq": "pyzmq",
        "lxml": "lxml",
    }
    assert expected.items() <= DISTRIBUTION_HINTS.items()


def test_dependencies_never_import(tmp_path: Path) -> None:
    (tmp_path / "side_effect_mod.py").write_text(
        f"open({str(tmp_path / 'imported')!r}, 'w').close()\n"
    )
    result = check_dependencies("import side_effect_mod\n", extra_paths=[str(tmp_path)])
    assert result["installed"] == ["side_effect_mod"]
    assert not (tmp_path / "imported").exists()


def test_dependencies_of_unparsable_code() -> None:
    result = check_dependencies("import (\n")
    assert result["valid"] is False
    assert result["imports"] == []
    assert "line 1" in result["errors"][0]["message"]


# -- check_magic --------------------------------------------------------------
def test_magic_values_and_errors() -> None:
    code = src(
        """
        #!/usr/bin/env python3
        # @description Greets people
        # @timeout 5000
        # @cors https://a.example, https://b.example
        # @tags webhook github
        # @websocket
        # @ai-temperature 0.5
        # @bogus 1
        # @timeout 10
        return 1
        """
    )
    result = check_magic(code)
    assert_json(result)
    assert result["valid"] is False
    assert result["comments"] == {
        "description": "Greets people",
        "timeout": 5000,
        "cors": ["https://a.example", "https://b.example"],
        "tags": ["webhook", "github"],
        "websocket": True,
        "ai-temperature": 0.5,
    }
    assert [(e["line"], e["name"]) for e in result["errors"]] == [(8, "bogus"), (9, "timeout")]
    assert result["errors"][0]["message"].startswith("@bogus: unknown magic comment")
    assert result["errors"][1]["message"] == "@timeout: given twice (first on line 3) (line 9)"


def test_magic_none_is_valid() -> None:
    assert check_magic("return 1\n") == {"valid": True, "errors": [], "comments": {}}


def test_magic_bad_value() -> None:
    [error] = check_magic("# @mode turbo\nreturn 1\n")["errors"]
    assert error["line"] == 1 and error["name"] == "mode" and "(line 1)" in error["message"]


# -- validate_script ----------------------------------------------------------
def test_validate_a_good_script(script_dir: Path) -> None:
    code = src(
        """
        # @description Echo
        # @timeout 2000
        import json
        import _helpers

        def handler(req, body):
            return {"echo": body, "x": _helpers.X, "j": json.dumps(1)}
        """
    )
    result = validate_script(code, script_dir=str(script_dir))
    assert_json(result)
    assert result["valid"] is True
    assert result["errors"] == []
    assert set(result["results"]) == {"syntax", "typescript", "dependencies", "magicComments"}
    assert result["results"]["syntax"]["shape"] == "handler"
    assert result["results"]["magicComments"]["comments"] == {
        "description": "Echo",
        "timeout": 2000,
    }
    assert result["results"]["dependencies"]["private"] == ["_helpers"]


def test_validate_collects_every_error_once() -> None:
    code = src(
        """
        # @timeout soon
        import not_installed_pkg_xyz
        return undefined_thing
        """
    )
    result = validate_script(code)
    assert result["valid"] is False
    assert not result["results"]["typescript"]["valid"]
    assert not result["results"]["dependencies"]["valid"]
    assert not result["results"]["magicComments"]["valid"]
    assert result["results"]["syntax"]["valid"] is True
    assert len(result["errors"]) == 3
    assert all("line" in e for e in result["errors"])
    assert any("undefined_thing" in e and "line 3" in e for e in result["errors"])


def test_validate_syntax_error_is_summarised_once() -> None:
    result = validate_script("def handler(:\n    pass\n")
    assert result["valid"] is False
    assert len(result["errors"]) == 1 and "line 1" in result["errors"][0]
    for name in ("syntax", "typescript", "dependencies"):
        assert result["results"][name]["valid"] is False


# -- check_return_type --------------------------------------------------------
@pytest.mark.parametrize(
    "definition, value, text",
    [
        ("dict[str, int]", {"a": 1}, "dict[str, int]"),
        ("list[str]", ["a", "b"], "list[str]"),
        ("list[dict[str, int | None]]", [{"a": 1, "b": None}], "list[dict[str, int | None]]"),
        ("Optional[int]", None, "int | None"),
        ("typing.Optional[int]", 3, "int | None"),
        ("Union[int, str]", "x", "int | str"),
        ('Literal["a", "b", 3]', 3, "Literal['a', 'b', 3]"),
        ("Literal[-1, True, None]", None, "Literal[-1, True, None]"),
        ("tuple[int, str]", [1, "a"], "tuple[int, str]"),
        ("tuple[int, ...]", [1, 2, 3], "tuple[int, ...]"),
        ("tuple[()]", [], "tuple[()]"),
        ("bool", False, "bool"),
        ("float", 1, "float"),
        ("float", 1.5, "float"),
        ("None", None, "None"),
        ("Any", {"anything": [1, "x"]}, "Any"),
        ("typing.Any", 1, "Any"),
        ("List[int]", [1], "list[int]"),
        ("Dict[str, Any]", {"a": [1]}, "dict[str, Any]"),
        ("dict[int, str]", {"1": "a"}, "dict[int, str]"),
        ("Optional[Union[int, str]]", "x", "int | str | None"),
        ("int | int | None", None, "int | None"),
        ("'list[int]'", [1], "list[int]"),
        ("set[str]", ["a", "b"], "set[str]"),
        ("list", [1, "a"], "list"),
        ("  str  ", "x", "str"),
    ],
)
def test_return_type_accepts(definition: str, value: object, text: str) -> None:
    result = check_return_type(definition, value)
    assert result == {"valid": True, "errors": [], "type": text}
    assert_json(result)


@pytest.mark.parametrize(
    "definition, value, where",
    [
        ("int", "5", "$"),
        ("int", True, "$"),
        ("int", 1.5, "$"),
        ("bool", 1, "$"),
        ("str", None, "$"),
        ("None", 0, "$"),
        ("dict[str, list[int]]", {"a": [1, "x"]}, "$.a[1]"),
        ("list[dict[str, int | None]]", [{"a": None}, {"b": "x"}], "$[1].b"),
        ("dict[str, dict[str, list[int]]]", {"a b": {"c": [1, "z"]}}, '$["a b"].c[1]'),
        ("tuple[int, str]", [1, 2], "$[1]"),
        ("tuple[int, str]", [1, "a", 3], "$"),
        ("tuple[int, ...]", [1, "x"], "$[1]"),
        ('Literal["a", "b", 3]', "c", "$"),
        ("Union[int, str]", 1.5, "$"),
        ("Optional[list[int]]", [1, "x"], "$[1]"),
        ("list[str]", {"a": 1}, "$"),
    ],
)
def test_return_type_rejects_with_a_path(definition: str, value: object, where: str) -> None:
    result = check_return_type(definition, value)
    assert result["valid"] is False
    [error] = result["errors"]
    assert error.endswith(f"- at `{where}`"), error
    assert_json(result)


def test_return_type_messages_say_what_was_expected() -> None:
    [error] = check_return_type("dict[str, list[int]]", {"a": [1, "x"]})["errors"]
    assert error == "Expected `int`, got `str` - at `$.a[1]`"


def test_return_type_bad_dict_key() -> None:
    [error] = check_return_type("dict[str, dict[int, str]]", {"a": {"x": "y"}})["errors"]
    assert 'key "x"' in error and "`$.a`" in error


@pytest.mark.parametrize(
    "definition",
    [
        "__import__('os').system('x')",
        "().__class__",
        "int.__class__",
        "lambda: int",
        "[int]",
        "int + str",
        "os.path",
        "typing.cast",
        "Foo",
        "eval",
        "list[int, str]",
        "dict[str]",
        "Optional[int, str]",
        "Optional",
        "Literal[1.5]",
        "Literal[int]",
        "Literal[]",
        "tuple[int, ..., str]",
        "int[str]",
        "3",
        "",
        "   ",
        "list[",
        "'__import__(\"os\")'",
        "list[" * 40 + "int" + "]" * 40,
        "x" * (validation.MAX_TYPE_CHARS + 1),
    ],
)
def test_return_type_rejects_unsupported_expressions(definition: str) -> None:
    result = check_return_type(definition, 1)
    assert result["valid"] is False
    assert result["type"] is None
    [error] = result["errors"]
    assert error.startswith("unsupported type expression: ")


def test_return_type_never_evaluates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kw: object) -> None:
        raise AssertionError("evaluated user text")

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    marker = tmp_path / "pwned"
    payloads = [
        f"__import__('pathlib').Path({str(marker)!r}).touch()",
        f"list[__import__('pathlib').Path({str(marker)!r}).touch()]",
        f"Optional['__import__(\"pathlib\").Path({str(marker)!r}).touch()']",
        "__import__('os').system('x')",
        "().__class__",
    ]
    for payload in payloads:
        assert check_return_type(payload, None)["valid"] is False
    assert not marker.exists()


def test_return_type_msgspec_unsupported_combination() -> None:
    result = check_return_type("list[int] | tuple[int]", [1])
    assert result["valid"] is False
    assert result["type"] == "list[int] | tuple[int]"
    assert result["errors"][0].startswith("unsupported type for validation: ")


def test_parse_type_returns_runtime_type_and_text() -> None:
    tp, text = parse_type("Dict[str, List[Optional[int]]]")
    assert tp == dict[str, list[int | None]]
    assert text == "dict[str, list[int | None]]"


# -- the endpoints -------------------------------------------------------------
def test_validate_endpoints(api):
    good = "# @cors *\n# @timeout 5000\n# @description Greeting handler\ndef handler(req):\n    return {'hi': 1}\n"
    r = api.simulate_post(V + "script", json={"code": good})
    assert r.status_code == 200 and r.json["valid"] is True
    assert set(r.json["results"]) == {"syntax", "typescript", "dependencies", "magicComments"}
    bad = (
        "# @timeout soon\nimport yaml_not_here_xyz\ndef handler(req):\n    return undefined_name\n"
    )
    r = api.simulate_post(V + "script", json={"code": bad}).json
    assert r["valid"] is False
    assert (
        r["results"]["magicComments"]["valid"] is False
        and r["results"]["magicComments"]["errors"][0]["line"] == 1
    )
    assert "yaml_not_here_xyz" in r["results"]["dependencies"]["missing"]
    assert any(
        "undefined_name" in e["message"] and "line 4" in e["message"]
        for e in r["results"]["typescript"]["errors"]
    )
    r = api.simulate_post(V + "syntax", json={"code": "x = (\n"}).json
    assert r["valid"] is False and r["errors"][0]["line"] == 1
    assert api.simulate_post(V + "syntax", json={"code": "return 1\n"}).json["valid"] is True
    r = api.simulate_post(
        V + "dependencies", json={"code": "import json\nimport yaml\nimport nope_pkg_xyz\n"}
    ).json
    assert r["stdlib"] == ["json"] and "yaml" in r["installed"] and r["missing"] == ["nope_pkg_xyz"]
    assert r["hints"]["yaml"] == "PyYAML"
    r = api.simulate_post(V + "magic-comments", json={"code": good}).json
    assert r["valid"] is True and r["comments"]["timeout"] == 5000
    r = api.simulate_post(
        V + "return-type", json={"typeDefinition": "dict[str, int]", "value": {"a": 1}}
    ).json
    assert r["valid"] is True
    r = api.simulate_post(
        V + "return-type", json={"typeDefinition": "list[int]", "value": [1, "x"]}
    ).json
    assert r["valid"] is False and "$[1]" in r["errors"][0]
    r = api.simulate_post(
        V + "return-type", json={"typeDefinition": "__import__('os').getcwd()", "value": 1}
    ).json
    assert r["valid"] is False and "unsupported" in r["errors"][0]
    assert api.simulate_post(V + "return-type", json={"typeDefinition": "int"}).status_code == 400
    assert api.simulate_post(V + "script", json={}).status_code == 400
    assert api.simulate_post(V + "script", json={"code": 3}).status_code == 400


def test_validation_checks_parameters_of_an_assigned_handler():
    from hoodyexec.features.validate.service import check_static

    result = check_static("def _impl(req, nope):\n    return 1\n\nhandler = _impl\n")
    assert [w["line"] for w in result["warnings"]] == [1] and "nope" in result["warnings"][0][
        "message"
    ]
    result = check_static("handler = lambda req, \\\n    other: 1\n")
    assert [w["line"] for w in result["warnings"]] == [2]
