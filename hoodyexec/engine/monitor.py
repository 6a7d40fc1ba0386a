"""What a request worker knows about its script executions, for monitoring.

Per request the sink does a dict insert when an execution starts (for inline
code, which holds the loop, one store into a single slot) and appends one
tuple's items when it ends; those are folded in batches into counters, a
fixed-bucket latency histogram and the last 1,024 samples per script, all in
plain Python objects owned by the worker's event loop (no lock, no syscall).
The control worker gathers these over the link (``MonitorQuery``) and sums
them; ``flush_metrics`` copies the increments into prometheus-client's
multiprocess files once a second, off the request path; a daemon thread writes the stack of any execution running past
``slow-request-ms`` to ``slow.log``.
"""

from __future__ import annotations

import array
import asyncio
import bisect
import collections
import functools
import itertools
import json
import operator
import os
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from hoodyexec.engine.capture import AppendLog
from hoodyexec.ipc.protocol import ActiveRequest, ScriptStats

# Upper bounds (seconds) of the latency histogram; the last bucket is +Inf.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SAMPLES = 1024
# Sample batches shorter than this are merged into the one before (Figures.add_samples).
SMALL_BATCH = 128
# falcon's status strings → codes, so a batch parses none of them.
_CODES: dict[object, int] = {
    f"{code} {phrase}": code
    for code, phrase in ((200, "OK"), (201, "Created"), (204, "No Content"))
}
# The script file of a pending record.
_KEY = operator.itemgetter(0)
_BUCKET = functools.partial(bisect.bisect_left, BUCKETS)
_pack = struct.pack
# Executions recorded before the figures are brought up to date: small batches
# stay in the CPU cache (and a busy loop never piles up records).
BATCH = 256
_SINK = os.path.join("hoodyexec", "http", "sink.py")

# One in-flight execution, keyed by executionId: (script file, method, path,
# started (time.monotonic()), task or None, mode).
Active = tuple[str, str, str, float, Any, str]
# The inline execution ``Monitor.inline_probe`` finds: (executionId, script file,
# method, path, started).
Inline = tuple[str, str, str, str, float]
# A finished execution, as the six items it adds to ``Monitor._pending`` (a
# flat list): script file, mode, status as falcon holds it (int or "200 OK"),
# bytes, started (``time.monotonic()``), seconds it took.
Record = tuple[str, str, int | str, int, float, float]
FIELDS = 6


