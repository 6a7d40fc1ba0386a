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
