"""hoodyexec benchmarks: ratios against a plain Falcon app measured in the same run.

Run with ``make bench``. Measures, on this machine:

* boot to healthy (median of several starts);
* requests/s of the kit's gateway answering a non-management path versus a
  plain Falcon ASGI app doing the same on the same gunicorn settings (same
  worker class, worker count and conf/gunicorn.conf.py), in alternating rounds;
* requests/s of a management call forwarded to the control worker (health);
* idle request worker RSS.

Script-execution benchmarks join when the scripts engine lands.
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

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GUNICORN_CONF = ROOT / "conf" / "gunicorn.conf.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk from Debian packages ...", flush=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"], check=False, stdout=subprocess.DEVNULL
        )
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update", "-q"], check=False, stdout=subprocess.DEVNULL)
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=subprocess.DEVNULL
            )
        path = shutil.which("wrk")
    if not path:
        sys.exit("wrk is needed: apt-get install wrk")
    return path


def wait_http(url: str, timeout: float = 15.0, ok=(200, 404)) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status in ok:
                    return
        except urllib.error.HTTPError as e:
            if e.code in ok:
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{url} not up in {timeout}s")


class Server:
    def __init__(self, cmd: list[str]) -> None:
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd=ROOT,
        )

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)


def kit_cmd(home: str, port: int, workers: int) -> list[str]:
    return [
        str(BIN / "hoodyexec"),
        "serve",
        "--home",
        home,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--gunicorn-config",
        str(GUNICORN_CONF),
    ]


def baseline_cmd(port: int, workers: int) -> list[str]:
    return [
        str(BIN / "gunicorn"),
        "-c",
        str(GUNICORN_CONF),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-control-socket",
        "--chdir",
        str(ROOT / "bench"),
        "baseline_app:app",
    ]


def wrk(wrk_bin: str, url: str, seconds: int, conns: int, threads: int) -> float:
    out = subprocess.run(
        [wrk_bin, f"-t{threads}", f"-c{conns}", f"-d{seconds}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m or "Socket errors" in out and "timeout" in out:
        pass
    return float(m.group(1)) if m else 0.0


def boot_times(runs: int, workers: int) -> list[float]:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="hxb") as home:
            port = free_port()
            t0 = time.monotonic()
            srv = Server(kit_cmd(home, port, workers))
            try:
                wait_http(f"http://127.0.0.1:{port}/api/v1/exec/health", ok=(200,))
                times.append(time.monotonic() - t0)
            finally:
                srv.stop()
    return times


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5, help="duration of one wrk round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per target")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    wrk_bin = ensure_wrk()

    results: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "settings": vars(args),
    }
    boots = boot_times(5, 2)
    results["boot_to_healthy_s"] = {
        "median": round(statistics.median(boots), 3),
        "max": round(max(boots), 3),
    }

    with tempfile.TemporaryDirectory(prefix="hxb") as home:
        kp, bp = free_port(), free_port()
        kit = Server(kit_cmd(home, kp, args.workers))
        base = Server(baseline_cmd(bp, args.workers))
        try:
            wait_http(f"http://127.0.0.1:{kp}/api/v1/exec/health", ok=(200,))
            wait_http(f"http://127.0.0.1:{bp}/x")
            time.sleep(1.0)
            health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{kp}/api/v1/exec/health"))
            results["idle_worker_rss_mb"] = round(max(rss_mb(p) for p in health["workers"]), 1)
            results["control_rss_mb"] = round(rss_mb(health["control"]), 1)
            # warm up both
            wrk(wrk_bin, f"http://127.0.0.1:{kp}/bench", 1, args.connections, args.threads)
            wrk(wrk_bin, f"http://127.0.0.1:{bp}/bench", 1, args.connections, args.threads)
            kit_rps, base_rps, mgmt_rps = [], [], []
            for _ in range(args.rounds):
                base_rps.append(
                    wrk(
                        wrk_bin,
                        f"http://127.0.0.1:{bp}/bench",
                        args.seconds,
                        args.connections,
                        args.threads,
                    )
                )
                kit_rps.append(
                    wrk(
                        wrk_bin,
                        f"http://127.0.0.1:{kp}/bench",
                        args.seconds,
                        args.connections,
                        args.threads,
                    )
                )
                mgmt_rps.append(
                    wrk(
                        wrk_bin,
                        f"http://127.0.0.1:{kp}/api/v1/exec/health",
                        args.seconds,
                        args.connections,
                        args.threads,
                    )
                )
        finally:
            kit.stop()
            base.stop()
    k, b, m = statistics.median(kit_rps), statistics.median(base_rps), statistics.median(mgmt_rps)
    results["gateway_not_found"] = {
        "kit_rps": round(k),
        "falcon_rps": round(b),
        "ratio": round(k / b, 3),
        "rounds_kit": kit_rps,
        "rounds_falcon": base_rps,
    }
    results["management_health_forwarded_rps"] = round(m)

    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
