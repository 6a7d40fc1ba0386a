from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest

from hoodyexec.home import Home

from .kit import Kit
from .scriptenv import ScriptEnv, management_app
from .services import (  # noqa: F401 - fixtures: real PostgreSQL and Redis
    pg_url,
    postgres_server,
    redis_server,
    redis_url,
    shared_url,
    state_url,
)


@pytest.fixture
def make_kit(tmp_path: Path) -> Iterator:
    kits: list[Kit] = []

    def make(**kw) -> Kit:
        kit = Kit(tmp_path / f"home{len(kits)}", **kw)
        kits.append(kit)
        return kit

    yield make
    for kit in kits:
        kit.stop()


@pytest.fixture
def kit(make_kit) -> Kit:
    return make_kit().start()


@pytest.fixture
def env(tmp_path) -> ScriptEnv:
    """The request-worker app in-process over a home in ``tmp_path``."""
    return ScriptEnv(tmp_path)


@pytest.fixture
def api(request, tmp_path):
    """The management app through falcon's test client, over a freshly prepared
    home (the examples seeded); in a test that also runs scripts (``env``), over
    the same home as env's request worker, as it is."""
    if "env" in request.fixturenames:
        home = request.getfixturevalue("env").home
    else:
        home = Home(str(tmp_path / "home"))
        home.prepare()
    client = falcon.testing.TestClient(management_app(home))
    client.home = home
    client.root = home.instance_dir()
    return client
