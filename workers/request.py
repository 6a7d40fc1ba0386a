"""Request worker: gunicorn's native ``asgi`` worker running the gateway app.

``load_app`` runs in the worker after fork (gunicorn calls the application's
``load`` from ``init_process``). Anything that fails here is a boot failure: the
worker exits with gunicorn's boot-error code and the master stops instead of
fork-looping.
"""

from __future__ import annotations

import asyncio
import gc
import os

from hoodyexec.config import Settings
from hoodyexec.engine import capture as logs
from hoodyexec.engine import sitepath
from hoodyexec.engine.catalog import Catalog
from hoodyexec.engine.describe import Describer
from hoodyexec.engine.executor import Executor, guard_forks
from hoodyexec.engine.hosts import HostMap
from hoodyexec.engine.invoke import Invoker
from hoodyexec.engine.metrics import Flusher
from hoodyexec.engine.monitor import Monitor, SlowLog, flush_loop
from hoodyexec.engine.runtime import install_ai
from hoodyexec.engine.websocket import Sockets
from hoodyexec.features.ai.helper import AISettings
from hoodyexec.features.ai.helper import factory as ai_factory
from hoodyexec.home import Home
from hoodyexec.http.gateway import create_gateway
from hoodyexec.http.router import table_for
from hoodyexec.http.sink import ScriptsFront, ScriptsSink, invoke_app
from hoodyexec.ipc.protocol import (
    CacheCleared,
    ClearCache,
    Describe,
    Invalidate,
    Invoke,
    MonitorQuery,
    PackagesChanged,
    Reload,
    WorkerMonitor,
)
from hoodyexec.storage import sqlite
from hoodyexec.storage.backends import SqliteBackend, open_backend


def load_app(
    settings: Settings,
    home: Home,
    age: int = 0,
    *,
    link: bool = True,
    sockets: Sockets | None = None,
) -> ScriptsFront:
    """``sockets``: the worker's WebSocket sessions, which the worker closes with
    1001 when it is told to stop (``asgi.HoodyASGIWorker``)."""
    if sockets is None:
        sockets = Sockets(settings.websocket_idle_timeout)
    sitepath.activate(home.site)  # kit-local packages, after the kit's own
    install_ai(
        ai_factory(
            AISettings(
                base_url=settings.ai_base_url,
                api_key=settings.ai_api_key,
                model=settings.ai_model,
                timeout_ms=settings.ai_timeout_ms,
                max_retries=settings.ai_max_retries,
                home=home.root,
            ),
            home.scripts,
        )
    )
    # Shared state lives in the backend state-url names; an unusable SQLite file is
    # a boot error (a shared backend was checked at start, and may come back later).
    backend = open_backend(settings.state_url, home.root)
    if isinstance(backend, SqliteBackend):
        sqlite.connect(backend.path).close()
    catalog = Catalog(
        home.scripts, table_for, watch=settings.inotify, default_timeout=settings.script_timeout
    )
    shared = backend.store()
    executor = Executor(threads=settings.threads, threshold=settings.inline_threshold_ms / 1000.0)
    hosts = HostMap(settings.host_pattern)
    monitor = Monitor(home.scripts)
    sink = ScriptsSink(
        catalog,
        shared,
        logs.LogBook(home.logs, settings.log_max_bytes, settings.log_backups),
        executor,
        hosts=hosts,
        max_body=settings.max_body_size,
        max_concurrency=settings.max_concurrency,
        default_timeout_ms=settings.script_timeout,
        monitor=monitor if settings.monitoring else None,
        sockets=sockets,
    )
    flush = Flusher(monitor)
    slow = SlowLog(
        monitor,
        os.path.join(home.logs, "slow.log"),
        settings.slow_request_ms / 1000.0,
        os.getpid(),
        settings.log_max_bytes,
        settings.log_backups,
    )
    background: list[asyncio.Task[None]] = []

    def stop_monitoring() -> None:
        slow.stop()
        for task in background:
            task.cancel()
        flush()  # the last second's counts

    def monitoring(query: MonitorQuery) -> WorkerMonitor:
        monitor.drain()
        return WorkerMonitor(
            pid=os.getpid(),
            started=monitor.started,
            active=monitor.snapshot_active(query.stacks),
            scripts=monitor.snapshot_scripts(query.since, query.samples),
            rate1m=monitor.rate1m(),
            instances=len(catalog.instances),
            websocket=sockets.stats(),
        )

    def invalidate(notice: Invalidate) -> None:
        catalog.refresh()  # what inotify queued first, so the notice has the last word
        catalog.invalidate(notice.subdomain, notice.exec_id, notice.path)

    def clear_cache(notice: ClearCache) -> CacheCleared:
        # Module state lives in the compiled module: either flag drops it
        # (shared state, the other half of clearState, is the control worker's).
        pid = os.getpid()
        if not (notice.clear_vm or notice.clear_state):
            return CacheCleared(pid=pid)
        catalog.refresh()
        if notice.hostname:
            subdomain, exec_id, _ = hosts.resolve(notice.hostname)
            instances, scripts = catalog.clear(subdomain, exec_id)
        else:
            instances, scripts = catalog.clear()
        return CacheCleared(pid=pid, instances=instances, scripts=scripts)

    def reload(_: Reload) -> None:
        catalog.invalidate()

    def packages_changed(_: PackagesChanged) -> None:
        sitepath.refresh()
        catalog.forget_failures()  # "No module named ..." may load now

    def start() -> None:
        guard_forks()
        logs.install_capture()
        executor.start(asyncio.get_running_loop())
        slow.pid = os.getpid()
        slow.start()
        background.append(asyncio.get_running_loop().create_task(flush_loop(flush)))
        # Everything loaded so far lives as long as the worker: keep it out of
        # the collector's generations (cheaper collections, less copy-on-write).
        gc.freeze()

    front = create_gateway(
        home.control_socket,
        scripts=sink,
        age=age,
        link_client=link,
        on_broadcast={
            Invalidate: invalidate,
            Reload: reload,
            PackagesChanged: packages_changed,
        },
        on_query={
            Invoke: Invoker(invoke_app(sink), catalog),
            MonitorQuery: monitoring,
            ClearCache: clear_cache,
            Describe: Describer(catalog),
        },
        on_startup=[start],
        on_shutdown=[shared.close, catalog.close, stop_monitoring],
        token=settings.token,
    )
    assert isinstance(front, ScriptsFront)  # a scripts sink was given
    return front
