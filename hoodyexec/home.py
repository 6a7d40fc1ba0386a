"""The kit's home directory: where everything it owns lives.

::

    <home>/scripts/<subdomain>/<execId>/   scripts (seeded with examples on first start)
    <home>/logs/                           per-script and kit logs
    <home>/run/                            sockets, pid file, metrics
    <home>/hoodyexec.db                    SQLite state
    <home>/pyproject.toml                  the kit project file (declared packages)
    <home>/requirements.lock               exact versions of the installed packages
    <home>/packages/site                   kit-local packages (a link to the live set
                                           under packages/sets/), on every worker's path

Directories are created 0700 and nothing is group/world readable: scripts run
with the kit's privileges and state may hold secrets.
"""

from __future__ import annotations

import contextlib
import os
from importlib import resources

from hoodyexec.files import is_temp_name, write_atomic

DIR_MODE = 0o700
DEFAULT_SUBDOMAIN = "default"
DEFAULT_EXEC_ID = "1"


class Home:
    __slots__ = (
        "root",
        "scripts",
        "logs",
        "run",
        "metrics",
        "db",
        "control_socket",
        "pidfile",
        "gunicorn_ctl",
        "packages",
        "site",
        "project",
        "lock",
    )

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.scripts = os.path.join(self.root, "scripts")
        self.logs = os.path.join(self.root, "logs")
        self.run = os.path.join(self.root, "run")
        self.metrics = os.path.join(self.run, "metrics")
        self.db = os.path.join(self.root, "hoodyexec.db")
        self.control_socket = os.path.join(self.run, "control.sock")
        self.pidfile = os.path.join(self.run, "hoodyexec.pid")
        self.gunicorn_ctl = os.path.join(self.run, "gunicorn.ctl")
        self.packages = os.path.join(self.root, "packages")
        self.site = os.path.join(self.packages, "site")
        self.project = os.path.join(self.root, "pyproject.toml")
        self.lock = os.path.join(self.root, "requirements.lock")

    def instance_dir(
        self, subdomain: str = DEFAULT_SUBDOMAIN, exec_id: str = DEFAULT_EXEC_ID
    ) -> str:
        return os.path.join(self.scripts, subdomain, exec_id)

    def prepare(self) -> bool:
        """Create the layout (idempotent). Returns True when examples were seeded.

        Examples are seeded only on the very first start, when ``scripts/`` does
        not exist yet, so a user who deletes them does not get them back.
        """
        first = not os.path.isdir(self.scripts)
        for path in (self.root, self.scripts, self.logs, self.run, self.metrics, self.packages):
            os.makedirs(path, mode=DIR_MODE, exist_ok=True)
            os.chmod(path, DIR_MODE)
        if first:
            self.seed_examples(self.instance_dir())
        else:
            self.remove_stale_temp_files()
        return first

    def remove_stale_temp_files(self) -> list[str]:
        """Delete what atomic writes killed before their rename left in ``scripts/``.

        Only names ``files.write_atomic`` makes (``.<name>.<8 random>.tmp``) are
        removed, and symlinked folders are not entered. Run at start, before any
        worker writes, so no live write's temp file can be taken. Returns the
        paths removed, relative to ``scripts/``.
        """
        removed = []
        for dirpath, _, filenames in os.walk(self.scripts):
            for name in filenames:
                if not is_temp_name(name):
                    continue
                path = os.path.join(dirpath, name)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    removed.append(os.path.relpath(path, self.scripts))
        return removed

    @staticmethod
    def seed_examples(target: str) -> list[str]:
        os.makedirs(target, mode=DIR_MODE, exist_ok=True)
        written = []
        examples = resources.files("hoodyexec") / "examples"
        for entry in sorted(examples.iterdir(), key=lambda e: e.name):
            if not entry.name.endswith(".py") or entry.name.startswith("__"):
                continue
            rel = entry.name.replace("__", os.sep)  # "api__users.py" -> "api/users.py"
            dest = os.path.join(target, rel)
            os.makedirs(os.path.dirname(dest), mode=DIR_MODE, exist_ok=True)
            write_atomic(dest, entry.read_bytes())  # 0600, and a crash leaves a known temp name
            written.append(rel)
        return written
