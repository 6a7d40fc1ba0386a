"""Run one script without HTTP, in a request worker.

The control worker never runs user code (its loop must stay free for the
management API): ``route/test`` — and later schedules — ask a request worker
over the link (query topic ``Invoke``), and this module runs the call through
the worker's own scripts sink (same compiled cache, executor, shared state
and logs as real calls) on a synthetic ASGI request that names its instance
directly, so no Host header is forged.

The run is bounded three ways: the script's ``@timeout`` (plus a moment for the
answer to be written), at most ``limit`` bytes of collected body (then
``truncated``), and cancellation when the asker goes away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from hoodyexec.engine.catalog import Catalog
from hoodyexec.engine.compiler import Script
from hoodyexec.errors import NotFound
from hoodyexec.ipc.protocol import Invoke, InvokeResult

log = logging.getLogger("hoodyexec.invoke")
ASGIApp = Callable[..., Awaitable[None]]

# ASGI scope key: (instance, hostname, trigger) for a run without HTTP; the
# scripts sink takes its target from here instead of the Host header.
INVOKE_TARGET = "hoodyexec.target"
# Runs the kit starts itself: no client, so no @token to present.
KIT_TRIGGERS = frozenset({"schedule", "manual"})
# ASGI scope key the sink fills with the run's executionId.
INVOKE_EXECUTION = "hoodyexec.execution_id"
GRACE = 1.0  # seconds past @timeout for the response to be written


class Invoker:
    """The worker side of ``invoke``: one synthetic request through ``app``, the
    worker's scripts sink as an ASGI app (``http.sink.invoke_app``)."""

    def __init__(self, app: ASGIApp, catalog: Catalog) -> None:
        self.app = app
        self.catalog = catalog

    def _timeout(self, inst: Any, path: str) -> float:
        """The script's @timeout in seconds (the default one when it cannot load)."""
        found = inst.router.find(path)
        if found is not None:
            try:
                script = self.catalog.load(inst, found[0])
            except Exception:  # noqa: BLE001 - the sink reports the load error itself
                script = None
            if isinstance(script, Script):
                return float(script.magic.timeout) / 1000.0
        return self.catalog.default_timeout / 1000.0

    async def __call__(self, call: Invoke) -> InvokeResult:
        # What inotify queued: the asker may have written the script just
        # before asking (the sink no longer polls per request in a worker).
        self.catalog.refresh()
        inst = self.catalog.existing(call.subdomain, call.exec_id)
        if inst is None:
            raise NotFound(f"No instance {call.subdomain}/{call.exec_id}")
        hostname = call.hostname or f"{call.subdomain}.exec-{call.exec_id}"
        deadline = self._timeout(inst, call.path) + GRACE
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": call.method,
            "scheme": "http",
            "path": call.path,
            "raw_path": call.path.encode(),
            "query_string": call.query_string,
            "root_path": "",
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in call.headers],
            "client": ("127.0.0.1", 0),
            "server": ("127.0.0.1", 0),
            INVOKE_TARGET: (inst, hostname, call.trigger),
        }
        result = await _run(self.app, scope, call.body, call.limit, deadline)
        return msgspec.structs.replace(result, execution_id=scope.get(INVOKE_EXECUTION, ""))


async def _run(
    app: Callable[..., Any], scope: dict[str, Any], body: bytes, limit: int, deadline: float
) -> InvokeResult:
    start: dict[str, Any] = {}
    chunks: list[bytes] = []
    size = 0
    truncated = False
    enough = asyncio.Event()
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await enough.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal size, truncated
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunk = bytes(message.get("body", b""))
            room = limit - size
            if len(chunk) > room:
                chunk, truncated = chunk[:room], True
            chunks.append(chunk)
            size += len(chunk)
            if truncated or not message.get("more_body", False):
                enough.set()

    t0 = time.perf_counter()
    task = asyncio.get_running_loop().create_task(app(scope, receive, send))
    waiter = asyncio.get_running_loop().create_task(enough.wait())
    timed_out = False
    try:
        done, _ = await asyncio.wait(
            {task, waiter}, timeout=deadline, return_when="FIRST_COMPLETED"
        )
        if not done:
            timed_out = True
    finally:
        waiter.cancel()
        if not task.done():  # over the byte cap, past the deadline, or the asker left
            task.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(task), 1.0)
            except BaseException:  # noqa: BLE001 - the run is over either way
                pass
        elif not task.cancelled() and task.exception() is not None:
            log.error("invoke failed: %r", task.exception())
    return InvokeResult(
        status=start.get("status", 504 if timed_out else 500),
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.get("headers", [])],
        body=b"".join(chunks),
        truncated=truncated,
        timed_out=timed_out,
        duration_ms=round((time.perf_counter() - t0) * 1000, 3),
    )
