"""The operator's commands: ``hoodyexec status|reload|restart|drain|undrain|stop|logs``.

Each acts on the kit running at a home (``--home``, ``HOODYEXEC_HOME``,
``--config``, as for ``serve``): the master through its pid file, everything
else through the management API, called over the home's control socket as a
request worker forwards a call. The socket is 0600, so only the kit's user (or
root) gets this far, and no token is asked: the control worker trusts calls
that no request worker forwarded (see ``http/management.py``).

Exit codes: 0 done (or healthy), 1 failed (or starting, draining), 2 no kit
runs at that home or it cannot be reached. Expected failures print one line to
stderr, never a traceback.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO
from urllib.parse import quote

import msgspec
import psutil

from hoodyexec.clock import pid_alive
from hoodyexec.home import Home
from hoodyexec.ipc.protocol import (
    MAX_FRAME,
    HttpRequest,
    ResponseBody,
    ResponseStart,
    decode,
    encode,
)

E = "/api/v1/exec/"
OK, FAILED, NO_KIT = 0, 1, 2
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")


class OpsError(Exception):
    """An expected failure: one line for the operator, and an exit code."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


def seconds(text: str) -> float:
    """``5s``, ``500ms``, ``2m`` or a bare number of seconds."""
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 5s, 500ms, 2m)")
    value, unit = float(m.group(1)), m.group(2) or "s"
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


class RunningKit:
    """The kit at a home, as its pid file and control socket show it."""

    def __init__(self, home: Home) -> None:
        self.home = home

    def master(self) -> int:
        try:
            with open(self.home.pidfile) as f:
                pid = int(f.read().strip() or 0)
        except FileNotFoundError:
            raise OpsError(f"no kit is running at {self.home.root} (no pid file)", NO_KIT) from None
        except (OSError, ValueError) as exc:
            raise OpsError(f"cannot read the pid file {self.home.pidfile}: {exc}", NO_KIT) from None
        if pid <= 1 or not pid_alive(pid):
            raise OpsError(f"no kit is running at {self.home.root} (stale pid file: {pid})", NO_KIT)
        return pid

    # -- the management API over the control socket ------------------------------------
    def _send(self, method: str, path: str, body: Any, timeout: float) -> socket.socket:
        target, _, query = path.partition("?")
        payload = b"" if body is None else json.dumps(body).encode()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.home.control_socket)
        except PermissionError:
            sock.close()
            raise OpsError(
                f"permission denied on {self.home.control_socket}: run as the kit's user"
            ) from None
        except OSError as exc:
            sock.close()
            self.master()  # "no kit" when that is the reason
            raise OpsError(
                f"the control worker does not answer at {self.home.control_socket}: "
                f"{exc.strerror or exc}",
                NO_KIT,
            ) from None
        headers = [(b"host", b"localhost"), (b"user-agent", b"hoodyexec-cli")]
        if payload:
            headers.append((b"content-type", b"application/json"))
        request = HttpRequest(
            method=method,
            path=target,
            query_string=query.encode(),
            headers=headers,
            body=payload,
            client=("127.0.0.1", 0),
        )
        sock.sendall(encode(request))
        return sock

    def call(
        self, method: str, path: str, body: Any = None, timeout: float = 15.0
    ) -> tuple[int, Any]:
        """One management call: (status, decoded JSON body)."""
        sock = self._send(method, E + path, body, timeout)
        try:
            frames = _frames(sock)
            status = _start(frames)
            data = b"".join(frames)
        except TimeoutError:
            raise OpsError(f"{method} {path}: no answer within {timeout:g} s") from None
        finally:
            sock.close()
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            raise OpsError(
                f"{method} {path}: answered {status} with a body that is not JSON"
            ) from None

    def stream(self, path: str) -> Iterator[bytes]:
        """A streamed management answer (a followed log), chunk by chunk."""
        sock = self._send("GET", E + path, None, 3600.0)
        try:
            frames = _frames(sock)
            status = _start(frames)
            if status != 200:
                body = b"".join(frames)
                raise OpsError(_error(status, _json(body)))
            yield from frames
        finally:
            sock.close()

    def ok(self, method: str, path: str, body: Any = None, timeout: float = 15.0) -> Any:
        status, data = self.call(method, path, body, timeout)
        if status >= 400:
            raise OpsError(_error(status, data))
        return data


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 16))
        if not chunk:
            raise OpsError("the control worker closed the connection mid-answer")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _frames(sock: socket.socket) -> Iterator[Any]:
    """``ResponseStart`` first, then each ``ResponseBody``'s bytes until the last."""
    while True:
        size = int.from_bytes(_recv_exactly(sock, 4), "big")
        if size > MAX_FRAME:
            raise OpsError("the control worker sent an oversized frame")
        msg = decode(_recv_exactly(sock, size))
        if isinstance(msg, ResponseStart):
            yield msg
        elif isinstance(msg, ResponseBody):
            if msg.body:
                yield msg.body
            if not msg.more:
                return
        else:
            raise OpsError(f"unexpected {type(msg).__name__} from the control worker")


