"""Script invocation: the request worker's hot path.

request → instance (by Host) → route → compiled script (fresh) → magic checks
(enabled, CORS, token, method) → body → run (executor) → response.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import inspect
import itertools
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol

import falcon.asgi
import msgspec

from hoodyexec.engine import executor as _executor
from hoodyexec.engine.capture import AppendLog, Console, LogBook, current, finish
from hoodyexec.engine.catalog import Catalog
from hoodyexec.engine.compiler import Script, ScriptLoadError
from hoodyexec.engine.executor import (
    Executor,
    ScriptRaised,
    ScriptTimeout,
    forked_child,
    leave_forked_child,
)
from hoodyexec.engine.hosts import HOST_CACHE, HostMap
from hoodyexec.engine.invoke import INVOKE_EXECUTION, INVOKE_TARGET, KIT_TRIGGERS
from hoodyexec.engine.monitor import Active, Inline, Monitor
from hoodyexec.engine.runtime import AI, Metadata, Req, Res, Shared
from hoodyexec.engine.websocket import Sockets
from hoodyexec.errors import HoodyError
from hoodyexec.http import errors
from hoodyexec.http.body import parse_body
from hoodyexec.http.scope import (
    ENCODED_TYPES,
    NO_BODY_STATUS,
    ASGIApp,
    KitHeaders,
    Receive,
    Reply,
    Scope,
    ScopeRequest,
    Send,
    latin1,
)
from hoodyexec.http.websocket import serve as serve_websocket
from hoodyexec.storage.base import SharedStore

log = logging.getLogger("hoodyexec.scripts")

_json_encode = msgspec.json.Encoder().encode
_monotonic = time.monotonic
# asyncio's table of each loop's running task (what asyncio.current_task reads;
# the executor's watchdog reads it too), not in the stubs.
_current_tasks: dict[Any, Any] = asyncio.tasks._current_tasks  # type: ignore[attr-defined]


def _sse_event(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item if item.endswith(b"\n\n") else b"data: " + item + b"\n\n"
    if isinstance(item, dict) and "data" in item and set(item) <= {"data", "event", "id", "retry"}:
        lines = []
        if "event" in item:
            lines.append(f"event: {item['event']}")
        if "id" in item:
            lines.append(f"id: {item['id']}")
        if "retry" in item:
            lines.append(f"retry: {int(item['retry'])}")
        data = item["data"]
        text = data if isinstance(data, str) else _json_encode(data).decode()
        lines.extend(f"data: {line}" for line in text.split("\n"))
        return ("\n".join(lines) + "\n\n").encode()
    text = item if isinstance(item, str) else _json_encode(item).decode()
    return ("\n".join(f"data: {line}" for line in text.split("\n")) + "\n\n").encode()


def _chunk(item: Any) -> bytes:
    if isinstance(item, bytes | bytearray | memoryview):
        return bytes(item)
    if isinstance(item, str):
        return item.encode()
    return _json_encode(item) + b"\n"


_SENTINEL = object()


class StreamAborted(asyncio.CancelledError):
    """Ends a stream that failed after its status and headers went out.

    Raised from the body iterator, it leaves ``Reply.send_to`` before its last
    (empty) body message, so the server never writes the terminating zero-length chunk: it
    closes the connection, and the client sees an incomplete response instead of
    a normal end. A ``CancelledError``, so gunicorn takes its quiet "request
    cancelled" path (close, no traceback): the failure is in the script's log.
    """


def _stream_failure(exc: BaseException, console: Console, timeout_ms: int) -> dict[str, Any]:
    """What a failed stream tells an SSE client (as a 500 body would)."""
    if isinstance(exc, ScriptTimeout):
        error = f"Script timed out after {timeout_ms} ms waiting for the next chunk"
        kind = "Timeout"
    else:
        error, kind = str(exc) or type(exc).__name__, type(exc).__name__
    return {"error": error, "type": kind, "executionId": console.execution_id}


_HEX2 = tuple(f"{i:02x}" for i in range(256))


def _execution_ids(prefix: str, every: Callable[[], None] | None = None) -> Iterator[str]:
    """``prefix`` + a counter in hex, at least 7 digits, from 1 (what
    ``f"{prefix}{n:07x}"`` gives). PERF: the counter's last two digits come
    from a table and the rest is formatted once per 256 ids: one string
    concatenation per request instead of a format (~0.2 µs).

    ``every`` is called once per 256 ids: the monitor's batch fold
    (``Monitor.drain``), so the hot path appends its record without checking
    how many wait (at most 256 executions started since the last fold, plus
    streams that began before it)."""
    first = True
    for high in itertools.count():
        if every is not None and high:
            try:
                every()
            except Exception:  # noqa: BLE001 - an id must come out whatever happens
                log.exception("folding the monitor's batch failed")
        base = f"{prefix}{high:05x}"
        for low in _HEX2:
            if first:  # the counter starts at 1
                first = False
                continue
            yield base + low


def _next_or_sentinel(it: Iterator[Any]) -> Any:
    return next(it, _SENTINEL)


class _Inst:
    __slots__ = ("subdomain", "exec_id")

    def __init__(self, subdomain: str, exec_id: str) -> None:
        self.subdomain = subdomain
        self.exec_id = exec_id


class ScriptsSink:
    """Falcon sink for every path that is not the kit's own."""

    def __init__(
        self,
        catalog: Catalog,
        shared: SharedStore,
        logbook: LogBook,
        executor: Executor,
        *,
        hosts: HostMap | None = None,
        max_body: int = 10 * 1024 * 1024,
        max_concurrency: int = 512,
        default_timeout_ms: int = 30000,
        trigger: str = "http",
        monitor: Monitor | None = None,
        sockets: Sockets | None = None,
    ) -> None:
        self.catalog = catalog
        # Open WebSocket sessions of this worker (http/websocket.py).
        self.sockets = sockets if sockets is not None else Sockets()
        # None: monitoring off (the `monitoring` setting), nothing recorded.
        self.monitor = monitor
        # Access logs, one per instance: <logs>/<subdomain>-<execId>.log.
        self._access_logs: dict[tuple[str, str], AppendLog] = {}
        self.shared = shared
        self.logbook = logbook
        self.executor = executor
        self.hosts = hosts or HostMap()
        self.max_body = max_body
        self.max_concurrency = max_concurrency
        self.default_timeout_ms = default_timeout_ms
        self.trigger = trigger  # metadata.trigger: "http", or "test" for route/test
        self.inflight = 0
        # Host header (bytes) → (instance, hostname, trigger); only hosts whose instance
        # folder exists are kept, and at most HOST_CACHE of them.
        self._by_host: dict[bytes, tuple[Any, str, str]] = {}
        # Execution ids: 6 random hex digits of this worker, then a counter
        # (7 hex digits or more), from 1.
        self._ids = _execution_ids(
            os.urandom(3).hex(), monitor.drain if monitor is not None else None
        ).__next__
        if monitor is not None:
            monitor.inline_probe = functools.partial(_inline_probe, threading.main_thread().ident)

    def start(self) -> None:
        """On the worker's event loop at startup: inotify events are applied by
        the loop from now on, not polled per request (``Catalog.watch_from``)."""
        self.catalog.watch_from(asyncio.get_running_loop())
        if self.monitor is not None:  # inline code runs in this thread
            self.monitor.inline_probe = functools.partial(_inline_probe, threading.get_ident())

    def next_id(self) -> str:
        """A new execution id (the hot path below makes its own inline)."""
        return self._ids()

    # -- entry points -------------------------------------------------------------
    async def __call__(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response | None,
        ws: falcon.asgi.WebSocket | None = None,
        **_: Any,
    ) -> None:
        """falcon's sink: WebSocket handshakes to script routes (falcon passes
        ``ws``). HTTP requests to script routes never come this way
        (``ScriptsFront`` serves them)."""
        if ws is not None:
            return await serve_websocket(self, req, ws)
        if resp is not None:
            errors.json_response(
                resp, {"error": "script routes are served by the scripts front"}, status=500
            )
        return None

    async def _serve(self, req: ScopeRequest, resp: Reply) -> None:
        execution_id = self._ids()
        # Every answer names its execution (errors and streams included): the id
        # every log line of the run carries.
        resp.execution_id = execution_id
        monitor = self.monitor
        catalog = self.catalog
        # PERF: the freshness check (docs/scripts.md): nothing in a worker,
        # whose event loop applies inotify events as they arrive
        # (Catalog.watch_from); else one poll() of the inotify fd called
        # straight, refresh() only when events wait.
        check = catalog.check
        if check is not None and check(0):
            catalog.refresh()
        watcher = catalog.watcher
        # PERF: the request's header table (bytes keys, as the server sent
        # them): a dict hit instead of a method call, and below two membership
        # tests before anything reads a body.
        headers: dict[bytes, bytes] = req._asgi_headers
        host_raw = headers.get(b"host", b"")
        # A run without HTTP (route/test, schedules) names its target in the
        # scope, whatever Host header it carries; PERF: otherwise one dict hit
        # per request once a Host has been seen (keyed by the header's bytes:
        # no decoding, no regex, no stat).
        target = req.scope.get(INVOKE_TARGET)
        if target is not None:
            req.scope[INVOKE_EXECUTION] = execution_id  # the asker learns the run's id
        else:
            target = self._by_host.get(host_raw)
        if target is None:
            host = host_raw.decode("latin1")
            target = self._target_for(host)
            if target is None:
                return _json(
                    resp, 404, {"error": f"No instance for host {host!r}", "path": req.path}
                )
        inst, hostname, trigger = target
        subdomain, exec_id = inst.subdomain, inst.exec_id
        path = req.path
        # PERF: Instance.router and the table's static lookup inlined (a
        # watched instance's table is current until an event resets it).
        router = inst._router
        if router is None or inst.max_age is not None:
            router = inst.router
        route = router.static.get(path)
        if route is not None:
            params: dict[str, str] = {}
        else:
            found = router.find(path)
            if found is None:
                return _json(resp, 404, {"error": f"No script at {path}", "path": path})
            route, params = found
        # PERF: catalog.load's first test inlined: a compiled script that
        # inotify has not dropped is fresh (docs/scripts.md, Freshness).
        script = inst.scripts.get(route.file)
        if type(script) is not Script or watcher is None or route.file in inst.unverified:
            script = None
        try:
            if script is None:
                script = catalog.load(inst, route)
        except FileNotFoundError:  # removed between the event and now
            return _json(resp, 404, {"error": f"No script at {path}", "path": path})
        except ScriptLoadError as exc:
            self.logbook.for_script(subdomain, exec_id, route.file).write(
                40, execution_id, exc.message
            )
            problem = {k: v for k, v in exc.to_dict().items() if not k.startswith("_")}
            problem["executionId"] = execution_id
            problem["script"] = route.file
            return _json(resp, 500, problem)
        magic = script.magic
        method = req.method
        if script.guarded:
            if not magic.enabled:
                return _json(resp, 404, {"error": f"No script at {path}", "path": path})
            if magic.cors is not None and self._cors(req, resp, magic.cors, method, script):
                return None
            # The kit's own runs (schedules, their manual trigger) carry no token;
            # schedules/trigger refuses @token scripts unless forced instead.
            if (
                magic.token is not None
                and trigger not in KIT_TRIGGERS
                and not _token_ok(req, magic.token)
            ):
                resp.set_header("WWW-Authenticate", "Bearer")
                return _json(
                    resp,
                    401,
                    {
                        "error": "Unauthorized: missing or invalid token",
                        "executionId": execution_id,
                    },
                )
        # PERF: entry_for inlined for the one-entry shapes (body, handler).
        entry = script.entries["*"] if script.shape != "methods" else script.entry_for(method)
        if entry is None:
            resp.set_header("Allow", script.allow)
            if method == "OPTIONS":
                resp.status = 204
                return None
            return _json(
                resp,
                405,
                {"error": f"Method {method} not allowed", "allow": script.allow.split(", ")},
            )
        if self.inflight >= self.max_concurrency:
            resp.set_header("Retry-After", "1")
            return _json(
                resp,
                503,
                {"error": "Worker overloaded, retry shortly", "executionId": execution_id},
            )

        raw = b""
        body = None
        if (b"content-length" in headers or b"transfer-encoding" in headers) and (
            req.content_length or b"transfer-encoding" in headers
        ):
            if req.content_length and req.content_length > self.max_body:
                return _json(
                    resp, 413, {"error": f"Request body over the {self.max_body} byte limit"}
                )
            raw = await req.read_body(self.max_body)
            if len(raw) > self.max_body:
                return _json(
                    resp, 413, {"error": f"Request body over the {self.max_body} byte limit"}
                )
            try:
                body = parse_body(raw, req.content_type)
            except HoodyError as exc:
                exc.extra["executionId"] = execution_id
                return _json(resp, exc.status, exc.to_dict())

        scriptlog = script.log
        if scriptlog is None:
            scriptlog = script.log = self.logbook.for_script(subdomain, exec_id, route.file)
        console = Console(scriptlog, execution_id, script.log_min)
        if raw and magic.log_request_body:
            console.info(f"{method} {path} body: {raw[:4096].decode('utf-8', 'replace')}")
        positional = entry.positional
        used = entry.used
        # Build only what the script can reach (decided at compile time).
        r = Req(req, method, path, params, body, raw, execution_id) if entry.needs_req else None
        res = Res() if entry.needs_res else None
        timeout = magic.timeout / 1000.0

        mode = magic.mode
        is_async = entry.is_async
        run_mode = (
            "async"
            if is_async
            else "thread"
            if mode == "thread" or (mode == "auto" and script.offloaded)
            else "inline"
        )
        started = _monotonic()
        took = -1.0  # an inline call's time, measured for @mode auto; else at the end
        executor = self.executor
        wd = executor.watchdog
        # The task the watchdog interrupts (None before the executor started:
        # in-process tools, where plain asyncio timeouts apply).
        task = _current_tasks.get(wd.loop) if wd is not None else None
        listed = False  # in monitor.active (else inline, found by _inline_probe)
        if monitor is not None:
            # PERF: nothing recorded for an inline execution while it runs: it
            # holds the loop, so only another thread can look, and the monitor
            # finds it in the loop thread's frames (_inline_probe). A record
            # here (one tuple in a slot) cost 2 % of the trivial script's
            # throughput in a duel.
            if run_mode != "inline":
                monitor.active[execution_id] = (
                    script.path,
                    method,
                    path,
                    started,
                    (task or asyncio.current_task()) if is_async else None,
                    run_mode,
                )
                listed = True
        self.inflight += 1
        token = current.set(console)
        streaming = False
        try:
            if positional:
                args: tuple[Any, ...] = (
                    r,
                    res,
                    Metadata(r, route.file, hostname, subdomain, exec_id, magic.raw, trigger)
                    if "metadata" in used and r is not None  # needs_req when metadata is used
                    else None,
                    Shared(self.shared, inst.state_key) if "shared" in used else None,
                    console,
                    script.ai or AI,
                )
                kwargs: dict[str, Any] = {}
            elif not entry.inject:
                args, kwargs = (), {}
            else:
                # PERF: the injection plan was compiled to getters when the script
                # loaded (Entry.inject): per request one tuple (inject.CALL_FIELDS
                # order) and one getter call per parameter, no dispatch on each
                # parameter's source. A plain loop, not a dict comprehension:
                # on Python 3.11 a comprehension costs a frame of its own.
                call = (
                    r,
                    res,
                    console,
                    body,
                    params,
                    raw,
                    req,
                    route.file,
                    hostname,
                    inst,
                    trigger,
                    magic.raw,
                    self.shared,
                    script.ai,
                )
                args, kwargs = (), {}
                try:
                    for name, get in entry.inject:
                        kwargs[name] = get(call)
                except HoodyError as exc:
                    exc.extra["executionId"] = execution_id
                    return _json(resp, exc.status, exc.to_dict())
            if run_mode == "async":
                if task is not None and wd is not None:
                    # PERF: Executor.run_async inlined: no coroutine of its own.
                    wd.arm(task, started + timeout, timeout)
                    try:
                        result = await entry.fn(*args, **kwargs)
                    except asyncio.CancelledError:
                        if wd.timed_out(task):
                            raise ScriptTimeout() from None
                        raise
                    finally:
                        wd.disarm(task)
                else:
                    result = await executor.run_async(entry.fn, args, kwargs, timeout)
            elif run_mode == "thread":
                result = await executor.run_thread(entry.fn, args, kwargs, timeout)
            else:  # inline sync: no extra coroutine on the hot path
                # PERF: Executor.run_inline inlined (started is its t0): the
                # deadline in the watchdog's inline slot, two stores.
                if task is not None and wd is not None:
                    if timeout < wd.shortest:
                        wd.shorter(timeout)
                    wd.inline = started + timeout
                    try:
                        result = entry.fn(*args, **kwargs)
                    finally:
                        wd.inline = 0.0
                else:
                    result = entry.fn(*args, **kwargs)
                took = held = _monotonic() - started
                if held > executor.threshold and mode == "auto":
                    self._offload(script, held, console)
                    if monitor is not None:
                        monitor.offloaded(script.path)
            # PERF: an inline execution stays in the monitor's slot while its
            # answer is encoded (it still holds the loop); only the paths that
            # may await (a stream, _render) move it to ``active`` first.
            if res is not None and (res.used or result is res):
                if monitor is not None and not listed:
                    listed = self._listed(monitor, execution_id, script, method, path, started)
                streaming = await self._render(req, resp, result, res, script, console, timeout)
            elif type(result) is dict or type(result) is list:
                try:
                    resp.data = _json_encode(result)
                except TypeError as exc:
                    raise HoodyError(
                        f"cannot serialize the return value: {exc}",
                        status=500,
                        type="SerializationError",
                    ) from None
                resp.content_type = "application/json"
            else:
                if monitor is not None and not listed:
                    listed = self._listed(monitor, execution_id, script, method, path, started)
                streaming = await self._value(req, resp, result, None, script, console, timeout)
        except ScriptTimeout:
            console.error(f"timed out after {magic.timeout} ms")
            return _json(
                resp,
                504,
                {
                    "error": f"Script timed out after {magic.timeout} ms",
                    "type": "Timeout",
                    "executionId": execution_id,
                },
            )
        except HoodyError as exc:
            exc.extra.setdefault("executionId", execution_id)
            console.warn(f"{exc.status} {exc.message}")
            for name, value in exc.headers.items():  # Retry-After of a 503, ...
                resp.set_header(name, value)
            return _json(resp, exc.status, exc.to_dict())
        except BaseException as exc:  # noqa: BLE001 - the worker survives any script failure
            # SystemExit, KeyboardInterrupt, GeneratorExit, bare BaseException, a
            # CancelledError the script raised itself: all are the script's fault.
            if _cancelled_from_outside(exc):
                raise  # the server is cancelling this request (client gone, shutdown)
            if isinstance(exc, ScriptRaised):
                exc = exc.original
            console.exception(exc)
            return _json(
                resp,
                500,
                {
                    "error": str(exc) or type(exc).__name__,
                    "type": type(exc).__name__,
                    "executionId": execution_id,
                },
            )
        finally:
            current.reset(token)
            if not streaming:
                finish(console)
                self.inflight -= 1
                if monitor is not None:
                    # PERF: Monitor.done inlined: the record's six items added
                    # to a flat list, no count check (the id generator folds
                    # every 256 executions), the status parsed and the figures
                    # updated later, in batches (Monitor.drain).
                    if listed:
                        del monitor.active[execution_id]
                    data = resp.data
                    pending = monitor._pending
                    # PERF: an inline execution's time is the one measured
                    # for @mode auto (its call); others end here.
                    pending += (
                        script.path,
                        run_mode,
                        resp.status,
                        len(data) if data else 0,
                        started,
                        took if took >= 0.0 else _monotonic() - started,
                    )
                if script.access_log:
                    status = resp.status
                    data = resp.data
                    self._access(
                        inst,
                        execution_id,
                        method,
                        path,
                        route.file,
                        status if isinstance(status, int) else int(status[:3]),
                        started,
                        len(data) if data else 0,
                    )
            if _executor._forked:  # PERF: forked_child() without a call
                leave_forked_child()
        return None

    @staticmethod
    def _listed(
        monitor: Monitor, execution_id: str, script: Script, method: str, path: str, started: float
    ) -> bool:
        """List an inline execution in ``active``: its answer may await (a
        stream, ``_render``), and other requests run then."""
        record: Active = (script.path, method, path, started, None, "inline")
        monitor.active[execution_id] = record
        return True

    def _access(
        self,
        inst: Any,
        execution_id: str,
        method: str,
        path: str,
        script: str,
        status: int,
        started: float,
        nbytes: int,
    ) -> None:
        """One JSON line in the instance's access log (scripts that opt in with
        ``@log-level`` or ``@log-request-body``)."""
        key = (inst.subdomain, inst.exec_id)
        alog = self._access_logs.get(key)
        if alog is None:
            book = self.logbook
            alog = self._access_logs[key] = AppendLog(
                os.path.join(book.root, f"{key[0]}-{key[1]}.log"), book.max_bytes, book.backups
            )
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
            "executionId": execution_id,
            "method": method,
            "path": path,
            "script": script,
            "status": status,
            "durationMs": round((time.monotonic() - started) * 1000, 3),
            "bytes": nbytes,
        }
        try:
            alog.write_bytes(_json_encode(line) + b"\n")
        except OSError:
            log.warning("cannot write the access log of %s/%s", *key)

    def _stream_done(self, script: Script, execution_id: str, nbytes: int) -> None:
        monitor = self.monitor
        active = monitor.active.pop(execution_id, None) if monitor is not None else None
        if active is not None:
            file, method, path, started, _, mode = active
            assert monitor is not None
            monitor.done(file, mode, 200, nbytes, started, time.monotonic())
            if script.access_log:
                rel = os.path.relpath(file, self.catalog.root).split(os.sep)
                if len(rel) >= 3:
                    inst = _Inst(rel[0], rel[1])
                    self._access(inst, execution_id, method, path, script.rel, 200, started, nbytes)

    def _target_for(self, host: str) -> tuple[Any, str, str] | None:
        """The instance a Host names, if its folder exists (else None: a 404).

        Only existing instances are created and cached, so attacker-chosen
        Host values cost a lookup each but never memory or database rows.
        """
        subdomain, exec_id, hostname = self.hosts.resolve(host)
        inst = self.catalog.existing(subdomain, exec_id)
        if inst is None:
            return None
        target = (inst, hostname, self.trigger)
        if len(self._by_host) < HOST_CACHE:
            self._by_host[host.encode("latin1")] = target
        return target

    # -- pieces -------------------------------------------------------------------
    def _cors(
        self,
        req: ScopeRequest,
        resp: Reply,
        allowed: list[str],
        method: str,
        script: Script,
    ) -> bool:
        """Adds CORS headers; returns True when this was a preflight, answered."""
        origin = req.get_header("Origin")
        if origin is None:
            return False
        if "*" in allowed:
            resp.set_header("Access-Control-Allow-Origin", "*")
        elif origin in allowed:
            resp.set_header("Access-Control-Allow-Origin", origin)
            resp.append_header("Vary", "Origin")
        else:
            return False
        if method == "OPTIONS" and req.get_header("Access-Control-Request-Method"):
            methods = (
                script.allow
                if script.shape == "methods"
                else "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
            )
            resp.set_header("Access-Control-Allow-Methods", methods)
            wanted = req.get_header("Access-Control-Request-Headers")
            resp.set_header("Access-Control-Allow-Headers", wanted or "Content-Type, Authorization")
            resp.set_header("Access-Control-Max-Age", "600")
            resp.status = 204
            return True
        return False

    @staticmethod
    def _offload(script: Script, held: float, console: Console) -> None:
        if script.offloaded:
            return
        script.offloaded = True
        log.info(
            "%s held the event loop %.0f ms: its sync code now runs in the thread pool",
            script.rel,
            held * 1000,
        )
        console.info(
            f"held the event loop {held * 1000:.0f} ms: moved to the thread pool (@mode auto)"
        )

    async def _render(
        self,
        req: ScopeRequest,
        resp: Reply,
        result: Any,
        res: Res,
        script: Script,
        console: Console,
        timeout: float,
    ) -> bool:
        """Fill the Falcon response; returns True when a stream was handed over."""
        if result is res:
            result = None
        if res.used:
            for name, value in res.headers:
                resp.append_header(name, value)
            for cookie in res.cookies:
                resp.append_header("Set-Cookie", cookie)
            status = res.status_code
            kind = res.kind
            if kind == "raw":
                resp.status = status or 200
                resp.content_type = res.content_type
                body = res.body
                resp.data = body.encode() if isinstance(body, str) else body
                return False
            if kind == "value":
                return await self._value(
                    req,
                    resp,
                    res.body,
                    status,
                    script,
                    console,
                    timeout,
                    content_type=res.content_type,
                )
            if kind in ("stream", "sse"):
                resp.status = status or 200
                return await self._stream(
                    resp,
                    res.iterable,
                    kind == "sse",
                    script,
                    console,
                    timeout,
                    content_type=res.content_type,
                )
            return await self._value(req, resp, result, status, script, console, timeout)
        return await self._value(req, resp, result, None, script, console, timeout)

    async def _value(
        self,
        req: ScopeRequest,
        resp: Reply,
        value: Any,
        status: int | None,
        script: Script,
        console: Console,
        timeout: float,
        content_type: str | None = None,
    ) -> bool:
        if type(value) is tuple and 2 <= len(value) <= 3:
            body, st, *rest = value
            if rest and rest[0]:
                for name, v in dict(rest[0]).items():
                    resp.set_header(str(name), str(v))
            return await self._value(
                req, resp, body, int(st), script, console, timeout, content_type
            )
        if value is None:
            resp.status = status or 204
            return False
        if isinstance(value, str):
            resp.status = status or 200
            resp.content_type = content_type or "text/plain; charset=utf-8"
            resp.data = value.encode()
            return False
        if isinstance(value, bytes | bytearray | memoryview):
            resp.status = status or 200
            resp.content_type = content_type or "application/octet-stream"
            resp.data = bytes(value)
            return False
        if (
            inspect.isgenerator(value)
            or inspect.isasyncgen(value)
            or (hasattr(value, "__aiter__") and not isinstance(value, dict | list))
        ):
            resp.status = status or 200
            sse = "text/event-stream" in (req.get_header("Accept") or "")
            return await self._stream(resp, value, sse, script, console, timeout)
        try:
            data = _json_encode(value)
        except TypeError as exc:
            raise HoodyError(
                f"cannot serialize the return value: {exc}", status=500, type="SerializationError"
            ) from None
        resp.status = status or 200
        resp.content_type = content_type or "application/json"
        resp.data = data
        return False

    async def _stream(
        self,
        resp: Reply,
        iterable: Any,
        sse: bool,
        script: Script,
        console: Console,
        timeout: float,
        content_type: str | None = None,
    ) -> bool:
        executor = self.executor
        encode = _sse_event if sse else _chunk

        if hasattr(iterable, "__aiter__"):
            aiter_ = iterable.__aiter__()

            async def step() -> Any:
                try:
                    return await executor.run_async(aiter_.__anext__, (), {}, timeout)
                except StopAsyncIteration:
                    return _SENTINEL
        else:
            it = iter(iterable)

            async def step() -> Any:
                return await executor.run_thread(_next_or_sentinel, (it,), {}, timeout)

        first = await step()  # errors before the first chunk still become a JSON error
        if sse:
            resp.content_type = "text/event-stream"
            resp.set_header("Cache-Control", "no-cache")
            resp.set_header("X-Accel-Buffering", "no")
        elif content_type:
            resp.content_type = content_type
        else:
            resp.content_type = (
                "application/x-ndjson"
                if first is not _SENTINEL and not isinstance(first, str | bytes)
                else "text/plain; charset=utf-8"
            )
        sink = self
        token_console = console
        released = False

        sent = 0

        def release() -> None:
            # Once, whether the stream ends, fails, or is dropped unstarted
            # (a client gone before the first byte): the slot must come back.
            nonlocal released
            if not released:
                released = True
                sink.inflight -= 1
                sink._stream_done(script, token_console.execution_id, sent)

        async def body() -> AsyncIterator[bytes]:
            nonlocal sent
            tok = current.set(token_console)
            in_script = False
            failed: BaseException | None = None
            try:
                item = first
                while item is not _SENTINEL:
                    chunk = encode(item)
                    sent += len(chunk)
                    yield chunk
                    in_script = True
                    item = await step()
                    in_script = False
            except ScriptTimeout as exc:
                token_console.error("stream timed out waiting for the next chunk")
                failed = exc
            except BaseException as exc:  # noqa: BLE001 - headers are gone: log, then abort
                # GeneratorExit thrown at ``yield`` (the client left) and outside
                # cancellation belong to the server; anything raised while the
                # script's code ran is the script's failure.
                if not in_script or _cancelled_from_outside(exc):
                    raise
                failed = exc.original if isinstance(exc, ScriptRaised) else exc
                token_console.exception(failed)
            finally:
                with contextlib.suppress(ValueError):  # finalised from another context
                    current.reset(tok)
                finish(token_console)
                release()
                if forked_child():
                    leave_forked_child()
                close = getattr(iterable, "aclose", None) or getattr(iterable, "close", None)
                if close is not None:
                    try:
                        r = close()
                        if inspect.isawaitable(r):
                            await r
                    except Exception:  # noqa: BLE001
                        pass
            if failed is not None:
                # The status (200) is gone: the client learns of the failure by the
                # response not ending properly, and an SSE client by an event first.
                if sse:
                    failure = _stream_failure(failed, token_console, script.magic.timeout)
                    yield _sse_event({"event": "error", "data": failure})
                raise StreamAborted(f"stream failed: {type(failed).__name__}")

        stream = body()
        weakref.finalize(stream, release)
        resp.stream = stream
        return True


