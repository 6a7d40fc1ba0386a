"""Flask and FastAPI single-file apps → method functions of this script.

``app = Flask(__name__)`` with ``@app.route("/")`` / ``@app.get(...)`` functions
becomes ``GET``/``POST``... functions; ``request.json``/``request.args`` become
the injected ``body``/``query``; ``jsonify(x)`` becomes ``x``; ``app.run()`` and
``uvicorn.run()`` go. A file is one endpoint: of several routes, the one
matching the file's own route (else ``/``) is kept and every other one is a
validation error naming the file to move it to.
"""

from __future__ import annotations

import ast
import dataclasses
import re

from hoodyexec.engine.compiler import CONTEXT_NAMES, METHODS
from hoodyexec.engine.routes import NotRoutable, route_for

from . import access, signature
from .model import Change, Outcome, Problem
from .splice import Edit, Overlap, Source, apply, def_header, remove_statement

RULE = "framework-app"
APP_TYPES = {"flask.Flask": "Flask", "fastapi.FastAPI": "FastAPI"}
FALCON_APPS = {"falcon.App", "falcon.API", "falcon.asgi.App"}
REQUEST_TYPES = {"fastapi.Request", "starlette.requests.Request"}
SERVER_RUNS = {"uvicorn.run", "hypercorn.run", "waitress.serve"}
_VERBS = {"get", "post", "put", "patch", "delete"}
_FLASK_PARAM = re.compile(r"^<(?:(\w+):)?(\w+)>$")
_BRACE_PARAM = re.compile(r"^\{(\w+)(?::(\w+))?\}$")
_BODY_TYPES = {"dict", "Dict", "list", "List", "Any", "typing.Any", "typing.Dict"}
_SCALARS = {"str", "int", "float", "bool"}


