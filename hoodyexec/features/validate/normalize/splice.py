"""Source splicing: edits on the text by the syntax tree's positions.

The normaliser never regenerates a file from its tree (``ast.unparse`` would
drop comments and reformat everything): each rule computes ``Edit``s, ranges of
the original text with their replacement, and ``apply`` splices them in, so
every character outside an edit is kept as it was.
"""

from __future__ import annotations

import ast
import bisect
import dataclasses
import io
import tokenize


@dataclasses.dataclass(frozen=True, order=True)
class Edit:
    start: int
    end: int
    text: str


class Overlap(ValueError):
    """Two edits of one pass touch the same text (a rule bug, never applied)."""


class Source:
    """A text with line starts, to turn tree positions into character offsets."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0]
        for index, char in enumerate(text):
            if char == "\n":
                self.starts.append(index + 1)

    def line_text(self, line: int) -> str:
        start = self.starts[line - 1]
        end = self.starts[line] if line < len(self.starts) else len(self.text)
        return self.text[start:end]

    def offset(self, line: int, col_bytes: int) -> int:
        """``ast`` columns count UTF-8 bytes; offsets count characters."""
        raw = self.line_text(line).encode("utf-8")[:col_bytes]
        return self.starts[line - 1] + len(raw.decode("utf-8", errors="ignore"))

    def at(self, line: int, col_chars: int) -> int:
        """``tokenize`` columns count characters."""
        return self.starts[line - 1] + col_chars

    def start(self, node: ast.AST) -> int:
        return self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]

    def end(self, node: ast.AST) -> int:
        return self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]

    def segment(self, node: ast.AST) -> str:
        return self.text[self.start(node) : self.end(node)]

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset)

    def line_start(self, line: int) -> int:
        return self.starts[line - 1]

    def line_end(self, line: int) -> int:
        """Offset just past the line's newline (or the end of the text)."""
        return self.starts[line] if line < len(self.starts) else len(self.text)

    def indent(self, line: int) -> str:
        text = self.line_text(line)
        return text[: len(text) - len(text.lstrip(" \t"))]


def first_line(node: ast.stmt) -> int:
    """The statement's first line, its decorators included."""
    decorators: list[ast.expr] = getattr(node, "decorator_list", None) or []
    return min([node.lineno, *(d.lineno for d in decorators)])


def owns_lines(src: Source, node: ast.stmt) -> bool:
    """Nothing but blanks before the statement on its first line, and nothing but
    blanks or a comment after it on its last one (no ``a; b``)."""
    first = first_line(node)
    before = src.text[src.line_start(first) : src.offset(first, _first_col(node))]
    after = src.text[src.end(node) : src.line_end(node.end_lineno or node.lineno)]
    rest = after.strip()
    return not before.strip() and (not rest or rest.startswith("#"))


def _first_col(node: ast.stmt) -> int:
    decorators: list[ast.expr] = getattr(node, "decorator_list", None) or []
    if decorators:
        first = min(decorators, key=lambda d: d.lineno)
        return max(first.col_offset - 1, 0)  # the "@"
    return node.col_offset


def remove_statement(src: Source, node: ast.stmt, replacement: str = "") -> Edit:
    """Delete a statement's whole lines (decorators and trailing comment included),
    putting ``replacement`` lines (already indented, newline-terminated) there."""
    if owns_lines(src, node):
        first = first_line(node)
        last = node.end_lineno or node.lineno
        if not replacement and (first == 1 or not src.line_text(first - 1).strip()):
            while last < len(src.starts) and not src.line_text(last + 1).strip():
                last += 1  # no pile of blank lines where the statement was
        return Edit(src.line_start(first), src.line_end(last), replacement)
    return Edit(src.start(node), src.end(node), replacement.strip() or "pass")


@dataclasses.dataclass(frozen=True)
class Header:
    """Where a ``def``'s name and its parameter parentheses are."""

    name_start: int
    name_end: int
    open_paren: int
    close_paren: int


def def_header(src: Source, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> Header:
    start = src.offset(fn.lineno, fn.col_offset)
    fragment = Source(src.text[start:])
    tokens = tokenize.generate_tokens(io.StringIO(fragment.text).readline)
    name: tuple[int, int] | None = None
    opened: int | None = None
    depth = 0
    for tok in tokens:
        pos = start + fragment.at(*tok.start)
        if tok.type == tokenize.NAME and name is None and tok.string == fn.name:
            name = (pos, start + fragment.at(*tok.end))
        elif tok.type == tokenize.OP and name is not None and tok.string in "([{":
            if depth == 0 and tok.string == "(":
                opened = pos
            depth += 1
        elif tok.type == tokenize.OP and name is not None and tok.string in ")]}":
            depth -= 1
            if depth == 0 and opened is not None:
                return Header(name[0], name[1], opened, pos)
    raise ValueError(f"cannot read the header of {fn.name}()")  # pragma: no cover


def apply(text: str, edits: list[Edit]) -> str:
    out: list[str] = []
    pos = 0
    for edit in sorted(edits):
        if edit.start < pos:
            raise Overlap(f"overlapping edits at offset {edit.start}")
        out.append(text[pos : edit.start])
        out.append(edit.text)
        pos = edit.end
    out.append(text[pos:])
    return "".join(out)


class LineMap:
    """New line number → line number in the text before the edits (the nearest
    untouched line for a line inside an edit)."""

    def __init__(self, src: Source, edits: list[Edit]) -> None:
        self.anchors: list[tuple[int, int]] = []  # (first new line after an edit, delta)
        delta = 0
        for edit in sorted(edits):
            removed = src.text.count("\n", edit.start, edit.end)
            delta += edit.text.count("\n") - removed
            old_line = src.line_of(edit.end)
            self.anchors.append((old_line + delta, delta))

    def old(self, new_line: int) -> int:
        delta = 0
        for first_new, d in self.anchors:
            if new_line >= first_new:
                delta = d
        return max(new_line - delta, 1)


def short(text: str, limit: int = 160) -> str:
    """One report-sized line of a snippet."""
    lines = [ln.rstrip() for ln in text.strip("\n").split("\n")]
    first = lines[0] if lines else ""
    more = " …" if len(lines) > 1 else ""
    if len(first) > limit:
        return first[: limit - 1] + "…"
    return first + more
