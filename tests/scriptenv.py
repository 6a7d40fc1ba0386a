"""In-process script environment: a temp home, the real request-worker app,
falcon's ASGI conductor (lifespan included), no sockets."""

from __future__ import annotations

import asyncio
import os
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import falcon.testing
from hoodyexec.workers.request import load_app

from hoodyexec.config import parse_cli
from hoodyexec.home import Home


class ScriptEnv:
    def __init__(self, root: Path, *flags: str) -> None:
        self.home = Home(str(root / "home"))
        os.makedirs(self.home.instance_dir(), exist_ok=True)
        os.makedirs(self.home.logs, exist_ok=True)
        self.settings = parse_cli(["--home", self.home.root, *flags], {})
        self._app: Any = None  # the app of the scenario running now, if any

    def write(self, rel: str, text: str, instance: str = "default/1") -> Path:
        path = Path(self.home.scripts) / instance / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(textwrap.dedent(text))
        os.replace(tmp, path)
        self.poll()
        return path

    def poll(self) -> None:
        """Apply what inotify queued, as a worker's loop does before it reads
        the next request from a socket: a scenario writes and then calls the
        app in the same loop step, with no I/O step in between."""
        if self._app is not None:
            self._app.sink.catalog.refresh()

    def log(self, rel: str, instance: str = "default/1") -> str:
        name = rel[:-3] if rel.endswith(".py") else rel
        path = Path(self.home.logs) / instance / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def run(self, scenario: Callable[[falcon.testing.ASGIConductor], Awaitable[Any]]) -> Any:
        app = load_app(self.settings, self.home, link=False)

        async def main() -> Any:
            async with falcon.testing.ASGIConductor(app) as conductor:
                return await scenario(conductor)

        self._app = app
        try:
            return asyncio.run(main())
        finally:
            self._app = None

    def get(self, path: str, **kw: Any) -> falcon.testing.Result:
        async def go(c: falcon.testing.ASGIConductor) -> Any:
            return await c.simulate_get(path, **kw)

        return self.run(go)

    def request(self, method: str, path: str, **kw: Any) -> falcon.testing.Result:
        async def go(c: falcon.testing.ASGIConductor) -> Any:
            return await c.simulate_request(method, path, **kw)

        return self.run(go)


def local_invoker(home: Home, *, watch: bool = True, state_url: str | None = None) -> Any:
    """A request worker's ``invoke`` handler in-process (what route/test asks over
    the link), its shared state where ``state_url`` says (default: the home's SQLite)."""
    from hoodyexec.engine.capture import LogBook
    from hoodyexec.engine.catalog import Catalog
    from hoodyexec.engine.executor import Executor
    from hoodyexec.engine.invoke import Invoker
    from hoodyexec.http.router import table_for
    from hoodyexec.http.sink import ScriptsSink, invoke_app
    from hoodyexec.storage.backends import open_backend

    catalog = Catalog(home.scripts, table_for, watch=watch)
    shared = open_backend(state_url, home.root).store()
    sink = ScriptsSink(catalog, shared, LogBook(home.logs), Executor(threads=4))
    invoker = Invoker(invoke_app(sink), catalog)
    invoker.sink = sink  # type: ignore[attr-defined] - for tests that look inside
    return invoker


def management_app(home: Home, state_url: str | None = None, **kw: Any) -> Any:
    """The control worker's management app in-process: one live worker, shared
    state (where ``state_url`` says, as the control worker opens it) and script
    runs (route/test) through an in-process worker engine."""
    from hoodyexec.http.management import create_management
    from hoodyexec.storage.backends import open_backend
    from hoodyexec.storage.cluster import node_id

    async def one_worker() -> list[int]:
        return [3]

    # The in-process worker engine has no inotify watch: like a worker on a
    # network filesystem, it learns of API writes from their Invalidate notices.
    invoker = local_invoker(home, watch=False, state_url=state_url)
    backend = open_backend(state_url, home.root)

    async def broadcast(topic: Any) -> list[int]:
        from hoodyexec.ipc.protocol import Invalidate

        if isinstance(topic, Invalidate):
            invoker.catalog.invalidate(topic.subdomain, topic.exec_id, topic.path)
        return [3]

    options: dict[str, Any] = {
        "started": 0.0,
        "master_pid": 1,
        "control_pid": 2,
        "worker_pids": one_worker,
        "home": home,
        "shared": backend.store(),
        "backend": backend,
        "node": node_id(home.root, "in-process") if backend.shared else None,
        "invoke": _in_process(invoker),
        "broadcast": broadcast,
        "ask": _asked(invoker.catalog),
    }
    options.update(kw)
    return create_management(**options)


def _in_process(invoker: Any) -> Any:
    """The control side's ``invoke(call, avoid)`` answered by an in-process worker engine."""
    from hoodyexec.ipc.protocol import Invoke, InvokeResult

    async def invoke(call: Invoke, avoid: int = 0) -> InvokeResult:
        result: InvokeResult = await invoker(call)
        return result

    return invoke


def _asked(catalog: Any) -> Any:
    """The control side's ``ask(topic)`` answered by an in-process worker engine
    (``Describe``, for user-openapi/*)."""
    from hoodyexec.engine.describe import Describer
    from hoodyexec.errors import HoodyError
    from hoodyexec.ipc.protocol import Reply

    describe = Describer(catalog)

    async def ask(topic: Any) -> Reply:
        try:
            return Reply(id=0, pid=3, answer=describe(topic))
        except HoodyError as exc:
            return Reply(id=0, pid=3, error=exc.message, code=exc.status)

    return ask


def _outside(tmp_path) -> str:
    folder = tmp_path / "outside"
    folder.mkdir(exist_ok=True)
    secret = folder / "secret.py"
    secret.write_text("return {'secret': True}\n")
    return str(secret)
