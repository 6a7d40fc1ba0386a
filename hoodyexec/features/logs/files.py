"""Which files under ``<home>/logs`` the logs API knows, and of what type.

Names are relative to ``<home>/logs`` with ``/`` separators, exactly as
``logs/list`` returns them:

==========  ==================================================================
type        names
==========  ==================================================================
script      ``<subdomain>/<execId>/<script>.log`` (``api/users/[id].log``...)
access      ``<subdomain>-<execId>.log`` at the top of ``logs/``
kit         ``kit.log``, ``slow.log``
schedule    ``schedules/fires.log``
==========  ==================================================================

each also rotated, ``<name>.1`` .. ``<name>.<N>``. Every other name — ``..``,
an absolute path, a hidden file, a file of another shape — is refused with
``403 Path is excluded from access``, and so is a name that reaches through a
symlink (the real path must be the name under the real logs folder).
"""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass
from typing import Any

from hoodyexec.clock import iso
from hoodyexec.engine.store import EXCLUDED
from hoodyexec.errors import BadRequest, Forbidden, NotFound

TYPES = ("script", "access", "kit", "schedule")
KIT_FILES = ("kit.log", "slow.log")
SCHEDULE_FILE = "schedules/fires.log"
_ROTATED = re.compile(r"^(.+\.log)\.([1-9][0-9]{0,3})$")
_ACCESS = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*-[A-Za-z0-9_-]+\.log$")
DAY = 86400.0


def classify(name: str) -> tuple[str, bool] | None:
    """``(type, rotated)`` of a log name, or None when the API does not serve it."""
    if not name or "\\" in name or "\x00" in name or name.startswith("/"):
        return None
    parts = name.split("/")
    if any(not p or p.startswith(".") for p in parts):
        return None  # "", ".", "..", hidden files and folders
    base, rotated = name, False
    m = _ROTATED.match(name)
    if m is not None:
        base, rotated = m.group(1), True
    elif not name.endswith(".log"):
        return None
    if len(parts) == 1:
        if base in KIT_FILES:
            return "kit", rotated
        return ("access", rotated) if _ACCESS.match(base) else None
    if len(parts) == 2:
        return ("schedule", rotated) if base == SCHEDULE_FILE else None
    return "script", rotated


@dataclass(frozen=True)
class LogFile:
    name: str  # relative to <home>/logs, "/" separators
    path: str
    type: str
    rotated: bool
    size: int = 0
    modified: float = 0.0

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": self.name,
            "type": self.type,
            "size": self.size,
            "modified": iso(self.modified),
            "rotated": self.rotated,
        }
        if self.type == "script":
            sub, eid, _ = self.name.split("/", 2)
            out["subdomain"], out["execId"] = sub, eid
        return out


class LogFiles:
    """The log files under one home's ``logs/`` folder."""

    def __init__(self, root: str) -> None:
        self.root = root

    def listing(self, type_: str | None = None) -> list[LogFile]:
        """Every served log file (rotated ones included), newest modified first."""
        if type_ is not None and type_ not in TYPES:
            raise BadRequest(f"type must be one of {', '.join(TYPES)}", field="type")
        found: list[LogFile] = []
        self._walk(self.root, "", found, type_)
        found.sort(key=lambda f: (-f.modified, f.name))
        return found

    def _walk(self, folder: str, prefix: str, out: list[LogFile], type_: str | None) -> None:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            name = prefix + entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    self._walk(entry.path, name + "/", out, type_)
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue  # symlinks, sockets, ...
                kind = classify(name)
                if kind is None or (type_ is not None and kind[0] != type_):
                    continue
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # rotated or removed meanwhile
            out.append(LogFile(name, entry.path, kind[0], kind[1], st.st_size, st.st_mtime))

    def resolve(self, name: Any) -> LogFile:
        """A name ``listing`` would return, as it is now: 403 for any other, 404 when
        that name does not exist."""
        if not isinstance(name, str):
            raise Forbidden(EXCLUDED, file=name)
        kind = classify(name)
        if kind is None:
            raise Forbidden(EXCLUDED, file=name)
        parts = name.split("/")
        path = os.path.join(self.root, *parts)
        if os.path.realpath(path) != os.path.join(os.path.realpath(self.root), *parts):
            raise Forbidden(EXCLUDED, file=name)  # a symlink on the way
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"Log file not found: {name}", file=name) from None
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(f"Log file not found: {name}", file=name)
        return LogFile(name, path, kind[0], kind[1], st.st_size, st.st_mtime)

    def clear(
        self, files: list[LogFile], older_than_days: float | None, now: float | None = None
    ) -> list[dict[str, Any]]:
        """Truncate live files (writers keep appending through their ``O_APPEND``
        descriptors) and remove rotated ones; with ``older_than_days``, only files
        not modified for that long. Returns what was done to each."""
        now = time.time() if now is None else now
        cutoff = None if older_than_days is None else now - older_than_days * DAY
        done: list[dict[str, Any]] = []
        for f in files:
            if cutoff is not None and f.modified > cutoff:
                continue
            try:
                if f.rotated:
                    size = os.lstat(f.path).st_size
                    os.unlink(f.path)
                    action = "removed"
                else:
                    fd = os.open(f.path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
                    try:
                        size = os.fstat(fd).st_size
                        if not size:
                            continue
                        os.ftruncate(fd, 0)
                    finally:
                        os.close(fd)
                    action = "truncated"
            except FileNotFoundError:
                continue  # rotated away meanwhile
            done.append({"file": f.name, "type": f.type, "action": action, "bytes": size})
        return done
