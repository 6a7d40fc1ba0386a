"""The baseline: a plain Falcon ASGI app, served by gunicorn with the same
settings as the kit. One resource per benchmark target, written the way a
Falcon user would write it."""

import falcon
import falcon.asgi


class Hello:
    async def on_get(self, req, resp):
        resp.media = {"hi": "world"}


app = falcon.asgi.App()
app.add_route("/triv", Hello())
app.add_route("/atriv", Hello())
