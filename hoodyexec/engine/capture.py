"""Per-script logs, and capture of ``console``, ``print()`` and ``logging``.

Each script has one log file, ``<home>/logs/<subdomain>/<execId>/<script>.log``
(``api/users/[id].py`` → ``api/users/[id].log``). A line is::

    2026-11-28T12:00:00.123456Z INFO  [executionId] message

Every worker appends with ``O_APPEND`` and one ``write`` per entry, so lines from
several processes never interleave. Which log a ``print()`` or ``logging`` call
belongs to is decided by a context variable set around each execution: correct
under concurrency on the event loop and in the thread pool (contexts are copied
into pool threads).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import fcntl
import io
import logging
import os
import sys
import threading
import time
import traceback
from collections import OrderedDict
from typing import Any, TextIO

LEVELS = {"debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "off": 100}
_NAMES = {10: "DEBUG", 20: "INFO", 30: "WARN", 40: "ERROR", 50: "ERROR"}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AppendLog:
    """An append-only log file shared by every process of the kit, rotated by size.

    Each entry is one ``O_APPEND`` ``write``, so lines from several processes
    never interleave. At most once a second (and on first use) a writer checks
    the path: when the file is at or over ``max_bytes`` it rotates it
    (``x.log`` → ``x.log.1`` → ... → ``x.log.<backups>``, the oldest dropped)
    under an ``flock``, and a writer whose file was rotated, removed or replaced
    by another process reopens the path. So nothing grows past about
    ``max_bytes`` plus a second's worth of lines, and no check costs a syscall
    per line. ``max_bytes`` 0 turns rotation off.
    """

    __slots__ = ("path", "max_bytes", "backups", "_fd", "_lock", "_checked")

    CHECK_EVERY = 1.0  # seconds

    def __init__(self, path: str, max_bytes: int = 0, backups: int = 5) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = max(1, backups)
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._checked = 0.0

    def write_bytes(self, data: bytes) -> None:
        with self._lock:
            now = time.monotonic()
            if self._fd is None or now - self._checked >= self.CHECK_EVERY:
                self._checked = now
                self._check()
            assert self._fd is not None
            os.write(self._fd, data)

    def _check(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._reopen()
            return
        if self._fd is None or os.fstat(self._fd).st_ino != st.st_ino:
            self._reopen()
        if self.max_bytes and st.st_size >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        assert self._fd is not None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # another process is rotating it now
        try:
            st = os.stat(self.path)
            if st.st_ino == os.fstat(self._fd).st_ino and st.st_size >= self.max_bytes:
                for n in range(self.backups, 1, -1):
                    with contextlib.suppress(FileNotFoundError):
                        os.replace(f"{self.path}.{n - 1}", f"{self.path}.{n}")
                os.replace(self.path, f"{self.path}.1")
        except FileNotFoundError:
            pass
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._reopen()

    def _reopen(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        _remember_open(self)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class ScriptLog(AppendLog):
    """The log file of one script: ``<time> <LEVEL> [<executionId>] <message>`` lines."""

    __slots__ = ()

    def write(self, level: int, execution_id: str, message: str) -> None:
        line = f"{_now()} {_NAMES.get(level, 'INFO'):<5} [{execution_id}] {message.rstrip()}\n"
        self.write_bytes(line.encode("utf-8", "replace"))


# Log files kept open per process, least recently opened first: an instance with
# thousands of chatty scripts must not run the process out of file descriptors.
MAX_OPEN_LOGS = 256
_open_logs: OrderedDict[int, AppendLog] = OrderedDict()
_open_lock = threading.Lock()


def _remember_open(log: AppendLog) -> None:
    with _open_lock:
        _open_logs[id(log)] = log
        _open_logs.move_to_end(id(log))
        for key, victim in list(_open_logs.items()):
            if len(_open_logs) <= MAX_OPEN_LOGS:
                break
            if victim is log or not victim._lock.acquire(blocking=False):
                continue  # in use right now: try the next oldest
            try:
                if victim._fd is not None:
                    os.close(victim._fd)
                    victim._fd = None
            finally:
                victim._lock.release()
            del _open_logs[key]


class Console:
    """``console.log/info/warn/error/debug`` for one execution."""

    __slots__ = ("_log", "_id", "_min")

    def __init__(self, log: ScriptLog, execution_id: str, min_level: int = 10) -> None:
        self._log = log
        self._id = execution_id
        self._min = min_level

    @property
    def execution_id(self) -> str:
        return self._id

    def _emit(self, level: int, args: tuple[Any, ...]) -> None:
        if level >= self._min:
            self._log.write(
                level, self._id, " ".join(a if isinstance(a, str) else _fmt(a) for a in args)
            )

    def log(self, *args: Any) -> None:
        self._emit(20, args)

    info = log

    def warn(self, *args: Any) -> None:
        self._emit(30, args)

    warning = warn

    def error(self, *args: Any) -> None:
        self._emit(40, args)

    def debug(self, *args: Any) -> None:
        self._emit(10, args)

    def exception(self, exc: BaseException) -> None:
        self._log.write(40, self._id, "".join(traceback.format_exception(exc)))


def _fmt(value: Any) -> str:
    try:
        import msgspec

        return msgspec.json.encode(value).decode()
    except Exception:  # noqa: BLE001
        return repr(value)


# The execution a print()/logging call belongs to.
current: contextvars.ContextVar[Console | None] = contextvars.ContextVar(
    "hoodyexec_console", default=None
)


class _StreamRouter(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: inside an execution, writes go to its log."""

    def __init__(self, real: TextIO, level: int) -> None:
        self._real = real
        self._level = level
        self._partial: dict[int, str] = {}

    def write(self, text: str) -> int:
        console = current.get()
        if console is None:
            return self._real.write(text)
        key = id(console)
        buf = self._partial.pop(key, "") + text
        *lines, rest = buf.split("\n")
        for line in lines:
            console._emit(self._level, (line,))
        if rest:
            self._partial[key] = rest
        return len(text)

    def flush(self) -> None:
        if current.get() is None:
            self._real.flush()

    def finish(self, console: Console) -> None:
        rest = self._partial.pop(id(console), "")
        if rest:
            console._emit(self._level, (rest,))

    def fileno(self) -> int:
        return self._real.fileno()

    def isatty(self) -> bool:
        return False

    # The stubs declare TextIOBase.encoding a writable attribute; here it is
    # read-only, the real stream's.
    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._real, "encoding", "utf-8")


