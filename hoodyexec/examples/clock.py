# @description Server-sent events: five ticks, one per 200 ms
import asyncio
import datetime


async def handler(res):
    async def ticks():
        for i in range(5):
            yield {"tick": i, "at": datetime.datetime.now(datetime.UTC).isoformat()}
            await asyncio.sleep(0.2)

    return res.sse(ticks())
