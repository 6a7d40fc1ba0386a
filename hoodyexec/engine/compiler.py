"""Script source → a loaded, callable ``Script`` (once per file version).

The shape is read from the syntax tree:

* **body mode**: top-level ``return``/``await``/``yield``, or no entry function
  at all. The module body is wrapped into a function
  ``__hoody_body__(req, res, metadata, shared, console, ai)`` (async when it
  awaits) that runs on every request; names declared ``global`` persist in the
  module namespace within the worker. Line numbers are the file's own.
* **handler mode**: a top-level ``handler`` (or ``main``) function; the module
  runs once per worker and version, the function per request.
* **method functions**: top-level ``GET``/``POST``/``PUT``/``PATCH``/``DELETE``.

``handler`` and the method names may also be bound at module level another way
(``handler = _impl``, ``handler = lambda req: ...``, ``from _lib import
handler``: the Python form of ``module.exports = handler``); the callable is
resolved after the module runs.

Parameters of entry functions are resolved once into an injection plan (see
``Param``), so a request only looks values up and calls.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import functools
import inspect
import os
import sys
import types
import typing
from collections.abc import Callable, Collection
from typing import Any, final

import msgspec

from hoodyexec.engine import magic as magic_mod
from hoodyexec.engine.inject import NEEDS_REQ, compile_plan
from hoodyexec.engine.runtime import ScriptAI
from hoodyexec.errors import HoodyError

BODY_ARGS = ("req", "res", "metadata", "shared", "console", "ai")
CONTEXT_NAMES = frozenset({*BODY_ARGS, "body", "query", "params"})
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
BODY_FN = "__hoody_body__"
# A ``# @websocket`` script's entry for WebSocket connections (``async def``);
# ``ws`` is injectable there besides everything a handler gets.
WEBSOCKET_FN = "websocket"


class ScriptLoadError(HoodyError):
    """The script cannot run: syntax error, bad magic comment, failing module code."""

    status = 500


class Param(msgspec.Struct, frozen=True):
    """How one parameter is filled per request.

    ``source``: a context name (``req``, ``body``...), ``route`` (a route param),
    ``typed`` (decoded from the body or query into ``type``) or ``default``.
    """

    name: str
    source: str
    type: Any = None
    has_default: bool = False


class Entry:
    """One callable of a script with its injection plan.

    ``params`` is the plan as data; ``inject`` is the same plan compiled to one
    getter per parameter that receives a value (``compile_plan``), so a
    request fills its arguments without looking at any ``Param.source``.
    """

    __slots__ = (
        "fn",
        "name",
        "params",
        "inject",
        "is_async",
        "is_gen",
        "is_async_gen",
        "positional",
        "used",
        "needs_req",
        "needs_res",
    )

    def __init__(
        self, fn: Callable[..., Any], name: str, params: list[Param], positional: bool = False
    ) -> None:
        self.fn = fn
        self.name = name
        self.params = params
        self.positional = positional  # body mode: called with BODY_ARGS in order
        self.used = frozenset(p.name for p in params)
        # Body mode passes BODY_ARGS by position and needs no getters.
        self.inject = () if positional else compile_plan(params)
        # What a call needs built per request (decided once, here).
        if positional:
            self.needs_req = "req" in self.used or "metadata" in self.used
        else:
            self.needs_req = any(p.source in NEEDS_REQ for p in params)
        self.needs_res = any(p.source == "res" for p in params)
        self.is_async = inspect.iscoroutinefunction(fn)
        self.is_async_gen = inspect.isasyncgenfunction(fn)
        self.is_gen = inspect.isgeneratorfunction(fn)


@final
class Script:
    """A compiled script version; kept by each worker until the file changes."""

    __slots__ = (
        "path",
        "rel",
        "identity",
        "magic",
        "shape",
        "entries",
        "namespace",
        "allow",
        "offloaded",
        "source",
        "route",
        "guarded",
        "log_min",
        "log",
        "access_log",
        "ai",
        "ws",
    )

    def __init__(self, path: str, rel: str, identity: tuple[int, int, int], source: str) -> None:
        self.path = path
        self.rel = rel
        self.identity = identity
        self.source = source
        self.magic = magic_mod.Magic()
        self.shape = "body"
        self.entries: dict[str, Entry] = {}
        self.namespace: dict[str, Any] = {}
        self.allow = ""
        self.offloaded = False  # auto mode: moved to the thread pool after holding the loop
        self.route: Any = None
        self.guarded = False  # any of @enabled false / @cors / @token: checked per request
        self.log_min = 10
        self.log: Any = None  # the script's ScriptLog, set on first use
        self.access_log = False  # @log-level / @log-request-body: one access line per request
        self.ai: Any = None  # runtime.ScriptAI, set when compiled
        self.ws: Entry | None = None  # ``websocket()`` of a ``# @websocket`` script

    def entry_for(self, method: str) -> Entry | None:
        if self.shape != "methods":
            return self.entries["*"]
        entry = self.entries.get(method)
        if entry is None and method == "HEAD":
            entry = self.entries.get("GET")
        return entry


# -- syntax-tree analysis -----------------------------------------------------
class _TopLevel(ast.NodeVisitor):
    """Finds return/await/yield outside any function or class."""

    def __init__(self) -> None:
        self.has_return = self.has_await = self.has_yield = False

    def visit_FunctionDef(self, node: ast.AST) -> None:  # noqa: N802 - ast API
        return

    visit_AsyncFunctionDef = visit_Lambda = visit_ClassDef = visit_FunctionDef  # noqa: N815

    def visit_Return(self, node: ast.Return) -> None:  # noqa: N802
        self.has_return = True
        self.generic_visit(node)

    def visit_Await(self, node: ast.Await) -> None:  # noqa: N802
        self.has_await = True
        self.generic_visit(node)

    def visit_AsyncFor(self, node: ast.AST) -> None:  # noqa: N802
        self.has_await = True
        self.generic_visit(node)

    visit_AsyncWith = visit_AsyncFor  # noqa: N815

    def visit_Yield(self, node: ast.AST) -> None:  # noqa: N802
        self.has_yield = True
        self.generic_visit(node)

    visit_YieldFrom = visit_Yield  # noqa: N815

    def visit_comprehension(self, node: ast.comprehension) -> None:
        if node.is_async:
            self.has_await = True
        self.generic_visit(node)


# Entry names a module-level assignment or import can bind (``main`` only as a
# ``def``: ``main = ...`` is too common a plain variable to change a script's shape).
_BINDABLE = frozenset({"handler", *METHODS})


def _bound_entries(tree: ast.Module) -> dict[str, int]:
    """Entry names bound at module level other than by ``def``, with the line.

    The value is whatever the module computes (``handler = _impl``, a lambda, an
    import), so it is only known to be callable once the module has run.
    """
    found: dict[str, int] = {}
    for stmt in tree.body:
        names: list[str] = []
        if isinstance(stmt, ast.Assign):
            names = [t.id for t in stmt.targets if isinstance(t, ast.Name)]
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            names = [stmt.target.id] if isinstance(stmt.target, ast.Name) else []
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            names = [(a.asname or a.name).partition(".")[0] for a in stmt.names]
        for name in names:
            if name in _BINDABLE:
                found[name] = stmt.lineno
    return found


def analyse(tree: ast.Module, websocket: bool = False) -> dict[str, Any]:
    """Shape facts from a parsed module (no execution).

    ``websocket``: the script has ``# @websocket``; with a top-level
    ``websocket`` function and no HTTP entry its shape is ``websocket``
    (plain HTTP requests get 426)."""
    top = _TopLevel()
    for stmt in tree.body:
        top.visit(stmt)
    functions = {
        stmt.name: isinstance(stmt, ast.AsyncFunctionDef)
        for stmt in tree.body
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    bound = _bound_entries(tree)
    entries = functions.keys() | bound.keys()
    methods = [m for m in METHODS if m in entries]
    if top.has_return or top.has_await or top.has_yield:
        shape = "body"
    elif methods:
        shape = "methods"
    elif "handler" in entries or "main" in functions:
        shape = "handler"
    elif websocket and WEBSOCKET_FN in functions:
        shape = "websocket"
    else:
        shape = "body"
    ws_line = next(
        (
            stmt.lineno
            for stmt in tree.body
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef)
            and stmt.name == WEBSOCKET_FN
        ),
        None,
    )
    return {
        "shape": shape,
        "async": top.has_await if shape == "body" else None,
        "generator": top.has_yield if shape == "body" else None,
        "methods": methods if shape == "methods" else [],
        "handler": ("handler" if "handler" in entries else "main") if shape == "handler" else None,
        # entry names bound other than by ``def`` (name -> line): checked callable at load
        "bound": {n: line for n, line in bound.items() if n not in functions},
        # line of a top-level ``def websocket`` (a @websocket script's entry), or None
        "websocket": ws_line,
    }


def entry_definitions(
    tree: ast.Module, facts: dict[str, Any]
) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda]:
    """The definitions behind a script's entries, as far as the tree tells.

    A ``def``, a lambda bound to the name, or a name bound to a top-level
    ``def`` (``handler = _impl``); an entry bound any other way (an import, a
    call's result) is known only once the module runs, and is left out.
    """
    if facts["shape"] == "handler":
        names = [facts["handler"]]
    elif facts["shape"] == "methods":
        names = list(facts["methods"])
    else:
        return {}
    defs: dict[str, Any] = {}
    for stmt in tree.body:  # later bindings win, as when the module runs
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            defs[stmt.name] = stmt
        elif isinstance(stmt, ast.Assign | ast.AnnAssign) and stmt.value is not None:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            value: ast.AST | None = stmt.value
            if isinstance(value, ast.Name):
                value = defs.get(value.id)
            elif not isinstance(value, ast.Lambda):
                value = None
            for target in targets:
                if isinstance(target, ast.Name):
                    defs[target.id] = value
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            for alias in stmt.names:
                defs[(alias.asname or alias.name).partition(".")[0]] = None
    return {name: defs[name] for name in names if defs.get(name) is not None}


_DYNAMIC = frozenset({"locals", "vars", "eval", "exec", "globals", "__import__", "getattr"})


def used_context(tree: ast.Module) -> frozenset[str]:
    """Which of ``BODY_ARGS`` a body-mode script can reach.

    Names never mentioned need not be built per request. Any dynamic lookup
    (``locals()``, ``eval``...) makes every name count as used.
    """
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    if names & _DYNAMIC:
        return frozenset(BODY_ARGS)
    return frozenset(n for n in BODY_ARGS if n in names)


def parse(source: str, filename: str) -> ast.Module:
    try:
        return ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise _syntax_error(exc) from None


def slash_hint(exc: SyntaxError) -> str:
    """``; .py files use #...`` when the failing line is a ``//`` comment (the
    reference kit's prefix, which Python reads as an operator), else ``""``."""
    text = exc.text or ""
    return f"; {magic_mod.SLASH_HINT}" if text.lstrip().startswith("//") else ""


def _syntax_error(exc: SyntaxError) -> ScriptLoadError:
    line = exc.lineno or 0
    return ScriptLoadError(
        f"SyntaxError: {exc.msg} (line {line}){slash_hint(exc)}",
        type="SyntaxError",
        line=line,
        column=exc.offset or 0,
    )


def _body_module(tree: ast.Module, is_async: bool) -> ast.Module:
    """Wrap a body-mode module into one function, keeping line numbers."""
    future = [s for s in tree.body if isinstance(s, ast.ImportFrom) and s.module == "__future__"]
    body = [s for s in tree.body if s not in future] or [ast.Pass()]
    args = ast.arguments(
        posonlyargs=[],
        args=[ast.arg(arg=n) for n in BODY_ARGS],
        vararg=None,
        kwonlyargs=[],
        kw_defaults=[],
        kwarg=None,
        defaults=[],
    )
    cls = ast.AsyncFunctionDef if is_async else ast.FunctionDef
    first = body[0]
    fn = cls(name=BODY_FN, args=args, body=body, decorator_list=[], returns=None, type_comment=None)
    if sys.version_info >= (3, 12):
        fn.type_params = []
    fn.lineno, fn.col_offset = getattr(first, "lineno", 1), 0
    fn.end_lineno = max(getattr(n, "end_lineno", None) or fn.lineno for n in body)
    fn.end_col_offset = 0
    module = ast.Module(body=[*future, fn], type_ignores=[])
    return ast.fix_missing_locations(module)


# -- injection plans ----------------------------------------------------------
def _is_typed(tp: Any) -> bool:
    return tp is not inspect.Parameter.empty and tp is not Any and tp is not typing.Any


def _structured(tp: Any) -> bool:
    return (
        (isinstance(tp, type) and issubclass(tp, msgspec.Struct))
        or dataclasses.is_dataclass(tp)
        or typing.is_typeddict(tp)
    )


def _hinted(fn: Any) -> Any:
    """What ``typing.get_type_hints`` reads ``fn``'s annotations from: ``fn``, the
    function a ``functools.partial`` wraps, or a callable object's ``__call__``
    (an entry bound by assignment can be any callable)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.isfunction(fn) or inspect.ismethod(fn):
        return fn
    call = inspect.getattr_static(type(fn), "__call__", None)
    return call if inspect.isfunction(call) else fn


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def plan(
    fn: Callable[..., Any],
    route_params: tuple[str, ...],
    namespace: dict[str, Any],
    websocket: bool = False,
) -> list[Param]:
    """``websocket``: the plan of a ``websocket()`` entry, which also gets ``ws``."""
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(_hinted(fn), globalns=namespace)
    except Exception as exc:  # noqa: BLE001 - any failure is the script's
        raise ScriptLoadError(
            f"cannot resolve annotations of {_name(fn)}(): {exc}", type="AnnotationError"
        ) from None
    params = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        tp = hints.get(p.name, inspect.Parameter.empty)
        has_default = p.default is not inspect.Parameter.empty
        if p.name in route_params:
            params.append(
                Param(p.name, "route", tp if _is_typed(tp) and tp is not str else None, has_default)
            )
        elif websocket and p.name == "ws":
            params.append(Param("ws", "ws"))
        elif p.name in ("body", "query") and _is_typed(tp) and tp not in (dict, bytes, str, object):
            params.append(Param(p.name, "typed-" + p.name, tp, has_default))
        elif p.name in CONTEXT_NAMES:
            params.append(Param(p.name, p.name))
        elif _is_typed(tp) and _structured(tp):
            params.append(Param(p.name, "typed", tp, has_default))
        elif has_default:
            params.append(Param(p.name, "default", None, True))
        else:  # what ``injectable`` says no to
            known = (*route_params, "ws") if websocket else route_params
            raise ScriptLoadError(injection_error(_name(fn), p.name, known), type="InjectionError")
    return params


def injectable(
    name: str,
    route_params: Collection[str],
    *,
    has_default: bool,
    tp: Any = inspect.Parameter.empty,
) -> bool:
    """Can ``plan`` fill this parameter (``tp``: its resolved annotation)?

    The one injection rule, stated once: ``plan`` fails exactly when this is
    False, and validation applies it before a write (``scripts/write``), so a
    script whose every call would fail with ``InjectionError`` is refused.
    """
    return (
        name in route_params
        or name in CONTEXT_NAMES
        or has_default
        or (_is_typed(tp) and _structured(tp))
    )


def injection_error(fn_name: str, name: str, route_params: Collection[str]) -> str:
    known = ", ".join(sorted(CONTEXT_NAMES | set(route_params)))
    return (
        f"{fn_name}(): cannot inject parameter {name!r} (known: {known}; "
        "or annotate it with a msgspec Struct, dataclass or TypedDict)"
    )


# -- loading ------------------------------------------------------------------
def load(
    path: str,
    rel: str,
    identity: tuple[int, int, int],
    source: str,
    *,
    route_params: tuple[str, ...] = (),
    module_name: str = "hoodyexec.script",
    importer: Callable[..., Any] | None = None,
    default_timeout: int = 30000,
) -> Script:
    """Compile and load one script version; raises ``ScriptLoadError``."""
    script = Script(path, rel, identity, source)
    magic, problems = magic_mod.parse(source, default_timeout=default_timeout)
    if problems:
        first = problems[0]
        raise ScriptLoadError(
            f"Invalid magic comment: {first}",
            type="MagicCommentError",
            line=first.line,
            problems=[str(p) for p in problems],
        )
    script.magic = magic
    script.guarded = (not magic.enabled) or magic.cors is not None or magic.token is not None
    script.access_log = "log-level" in magic.raw or magic.log_request_body
    script.ai = ScriptAI(path, magic.raw)
    script.log_min = {"debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "off": 100}[
        magic.log_level
    ]
    tree = parse(source, path)
    facts = analyse(tree, websocket=magic.websocket)
    script.shape = facts["shape"]
    if magic.websocket:
        _check_websocket(facts, magic.lines.get("websocket"))
    # A real module object, so pickling, dataclasses and typing see a normal namespace.
    module = types.ModuleType(module_name)
    module.__dict__.update(
        __file__=path, __builtins__=_builtins_with(importer) if importer else builtins
    )
    namespace = script.namespace = module.__dict__
    if script.shape == "body":
        code_tree = _body_module(tree, bool(facts["async"]))
    else:
        code_tree = tree
    try:
        code = compile(code_tree, path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise _syntax_error(exc) from None
    try:
        exec(code, namespace)  # noqa: S102 - running the user's script is the product
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise ScriptLoadError(
            f"{type(exc).__name__} while loading the script: {exc}",
            type=type(exc).__name__,
            line=_error_line(exc, path),
        ) from exc
    if script.shape == "body":
        fn = namespace.pop(BODY_FN)
        used = used_context(tree)
        script.entries["*"] = Entry(
            fn, "body", [Param(n, n) for n in BODY_ARGS if n in used], positional=True
        )
    elif script.shape == "handler":
        fn = _entry_callable(namespace, facts["handler"], facts["bound"])
        script.entries["*"] = Entry(fn, facts["handler"], plan(fn, route_params, namespace))
    elif script.shape == "websocket":
        script.entries["*"] = Entry(_upgrade_required, "upgrade", [])
    else:
        for method in facts["methods"]:
            fn = _entry_callable(namespace, method, facts["bound"])
            script.entries[method] = Entry(fn, method, plan(fn, route_params, namespace))
        allowed = set(facts["methods"])
        if "GET" in allowed:
            allowed.add("HEAD")
        allowed.add("OPTIONS")
        script.allow = ", ".join(sorted(allowed))
    if magic.websocket:
        fn = namespace.get(WEBSOCKET_FN)
        if not inspect.iscoroutinefunction(fn):
            raise ScriptLoadError(
                f"{WEBSOCKET_FN} must be an async def (line {facts['websocket']})",
                type="ShapeError",
                line=facts["websocket"],
            )
        script.ws = Entry(fn, WEBSOCKET_FN, plan(fn, route_params, namespace, websocket=True))
    return script


def _check_websocket(facts: dict[str, Any], line: int | None) -> None:
    """A ``# @websocket`` script needs a top-level ``websocket`` function, which
    body mode (top-level ``return``/``await``/``yield``) cannot have."""
    where = f" (line {line})" if line else ""
    if facts["websocket"] is None:
        raise ScriptLoadError(
            f"@websocket{where}: define `async def {WEBSOCKET_FN}(ws, ...)` at the top level",
            type="ShapeError",
            line=line,
        )
    if facts["shape"] == "body":
        raise ScriptLoadError(
            f"@websocket{where}: a body-mode script (top-level return, await or yield) "
            f"cannot serve WebSockets; answer HTTP with handler or method functions "
            f"beside {WEBSOCKET_FN}()",
            type="ShapeError",
            line=line,
        )


def _upgrade_required() -> None:
    """The HTTP entry of a WebSocket-only script: 426 for any plain request."""
    raise HoodyError(
        "This script only accepts WebSocket connections",
        status=426,
        type="UpgradeRequired",
        headers={"Upgrade": "websocket"},
    )


def _entry_callable(namespace: dict[str, Any], name: str, bound: dict[str, int]) -> Any:
    """The entry ``name`` after the module ran; an assignment or import must have
    bound a callable to it (a ``def`` always did)."""
    fn = namespace.get(name)
    if not callable(fn):
        line = bound.get(name)
        raise ScriptLoadError(
            f"{name} must be callable (a function or lambda), got {type(fn).__name__}"
            + (f" (line {line})" if line else ""),
            type="ShapeError",
            line=line,
        )
    return fn


def _error_line(exc: BaseException, path: str) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _builtins_with(importer: Callable[..., Any]) -> dict[str, Any]:
    table = dict(builtins.__dict__)
    table["__import__"] = importer
    return table


def read_identity(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_ino, st.st_mtime_ns, st.st_size)
