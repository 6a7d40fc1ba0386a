"""Real PostgreSQL and Redis servers for the state-backend tests.

Each is started once per test session in a temporary folder on a free port
(``postgres_server``, ``redis_server``) and stopped at its end; every test gets
a fresh database (``CREATE DATABASE``) or Redis DB number (``state_url``).
PostgreSQL comes from Debian's ``postgresql`` package, Redis from
``redis-server``; a missing one is installed with apt-get, and the tests that
need it are skipped, saying so, only when that is impossible. As root,
PostgreSQL runs as the ``postgres`` user (initdb refuses root).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .kit import free_port

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def apt_install(package: str) -> bool:
    if not shutil.which("apt-get") or os.geteuid() != 0:
        return False
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]
    for step in (install, ["apt-get", "update", "-qq"], install):
        done = subprocess.run(step, capture_output=True, timeout=900, env=APT_ENV)
        if step is install and done.returncode == 0:
            return True
    return False


def postgres_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return os.path.dirname(found[-1]) if found else None


def _version(path: str) -> float:
    try:
        return float(path.split("/")[4])
    except (IndexError, ValueError):
        return 0.0


class Postgres:
    """A throwaway PostgreSQL cluster (``stop``/``start`` to test an outage)."""

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="hoodyexec-pg-"))
        self.data = self.dir / "data"
        self.user = "postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name
        self._names = itertools.count(1)

    def _run(self, *cmd: str, timeout: float = 60) -> None:
        done = subprocess.run([*self._as, *cmd], capture_output=True, timeout=timeout, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {done.stdout!r} {done.stderr!r}")

    def init(self) -> None:
        self._run(
            f"{self.bindir}/initdb", "-D", str(self.data), "-U", self.user,
            "--auth=trust", "-E", "UTF8", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run(
            f"{self.bindir}/pg_ctl", "-D", str(self.data), "-o", options,
            "-l", str(self.dir / "server.log"), "-w", "-t", "30", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = f"t{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        try:
            with psycopg.connect(self.url(), autocommit=True, connect_timeout=3) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        except psycopg.Error:
            pass  # the server was stopped by the test: the folder goes at the end

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """A throwaway redis-server without persistence (``stop``/``start``)."""

    DATABASES = 512

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="hoodyexec-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self._numbers = itertools.count(1)

    def start(self) -> None:
        log = open(self.dir / "server.log", "ab")
        self.proc = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                "--databases", str(self.DATABASES),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        import redis

        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.5).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None

    def url(self, number: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{number}"

    def create_database(self) -> str:
        import redis

        number = next(self._numbers) % self.DATABASES
        redis.Redis(port=self.port, db=number).flushdb()
        return self.url(number)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    bindir = postgres_bin()
    if bindir is None and apt_install("postgresql"):
        bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL (Debian's postgresql) is not installed and cannot be installed")
    server = Postgres(bindir)
    try:
        server.init()
        server.start()
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        server.destroy()
        pytest.fail(f"could not start a test PostgreSQL: {exc}")
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    binary = shutil.which("redis-server")
    if binary is None and apt_install("redis-server"):
        binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server (Debian's redis-server) is not installed and cannot be installed")
    server = Redis(binary)
    try:
        server.start()
    except RuntimeError as exc:
        server.destroy()
        pytest.fail(f"could not start a test redis-server: {exc}")
    yield server
    server.destroy()


@pytest.fixture
def pg_url(postgres_server: Postgres) -> Iterator[str]:
    """A fresh PostgreSQL database for this test."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture
def redis_url(redis_server: Redis) -> str:
    """A fresh (flushed) Redis DB number for this test."""
    return redis_server.create_database()


BACKENDS = ["sqlite", "postgresql", "redis"]


@pytest.fixture(params=BACKENDS)
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each of the three backends in turn, fresh: a ``state-url``."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'state.db'}"
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture(params=BACKENDS[1:])
def shared_url(request: pytest.FixtureRequest) -> str:
    """Each shared backend (PostgreSQL, Redis) in turn, fresh."""
    name = "pg_url" if request.param == "postgresql" else "redis_url"
    return str(request.getfixturevalue(name))
