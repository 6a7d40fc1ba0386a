"""Per-worker monitoring figures, the slow-request log and the metrics flusher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

from hoodyexec.engine.monitor import BUCKETS, Monitor, SlowLog

T = time.monotonic()


def test_done_counts_statuses_timeouts_bytes_and_buckets():
    m = Monitor("/root")
    m.done("/root/default/1/a.py", "inline", 200, 10, T, T + 0.0004)
    m.done("/root/default/1/a.py", "thread", 504, 0, T, T + 3.0)
    m.done("/root/default/1/a.py", "thread", 404, 5, T, T + 0.02)
    (stats,) = m.snapshot_scripts(None, samples=True)
    assert stats.key == "default/1/a.py" and stats.requests == 3
    assert stats.statuses == {"200": 1, "504": 1, "404": 1} and stats.timeouts == 1
    assert stats.bytes == 15 and stats.mode == "thread"
    assert stats.buckets[0] == 1  # <= 1 ms
    assert stats.buckets[BUCKETS.index(5.0)] == 1  # 3 s
    assert sum(stats.buckets) == 3 and len(stats.buckets) == len(BUCKETS) + 1
    assert len(stats.samples) == 3
    assert m.snapshot_scripts(time.time() + 60, samples=True)[0].samples == []


def test_rate_over_the_last_minute():
    m = Monitor()
    for _ in range(120):
        m.done("/x.py", "inline", 200, 0, T, T + 0.001)
    assert m.rate1m() == 2.0
    m._advance(m._second + 61)  # a minute later, nothing new
    assert m.rate1m() == 0.0


def test_slow_log_writes_the_stack_of_a_long_execution_once(tmp_path):
    m = Monitor(str(tmp_path))
    script = str(tmp_path / "default/1/slow.py")
    release = threading.Event()

    def dawdle_in_script() -> None:
        release.wait(5)

    code = compile("dawdle_in_script()", script, "exec")
    t = threading.Thread(target=exec, args=(code, {"dawdle_in_script": dawdle_in_script}))
    t.start()
    m.active["e1"] = (script, "GET", "/slow", time.monotonic() - 1.0, None, "thread")
    m.active["e2"] = (script, "GET", "/slow", time.monotonic(), None, "thread")
    log = SlowLog(m, str(tmp_path / "slow.log"), 0.5, os.getpid())
    try:
        assert log.check() == ["e1"]
        assert log.check() == []  # once
    finally:
        release.set()
        t.join()
    (entry,) = [json.loads(x) for x in (tmp_path / "slow.log").read_text().splitlines()]
    assert entry["executionId"] == "e1" and entry["script"] == "default/1/slow.py"
    assert "dawdle_in_script" in entry["stack"] and entry["elapsedMs"] >= 1000


def test_flusher_copies_increments_into_multiprocess_metrics(tmp_path):
    # A fresh interpreter: prometheus-client picks its multiprocess mode at import.
    code = f"""
import os
import time
T = time.monotonic()
os.environ["PROMETHEUS_MULTIPROC_DIR"] = {str(tmp_path)!r}
from hoodyexec.engine.monitor import Monitor
from hoodyexec.engine.metrics import Flusher, exposition
m = Monitor("/r")
f = Flusher(m)
for _ in range(3):
    m.done("/r/default/1/a.py", "inline", 200, 1, T, T + 0.002)
f()
m.done("/r/default/1/a.py", "inline", 500, 1, T, T + 0.2)
f()
f()
print(exposition().decode())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    text = out.stdout
    assert 'hoodyexec_requests_total{instance="default/1",script="a.py",status="200"} 3.0' in text
    assert 'hoodyexec_requests_total{instance="default/1",script="a.py",status="500"} 1.0' in text
    assert (
        'hoodyexec_request_duration_seconds_count{instance="default/1",script="a.py"} 4.0' in text
    )
    assert 'le="0.0025",script="a.py"} 3.0' in text


