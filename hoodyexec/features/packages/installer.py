"""Installing into the kit-local package set, never into the kit's own environment.

**Sets.** ``<home>/packages/sets/<id>`` are complete package directories;
``<home>/packages/site`` is a symlink to the live one and is what every worker
has on ``sys.path``. An install copies the live set into a staging directory
(hard links: cheap, and installers replace files rather than write into them),
installs there, and swaps the link with one ``rename`` — so a failed, killed or
refused install leaves the previous set importable, untouched. The previous
set is kept until the next install (a worker may still be reading a file
through the old link); older ones are removed.

**Installers.** ``uv pip install --target`` (uv ships with the kit) or, when uv
is missing or the ``packages-installer`` setting says so, ``python -m pip
install --target``. Always an argument list, never a shell. uv reads its own
configuration (``UV_*``, ``uv.toml``); pip's configuration (``PIP_*`` and pip's
config files: index URL, extra index URLs, find-links, no-index, certificates,
trusted hosts) is given to uv too, unless the ``UV_*`` equivalent is set, so the
user's pip set-up works whichever installer runs (with pip's extra index URLs,
uv also picks the best version across every index, as pip does). The kit's own distributions
are excluded from resolution with uv (they are already importable and come
first on the path); with pip they are constrained to the kit's versions.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from packaging.requirements import Requirement

from hoodyexec.clock import pid_alive
from hoodyexec.errors import HoodyError
from hoodyexec.files import fsync_dir

from .specs import Dist, distributions

OnLine = Callable[[str], None]

# pip option → (uv environment variable, how several values are joined)
_PIP_TO_UV = {
    "index-url": ("UV_INDEX_URL", None),
    "extra-index-url": ("UV_EXTRA_INDEX_URL", " "),
    "find-links": ("UV_FIND_LINKS", ","),
    "no-index": ("UV_NO_INDEX", None),
    "trusted-host": ("UV_INSECURE_HOST", " "),
    "cert": ("SSL_CERT_FILE", None),
}
# The last lines an installer wrote are what a failure reports.
_KEEP_LINES = 200


class InstallBusy(HoodyError):
    status = 409


@dataclass
class Outcome:
    ok: bool
    lines: list[str] = field(default_factory=list)

    @property
    def error(self) -> str:
        """The installer's own error: from its first ``error:``/``ERROR:`` line on."""
        for i, line in enumerate(self.lines):
            if line.lstrip().lower().startswith("error"):
                return " ".join(x.strip() for x in self.lines[i : i + 6] if x.strip())[:2000]
        tail = [x.strip() for x in self.lines[-3:] if x.strip()]
        return " ".join(tail)[:2000] or "the installer failed without a message"


def find_uv() -> str | None:
    try:
        import uv  # the PyPI package that ships the binary
    except ImportError:
        return shutil.which("uv")
    try:
        return str(uv.find_uv_bin())
    except (FileNotFoundError, OSError):
        return shutil.which("uv")


