"""The baseline: a plain Falcon ASGI app doing the same work as the kit's
answer under test, served by gunicorn with the same settings."""

import falcon
import falcon.asgi
import msgspec

_encode = msgspec.json.Encoder().encode


class NotFoundSink:
    async def __call__(self, req, resp, **_):
        resp.status = 404
        resp.content_type = falcon.MEDIA_JSON
        resp.data = _encode({"error": f"No script at {req.path}", "path": req.path})


app = falcon.asgi.App()
app.add_sink(NotFoundSink(), prefix="/")