_KIT_PREFIXES = ("/api/v1/exec", "/openapi.")


def kit_path(path: str) -> bool:
    """``/api/v1/exec``, ``/api/v1/exec/...``, ``/openapi.json``, ``/openapi.yaml``:
    the paths falcon serves (``gateway._KIT_PATH``), without a regex."""
    if path.startswith("/api/v1/exec"):
        return len(path) == 12 or path[12] == "/"
    return path == "/openapi.json" or path == "/openapi.yaml"


class ScriptsFront:
    """The request worker's ASGI app: HTTP requests to script routes are
    served here, everything else goes to ``shell`` (the falcon app: lifespan,
    the management calls it forwards, WebSocket handshakes).

    PERF: a script route never builds falcon's Request and Response, runs no
    middleware and no falcon routing: the request is read from the scope on
    demand (``http/scope.py``), the sink fills a ``Reply``, which is written
    as two ASGI messages. Without a shell (``invoke_app``) every request is a
    script call."""

    __slots__ = ("sink", "shell", "_serve")

    def __init__(self, sink: ScriptsSink, shell: ASGIApp | None = None) -> None:
        self.sink = sink
        self.shell = shell
        self._serve = sink._serve

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        shell = self.shell
        # PERF: one type test and one startswith for a script route.
        if shell is not None and (
            scope["type"] != "http"
            or (scope["path"].startswith(_KIT_PREFIXES) and kit_path(scope["path"]))
        ):
            return await shell(scope, receive, send)
        req = ScopeRequest(scope, receive)
        resp = Reply()
        try:
            await self._serve(req, resp)
        except HoodyError as exc:  # a bad Content-Length, ...
            resp = _error_reply(resp, exc.status, exc.to_dict(), exc.headers)
        except Exception as exc:  # noqa: BLE001 - answered like falcon's last resort
            log.exception("unhandled error on %s %s", req.method, req.path)
            # The message may hold machine paths: the client gets the type only.
            body = {
                "error": "internal error (details in the kit's log)",
                "type": type(exc).__name__,
            }
            resp = _error_reply(resp, 500, body, {})
        data = resp.data
        eid = resp.execution_id
        if (
            data is not None
            and eid is not None
            and resp._headers is None
            and resp._cookies is None
            and resp.status not in NO_BODY_STATUS
            and req.method != "HEAD"
        ):
            # PERF: Reply.send_to's usual case inlined (no coroutine of its
            # own): a body and no header but the execution id and the type.
            ctype = resp.content_type or "application/json"
            encoded = ENCODED_TYPES.get(ctype)
            lines: list[tuple[bytes, bytes]] | KitHeaders
            if encoded is not None:  # every value known valid (scope.KitHeaders)
                lines = KitHeaders(
                    (
                        (b"x-execution-id", eid.encode()),
                        (b"content-type", encoded),
                        (b"content-length", b"%d" % len(data)),
                    )
                )
            else:  # a type the script chose: the server checks it
                lines = [
                    (b"x-execution-id", eid.encode()),
                    (b"content-type", latin1(ctype)),
                    (b"content-length", b"%d" % len(data)),
                ]
            await send({"type": "http.response.start", "status": resp.status, "headers": lines})
            await send({"type": "http.response.body", "body": data, "more_body": False})
            return
        try:
            await resp.send_to(send, req.method == "HEAD")
        except HoodyError as exc:  # a header that cannot go on the wire: nothing sent yet
            await _error_reply(resp, exc.status, exc.to_dict(), {}).send_to(send, False)


