"""``GET /openapi.json`` and ``/openapi.yaml``."""

from __future__ import annotations

import falcon.asgi
import msgspec

from hoodyexec.http.context import Context


class OpenAPIDoc:
    """``GET /openapi.json`` and ``/openapi.yaml``: the kit's own API description."""

    def __init__(self) -> None:
        self._json: bytes | None = None
        self._yaml: bytes | None = None

    def _build(self) -> None:
        import yaml

        from .service import document

        doc = document()
        self._json = msgspec.json.encode(doc)
        self._yaml = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()

    async def on_get_json(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if self._json is None:
            self._build()
        resp.content_type = "application/json"
        resp.data = self._json

    async def on_get_yaml(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if self._yaml is None:
            self._build()
        resp.content_type = "application/yaml"
        resp.data = self._yaml


def register(app: falcon.asgi.App, ctx: Context) -> None:
    doc = OpenAPIDoc()
    app.add_route("/openapi.json", doc, suffix="json")
    app.add_route("/openapi.yaml", doc, suffix="yaml")