def pip_options(python: str = sys.executable, timeout: float = 30.0) -> dict[str, str]:
    """pip's effective configuration for the install command (``pip config list``:
    its files and ``PIP_*``), option → value. Environment beats files, an
    ``install.`` section beats ``global.``."""
    try:
        out = subprocess.run(
            [python, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    rank = {":env:": 3, "install": 2, "global": 1}
    found: dict[str, tuple[int, str]] = {}
    for line in out.splitlines():
        key, sep, raw = line.partition("=")
        section, _, option = key.rpartition(".")
        if not sep or section not in rank:
            continue
        try:
            value = str(ast.literal_eval(raw))
        except (ValueError, SyntaxError):
            value = raw.strip("'\"")
        if option not in found or rank[section] > found[option][0]:
            found[option] = (rank[section], value)
    return {option: value for option, (_, value) in found.items()}


def uv_environment(pip: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """The environment uv runs with: ours, plus pip's options where uv has none."""
    env = dict(environ)
    for option, (variable, joiner) in _PIP_TO_UV.items():
        value = pip.get(option)
        if value is None or variable in env:
            continue
        if option == "no-index":
            if value.lower() in ("1", "true", "yes", "on"):
                env[variable] = "1"
            continue
        env[variable] = joiner.join(value.split()) if joiner else value
        if option == "extra-index-url":
            # pip takes the best version across all its indexes; uv by default
            # stops at the first index that has the package. Same answer as pip.
            env.setdefault("UV_INDEX_STRATEGY", "unsafe-best-match")
    return env


class SiteSets:
    """The package sets under ``<home>/packages`` and the live-set link."""

    def __init__(self, packages: str, site: str) -> None:
        self.root = packages
        self.sets = os.path.join(packages, "sets")
        self.site = site
        self._lock_path = os.path.join(packages, ".install.lock")
        self._lock_fd: int | None = None

    # -- one install at a time, across processes (the lock dies with its holder)
    def lock(self) -> None:
        os.makedirs(self.sets, mode=0o700, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InstallBusy(
                "An install is in progress; try again when it has finished",
                headers={"Retry-After": "5"},
            ) from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- sets ---------------------------------------------------------------
    def current(self) -> str | None:
        """The live set's directory, or None before the first install."""
        try:
            target = os.readlink(self.site)
        except OSError:
            return None
        path = os.path.normpath(os.path.join(self.root, target))
        return path if os.path.isdir(path) else None

    def installed(self, path: str | None = None) -> dict[str, Dist]:
        where = path or self.current()
        return distributions([where]) if where else {}

    def stage(self, *, empty: bool = False) -> str:
        """A new staging directory: a hard-link copy of the live set, or empty."""
        self.clean()
        path = os.path.join(self.sets, f"{time.time_ns()}-{os.getpid()}.staging")
        live = None if empty else self.current()
        if live is None:
            os.makedirs(path, mode=0o700)
        else:
            try:
                shutil.copytree(live, path, symlinks=True, copy_function=os.link)
            except (OSError, shutil.Error):  # no hard links here: copy
                shutil.rmtree(path, ignore_errors=True)
                shutil.copytree(live, path, symlinks=True)
        return path

    def commit(self, staging: str) -> str:
        """Make ``staging`` the live set (one atomic rename of the link)."""
        final = staging.removesuffix(".staging")
        os.rename(staging, final)
        link = self.site + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        os.symlink(os.path.relpath(final, self.root), link)
        previous = self.current()
        os.replace(link, self.site)
        fsync_dir(self.root)
        self._prune(keep={final, *([previous] if previous else [])})
        return final

    def discard(self, staging: str) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def clean(self) -> None:
        """Remove what an install killed half-way left (its process is gone)."""
        if not os.path.isdir(self.sets):
            return
        for name in os.listdir(self.sets):
            if not name.endswith(".staging"):
                continue
            pid = name.removesuffix(".staging").rpartition("-")[2]
            if pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid)):
                continue
            shutil.rmtree(os.path.join(self.sets, name), ignore_errors=True)

    def _prune(self, keep: set[str]) -> None:
        for name in os.listdir(self.sets):
            path = os.path.join(self.sets, name)
            if path not in keep and not name.endswith(".staging"):
                shutil.rmtree(path, ignore_errors=True)


class Installer:
    """Runs uv or pip into a target directory."""

    def __init__(
        self,
        choice: str = "auto",
        *,
        timeout: float = 600.0,
        python: str = sys.executable,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.python = python
        self.timeout = timeout
        self.environ = dict(os.environ if environ is None else environ)
        self.uv = find_uv() if choice in ("auto", "uv") else None
        if choice == "uv" and self.uv is None:
            raise HoodyError("packages-installer is 'uv' but no uv binary was found")
        self._uv_env: dict[str, str] | None = None

    @property
    def name(self) -> str:
        return "uv" if self.uv else "pip"

    def _env(self) -> dict[str, str]:
        if not self.uv:
            return self.environ
        if self._uv_env is None:  # pip's configuration, read once
            self._uv_env = uv_environment(pip_options(self.python), self.environ)
        return self._uv_env

    def install_args(
        self,
        target: str,
        requirements: Iterable[str],
        *,
        kit: Mapping[str, Dist],
        files: str,
        requirement_file: str | None = None,
        reinstall: bool = False,
    ) -> list[str]:
        reqs = list(requirements)
        os.makedirs(files, mode=0o700, exist_ok=True)
        if self.uv:
            excludes = os.path.join(files, "kit-excludes.txt")
            _write_lines(excludes, sorted(d.name for d in kit.values()))
            args = [self.uv, "pip", "install", "--python", self.python, "--target", target]
            args += ["--excludes", excludes, "--no-progress"]
            if reinstall:
                args += ["--reinstall-package", *[_name(r) for r in reqs]]
        else:
            constraints = os.path.join(files, "kit-constraints.txt")
            _write_lines(constraints, sorted(f"{d.name}=={d.version}" for d in kit.values()))
            args = [self.python, "-m", "pip", "install", "--target", target, "--upgrade"]
            args += ["--no-input", "--disable-pip-version-check", "--constraint", constraints]
            if reinstall:
                args.append("--force-reinstall")
        if requirement_file:
            args += ["-r", requirement_file]
        return [*args, *reqs]  # specs never start with "-" (specs.parse refuses them)

    def compile_args(self, pins_file: str) -> list[str] | None:
        """``uv pip compile`` with hashes for exact pins (uv only)."""
        if not self.uv:
            return None
        return [
            self.uv,
            "pip",
            "compile",
            "--python",
            self.python,
            "--generate-hashes",
            "--no-deps",
            "--no-header",
            "--no-annotate",
            "--quiet",
            pins_file,
        ]

    async def run(self, args: list[str], on_line: OnLine | None = None) -> Outcome:
        """Run to the end (or the timeout), every output line to ``on_line``."""
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self._env(),
            start_new_session=True,
        )
        lines: list[str] = []
        assert proc.stdout is not None

        async def pump() -> None:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                lines.append(line)
                del lines[:-_KEEP_LINES]
                if on_line is not None and line:
                    on_line(line)

        try:
            await asyncio.wait_for(asyncio.gather(pump(), proc.wait()), self.timeout)
        except TimeoutError:
            lines.append(
                f"error: the installer took longer than {self.timeout:g} s and was stopped"
            )
            return Outcome(False, lines)
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                await proc.wait()
        return Outcome(proc.returncode == 0, lines)

    async def output(self, args: list[str]) -> tuple[bool, str]:
        """Run and return (ok, stdout) — for ``compile``."""
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=self._env(),
            start_new_session=True,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
            return False, ""
        return proc.returncode == 0, out.decode(errors="replace")


def _name(requirement: str) -> str:
    return Requirement(requirement).name


def _write_lines(path: str, lines: Iterable[str]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("".join(f"{line}\n" for line in lines))
