"""Rewriting a ``def``'s parameter list by splicing: rename, drop, annotate, add."""

from __future__ import annotations

import ast
import dataclasses

from .splice import Edit, Source, def_header

Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclasses.dataclass
class Params:
    """What to do with one function's parameters."""

    drop: set[str] = dataclasses.field(default_factory=set)
    rename: dict[str, str] = dataclasses.field(default_factory=dict)
    annotate: dict[str, str] = dataclasses.field(default_factory=dict)
    add: list[str] = dataclasses.field(default_factory=list)

    def empty(self) -> bool:
        return not (self.drop or self.rename or self.annotate or self.add)


def names(fn: Function) -> list[str]:
    a = fn.args
    found = [x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs]]
    found += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
    return found


def _defaults(fn: Function) -> dict[str, ast.expr]:
    a = fn.args
    positional = [*a.posonlyargs, *a.args]
    out = {
        arg.arg: default
        for arg, default in zip(
            positional[len(positional) - len(a.defaults) :], a.defaults, strict=True
        )
    }
    for arg, kw_default in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        if kw_default is not None:
            out[arg.arg] = kw_default
    return out


def _part(src: Source, arg: ast.arg, default: ast.expr | None, spec: Params) -> str:
    text = src.segment(arg)
    new_name = spec.rename.get(arg.arg, arg.arg)
    if arg.arg in spec.rename and arg.annotation is not None:
        text = new_name  # the foreign type (Request) does not describe the kit's object
    else:
        text = new_name + text[len(arg.arg) :]
        if arg.annotation is None and arg.arg in spec.annotate:
            text += f": {spec.annotate[arg.arg]}"
    if default is not None:
        text += src.text[src.end(arg) : src.end(default)]
    return text


def rewrite(src: Source, fn: Function, spec: Params) -> Edit | None:
    """One edit replacing the text between the parentheses, or None if unchanged."""
    if spec.empty():
        return None
    a = fn.args
    defaults = _defaults(fn)
    present = {spec.rename.get(n, n) for n in names(fn) if n not in spec.drop}
    parts = [n for n in spec.add if n not in present]

    def keep(args: list[ast.arg]) -> list[str]:
        return [_part(src, x, defaults.get(x.arg), spec) for x in args if x.arg not in spec.drop]

    parts += keep(a.posonlyargs)
    if a.posonlyargs:
        parts.append("/")
    parts += keep(a.args)
    if a.vararg is not None:
        parts.append("*" + src.segment(a.vararg))
    elif a.kwonlyargs:
        parts.append("*")
    parts += keep(a.kwonlyargs)
    if a.kwarg is not None:
        parts.append("**" + src.segment(a.kwarg))
    header = def_header(src, fn)
    return Edit(header.open_paren + 1, header.close_paren, ", ".join(parts))


def rename_uses(src: Source, body: list[ast.stmt], old: str, new: str) -> list[Edit]:
    """Every read or write of the name ``old`` in ``body`` becomes ``new``."""
    edits = []
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and node.id == old:
                edits.append(Edit(src.start(node), src.end(node), new))
    return edits


def uses(body: list[ast.stmt], name: str) -> bool:
    return any(
        isinstance(node, ast.Name) and node.id == name for stmt in body for node in ast.walk(stmt)
    )