class Figures:
    """Counters of one script in one worker."""

    __slots__ = (
        "key",
        "requests",
        "statuses",
        "timeouts",
        "bytes",
        "seconds",
        "buckets",
        "last",
        "mode",
        "offloads",
        "_recent",
        "_recent_n",
    )

    def __init__(self, key: str) -> None:
        self.key = key
        self.requests = 0
        self.statuses: dict[int, int] = {}
        self.timeouts = 0
        self.bytes = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.last = 0.0
        self.mode = "inline"
        self.offloads = 0
        # The last samples as the batches they came in, (starts, seconds)
        # each, at least SAMPLES of them, as arrays of C doubles (no tuple
        # per execution); ``samples`` pairs them up. 16 bytes a sample: the
        # batch's float objects and list slots kept instead took ~64, and
        # lived a thousand executions (no effect on throughput measured
        # either way, bench/RESULTS.md 04:14).
        self._recent: collections.deque[tuple[array.array[float], array.array[float]]] = (
            collections.deque()
        )
        self._recent_n = 0

    def add_samples(self, starts: Sequence[float], seconds: Sequence[float]) -> None:
        """A batch of executions' (start, duration), oldest first (copied)."""
        recent = self._recent
        n = len(seconds)
        packed_starts = _pack(f"{n}d", *starts)
        packed_seconds = _pack(f"{n}d", *seconds)
        if recent and len(recent[-1][1]) < SMALL_BATCH:
            # A script with few executions per batch (one of many busy ones):
            # its samples join the last small pair of arrays instead of adding
            # a pair per batch (about 1,024 pairs of one-item arrays otherwise).
            last_starts, last_seconds = recent[-1]
        else:
            last_starts, last_seconds = array.array("d"), array.array("d")
            recent.append((last_starts, last_seconds))
        last_starts.frombytes(packed_starts)
        last_seconds.frombytes(packed_seconds)
        self._recent_n += n
        while self._recent_n - len(recent[0][1]) >= SAMPLES:
            self._recent_n -= len(recent.popleft()[1])

    @property
    def samples(self) -> list[tuple[float, float]]:
        """The last SAMPLES (end (``time.monotonic()``), seconds), oldest first."""
        out: list[tuple[float, float]] = []
        for starts, seconds in self._recent:
            out.extend(zip(map(operator.add, starts, seconds), seconds, strict=True))
        return out[-SAMPLES:]

    def stats(
        self, name: str, since: float | None, with_samples: bool, offset: float = 0.0
    ) -> ScriptStats:
        """``samples`` and ``last`` hold ``time.monotonic()`` readings; ``offset``
        turns them into wall-clock time (``since`` is wall-clock)."""
        limit = None if since is None else since - offset
        samples = (
            [s for s in self.samples if limit is None or s[0] >= limit] if with_samples else []
        )
        return ScriptStats(
            key=name,
            requests=self.requests,
            statuses={str(k): v for k, v in self.statuses.items()},
            timeouts=self.timeouts,
            bytes=self.bytes,
            seconds=self.seconds,
            buckets=list(self.buckets),
            last=self.last + offset if self.last else 0.0,
            mode=self.mode,
            offloads=self.offloads,
            samples=[round(sec * 1000.0, 3) for _, sec in samples],
        )


