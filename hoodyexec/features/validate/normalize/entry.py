"""Rules about a script's entry point: ``if __name__ == "__main__":`` blocks,
foreign handler signatures (``request``, Falcon's ``(req, resp)``), script-style
``print(json.dumps(x))`` output, and framework imports left unused."""

from __future__ import annotations

import ast

from hoodyexec.engine import compiler
from hoodyexec.engine.routes import NotRoutable, route_for

from . import access, signature
from .apps import _is_main_block, _own_nodes, import_map, qualified
from .model import Change, Outcome
from .splice import Edit, Overlap, Source, apply, def_header, remove_statement

FRAMEWORK_MODULES = frozenset(
    {"flask", "fastapi", "starlette", "uvicorn", "falcon", "werkzeug", "hypercorn", "waitress"}
)
_PRINT_KWARGS = frozenset({"flush"})
_DUMPS_KWARGS = frozenset({"indent", "sort_keys", "ensure_ascii", "separators"})
Function = ast.FunctionDef | ast.AsyncFunctionDef


def _defs(tree: ast.Module) -> dict[str, Function]:
    return {s.name: s for s in tree.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)}


def main_block(code: str, tree: ast.Module, rel: str | None) -> Outcome:
    """Drop ``if __name__ == "__main__":`` (it never runs in the kit); when it
    called the script's only function and nothing else is an entry point, that
    function becomes the handler."""
    blocks = [s for s in tree.body if _is_main_block(s)]
    if not blocks:
        return Outcome(code)
    src = Source(code)
    defs = _defs(tree)
    rest = ast.Module(body=[s for s in tree.body if s not in blocks], type_ignores=[])
    facts = compiler.analyse(rest)
    has_entry = facts["shape"] != "body"
    edits, changes = [], []
    for block in blocks:
        called = list(
            dict.fromkeys(
                n.func.id
                for n in ast.walk(block)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in defs
            )
        )
        replacement = ""
        after = "(removed: it never runs in the kit)"
        if not has_entry and len(called) == 1 and not _top_level_work(rest):
            name = called[0]
            if name != "main":
                replacement = f"handler = {name}\n"
                after = f"handler = {name}  (the block never runs in the kit)"
            else:
                after = "(removed: main is the handler)"
            has_entry = True
        edits.append(remove_statement(src, block, replacement))
        changes.append(Change("main-block", block.lineno, src.line_text(block.lineno), after))
    return Outcome(apply(code, edits), changes)


def _top_level_work(module: ast.Module) -> bool:
    """Statements a body-mode script runs per request, beyond definitions and imports."""
    quiet = ast.Import | ast.ImportFrom | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    for stmt in module.body:
        if isinstance(stmt, quiet):
            continue
        if isinstance(stmt, ast.Assign | ast.AnnAssign):
            continue  # constants and configuration
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # a docstring
        return True
    return False


def _entry_functions(tree: ast.Module) -> list[Function]:
    facts = compiler.analyse(tree)
    found = compiler.entry_definitions(tree, facts)
    return [d for d in found.values() if isinstance(d, ast.FunctionDef | ast.AsyncFunctionDef)]


def _route_params(rel: str | None) -> tuple[str, ...]:
    if rel is None:
        return ()
    try:
        return route_for(rel).params
    except NotRoutable:
        return ()


def signatures(code: str, tree: ast.Module, rel: str | None) -> Outcome:
    """``handler(request)`` and Falcon's ``(req, resp)`` → the kit's names. The
    Falcon request (``req.media``...) is rewritten in a second pass
    (``falcon_requests``), once ``resp`` is gone."""
    src = Source(code)
    routes = set(_route_params(rel))
    out = Outcome(code)
    edits: list[Edit] = []
    for fn in _entry_functions(tree):
        params = signature.names(fn)
        spec = signature.Params()
        needs: set[str] = set()
        for name, api in (("request", access.REQUEST), ("resp", access.FALCON_RESP)):
            alt = "response" if name == "resp" else None
            for candidate in (name, alt):
                if candidate and candidate in params and candidate not in routes:
                    found = access.Accesses(src, candidate, api, "handler-signature").run(fn.body)
                    edits += found.edits
                    out.changes += found.changes
                    out.problems += found.problems
                    needs |= found.needs
                    spec.drop.add(candidate)
        if not spec.drop:
            continue
        if "resp" in spec.drop or "response" in spec.drop:
            needs.add("res")
        spec.add = [n for n in ("req", "res", "body", "query") if n in needs]
        edit = signature.rewrite(src, fn, spec)
        if edit is not None:
            edits.append(edit)
            header = def_header(src, fn)
            before = src.text[header.open_paren : header.close_paren + 1]
            out.changes.append(
                Change(
                    "handler-signature", fn.lineno, f"{fn.name}{before}", f"{fn.name}({edit.text})"
                )
            )
    if out.problems or not edits:
        return Outcome(code, problems=out.problems)
    try:
        out.text = apply(code, edits)
    except Overlap:
        return Outcome(code)
    return out


