"""The script-call hot path (http/sink.py)."""

from __future__ import annotations


def test_unstarted_stream_gives_its_concurrency_slot_back(tmp_path):
    import asyncio
    import gc

    import falcon.asgi

    from ..scriptenv import ScriptEnv

    env = ScriptEnv(tmp_path)
    env.write("gen.py", "for i in range(3):\n    yield i\n")
    from hoodyexec.workers.request import load_app

    app = load_app(env.settings, env.home, link=False)
    sink = next(s for _, s, _ in app._sinks if hasattr(s, "inflight"))

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def main():
        req = falcon.asgi.Request(
            {
                "type": "http",
                "method": "GET",
                "path": "/gen",
                "headers": [(b"host", b"x")],
                "query_string": b"",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "scheme": "http",
                "root_path": "",
                "client": ("127.0.0.1", 1),
                "server": ("127.0.0.1", 2),
            },
            receive,
        )
        resp = falcon.asgi.Response()
        await sink(req, resp)
        assert sink.inflight == 1 and resp.stream is not None
        resp.stream = None  # the client went away: nobody ever iterates it
        del resp
        gc.collect()
        assert sink.inflight == 0

    asyncio.run(main())
