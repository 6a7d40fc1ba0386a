"""What a normalising rule reports: changes made and forms it refuses to guess."""

from __future__ import annotations

import dataclasses
from typing import Any

from .splice import short


@dataclasses.dataclass
class Change:
    rule: str
    line: int
    before: str
    after: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "line": self.line,
            "before": short(self.before),
            "after": short(self.after),
        }


@dataclasses.dataclass
class Problem:
    """A form the normaliser cannot rewrite without guessing: a validation error."""

    rule: str
    line: int
    message: str
    suggestion: str

    def to_item(self) -> dict[str, Any]:
        text = f"{self.message} (line {self.line}); {self.suggestion}"
        return {
            "line": self.line,
            "column": 0,
            "message": text,
            "rule": self.rule,
            "suggestion": self.suggestion,
        }


@dataclasses.dataclass
class Outcome:
    """One rule's result on one text: the new text (unchanged when nothing
    applies), with what changed and what it refused."""

    text: str
    changes: list[Change] = dataclasses.field(default_factory=list)
    problems: list[Problem] = dataclasses.field(default_factory=list)