def import_map(tree: ast.Module) -> dict[str, str]:
    """Local name → what it imports (``F`` → ``flask.Flask``)."""
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    found[alias.asname] = alias.name
                else:
                    top = alias.name.partition(".")[0]
                    found[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                found[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return found


def dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def qualified(node: ast.AST, imports: dict[str, str]) -> str | None:
    name = dotted(node)
    if name is None:
        return None
    head, _, rest = name.partition(".")
    target = imports.get(head)
    if target is None:
        return None
    return f"{target}.{rest}" if rest else target


# -- routes --------------------------------------------------------------------


@dataclasses.dataclass
class Route:
    fn: ast.FunctionDef | ast.AsyncFunctionDef
    decorator: ast.Call
    path: str
    methods: list[str]
    status: int | None


@dataclasses.dataclass(frozen=True)
class Segment:
    static: str | None = None
    param: str | None = None
    converter: str | None = None


def parse_path(path: str) -> list[Segment]:
    segments = []
    for part in path.strip("/").split("/"):
        if not part:
            continue
        m = _FLASK_PARAM.match(part)
        if m:
            segments.append(Segment(param=m.group(2), converter=m.group(1)))
            continue
        m = _BRACE_PARAM.match(part)
        if m:
            segments.append(Segment(param=m.group(1), converter=m.group(2)))
            continue
        segments.append(Segment(static=part))
    return segments


def _shape(path: str) -> tuple[str, ...]:
    return tuple(
        s.static if s.static is not None else ("{*}" if s.converter == "path" else "{}")
        for s in parse_path(path)
    )


def file_for(path: str, rel: str | None = None) -> str:
    """The script file that answers ``path`` in the kit."""
    segments = parse_path(path)
    parts = []
    for s in segments:
        if s.static is not None:
            parts.append(s.static)
        elif s.converter == "path":
            parts.append(f"[...{s.param}]")
        else:
            parts.append(f"[{s.param}]")
    if segments and segments[0].static is None and rel:
        parts.insert(0, rel[:-3] if rel.endswith(".py") else rel)
    return "/".join(parts) + ".py" if parts else "index.py"


def _const_str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _route(dec: ast.AST, apps: set[str]) -> Route | None:
    if not (
        isinstance(dec, ast.Call)
        and isinstance(dec.func, ast.Attribute)
        and isinstance(dec.func.value, ast.Name)
        and dec.func.value.id in apps
    ):
        return None
    attr = dec.func.attr
    keywords = {k.arg: k.value for k in dec.keywords if k.arg}
    if attr in _VERBS:
        methods = [attr.upper()]
    elif attr in ("route", "api_route"):
        given = keywords.get("methods")
        if isinstance(given, ast.List | ast.Tuple | ast.Set):
            methods = [str(_const_str(e) or "?").upper() for e in given.elts]
        else:
            methods = ["GET"]
    else:
        return None
    path = _const_str(dec.args[0] if dec.args else keywords.get("path", keywords.get("rule")))
    status = keywords.get("status_code")
    code = status.value if isinstance(status, ast.Constant) and type(status.value) is int else None
    return Route(None, dec, path if path is not None else "?", methods, code)  # type: ignore[arg-type]


# -- the rule -------------------------------------------------------------------


class _AppRewrite:
    def __init__(self, code: str, tree: ast.Module, rel: str | None) -> None:
        self.src = Source(code)
        self.tree = tree
        self.rel = rel
        self.imports = import_map(tree)
        self.edits: list[Edit] = []
        self.changes: list[Change] = []
        self.problems: list[Problem] = []
        self.handled: set[int] = set()  # ids of Name nodes of the app this rule deals with
        self.apps: dict[str, str] = {}
        self.inserts: dict[int, list[str]] = {}  # offset -> lines, in parameter order

    def problem(self, line: int, message: str, suggestion: str) -> None:
        self.problems.append(Problem(RULE, line, message, suggestion))

    def find_apps(self) -> list[ast.Assign]:
        found = []
        for stmt in self.tree.body:
            if not (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call)):
                continue
            if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
                continue
            kind = qualified(stmt.value.func, self.imports)
            if kind in FALCON_APPS:
                self.problem(
                    stmt.lineno,
                    "a Falcon app with resource classes is not rewritten",
                    "write the resource's on_get/on_post as GET/POST functions "
                    "(def GET(req, res): ...) in this script",
                )
            elif kind in APP_TYPES:
                self.apps[stmt.targets[0].id] = APP_TYPES[kind]
                self.handled.add(id(stmt.targets[0]))
                found.append(stmt)
        return found

    def run(self) -> Outcome:
        code = self.src.text
        creations = self.find_apps()
        if not self.apps:
            return Outcome(code, problems=self.problems)
        framework = next(iter(self.apps.values()))
        for stmt in creations:
            self.edits.append(remove_statement(self.src, stmt))
            self.changes.append(Change(RULE, stmt.lineno, self.src.segment(stmt), "(removed)"))
        routes = self.collect_routes()
        kept = self.choose(routes, framework)
        self.convert(kept)
        self.remove_runs()
        self.jsonify()
        self.leftover_app_uses(framework)
        self.leftover_framework_names(framework)
        self.edits += [Edit(at, at, "".join(lines)) for at, lines in self.inserts.items()]
        if self.problems:
            return Outcome(code, problems=self.problems)
        try:
            text = apply(code, self.edits)
        except Overlap:
            self.problem(1, f"this {framework} app could not be rewritten safely", _BY_HAND)
            return Outcome(code, problems=self.problems)
        return Outcome(text, self.changes)

    def collect_routes(self) -> list[Route]:
        routes = []
        for stmt in self.tree.body:
            if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for dec in stmt.decorator_list:
                route = _route(dec, set(self.apps))
                if route is None:
                    continue
                route.fn = stmt
                self.handled.add(id(dec.func.value))  # type: ignore[attr-defined]
                routes.append(route)
        return routes

    def own_shape(self) -> tuple[str, ...] | None:
        if self.rel is None:
            return None
        try:
            return _shape(route_for(self.rel).templates[-1])
        except NotRoutable:
            return None

    def choose(self, routes: list[Route], framework: str) -> list[Route]:
        paths = list(dict.fromkeys(r.path for r in routes))
        if not paths:
            return []
        keep: str | None = paths[0] if len(paths) == 1 else None
        if keep is None:
            own = self.own_shape()
            same = [p for p in paths if own is not None and _shape(p) == own]
            candidates = same or [p for p in paths if not _shape(p)]
            keep = candidates[0] if candidates else None
        where = self.rel or "this file"
        for route in routes:
            if route.path == keep:
                continue
            target = file_for(route.path)
            self.problem(
                route.decorator.lineno,
                f"{framework} route {route.path!r} is another endpoint: a script file is one "
                f"endpoint (kept: {keep!r} as {where})"
                if keep
                else f"{framework} route {route.path!r}: several routes and none is this file's own",
                f"move {route.fn.name}() to its own script {target}",
            )
        kept = [r for r in routes if r.path == keep]
        self.check_params(kept)
        self.check_methods(kept)
        return kept

    def check_params(self, kept: list[Route]) -> None:
        if not kept or self.rel is None:
            return
        try:
            have = route_for(self.rel).params
        except NotRoutable:
            return
        path = kept[0].path
        missing = [s.param for s in parse_path(path) if s.param and s.param not in have]
        if missing:
            self.problem(
                kept[0].decorator.lineno,
                f"path parameter(s) {', '.join(missing)} of {path!r} are not in the file name "
                f"{self.rel}",
                f"write this script as {file_for(path, self.rel)} so the route carries them",
            )

    def check_methods(self, kept: list[Route]) -> None:
        seen: dict[str, str] = {}
        for route in kept:
            for method in route.methods:
                if method == "HEAD":
                    continue
                if method not in METHODS:
                    self.problem(
                        route.decorator.lineno,
                        f"method {method!r} cannot be a method function",
                        f"the kit serves {', '.join(METHODS)} (HEAD runs GET)",
                    )
                elif seen.get(method, route.fn.name) != route.fn.name:
                    self.problem(
                        route.decorator.lineno,
                        f"{method} {route.path!r} is served by both {seen[method]}() and "
                        f"{route.fn.name}()",
                        "keep one function per method",
                    )
                seen[method] = route.fn.name

    # -- converting the kept functions --------------------------------------------
    def convert(self, kept: list[Route]) -> None:
        by_fn: dict[int, list[Route]] = {}
        for route in kept:
            by_fn.setdefault(id(route.fn), []).append(route)
        for group in by_fn.values():
            self.convert_one(group)
        self.request_outside(kept)

    def convert_one(self, group: list[Route]) -> None:
        fn = group[0].fn
        src = self.src
        methods = list(dict.fromkeys(m for r in group for m in r.methods if m in METHODS))
        if not methods:
            return
        for route in group:
            self.remove_decorator(route.decorator)
        spec = signature.Params()
        for seg in parse_path(group[0].path):
            if seg.param and seg.converter in ("int", "float"):
                spec.annotate[seg.param] = seg.converter
        path_params = {s.param for s in parse_path(group[0].path) if s.param}
        needs = self.fastapi_params(fn, path_params, spec)
        flask_request = next((n for n, q in self.imports.items() if q == "flask.request"), None)
        if flask_request and signature.uses(fn.body, flask_request):
            needs |= self.accesses(fn, flask_request, access.REQUEST)
        status = group[0].status
        if status and status != 200:
            self.wrap_returns(fn, status)
        spec.add = [n for n in ("req", "res", "body", "query") if n in needs]
        edit = signature.rewrite(src, fn, spec)
        if edit is not None:
            self.edits.append(edit)
        first = methods[0]
        referenced = self.referenced_elsewhere(fn)
        header = def_header(src, fn)
        entry = fn.name
        if fn.name != first and not referenced:
            self.edits.append(Edit(header.name_start, header.name_end, first))
            entry = first
        aliases = [m for m in methods if m != entry]
        if aliases:
            end = src.line_end(fn.end_lineno or fn.lineno)
            lead = "" if src.text[:end].endswith("\n") else "\n"
            lines = "".join(f"{m} = {entry}\n" for m in aliases)
            self.edits.append(Edit(end, end, lead + lines))
        before = "; ".join(src.segment(r.decorator) for r in group)
        after = f"def {entry}(...)" + "".join(f"; {m} = {entry}" for m in aliases)
        self.changes.append(Change(RULE, group[0].decorator.lineno, "@" + before, after))

    def remove_decorator(self, dec: ast.Call) -> None:
        src = self.src
        start = src.line_start(dec.lineno)
        before = src.text[start : src.offset(dec.lineno, dec.col_offset)].strip()
        end_line = dec.end_lineno or dec.lineno
        after = src.text[src.end(dec) : src.line_end(end_line)].strip()
        if before != "@" or (after and not after.startswith("#")):
            self.problem(dec.lineno, "a route decorator shares its line", _BY_HAND)
            return
        self.edits.append(Edit(start, src.line_end(end_line), ""))

    def referenced_elsewhere(self, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
        inside = {id(n) for n in ast.walk(fn)}
        return any(
            isinstance(n, ast.Name) and n.id == fn.name and id(n) not in inside
            for n in ast.walk(self.tree)
        )

    def accesses(self, fn: ast.AST, name: str, api: access.Api) -> set[str]:
        found = access.Accesses(self.src, name, api, RULE).run(fn.body)  # type: ignore[attr-defined]
        self.edits += found.edits
        self.changes += found.changes
        self.problems += found.problems
        return found.needs

    def fastapi_params(
        self,
        fn: ast.FunctionDef | ast.AsyncFunctionDef,
        path_params: set[str],
        spec: signature.Params,
    ) -> set[str]:
        needs: set[str] = set()
        a = fn.args
        defaults = dict(
            zip([x.arg for x in a.args][len(a.args) - len(a.defaults) :], a.defaults, strict=True)
        )
        for arg in a.args:
            name = arg.arg
            if name in path_params or name in CONTEXT_NAMES:
                continue
            annotation = dotted(arg.annotation) if arg.annotation is not None else None
            kind = qualified(arg.annotation, self.imports) if arg.annotation else None
            if kind in REQUEST_TYPES:
                needs |= self.accesses(fn, name, access.REQUEST)
                spec.drop.add(name)
            elif annotation in _BODY_TYPES or _subscripted(arg.annotation, _BODY_TYPES):
                self.edits += signature.rename_uses(self.src, fn.body, name, "body")
                spec.rename[name] = "body"
            elif self.is_model(annotation):
                self.problem(
                    arg.lineno,
                    f"parameter {name!r} is a pydantic model ({annotation})",
                    f"declare {annotation} as a msgspec.Struct and name the parameter body",
                )
            elif annotation is None or annotation in _SCALARS or _optional_scalar(arg.annotation):
                self.query_param(fn, arg, defaults.get(name))
                spec.drop.add(name)
                needs.add("query")
        return needs

    def is_model(self, annotation: str | None) -> bool:
        for stmt in self.tree.body:
            if isinstance(stmt, ast.ClassDef) and stmt.name == annotation:
                return any(
                    (qualified(b, self.imports) or "").endswith("BaseModel") for b in stmt.bases
                )
        return False

    def query_param(
        self, fn: ast.FunctionDef | ast.AsyncFunctionDef, arg: ast.arg, default: ast.expr | None
    ) -> None:
        src = self.src
        first = fn.body[0]
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
            and len(fn.body) > 1
        ):
            first = fn.body[1]  # after the docstring
        if first.lineno == fn.lineno:
            self.problem(fn.lineno, f"{fn.name}() has its body on the def line", _BY_HAND)
            return
        name = arg.arg
        kind = _scalar_of(arg.annotation)
        fallback = src.segment(default) if default is not None else None
        value = f'query["{name}"]'
        convert = {"int": "int({})", "float": "float({})", "bool": _BOOL}.get(kind or "", "{}")
        expr = convert.format(value)
        if fallback is not None:
            expr = f'{expr} if "{name}" in query else {fallback}'
        line = f"{src.indent(first.lineno)}{name} = {expr}\n"
        at = src.line_start(first.lineno)
        self.inserts.setdefault(at, []).append(line)
        self.changes.append(Change(RULE, arg.lineno, src.segment(arg), line.strip()))

    def wrap_returns(self, fn: ast.AST, status: int) -> None:
        for node in _own_nodes(fn):
            if isinstance(node, ast.Return) and node.value is not None:
                value = node.value
                start, end = self.src.start(value), self.src.end(value)
                if isinstance(value, ast.Tuple):
                    self.edits.append(Edit(start, start, "("))
                    self.edits.append(Edit(end, end, f"), {status}"))
                else:
                    self.edits.append(Edit(end, end, f", {status}"))
                self.changes.append(
                    Change(RULE, node.lineno, self.src.segment(node), f"... , {status}")
                )

    def request_outside(self, kept: list[Route]) -> None:
        flask_request = next((n for n, q in self.imports.items() if q == "flask.request"), None)
        if flask_request is None:
            return
        inside = {id(n) for r in kept for stmt in r.fn.body for n in ast.walk(stmt)}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name) and node.id == flask_request and id(node) not in inside:
                self.problem(
                    node.lineno,
                    "flask's request is used outside a route function",
                    "pass what it needs from the method function (body, query, req)",
                )
                return

    def remove_runs(self) -> None:
        for stmt in self.tree.body:
            if _is_main_block(stmt):
                assert isinstance(stmt, ast.If)
                runs = [s for s in stmt.body if self.is_run(s)]
                rest = [s for s in stmt.body if s not in runs and not _is_import(s)]
                if runs and not rest and not stmt.orelse:
                    self.edits.append(remove_statement(self.src, stmt))
                    self.changes.append(
                        Change(RULE, stmt.lineno, _first(self.src, stmt), "(removed)")
                    )
                else:
                    for run in runs:
                        self.drop(run)
            elif self.is_run(stmt):
                self.drop(stmt)

    def drop(self, stmt: ast.stmt) -> None:
        self.edits.append(remove_statement(self.src, stmt))
        self.changes.append(Change(RULE, stmt.lineno, self.src.segment(stmt), "(removed)"))

    def is_run(self, stmt: ast.stmt) -> bool:
        if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
            return False
        func = stmt.value.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            if func.value.id in self.apps and func.attr == "run":
                self.handled.add(id(func.value))
                return True
        if qualified(func, self.imports) in SERVER_RUNS:
            for node in ast.walk(stmt.value):
                if isinstance(node, ast.Name) and node.id in self.apps:
                    self.handled.add(id(node))
            return True
        return False

    def jsonify(self) -> None:
        for node in ast.walk(self.tree):
            if not (
                isinstance(node, ast.Call) and qualified(node.func, self.imports) == "flask.jsonify"
            ):
                continue
            src = self.src
            if (
                len(node.args) == 1
                and not node.keywords
                and not isinstance(node.args[0], ast.Starred)
            ):
                arg = node.args[0]
                self.edits.append(Edit(src.start(node), src.start(arg), ""))
                self.edits.append(Edit(src.end(arg), src.end(node), ""))
                after = src.segment(arg)
            elif node.keywords and not node.args:
                self.edits.append(Edit(src.start(node.func), src.end(node.func), "dict"))
                after = "dict" + src.segment(node)[len(src.segment(node.func)) :]
            else:
                self.problem(node.lineno, "jsonify() with several values", "return a list or dict")
                continue
            self.changes.append(Change(RULE, node.lineno, src.segment(node), after))

    def leftover_app_uses(self, framework: str) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name) and node.id in self.apps and id(node) not in self.handled:
                self.problem(
                    node.lineno,
                    f"the {framework} app object is used beyond routes ({node.id})",
                    "the kit has no app object: do that work inside the method functions",
                )

    def leftover_framework_names(self, framework: str) -> None:
        """Framework names other than those rewritten (``abort``, ``HTTPException``,
        ``make_response``...): refused, since the import would stay and fail."""
        done = {"flask.Flask", "fastapi.FastAPI", "flask.request", "flask.jsonify", *REQUEST_TYPES}
        seen: set[str] = set()
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.Name) or node.id in seen:
                continue
            target = self.imports.get(node.id, "")
            if target.partition(".")[0] in _FRAMEWORKS and target not in done:
                seen.add(node.id)
                self.problem(
                    node.lineno,
                    f"{target} has no kit equivalent the normaliser can rewrite",
                    "return (body, status) for an error answer, or res.status(...), "
                    "and drop the framework import",
                )


