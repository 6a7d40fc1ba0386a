"""Imports point down only: a small checker over the syntax trees.

hoodyexec/workers (repo: workers/)   process roles; the only gunicorn user
hoodyexec/http, features/*/api.py    falcon
hoodyexec/features/<name>/           one capability each; never each other
hoodyexec/engine, storage, ipc       no falcon, no http, no features
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "hoodyexec"
LEAVES = {
    "hoodyexec/errors.py",
    "hoodyexec/ipc/protocol.py",
    "hoodyexec/features/openapi/reference.py",
}


def module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "workers":
        parts = ["hoodyexec", *parts]
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    package = module_of(path).rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{alias.name}" for alias in node.names)
    return out


def sources(top: Path = PKG) -> list[Path]:
    return [p for p in top.rglob("*.py") if "examples" not in p.parts]


def test_hoodyexec_never_imports_workers_conf_or_gunicorn():
    for path in sources():
        for name in imports(path):
            assert name.split(".")[0] not in {"workers", "conf", "gunicorn"}, (path, name)
            assert not name.startswith("hoodyexec.workers"), (path, name)


def test_no_bare_workers_package_is_imported():
    for path in [*sources(), *(ROOT / "workers").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        assert not any(n.split(".")[0] == "workers" for n in imports(path)), path


def test_falcon_only_in_http_and_feature_apis():
    for path in sources():
        rel = path.relative_to(PKG).parts
        if rel[0] == "http" or (rel[0] == "features" and rel[-1] == "api.py"):
            continue
        assert not any(n.split(".")[0] == "falcon" for n in imports(path)), path


def test_engine_storage_ipc_never_import_http_or_features():
    for layer in ("engine", "storage", "ipc"):
        for path in sources(PKG / layer):
            bad = [
                n for n in imports(path) if n.startswith(("hoodyexec.http", "hoodyexec.features"))
            ]
            assert not bad, (path, bad)


def test_features_never_import_each_other():
    for folder in (PKG / "features").iterdir():
        if not folder.is_dir() or folder.name.startswith("__"):
            continue
        for path in sources(folder):
            for name in imports(path):
                if name.startswith("hoodyexec.features."):
                    assert name.split(".")[2] == folder.name, (path, name)


def test_every_feature_registers_itself():
    for folder in (PKG / "features").iterdir():
        if folder.is_dir() and not folder.name.startswith("__"):
            tree = ast.parse((folder / "api.py").read_text())
            names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
            assert "register" in names, folder


def test_leaves_import_nothing_internal():
    for rel in LEAVES:
        internal = [n for n in imports(ROOT / rel) if n.startswith("hoodyexec")]
        assert not internal, (rel, internal)


def test_top_level_modules_never_import_the_http_layer():
    for path in PKG.glob("*.py"):
        internal = [n for n in imports(path) if n.startswith("hoodyexec.http")]
        assert not internal, (path.name, internal)


def test_every_package_is_listed_for_installation():
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {module_of(p.parent / "x.py").rpartition(".")[0] for p in PKG.rglob("__init__.py")}
    found.add("hoodyexec.workers")
    assert found == listed
