"""The pattern normaliser: predictable shapes agents write Python in, rewritten
into the script contract before validation (``scripts/write`` with
``validate: true``, and ``validate/script``, which reports what would change).

Stages, each reporting ``{rule, line, before, after}`` with the line in the
submitted code:

1. ``markdown-fence``: a fenced block (and the prose around it) → its code;
2. ``magic-comment``: ``// @cors *``, ``#@timeout 5s``, ``# @timeout: 5000`` →
   ``# @name value`` (durations converted to the unit of the name);
3. on the syntax tree, spliced into the text (comments and formatting of the
   untouched code kept), repeated until nothing changes: ``framework-app``
   (Flask/FastAPI), ``main-block``, ``handler-signature``, ``print-json``, then
   ``framework-import`` (framework imports left unused).

A form that cannot be rewritten without guessing is a ``Problem`` (a validation
error with its line and a suggestion) and that rule changes nothing. A script
no rule applies to comes back as the very same string; normalising a
normalised script changes nothing.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
from collections.abc import Callable
from typing import Any

from . import apps, entry, text
from .model import Change, Outcome, Problem

Rule = Callable[[str, ast.Module, str | None], Outcome]
TREE_RULES: tuple[Rule, ...] = (
    apps.rewrite,
    entry.main_block,
    entry.signatures,
    entry.falcon_requests,
    entry.print_json,
)
MAX_ROUNDS = 4


@dataclasses.dataclass
class Normalized:
    code: str
    changes: list[Change]
    problems: list[Problem]

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def report(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.changes]

    def errors(self) -> list[dict[str, Any]]:
        return [p.to_item() for p in self.problems]


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


class _Lines:
    """Maps a line of the current text back to the submitted one."""

    def __init__(self, shift: int) -> None:
        self.steps: list[Callable[[int], int]] = [lambda n: n + shift]

    def original(self, line: int) -> int:
        for step in reversed(self.steps):
            line = step(line)
        return line

    def edited(self, before: str, after: str) -> None:
        matcher = difflib.SequenceMatcher(None, before.split("\n"), after.split("\n"), False)
        blocks = matcher.get_matching_blocks()

        def step(line: int) -> int:
            index = line - 1
            old = index
            for block in blocks:
                if block.b <= index < block.b + block.size:
                    return block.a + (index - block.b) + 1
                if block.b <= index:
                    old = block.a + block.size + (index - block.b - block.size)
            return max(old, 0) + 1

        self.steps.append(step)


class _Run:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self.changes: list[Change] = []
        self.problems: dict[tuple[str, int, str], Problem] = {}

    def take(self, outcome: Outcome, lines: _Lines) -> None:
        for change in outcome.changes:
            change.line = lines.original(change.line)
            self.changes.append(change)
        for problem in outcome.problems:
            problem.line = lines.original(problem.line)
            self.problems.setdefault((problem.rule, problem.line, problem.message), problem)

    def tree_round(self, code: str, lines: _Lines) -> str:
        for rule in TREE_RULES:
            tree = _parse(code)
            if tree is None:
                return code
            outcome = rule(code, tree, self.path)
            if outcome.text != code and _parse(outcome.text) is None:
                problem = Problem(
                    outcome.changes[0].rule if outcome.changes else "normalize",
                    outcome.changes[0].line if outcome.changes else 1,
                    "this form could not be rewritten into valid Python",
                    "rewrite it by hand following the script contract",
                )
                self.take(Outcome(code, problems=[problem]), lines)
                continue
            self.take(outcome, lines)
            if outcome.text != code:
                lines.edited(code, outcome.text)
                code = outcome.text
        return code


def normalize(code: str, path: str | None = None) -> Normalized:
    """Rewrite ``code`` (a script at ``path`` relative to its instance, when known)."""
    if path is not None and not path.endswith(".py"):
        return Normalized(code, [], [])
    run = _Run(path)
    fenced, shift = text.strip_fences(code)
    run.take(fenced, _Lines(0))
    lines = _Lines(shift)
    magic = text.fix_magic(fenced.text)
    run.take(magic, lines)
    current = magic.text
    for _ in range(MAX_ROUNDS):
        after = run.tree_round(current, lines)
        if after == current:
            break
        current = after
    if run.changes:
        tree = _parse(current)
        if tree is not None:
            pruned = entry.prune_imports(current, tree, path)
            run.take(pruned, lines)
            current = pruned.text
    if not run.changes:
        return Normalized(code, [], list(run.problems.values()))
    current = current.strip("\n") + "\n"  # lines that held only removed statements
    changes = sorted(run.changes, key=lambda c: c.line)
    return Normalized(current, changes, list(run.problems.values()))


__all__ = ["Change", "Normalized", "Problem", "normalize"]
