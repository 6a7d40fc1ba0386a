"""The kit's own log file, ``<home>/logs/kit.log``.

``KitLogHandler`` is a ``logging.Handler`` over ``capture.AppendLog``: every
process of the kit (master, request workers, control worker) appends its kit
records — loggers ``hoodyexec.*``, ``gunicorn.error`` and anything else that is
not a script's — one ``O_APPEND`` write per record, rotated by size with the
``log-max-bytes`` / ``log-backups`` settings. The master installs it before it
forks; each forked process gets its own descriptor (``os.register_at_fork``),
so the ``flock`` that serializes a rotation works between processes.

Records made inside a script execution (a script's ``print`` or ``logging``)
never reach it: they belong to the script's own log.

A line::

    2026-11-28T12:00:00.123Z [4242] INFO hoodyexec.control: control worker 4242 ready
"""

from __future__ import annotations

import logging
import os
import time
import weakref

from hoodyexec.engine import capture

FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


class _Formatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


class KitLogHandler(logging.Handler):
    def __init__(self, path: str, max_bytes: int = 0, backups: int = 5) -> None:
        super().__init__()
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.file = capture.AppendLog(path, max_bytes, backups)
        self.failed = False
        self.setFormatter(_Formatter(FORMAT))
        _handlers.add(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if capture.current.get() is not None:
            return False  # inside a script execution: its own log has it
        return bool(super().filter(record))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            self.file.write_bytes(line.encode("utf-8", "replace"))
        except Exception:  # noqa: BLE001 - logging must never raise into the kit
            if not self.failed:  # said once (on stderr); the next records try again quietly
                self.failed = True
                self.handleError(record)
        else:
            self.failed = False

    def _forked(self) -> None:
        # The parent's descriptor is shared with the child (one open file
        # description, one flock): open a file of our own on the next write.
        # The inherited descriptor is left as it is (another thread of the
        # parent may have held its lock at the fork).
        self.file = capture.AppendLog(self.path, self.max_bytes, self.backups)


_handlers: weakref.WeakSet[KitLogHandler] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for handler in list(_handlers):
        handler._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


def install(path: str, max_bytes: int = 0, backups: int = 5) -> KitLogHandler:
    """Add the kit log to the root logger and to ``gunicorn.error`` (which does not
    propagate). Idempotent per path."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, KitLogHandler) and handler.path == path:
            return handler
    handler = KitLogHandler(path, max_bytes, backups)
    logging.getLogger().addHandler(handler)
    logging.getLogger("gunicorn.error").addHandler(handler)
    return handler
