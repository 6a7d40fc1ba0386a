"""Restarts and drain, as files under ``<home>/run`` that the master, the
control worker and the ops commands share.

A restart is the master's graceful reload (its SIGHUP path) with a drain time:

1. Who asks (``system/restart``, ``hoodyexec restart``) writes
   ``restart-request.json`` (created only if absent: the gate against a second
   restart) and sends the master SIGHUP.
2. The master takes the request (recorded as running, then removed; a plain ``kill -HUP`` has none and is
   recorded as a reload with the ``graceful-timeout`` drain), spawns the new
   workers, tells the old ones to finish what they serve, kills those still
   running at the drain deadline, and writes ``restart.json``: the restart in
   progress, then, once every old worker is gone and every new one has booted,
   ``lastRestart`` with what was drained and killed.
3. ``system/restart-status`` reads both files: ``restarting`` while a request
   waits or new workers boot, ``draining`` while old workers finish.

``draining`` (the file) takes the node out of rotation: health answers 503
``{"status": "draining"}`` while requests are still served. Files, not memory:
a restart replaces the control worker that took the request, and a drain must
hold across it. The master clears both files when it starts.

This module imports no falcon and no gunicorn: the master uses it too.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Literal

import msgspec

from hoodyexec import clock
from hoodyexec.files import write_atomic
from hoodyexec.home import Home

State = Literal["idle", "draining", "restarting"]


class Request(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    reason: str
    requested_at: float  # epoch seconds
    graceful: bool = True
    drain_timeout_ms: int = 5000
    source: str = "api"


class Run(msgspec.Struct, rename="camel"):
    """One restart, as the master carries it out."""

    reason: str
    source: str
    graceful: bool
    drain_timeout_ms: int
    requested_at: float
    started_at: float
    old_workers: list[int] = []
    new_workers: list[int] = []
    drained: int = 0  # old workers that exited by themselves within the drain time
    killed: int = 0  # old workers killed at the drain deadline
    completed_at: float | None = None
    failed: str | None = None  # why the old workers were kept (new ones did not boot)


class Record(msgspec.Struct, rename="camel"):
    """``restart.json``: the master's account."""

    master: int
    current: Run | None = None
    last: Run | None = None
    restarts: int = 0


class Conflict(Exception):
    """A restart is already requested or running."""


class RestartFiles:
    def __init__(self, home: Home) -> None:
        self.request_path = os.path.join(home.run, "restart-request.json")
        self.record_path = os.path.join(home.run, "restart.json")
        self.drain_path = os.path.join(home.run, "draining")

    # -- the asking side ----------------------------------------------------------
    def ask(self, request: Request, master_pid: int) -> None:
        """File a restart for the master; ``Conflict`` if one is pending or running."""
        self._check_running(master_pid)
        try:
            write_atomic(self.request_path, msgspec.json.encode(request), exclusive=True)
        except FileExistsError:
            pending = self.pending()
            reason = pending.reason if pending else "unknown"
            raise Conflict(f"a restart is already requested (reason: {reason})") from None
        # The master records a restart as running before it removes the request
        # it took: checked again, a restart taken meanwhile is seen.
        try:
            self._check_running(master_pid)
        except Conflict:
            self.withdraw()
            raise

    def _check_running(self, master_pid: int) -> None:
        record = self.record()
        if record is not None and record.master == master_pid and record.current is not None:
            raise Conflict(f"a restart is running (reason: {record.current.reason})")

    def withdraw(self) -> None:
        """Drop a request the master will never see (signalling it failed)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.request_path)

    def pending(self) -> Request | None:
        try:
            with open(self.request_path, "rb") as f:
                return msgspec.json.decode(f.read(), type=Request)
        except (OSError, msgspec.DecodeError):
            return None

    # -- the master's side ----------------------------------------------------------
    def record(self) -> Record | None:
        try:
            with open(self.record_path, "rb") as f:
                return msgspec.json.decode(f.read(), type=Record)
        except (OSError, msgspec.DecodeError):
            return None

    def save(self, record: Record) -> None:
        write_atomic(self.record_path, msgspec.json.encode(record))

    def reset(self, master_pid: int) -> None:
        """A new master: no request pending, no restart running, not draining;
        the last restart's account is kept."""
        self.withdraw()
        self.undrain()
        old = self.record()
        self.save(
            Record(
                master=master_pid,
                last=old.last if old else None,
                restarts=old.restarts if old else 0,
            )
        )

    # -- drain ------------------------------------------------------------------------
    def drain(self, reason: str) -> float:
        """Take the node out of rotation; returns since when it is (kept if already)."""
        since = self.drained_since()
        if since is not None:
            return since
        now = time.time()
        payload = msgspec.json.encode({"since": now, "reason": reason})
        with contextlib.suppress(FileExistsError):
            write_atomic(self.drain_path, payload, exclusive=True)
        return self.drained_since() or now

    def undrain(self) -> bool:
        try:
            os.unlink(self.drain_path)
        except FileNotFoundError:
            return False
        return True

    def drained_since(self) -> float | None:
        try:
            with open(self.drain_path, "rb") as f:
                data = msgspec.json.decode(f.read())
        except FileNotFoundError:
            return None
        except (OSError, msgspec.DecodeError):
            return 0.0  # a drain file we cannot read still drains
        since = data.get("since") if isinstance(data, dict) else None
        return float(since) if isinstance(since, (int, float)) else 0.0

    # -- reading ----------------------------------------------------------------------
    def status(self, master_pid: int) -> dict[str, object]:
        """``system/restart-status``'s answer."""
        record = self.record()
        if record is not None and record.master != master_pid:
            record = None  # written by a master that is gone: nothing runs
        current = record.current if record else None
        state: State = "idle"
        if current is not None:
            state = "draining" if _draining(current) else "restarting"
        elif self.pending() is not None:
            state = "restarting"
        out: dict[str, object] = {
            "state": state,
            "lastRestart": describe(record.last) if record and record.last else None,
            "restarts": record.restarts if record else 0,
        }
        if current is not None:
            out["current"] = describe(current)
        return out


def _draining(run: Run) -> bool:
    return any(clock.pid_alive(pid) for pid in run.old_workers)


def describe(run: Run) -> dict[str, object]:
    done = run.completed_at
    return {
        "reason": run.reason,
        "source": run.source,
        "graceful": run.graceful,
        "drainTimeoutMs": run.drain_timeout_ms,
        "requestedAt": clock.iso(run.requested_at),
        "startedAt": clock.iso(run.started_at),
        "completedAt": clock.iso(done) if done is not None else None,
        "durationMs": round((done - run.requested_at) * 1000, 1) if done is not None else None,
        "ok": run.failed is None,
        "failed": run.failed,
        "drained": run.drained,
        "killed": run.killed,
        "oldWorkers": run.old_workers,
        "newWorkers": run.new_workers,
    }
