"""System feature: health."""

from __future__ import annotations

import falcon.testing

from hoodyexec import __version__

from .helpers import management


def test_health_shape():
    r = falcon.testing.TestClient(management()).simulate_get("/api/v1/exec/health")
    assert r.status_code == 200
    body = r.json
    assert body["status"] == "ok" and body["version"] == __version__
    assert body["master"] == 1 and body["control"] == 2 and body["workers"] == [11, 12]
    assert body["uptime"] > 0
