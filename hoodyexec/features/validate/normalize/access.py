"""Rewriting what a foreign request or response object is asked for into the
kit's injected names: ``request.json`` → ``body``, ``request.args`` → ``query``,
``resp.media = x`` → ``res.json(x)``... Each table is one framework's API; a use
the table does not know is reported, never guessed."""

from __future__ import annotations

import ast
import dataclasses
import re

from .model import Change, Problem
from .splice import Edit, Source

# attribute -> replacement ("{args}": the call's argument text)
REQUEST_ATTRS = {
    "json": "body",
    "form": "body",
    "args": "query",
    "query_params": "query",
    "method": "req.method",
    "headers": "req.headers",
    "path": "req.path",
    "url": "req.url",
    "cookies": "req.cookies",
    "data": "req.raw",
    "remote_addr": "req.client",
    "view_args": "req.params",
    "path_params": "req.params",
}
REQUEST_CALLS = {
    "get_json": "body",
    "json": "body",
    "form": "body",
    "body": "req.raw",
    "get_data": "req.raw",
}
FALCON_REQ_ATTRS = {
    "media": "body",
    "params": "query",
    "method": "req.method",
    "path": "req.path",
    "url": "req.url",
    "headers": "req.headers",
    "cookies": "req.cookies",
    "remote_addr": "req.client",
}
FALCON_REQ_CALLS = {
    "get_media": "body",
    "get_param": "query.get({args})",
    "get_header": "req.headers.get({args})",
}
FALCON_RESP_SETS = {
    "media": "res.json({value})",
    "text": "res.text({value})",
    "body": "res.send({value})",
    "data": "res.send({value})",
    "content_type": 'res.header("Content-Type", {value})',
    "status": "res.status({status})",
}
FALCON_RESP_CALLS = {"set_header": "res.header({args})", "append_header": "res.header({args})"}
_STATUS_NAME = re.compile(r"^HTTP_(\d{3})$")


@dataclasses.dataclass(frozen=True)
class Api:
    """One object's API: what its attributes and calls become."""

    attrs: dict[str, str]
    calls: dict[str, str]
    sets: dict[str, str] = dataclasses.field(default_factory=dict)
    label: str = "request"


REQUEST = Api(REQUEST_ATTRS, REQUEST_CALLS, label="request")
FALCON_REQ = Api(FALCON_REQ_ATTRS, FALCON_REQ_CALLS, label="Falcon request")
FALCON_RESP = Api({}, FALCON_RESP_CALLS, FALCON_RESP_SETS, label="Falcon response")


@dataclasses.dataclass
class Rewrite:
    edits: list[Edit] = dataclasses.field(default_factory=list)
    needs: set[str] = dataclasses.field(default_factory=set)
    changes: list[Change] = dataclasses.field(default_factory=list)
    problems: list[Problem] = dataclasses.field(default_factory=list)


def _needs(text: str) -> str:
    return text.split(".", 1)[0].split("(", 1)[0]


class Accesses:
    """Collects the edits for every use of ``name`` (an object of ``api``) inside
    ``nodes``."""

    def __init__(self, src: Source, name: str, api: Api, rule: str) -> None:
        self.src = src
        self.name = name
        self.api = api
        self.rule = rule
        self.out = Rewrite()

    def run(self, nodes: list[ast.stmt]) -> Rewrite:
        for node in nodes:
            self.visit(node)
        return self.out

    def _is_target(self, node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and node.id == self.name

    def _replace(self, node: ast.AST, text: str) -> None:
        before = self.src.segment(node)
        if before == text:  # the kit's object answers the same (req.method)
            self.out.needs.add(_needs(text))
            return
        self.out.edits.append(Edit(self.src.start(node), self.src.end(node), text))
        self.out.needs.add(_needs(text))
        self.out.changes.append(Change(self.rule, node.lineno, before, text))  # type: ignore[attr-defined]

    def _args(self, call: ast.Call) -> str:
        if not call.args and not call.keywords:
            return ""
        first = min((self.src.start(a) for a in [*call.args, *call.keywords]), default=0)
        last = max(self.src.end(a) for a in [*call.args, *call.keywords])
        return self.src.text[first:last]

    def _problem(self, node: ast.AST, what: str) -> None:
        self.out.problems.append(
            Problem(
                self.rule,
                node.lineno,  # type: ignore[attr-defined]
                f"{what} has no kit equivalent the normaliser knows",
                "use the injected req, res, body, query or params (see the script contract)",
            )
        )

    def _call(self, call: ast.Call, whole: ast.AST) -> bool:
        func = call.func
        if not (isinstance(func, ast.Attribute) and self._is_target(func.value)):
            return False
        template = self.api.calls.get(func.attr)
        if template is None:
            return False
        self._replace(whole, template.format(args=self._args(call)))
        return True

    def visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.Await) and isinstance(node.value, ast.Call):
            if self._call(node.value, node):
                return
        if isinstance(node, ast.Call):
            if self._args_get_with_type(node):
                return
            if self._call(node, node):
                return
        if isinstance(node, ast.Assign) and self._set(node):
            return
        if isinstance(node, ast.Attribute) and self._is_target(node.value):
            template = self.api.attrs.get(node.attr)
            if template is None:
                self._problem(node, f"{self.api.label} attribute {self.src.segment(node)!r}")
            else:
                self._replace(node, template)
            return
        if self._is_target(node):
            self._problem(node, f"the {self.api.label} object {self.name!r} used as a whole")
            return
        for child in ast.iter_child_nodes(node):
            self.visit(child)

    def _args_get_with_type(self, call: ast.Call) -> bool:
        """``request.args.get("n", type=int)``: Mapping.get takes no ``type``."""
        func = call.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "get"
            and isinstance(func.value, ast.Attribute)
            and self._is_target(func.value.value)
            and call.keywords
        ):
            self.out.problems.append(
                Problem(
                    self.rule,
                    call.lineno,
                    f"{self.src.segment(call)!r} converts with keyword arguments",
                    "read the value from the injected query and convert it "
                    '(int(query.get("n", 0)))',
                )
            )
            return True
        return False

    def _set(self, node: ast.Assign) -> bool:
        if len(node.targets) != 1:
            return False
        target = node.targets[0]
        if not (isinstance(target, ast.Attribute) and self._is_target(target.value)):
            return False
        template = self.api.sets.get(target.attr)
        if template is None:
            return False
        value = self.src.segment(node.value)
        status = _status_code(node.value) if target.attr == "status" else None
        if target.attr == "status" and status is None:
            self._problem(node, f"the status {value!r}")
            return True
        text = template.format(value=value, status=status)
        # the value's own uses (resp.media = req.media) are rewritten too
        inner = Accesses(self.src, self.name, self.api, self.rule)
        inner.visit(node.value)
        if inner.out.edits:
            self._problem(node, f"{self.src.segment(node)!r}")
            return True
        self._replace(node, text)
        return True


def _status_code(node: ast.expr) -> int | None:
    """``201``, ``"201 Created"``, ``falcon.HTTP_201``, ``HTTP_201``."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        head = node.value.strip()[:3]
        return int(head) if head.isdigit() else None
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    m = _STATUS_NAME.match(name or "")
    return int(m.group(1)) if m else None
