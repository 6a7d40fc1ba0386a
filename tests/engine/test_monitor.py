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
