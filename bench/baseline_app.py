"""The baselines: plain Falcon ASGI apps and a raw ASGI app, each served by
its own gunicorn with the same settings as the kit. One resource per target.

* ``app``: the way a Falcon user would write it first (``resp.media``, which
  goes through Falcon's media handler and the standard library's ``json``);
* ``lean``: the fastest idiomatic Falcon: the body encoded on each request by
  a msgspec encoder made once at import (as the kit itself does) and set as
  ``resp.data`` with its content type; no media handler. It also has the
  real-work scenarios (typed POST, 100 KB JSON, 1 MB stream) written that way;
* ``raw``: no framework, the ceiling of this stack (gunicorn's ``asgi`` worker).
"""

import falcon
import falcon.asgi
import msgspec


class Hello:
    async def on_get(self, req, resp):
        resp.media = {"hi": "world"}


app = falcon.asgi.App()
app.add_route("/triv", Hello())
app.add_route("/atriv", Hello())


_encode = msgspec.json.Encoder().encode


class LeanHello:
    async def on_get(self, req, resp):
        resp.data = _encode({"hi": "world"})
        resp.content_type = "application/json"


lean = falcon.asgi.App()
lean.add_route("/triv", LeanHello())
lean.add_route("/atriv", LeanHello())


# -- the real-work scenarios, written the lean way --------------------------------
class Order(msgspec.Struct):
    item: str
    qty: int


_order = msgspec.json.Decoder(Order).decode
BIG = {"items": [{"id": i, "name": f"item {i}", "price": i * 1.5} for i in range(2200)]}


class LeanTyped:
    async def on_post(self, req, resp):
        try:
            order = _order(await req.stream.read())
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise falcon.HTTPBadRequest(description=str(exc)) from None
        resp.data = _encode({"item": order.item, "total": order.qty * 2})
        resp.content_type = "application/json"


class LeanBig:
    async def on_get(self, req, resp):
        resp.data = _encode(BIG)
        resp.content_type = "application/json"


class LeanStream:
    async def on_get(self, req, resp):
        async def chunks():
            chunk = b"x" * 65536
            for _ in range(16):
                yield chunk

        resp.stream = chunks()
        resp.content_type = "application/octet-stream"


lean.add_route("/typed", LeanTyped())
lean.add_route("/big", LeanBig())
lean.add_route("/stream", LeanStream())


# -- the ceiling: a raw ASGI app, no framework --------------------------------------
_HEAD = [(b"content-type", b"application/json")]


async def raw(scope, receive, send):
    """What this stack can do at most: gunicorn's ``asgi`` worker calling an
    app that answers every HTTP request with the same JSON, encoded per call."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    body = _encode({"hi": "world"})
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*_HEAD, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