class Monitor:
    """Figures are keyed by the script's file path; ``name`` turns it into the
    ``sub/execId/path.py`` the API shows."""

    def __init__(self, root: str = "") -> None:
        self.root = root
        self.started = time.time()
        self.active: dict[str, Active] = {}
        # Finds the inline execution holding the loop right now, if any:
        # (executionId, script file, method, path, started). PERF: the sink
        # records nothing per request for it; the probe it sets here reads it
        # from the loop thread's frames when asked. Only another thread can
        # see one (the slow-request log: the loop is busy meanwhile).
        self.inline_probe: Callable[[], Inline | None] | None = None
        self.scripts: dict[str, Figures] = {}
        # Executions finished per second over the last minute (a ring of 60).
        self._window = [0] * 60
        self._second = 0
        # Finished executions not folded into the figures yet: ``FIELDS``
        # items each (``Record``), one after the other. PERF: the sink extends
        # it by one tuple; the fold takes each column as one slice.
        self._pending: list[Any] = []
        # time.time() - time.monotonic(): a monotonic reading → wall-clock time.
        self.wall_offset = time.time() - time.monotonic()

    def figures(self, key: str) -> Figures:
        f = self.scripts.get(key)
        if f is None:
            f = self.scripts[key] = Figures(key)
        return f

    def done(
        self, key: str, mode: str, status: int | str, nbytes: int, started: float, ended: float
    ) -> None:
        """One execution ended (``started``/``ended``: ``time.monotonic()``).
        PERF: only its record added here (the sink inlines even that); the
        figures are brought up to date in batches (``drain``: every 256
        executions, once a second, and before any snapshot), off the
        request's path."""
        pending = self._pending
        pending += (key, mode, status, nbytes, started, ended - started)
        if len(pending) >= BATCH * FIELDS:
            self.drain()

    def drain(self) -> None:
        """Fold the pending records into the figures. PERF: per script, whole
        columns at a time (each one slice of the flat list, then ``sum``,
        ``max`` and ``count`` over it), no Python statement per record in the
        usual batch: one script, one status, every duration in one histogram
        bucket."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        keys = pending[0::FIELDS]
        n = len(keys)
        key = keys[0]
        if keys.count(key) == n:  # the usual batch: one hot script
            self._fold(
                key,
                pending[1::FIELDS],
                pending[2::FIELDS],
                pending[3::FIELDS],
                pending[4::FIELDS],
                pending[5::FIELDS],
            )
        else:
            records = sorted(
                zip(*(pending[i::FIELDS] for i in range(FIELDS)), strict=True), key=_KEY
            )
            for key, group in itertools.groupby(records, _KEY):
                _, modes, statuses, nbytes, starts, seconds = zip(*group, strict=True)
                self._fold(key, modes, statuses, nbytes, starts, seconds)
        # The batch is at most a second old: it counts in the second it ended.
        second = int(pending[-2] + pending[-1] + self.wall_offset)
        if second != self._second:
            if second < self._second:
                return
            self._advance(second)
        self._window[second % 60] += n

    def _fold(
        self,
        key: str,
        modes: Sequence[str],
        statuses: Sequence[int | str],
        nbytes: Sequence[int],
        starts: Sequence[float],
        seconds: Sequence[float],
    ) -> None:
        """One script's executions of a batch (columns, oldest first)."""
        f = self.scripts.get(key)
        if f is None:
            f = self.scripts[key] = Figures(key)
        n = len(seconds)
        first = statuses[0]
        if statuses.count(first) == n:
            self._count(f, first, n)
        else:
            for raw, count in collections.Counter(statuses).items():
                self._count(f, raw, count)
        f.requests += n
        f.bytes += sum(nbytes)
        total = sum(seconds)
        f.seconds += total
        buckets = f.buckets
        if total <= BUCKETS[0]:  # durations are >= 0: every one is in the first bucket
            buckets[0] += n
        elif (high := _BUCKET(max(seconds))) == 0 or _BUCKET(min(seconds)) == high:
            buckets[high] += n  # all in one bucket
        else:
            for index, count in collections.Counter(map(_BUCKET, seconds)).items():
                buckets[index] += count
        f.last = starts[-1] + seconds[-1]
        f.mode = modes[-1]
        f.add_samples(starts, seconds)

    @staticmethod
    def _count(f: Figures, raw: int | str, n: int) -> None:
        """``n`` executions answered ``raw`` (an int, or falcon's "200 OK")."""
        status = _CODES.get(raw)
        if status is None:
            status = raw if type(raw) is int else int(str(raw)[:3])
        f.statuses[status] = f.statuses.get(status, 0) + n
        if status == 504:
            f.timeouts += n

    def _advance(self, second: int) -> None:
        gap = min(60, second - self._second) if self._second else 60
        for s in range(second - gap + 1, second + 1):
            self._window[s % 60] = 0
        self._second = second

    def rate1m(self) -> float:
        """Executions per second, averaged over the last 60 s."""
        self.drain()
        now = int(time.time())
        if now != self._second:
            self._advance(now)
        return round(sum(self._window) / 60.0, 3)

    def offloaded(self, key: str) -> None:
        self.figures(key).offloads += 1

    def name(self, file: str) -> str:
        if not self.root:
            return file
        return os.path.relpath(file, self.root).replace(os.sep, "/")

    def snapshot_scripts(self, since: float | None, samples: bool) -> list[ScriptStats]:
        self.drain()
        return [
            f.stats(self.name(k), since, samples, self.wall_offset)
            for k, f in list(self.scripts.items())
        ]

    def running(self) -> list[tuple[str, Active]]:
        """Every execution in flight: ``active`` and the inline execution the
        probe finds (safe to call from another thread)."""
        running = list(self.active.items())
        probe = self.inline_probe
        inline = probe() if probe is not None else None
        if inline is not None and inline[0] not in self.active:
            eid, file, method, path, started = inline
            running.append((eid, (file, method, path, started, None, "inline")))
        return running

    def snapshot_active(self, stacks: bool = False) -> list[ActiveRequest]:
        now = time.monotonic()
        out = []
        for eid, (file, method, path, mono, task, mode) in self.running():
            out.append(
                ActiveRequest(
                    execution_id=eid,
                    script=self.name(file),
                    method=method,
                    path=path,
                    started_at=mono + self.wall_offset,
                    elapsed_ms=round((now - mono) * 1000, 1),
                    mode=mode,
                    stack=stack_of(task, file) if stacks else None,
                )
            )
        return out


