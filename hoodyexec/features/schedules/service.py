"""The scheduler: one per control worker, firing each (script, tick) exactly once.

Times are UTC epoch seconds; croniter gives the ticks. The loop sleeps until
the next due tick (at most a second, so registry changes and clock jumps are
seen), then for each due tick: claim it in the state database (``ledger``) and,
only if the claim is ours, ask one request worker to run the script — the same
run-without-HTTP path as ``route/test``, with ``metadata.trigger ==
"schedule"``, the script's ``@timeout`` and its log. User code never runs here.

On start the scheduler fires, once, the latest tick that fell due while no
scheduler was running — but only after the kit itself started (the master's
start time), after the script was registered with its expression, and after
its last claimed tick; ``schedule-catch-up`` also allows a tick missed while
the whole kit was down. The claim table makes a race with another scheduler (a
reload hand-off) harmless: one insert wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from croniter import croniter

from hoodyexec.clock import iso
from hoodyexec.engine import metrics
from hoodyexec.errors import HoodyError
from hoodyexec.ipc.protocol import Invoke, InvokeResult
from hoodyexec.storage.cluster import ClaimStore, HistoryStore

from . import registry
from .registry import Entry

log = logging.getLogger("hoodyexec.schedules")

RunScript = Callable[[Invoke], Awaitable[InvokeResult]]
RESULT_LIMIT = 1024 * 1024
RESCAN_EVERY = 5.0  # seconds, without inotify
MAX_SLEEP = 1.0


def next_tick(expression: str, after: float) -> int:
    start = dt.datetime.fromtimestamp(after, dt.UTC)
    return int(croniter(expression, start).get_next(float))


def prev_tick(expression: str, at: float) -> int:
    """The latest tick at or before ``at``."""
    start = dt.datetime.fromtimestamp(int(at) + 1, dt.UTC)
    return int(croniter(expression, start).get_prev(float))


@dataclass
class Slot:
    """A registered schedule and its timer state."""

    entry: Entry
    registered_at: float
    next_due: int
    running: int = 0
    last: dict[str, Any] = field(default_factory=dict)


class Scheduler:
    def __init__(
        self,
        scripts: str,
        claims: ClaimStore,
        history: HistoryStore,
        run: RunScript,
        *,
        kit_started: float,
        catch_up: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.scripts = scripts
        self.claims = claims
        self.history = history
        self.run_script = run
        self.kit_started = kit_started
        self.catch_up = catch_up
        self.clock = clock
        self.slots: dict[str, Slot] = {}
        self.listed: dict[str, Entry] = {}  # scheduled scripts, fired or not
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    # -- registration --------------------------------------------------------------
    def diff(self, found: dict[str, Entry]) -> dict[str, list[str]]:
        """What ``apply(found)`` would add, keep and remove (``reload`` with ``dry_run``)."""
        return _diff(found, self.slots)

    def apply(
        self, found: dict[str, Entry], only: Iterable[tuple[str, str]] | None = None
    ) -> dict[str, list[str]]:
        """Make the registry match ``found`` (for the instances ``only``, or all)."""
        scope = None if only is None else set(only)

        def mine(key: str) -> bool:
            if scope is None:
                return True
            sub, eid, _ = key.split("/", 2)
            return (sub, eid) in scope

        current = {k: s for k, s in self.slots.items() if mine(k)}
        changes = _diff(found, current)
        now = self.clock()
        for key in list(self.listed):
            if mine(key) and key not in found:
                del self.listed[key]
        self.listed.update(found)
        for key in current:
            entry = found.get(key)
            if entry is None or not entry.fires:
                del self.slots[key]
                if entry is None:
                    _safely("forget a schedule", self.claims.forget, key)
        for key, entry in found.items():
            if not entry.fires:
                continue
            held = self.slots.get(key)
            if held is not None and held.entry.expression == entry.expression:
                held.entry = entry
                continue
            registered = _safely(
                "register a schedule", self.claims.registered, key, entry.expression, now
            )
            registered = now if registered is None else registered
            self.slots[key] = Slot(entry, registered, next_tick(entry.expression, now))
        self._wake.set()
        return changes

    def rescan(self, only: Iterable[tuple[str, str]] | None = None) -> dict[str, list[str]]:
        instances = None if only is None else list(only)
        return self.apply(registry.scan(self.scripts, instances), instances)

    # -- running -----------------------------------------------------------------------
    async def start(self) -> None:
        self.rescan()
        self._sweep()
        for slot, tick in _safely("look for missed ticks", self.missed, self.clock()) or []:
            self._spawn(self.fire(slot, tick))
        self._loop_task = asyncio.get_running_loop().create_task(self._loop())

    def missed(self, now: float) -> list[tuple[Slot, int]]:
        """Ticks that fell due while no scheduler ran: per schedule the latest one,
        if it came after the script's registration, after its last claimed tick
        and (unless ``catch_up``) after the kit started."""
        out = []
        for slot in list(self.slots.values()):
            tick = prev_tick(slot.entry.expression, now)
            floor = max(slot.registered_at, self.claims.last_tick(slot.entry.key) or 0)
            if not self.catch_up:
                floor = max(floor, self.kit_started)
            if tick > floor:
                out.append((slot, tick))
        return out

    async def stop(self, drain: float = 0.0) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._tasks and drain > 0:
            await asyncio.wait(set(self._tasks), timeout=drain)
        for task in list(self._tasks):
            task.cancel()
        self.claims.close()

    def due(self, now: float) -> list[tuple[Slot, int]]:
        """The ticks due at ``now`` (one per schedule: a loop held past several
        ticks fires the latest), each slot's timer moved past it."""
        out = []
        for slot in list(self.slots.values()):
            if slot.next_due > now:
                continue
            tick = slot.next_due
            while (following := next_tick(slot.entry.expression, tick)) <= now:
                tick = following
            slot.next_due = next_tick(slot.entry.expression, tick)
            out.append((slot, tick))
        return out

    async def _loop(self) -> None:
        last_sweep = self.clock()
        while True:
            now = self.clock()
            for slot, tick in self.due(now):
                self._spawn(self.fire(slot, tick))
            if now - last_sweep >= RESCAN_EVERY:
                last_sweep = now
                self._sweep()
            until = min((s.next_due for s in self.slots.values()), default=now + MAX_SLEEP)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, min(MAX_SLEEP, until - now)))

    def _sweep(self) -> None:
        """Runs whose scheduler died are recorded ``lost``."""
        for lost in _safely("look for lost runs", self.claims.orphans) or []:
            self._record_lost(lost.script, lost.tick, lost.run_id)

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def fire(self, slot: Slot, tick: int) -> dict[str, Any] | None:
        """Claim ``tick`` of ``slot`` and run it; None when another scheduler has it
        (or the state backend cannot be reached to claim it: no claim, no run)."""
        try:
            return await self._fire(slot, tick)
        except HoodyError as exc:
            log.error("schedule %s: tick %s not fired: %s", slot.entry.key, iso(tick), _why(exc))
            return None

    async def _fire(self, slot: Slot, tick: int) -> dict[str, Any] | None:
        entry = slot.entry
        run_id = secrets.token_hex(6)
        overlapping = slot.running > 0 or self.claims.running_elsewhere(entry.key)
        if overlapping and entry.overlap == "skip":
            if self.claims.claim(entry.key, tick, run_id, status="skipped"):
                note = "the previous run was still running"
                self.claims.finish(entry.key, tick, "skipped", 0.0, note)
                slot.last = self._record(entry, run_id, "schedule", "skipped", 0.0, tick, note)
            return None
        if not self.claims.claim(entry.key, tick, run_id):
            return None
        slot.running += 1
        try:
            outcome = await self._run(entry, run_id, "schedule", tick)
        finally:
            slot.running -= 1
        _safely(
            "record a finished run",
            self.claims.finish,
            entry.key,
            tick,
            outcome["status"],
            outcome["durationMs"],
            outcome.get("error"),
        )
        slot.last = outcome
        return outcome

    async def trigger(self, entry: Entry) -> dict[str, Any]:
        """Run now, outside the timetable (``schedules/trigger``)."""
        slot = self.slots.get(entry.key)
        outcome = await self._run(entry, secrets.token_hex(6), "manual", None)
        if slot is not None:
            slot.last = outcome
        return outcome

    async def _run(
        self, entry: Entry, run_id: str, trigger: str, tick: int | None
    ) -> dict[str, Any]:
        started = time.perf_counter()
        result: Any = None
        execution_id = ""
        error: str | None = None
        http_status = 0
        try:
            answer = await self.run_script(
                Invoke(
                    subdomain=entry.subdomain,
                    exec_id=entry.exec_id,
                    method="POST",
                    path=entry.route or "/",
                    trigger=trigger,
                    limit=RESULT_LIMIT,
                )
            )
        except Exception as exc:  # noqa: BLE001 - no worker, or it died: the fire failed
            status, error = "error", str(exc) or type(exc).__name__
        else:
            http_status, execution_id = answer.status, answer.execution_id
            result = _decode(answer)
            if answer.timed_out or answer.status == 504:
                status = "timeout"
                error = f"no answer within @timeout {entry.timeout_ms} ms"
            elif answer.status < 400:
                status = "ok"
            else:
                status = "error"
                error = _error_of(result, answer.status)
        duration = round((time.perf_counter() - started) * 1000, 1)
        record = self._record(entry, run_id, trigger, status, duration, tick, error, execution_id)
        record.update(result=result, httpStatus=http_status)
        if status != "ok":
            log.warning("schedule %s (%s): %s %s", entry.key, trigger, status, error or "")
        else:
            log.info("schedule %s (%s): %s", entry.key, trigger, status)
        return record

    def _record(
        self,
        entry: Entry,
        run_id: str,
        trigger: str,
        status: str,
        duration: float,
        tick: int | None,
        error: str | None = None,
        execution_id: str = "",
    ) -> dict[str, Any]:
        now = self.clock()
        entry_line: dict[str, Any] = {
            "ts": iso(now),
            "time": round(now, 3),
            "runId": run_id,
            "executionId": execution_id or None,
            "script": entry.key,
            "scriptRel": entry.rel,
            "subdomain": entry.subdomain,
            "execId": entry.exec_id,
            "trigger": trigger,
            "status": status,
            "durationMs": duration,
            "tick": iso(tick) if tick is not None else None,
        }
        if error:
            entry_line["error"] = error
        _safely("append to the history", self.history.append, entry_line)
        if trigger == "schedule":
            metrics.count_fire(status)
        return dict(entry_line)

    def _record_lost(self, key: str, tick: int, run_id: str) -> None:
        sub, eid, rel = key.split("/", 2)
        entry = self.listed.get(key) or Entry(
            sub, eid, rel, os.path.join(self.scripts, key), "", "skip", True, False, 0, None
        )
        self._record(
            entry, run_id, "schedule", "lost", 0.0, tick, "the control worker stopped mid-run"
        )

    # -- views -------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """For monitor/stats: how many schedules, runs in flight, the next fire."""
        due = min((s.next_due for s in self.slots.values()), default=None)
        return {
            "schedules": len(self.slots),
            "running": sum(s.running for s in self.slots.values()),
            "nextRun": iso(due) if due is not None else None,
        }

    def listing(self) -> list[dict[str, Any]]:
        claims = self.claims.last()
        out = []
        for key, entry in sorted(self.listed.items()):
            slot = self.slots.get(key)
            claim = claims.get(key)
            last_run = slot.last.get("ts") if slot and slot.last else None
            last_status = slot.last.get("status") if slot and slot.last else None
            if last_run is None and claim is not None:
                last_run, last_status = iso(claim.claimed_at), claim.status
            item: dict[str, Any] = {
                "scriptRel": entry.rel,
                "scriptPath": entry.path,
                "script": key,
                "subdomain": entry.subdomain,
                "execId": entry.exec_id,
                "expression": entry.expression,
                "registeredAt": iso(slot.registered_at) if slot else None,
                "nextRun": iso(slot.next_due) if slot else None,
                "lastRun": last_run,
                "lastStatus": last_status,
                "enabled": slot is not None,
                "overlap": entry.overlap,
                "route": entry.route,
                "running": slot.running if slot else 0,
            }
            if entry.error:
                item["error"] = entry.error
            elif not entry.enabled:
                item["error"] = "@enabled false"
            out.append(item)
        return out


