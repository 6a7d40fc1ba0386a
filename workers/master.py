"""The master: gunicorn's arbiter, driven programmatically and extended with
one more supervised child, the control worker.

The control worker is handled the way gunicorn handles its own dirty arbiter:
spawned by ``os.fork`` from the arbiter, tracked by pid, reaped by a targeted
``waitpid`` before gunicorn's ``waitpid(-1)`` loop, respawned by the main loop's
reconciliation (``manage_workers``), and stopped after the request workers have
drained. A control worker that cannot boot halts the master with a clear reason
instead of being respawned forever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from typing import Any

from gunicorn import util
from gunicorn.app.base import Application, BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer
from gunicorn.glogging import Logger
from gunicorn.workers.base import Worker
from gunicorn.workers.workertmp import WorkerTmp

from hoodyexec import config
from hoodyexec.config import Settings
from hoodyexec.engine import kitlog, metrics
from hoodyexec.engine.websocket import Sockets
from hoodyexec.errors import ConfigError
from hoodyexec.features.system import restart
from hoodyexec.home import Home
from hoodyexec.http.sink import ScriptsFront

from . import control, request
from .restarts import RestartAborted, Restarts, booted

# Embedded gunicorn defaults; conf/gunicorn.conf.py mirrors them for operators.
GUNICORN_DEFAULTS: dict[str, Any] = {
    "asgi_lifespan": "on",
    "asgi_loop": "auto",
    "keepalive": 5,
    "backlog": 2048,
    "errorlog": "-",
    "capture_output": False,
    "proc_name": "hoodyexec",
    "control_socket_mode": 0o600,
}


def gunicorn_settings(settings: Settings, home: Home) -> dict[str, Any]:
    """Our settings mapped onto gunicorn's; these always win over a gunicorn file."""
    return {
        "bind": [settings.bind],
        "workers": settings.workers,
        "worker_connections": settings.worker_connections,
        "graceful_timeout": settings.graceful_timeout,
        "timeout": settings.timeout,
        "websocket_max_message_size": settings.websocket_max_message_size,
        "loglevel": settings.log_level,
        "accesslog": "-" if settings.access_log else None,
        "pidfile": home.pidfile,
        "control_socket": home.gunicorn_ctl,
        "worker_class": "hoodyexec.workers.asgi.HoodyASGIWorker",
        "asgi_lifespan": "on",
        "preload_app": False,
    }


def _post_fork(server: HoodyArbiter, worker: Worker) -> None:
    server.app.worker_age = worker.age


def _pre_fork(server: Arbiter, worker: Any) -> None:
    # The heartbeat file's time before the worker ever notified: while it is
    # unchanged the worker has not booted (see ``booted``).
    worker.hoody_born = worker.tmp.last_update()


class HoodyApplication(BaseApplication):
    """Feeds gunicorn our settings and builds the request worker's app."""

    def __init__(self, settings: Settings, args: Any = None) -> None:
        self.settings = settings
        self.home = Home(settings.home)
        self.args = args
        self.worker_age = 0
        # The request worker's WebSocket sessions (set in the worker by ``load``).
        self.sockets: Sockets | None = None
        self._loaded = False
        super().__init__(prog="hoodyexec")

    def load_config(self) -> None:
        if self._loaded:
            self._reload_settings()
        self._loaded = True
        assert self.cfg is not None
        values = dict(GUNICORN_DEFAULTS)
        if self.settings.gunicorn_config:
            values.update(_read_gunicorn_file(self, self.settings.gunicorn_config))
        values.update(gunicorn_settings(self.settings, self.home))
        values["post_fork"] = _post_fork
        values["pre_fork"] = _pre_fork
        for key, value in values.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def _reload_settings(self) -> None:
        """On SIGHUP, re-read flags/env/file; a bad edit keeps the running settings."""
        log = logging.getLogger("hoodyexec.master")
        try:
            fresh = config.resolve(self.args)
        except ConfigError as exc:
            log.error("reload: keeping the current settings: %s", exc)
            return
        if fresh.home != self.settings.home:
            log.warning("reload: home cannot change while running; keeping %s", self.settings.home)
            fresh.home = self.settings.home
        self.settings = fresh

    # The ASGI app, loaded in the worker after fork.
    def load(self) -> ScriptsFront:
        self.sockets = Sockets(self.settings.websocket_idle_timeout)
        return request.load_app(self.settings, self.home, self.worker_age, sockets=self.sockets)


def _read_gunicorn_file(app: BaseApplication, path: str) -> dict[str, Any]:
    # gunicorn's own loader, borrowed from Application: it only reads app.cfg.
    cfg = Application.get_config_from_filename(app, path)  # type: ignore[arg-type]
    return {
        k: v
        for k, v in cfg.items()
        if not k.startswith("_") and not callable(v) or k in app.cfg.settings
    }


