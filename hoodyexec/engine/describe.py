"""The routed scripts of one instance described from their loaded code.

The user OpenAPI document (``features/user_openapi``) is built from the types
scripts declare: entry parameters, their annotations, return annotations,
docstrings and magic comments. Those types exist only once a script's module
has run, and user code runs only in request workers, so the control worker asks
one of them (query topic ``Describe``) and this module answers from the
worker's own catalog: the same route table, the same compiled scripts and the
same injection plans (``compiler.Param``) that serve requests. Nothing is parsed
a second time. Types become JSON Schema through
``msgspec.json.schema_components``, in one call per answer so components shared
by several scripts are named once.
"""

from __future__ import annotations

import collections.abc
import inspect
import re
import typing
from dataclasses import dataclass, field
from typing import Any

import msgspec

from hoodyexec.engine.catalog import Catalog, Instance
from hoodyexec.engine.compiler import Entry, Script, ScriptLoadError, _hinted
from hoodyexec.engine.routes import Route
from hoodyexec.errors import NotFound
from hoodyexec.ipc.protocol import (
    Describe,
    Described,
    OperationFacts,
    ParamFacts,
    ScriptFacts,
)

REF = "#/components/schemas/{name}"
_STREAMS = frozenset(
    {
        collections.abc.Generator,
        collections.abc.AsyncGenerator,
        collections.abc.Iterator,
        collections.abc.AsyncIterator,
        collections.abc.Iterable,
        collections.abc.AsyncIterable,
    }
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _renamed(value: Any, refs: dict[str, str]) -> Any:
    """``value`` (a JSON Schema) with each ``$ref`` in ``refs`` replaced."""
    if isinstance(value, dict):
        return {
            k: refs.get(v, v) if k == "$ref" and isinstance(v, str) else _renamed(v, refs)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_renamed(v, refs) for v in value]
    return value


# Parameters whose value comes from the request but carries no type.
_UNTYPED = {"body": False, "query": False}


class _Schemas:
    """Types seen while describing, turned into JSON Schema all at once."""

    def __init__(self) -> None:
        self.types: list[Any] = []
        self.schemas: list[dict[str, Any]] = []
        self.components: dict[str, Any] = {}

    def add(self, tp: Any) -> int:
        """An index for ``tp``'s schema (an unsupported type stays ``{}``: any value)."""
        try:
            msgspec.json.schema(tp)
        except (TypeError, ValueError):
            tp = Any
        self.types.append(tp)
        return len(self.types) - 1

    def build(self, prefix: str = "") -> None:
        """The schemas, with component names OpenAPI accepts (``[A-Za-z0-9._-]``).

        msgspec names a component by its class, qualified by its module when two
        classes share a name; a script's module name carries its path
        (``hoodyexec.scripts.default.1.people.[id]``), shortened here to the
        path in the instance (``prefix`` removed) and made safe.
        """
        found, components = msgspec.json.schema_components(self.types, ref_template=REF)
        names: dict[str, str] = {}
        for name in components:
            short = name[len(prefix) :] if prefix and name.startswith(prefix) else name
            safe = _UNSAFE.sub("_", short) or "Schema"
            while safe in names.values():
                safe += "_"
            names[name] = safe
        refs = {REF.format(name=old): REF.format(name=new) for old, new in names.items()}
        self.components = {names[k]: _renamed(v, refs) for k, v in components.items()}
        self.schemas = [_renamed(dict(s), refs) for s in found]

    def get(self, index: int) -> dict[str, Any]:
        return self.schemas[index]

    def requires_input(self, index: int) -> bool:
        """Does an empty value fail this schema (an object with required fields,
        or anything but an object)? An empty body decodes as ``{}``."""
        schema = self.schemas[index]
        ref = schema.get("$ref")
        if isinstance(ref, str):
            schema = self.components.get(ref.rsplit("/", 1)[-1], {})
        if not schema:
            return False
        return schema.get("type") != "object" or bool(schema.get("required"))


@dataclass
class _Param:
    name: str
    source: str
    index: int | None = None
    required: bool = True


@dataclass
class _Operation:
    method: str
    doc: str | None
    params: list[_Param] = field(default_factory=list)
    returns: str = "unknown"
    index: int | None = None
    status: int = 200


def _status_of(tp: Any) -> int | None:
    """``Literal[201]`` → 201."""
    if typing.get_origin(tp) is typing.Literal:
        args = typing.get_args(tp)
        if len(args) == 1 and isinstance(args[0], int) and 100 <= args[0] <= 599:
            return args[0]
    return None


def _return_kind(tp: Any) -> tuple[str, Any, int | None]:
    """(kind, the JSON type, status) of a return annotation."""
    status = None
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) in (2, 3):
            status = _status_of(args[1])
            if status is not None:
                tp = args[0]
    if tp is None or tp is type(None):
        return "none", None, status or 204
    if tp is str:
        return "text", None, status
    if tp is bytes:
        return "bytes", None, status
    if typing.get_origin(tp) in _STREAMS or tp in _STREAMS:
        return "stream", None, status
    return "json", tp, status


