"""Imports point down only (STYLE.md): a small checker over the syntax trees."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEAVES = {"hoodyexec/errors.py", "hoodyexec/protocol.py", "hoodyexec/reference.py"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                out.add(".".join([*base, node.module] if node.module else base))
            else:
                out.add(node.module or "")
    return out


def test_domain_never_imports_workers_conf_or_gunicorn():
    for path in (ROOT / "hoodyexec").rglob("*.py"):
        if "examples" in path.parts:
            continue
        for name in imports(path):
            top = name.split(".")[0]
            assert top not in {"workers", "conf", "gunicorn"}, (
                f"{path.relative_to(ROOT)} imports {name}"
            )


def test_only_http_imports_falcon():
    for path in (ROOT / "hoodyexec").rglob("*.py"):
        rel = path.relative_to(ROOT)
        if "examples" in path.parts or rel.parts[1] == "http":
            continue
        assert not any(n.split(".")[0] == "falcon" for n in imports(path)), rel


def test_leaves_import_nothing_internal():
    for rel in LEAVES:
        internal = [n for n in imports(ROOT / rel) if n.startswith("hoodyexec")]
        assert not internal, (rel, internal)


def test_domain_never_imports_the_http_layer():
    for path in (ROOT / "hoodyexec").glob("*.py"):
        internal = [n for n in imports(path) if n.startswith("hoodyexec.http")]
        assert not internal, (path.name, internal)