class _Control:
    """The master's record of one control worker process."""

    __slots__ = ("pid", "tmp", "born", "spawned", "ready")

    def __init__(self, pid: int, tmp: WorkerTmp, born: float) -> None:
        self.pid = pid
        self.tmp = tmp
        self.born = born
        self.spawned = time.monotonic()
        self.ready = False

    def check_ready(self) -> bool:
        if not self.ready:
            try:
                self.ready = self.tmp.last_update() != self.born
            except (OSError, ValueError):
                pass
        return self.ready

    def silent_for(self) -> float:
        """Seconds since the last heartbeat (since spawn while booting)."""
        if not self.check_ready():
            return time.monotonic() - self.spawned
        try:
            return time.monotonic() - self.tmp.last_update()
        except (OSError, ValueError):
            return 0.0


class HoodyArbiter(Arbiter):
    CONTROL_BOOT_ERROR = control.BOOT_ERROR
    app: HoodyApplication
    log: Logger  # set by Arbiter.__init__ (the stubs allow None for before it)

    def __init__(self, app: HoodyApplication) -> None:
        self.control: _Control | None = None
        self.control_age = 0
        # Replaced on SIGHUP, still serving until the successor is ready.
        self.retiring: list[_Control] = []
        # Told to stop, draining; reaped by pid.
        self.retired: list[_Control] = []
        self.started = time.time()
        self._stopping = False
        self._reloaded: set[int] = set()  # request workers a reload replaces
        super().__init__(app)
        self.restarts = Restarts(self)  # every reload (SIGHUP, system/restart)

    @property
    def control_pid(self) -> int:
        return self.control.pid if self.control else 0

    # -- control worker lifecycle ---------------------------------------------
    def spawn_control(self) -> int:
        self.control_age += 1
        tmp = WorkerTmp(self.cfg)
        worker = control.ControlWorker(
            self.app.settings,
            self.app.home,
            age=self.control_age,
            master_pid=self.pid,
            started=self.started,
            heartbeat=tmp.notify,
        )
        born = tmp.last_update()
        pid = os.fork()
        if pid:
            self.control = _Control(pid, tmp, born)
            self.log.info("Booting control worker with pid: %s", pid)
            return pid
        # Child: never return into the master's loop.
        code = 0
        try:
            for listener in self.LISTENERS:
                listener.close()
            for sibling in self.WORKERS.values():
                sibling.tmp.close()
            # gunicorn's private helper (setproctitle or a no-op), not in the stubs.
            util._setproctitle(f"control [{self.proc_name}]")  # type: ignore[attr-defined]
            worker.run()
        except control.ControlBootError as exc:
            self.log.error("Control worker failed to boot: %s", exc)
            code = self.CONTROL_BOOT_ERROR
        except BaseException:  # noqa: BLE001
            self.log.exception("Control worker crashed")
            code = 1
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def manage_control(self) -> None:
        if self.control is None and not self._stopping:
            self.spawn_control()
        # A reload's successor is ready: now the predecessors may drain and go.
        if self.retiring and self.control is not None and self.control.check_ready():
            for old in self.retiring:
                self.kill_control(signal.SIGTERM, old.pid)
                self.retired.append(old)
            self.retiring.clear()

    def _all_controls(self) -> list[_Control]:
        return [c for c in [self.control, *self.retiring, *self.retired] if c is not None]

    def reap_control(self) -> None:
        for ctl in self._all_controls():
            try:
                wpid, status = os.waitpid(ctl.pid, os.WNOHANG)
            except ChildProcessError:  # already reaped by gunicorn's waitpid(-1)
                wpid, status = ctl.pid, None
            if wpid:
                self._control_exited(ctl, status)

    def _control_exited(self, ctl: _Control, status: int | None) -> None:
        with contextlib.suppress(Exception):
            ctl.tmp.close()
        if ctl in self.retired:
            self.retired.remove(ctl)
            return
        code = os.waitstatus_to_exitcode(status) if status is not None else None
        if ctl in self.retiring:  # died before its successor was ready
            self.retiring.remove(ctl)
        else:
            self.control = None
        # Exit code 3 means "cannot boot" only before the worker ever reported
        # ready; afterwards a dead control worker is simply replaced.
        if code == self.CONTROL_BOOT_ERROR and not ctl.ready and not self._stopping:
            raise HaltServer("Control worker failed to boot.", self.CONTROL_BOOT_ERROR)
        metrics.mark_dead(ctl.pid)
        if not self._stopping:
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            self.log.error("Control worker (pid:%s) exited (%s); respawning", ctl.pid, how)
            metrics.count_recycle("control")

    def kill_control(self, sig: int, pid: int | None = None) -> None:
        pid = pid or self.control_pid
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    # -- arbiter hooks ------------------------------------------------------------
    def manage_workers(self) -> None:
        self.manage_control()
        if not self.restarts.holding():  # a restart trims the old workers itself
            super().manage_workers()
        self.restarts.progress()

    def murder_workers(self) -> None:
        super().murder_workers()
        # The control worker has a heartbeat like request workers: a loop that
        # stopped turning (stuck code, a deadlock) is replaced.
        ctl = self.control
        if ctl is not None and self.timeout and ctl.silent_for() > self.timeout:
            self.log.critical("CONTROL WORKER TIMEOUT (pid:%s)", ctl.pid)
            self.kill_control(signal.SIGKILL, ctl.pid)

    def handle_chld(self) -> None:
        self.reap_control()
        super().handle_chld()

    handle_cld = handle_chld

    def reap_workers(self) -> None:
        self.reap_control()
        existed = dict(self.WORKERS)
        try:
            self._reap_request_workers()
        finally:
            for pid in existed.keys() - self.WORKERS.keys():
                metrics.mark_dead(pid)
                if not self._stopping and pid not in self._reloaded:
                    metrics.count_recycle("request")
                self._reloaded.discard(pid)
            # Also runs inside gunicorn's reload, which waits for the old
            # workers by reaping: the restart moves on there too.
            self.restarts.progress()
        self.restarts.raise_if_aborted()

    def _reap_request_workers(self) -> None:
        while True:
            before = dict(self.WORKERS)
            try:
                super().reap_workers()
                break
            except HaltServer:
                # gunicorn halts on exit code 3/4 ("failed to boot"). A worker
                # that had booted and then exited with such a code was ended by
                # a script (sys.exit in a thread it made, os._exit): replace it.
                gone = [(pid, w) for pid, w in before.items() if pid not in self.WORKERS]
                culprit = [(pid, w) for pid, w in gone if not _tmp_closed(w)]
                if len(culprit) != 1:
                    raise
                pid, worker = culprit[0]
                if not booted(worker) and not self.restarts.failed_boot(pid):
                    raise
                if booted(worker):
                    self.log.error(
                        "Worker (pid:%s) exited with a boot-error code after it had booted; "
                        "replacing it",
                        pid,
                    )
                worker.tmp.close()
                self.cfg.child_exit(self, worker)
        self.reap_control()

    def handle_hup(self) -> None:
        self.restarts.begin()
        self._reloaded.update(self.WORKERS)  # replaced by the reload, not recycled
        self.restarts.in_reload = True
        try:
            super().handle_hup()
        except RestartAborted:
            return  # the old workers and control worker keep serving
        finally:
            self.restarts.in_reload = False
        # Replace the control worker too. The successor binds the socket path;
        # the predecessor keeps serving until the successor reports ready, then
        # drains its in-flight calls and exits (manage_control).
        if self.control is not None:
            self.retiring.append(self.control)
            self.control = None
        self.manage_control()

    def stop(self, graceful: bool = True) -> None:
        self._stopping = True
        super().stop(graceful)  # drains request workers first
        self._stop_controls(graceful)

    def _stop_controls(self, graceful: bool) -> None:
        sig = signal.SIGTERM if graceful else signal.SIGQUIT
        for ctl in self._all_controls():
            self.kill_control(sig, ctl.pid)
        limit = time.monotonic() + (self.cfg.graceful_timeout if graceful else 2.0)
        while self._all_controls() and time.monotonic() < limit:
            self.reap_control()
            time.sleep(0.05)
        for ctl in self._all_controls():
            self.kill_control(signal.SIGKILL, ctl.pid)
        self.reap_control()


def _tmp_closed(worker: Worker) -> bool:
    try:
        worker.tmp.last_update()
    except (OSError, ValueError):
        return True
    return False


def serve(settings: Settings, args: Any = None) -> None:
    """Prepare the home and run the master until it stops."""
    config.check_startup(settings)
    os.umask(0o077)
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
    )
    home = Home(settings.home)
    # Kit records of every process (forked children inherit it) also go to
    # <home>/logs/kit.log, rotated like the other logs; scripts' never do.
    kitlog.install(os.path.join(home.logs, "kit.log"), settings.log_max_bytes, settings.log_backups)
    prepared = home.prepare()
    restart.RestartFiles(home).reset(os.getpid())  # no restart or drain left running
    # Before anything forks or imports prometheus-client: every process writes
    # its metrics into <home>/run/metrics, emptied here (a new kit, new counters).
    metrics.prepare_dir(home.metrics)
    if prepared:
        logging.getLogger("hoodyexec.master").info(
            "seeded example scripts in %s", home.instance_dir()
        )
    app = HoodyApplication(settings, args)
    HoodyArbiter(app).run()