_FRAMEWORKS = frozenset({"flask", "fastapi", "starlette", "werkzeug"})
_BY_HAND = "rewrite it as method functions by hand (def GET(req): ...)"
_BOOL = '{}.lower() in ("1", "true", "yes", "on")'


def _first(src: Source, stmt: ast.stmt) -> str:
    return src.line_text(stmt.lineno)


def _own_nodes(fn: ast.AST) -> list[ast.AST]:
    """The nodes of a function, nested functions and classes left out."""
    out: list[ast.AST] = []
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        node = stack.pop()
        out.append(node)
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            stack.extend(ast.iter_child_nodes(node))
    return out


def _is_import(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Import | ast.ImportFrom)


def _is_main_block(stmt: ast.stmt) -> bool:
    if not isinstance(stmt, ast.If) or not isinstance(stmt.test, ast.Compare):
        return False
    test = stmt.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, *test.comparators]
    names = {s.id for s in sides if isinstance(s, ast.Name)}
    consts = {s.value for s in sides if isinstance(s, ast.Constant)}
    return names == {"__name__"} and consts == {"__main__"}


def _subscripted(node: ast.expr | None, heads: set[str]) -> bool:
    return isinstance(node, ast.Subscript) and dotted(node.value) in heads


def _optional_scalar(node: ast.expr | None) -> bool:
    return _scalar_of(node) is not None


def _scalar_of(node: ast.expr | None) -> str | None:
    """``int``, ``int | None``, ``Optional[int]`` → ``int``."""
    if node is None:
        return None
    if isinstance(node, ast.Name) and node.id in _SCALARS:
        return node.id
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        parts = [node.left, node.right]
        nones = [p for p in parts if isinstance(p, ast.Constant) and p.value is None]
        others = [p for p in parts if p not in nones]
        if len(nones) == 1 and len(others) == 1:
            return _scalar_of(others[0])
    if isinstance(node, ast.Subscript) and (dotted(node.value) or "").endswith("Optional"):
        return _scalar_of(node.slice)
    return None


def rewrite(code: str, tree: ast.Module, rel: str | None) -> Outcome:
    return _AppRewrite(code, tree, rel).run()
