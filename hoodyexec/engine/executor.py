"""Where and how long script code runs: modes, timeouts, the thread pool.

* **async** code runs on the worker's event loop under ``asyncio.timeout``.
* **sync** code in ``auto`` mode runs inline on the loop until one call holds it
  past ``threshold`` (20 ms); that script version then runs in the thread pool
  (logged once). ``@mode inline`` / ``@mode thread`` force either.

Timeouts hold in every mode:

* code holding the loop (inline sync, or async code that never awaits) is
  interrupted by a watchdog thread: it sees the loop's current task is past its
  deadline and sends SIGALRM to the loop thread, whose handler raises
  ``ScriptTimeout`` inside the running code;
* awaiting code is cancelled by ``asyncio.timeout``;
* pool threads get ``ScriptTimeout`` raised in them asynchronously; a thread that
  still does not return (stuck in a C call) is replaced so capacity stays, and
  after ``stuck_limit`` such threads the worker asks to be recycled gracefully.

``ScriptTimeout`` derives from ``BaseException`` so a script's
``except Exception`` cannot swallow it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import ctypes
import logging
import math
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("hoodyexec.executor")


class ScriptTimeout(BaseException):
    """The script ran past its ``@timeout``."""


# Exit code of a worker whose loop a script holds for good (not 3/4: those
# mean "failed to boot" to the master).
HELD_LOOP_EXIT = 70


# -- scripts that fork ---------------------------------------------------------
# A script may call os.fork() (directly, or through a library). The child is a
# copy of the request worker: if it returned into the server it would serve
# from the worker's sockets and event loop next to its parent. An at-fork
# handler marks the child; wherever script code hands control back to the
# server (the sink after a call, a pool thread after a job) a marked child
# exits at once. subprocess and multiprocessing children never come back to
# the server, so they are unaffected.
_forked = False


def _mark_forked_child() -> None:
    global _forked
    _forked = True


def guard_forks() -> None:
    """Install the at-fork handler (once per process; called by request workers)."""
    os.register_at_fork(after_in_child=_mark_forked_child)


def forked_child() -> bool:
    return _forked


def leave_forked_child() -> None:
    """A forked child came back from script code: end it without touching the server."""
    os._exit(0)


def _current_task(loop: asyncio.AbstractEventLoop) -> asyncio.Task[Any] | None:
    # Read from another thread: a dict lookup is atomic under the GIL.
    # asyncio's private task table, not in the stubs.
    current: asyncio.Task[Any] | None = asyncio.tasks._current_tasks.get(loop)  # type: ignore[attr-defined]
    return current


class Watchdog:
    """Enforces execution deadlines without a timer per request.

    Async executions register ``task → deadline``. The watchdog thread looks at
    the expired ones: if the loop is running that task right now (it holds the
    loop: async code that never awaits), SIGALRM makes the loop thread raise
    ``ScriptTimeout`` in it; otherwise the task is waiting, and it is cancelled
    from the loop (``call_soon_threadsafe``). Inline sync code holds the loop,
    so one runs at a time: it writes its deadline into one slot (``inline``)
    and clears it when it returns (PERF: two stores instead of a dict insert
    and delete); an overdue slot gets the same SIGALRM.

    The thread sleeps until the next moment a deadline can pass, not on a fixed
    tick: each wake-up makes it contend with the loop thread for the GIL (which
    the loop thread also gives up at every blocking call, such as the
    per-request inotify poll), and under load a 10 ms tick cost the worker 1-4 %
    of its throughput (trivial script, against the same worker without the
    thread). A deadline armed after a look cannot pass sooner than the
    shortest timeout seen so far, counted from that look; so the thread sleeps
    until the earliest armed deadline or that long (at least ``period``), and
    ``arm`` wakes it only for a deadline more than ``period`` before then: a
    deadline is acted on at most ``period`` late, as with the fixed tick. An
    inline execution wakes it only when its timeout is shorter than any seen
    before (``shorter``). It wakes once per shortest timeout (30 s by
    default), and not at all before anything was armed. A task holding the
    loop past its deadline is looked at again every ``period``.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, period: float = 0.01, hold_limit: float = 3.0
    ) -> None:
        self.loop = loop
        self.period = period
        self.hold_limit = hold_limit  # seconds past a deadline before the worker gives up
        self.deadlines: dict[asyncio.Task[Any], float] = {}
        # Tasks cancelled for their deadline, with that deadline: a task may
        # run several executions one after the other (the request worker
        # runs a connection's requests in its task), so a cancel counts
        # only for the execution whose deadline it was.
        self.expired: dict[asyncio.Task[Any], float] = {}
        # Deadline (monotonic) of the inline execution holding the loop; 0.0: none.
        self.inline = 0.0
        self._wake = threading.Event()
        self.shortest = math.inf  # shortest timeout armed so far (seconds)
        self.arms = 0  # executions armed through ``arm`` so far
        self._due = math.inf  # when the thread looks next (monotonic); inf: when woken
        self._main = threading.main_thread().ident
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        signal.signal(signal.SIGALRM, self._on_alarm)
        self._thread = threading.Thread(target=self._run, name="hoodyexec-watchdog", daemon=True)
        self._thread.start()

    def arm(self, task: asyncio.Task[Any], deadline: float, timeout: float) -> None:
        self.deadlines[task] = deadline
        self.arms += 1
        if timeout < self.shortest:
            self.shortest = timeout
        # PERF: usually False (the thread already looks in time): no wake-up.
        if deadline + self.period < self._due:
            self._due = deadline
            self._wake.set()

    def shorter(self, timeout: float) -> None:
        """An inline execution with a timeout shorter than any so far is about
        to fill the slot: the thread must look again within that time."""
        if timeout < self.shortest:
            self.shortest = timeout
            self._wake.set()

    def disarm(self, task: asyncio.Task[Any]) -> None:
        self.deadlines.pop(task, None)
        if self.expired:
            self.expired.pop(task, None)

    def _next(
        self,
        now: float,
        pending: list[tuple[asyncio.Task[Any], float]],
        due: list[tuple[asyncio.Task[Any], float]],
        inline: float = 0.0,
    ) -> float:
        """When to look next: at the earliest deadline still ahead (the inline
        slot's included), and no later than the shortest timeout from now (no
        deadline armed after this look can pass sooner); every ``period``
        while an execution is past its deadline; only when woken before
        anything was armed."""
        nxt = now + max(self.shortest, self.period)
        for _, d in pending:
            if now < d < nxt:
                nxt = d
        if inline:
            nxt = min(nxt, inline if inline > now else now + self.period)
        if due:
            nxt = min(nxt, now + self.period)
        return nxt

    def _run(self) -> None:
        while True:
            self._wake.clear()
            now = time.monotonic()
            inline = self.inline
            try:
                pending = list(self.deadlines.items())
            except RuntimeError:  # resized while copying: look again
                continue
            due = [(t, d) for t, d in pending if d <= now]
            nxt = self._next(now, pending, due, inline)
            self._due = nxt
            # An arm between the copy and the line above compared its deadline
            # with the old ``_due`` and may not have woken us; its task is in the
            # table by now (with a deadline ahead: timeouts are positive), so
            # look again at once if it needs an earlier look.
            try:
                if any(now < d < nxt - self.period for d in list(self.deadlines.values())):
                    continue
            except RuntimeError:
                continue
            if inline and inline <= now:
                self._overdue_inline(now - inline)
            if due and not self._expire(due, now):
                return  # the loop is closed
            if nxt == math.inf:
                self._wake.wait()
            else:
                wait = nxt - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)

    def _interrupt(self, late: float) -> None:
        """The code holding the loop is ``late`` seconds past its deadline."""
        if late > self.hold_limit:
            # The script swallows every interrupt and keeps the loop: nothing
            # else can run in this worker again. End it now so the master
            # replaces it, instead of waiting for the heartbeat timeout with
            # every other request frozen.
            log.critical(
                "a script holds the event loop %.1f s past its deadline and "
                "ignores its timeout; ending worker %s",
                late,
                os.getpid(),
            )
            os._exit(HELD_LOOP_EXIT)
        if self._main is not None:
            signal.pthread_kill(self._main, signal.SIGALRM)

    def _overdue_inline(self, late: float) -> None:
        # The slot still holds the deadline read at this look: the same
        # execution (a new one's deadline lies ahead), still holding the loop.
        if self.inline and time.monotonic() >= self.inline:
            self._interrupt(late)

    def _expire(self, due: list[tuple[asyncio.Task[Any], float]], now: float) -> bool:
        """Interrupt or cancel tasks past their deadline; False once the loop is closed."""
        running = _current_task(self.loop)
        for task, deadline in due:
            if task is running:
                self._interrupt(now - deadline)
            elif self.expired.get(task) != deadline:
                self.expired[task] = deadline
                try:
                    self.loop.call_soon_threadsafe(self._cancel, task, deadline)
                except RuntimeError:  # loop closed
                    return False
        return True

    def _cancel(self, task: asyncio.Task[Any], deadline: float) -> None:
        """In the loop: cancel ``task`` if it still runs the execution whose
        ``deadline`` passed (not one it started since)."""
        if self.expired.get(task) != deadline:
            return
        if self.deadlines.get(task) == deadline:
            task.cancel()
        else:
            del self.expired[task]

    def _on_alarm(self, signum: int, frame: Any) -> None:
        inline = self.inline
        if inline and time.monotonic() >= inline:
            raise ScriptTimeout()
        task = _current_task(self.loop)
        deadline = self.deadlines.get(task) if task is not None else None
        if deadline is not None and time.monotonic() >= deadline:
            raise ScriptTimeout()

    def timed_out(self, task: asyncio.Task[Any]) -> bool:
        """After a CancelledError: was it our deadline? (resets the task's cancel state)"""
        deadline = self.expired.pop(task, None)
        if deadline is not None and deadline == self.deadlines.get(task):
            task.uncancel()
            return True
        return False


