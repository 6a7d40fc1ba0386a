"""The master's side of a restart: gunicorn's reload, with the old workers held
until the new ones serve, then drained within the restart's drain time.

gunicorn's reload spawns the new workers and stops the oldest at once, before
the new ones have booted; a new worker that fails to boot then halts the whole
server. Here (every SIGHUP, ``system/restart`` and ``hoodyexec reload`` alike):

1. ``begin`` takes the filed request (``features/system/restart.py``; a bare
   SIGHUP has none and drains for ``graceful-timeout``) and records the restart
   as running.
2. The new workers boot while the old ones keep serving (the arbiter does not
   trim the surplus while ``holding``).
3. Once every new worker has booted, the old ones are told to stop (SIGTERM:
   they finish what they serve); those still running at the drain deadline are
   killed. A forced restart (``graceful: false``) kills them at once.
4. When the old workers are gone and a new control worker is ready, the
   restart is recorded as done, with how many drained and how many were killed.

A new worker that exits before it booted aborts the restart: the other new
workers are stopped, the old workers and control worker keep serving, and the
restart is recorded as failed. Inside gunicorn's reload (which waits for the
old workers by reaping) the abort ends that wait with ``RestartAborted``.
"""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING

from hoodyexec.features.system import restart

if TYPE_CHECKING:
    from .master import HoodyArbiter


class RestartAborted(Exception):
    """The new workers failed to boot; the old ones keep serving."""


class Restarts:
    def __init__(self, arbiter: HoodyArbiter) -> None:
        self.arbiter = arbiter
        self.files = restart.RestartFiles(arbiter.app.home)
        self.run: restart.Run | None = None
        self.drain = 0.0  # seconds the old workers get once told to stop
        self.deadline = 0.0  # monotonic; set when they are told
        self.told = False
        self.killed: set[int] = set()
        self.control = 0  # the control worker this restart replaces
        self.in_reload = False  # inside gunicorn's reload: an abort raises
        self.aborted: str | None = None  # why, until raised
        self.discarded: set[int] = set()  # new workers an abort stopped

    # -- steps ------------------------------------------------------------------------
    def begin(self) -> None:
        a = self.arbiter
        now = time.time()
        request = self.files.pending() or restart.Request(
            reason="SIGHUP",
            requested_at=now,
            drain_timeout_ms=int(a.cfg.graceful_timeout * 1000),
            source="signal",
        )
        old = set(a.WORKERS)
        record = self.files.record() or restart.Record(master=a.pid)
        if self.run is not None:  # a reload during a reload: the new one takes over
            old.update(p for p in self.run.old_workers if p in a.WORKERS)
            self.run.completed_at = now
            self.run.failed = "superseded by another restart"
            record.last = self.run
        self.run = restart.Run(
            reason=request.reason,
            source=request.source,
            graceful=request.graceful,
            drain_timeout_ms=request.drain_timeout_ms,
            requested_at=request.requested_at,
            started_at=now,
            old_workers=sorted(old),
        )
        self.drain = request.drain_timeout_ms / 1000 if request.graceful else 0.0
        self.told, self.killed, self.aborted = False, set(), None
        self.control = a.control_pid
        record.master, record.current = a.pid, self.run
        self._save(record)
        self.files.withdraw()  # taken: recorded as running first (see RestartFiles.ask)
        a.log.info(
            "Restart (%s): %d workers to replace, drain up to %.1f s",
            self.run.reason,
            len(old),
            self.drain,
        )

    def holding(self) -> bool:
        """Old workers still run: the arbiter must not trim the surplus itself."""
        run = self.run
        return run is not None and any(pid in self.arbiter.WORKERS for pid in run.old_workers)

    def progress(self) -> None:
        """Move the restart on; called from every reap and every main-loop turn."""
        a, run = self.arbiter, self.run
        if run is None or a._stopping:
            return
        fresh = {pid: w for pid, w in a.WORKERS.items() if pid not in run.old_workers}
        alive = [pid for pid in run.old_workers if pid in a.WORKERS]
        if not self.told:
            if len(fresh) < a.num_workers:  # one died before the others booted
                self.abort("a new worker exited before it booted")
                return
            if not all(booted(w) for w in fresh.values()):
                return
            for pid in alive:
                a.kill_worker(pid, signal.SIGTERM)
            self.told = True
            self.deadline = time.monotonic() + self.drain
        if alive:
            if time.monotonic() >= self.deadline:
                for pid in alive:
                    if pid not in self.killed:
                        self.killed.add(pid)
                        a.log.warning("Restart: worker %s still busy at the drain deadline", pid)
                        a.kill_worker(pid, signal.SIGKILL)
            return
        ctl = a.control
        if (
            len(fresh) < a.num_workers
            or ctl is None
            or ctl.pid == self.control
            or not ctl.check_ready()
            or a.retiring
        ):
            return
        run.killed = len(self.killed)
        run.drained = len(run.old_workers) - run.killed
        run.new_workers = sorted(fresh)
        self._finish(run)
        a.log.info("Restart (%s) done: %d drained, %d killed", run.reason, run.drained, run.killed)

    def failed_boot(self, pid: int) -> bool:
        """A worker exited with gunicorn's boot-error code: a new worker of this
        restart aborts it (True); otherwise the arbiter decides."""
        if pid in self.discarded:  # stopped by an abort, maybe mid-boot
            self.discarded.discard(pid)
            return True
        run = self.run
        if run is None or self.told or pid in run.old_workers:
            return False
        self.abort(f"new worker {pid} failed to boot")
        return True

    def abort(self, why: str) -> None:
        a, run = self.arbiter, self.run
        if run is None:
            return
        fresh = [pid for pid in a.WORKERS if pid not in run.old_workers]
        a.log.error("Restart (%s) aborted: %s; the old workers keep serving", run.reason, why)
        for pid in fresh:
            a._reloaded.add(pid)  # not a recycle
            self.discarded.add(pid)
            a.kill_worker(pid, signal.SIGKILL)
        run.failed = why
        self._finish(run)
        self.aborted = why

    def raise_if_aborted(self) -> None:
        """Inside gunicorn's reload, end its wait for old workers that stay."""
        why = self.aborted
        if why is not None and self.in_reload:
            self.aborted = None
            raise RestartAborted(why)

    # -- the record ---------------------------------------------------------------------
    def _finish(self, run: restart.Run) -> None:
        run.completed_at = time.time()
        self.run = None
        record = self.files.record() or restart.Record(master=self.arbiter.pid)
        record.master, record.current, record.last = self.arbiter.pid, None, run
        record.restarts += 1
        self._save(record)

    def _save(self, record: restart.Record) -> None:
        try:
            self.files.save(record)
        except OSError as exc:  # the restart goes on; only its account is lost
            self.arbiter.log.error("Restart: cannot record progress: %s", exc)


def booted(worker: object) -> bool:
    """Has this request worker reported ready (touched its heartbeat once)?"""
    tmp = getattr(worker, "tmp", None)
    try:
        return tmp is None or tmp.last_update() != getattr(worker, "hoody_born", None)
    except (OSError, ValueError):  # heartbeat file already closed
        return True
