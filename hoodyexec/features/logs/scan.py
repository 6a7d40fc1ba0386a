"""Reading log lines: forwards or from the end, by blocks, never a whole file;
which execution a line belongs to; and the search scanner.

Standard library only: ``logs/search`` runs this file as its own process
(``python -I -S scan.py``), because a regular expression cannot be stopped
inside CPython's ``re`` — a match holds the GIL until it ends, so a
catastrophic pattern in a thread would freeze the control worker's loop. The
process is killed at the search's deadline; what it found until then is kept.

Which execution a line belongs to:

- script logs: ``2026-11-28T12:00:00.123456Z INFO  [executionId] message``;
  a line without that head (the rest of a multi-line message, a traceback)
  belongs to the entry above it;
- access and schedule logs (and ``slow.log``): JSON lines with an
  ``executionId`` field;
- other kit log lines carry no execution: they match an id they contain.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import IO, Any

BLOCK = 64 * 1024
MAX_LINE = 64 * 1024  # bytes of one line kept; the rest is cut and marked
CLIPPED = b" [...line clipped]"
MAX_PENDING = 10_000  # continuation lines held while reading backwards
HEAD = re.compile(rb"^\d{4}-\d\d-\d\dT[0-9:.]+Z [A-Z]+ +\[([^\]\n]*)\]")
_ID = b'"executionId"'


def clip(line: bytes, max_line: int = MAX_LINE) -> bytes:
    return line[:max_line] + CLIPPED if len(line) > max_line else line


def text(line: bytes) -> str:
    return line.decode("utf-8", "replace")


class Splitter:
    """Bytes in, complete lines out; a line longer than ``max_line`` comes out
    once, cut, and the rest of it is skipped (line numbers stay right)."""

    __slots__ = ("buf", "skipping", "max_line")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.buf = b""
        self.skipping = False
        self.max_line = max_line

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            piece = data[start:end]
            start = end + 1
            if self.skipping:
                self.skipping = False
                continue
            line, self.buf = self.buf + piece, b""
            out.append(clip(line, self.max_line))
        if not self.skipping:
            self.buf += data[start:]
            if len(self.buf) > self.max_line:
                out.append(self.buf[: self.max_line] + CLIPPED)
                self.buf, self.skipping = b"", True
        return out

    def flush(self) -> list[bytes]:
        """The last line, if it has no newline (yet)."""
        line, self.buf, self.skipping = self.buf, b"", False
        return [line] if line else []


class Budget:
    """Bytes a read may still scan."""

    __slots__ = ("left", "scanned", "exhausted")

    def __init__(self, max_bytes: int) -> None:
        self.left = max_bytes
        self.scanned = 0
        self.exhausted = False

    def take(self, n: int) -> int:
        n = min(n, self.left)
        if n <= 0:
            self.exhausted = True
            return 0
        self.left -= n
        self.scanned += n
        return n

    def give_back(self, n: int) -> None:
        """``n`` bytes taken were not there (the end of the file)."""
        self.left += n
        self.scanned -= n


def forward(fh: IO[bytes], budget: Budget, start: int = 0) -> Iterator[bytes]:
    """Lines from ``start`` to the end of the file (or of the budget)."""
    fh.seek(start)
    split = Splitter()
    while True:
        want = budget.take(BLOCK)
        if not want:
            return
        data = fh.read(want)
        budget.give_back(want - len(data))
        if not data:
            break
        yield from split.feed(data)
    yield from split.flush()


def backward(fh: IO[bytes], end: int, budget: Budget) -> Iterator[bytes]:
    """Lines before ``end``, last first, reading blocks from the end."""
    pos = end
    rest = b""  # the start of the region read: a line whose head lies further back
    clipped = False
    last = True
    while pos > 0:
        n = budget.take(min(BLOCK, pos))
        if not n:
            return
        pos -= n
        fh.seek(pos)
        parts = (fh.read(n) + rest).split(b"\n")
        rest = parts[0]
        for line in reversed(parts[1:]):
            if last:
                last = False
                if not line:
                    continue  # the file's final newline
            if clipped:
                clipped = False
                yield line[:MAX_LINE] + CLIPPED
            else:
                yield clip(line)
        if len(rest) > MAX_LINE:
            rest, clipped = rest[:MAX_LINE], True  # keeps the line's head, its earliest bytes
    if rest or not last:
        yield rest[:MAX_LINE] + CLIPPED if clipped else clip(rest)


# -- which execution a line belongs to ----------------------------------------------


def json_execution(line: bytes) -> str | None:
    if _ID not in line:
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    found = value.get("executionId") if isinstance(value, dict) else None
    return found if isinstance(found, str) else None


class Owners:
    """Execution ids of lines read forwards (script logs: a line without a head
    belongs to the last head)."""

    __slots__ = ("kind", "current")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.current: str | None = None

    def __call__(self, line: bytes) -> str | None:
        if self.kind == "script":
            m = HEAD.match(line)
            if m is not None:
                self.current = text(m.group(1))
            return self.current
        return json_execution(line)


def backward_owned(lines: Iterator[bytes], kind: str) -> Iterator[tuple[bytes, str | None]]:
    """``backward`` lines with their execution id: script lines without a head are
    held until the head above them is read."""
    if kind != "script":
        for line in lines:
            yield line, json_execution(line)
        return
    pending: deque[bytes] = deque()
    for line in lines:
        m = HEAD.match(line)
        if m is None:
            pending.append(line)
            if len(pending) > MAX_PENDING:
                yield pending.popleft(), None
            continue
        owner = text(m.group(1))
        for held in pending:
            yield held, owner
        pending.clear()
        yield line, owner
    for held in pending:
        yield held, None


def belongs(kind: str, line: bytes, owner: str | None, execution_id: str) -> bool:
    if owner is not None:
        return owner == execution_id
    return kind == "kit" and execution_id.encode() in line  # a kit line naming it


# -- matching -----------------------------------------------------------------------


def matcher(pattern: str, *, regex: bool, case_sensitive: bool) -> Callable[[str], bool]:
    if regex:
        rx = re.compile(pattern, 0 if case_sensitive else re.IGNORECASE)
        return lambda line: rx.search(line) is not None
    if case_sensitive:
        return lambda line: pattern in line
    folded = pattern.casefold()
    return lambda line: folded in line.casefold()


def search(job: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> None:
    """Scan ``job["files"]`` in order; ``emit`` each match and, last, the end
    ``{"end": true, "bytes", "stopped": null | "limit" | "bytes"}``."""
    match = matcher(job["pattern"], regex=job["regex"], case_sensitive=job["caseSensitive"])
    execution_id: str | None = job.get("executionId")
    budget = Budget(job["maxBytes"])
    wanted = job["limit"] + 1  # one more tells there are more
    found = 0
    stopped: str | None = None
    for spec in job["files"]:
        kind = spec["type"]
        owners = Owners(kind)
        try:
            fh = open(spec["path"], "rb")
        except OSError:
            continue
        with fh:
            for number, raw in enumerate(forward(fh, budget), 1):
                owner = owners(raw)
                if execution_id is not None and not belongs(kind, raw, owner, execution_id):
                    continue
                line = text(raw)
                if not match(line):
                    continue
                hit: dict[str, Any] = {"file": spec["file"], "line": line, "lineNumber": number}
                if owner is not None:
                    hit["executionId"] = owner
                emit(hit)
                found += 1
                if found >= wanted:
                    stopped = "limit"
                    break
        if stopped is None and budget.exhausted:
            stopped = "bytes"
        if stopped is not None:
            break
    emit({"end": True, "bytes": budget.scanned, "stopped": stopped})


def main() -> None:  # pragma: no cover - run as its own process by logs/search
    job = json.loads(sys.stdin.buffer.read())
    out = sys.stdout

    def emit(item: dict[str, Any]) -> None:
        out.write(json.dumps(item) + "\n")
        if "end" in item or time.monotonic() - last[0] > 0.05:
            out.flush()
            last[0] = time.monotonic()

    last = [time.monotonic()]
    search(job, emit)
    out.flush()


if __name__ == "__main__":  # pragma: no cover
    main()
