"""Reading, searching and following log files (no falcon here).

Every read is bounded: lines are read by blocks (from the end for a tail),
never a whole file, at most ``READ_MAX_BYTES`` per read and ``RESULT_MAX_BYTES``
of lines per answer. A search runs ``scan.py`` as a child process: at most
``SEARCH_MAX_BYTES`` scanned and ``SEARCH_SECONDS`` of time, after which the
process is killed and what it found is answered with ``truncated: true``.
Following a file polls it every ``POLL`` seconds, survives rotation (the
renamed file is drained for ``ROTATION_GRACE`` seconds, the new one read from
its start) and truncation, and sends a ``: ping`` comment after
``HEARTBEAT`` quiet seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import IO, Any

from hoodyexec.errors import BadRequest, NotFound

from . import scan
from .files import LogFile, LogFiles
from .scan import Budget, Owners, Splitter, backward, backward_owned, belongs, forward, text

log = logging.getLogger("hoodyexec.logs")

READ_MAX_BYTES = 64 * 1024 * 1024
RESULT_MAX_BYTES = 8 * 1024 * 1024
SEARCH_MAX_BYTES = 256 * 1024 * 1024
SEARCH_SECONDS = 5.0
MAX_SEARCHES = 4  # child processes at once; more wait their turn
POLL = 0.25
HEARTBEAT = 15.0
ROTATION_GRACE = 2.0
FOLLOW_CHUNK = 1024 * 1024  # bytes read per file and poll

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_NOTES = {
    "limit": "more matches than limit: raise limit or narrow the search",
    "bytes": "the scan budget of {mib} MiB was reached: name files or a type to narrow it",
    "time": "the time budget of {seconds:g} s was reached",
    "size": "the answer reached {size} MiB of lines",
    "error": "the scan stopped unexpectedly",
}


def open_log(f: LogFile) -> IO[bytes]:
    try:
        fd = os.open(f.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"Log file not found: {f.name}", file=f.name) from None
    return os.fdopen(fd, "rb")


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {_encode(data)}\n\n".encode()


def check_regex(pattern: str, case_sensitive: bool) -> None:
    try:
        re.compile(pattern, 0 if case_sensitive else re.IGNORECASE)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        raise BadRequest(f"Invalid regex: {exc}", field="regex") from None


class Collected:
    """Lines a read kept, in file order, and why it stopped."""

    __slots__ = ("lines", "more", "truncated", "scanned", "size")

    def __init__(self) -> None:
        self.lines: list[tuple[str, str | None]] = []
        self.more = False  # further matching lines exist past the ones kept
        self.truncated = False  # a budget stopped the read before `lines` or the file's end
        self.scanned = 0
        self.size = 0


def collect(
    fh: IO[bytes],
    kind: str,
    *,
    lines: int,
    tail: bool,
    execution_id: str | None = None,
    search: str | None = None,
    case_sensitive: bool = False,
    max_bytes: int | None = None,
) -> Collected:
    """The last (``tail``) or first ``lines`` lines of an open log that belong to
    ``execution_id`` and contain ``search``."""
    out = Collected()
    match = scan.matcher(search, regex=False, case_sensitive=case_sensitive) if search else None
    budget = Budget(READ_MAX_BYTES if max_bytes is None else max_bytes)
    out.size = os.fstat(fh.fileno()).st_size
    source: Iterator[tuple[bytes, str | None]]
    if tail:
        source = backward_owned(backward(fh, out.size, budget), kind)
    else:
        owners = Owners(kind)
        source = ((raw, owners(raw)) for raw in forward(fh, budget))
    room = RESULT_MAX_BYTES
    for raw, owner in source:
        if execution_id is not None and not belongs(kind, raw, owner, execution_id):
            continue
        line = text(raw)
        if match is not None and not match(line):
            continue
        if len(out.lines) >= lines:
            out.more = True
            break
        room -= len(raw)
        if room < 0:
            out.truncated = True
            break
        out.lines.append((line, owner))
    else:
        out.truncated = budget.exhausted
    out.scanned = budget.scanned
    if tail:
        out.lines.reverse()
    return out


class _Tail:
    """One file being followed: where it was read to, its partial line, the
    execution its last head named."""

    __slots__ = ("fh", "pos", "split", "owners", "until")

    def __init__(self, fh: IO[bytes], pos: int, kind: str) -> None:
        self.fh = fh
        self.pos = pos
        self.split = Splitter()
        self.owners = Owners(kind)
        self.until = 0.0  # after a rotation: when to stop draining it

    def read(self) -> tuple[list[tuple[bytes, str | None]], bool]:
        """New complete lines, and whether the end of the file was reached."""
        self.fh.seek(self.pos)
        data = self.fh.read(FOLLOW_CHUNK)
        self.pos += len(data)
        return [(line, self.owners(line)) for line in self.split.feed(data)], (
            len(data) < FOLLOW_CHUNK
        )

    def rest(self) -> list[tuple[bytes, str | None]]:
        return [(line, self.owners(line)) for line in self.split.flush()]

    def shrunk(self) -> bool:
        """Truncated under us (``logs/clear``): start over from its beginning."""
        if os.fstat(self.fh.fileno()).st_size >= self.pos:
            return False
        self.pos, self.split = 0, Splitter()
        return True


class LogsService:
    """The logs of one home; a ``Context`` service so that a stopping control
    worker ends the streams it follows."""

    def __init__(self, root: str) -> None:
        self.files = LogFiles(root)
        self.closing = False
        self.following = 0
        self._searches: asyncio.Semaphore | None = None

    async def start(self) -> None:
        self.closing = False

    async def stop(self, drain: float = 0.0) -> None:
        self.closing = True  # followed streams end at their next poll

    # -- read -------------------------------------------------------------------------
    def read(
        self,
        f: LogFile,
        *,
        lines: int,
        tail: bool,
        execution_id: str | None,
        search: str | None,
        case_sensitive: bool,
    ) -> dict[str, Any]:
        with open_log(f) as fh:
            got = collect(
                fh,
                f.type,
                lines=lines,
                tail=tail,
                execution_id=execution_id,
                search=search,
                case_sensitive=case_sensitive,
            )
        return {
            "file": f.name,
            "type": f.type,
            "lines": [line for line, _ in got.lines],
            "count": len(got.lines),
            "more": got.more,
            "truncated": got.truncated,
            "size": got.size,
            "scannedBytes": got.scanned,
        }

    # -- search -----------------------------------------------------------------------
    async def search(
        self,
        files: list[LogFile],
        pattern: str,
        *,
        regex: bool,
        case_sensitive: bool,
        execution_id: str | None,
        limit: int,
    ) -> dict[str, Any]:
        job = {
            "files": [{"file": f.name, "path": f.path, "type": f.type} for f in files],
            "pattern": pattern,
            "regex": regex,
            "caseSensitive": case_sensitive,
            "executionId": execution_id,
            "limit": limit,
            "maxBytes": SEARCH_MAX_BYTES,
        }
        if self._searches is None:
            self._searches = asyncio.Semaphore(MAX_SEARCHES)
        results: list[dict[str, Any]] = []
        scanned: int | None = None
        stopped: str | None = None
        if files:
            async with self._searches:
                results, scanned, stopped = await self._scan(job, limit)
        else:
            scanned = 0
        out: dict[str, Any] = {
            "results": results,
            "count": len(results),
            "truncated": stopped is not None,
            "filesSearched": len(files),
            "bytesScanned": scanned,
        }
        if stopped is not None:
            out["reason"] = stopped
            out["note"] = _NOTES[stopped].format(
                mib=SEARCH_MAX_BYTES // (1024 * 1024),
                seconds=SEARCH_SECONDS,
                size=RESULT_MAX_BYTES // (1024 * 1024),
            )
        return out

    async def _scan(
        self, job: dict[str, Any], limit: int
    ) -> tuple[list[dict[str, Any]], int | None, str | None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SEARCH_SECONDS
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            scan.__file__,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            limit=16 * scan.MAX_LINE,
        )
        assert proc.stdin is not None and proc.stdout is not None
        results: list[dict[str, Any]] = []
        room = RESULT_MAX_BYTES
        try:
            try:
                proc.stdin.write(json.dumps(job).encode())
                await proc.stdin.drain()
                proc.stdin.close()
            except ConnectionError:  # it died at once: its answer (none) tells below
                pass
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    return results, None, "time"
                try:
                    raw = await asyncio.wait_for(proc.stdout.readline(), left)
                except TimeoutError:
                    return results, None, "time"
                if not raw:
                    log.warning("logs: the search process ended without an answer")
                    return results, None, "error"
                item = json.loads(raw)
                if item.get("end"):
                    return results, int(item["bytes"]), item.get("stopped")
                if len(results) >= limit:
                    return results, None, "limit"
                room -= len(raw)
                if room < 0:
                    return results, None, "size"
                results.append(item)
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            await proc.wait()

    # -- stream -----------------------------------------------------------------------
    async def stream(
        self, f: LogFile, *, follow: bool, backlog: int, execution_id: str | None
    ) -> AsyncIterator[bytes]:
        """Open ``f`` and read its last ``backlog`` lines now (so a missing file is
        still a 404); the events come from the iterator returned."""
        fh = open_log(f)
        try:
            got = await asyncio.to_thread(
                collect, fh, f.type, lines=backlog, tail=True, execution_id=execution_id
            )
        except BaseException:
            fh.close()
            raise
        head = [sse("open", {"file": f.name, "type": f.type, "follow": follow, "size": got.size})]
        head += [_line(line, owner) for line, owner in got.lines]
        if not follow:
            head.append(sse("end", {"file": f.name, "count": len(got.lines)}))
            fh.close()
            return _once(b"".join(head))
        return self._follow(f, _Tail(fh, got.size, f.type), b"".join(head), execution_id)

    async def _follow(
        self, f: LogFile, current: _Tail, head: bytes, execution_id: str | None
    ) -> AsyncIterator[bytes]:
        started = time.monotonic()
        draining: list[_Tail] = []
        self.following += 1
        log.info("logs: following %s", f.name)

        def keep(found: list[tuple[bytes, str | None]], out: list[bytes]) -> None:
            for raw, owner in found:
                if execution_id is None or belongs(f.type, raw, owner, execution_id):
                    out.append(_line(text(raw), owner))

        try:
            yield head
            sent = time.monotonic()
            while not self.closing:
                out: list[bytes] = []
                now = time.monotonic()
                for old in list(draining):
                    found, _ = old.read()
                    keep(found, out)
                    if now >= old.until:
                        keep(old.rest(), out)
                        old.fh.close()
                        draining.remove(old)
                if current.shrunk():
                    out.append(sse("truncated", {"file": f.name}))
                found, at_end = current.read()
                keep(found, out)
                if at_end and not f.rotated and self._rotated(f, current):
                    try:
                        fresh = _Tail(open_log(f), 0, f.type)
                    except NotFound:
                        pass  # renamed, its successor not created yet
                    else:
                        current.until = now + ROTATION_GRACE
                        draining.append(current)
                        current = fresh
                        out.append(sse("rotated", {"file": f.name}))
                        at_end = False
                if out:
                    yield b"".join(out)
                    sent = now
                elif now - sent >= HEARTBEAT:
                    yield b": ping\n\n"
                    sent = now
                if at_end:
                    await asyncio.sleep(POLL)
            yield sse("end", {"file": f.name, "reason": "the control worker is stopping"})
        finally:
            current.fh.close()
            for old in draining:
                old.fh.close()
            self.following -= 1
            log.info("logs: stopped following %s after %.1f s", f.name, time.monotonic() - started)

    @staticmethod
    def _rotated(f: LogFile, current: _Tail) -> bool:
        """The path now names another file (or none): the one read was renamed."""
        try:
            st = os.stat(f.path, follow_symlinks=False)
        except FileNotFoundError:
            return True
        mine = os.fstat(current.fh.fileno())
        return (st.st_ino, st.st_dev) != (mine.st_ino, mine.st_dev)


def _line(line: str, owner: str | None) -> bytes:
    return sse("line", {"line": line, "executionId": owner} if owner else {"line": line})


async def _once(chunk: bytes) -> AsyncIterator[bytes]:
    yield chunk