class ScriptRaised(Exception):
    """Carries a script's non-``Exception`` (SystemExit, KeyboardInterrupt,
    GeneratorExit, bare BaseException) from a pool thread to the awaiting side.

    A future holding a GeneratorExit would be *thrown* into the awaiting task,
    which closes every inner coroutine and lands the exception in the
    outermost frame, past the sink's handler; carried inside an ``Exception``
    it travels like any other error.
    """

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


def _carry(exc: BaseException) -> BaseException:
    if isinstance(exc, Exception | ScriptTimeout):
        return exc
    return ScriptRaised(exc).with_traceback(exc.__traceback__)


class _Job:
    __slots__ = ("future", "fn", "args", "thread", "done", "started")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.fn = fn
        self.args = args
        self.thread: int | None = None
        self.done = False
        self.started = 0.0


class ThreadPool:
    """Daemon threads (a stuck one never blocks process exit), each job interruptible."""

    def __init__(
        self, size: int, on_stuck_limit: Callable[[], None] | None = None, stuck_limit: int = 3
    ) -> None:
        self.size = size
        self.stuck_limit = stuck_limit
        self.on_stuck_limit = on_stuck_limit
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._pending = 0  # submitted, not yet picked up
        self._stuck = 0
        self.busy = 0

    def submit(self, fn: Callable[..., Any], *args: Any) -> _Job:
        job = _Job(fn, args)
        with self._lock:
            self._pending += 1
            spawn = self._pending > self._idle and self._threads < self.size + self._stuck
            if spawn:
                self._threads += 1
        if spawn:
            threading.Thread(target=self._work, name="hoodyexec-pool", daemon=True).start()
        self._queue.put(job)
        return job

    def _work(self) -> None:
        while True:
            try:
                with self._lock:
                    self._idle += 1
                job = self._queue.get()
                with self._lock:
                    self._idle -= 1
                    self._pending -= 1
                    self.busy += 1
                if job is None:
                    return
                try:
                    if not job.future.set_running_or_notify_cancel():
                        continue
                    job.thread = threading.get_ident()
                    job.started = time.monotonic()
                    try:
                        result = job.fn(*job.args)
                    except BaseException as exc:  # noqa: BLE001 - handed to the awaiting side
                        if _forked:  # the job forked and this is the child's copy
                            leave_forked_child()
                        with self._lock:
                            job.done = True
                        job.future.set_exception(_carry(exc))
                    else:
                        if _forked:
                            leave_forked_child()
                        with self._lock:
                            job.done = True
                        job.future.set_result(result)
                finally:
                    with self._lock:
                        self.busy -= 1
                        job.thread = None
            except ScriptTimeout:
                continue  # a late interrupt that landed after the job ended

    def interrupt(self, job: _Job) -> bool:
        """Raise ScriptTimeout in the job's thread if it is still running it."""
        with self._lock:
            if job.done or job.thread is None:
                return False
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(job.thread), ctypes.py_object(ScriptTimeout)
            )
            return True

    def mark_stuck(self, job: _Job) -> None:
        """A running job that ignored its interrupt: add a thread so capacity is kept."""
        with self._lock:
            if job.done or job.thread is None:
                return
            self._stuck += 1
            stuck = self._stuck
            self._threads += 1
        threading.Thread(target=self._work, name="hoodyexec-pool", daemon=True).start()
        log.error("a script thread is stuck past its timeout (%d stuck in this worker)", stuck)
        if stuck >= self.stuck_limit and self.on_stuck_limit is not None:
            self.on_stuck_limit()


