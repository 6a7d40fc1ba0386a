"""Shared-state benchmark: ``shared.get`` and ``shared.incr`` through a live kit.

Measured on one kit (2 request workers by default), each target loaded by
``wrk -t1 -c32`` on the whole machine (nothing pinned: the incr target is an
absolute figure for this machine, 2 cores shared by the kit and wrk):

- ``trivial``: ``return {"hi": "world"}`` — the reference for reads;
- ``get``: ``shared.get("n", 0)`` on a small document;
- ``incr``: ``shared.incr("n")`` on an instance whose document is empty;
- ``incr_big``: the same script on an instance whose document holds about
  500 KB (3,600 objects under ``items`` and a 1,000-element list), as an
  app that keeps its data in shared state has.

The targets run one after the other and the order rotates every round; each
ratio is the median over rounds of the per-round ratio (the machine's speed
drifts by tens of percent from second to second, a round's targets see nearly
the same machine). Figures: ``get_vs_trivial`` (goal ≥ 0.9),
``incr_big_vs_incr`` (goal ≥ 0.8, within 20 %), ``incr_rps`` (goal ≥ 10,000).

``measure()`` is what ``bench/run.py`` calls; ``python bench/shared_state.py``
runs it alone and prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GUNICORN_CONF = ROOT / "conf" / "gunicorn.conf.py"

SCRIPTS = {
    "triv.py": 'return {"hi": "world"}\n',
    "get.py": 'return {"n": shared.get("n", 0)}\n',
    "incr.py": 'return {"n": shared.incr("n")}\n',
}
# target -> (script, Host header): instance 1 has a small document, 2 an empty
# one, 3 the 500 KB one.
TARGETS = {
    "trivial": ("/triv", "exec-1.localhost"),
    "get": ("/get", "exec-1.localhost"),
    "incr": ("/incr", "exec-2.localhost"),
    "incr_big": ("/incr", "exec-3.localhost"),
}
GOALS = {"get_vs_trivial": 0.9, "incr_big_vs_incr": 0.8, "incr_rps": 10_000.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def big_document() -> dict[str, Any]:
    """About 500 KB of JSON: objects keyed by id and a list, like an app's data."""
    items = {
        f"item{i}": {
            "id": i,
            "name": f"product number {i}",
            "price": i * 1.25,
            "tags": ["a", "b", "c"],
            "stock": {"warehouse": i % 7, "shelf": f"S{i % 50}"},
        }
        for i in range(3600)
    }
    log = [{"at": 1_700_000_000 + i, "event": "viewed", "by": f"user{i % 97}"} for i in range(1000)]
    return {"items": items, "log": log, "title": "catalogue"}


def _post(port: int, path: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        answer: dict[str, Any] = json.loads(r.read())
        return answer


def _get(port: int, path: str, host: str) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read()


def _wait_up(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if _get(port, "/api/v1/exec/health", "127.0.0.1")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"kit on port {port} not healthy in {timeout}s")


def _wrk(wrk_bin: str, port: int, path: str, host: str, seconds: float, conns: int) -> float:
    cmd = [wrk_bin, "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "-H", f"Host: {host}"]
    out = subprocess.run(
        [*cmd, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True
    ).stdout
    if re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        raise RuntimeError(f"{path} on {host}: error responses during the benchmark:\n{out}")
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else 0.0


def _seed(home: Path) -> None:
    for inst in ("1", "2", "3"):
        folder = home / "scripts" / "default" / inst
        folder.mkdir(parents=True)
        for name, text in SCRIPTS.items():
            (folder / name).write_text(text)


def measure(
    wrk_bin: str,
    *,
    workers: int = 2,
    seconds: float = 3.0,
    rounds: int = 5,
    connections: int = 32,
) -> dict[str, Any]:
    """Start a kit, load each target for ``rounds`` rounds; the figures as a dict."""
    with tempfile.TemporaryDirectory(prefix="hxs") as tmp:
        home = Path(tmp)
        _seed(home)
        port = _free_port()
        cmd = [str(BIN / "hoodyexec"), "serve", "--home", str(home)]
        cmd += ["--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
        cmd += ["--log-level", "warning", "--gunicorn-config", str(GUNICORN_CONF)]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            _wait_up(port)
            doc = big_document()
            big = _post(
                port,
                "/api/v1/exec/shared-state/set",
                {"hostname": "exec-3.localhost", "value": doc},
            )
            assert big.get("success"), big
            doc_bytes = len(json.dumps(doc, separators=(",", ":")))
            _post(
                port,
                "/api/v1/exec/shared-state/set",
                {"hostname": "exec-1.localhost", "path": "n", "value": 1},
            )
            for path, host in TARGETS.values():  # compile every script, warm every worker
                for _ in range(20):
                    assert _get(port, path, host)[0] == 200
            for path, host in TARGETS.values():
                _wrk(wrk_bin, port, path, host, 1, connections)
            per_round: dict[str, list[float]] = {name: [] for name in TARGETS}
            names = list(TARGETS)
            for i in range(rounds):
                order = names[i % len(names) :] + names[: i % len(names)]
                for name in order:
                    path, host = TARGETS[name]
                    per_round[name].append(_wrk(wrk_bin, port, path, host, seconds, connections))
            state = _post(
                port,
                "/api/v1/exec/shared-state/get",
                {"hostname": "exec-3.localhost", "path": "title"},
            )
            assert state["value"] == "catalogue", state  # the big document is intact
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def ratio(a: str, b: str) -> float:
        return round(
            statistics.median(x / y for x, y in zip(per_round[a], per_round[b], strict=True)), 3
        )

    return {
        "settings": {
            "workers": workers,
            "seconds": seconds,
            "rounds": rounds,
            "connections": connections,
            "big_document_bytes": doc_bytes,
        },
        "rps_median": {k: round(statistics.median(v)) for k, v in per_round.items()},
        "rps_rounds": {k: [round(x) for x in v] for k, v in per_round.items()},
        "get_vs_trivial": ratio("get", "trivial"),
        "incr_big_vs_incr": ratio("incr_big", "incr"),
        "incr_rps": round(statistics.median(per_round["incr"])),
    }


def checks(figures: dict[str, Any]) -> list[tuple[str, bool]]:
    """The goals, as (label, met) pairs like bench/run.py prints them."""
    return [
        (
            f"shared.get ≥ {GOALS['get_vs_trivial']}× a trivial script",
            figures["get_vs_trivial"] >= GOALS["get_vs_trivial"],
        ),
        (
            "shared.incr with a 500 KB document within 20% of an empty one",
            figures["incr_big_vs_incr"] >= GOALS["incr_big_vs_incr"],
        ),
        (
            f"shared.incr ≥ {GOALS['incr_rps']:,.0f} req/s",
            figures["incr_rps"] >= GOALS["incr_rps"],
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    wrk_bin = shutil.which("wrk")
    if wrk_bin is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from run import ensure_wrk  # the Debian package, installed as run.py does

        wrk_bin = ensure_wrk()
    figures = measure(
        wrk_bin,
        workers=args.workers,
        seconds=args.seconds,
        rounds=args.rounds,
        connections=args.connections,
    )
    figures = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        **figures,
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    for label, ok in checks(figures):
        print(f"{'PASS' if ok else 'FAIL'}  {label}")


if __name__ == "__main__":
    main()
