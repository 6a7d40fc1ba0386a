"""Mount declared endpoints (``http/spec.py``) on the management app.

The responder made for each endpoint decodes the query into its Struct (lax:
query strings are text) and the JSON body into its Struct (strict), every
problem a 400 naming the field, then calls the feature's handler with
``(req, resp, body, query, **path_params)``. Endpoints that share a path (one
per method) share one falcon resource.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import falcon.asgi

from hoodyexec.errors import BadRequest
from hoodyexec.http.spec import Endpoint, convert, decode_body

Handler = Callable[..., Awaitable[None]]
# Every app here is falcon's ASGI App with falcon's own Request and Response.
FalconApp = falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response]


def responder(ep: Endpoint, handler: Handler) -> Handler:
    query_type, body_type = ep.query, ep.body

    async def respond(req: falcon.asgi.Request, resp: falcon.asgi.Response, **params: Any) -> None:
        query = convert(req.params, query_type, "query", strict=False) if query_type else None
        body = None
        if body_type is not None:
            raw = await req.stream.read()
            if raw:
                body = decode_body(raw, body_type)
            elif ep.body_required:
                raise BadRequest("a JSON body is required")
            else:
                body = body_type()
        await handler(req, resp, body, query, **params)

    return respond


class _Resource:
    """One falcon resource per path; ``on_<method>`` set per declared endpoint."""


def mount(app: FalconApp, routes: Sequence[tuple[Endpoint, Handler]]) -> None:
    resources: dict[str, _Resource] = {}
    for ep, handler in routes:
        resource = resources.setdefault(ep.path, _Resource())
        setattr(resource, f"on_{ep.method.lower()}", responder(ep, handler))
    for path, resource in resources.items():  # falcon reads the methods when a route is added
        app.add_route(path, resource)
