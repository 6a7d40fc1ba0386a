"""Request worker: gunicorn's native ``asgi`` worker running the gateway app.

``load_app`` runs in the worker after fork (gunicorn calls the application's
``load`` from ``init_process``). Anything that fails here is a boot failure: the
worker exits with gunicorn's boot-error code and the master stops instead of
fork-looping.
"""

from __future__ import annotations

from hoodyexec import db
from hoodyexec.config import Settings
from hoodyexec.home import Home
from hoodyexec.http.gateway import create_gateway


def load_app(settings: Settings, home: Home, age: int = 0):  # noqa: ANN201 - an ASGI app
    # Scripts will read shared state from here; an unusable file is a boot error.
    db.connect(home.db).close()
    return create_gateway(home.control_socket, age=age)
