"""hoodyexec benchmarks: ratios against plain Falcon apps measured in the same run.

``make bench`` runs, on this machine:

1. requests/s of a trivial body-mode script and a trivial async handler
   against two plain Falcon ASGI apps (``baseline_app.py``): ``resp.media``
   (the way a Falcon user writes it first) and lean (``resp.data`` from a
   msgspec encoder, the fastest idiomatic Falcon), each on its own gunicorn
   with the same settings (``asgi`` worker class, ``conf/gunicorn.conf.py``,
   same worker count). Each pair is loaded at the same time by two wrk
   processes, both servers on the same CPU, so any slowdown of the machine
   hits both alike; the ratio is the median over rounds;
2. write → first invocation latency (p50/p99): a new script file written
   atomically, then requested at once;
3. throughput with 1,000 scripts in an instance (requests spread over all of
   them) against one script;
4. idle request worker RSS and boot-to-healthy time;
5. what monitoring costs: the trivial script on the kit against the same kit
   started with ``--no-monitoring``, as a duel like the others but with the
   order of the two wrk processes alternating every round (the second one
   has an edge of about 2 %, as much as what is measured here).

Server processes are pinned to CPU 0 and wrk to CPU 1 (when there are two or
more CPUs) to cut the noise of a shared machine.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.metadata
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GUNICORN_CONF = ROOT / "conf" / "gunicorn.conf.py"
PIN = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None

TRIVIAL_BODY = 'return {"hi": "world"}\n'
TRIVIAL_ASYNC = 'async def handler():\n    return {"hi": "world"}\n'


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


def get(port: int, path: str, host: str = "127.0.0.1", timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def wait_up(port: int, path: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if get(port, path, timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"port {port} {path} not up in {timeout}s")


class Server:
    def __init__(self, cmd: list[str]) -> None:
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd=ROOT,
        )

    def pin(self) -> None:
        """Pin the master and every process under it (all threads) to CPU 0."""
        if not PIN:
            return
        import psutil

        root = psutil.Process(self.proc.pid)
        for proc in [root, *root.children(recursive=True)]:
            subprocess.run(
                ["taskset", "-acp", "0", str(proc.pid)], stdout=subprocess.DEVNULL, check=False
            )

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def kit_cmd(home: str, port: int, workers: int, *extra: str) -> list[str]:
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
        *extra,
    ]


def baseline_cmd(port: int, workers: int, app: str = "app") -> list[str]:
    return [
        str(BIN / "gunicorn"),
        "-c",
        str(GUNICORN_CONF),
        "--worker-class",
        "asgi",  # gunicorn's native ASGI worker, the class hoodyexec's worker extends
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-control-socket",
        "--chdir",
        str(ROOT / "bench"),
        f"baseline_app:{app}",
    ]


def wrk(
    wrk_bin: str,
    url: str,
    seconds: float,
    conns: int,
    host: str | None = None,
    script: str | None = None,
) -> float:
    cmd = wrk_cmd(wrk_bin, url, seconds, conns, host, script)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} error responses during the benchmark")
    return float(m.group(1)) if m else 0.0


def wrk_cmd(
    wrk_bin: str, url: str, seconds: float, conns: int, host: str | None, script: str | None
) -> list[str]:
    cmd = [wrk_bin, "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s"]
    if host:
        cmd += ["-H", f"Host: {host}"]
    if script:
        cmd += ["-s", script]
    cmd.append(url)
    return ["taskset", "-c", "1", *cmd] if PIN else cmd


def duel(
    wrk_bin: str,
    a: tuple[str, str | None, str | None],
    b: tuple[str, str | None, str | None],
    seconds: float,
    conns: int,
) -> tuple[float, float]:
    """Load two servers at the same time, on the same CPU: whatever the machine
    does during the round, both see it, so the ratio of their requests/s is the
    ratio of their costs per request."""
    procs = [
        subprocess.Popen(
            wrk_cmd(wrk_bin, url, seconds, conns, host, script), stdout=subprocess.PIPE, text=True
        )
        for url, host, script in (a, b)
    ]
    outs = [p.communicate()[0] for p in procs]
    rates = []
    for out in outs:
        if re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
            raise RuntimeError(f"error responses during the benchmark:\n{out}")
        rates.append(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)))
    return rates[0], rates[1]


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3, help="duration of one wrk round")
    ap.add_argument("--rounds", type=int, default=7, help="rounds per pair")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--writes", type=int, default=300, help="write → first invocation samples")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    wrk_bin = ensure_wrk()
    results: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "libraries": {
            name: importlib.metadata.version(name)
            for name in ("gunicorn", "falcon", "msgspec", "uvloop")
        },
        "settings": {k: v for k, v in vars(args).items() if k != "json"} | {"pinned": PIN},
    }

    with tempfile.TemporaryDirectory(prefix="hxb") as home:
        # instance default/1: the two trivial scripts; default/2: one script; default/3: 1,000
        inst = Path(home) / "scripts" / "default"
        (inst / "1").mkdir(parents=True)
        (inst / "1" / "triv.py").write_text(TRIVIAL_BODY)
        (inst / "1" / "atriv.py").write_text(TRIVIAL_ASYNC)
        (inst / "2").mkdir()
        (inst / "2" / "s0.py").write_text(TRIVIAL_BODY)
        (inst / "3").mkdir()
        for i in range(1000):
            folder = inst / "3" / f"g{i % 10}"
            folder.mkdir(exist_ok=True)
            (folder / f"s{i}.py").write_text(TRIVIAL_BODY)
        lua = Path(home) / "spread.lua"
        lua.write_text(
            "local i = 0\nrequest = function()\n  i = (i + 1) % 1000\n"
            "  return wrk.format('GET', '/g' .. (i % 10) .. '/s' .. i)\nend\n"
        )

        kp, bp, lp = free_port(), free_port(), free_port()
        t0 = time.monotonic()
        kit = Server(kit_cmd(home, kp, args.workers))
        servers = [kit]
        try:
            wait_up(kp, "/api/v1/exec/health")
            results["boot_to_healthy_s"] = round(time.monotonic() - t0, 3)
            # The baselines start once the kit is up, so their boot does not
            # compete with the kit's for the CPUs and skew its boot time.
            base = Server(baseline_cmd(bp, args.workers))
            lean = Server(baseline_cmd(lp, args.workers, "lean"))
            # The same kit with monitoring off: what recording costs.
            # Same scripts tree as the kit, so the only difference is monitoring.
            bare_home = Path(home) / "bare"
            shutil.copytree(Path(home) / "scripts", bare_home / "scripts")
            np_ = free_port()
            bare = Server(kit_cmd(str(bare_home), np_, args.workers, "--no-monitoring"))
            servers += [base, lean, bare]
            wait_up(bp, "/triv")
            wait_up(lp, "/triv")
            wait_up(np_, "/triv")
            time.sleep(1.0)
            health = json.loads(get(kp, "/api/v1/exec/health")[1])
            import psutil

            results["idle_worker_rss_mb"] = round(
                max(psutil.Process(p).memory_info().rss for p in health["workers"]) / 2**20, 1
            )
            kit.pin()
            base.pin()
            lean.pin()
            bare.pin()
            # warm every target (and compile every script) before measuring
            for i in range(1000):
                assert get(kp, f"/g{i % 10}/s{i}", host="exec-3.localhost")[0] == 200
                assert get(np_, f"/g{i % 10}/s{i}", host="exec-3.localhost")[0] == 200
            targets = {
                "falcon_media": (f"http://127.0.0.1:{bp}/triv", None, None),
                "falcon_lean": (f"http://127.0.0.1:{lp}/triv", None, None),
                "body": (f"http://127.0.0.1:{kp}/triv", None, None),
                "body_unmonitored": (f"http://127.0.0.1:{np_}/triv", None, None),
                "async_handler": (f"http://127.0.0.1:{kp}/atriv", None, None),
                "one_script": (f"http://127.0.0.1:{kp}/s0", "exec-2.localhost", None),
                "thousand_scripts": (f"http://127.0.0.1:{kp}/", "exec-3.localhost", str(lua)),
            }
            for url, host, script in targets.values():
                wrk(wrk_bin, url, 1, args.connections, host, script)
            # Each pair is loaded at the same time, both servers pinned to the same CPU;
            # the median over rounds of the per-round ratio is the figure.
            pairs = {
                "body_vs_media": ("body", "falcon_media"),
                "body_vs_lean": ("body", "falcon_lean"),
                "async_vs_media": ("async_handler", "falcon_media"),
                "async_vs_lean": ("async_handler", "falcon_lean"),
                "thousand_vs_one_script": ("thousand_scripts", "one_script"),
                "monitored_vs_unmonitored": ("body", "body_unmonitored"),
            }
            rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in pairs}
            # The monitoring pair compares a kit with itself, where a 2 % edge of
            # the duel's second wrk matters: its order alternates every round.
            alternate = {"monitored_vs_unmonitored"}
            for i in range(args.rounds):
                for name, (a, b) in pairs.items():
                    if name in alternate and i % 2:
                        y, x = duel(
                            wrk_bin, targets[b], targets[a], args.seconds, args.connections // 2
                        )
                        rounds[name].append((x, y))
                        continue
                    rounds[name].append(
                        duel(wrk_bin, targets[a], targets[b], args.seconds, args.connections // 2)
                    )
            results["ratios"] = {
                name: round(statistics.median(x / y for x, y in v), 3) for name, v in rounds.items()
            }
            results["rps_rounds"] = {
                name: [[round(x), round(y)] for x, y in v] for name, v in rounds.items()
            }
            # For scale: each target alone, sequentially (noisy on a shared machine).
            solo = {
                name: wrk(wrk_bin, url, args.seconds, args.connections, host, script)
                for name, (url, host, script) in targets.items()
            }
            results["rps_alone"] = {k: round(v) for k, v in solo.items()}

            # write → first invocation
            lat = []
            folder = inst / "1"
            for i in range(args.writes):
                path = folder / f"w{i}.py"
                t = time.perf_counter()
                write_atomic(path, f"return {{'n': {i}}}\n")
                status, body = get(kp, f"/w{i}")
                lat.append((time.perf_counter() - t) * 1000)
                if status != 200 or json.loads(body) != {"n": i}:
                    raise RuntimeError(f"write→invoke {i}: {status} {body!r}")
            rewrite = []
            for i in range(args.writes // 3):
                t = time.perf_counter()
                write_atomic(folder / "w0.py", f"return {{'v': {i}}}\n")
                status, body = get(kp, "/w0")
                rewrite.append((time.perf_counter() - t) * 1000)
                if json.loads(body) != {"v": i}:
                    raise RuntimeError(f"rewrite {i}: stale answer {body!r}")
            results["write_to_first_answer_ms"] = {
                "new_file_p50": round(pct(lat, 0.5), 2),
                "new_file_p99": round(pct(lat, 0.99), 2),
                "rewrite_p50": round(pct(rewrite, 0.5), 2),
                "rewrite_p99": round(pct(rewrite, 0.99), 2),
            }
        finally:
            for server in servers:
                server.stop()

    # Shared state (get, incr, incr with 500 KB): its own kit, see bench/shared_state.py.
    import shared_state

    results["shared_state"] = shared_state.measure(wrk_bin)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    r = results["ratios"]
    w = results["write_to_first_answer_ms"]
    checks = [
        ("body-mode ≥ 0.85× Falcon resp.media", r["body_vs_media"] >= 0.85),
        ("body-mode ≥ 0.80× Falcon lean", r["body_vs_lean"] >= 0.80),
        ("async handler ≥ 0.85× Falcon resp.media", r["async_vs_media"] >= 0.85),
        ("async handler ≥ 0.80× Falcon lean", r["async_vs_lean"] >= 0.80),
        ("1,000 scripts within 10% of one", r["thousand_vs_one_script"] >= 0.90),
        ("monitoring costs < 3% (monitored vs not)", r["monitored_vs_unmonitored"] >= 0.97),
        ("write → first answer p50 < 5 ms", w["new_file_p50"] < 5),
        ("idle worker RSS < 60 MB", results["idle_worker_rss_mb"] < 60),
    ]
    checks += shared_state.checks(results["shared_state"])
    for label, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}")


if __name__ == "__main__":
    main()
