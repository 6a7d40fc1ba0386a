"""The executor's thread pool (engine/executor.py)."""

from __future__ import annotations

import pytest


def test_pool_interrupts_python_code_and_replaces_stuck_threads():
    import time as _time

    from hoodyexec.engine.executor import ScriptTimeout, ThreadPool

    tripped = []
    pool = ThreadPool(2, on_stuck_limit=lambda: tripped.append(True), stuck_limit=2)

    def spin():
        while True:
            pass

    job = pool.submit(spin)
    _time.sleep(0.05)
    assert pool.interrupt(job) is True
    with pytest.raises(ScriptTimeout):
        job.future.result(timeout=5)
    assert pool.submit(lambda: 7).future.result(timeout=5) == 7  # the thread survived

    stuck = [pool.submit(_time.sleep, 1.0) for _ in range(2)]
    _time.sleep(0.05)
    assert all(j.thread is not None for j in stuck)  # both running: the pool is full
    for j in stuck:
        pool.mark_stuck(j)  # as the executor does after the grace period
    assert tripped == [True]
    t0 = _time.monotonic()
    assert pool.submit(lambda: "free").future.result(timeout=5) == "free"
    assert _time.monotonic() - t0 < 0.5  # a replacement thread took it, not the stuck ones


def test_watchdog_sleeps_through_steady_load_and_still_meets_a_shorter_deadline():
    """Under load the watchdog thread does not wake per request nor on a tick
    (each wake-up contends for the GIL); a shorter deadline still wakes it."""
    import asyncio
    import time as _time

    from hoodyexec.engine.executor import Executor, ScriptTimeout

    async def main() -> tuple[int, float]:
        ex = Executor(threads=2)
        ex.start(asyncio.get_running_loop())
        wd = ex.watchdog
        assert wd is not None
        looks: list[float] = []
        real_next = wd._next

        def counting(*args, **kwargs):
            looks.append(_time.monotonic())
            return real_next(*args, **kwargs)

        wd._next = counting  # type: ignore[method-assign]
        t0 = _time.monotonic()
        while _time.monotonic() - t0 < 0.3:  # 30 ticks of the old 10 ms watchdog
            for _ in range(50):
                assert ex.run_inline(lambda: 1, (), {}, 30.0)[0] == 1
            await asyncio.sleep(0.001)
        woken = len(looks)
        t1 = _time.monotonic()
        with pytest.raises(ScriptTimeout):
            await ex.run_async(asyncio.sleep, (10,), {}, 0.05)
        return woken, _time.monotonic() - t1

    woken, took = asyncio.run(main())
    assert woken <= 2, woken
    assert 0.05 <= took < 0.5, took


def test_inline_deadline_slot_interrupts_spinning_code_even_after_longer_timeouts():
    """Inline code writes its deadline into the watchdog's slot (no dict, no
    wake-up): the thread, sleeping for the shortest timeout seen so far, is
    woken by a shorter one and interrupts the code past it; the slot is empty
    afterwards and the next inline call runs untouched."""
    import asyncio
    import time as _time

    from hoodyexec.engine.executor import Executor, ScriptTimeout

    def spin(seconds: float) -> str:
        end = _time.monotonic() + seconds
        while _time.monotonic() < end:
            pass
        return "done"

    async def main() -> list[object]:
        ex = Executor(threads=2)
        ex.start(asyncio.get_running_loop())
        wd = ex.watchdog
        assert wd is not None
        out: list[object] = []
        for _ in range(100):  # the thread settles on a 30 s look
            ex.run_inline(lambda: 1, (), {}, 30.0)
        await asyncio.sleep(0.05)
        assert wd.inline == 0.0 and wd.shortest == 30.0
        t0 = _time.monotonic()
        try:
            ex.run_inline(spin, (5.0,), {}, 0.1)
        except ScriptTimeout:
            out.append(("timeout", _time.monotonic() - t0))
        assert wd.inline == 0.0 and wd.shortest == 0.1
        out.append(ex.run_inline(spin, (0.15,), {}, 1.0)[0])  # within its own deadline
        return out

    out = asyncio.run(main())
    kind, took = out[0]  # type: ignore[misc]
    assert kind == "timeout" and 0.1 <= took < 0.6, took
    assert out[1] == "done"


def test_watchdog_ignores_a_slot_whose_code_returned_in_time():
    """A SIGALRM landing after the inline code returned (slot cleared) raises nothing."""
    import asyncio

    from hoodyexec.engine.executor import Executor

    async def main() -> None:
        ex = Executor(threads=1)
        ex.start(asyncio.get_running_loop())
        wd = ex.watchdog
        assert wd is not None
        wd.inline = 0.0
        wd._on_alarm(0, None)  # nothing in the slot, no task armed: no exception
        wd.inline = 1e18  # a deadline far ahead: not overdue
        wd._on_alarm(0, None)
        wd.inline = 0.0

    asyncio.run(main())


def test_a_late_cancel_does_not_hit_the_tasks_next_execution():
    """One task runs a connection's requests one after another (workers/asgi.py):
    a cancel the watchdog decided for an execution that ended meanwhile must not
    land on the next one; a cancel for the execution running is a timeout."""
    import asyncio
    import time as _time

    from hoodyexec.engine.executor import Watchdog

    async def main() -> None:
        wd = Watchdog(asyncio.get_running_loop())  # its thread not started: we act for it
        task = asyncio.current_task()
        assert task is not None
        past = _time.monotonic() - 1.0
        wd.arm(task, past, 30.0)
        # What the thread's look does (Watchdog._expire) for a task not holding the loop.
        loop = asyncio.get_running_loop()
        wd.expired[task] = past
        loop.call_soon(wd._cancel, task, past)
        wd.disarm(task)  # ...but that execution returned first
        wd.arm(task, _time.monotonic() + 30.0, 30.0)  # and the task started another
        await asyncio.sleep(0.01)  # the queued cancel runs here: it must do nothing
        assert task.cancelling() == 0
        wd.disarm(task)

        # The thread's look lands before the disarm, for the execution running: a timeout.
        due = _time.monotonic() - 0.5
        wd.arm(task, due, 30.0)
        wd.expired[task] = due
        loop.call_soon(wd._cancel, task, due)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.sleep(1)
        assert wd.timed_out(task) is True and task.cancelling() == 0
        wd.disarm(task)
        assert wd.timed_out(task) is False and not wd.expired

    asyncio.run(main())