def recycle_self() -> None:
    """Ask gunicorn to replace this worker gracefully (SIGTERM = drain and exit)."""
    log.error("recycling worker %s: too many stuck script threads", os.getpid())
    os.kill(os.getpid(), signal.SIGTERM)


class Executor:
    """Runs script callables in the right place with the right time limit."""

    def __init__(
        self, threads: int = 32, threshold: float = 0.020, stuck_grace: float = 2.0
    ) -> None:
        self.threshold = threshold
        self.stuck_grace = stuck_grace
        self.pool = ThreadPool(threads, on_stuck_limit=recycle_self)
        self.watchdog: Watchdog | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def start_if_possible(self) -> None:
        """Start the watchdog when called on the main thread with a running loop."""
        if self.watchdog is None and threading.current_thread() is threading.main_thread():
            try:
                self.start(asyncio.get_running_loop())
            except RuntimeError:
                pass

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.watchdog = Watchdog(loop)
        self.watchdog.start()

    async def run_async(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float
    ) -> Any:
        wd = self.watchdog
        task = _current_task(wd.loop) if wd is not None else None
        if task is None or wd is None:  # not started (in-process tests): plain asyncio timeout
            try:
                async with asyncio.timeout(timeout):
                    return await fn(*args, **kwargs)
            except TimeoutError:
                raise ScriptTimeout() from None
        wd.arm(task, time.monotonic() + timeout, timeout)
        try:
            return await fn(*args, **kwargs)
        except asyncio.CancelledError:
            if wd.timed_out(task):
                raise ScriptTimeout() from None
            raise
        finally:
            wd.disarm(task)

    def run_inline(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float
    ) -> tuple[Any, float]:
        """Returns (result, seconds it held the loop)."""
        wd = self.watchdog
        task = _current_task(wd.loop) if wd is not None else None
        t0 = time.monotonic()
        if task is not None and wd is not None:  # on the watched loop
            if timeout < wd.shortest:
                wd.shorter(timeout)
            wd.inline = t0 + timeout
            try:
                return fn(*args, **kwargs), time.monotonic() - t0
            finally:
                wd.inline = 0.0
        return fn(*args, **kwargs), time.monotonic() - t0

    async def run_thread(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float
    ) -> Any:
        ctx = contextvars.copy_context()
        job = self.pool.submit(ctx.run, _call, fn, args, kwargs)
        try:
            return await self.run_async(asyncio.wrap_future, (job.future,), {}, timeout)
        except ScriptTimeout:
            if self.pool.interrupt(job):
                # An empty context: the kit's log, not the script's, hears about it.
                asyncio.get_running_loop().call_later(
                    self.stuck_grace, self.pool.mark_stuck, job, context=contextvars.Context()
                )
            raise


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return fn(*args, **kwargs)