def test_batches_fold_exactly_what_each_record_says():
    """The batch fold (columns, fast paths for one script / one status / one
    bucket) gives the figures a record-by-record count gives, over mixed
    scripts, statuses and durations, and keeps the last SAMPLES samples."""
    import random

    from hoodyexec.engine.monitor import BATCH, SAMPLES

    rng = random.Random(7)
    m = Monitor("/r")
    files = ["/r/default/1/a.py", "/r/default/1/b.py", "/r/default/2/c.py"]
    expect: dict[str, dict] = {}
    t = T
    for i in range(5000):
        # long runs of one script, one status and short durations (the fast
        # paths), broken by other scripts, statuses and slow calls
        file = files[0] if i % 1000 < 600 else rng.choice(files)
        status = 200 if i % 900 < 500 else rng.choice([200, 201, 404, 500, 504, "200 OK"])
        took = 0.0002 if i % 700 < 400 else rng.choice([0.0004, 0.003, 0.02, 0.7, 12.0, 90.0])
        nbytes = rng.randrange(0, 5000)
        t += 0.001
        m.done(file, "inline" if i % 2 else "thread", status, nbytes, t, t + took)
        e = expect.setdefault(
            file, {"n": 0, "st": {}, "b": 0, "s": 0.0, "k": [0] * (len(BUCKETS) + 1), "x": []}
        )
        code = status if isinstance(status, int) else 200
        e["n"] += 1
        e["st"][str(code)] = e["st"].get(str(code), 0) + 1
        e["b"] += nbytes
        e["s"] += took
        e["k"][sum(1 for b in BUCKETS if took > b)] += 1
        e["x"].append(round(took * 1000.0, 3))
        if i == 2500:
            m.drain()  # a partial batch folded in the middle, as a snapshot does
    assert len(m._pending) < BATCH * 6  # folded every BATCH records
    stats = {s.key: s for s in m.snapshot_scripts(None, samples=True)}
    assert set(stats) == {"default/1/a.py", "default/1/b.py", "default/2/c.py"}
    for file, e in expect.items():
        s = stats[m.name(file)]
        assert s.requests == e["n"] and s.statuses == e["st"] and s.bytes == e["b"]
        assert s.timeouts == e["st"].get("504", 0)
        assert s.buckets == e["k"]
        assert abs(s.seconds - e["s"]) < 1e-6
        assert s.samples == e["x"][-SAMPLES:]
    assert sum(s.requests for s in stats.values()) == 5000


def test_the_execution_ids_fold_the_monitors_batch_every_256():
    from hoodyexec.http.sink import _execution_ids

    calls = []
    ids = _execution_ids("abcdef", lambda: calls.append(1))
    got = [next(ids) for _ in range(1000)]
    assert got[0] == "abcdef0000001" and got[254] == "abcdef00000ff"
    assert got[255] == "abcdef0000100" and len(set(got)) == 1000
    assert len(calls) == 3  # at ids 0x100, 0x200 and 0x300

    def broken() -> None:
        raise RuntimeError("fold failed")

    ids = _execution_ids("abcdef", broken)
    assert len({next(ids) for _ in range(600)}) == 600  # ids keep coming


def test_the_inline_execution_the_probe_finds_is_listed_as_running():
    m = Monitor("/r")
    m.inline_probe = lambda: ("e1", "/r/default/1/a.py", "GET", "/a", T)
    ((eid, record),) = m.running()
    assert eid == "e1" and record == ("/r/default/1/a.py", "GET", "/a", T, None, "inline")
    (active,) = m.snapshot_active()
    assert active.execution_id == "e1" and active.mode == "inline" and active.path == "/a"


def test_a_batch_of_microsecond_calls_lands_in_the_first_bucket_and_one_slow_call_does_not():
    m = Monitor("/r")
    for i in range(600):  # whole batches whose total is under the first bound
        m.done("/r/a.py", "inline", 200, 1, T + i, T + i + 0.000002)
    m.done("/r/a.py", "inline", 200, 1, T + 700, T + 700.3)  # with tiny ones: another bucket
    for i in range(10):
        m.done("/r/a.py", "inline", 200, 1, T + 800 + i, T + 800 + i + 0.000002)
    (s,) = m.snapshot_scripts(None, samples=False)
    assert s.requests == 611 and s.buckets[0] == 610
    assert s.buckets[BUCKETS.index(0.5)] == 1 and sum(s.buckets) == 611


def test_samples_are_kept_as_doubles_not_float_objects():
    """PERF: a script's last samples are arrays of C doubles (16 bytes per
    sample); no float object of a folded batch outlives the fold."""
    import array
    import gc

    from hoodyexec.engine.monitor import SAMPLES

    m = Monitor("/r")
    for i in range(3000):
        m.done("/r/a.py", "inline", 200, 1, T + i, T + i + 0.000123)
    m.drain()
    (f,) = m.scripts.values()
    kept = [column for pair in f._recent for column in pair]
    assert kept and all(type(c) is array.array and c.typecode == "d" for c in kept)
    assert not any(type(x) is float for c in kept for x in gc.get_referents(c))
    assert SAMPLES <= sum(len(c) for c in kept) // 2 < 2 * SAMPLES
    (s,) = m.snapshot_scripts(None, samples=True)
    assert len(s.samples) == SAMPLES and set(s.samples) == {0.123}