_SERVE_CODE = ScriptsSink._serve.__code__


def _inline_probe(thread: int | None) -> Inline | None:
    """The inline execution ``thread`` (the event loop's) is running, read from
    the sink's frame there: (executionId, script file, method, path, started),
    or None. For another thread (the slow-request log), while it holds the
    GIL; the loop thread cannot change the frame meanwhile."""
    frame = sys._current_frames().get(thread) if thread is not None else None
    while frame is not None:
        if frame.f_code is _SERVE_CODE:
            seen = frame.f_locals
            script = seen.get("script")
            started = seen.get("started")
            if (
                seen.get("run_mode") != "inline"
                or seen.get("listed")
                or started is None
                or script is None
            ):
                return None  # not running yet, or in ``active``
            return (seen["execution_id"], script.path, seen["method"], seen["path"], started)
        frame = frame.f_back
    return None


def _cancelled_from_outside(exc: BaseException) -> bool:
    """A CancelledError asked for by someone else (not raised by the script itself)."""
    if not isinstance(exc, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _json(resp: Reply, status: int, body: Any) -> None:
    resp.status = status
    resp.content_type = "application/json"
    resp.data = _json_encode(body)


class _HeaderSource(Protocol):
    def get_header(self, name: str) -> str | None: ...
    def get_param(self, name: str) -> str | None: ...


def _token_ok(req: _HeaderSource, expected: str) -> bool:
    if expected.startswith("env:"):
        secret = os.environ.get(expected[4:])
        if not secret:
            return False  # an unset secret never matches
    else:
        secret = expected
    given = ""
    auth = req.get_header("Authorization")
    if auth and auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    else:
        given = req.get_header("X-Hoody-Token") or req.get_param("token") or ""
    return hmac.compare_digest(given.encode(), secret.encode())


def _error_reply(old: Reply, status: int, body: Any, headers: dict[str, str]) -> Reply:
    """A fresh JSON error answer (keeping the execution id of ``old``)."""
    resp = Reply()
    resp.execution_id = old.execution_id
    for name, value in headers.items():
        resp.set_header(name, value)
    if status == 503 and "Retry-After" not in headers:
        resp.set_header("Retry-After", "1")
    _json(resp, status, body)
    return resp


def invoke_app(sink: ScriptsSink) -> ScriptsFront:
    """The sink alone as an ASGI app: what ``engine.invoke.Invoker`` runs a
    script through when there is no HTTP request (route/test, schedules)."""
    return ScriptsFront(sink)
