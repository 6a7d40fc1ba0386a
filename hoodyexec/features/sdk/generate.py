"""Python source for an SDK: the client module and one proxy script per route.

Everything taken from the document reaches the code as a Python literal
(``repr``) or as an identifier rebuilt from ``[A-Za-z0-9_]``; comment lines get
only names that passed the router's own checks. So no document can put code in
a generated file.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Any

from hoodyexec.engine.compiler import CONTEXT_NAMES
from hoodyexec.engine.routes import NotRoutable, route_for

from .document import Document, Op, Param, Skipped

# Methods a script can define (docs/scripts.md): others get a client function only.
SCRIPT_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
CLIENT_NAMES = frozenset({"client", "Client", "Operation", "Any", "annotations"})
_SEGMENT = re.compile(r"^[A-Za-z0-9.~!$&'()*+,;=:@-]+$")


@dataclass
class File:
    path: str  # relative to the instance
    kind: str  # client | middleware | proxy
    content: str


@dataclass
class Generated:
    files: list[File]
    operations: list[dict[str, Any]]
    skipped: list[Skipped]


@dataclass
class _Names:
    """Identifiers handed out in one scope, each once."""

    taken: set[str] = field(default_factory=set)

    def make(self, text: str, fallback: str = "value") -> str:
        name = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or fallback
        if name[0].isdigit():
            name = f"{fallback}_{name}"
        if keyword.iskeyword(name) or keyword.issoftkeyword(name):
            name += "_"
        base, n = name, 2
        if name in self.taken:
            name = base + "_"
        while name in self.taken:
            name = f"{base}_{n}"
            n += 1
        self.taken.add(name)
        return name


def client_path(name: str) -> str:
    return f"_sdk/{name}.py"


def middleware_path(name: str) -> str:
    return f"_sdk/_{name}_middleware.py"


def generate(
    name: str, doc: Document, *, middleware: str | None, magic_comments: str | None
) -> Generated:
    functions = _Names(set(CLIENT_NAMES))
    routes: dict[str, list[tuple[Op, str, dict[str, str]]]] = {}
    operations: list[dict[str, Any]] = []
    skipped = list(doc.skipped)
    op_ids: set[str] = set()
    accepted: list[tuple[Op, str]] = []
    for op in doc.ops:
        fallback = f"{op.method.lower()}{op.path}"
        op_id = op.operation_id or _Names().make(fallback, "op")
        if op_id in op_ids:
            skipped.append(Skipped(op.method, op.path, f"operationId {op_id!r} is used twice"))
            continue
        op_ids.add(op_id)
        op.operation_id = op_id
        function = functions.make(op_id, "op")
        accepted.append((op, function))
        entry: dict[str, Any] = {
            "operationId": op_id,
            "function": function,
            "method": op.method,
            "path": op.path,
            "summary": op.summary,
            "route": None,
            "file": None,
        }
        try:
            rel, template, params = _route(op, name, routes)
        except NotRoutable as why:
            entry["note"] = f"no proxy route: {why}"
        else:
            routes.setdefault(rel, []).append((op, function, params))
            entry.update(route=template, file=rel)
        operations.append(entry)
    files = []
    if middleware is not None:
        files.append(File(middleware_path(name), "middleware", middleware))
    files.append(File(client_path(name), "client", _client(name, doc, accepted, middleware)))
    for rel, ops in routes.items():
        files.append(File(rel, "proxy", _proxy(name, rel, ops, magic_comments)))
    return Generated(files, operations, skipped)


# -- routes ---------------------------------------------------------------------
def _route(
    op: Op, name: str, routes: dict[str, list[tuple[Op, str, dict[str, str]]]]
) -> tuple[str, str, dict[str, str]]:
    """(file, kit route, document param name → route param name) for ``op``."""
    if op.method not in SCRIPT_METHODS:
        raise NotRoutable(f"scripts do not serve {op.method}")
    if op.path != "/" and op.path.endswith("/"):
        raise NotRoutable("a path ending in / is not a route the kit makes")
    names = _Names({*CONTEXT_NAMES, name})
    params: dict[str, str] = {}
    parts = []
    for segment in op.path.strip("/").split("/") if op.path.strip("/") else []:
        m = re.fullmatch(r"\{([^{}]+)\}", segment)
        if m:
            params[m.group(1)] = names.make(m.group(1), "param")
            parts.append(f"[{params[m.group(1)]}]")
        elif "{" in segment or "}" in segment:
            raise NotRoutable(f"a parameter inside the segment {segment!r}")
        elif not _SEGMENT.match(segment) or segment.startswith((".", "_")):
            raise NotRoutable(f"the segment {segment!r} cannot be a file name")
        else:
            parts.append(segment)
    rel = "/".join(parts) + ".py" if parts else "index.py"
    expected = "/" + "/".join("{" + p[1:-1] + "}" if p.startswith("[") else p for p in parts)
    route = route_for(rel)
    if route.templates[0] != expected:
        raise NotRoutable(f"{rel} would route {route.templates[0]}, not {expected}")
    taken = routes.get(rel)
    if taken:
        first = taken[0][0]
        if first.path != op.path:
            raise NotRoutable(f"the same route as {first.path}")
        if any(o.method == op.method for o, _, _ in taken):
            raise NotRoutable(f"{op.method} {op.path} is declared twice")
    return rel, expected, params


# -- the client module -------------------------------------------------------------
def _client(
    name: str, doc: Document, accepted: list[tuple[Op, str]], middleware: str | None
) -> str:
    title = " ".join(f"{doc.title} {doc.version}".split()) or name
    lines = [
        f"# Generated by hoodyexec sdk/import (SDK {name}). Re-importing with force",
        "# replaces this file; DELETE sdk/<id> keeps it if it was edited.",
        repr(f"Client for {title}: one async function per operation."),
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any",
        "",
        "from hoodyexec.features.sdk.runtime import Client, Operation",
    ]
    if middleware is not None:
        lines.append(f"import _{name}_middleware")
    lines += [
        "",
        "client = Client(",
        "    __file__,",
        f"    {name!r},",
        f"    base_url={doc.base_url!r},",
        "    operations={",
    ]
    for op, _ in accepted:
        lines.append(f"        {op.operation_id!r}: {_operation(op)},")
    lines.append("    },")
    if middleware is not None:
        lines.append(f"    middleware=_{name}_middleware.middleware,")
    lines.append(")")
    for op, function in accepted:
        lines += ["", "", *_function(op, function)]
    return "\n".join(lines) + "\n"


def _operation(op: Op) -> str:
    args = [repr(op.method), repr(op.path)]
    for where, label in (("query", "query"), ("header", "headers")):
        names = tuple(p.name for p in op.params if p.where == where)
        if names:
            args.append(f"{label}={names!r}")
    if op.body is not None:
        args.append(f"body={op.body!r}")
    return f"Operation({', '.join(args)})"


def _function(op: Op, function: str) -> list[str]:
    names = _Names({"client"})
    path = [p for p in op.params if p.where == "path"]
    rest = [p for p in op.params if p.where != "path"]
    local = {(p.name, p.where): names.make(p.name, "param") for p in [*path, *rest]}
    body = names.make("body") if op.body is not None else None
    positional = [f"{local[(p.name, p.where)]}: {p.type}" for p in path]
    required = [f"{local[(p.name, p.where)]}: {p.type}" for p in rest if p.required]
    optional = [
        f"{local[(p.name, p.where)]}: {p.type} | None = None" for p in rest if not p.required
    ]
    if body is not None:
        (required if op.body_required else optional).append(
            f"{body}: {op.body_type}" + ("" if op.body_required else " | None = None")
        )
    keywords = required + optional
    signature = ", ".join(positional + (["*", *keywords] if keywords else []))
    kwargs = []
    for where, label in (("path", "path"), ("query", "query"), ("header", "headers")):
        items = [f"{p.name!r}: {local[(p.name, p.where)]}" for p in op.params if p.where == where]
        if items:
            kwargs.append(f"{label}={{{', '.join(items)}}}")
    if body is not None:
        kwargs.append(f"body={body}")
    doc = f"{op.summary} ({op.method} {op.path})" if op.summary else f"{op.method} {op.path}"
    call = ", ".join([repr(op.operation_id), *kwargs])
    return [
        f"async def {function}({signature}) -> Any:",
        f"    {doc!r}",
        f"    return await client.call({call})",
    ]


# -- proxy scripts -------------------------------------------------------------------
def _proxy(
    name: str, rel: str, ops: list[tuple[Op, str, dict[str, str]]], magic_comments: str | None
) -> str:
    route = route_for(rel)
    methods = ", ".join(op.method for op, _, _ in ops)
    head = [line for line in (magic_comments or "").splitlines() if line.strip()]
    if not any(re.match(r"^\s*#\s*@description\b", line) for line in head):
        head.append(f"# @description {name} SDK proxy: {methods} {route.templates[0]}")
    lines = [
        *head,
        f"# Generated by hoodyexec sdk/import (SDK {name}): passes the request to the",
        f"# upstream API through _sdk/{name}.py, which adds the auth server-side.",
        f"from _sdk import {name}",
    ]
    for op, _, params in ops:
        args = ["req", "res"]
        args += [f"{local}: {_path_type(op, doc_name)}" for doc_name, local in params.items()]
        path = ", ".join(f"{doc_name!r}: {local}" for doc_name, local in params.items())
        call = [repr(op.operation_id), "req", "res"] + ([f"path={{{path}}}"] if path else [])
        summary = f"{op.summary} ({op.operation_id})" if op.summary else op.operation_id
        lines += [
            "",
            "",
            f"async def {op.method}({', '.join(args)}):",
            f"    {summary!r}",
            f"    return await {name}.client.proxy({', '.join(call)})",
        ]
    return "\n".join(lines) + "\n"


def _path_type(op: Op, doc_name: str) -> str:
    found: Param | None = next(
        (p for p in op.params if p.where == "path" and p.name == doc_name), None
    )
    kind = found.type if found is not None else "str"
    return kind if kind in ("int", "float") else "str"
