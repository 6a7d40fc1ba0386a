"""Start the real kit as a user would: ``hoodyexec serve`` in its own process
group, on a free port, with its own temporary home."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HOODYEXEC = str(Path(sys.executable).with_name("hoodyexec"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:200]!r}>"


class Kit:
    def __init__(
        self,
        home: Path,
        *,
        workers: int | None = 2,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        graceful_timeout: int = 5,
    ) -> None:
        self.home = home
        self.workers = workers
        self.port = free_port()
        self.args = list(args or [])
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HOODYEXEC_")}
        self.env.update(env or {})
        self.graceful_timeout = graceful_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.logfile = home.parent / f"kit-{self.port}.log"

    @property
    def command(self) -> list[str]:
        cmd = [HOODYEXEC, "serve", "--home", str(self.home), "--bind", f"127.0.0.1:{self.port}"]
        cmd += ["--graceful-timeout", str(self.graceful_timeout), *self.args]
        if self.workers is not None:  # None: the settings file or env decides
            cmd += ["--workers", str(self.workers)]
        return cmd

    def start(self, wait: bool = True) -> Kit:
        log = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            self.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        if wait:
            self.wait_healthy()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | dict | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        hdrs = dict(headers or {})
        if isinstance(body, dict):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def health(self, timeout: float = 2.0) -> dict[str, Any] | None:
        try:
            r = self.get("/api/v1/exec/health", timeout=timeout)
        except OSError:
            return None
        return r.json() if r.status == 200 else None

    def wait_healthy(
        self, timeout: float = 15.0, workers: int | None = None, predicate: Any = None
    ) -> dict[str, Any]:
        want = workers if workers is not None else self.workers
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"kit exited with {self.proc.returncode}:\n{self.log()[-4000:]}"
                )
            last = self.health(timeout=1.0)
            if last and len(last["workers"]) == want and (predicate is None or predicate(last)):
                return last
            time.sleep(0.02)
        raise AssertionError(f"kit not healthy in {timeout}s (last: {last}):\n{self.log()[-4000:]}")

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(self.graceful_timeout + 10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        try:  # anything left in the group (control worker, request workers)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


def raw_request_start(port: int, path: str, total_body: int) -> socket.socket:
    """Open a request whose body is still arriving: it is in flight until finished."""
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {total_body}\r\nConnection: close\r\n\r\n".encode()
    )
    return s


def read_http_response(s: socket.socket) -> tuple[int, bytes]:
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, body
