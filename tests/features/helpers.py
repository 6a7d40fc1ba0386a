"""What the management API tests share (the ``api`` client fixture is in
tests/conftest.py): the management app on its own, endpoint prefixes and small
helpers."""

from __future__ import annotations

import os

import falcon.testing

from hoodyexec.http.management import create_management

B = S = "/api/v1/exec/scripts/"
M = "/api/v1/exec/magic-comments/"
R = "/api/v1/exec/route/"
T = "/api/v1/exec/templates/"
V = "/api/v1/exec/validate/"


async def two_workers() -> list[int]:
    return [11, 12]


def management(token=None):
    return create_management(
        started=0.0, master_pid=1, control_pid=2, worker_pids=two_workers, token=token
    )


def _write(api, path: str, content: str = "return 1\n") -> None:
    r = api.simulate_post(B + "write", json={"path": path, "content": content, "validate": False})
    assert r.status_code in (200, 201), r.json


def _snapshot(top: str) -> list[str]:
    """Every file and folder under ``top`` (relative), to show nothing was left behind."""
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, name), top))
    return sorted(out)


def _no_machine_path(api, r: falcon.testing.Result) -> None:
    assert os.path.dirname(api.home.root) not in r.text, r.text  # the test's temp folder