def falcon_requests(code: str, tree: ast.Module, rel: str | None) -> Outcome:
    """In an entry that takes ``(req, res)`` and uses Falcon's request API
    (``req.media``, ``req.get_param``...), those uses become ``body``/``query``."""
    src = Source(code)
    out = Outcome(code)
    edits: list[Edit] = []
    falcon_only = {"media", "get_media", "get_param", "get_header"}  # not on the kit's req
    for fn in _entry_functions(tree):
        params = signature.names(fn)
        if "req" not in params or "res" not in params:
            continue
        uses = {
            n.attr
            for stmt in fn.body
            for n in ast.walk(stmt)
            if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name)
            and n.value.id == "req"
        }
        if not uses & falcon_only:
            continue
        found = access.Accesses(src, "req", access.FALCON_REQ, "handler-signature").run(fn.body)
        if found.problems:
            return Outcome(code, problems=found.problems)
        edits += found.edits
        out.changes += found.changes
        spec = signature.Params(add=[n for n in ("body", "query") if n in found.needs])
        if "req" not in found.needs and not _still_used(fn, "req", found.edits, src):
            spec.drop.add("req")
        edit = signature.rewrite(src, fn, spec)
        if edit is not None:
            edits.append(edit)
    if not edits:
        return Outcome(code)
    out.text = apply(code, edits)
    return out


def _still_used(fn: Function, name: str, edits: list[Edit], src: Source) -> bool:
    """Is ``name`` read anywhere in ``fn``'s body outside what ``edits`` replace?"""
    for stmt in fn.body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and node.id == name:
                start, end = src.start(node), src.end(node)
                if not any(e.start <= start and end <= e.end for e in edits):
                    return True
    return False


def _dumps_value(stmt: ast.stmt, imports: dict[str, str]) -> ast.expr | None:
    """``x`` of a statement ``print(json.dumps(x))``."""
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
        return None
    call = stmt.value
    if not (isinstance(call.func, ast.Name) and call.func.id == "print" and "print" not in imports):
        return None
    if len(call.args) != 1 or any(k.arg not in _PRINT_KWARGS for k in call.keywords):
        return None
    inner = call.args[0]
    if not isinstance(inner, ast.Call) or qualified(inner.func, imports) != "json.dumps":
        return None
    if len(inner.args) != 1 or any(k.arg not in _DUMPS_KWARGS for k in inner.keywords):
        return None
    return inner.args[0]


def _returns(nodes: list[ast.AST]) -> bool:
    return any(isinstance(n, ast.Return) for n in nodes)


def print_json(code: str, tree: ast.Module, rel: str | None) -> Outcome:
    """A body (the module in body mode, or an entry function) that ends with
    ``print(json.dumps(x))`` and returns nothing → ``return x``."""
    src = Source(code)
    imports = import_map(tree)
    facts = compiler.analyse(tree)
    bodies: list[tuple[list[ast.stmt], list[ast.AST]]] = []
    if facts["shape"] == "body":
        module_nodes = [n for s in tree.body for n in [s, *_own_nodes(s)]] if tree.body else []
        bodies.append((tree.body, module_nodes))
    for fn in _entry_functions(tree):
        bodies.append((fn.body, _own_nodes(fn)))
    edits, changes = [], []
    for body, nodes in bodies:
        if not body or _returns(nodes):
            continue
        value = _dumps_value(body[-1], imports)
        if value is None:
            continue
        last = body[-1]
        text = f"return {src.segment(value)}"
        edits.append(Edit(src.start(last), src.end(last), text))
        changes.append(Change("print-json", last.lineno, src.segment(last), text))
    if not edits:
        return Outcome(code)
    return Outcome(apply(code, edits), changes)


def prune_imports(code: str, tree: ast.Module, rel: str | None) -> Outcome:
    """Top-level imports of web frameworks and servers that nothing uses any more
    (they would make validation refuse a missing module)."""
    src = Source(code)
    used = {
        n.id
        for stmt in tree.body
        if not isinstance(stmt, ast.Import | ast.ImportFrom)
        for n in ast.walk(stmt)
        if isinstance(n, ast.Name)
    }
    edits, changes = [], []
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            modules = [a.name for a in stmt.names]
            bound = [a.asname or a.name.partition(".")[0] for a in stmt.names]
            keep = [
                a
                for a, m, b in zip(stmt.names, modules, bound, strict=True)
                if m.partition(".")[0] not in FRAMEWORK_MODULES or b in used
            ]
            new = f"import {', '.join(_alias(a) for a in keep)}" if keep else ""
        elif isinstance(stmt, ast.ImportFrom) and not stmt.level and stmt.module:
            if stmt.module.partition(".")[0] not in FRAMEWORK_MODULES:
                continue
            keep = [a for a in stmt.names if a.name == "*" or (a.asname or a.name) in used]
            names = ", ".join(_alias(a) for a in keep)
            new = f"from {stmt.module} import {names}" if keep else ""
        else:
            continue
        if len(keep) == len(stmt.names):
            continue
        if new:
            edits.append(Edit(src.start(stmt), src.end(stmt), new))
        else:
            edits.append(remove_statement(src, stmt))
        changes.append(
            Change("framework-import", stmt.lineno, src.segment(stmt), new or "(removed: unused)")
        )
    if not edits:
        return Outcome(code)
    return Outcome(apply(code, edits), changes)


def _alias(alias: ast.alias) -> str:
    return f"{alias.name} as {alias.asname}" if alias.asname else alias.name