def _operation(entry: Entry, method: str, script: Script, schemas: _Schemas) -> _Operation:
    doc = inspect.getdoc(entry.fn) or _module_doc(script)
    op = _Operation(method, doc)
    if entry.is_gen or entry.is_async_gen:
        op.returns = "stream"
    elif not entry.positional:
        try:
            hints = typing.get_type_hints(_hinted(entry.fn), globalns=script.namespace)
        except Exception:  # noqa: BLE001 - the plan resolved them; be safe anyway
            hints = {}
        if "return" in hints:
            kind, tp, status = _return_kind(hints["return"])
            op.returns = kind
            op.status = status or 200
            if kind == "json":
                op.index = schemas.add(tp)
    for p in entry.params:
        if p.source == "route":
            op.params.append(_Param(p.name, p.source, schemas.add(p.type or str)))
        elif p.source in ("typed", "typed-body", "typed-query"):
            op.params.append(_Param(p.name, p.source, schemas.add(p.type), not p.has_default))
        elif p.source in _UNTYPED and not entry.positional:
            op.params.append(_Param(p.name, p.source, None, False))
    return op


def _module_doc(script: Script) -> str | None:
    doc = script.namespace.get("__doc__")
    return inspect.cleandoc(doc) if isinstance(doc, str) else None


def _facts(op: _Operation, schemas: _Schemas) -> OperationFacts:
    params = []
    for p in op.params:
        required = p.required
        if p.index is not None and p.source != "route":
            required = required and schemas.requires_input(p.index)
        schema = schemas.get(p.index) if p.index is not None else None
        params.append(ParamFacts(p.name, p.source, schema, required))
    return OperationFacts(
        method=op.method,
        doc=op.doc,
        params=params,
        returns=op.returns,
        schema=schemas.get(op.index) if op.index is not None else None,
        status=op.status,
    )


class Describer:
    """The worker side of ``Describe``."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def __call__(self, call: Describe) -> Described:
        self.catalog.refresh()  # what inotify queued: the table and cache are current
        inst = self.catalog.existing(call.subdomain, call.exec_id)
        if inst is None:
            raise NotFound(f"No instance {call.subdomain}/{call.exec_id}")
        table = inst.router
        wanted = None if call.files is None else set(call.files)
        schemas = _Schemas()
        found: list[tuple[Route, Script | str, list[_Operation]]] = []
        for route in table.routes:
            if wanted is not None and route.file not in wanted:
                continue
            loaded = self._load(inst, route)
            if loaded is None:
                continue
            ops = []
            if isinstance(loaded, Script):
                ops = [_operation(e, m, loaded, schemas) for m, e in loaded.entries.items()]
            found.append((route, loaded, ops))
        schemas.build(f"hoodyexec.scripts.{inst.subdomain}.{inst.exec_id}.")
        scripts = [self._script(r, s, ops, schemas) for r, s, ops in found]
        return Described(scripts=scripts, components=schemas.components, skipped=table.report())

    def _load(self, inst: Instance, route: Route) -> Script | str | None:
        """The compiled script, or why it does not load (``None``: gone meanwhile)."""
        try:
            return self.catalog.load(inst, route)
        except ScriptLoadError as exc:
            return exc.message
        except FileNotFoundError:
            return None

    @staticmethod
    def _script(
        route: Route, loaded: Script | str, ops: list[_Operation], schemas: _Schemas
    ) -> ScriptFacts:
        facts = ScriptFacts(
            file=route.file,
            route=route.route,
            templates=list(route.templates),
            params=list(route.params),
        )
        if not isinstance(loaded, Script):
            return msgspec.structs.replace(facts, error=loaded)
        magic = loaded.magic
        return msgspec.structs.replace(
            facts,
            shape=loaded.shape,
            description=magic.description,
            tags=list(magic.tags),
            token=magic.token is not None,
            enabled=magic.enabled,
            operations=[_facts(op, schemas) for op in ops],
        )