class _ScriptLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        console = current.get()
        if console is None:
            return
        try:
            msg = self.format(record)
        except Exception:  # noqa: BLE001
            msg = record.getMessage()
        console._emit(record.levelno, (f"{record.name}: {msg}" if record.name != "root" else msg,))


class _OutsideScripts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return current.get() is None


_installed: list[_StreamRouter] = []
_logging_installed = False


def install_capture() -> None:
    """Route print() and logging from inside executions to script logs.

    Idempotent; re-wraps sys.stdout/sys.stderr if something replaced them.
    """
    global _logging_installed
    if not isinstance(sys.stdout, _StreamRouter):
        out = _StreamRouter(sys.stdout, 20)
        sys.stdout = out
        _installed.append(out)
    if not isinstance(sys.stderr, _StreamRouter):
        err = _StreamRouter(sys.stderr, 40)
        sys.stderr = err
        _installed.append(err)
    del _installed[:-2]
    if _logging_installed:
        return
    _logging_installed = True
    root = logging.getLogger()
    kit_level = root.level or logging.WARNING
    for handler in root.handlers:  # kit handlers keep the kit's level and skip script records
        if handler.level == logging.NOTSET:
            handler.setLevel(kit_level)
        handler.addFilter(_OutsideScripts())
    script_handler = _ScriptLogHandler(logging.DEBUG)
    script_handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(script_handler)
    root.setLevel(logging.DEBUG)
    for name in ("hoodyexec", "gunicorn", "asyncio"):
        lg = logging.getLogger(name)
        if lg.level == logging.NOTSET:
            lg.setLevel(kit_level)


def finish(console: Console) -> None:
    """Flush a partial print() line of an execution that ended."""
    for router in _installed:
        if router._partial:
            router.finish(console)


class LogBook:
    """Opens and caches the ``ScriptLog`` of each script of a process (rotated at
    ``max_bytes`` into ``backups`` files)."""

    def __init__(self, root: str, max_bytes: int = 0, backups: int = 5) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.backups = backups
        self._logs: dict[str, ScriptLog] = {}

    def for_script(self, subdomain: str, exec_id: str, rel: str) -> ScriptLog:
        key = f"{subdomain}/{exec_id}/{rel}"
        log = self._logs.get(key)
        if log is None:
            name = rel[:-3] if rel.endswith(".py") else rel
            log = self._logs[key] = ScriptLog(
                os.path.join(self.root, subdomain, exec_id, name + ".log"),
                self.max_bytes,
                self.backups,
            )
        return log