def _start(frames: Iterator[Any]) -> int:
    first = next(frames, None)
    if not isinstance(first, ResponseStart):
        raise OpsError("the control worker answered without a status")
    return first.status


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _error(status: int, data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return f"{status}: {data['error']}"
    return f"the kit answered {status}"


# -- commands -----------------------------------------------------------------------------
Out = Callable[[str], None]


def printer(stream: TextIO) -> Out:
    def out(line: str) -> None:
        print(line, file=stream, flush=True)

    return out


def status(kit: RunningKit, as_json: bool, out: Out) -> int:
    master = kit.master()
    code, health = kit.call("GET", "health", timeout=5.0)
    state = health.get("status", "unknown") if isinstance(health, dict) else "unknown"
    stats = kit.ok("GET", "monitor/stats") or {}
    restart = kit.ok("GET", "system/restart-status") or {}
    workers = [
        {
            "pid": w.get("pid"),
            "rssMb": round(w["rss"] / 2**20, 1) if isinstance(w.get("rss"), int) else None,
            "inflight": w.get("active", 0),
            "requests": w.get("requests", 0),
        }
        for w in stats.get("workers", [])
    ]
    report = {
        "state": state,
        "healthy": code == 200,
        "home": kit.home.root,
        "bind": health.get("bind") if isinstance(health, dict) else None,
        "version": health.get("version") if isinstance(health, dict) else None,
        "uptime": health.get("uptime") if isinstance(health, dict) else None,
        "master": master,
        "control": health.get("control") if isinstance(health, dict) else None,
        "workers": workers,
        "requests": stats.get("requests", {}),
        "schedules": stats.get("cron"),
        "restart": {k: v for k, v in restart.items() if k != "success"},
    }
    if as_json:
        out(json.dumps(report, indent=2))
    else:
        out(f"hoodyexec {report['version']} at {report['home']}: {state}")
        out(f"  bind {report['bind']}, up {report['uptime']} s")
        out(f"  master {master}, control {report['control']}")
        for w in workers:
            out(
                f"  worker {w['pid']}: rss {w['rssMb']} MB, "
                f"in flight {w['inflight']}, served {w['requests']}"
            )
        req = report["requests"]
        out(f"  requests: {req.get('total', 0)} served, {req.get('active', 0)} in flight")
        cron = report["schedules"] or {}
        out(f"  schedules: {cron.get('schedules', 0)}, next fire {cron.get('nextRun') or '-'}")
        last = restart.get("lastRestart") or {}
        out(
            f"  restart: {restart.get('state', '?')}"
            + (f"; last {last.get('completedAt')} ({last.get('reason')})" if last else "")
        )
    return OK if code == 200 else FAILED


def _wait_restart(kit: RunningKit, requested_at: str, timeout: float) -> dict[str, Any]:
    """The restart requested at ``requested_at``, once the master has finished it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            st = kit.ok("GET", "system/restart-status", timeout=5.0)
        except OpsError as exc:
            if exc.code == NO_KIT and _master_alive(kit):
                time.sleep(0.1)  # the control worker is being replaced
                continue
            raise
        last = st.get("lastRestart") or {}
        if st.get("state") == "idle" and last.get("requestedAt") == requested_at:
            return dict(last)
        time.sleep(0.1)
    raise OpsError(f"the restart did not finish within {timeout:g} s")


def _wait_linked(kit: RunningKit, workers: list[int], timeout: float) -> None:
    """Health lists exactly the new workers: each has linked to the control worker."""
    deadline = time.monotonic() + max(timeout, 1.0)
    while time.monotonic() < deadline:
        try:
            code, health = kit.call("GET", "health", timeout=5.0)
        except OpsError as exc:
            if exc.code != NO_KIT or not _master_alive(kit):
                raise
        else:
            if isinstance(health, dict) and sorted(health.get("workers", [])) == sorted(workers):
                return
        time.sleep(0.05)
    raise OpsError(f"the new workers {workers} did not link within {timeout:g} s")


def _master_alive(kit: RunningKit) -> bool:
    try:
        kit.master()
    except OpsError:
        return False
    return True


def restart(
    kit: RunningKit,
    *,
    reason: str,
    drain: float | None,
    force: bool,
    timeout: float,
    as_json: bool,
    out: Out,
) -> int:
    """``system/restart``, then wait for it: the same path as the API's."""
    kit.master()
    body: dict[str, Any] = {"reason": reason, "graceful": not force}
    # No drain given (a reload): as long as the kit's graceful-timeout allows.
    body["drainTimeoutMs"] = int(drain * 1000) if drain is not None else 3_600_000
    accepted = kit.ok("POST", "system/restart", body)
    started = time.monotonic()
    last = _wait_restart(kit, accepted["requestedAt"], timeout)
    if not last.get("failed"):
        _wait_linked(kit, last.get("newWorkers", []), timeout - (time.monotonic() - started))
    if as_json:
        out(json.dumps(last, indent=2))
    else:
        old = " ".join(str(p) for p in last.get("oldWorkers", []))
        new = " ".join(str(p) for p in last.get("newWorkers", []))
        if last.get("failed"):
            out(f"restart failed: {last['failed']}; workers {old} keep serving")
        else:
            out(f"workers {old} -> {new}")
            out(
                f"drained {last.get('drained', 0)}, killed {last.get('killed', 0)} "
                f"in {last.get('durationMs')} ms ({last.get('reason')})"
            )
    if last.get("failed"):
        raise OpsError(f"the new workers failed to boot: {last['failed']}", FAILED)
    return OK


def drain(kit: RunningKit, *, timeout: float, reason: str, as_json: bool, out: Out) -> int:
    kit.master()
    body = {"reason": reason, "wait": True, "timeoutMs": int(timeout * 1000)}
    got = kit.ok("POST", "system/drain", body, timeout=timeout + 15.0)
    if as_json:
        out(json.dumps(got, indent=2))
    elif got.get("idle"):
        out(f"draining: health answers 503; nothing in flight (waited {got['waitedMs']} ms)")
    else:
        out(f"draining: health answers 503; {got.get('inflight')} request(s) still in flight")
    return OK if got.get("idle") else FAILED


def undrain(kit: RunningKit, *, as_json: bool, out: Out) -> int:
    kit.master()
    got = kit.ok("POST", "system/undrain")
    if as_json:
        out(json.dumps(got, indent=2))
    else:
        out("back in rotation" if got.get("wasDraining") else "was not draining")
    return OK


def stop(kit: RunningKit, *, drain_timeout: float, wait: float, as_json: bool, out: Out) -> int:
    """Drain, then SIGTERM the master and wait until it has exited."""
    master = kit.master()
    drained: dict[str, Any] = {}
    try:
        body = {"reason": "hoodyexec stop", "wait": True, "timeoutMs": int(drain_timeout * 1000)}
        drained = kit.ok("POST", "system/drain", body, timeout=drain_timeout + 15.0)
    except OpsError as exc:
        if exc.code == NO_KIT and not _master_alive(kit):
            raise
        drained = {"error": str(exc)}  # stop anyway: SIGTERM drains too
    os.kill(master, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while _running(master) and time.monotonic() < deadline:
        time.sleep(0.05)
    stopped = not _running(master)
    report = {"master": master, "stopped": stopped, "drain": drained}
    if as_json:
        out(json.dumps(report, indent=2))
    elif stopped:
        out(f"stopped (master {master})")
    if not stopped:
        raise OpsError(f"the master {master} is still running after {wait:g} s")
    return OK


def _running(pid: int) -> bool:
    """Alive and not a zombie (an exited master whose parent has not reaped it)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def log_name(script: str | None) -> str:
    """What ``logs tail`` follows: the kit's log, or a script's log by its log
    name (``default/1/hello.log``) or script path (``hello.py`` in default/1)."""
    if not script:
        return "kit.log"
    name = script.strip("/")
    if name.endswith(".py"):
        name = name[:-3]
    if not name.endswith(".log"):
        name += ".log"
    parts = name.split("/")
    if len(parts) < 3 and name != "kit.log":
        name = "default/1/" + name
    return name


def tail(
    kit: RunningKit,
    *,
    script: str | None,
    execution_id: str | None,
    lines: int,
    follow: bool,
    as_json: bool,
    out: Out,
) -> int:
    kit.master()
    query = f"file={_quote(log_name(script))}&lines={lines}&follow={'true' if follow else 'false'}"
    if execution_id:
        query += f"&executionId={_quote(execution_id)}"
    buffer = b""
    for chunk in kit.stream(f"logs/stream?{query}"):
        buffer += chunk
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            kind, data = _sse(event)
            if kind == "line" and isinstance(data, dict):
                out(json.dumps(data) if as_json else str(data.get("line", "")))
            elif kind in ("truncated", "rotated") and not as_json:
                print(f"-- log {kind} --", file=sys.stderr)
            elif kind == "end":
                return OK
    return OK


def _quote(text: str) -> str:
    return quote(text, safe="/")


def _sse(event: bytes) -> tuple[str, Any]:
    kind, data = "message", None
    for line in event.decode("utf-8", "replace").splitlines():
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            try:
                data = msgspec.json.decode(line[5:].strip())
            except msgspec.DecodeError:
                data = line[5:].strip()
    return kind, data