def stack_of(task: Any, file: str) -> str:
    """The Python stack of an execution: every thread whose frames are in the
    script's file (inline code on the loop, pool threads), else the task's
    awaiting stack (async code)."""
    parts = []
    for ident, frame in sys._current_frames().items():
        frames = traceback.extract_stack(frame)
        if any(f.filename == file for f in frames):
            # From where the kit started the execution (the scripts sink) down;
            # what runs the worker above it is the same for every request.
            starts = [i for i, f in enumerate(frames) if f.filename.endswith(_SINK)]
            frames = traceback.StackSummary.from_list(
                frames[starts[0] :] if starts else frames[-30:]
            )
            name = next((t.name for t in threading.enumerate() if t.ident == ident), str(ident))
            parts.append(f"Thread {name}:\n" + "".join(traceback.format_list(frames)))
    if not parts and task is not None:
        awaiting = _await_chain(task)
        if awaiting:
            summary = traceback.StackSummary.extract((f, f.f_lineno) for f in awaiting)
            starts = [i for i, f in enumerate(summary) if f.filename.endswith(_SINK)]
            if starts:
                summary = traceback.StackSummary.from_list(summary[starts[0] :])
            parts.append("Task:\n" + "".join(summary.format()))
    return "\n".join(parts) or "(no frame of the script found: it is between steps)"


def _await_chain(task: Any) -> list[Any]:
    """The frames of a suspended task, outermost first, following each
    coroutine to the one it awaits (``Task.get_stack`` stops at the first)."""
    frames = []
    try:
        coro = task.get_coro()
        for _ in range(100):
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is None:
                break
            frames.append(frame)
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
            if coro is None:
                break
    except Exception:  # noqa: BLE001 - a task finishing as we look
        return frames
    return frames


class SlowLog:
    """A daemon thread: executions running past ``threshold`` seconds get their
    stack written once to ``slow.log`` (JSON lines)."""

    def __init__(
        self,
        monitor: Monitor,
        path: str,
        threshold: float,
        pid: int,
        max_bytes: int = 0,
        backups: int = 5,
    ) -> None:
        self.monitor = monitor
        self.log = AppendLog(path, max_bytes, backups)
        self.threshold = threshold
        self.pid = pid
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hoodyexec-slowlog", daemon=True)

    def start(self) -> None:
        if self.threshold > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        interval = min(1.0, max(0.05, self.threshold / 4))
        while not self._stop.wait(interval):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - never take the worker down
                pass

    def check(self) -> list[str]:
        now = time.monotonic()
        running = self.monitor.running()
        self.seen &= {eid for eid, _ in running}
        written = []
        for eid, (file, method, path, mono, task, mode) in running:
            if eid in self.seen or now - mono < self.threshold:
                continue
            self.seen.add(eid)
            entry = {
                "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "executionId": eid,
                "script": self.monitor.name(file),
                "method": method,
                "path": path,
                "mode": mode,
                "elapsedMs": round((now - mono) * 1000, 1),
                "pid": self.pid,
                "stack": stack_of(task, file),
            }
            self.log.write_bytes(json.dumps(entry).encode() + b"\n")
            written.append(eid)
        return written


async def flush_loop(flush: Callable[[], None], every: float = 1.0) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            flush()
        except Exception:  # noqa: BLE001 - metrics must never stop a worker
            pass