def _why(exc: HoodyError) -> str:
    detail = exc.extra.get("detail")
    return f"{exc.message}: {detail}" if detail else exc.message


R = TypeVar("R")


def _safely(what: str, fn: Callable[..., R], *args: Any) -> R | None:
    """``fn(*args)``; a state backend that cannot be reached is logged, not fatal
    to the scheduler (None)."""
    try:
        return fn(*args)
    except HoodyError as exc:
        log.error("scheduler: cannot %s: %s", what, _why(exc))
        return None


def _diff(found: dict[str, Entry], current: dict[str, Slot]) -> dict[str, list[str]]:
    firing = {k for k, e in found.items() if e.fires}
    return {
        "added": sorted(firing - set(current)),
        "kept": sorted(firing & set(current)),
        "removed": sorted(set(current) - firing),
    }


def _decode(answer: InvokeResult) -> Any:
    ctype = dict(answer.headers).get("content-type", "")
    if "json" in ctype and not answer.truncated:
        try:
            return msgspec.json.decode(answer.body)
        except (msgspec.DecodeError, RecursionError):
            pass
    return answer.body.decode("utf-8", "replace") if answer.body else None


def _error_of(result: Any, status: int) -> str:
    if isinstance(result, dict) and isinstance(result.get("error"), str):
        return str(result["error"])
    return f"HTTP {status}"
