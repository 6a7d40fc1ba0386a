"""The management token check (http/auth.py) as the management app applies it."""

from __future__ import annotations

import falcon.testing

from ..features.helpers import management


def test_token_guards_everything_but_health():
    client = falcon.testing.TestClient(management(token="tok"))
    assert client.simulate_get("/api/v1/exec/health").status_code == 200
    assert client.simulate_get("/api/v1/exec/list").status_code == 401
    assert (
        client.simulate_get("/api/v1/exec/list", headers={"Authorization": "Basic tok"}).status_code
        == 401
    )
    assert (
        client.simulate_get(
            "/api/v1/exec/list", headers={"Authorization": "Bearer tokx"}
        ).status_code
        == 401
    )
    assert (
        client.simulate_get(
            "/api/v1/exec/list", headers={"Authorization": "Bearer tok"}
        ).status_code
        == 404  # past the token; this app (no home) serves no list
    )
