"""Home layout and the state database, in-process; prepare removes the temp files
of writes killed midway."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from hoodyexec import files
from hoodyexec.home import Home
from hoodyexec.storage import sqlite as db


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_prepare_creates_private_layout_and_seeds_once(tmp_path):
    home = Home(str(tmp_path / "h"))
    assert home.prepare() is True
    for d in (home.root, home.scripts, home.logs, home.run, home.metrics):
        assert mode(d) == 0o700
    seeded = sorted(os.listdir(home.instance_dir()))
    assert {"hello.py", "echo.py"} <= set(seeded)
    for name in seeded:
        assert mode(os.path.join(home.instance_dir(), name)) == 0o600
    assert not any(n.endswith(".tmp") for n in seeded)
    # second start: nothing re-seeded, user edits kept
    os.unlink(os.path.join(home.instance_dir(), "hello.py"))
    assert home.prepare() is False
    assert "hello.py" not in os.listdir(home.instance_dir())


def test_prepare_tightens_loose_permissions(tmp_path):
    home = Home(str(tmp_path / "h"))
    home.prepare()
    os.chmod(home.logs, 0o777)
    home.prepare()
    assert mode(home.logs) == 0o700


def test_migrate_is_idempotent_and_concurrent_safe(tmp_path):
    path = str(tmp_path / "s.db")
    errors = []

    def worker():
        try:
            conn = db.connect(path)
            assert db.migrate(conn) == db.SCHEMA_VERSION
            conn.close()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    conn = db.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"meta", "shared_paths", "shared_docs"} <= tables
    assert mode(path) == 0o600


def test_corrupt_database_is_a_clear_error(tmp_path):
    path = tmp_path / "s.db"
    path.write_bytes(b"garbage" * 200)
    with pytest.raises(db.StateDBError, match="file is not a database"):
        db.connect(str(path))


def _killed(*args: object) -> None:
    raise KeyboardInterrupt


def test_prepare_removes_stale_temp_files_only(tmp_path, monkeypatch):
    home = Home(str(tmp_path / "home"))
    home.prepare()
    inst = home.instance_dir()
    os.makedirs(os.path.join(inst, "sub"))
    with monkeypatch.context() as m:  # a write killed between the temp file and the rename
        m.setattr(os, "replace", _killed)
        m.setattr(os, "unlink", lambda path: None)
        for folder in (inst, os.path.join(inst, "sub")):
            with pytest.raises(KeyboardInterrupt):
                files.write_atomic(os.path.join(folder, "x.py"), b"return 1\n")
    made = [
        os.path.join(d, n) for d, _, names in os.walk(inst) for n in names if n.endswith(".tmp")
    ]
    assert len(made) == 2
    keep = ["notes.tmp", ".keep.tmp", "x.py.tmp", ".x.py.tmp", "real.py"]
    for name in keep:
        open(os.path.join(inst, name), "w").close()
    assert home.prepare() is False
    assert not any(os.path.exists(p) for p in made)
    assert all(os.path.exists(os.path.join(inst, n)) for n in keep)
