"""``GET /openapi.json`` and ``/openapi.yaml``: the kit's own API description,
generated once (on first request) from every endpoint the features declared."""

from __future__ import annotations

from collections.abc import Sequence

import falcon.asgi
import msgspec

from hoodyexec.http.context import Context
from hoodyexec.http.endpoint import FalconApp
from hoodyexec.http.spec import Endpoint

JSON = Endpoint("GET", "/openapi.json", "Get OpenAPI Specification (JSON)", "system", public=True)
YAML = Endpoint("GET", "/openapi.yaml", "Get OpenAPI Specification (YAML)", "system", public=True)


class OpenAPIDoc:
    def __init__(self, routes: Sequence[tuple[Endpoint, object]]) -> None:
        self.routes = routes  # complete once every feature has registered
        self._json: bytes | None = None
        self._yaml: bytes | None = None

    def _build(self) -> None:
        import yaml

        from .service import document

        doc = document([ep for ep, _ in self.routes])
        self._json = msgspec.json.encode(doc)
        self._yaml = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()

    async def json(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, __: None
    ) -> None:
        if self._json is None:
            self._build()
        resp.content_type = "application/json"
        resp.data = self._json

    async def yaml(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, __: None
    ) -> None:
        if self._yaml is None:
            self._build()
        resp.content_type = "application/yaml"
        resp.data = self._yaml


def register(app: FalconApp, ctx: Context) -> None:
    doc = OpenAPIDoc(ctx.routes)
    ctx.route(JSON, doc.json)
    ctx.route(YAML, doc.yaml)
