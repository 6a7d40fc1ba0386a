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

from hoodyexec import config
from hoodyexec.config import Settings
from hoodyexec.errors import ConfigError
from hoodyexec.home import Home

from . import control, request

# Embedded gunicorn defaults; conf/gunicorn.conf.py mirrors them for operators.
GUNICORN_DEFAULTS: dict[str, Any] = {
    "worker_class": "asgi",
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
        "loglevel": settings.log_level,
        "accesslog": "-" if settings.access_log else None,
        "pidfile": home.pidfile,
        "control_socket": home.gunicorn_ctl,
        "worker_class": "asgi",
        "asgi_lifespan": "on",
        "preload_app": False,
    }


def _post_fork(server: Arbiter, worker: Any) -> None:
    server.app.worker_age = worker.age


class HoodyApplication(BaseApplication):
    """Feeds gunicorn our settings and builds the request worker's app."""

    def __init__(self, settings: Settings, args: Any = None) -> None:
        self.settings = settings
        self.home = Home(settings.home)
        self.args = args
        self.worker_age = 0
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

    def load(self):  # noqa: ANN201 - an ASGI app, loaded in the worker after fork
        return request.load_app(self.settings, self.home, self.worker_age)


def _read_gunicorn_file(app: BaseApplication, path: str) -> dict[str, Any]:
    cfg = Application.get_config_from_filename(app, path)  # gunicorn's own loader
    return {
        k: v
        for k, v in cfg.items()
        if not k.startswith("_") and not callable(v) or k in app.cfg.settings
    }


class HoodyArbiter(Arbiter):
    CONTROL_BOOT_ERROR = control.BOOT_ERROR

    def __init__(self, app: HoodyApplication) -> None:
        self.control_pid = 0
        self.control_age = 0
        self.retired_controls: set[int] = set()
        self.started = time.time()
        self._stopping = False
        super().__init__(app)

    # -- control worker lifecycle ---------------------------------------------
    def spawn_control(self) -> int:
        self.control_age += 1
        worker = control.ControlWorker(
            self.app.settings,
            self.app.home,
            age=self.control_age,
            master_pid=self.pid,
            started=self.started,
        )
        pid = os.fork()
        if pid:
            self.control_pid = pid
            self.log.info("Booting control worker with pid: %s", pid)
            return pid
        # Child: never return into the master's loop.
        code = 0
        try:
            for listener in self.LISTENERS:
                listener.close()
            util._setproctitle(f"control [{self.proc_name}]")
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
        if not self.control_pid and not self._stopping:
            self.spawn_control()

    def reap_control(self) -> None:
        for pid in [self.control_pid, *self.retired_controls]:
            if not pid:
                continue
            try:
                wpid, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # already reaped by gunicorn's waitpid(-1)
                wpid, status = pid, None
            if wpid:
                self._control_exited(pid, status)

    def _control_exited(self, pid: int, status: int | None) -> None:
        if pid in self.retired_controls:
            self.retired_controls.discard(pid)
            return
        self.control_pid = 0
        code = os.waitstatus_to_exitcode(status) if status is not None else None
        if code == self.CONTROL_BOOT_ERROR and not self._stopping:
            raise HaltServer("Control worker failed to boot.", self.CONTROL_BOOT_ERROR)
        if not self._stopping:
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            self.log.error("Control worker (pid:%s) exited (%s); respawning", pid, how)

    def kill_control(self, sig: int, pid: int | None = None) -> None:
        pid = pid or self.control_pid
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    # -- arbiter hooks ------------------------------------------------------------
    def manage_workers(self) -> None:
        self.manage_control()
        super().manage_workers()

    def handle_chld(self) -> None:
        self.reap_control()
        super().handle_chld()

    handle_cld = handle_chld

    def reap_workers(self) -> None:
        self.reap_control()
        super().reap_workers()
        self.reap_control()

    def handle_hup(self) -> None:
        super().handle_hup()
        # Replace the control worker too: the new one binds the socket at once,
        # the old one finishes its in-flight calls and is reaped by pid.
        if self.control_pid:
            old = self.control_pid
            self.retired_controls.add(old)
            self.control_pid = 0
            self.kill_control(signal.SIGTERM, old)
        self.manage_control()

    def stop(self, graceful: bool = True) -> None:
        self._stopping = True
        super().stop(graceful)  # drains request workers first
        self._stop_controls(graceful)

    def _stop_controls(self, graceful: bool) -> None:
        pids = [p for p in [self.control_pid, *self.retired_controls] if p]
        sig = signal.SIGTERM if graceful else signal.SIGQUIT
        for pid in pids:
            self.kill_control(sig, pid)
        limit = time.monotonic() + (self.cfg.graceful_timeout if graceful else 2.0)
        while (self.control_pid or self.retired_controls) and time.monotonic() < limit:
            self.reap_control()
            time.sleep(0.05)
        for pid in [p for p in [self.control_pid, *self.retired_controls] if p]:
            self.kill_control(signal.SIGKILL, pid)
        self.reap_control()


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
    if home.prepare():
        logging.getLogger("hoodyexec.master").info(
            "seeded example scripts in %s", home.instance_dir()
        )
    app = HoodyApplication(settings, args)
    HoodyArbiter(app).run()
