"""Static checks of a script, for the validate endpoints and ``scripts/write``.

Nothing here runs user code: scripts are parsed and compiled but never
executed, imports are located with ``find_spec`` but never imported, and type
definitions are built from an allowlist of syntax nodes, never evaluated. Every
function returns plain JSON-able dicts; messages about a place in the code
carry ``(line N)``.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import importlib.metadata
import importlib.util
import inspect
import json
import os
import sys
import threading
import types
import typing
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import msgspec

from hoodyexec.engine import compiler
from hoodyexec.engine import magic as magic_mod
from hoodyexec.engine.routes import NotRoutable, route_for
from hoodyexec.features.validate import normalize as normalizer
from hoodyexec.features.validate.normalize.apps import dotted as _dotted

Item = dict[str, Any]

# -- syntax -------------------------------------------------------------------


@dataclasses.dataclass
class _Compiled:
    """One parse + compile of a script, shared by the checks that need it."""

    tree: ast.Module | None
    facts: dict[str, Any]
    errors: list[Item]
    warnings: list[Item]

    @property
    def shape(self) -> str | None:
        return self.facts.get("shape")


# Recording warnings swaps process-wide state; serialise our own uses of it.
_WARNINGS_LOCK = threading.Lock()


def _item(line: int, column: int, message: str) -> Item:
    return {"line": line, "column": column, "message": message}


def _syntax_item(exc: SyntaxError) -> Item:
    line = exc.lineno or 0
    message = f"{type(exc).__name__}: {exc.msg} (line {line}){compiler.slash_hint(exc)}"
    return _item(line, exc.offset or 0, message)


def _failure_item(exc: Exception, code: str) -> Item:
    """Errors the parser raises without a position (null bytes, deep nesting)."""
    if "\0" in code:
        line = code.count("\n", 0, code.index("\0")) + 1
        return _item(line, 0, f"SyntaxError: source contains a null byte (line {line})")
    if isinstance(exc, RecursionError | MemoryError):
        return _item(0, 0, "SyntaxError: the code is nested too deeply to compile")
    return _item(0, 0, f"SyntaxError: {exc}")


def _compile(code: str, filename: str) -> _Compiled:
    """Parse like ``compiler.parse`` and compile the tree the kit would run."""
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _compile_quietly(code, filename)
    result.warnings = [
        _item(w.lineno, 0, f"{w.message} (line {w.lineno})")
        for w in caught
        if issubclass(w.category, SyntaxWarning | DeprecationWarning) and w.filename == filename
    ]
    return result


def _parse_script(code: str, filename: str) -> tuple[ast.Module | None, list[Item]]:
    """``compiler.parse`` semantics, with the error as an item instead of raised."""
    if "\0" in code:  # the parser reports no line for it
        return None, [_failure_item(ValueError("null byte"), code)]
    try:
        return ast.parse(code, filename=filename), []
    except SyntaxError as exc:
        return None, [_syntax_item(exc)]
    except (ValueError, RecursionError, MemoryError) as exc:
        return None, [_failure_item(exc, code)]


def _compile_quietly(code: str, filename: str) -> _Compiled:
    tree, errors = _parse_script(code, filename)
    if tree is None:
        return _Compiled(None, {}, errors, [])
    facts = compiler.analyse(tree)
    if facts["shape"] == "body":
        runnable = compiler._body_module(tree, bool(facts["async"]))
    else:
        runnable = tree
    try:
        compile(runnable, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        return _Compiled(tree, facts, [_syntax_item(exc)], [])
    except (ValueError, RecursionError, MemoryError) as exc:
        return _Compiled(tree, facts, [_failure_item(exc, code)], [])
    return _Compiled(tree, facts, [], [])


def _syntax_result(compiled: _Compiled) -> dict[str, Any]:
    return {"valid": not compiled.errors, "errors": compiled.errors, "shape": compiled.shape}


def check_syntax(code: str, filename: str = "<script>") -> dict[str, Any]:
    """Parse and compile without running: ``{valid, errors, shape}``."""
    return _syntax_result(_compile(code, filename))


# -- static checks ("typescript") -----------------------------------------------

# What a module namespace holds without being assigned (``__class__``: methods).
_IMPLICIT = frozenset(
    {
        "__name__",
        "__file__",
        "__doc__",
        "__spec__",
        "__loader__",
        "__package__",
        "__builtins__",
        "__annotations__",
        "__cached__",
        "__class__",
        "__module__",
        "__qualname__",
    }
)
_KNOWN = frozenset(dir(builtins)) | _IMPLICIT | compiler.CONTEXT_NAMES | set(compiler.BODY_ARGS)
_TYPE_PARAMS = tuple(
    getattr(ast, n) for n in ("TypeVar", "ParamSpec", "TypeVarTuple") if hasattr(ast, n)
)
_FUNCTIONS = ast.FunctionDef | ast.AsyncFunctionDef


@dataclasses.dataclass
class _Names:
    """Every name the module binds, every name it reads, and its annotations."""

    defined: set[str]
    uses: list[ast.Name]
    annotations: list[ast.expr]
    star: bool


def _annotations(tree: ast.Module) -> list[ast.expr]:
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, _FUNCTIONS):
            a = node.args
            args = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
            found.extend(x.annotation for x in args if x is not None and x.annotation)
            if node.returns is not None:
                found.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
    return found


def _bound_by(node: ast.AST) -> Iterator[str]:
    """Names a (non-``Name``) node binds."""
    if isinstance(node, _FUNCTIONS | ast.ClassDef):
        yield node.name
    elif isinstance(node, ast.arg):
        yield node.arg
    elif isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.asname or alias.name.partition(".")[0]
    elif isinstance(node, ast.ImportFrom):
        yield from (a.asname or a.name for a in node.names if a.name != "*")
    elif isinstance(node, ast.Global | ast.Nonlocal):
        yield from node.names
    elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) or isinstance(
        node, _TYPE_PARAMS
    ):
        if node.name:
            yield node.name
    elif isinstance(node, ast.MatchMapping) and node.rest:
        yield node.rest


def _collect_names(tree: ast.Module) -> _Names:
    annotations = _annotations(tree)
    in_annotation = {id(n) for a in annotations for n in ast.walk(a)}
    # ``x += 1`` and ``del x`` read x: they do not define it.
    read_targets = {id(n.target) for n in ast.walk(tree) if isinstance(n, ast.AugAssign)}
    names = _Names(set(), [], annotations, star=False)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if id(node) in in_annotation:
                continue
            if isinstance(node.ctx, ast.Store) and id(node) not in read_targets:
                names.defined.add(node.id)
            else:
                names.uses.append(node)
        elif isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
            names.star = True
        names.defined.update(_bound_by(node))
    return names


def _undefined(names: _Names) -> list[Item]:
    known = names.defined | _KNOWN
    seen: set[tuple[str, int]] = set()
    errors = []
    for node in names.uses:
        key = (node.id, node.lineno)
        if node.id in known or key in seen:
            continue
        seen.add(key)
        message = f"name '{node.id}' is used but never defined (line {node.lineno})"
        errors.append(_item(node.lineno, node.col_offset + 1, message))
    return errors


class _AnnotationCheck:
    """Names inside annotations must resolve; string annotations are parsed too."""

    MAX_STRING_DEPTH = 8

    def __init__(self, defined: set[str], star: bool) -> None:
        self.known = defined | _KNOWN
        self.star = star
        self.errors: list[Item] = []
        self._seen: set[tuple[str, int, int]] = set()

    def check(self, node: ast.AST, at: tuple[int, int] | None = None, depth: int = 0) -> None:
        """``at``: where to report (the string's place, for names parsed from a string)."""
        pos = at or (getattr(node, "lineno", 0), getattr(node, "col_offset", -1) + 1)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str):
                self._string(node.value, pos, depth)
            return
        dotted = _dotted(node)
        if dotted is not None:
            self._resolve(dotted, pos)
        elif isinstance(node, ast.Subscript):
            self._subscript(node, at, depth)
        else:
            for child in ast.iter_child_nodes(node):
                self.check(child, at, depth)

    def _subscript(self, node: ast.Subscript, at: tuple[int, int] | None, depth: int) -> None:
        self.check(node.value, at, depth)
        head = (_dotted(node.value) or "").rpartition(".")[2]
        if head == "Literal":  # its strings are values, not forward references
            return
        elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if head == "Annotated" and elts:
            self.check(elts[0], at, depth)
            for extra in elts[1:]:  # metadata: evaluated, but strings are plain values
                for name in (n for n in ast.walk(extra) if isinstance(n, ast.Name)):
                    self._resolve(name.id, at or (name.lineno, name.col_offset + 1))
            return
        for elt in elts:
            self.check(elt, at, depth)

    def _string(self, text: str, pos: tuple[int, int], depth: int) -> None:
        if depth >= self.MAX_STRING_DEPTH:
            return
        try:
            parsed = ast.parse(text.strip(), mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            message = f"annotation {text!r} is not a valid expression (line {pos[0]})"
            self.errors.append(_item(pos[0], pos[1], message))
            return
        self.check(parsed.body, pos, depth + 1)

    def _resolve(self, dotted: str, pos: tuple[int, int]) -> None:
        if self.star or dotted.partition(".")[0] in self.known:
            return
        key = (dotted, *pos)
        if key not in self._seen:
            self._seen.add(key)
            message = f"annotation '{dotted}' cannot be resolved (line {pos[0]})"
            self.errors.append(_item(pos[0], pos[1], message))


def _entry_problems(
    tree: ast.Module,
    facts: dict[str, Any],
    defined: set[str] | None,
    route_params: tuple[str, ...] | None,
) -> list[Item]:
    """Entry parameters the kit cannot fill, by the compiler's own rule
    (``compiler.injectable``). ``route_params`` None: the script's path is not
    known, so a route parameter cannot be told from a mistake (see
    ``_static_result``). ``defined``: the module's names (None: a star import
    may bind anything)."""
    found: list[Item] = []
    for name, definition in compiler.entry_definitions(tree, facts).items():
        for arg, has_default, positional_only in _parameters(definition.args):
            message = _parameter_problem(
                name, arg, has_default, positional_only, defined, route_params
            )
            if message:
                found.append(_item(arg.lineno, arg.col_offset + 1, message))
    return found


def _parameters(args: ast.arguments) -> Iterator[tuple[ast.arg, bool, bool]]:
    """(arg, has a default, positional-only) for every named parameter."""
    positional = [*args.posonlyargs, *args.args]
    first_default = len(positional) - len(args.defaults)
    for index, arg in enumerate(positional):
        yield arg, index >= first_default, index < len(args.posonlyargs)
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        yield arg, default is not None, False


def _parameter_problem(
    fn: str,
    arg: ast.arg,
    has_default: bool,
    positional_only: bool,
    defined: set[str] | None,
    route_params: tuple[str, ...] | None,
) -> str:
    line = arg.lineno
    if positional_only and not has_default:
        return (
            f"{fn}(): positional-only parameter '{arg.arg}' cannot be injected: "
            f"parameters are passed by name (line {line})"
        )
    tp = _static_type(arg.annotation, defined)
    known_routes = route_params or ()
    if tp is None or compiler.injectable(arg.arg, known_routes, has_default=has_default, tp=tp):
        return ""
    unless = "" if route_params is not None else "; unless it is a route parameter"
    return f"{compiler.injection_error(fn, arg.arg, known_routes)}{unless} (line {line})"


def _static_type(annotation: ast.expr | None, defined: set[str] | None) -> Any:
    """An annotation as ``compiler.injectable`` sees it, without running anything:
    none at all, or a bare builtin type the module does not rebind (``x: int``).
    None when only running the module could tell (it may name a Struct)."""
    if annotation is None:
        return inspect.Parameter.empty
    if isinstance(annotation, ast.Name) and defined is not None and annotation.id not in defined:
        value = getattr(builtins, annotation.id, None)
        if isinstance(value, type):
            return value
    return None


def _position(item: Item) -> tuple[int, int]:
    return (item["line"], item["column"])


def _static_result(
    compiled: _Compiled, route_params: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """Static checks. Entry parameters that cannot be injected are errors when the
    script's route params are known (``route_params``: a write knows its path), since
    every call would fail; without a path they are warnings (``id`` may be a route
    param)."""
    if compiled.errors or compiled.tree is None:
        return {"valid": False, "errors": compiled.errors, "warnings": compiled.warnings}
    names = _collect_names(compiled.tree)
    errors = [] if names.star else _undefined(names)
    annotations = _AnnotationCheck(names.defined, names.star)
    for annotation in names.annotations:
        annotations.check(annotation)
    defined = None if names.star else names.defined
    entries = _entry_problems(compiled.tree, compiled.facts, defined, route_params)
    found = list(compiled.warnings)
    (found if route_params is None else errors).extend(entries)
    errors = sorted(errors + annotations.errors, key=_position)
    return {"valid": not errors, "errors": errors, "warnings": sorted(found, key=_position)}


def check_static(code: str, route_params: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Syntax, undefined names, unresolvable annotations, uninjectable params."""
    return _static_result(_compile(code, "<script>"), route_params)


def route_params_of(path: str | None) -> tuple[str, ...] | None:
    """The route params a script at ``path`` gets; None when it is not a route (a
    private module, no path given): then nothing calls its entry functions."""
    if path is None:
        return None
    try:
        return route_for(path).params
    except NotRoutable:
        return None


# -- dependencies ---------------------------------------------------------------

# Import names whose distribution is called something else (for missing modules).
DISTRIBUTION_HINTS: dict[str, str] = {
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
    "Cryptodome": "pycryptodomex",
    "OpenSSL": "pyOpenSSL",
    "google.protobuf": "protobuf",
    "googleapiclient": "google-api-python-client",
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
    "MySQLdb": "mysqlclient",
    "dns": "dnspython",
    "jose": "python-jose",
    "multipart": "python-multipart",
    "socks": "PySocks",
    "git": "GitPython",
    "github": "PyGithub",
    "nacl": "PyNaCl",
    "markdown": "Markdown",
    "gi": "PyGObject",
    "kafka": "kafka-python",
    "sentence_transformers": "sentence-transformers",
    "discord": "discord.py",
    "ldap": "python-ldap",
}

# Handlers that make an import inside ``try`` a deliberate, optional one.
_IMPORT_GUARDS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


@dataclasses.dataclass
class _Import:
    top: str
    name: str
    line: int
    optional: bool
    local: bool = False
    probes: tuple[str, ...] = ()  # dotted names to look a distribution hint up by


def _guards_imports(handlers: list[ast.ExceptHandler]) -> bool:
    for handler in handlers:
        if handler.type is None:
            return True
        caught = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any((_dotted(c) or "").rpartition(".")[2] in _IMPORT_GUARDS for c in caught):
            return True
    return False


def _suppresses_imports(node: ast.With | ast.AsyncWith) -> bool:
    """``with contextlib.suppress(ImportError):``."""
    for item in node.items:
        call = item.context_expr
        if isinstance(call, ast.Call) and (_dotted(call.func) or "").endswith("suppress"):
            if any((_dotted(a) or "").rpartition(".")[2] in _IMPORT_GUARDS for a in call.args):
                return True
    return False


class _ImportFinder(ast.NodeVisitor):
    """Every import in source order, marking those guarded by an ImportError handler."""

    def __init__(self) -> None:
        self.found: list[_Import] = []
        self.guarded = 0

    def _guarded_body(self, body: list[ast.stmt], guarded: bool) -> None:
        self.guarded += guarded
        for stmt in body:
            self.visit(stmt)
        self.guarded -= guarded

    def visit_Try(self, node: ast.Try | ast.TryStar) -> None:  # noqa: N802 - ast API
        self._guarded_body(node.body, _guards_imports(node.handlers))
        for part in (node.handlers, node.orelse, node.finalbody):
            for child in part:
                self.visit(child)

    visit_TryStar = visit_Try  # noqa: N815

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:  # noqa: N802
        for item in node.items:
            self.visit(item)
        self._guarded_body(node.body, _suppresses_imports(node))

    visit_AsyncWith = visit_With  # noqa: N815

    def visit_Import(self, node: ast.Import) -> None:  # noqa: N802
        for alias in node.names:
            top = alias.name.partition(".")[0]
            self.found.append(_Import(top, alias.name, node.lineno, bool(self.guarded)))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:  # noqa: N802
        if node.level:
            name = "." * node.level + (node.module or "")
            self.found.append(_Import(name, name, node.lineno, bool(self.guarded), local=True))
            return
        module = node.module or ""
        probes = tuple(f"{module}.{a.name}" for a in node.names if a.name != "*")
        top = module.partition(".")[0]
        self.found.append(_Import(top, module, node.lineno, bool(self.guarded), probes=probes))


def _is_stdlib(top: str) -> bool:
    return top in sys.stdlib_module_names or top in sys.builtin_module_names


def _in_dirs(top: str, dirs: Iterable[str]) -> bool:
    """A ``<name>.py`` file or a ``<name>/`` package in one of ``dirs``."""
    for folder in dirs:
        base = os.path.join(folder, top)
        if os.path.isfile(base + ".py") or os.path.isdir(base):
            return True
    return False


def _findable(top: str) -> bool:
    """Locate without importing (a top-level name imports nothing)."""
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError, AttributeError):
        return False


def _status(
    top: str, script_dir: str | None, extra_paths: Sequence[str], parents: Sequence[str] = ()
) -> str:
    if _is_stdlib(top):
        return "stdlib"
    if top.startswith("_"):
        if script_dir is None or _in_dirs(top, [script_dir, *parents, *extra_paths]):
            return "private"
    if _findable(top) or _in_dirs(top, extra_paths):
        return "installed"
    return "missing"


def _missing_hint(found: _Import) -> str | None:
    if found.top.startswith("_"):
        return None  # a private module: nothing to install
    for dotted in (*found.probes, found.name):
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            hint = DISTRIBUTION_HINTS.get(".".join(parts[:end]))
            if hint:
                return hint
    return found.top


def _installed_hint(top: str, table: Mapping[str, list[str]]) -> str | None:
    dists = table.get(top)
    return dists[0] if dists else None


def _missing_message(found: _Import, hint: str | None) -> str:
    if hint is None:
        what = f"no private module '{found.top}.py' next to the script"
    else:
        what = f"module '{found.top}' is not installed (pip install {hint})"
    kind = "optional import" if found.optional else "import"
    return f"{kind} '{found.name}' cannot be resolved: {what} (line {found.line})"


def _private_parents(script_dir: str | None, path: str | None) -> list[str]:
    """The folders from the script's parent up to its instance root, where the
    engine also looks for private modules (``path`` is relative to that root)."""
    if script_dir is None or not path:
        return []
    out = []
    folder = script_dir
    for _ in range(path.strip("/").count("/")):
        folder = os.path.dirname(folder)
        out.append(folder)
    return out


def _dependencies(
    tree: ast.Module | None,
    parse_errors: list[Item],
    script_dir: str | None,
    extra_paths: Sequence[str],
    parents: Sequence[str] = (),
) -> dict[str, Any]:
    finder = _ImportFinder()
    if tree is not None:
        finder.visit(tree)
    statuses: dict[str, str] = {}
    for found in finder.found:
        if not found.local and found.top not in statuses:
            statuses[found.top] = _status(found.top, script_dir, extra_paths, parents)
    installed = (
        importlib.metadata.packages_distributions() if "installed" in statuses.values() else {}
    )
    imports: list[dict[str, Any]] = []
    hints: dict[str, str] = {}
    errors: list[Item] = list(parse_errors)
    notes: list[Item] = []
    for found in finder.found:
        status = "local" if found.local else statuses[found.top]
        hint = None
        if status == "installed":
            hint = _installed_hint(found.top, installed)
        elif status == "missing":
            hint = _missing_hint(found)
            (notes if found.optional else errors).append(
                _item(found.line, 0, _missing_message(found, hint))
            )
        if hint is not None:
            hints.setdefault(found.top, hint)
        imports.append(
            {
                "module": found.top,
                "name": found.name,
                "line": found.line,
                "status": status,
                "distribution": hint,
                "optional": found.optional,
            }
        )
    result: dict[str, Any] = {"valid": not errors, "imports": imports}
    for status in ("stdlib", "installed", "missing", "private"):
        result[status] = sorted({top for top, s in statuses.items() if s == status})
    result.update(hints=hints, errors=errors, warnings=notes)
    return result


def check_dependencies(
    code: str, *, script_dir: str | None = None, extra_paths: list[str] | None = None
) -> dict[str, Any]:
    """Classify every import as stdlib / private / installed / missing / local."""
    tree, problems = _parse_script(code, "<script>")
    return _dependencies(tree, problems, script_dir, list(extra_paths or ()))


# -- magic comments -------------------------------------------------------------


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else value


def check_magic(code: str) -> dict[str, Any]:
    """The leading ``# @name value`` block, as the kit parses it."""
    parsed, problems = magic_mod.parse(code)
    errors = [
        {
            "line": p.line,
            "name": p.name,
            "message": f"@{p.name}: {p.message} (line {p.line})",
        }
        for p in problems
    ]
    comments = {name: _json_value(value) for name, value in parsed.raw.items()}
    return {"valid": not errors, "errors": errors, "comments": comments}


# -- everything at once ---------------------------------------------------------


def _messages(results: Iterable[dict[str, Any]], key: str) -> list[str]:
    """Each message once, in order (a syntax error shows up in several checks)."""
    seen: dict[str, None] = {}
    for result in results:
        for entry in result.get(key, ()):
            seen.setdefault(entry["message"], None)
    return list(seen)


def validate_script(
    code: str,
    *,
    script_dir: str | None = None,
    extra_paths: list[str] | None = None,
    path: str | None = None,
    normalize: bool = False,
) -> dict[str, Any]:
    """All four checks; ``errors``/``warnings`` summarise them as text. ``path``
    (relative to the instance, as ``scripts/write`` knows it) gives the route params,
    which makes uninjectable entry parameters errors. ``normalize``: run the pattern
    normaliser first and check its output; the answer then has ``normalized`` (the
    changes) and, when anything changed, ``normalizedCode``; forms it refuses are
    errors of the static checks."""
    normalized = normalizer.normalize(code, path) if normalize else None
    if normalized is not None:
        code = normalized.code
    compiled = _compile(code, "<script>")
    parse_errors = compiled.errors if compiled.tree is None else []
    static = _static_result(compiled, route_params_of(path))
    if normalized is not None and normalized.problems:
        static = {**static, "valid": False, "errors": normalized.errors() + static["errors"]}
    results = {
        "syntax": _syntax_result(compiled),
        "typescript": static,
        "dependencies": _dependencies(
            compiled.tree,
            parse_errors,
            script_dir,
            list(extra_paths or ()),
            _private_parents(script_dir, path),
        ),
        "magicComments": check_magic(code),
    }
    answer = {
        "valid": all(r["valid"] for r in results.values()),
        "results": results,
        "errors": _messages(results.values(), "errors"),
        "warnings": _messages(results.values(), "warnings"),
    }
    if normalized is not None:
        answer["normalized"] = normalized.report()
        if normalized.changed:
            answer["normalizedCode"] = normalized.code
    return answer


# -- return types ---------------------------------------------------------------

MAX_TYPE_CHARS = 4096
_MAX_TYPE_DEPTH = 32
_SCALARS: dict[str, Any] = {"int": int, "float": float, "str": str, "bool": bool}
_ANYS: dict[str, Any] = {"Any": Any, "object": object}
# name -> (canonical name, origin, number of parameters; None: any number)
_GENERICS: dict[str, tuple[str, Any, int | None]] = {
    "list": ("list", list, 1),
    "List": ("list", list, 1),
    "set": ("set", set, 1),
    "Set": ("set", set, 1),
    "frozenset": ("frozenset", frozenset, 1),
    "FrozenSet": ("frozenset", frozenset, 1),
    "Sequence": ("Sequence", Sequence, 1),
    "dict": ("dict", dict, 2),
    "Dict": ("dict", dict, 2),
    "Mapping": ("Mapping", Mapping, 2),
    "tuple": ("tuple", tuple, None),
    "Tuple": ("tuple", tuple, None),
}
_FORMS = frozenset({"Optional", "Union", "Literal"})
_TYPING_NAMES = frozenset(
    {"Any", "List", "Set", "FrozenSet", "Sequence", "Dict", "Mapping", "Tuple", *_FORMS}
)
_NAMES = frozenset(_SCALARS) | frozenset(_ANYS) | frozenset(_GENERICS) | _FORMS


class UnsupportedType(ValueError):
    """The type text uses something outside the allowlist."""


@dataclasses.dataclass(frozen=True)
class _Type:
    """A built type: the runtime object, its text, and its parts for error paths."""

    tp: Any
    text: str
    kind: str  # scalar | any | none | literal | union | list | dict | tuple | tuple...
    args: tuple[_Type, ...] = ()


_NONE = _Type(type(None), "None", "none")


def _type_name(node: ast.AST) -> str | None:
    """An allowed name, written bare or as ``typing.X``."""
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return node.id
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "typing"
        and node.attr in _TYPING_NAMES
    ):
        return node.attr
    return None


def _unsupported(node: ast.AST, why: str) -> UnsupportedType:
    return UnsupportedType(f"{why}: {ast.unparse(node)!r}")


def _parse_type(text: str) -> ast.expr:
    if len(text) > MAX_TYPE_CHARS:
        raise UnsupportedType(f"longer than {MAX_TYPE_CHARS} characters")
    try:
        return ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise UnsupportedType(f"not a valid expression: {text!r}") from None


def _build(node: ast.AST, depth: int = 0) -> _Type:
    """The type a node denotes, from allowlisted node kinds and names only."""
    if depth > _MAX_TYPE_DEPTH:
        raise UnsupportedType("nested too deeply")
    if isinstance(node, ast.Constant):
        if node.value is None:
            return _NONE
        if isinstance(node.value, str):  # a quoted (forward) reference
            return _build(_parse_type(node.value), depth + 1)
        raise _unsupported(node, "a constant is not a type")
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union([_build(node.left, depth + 1), _build(node.right, depth + 1)])
    if isinstance(node, ast.Subscript):
        return _subscript(node, depth)
    name = _type_name(node)
    if name is None:
        raise _unsupported(node, _why_not(node))
    return _bare(name, node)


def _why_not(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return "unknown type name"
    if isinstance(node, ast.Attribute):
        return "only typing.<name> attributes are allowed"
    return f"{type(node).__name__.lower()} expressions are not allowed"


def _bare(name: str, node: ast.AST) -> _Type:
    if name in _SCALARS:
        return _Type(_SCALARS[name], name, "scalar")
    if name in _ANYS:
        return _Type(_ANYS[name], name, "any")
    if name in _GENERICS:
        canonical, origin, _ = _GENERICS[name]
        return _Type(origin, canonical, "scalar")
    raise _unsupported(node, f"{name} needs parameters")


def _subscript(node: ast.Subscript, depth: int) -> _Type:
    name = _type_name(node.value)
    if name is None or name in _SCALARS or name in _ANYS:
        raise _unsupported(node, "not a generic type")
    elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    if name == "Literal":
        return _literal(node, elts)
    if name in ("Optional", "Union"):
        if not elts or (name == "Optional" and len(elts) != 1):
            raise _unsupported(node, f"wrong number of parameters for {name}")
        parts = [_build(e, depth + 1) for e in elts]
        return _union(parts + [_NONE] if name == "Optional" else parts)
    canonical, origin, arity = _GENERICS[name]
    if arity is None:
        return _tuple(node, elts, depth)
    if len(elts) != arity:
        raise _unsupported(node, f"{canonical} takes {arity} parameter(s)")
    args = tuple(_build(e, depth + 1) for e in elts)
    text = f"{canonical}[{', '.join(a.text for a in args)}]"
    kind = "dict" if arity == 2 else "list"
    return _Type(origin[tuple(a.tp for a in args)], text, kind, args)


def _tuple(node: ast.Subscript, elts: list[ast.expr], depth: int) -> _Type:
    if not elts:
        return _Type(tuple[()], "tuple[()]", "tuple")
    variadic = isinstance(elts[-1], ast.Constant) and elts[-1].value is Ellipsis
    if variadic:
        if len(elts) != 2:
            raise _unsupported(node, "... must follow exactly one type")
        item = _build(elts[0], depth + 1)
        tp = types.GenericAlias(tuple, (item.tp, ...))  # tuple[item.tp, ...]
        return _Type(tp, f"tuple[{item.text}, ...]", "tuple...", (item,))
    args = tuple(_build(e, depth + 1) for e in elts)
    text = f"tuple[{', '.join(a.text for a in args)}]"
    return _Type(types.GenericAlias(tuple, tuple(a.tp for a in args)), text, "tuple", args)


def _literal_value(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and (
        node.value is None or isinstance(node.value, str | int)  # bool is an int
    ):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) is int
    ):
        return -node.operand.value
    raise _unsupported(node, "Literal takes str, int, bool or None values")


def _literal(node: ast.Subscript, elts: list[ast.expr]) -> _Type:
    if not elts:
        raise _unsupported(node, "Literal needs values")
    values = tuple(_literal_value(e) for e in elts)
    text = f"Literal[{', '.join(repr(v) for v in values)}]"
    # Literal[values], built at run time (mypy reads X[...] as a type)
    return _Type(typing.Literal.__getitem__(values), text, "literal")


def _union(parts: list[_Type]) -> _Type:
    members: dict[str, _Type] = {}
    for part in parts:
        for member in part.args if part.kind == "union" else (part,):
            members.setdefault(member.text, member)
    flat = tuple(members.values())
    if len(flat) == 1:
        return flat[0]
    tp = typing.Union.__getitem__(tuple(m.tp for m in flat))  # Union[...] built from a list
    return _Type(tp, " | ".join(m.text for m in flat), "union", flat)


def _parse_built(text: str) -> _Type:
    if not isinstance(text, str) or not text.strip():
        raise UnsupportedType("empty")
    return _build(_parse_type(text))


def parse_type(text: str) -> tuple[Any, str]:
    """(runtime type, normalised text) for a type written as text; never evaluates it."""
    built = _parse_built(text)
    return built.tp, built.text


# -- locating the failing part of a value ------------------------------------


def _conversion_error(value: Any, tp: Any) -> str | None:
    try:
        msgspec.convert(value, tp, strict=True, str_keys=True)
    except msgspec.ValidationError as exc:
        return str(exc)
    return None


def _key_segment(key: Any) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f".{key}"
    return f"[{json.dumps(key)}]"


def _at(message: str, path: str) -> str:
    """Re-root msgspec's ``- at `$...``` suffix under ``path``."""
    text, sep, where = message.partition(" - at `")
    if not sep:
        return f"{message} - at `{path}`"
    if where.startswith("$"):
        return f"{text} - at `{path}{where[1:]}"
    return f"{text} - at `{where.replace('`$`', f'`{path}`')}"


def _locate(value: Any, t: _Type, path: str) -> str | None:
    """The error of the deepest failing part of ``value``, with its JSON path."""
    message = _conversion_error(value, t.tp)
    if message is None:
        return None
    return _failing_part(value, t, path) or _at(message, path)


def _failing_part(value: Any, t: _Type, path: str) -> str | None:
    if t.kind in ("list", "tuple...") and isinstance(value, list):
        return _first(_locate(v, t.args[0], f"{path}[{i}]") for i, v in enumerate(value))
    if t.kind == "tuple" and isinstance(value, list) and len(value) == len(t.args):
        pairs = zip(value, t.args, strict=True)
        return _first(_locate(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(pairs))
    if t.kind == "dict" and isinstance(value, dict):
        return _first(_dict_item(k, v, t, path) for k, v in value.items())
    if t.kind == "union" and value is not None:
        others = [m for m in t.args if m.kind != "none"]
        if len(others) == 1:
            return _locate(value, others[0], path)
    return None


def _dict_item(key: Any, value: Any, t: _Type, path: str) -> str | None:
    key_error = _conversion_error({key: None}, types.GenericAlias(dict, (t.args[0].tp, Any)))
    if key_error is not None:
        return f"{key_error.partition(' - at `')[0]} - at key {json.dumps(key)} in `{path}`"
    return _locate(value, t.args[1], path + _key_segment(key))


def _first(messages: Iterable[str | None]) -> str | None:
    return next((m for m in messages if m is not None), None)


def check_return_type(type_definition: str, value: Any) -> dict[str, Any]:
    """Does a (JSON-decoded) value match a type written as text?"""
    try:
        built = _parse_built(type_definition)
    except UnsupportedType as exc:
        return {"valid": False, "errors": [f"unsupported type expression: {exc}"], "type": None}
    try:
        message = _locate(value, built, "$")
    except TypeError as exc:  # a combination msgspec cannot check (e.g. list | tuple)
        error = f"unsupported type for validation: {exc}"
        return {"valid": False, "errors": [error], "type": built.text}
    errors = [] if message is None else [message]
    return {"valid": message is None, "errors": errors, "type": built.text}
