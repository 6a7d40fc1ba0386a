"""The baselines: plain Falcon ASGI apps, each served by its own gunicorn with
the same settings as the kit. One resource per benchmark target.

* ``app``: the way a Falcon user would write it first (``resp.media``, which
  goes through Falcon's media handler and the standard library's ``json``);
* ``lean``: the fastest idiomatic Falcon: the body encoded on each request by
  a msgspec encoder made once at import (as the kit itself does) and set as
  ``resp.data`` with its content type; no media handler.
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
