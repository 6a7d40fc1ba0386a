"""Scripts and packages across nodes, in Redis (``sync.py`` says what).

Keys under ``hoodyexec:sync:``: ``seq`` (the scripts' counter), ``rows`` (a
hash ``<subdomain>\\0<execId>\\0<path>`` → digest, ``""`` once deleted),
``log`` (a sorted set of the same members scored by their last sequence
number: ``since`` is one range), ``live`` (the files that exist, all score 0,
so a folder is one ``ZRANGEBYLEX``), ``blob:<digest>`` (contents) with their
reference counts in ``refs``, ``packages`` and ``packages:version``, and
``nodes`` (a hash of each node's progress). A publication is one Lua script,
so it is atomic and its sequence numbers are in the order it ran; the notices
are ``PUBLISH`` on ``hoodyexec_sync``.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import redis

from .redisdb import _LOST, Database, _unavailable, client
from .sync import (
    BATCH,
    CHANNEL,
    Change,
    Listener,
    Packages,
    Progress,
    Publication,
    Replica,
    lock_digest,
)

# KEYS: seq, rows, log, live, refs. ARGV: channel, blob prefix, scope prefix,
# number of files, (path, digest, content) per file, then the roots.
_PUBLISH_LUA = """
local seqk, rows, logk, live, refs = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local channel, blob, scope = ARGV[1], ARGV[2], ARGV[3]
local n = tonumber(ARGV[4])
local last = 0
local seen = {}
local function put(f, d)
  local old = redis.call('HGET', rows, f)
  last = redis.call('INCR', seqk)
  redis.call('HSET', rows, f, d)
  redis.call('ZADD', logk, last, f)
  if d == '' then redis.call('ZREM', live, f) else
    redis.call('ZADD', live, 0, f)
    redis.call('HINCRBY', refs, d, 1)
  end
  if old and old ~= '' then
    if redis.call('HINCRBY', refs, old, -1) <= 0 then
      redis.call('HDEL', refs, old)
      redis.call('DEL', blob .. old)
    end
  end
end
local i = 5
for k = 1, n do
  local f, d, c = scope .. ARGV[i], ARGV[i + 1], ARGV[i + 2]
  i = i + 3
  seen[f] = true
  if redis.call('HGET', rows, f) ~= d then
    redis.call('SET', blob .. d, c)
    put(f, d)
  end
end
for k = i, #ARGV do
  local r = ARGV[k]
  local found
  if r == '' then
    found = redis.call('ZRANGEBYLEX', live, '[' .. scope, '(' .. scope .. '\\255')
  else
    found = redis.call('ZRANGEBYLEX', live, '[' .. scope .. r .. '/', '(' .. scope .. r .. '/\\255')
    if redis.call('ZSCORE', live, scope .. r) then found[#found + 1] = scope .. r end
  end
  for _, f in ipairs(found) do
    if not seen[f] then
      seen[f] = true
      put(f, '')
    end
  end
end
if last > 0 then
  redis.call('PUBLISH', channel, 's ' .. last)
  return last
end
return tonumber(redis.call('GET', seqk) or '0')
"""

# KEYS: rows, log. ARGV: blob prefix, seq, limit. Answers member, seq, digest,
# content (false for a deletion) per change.
_SINCE_LUA = """
local fs = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[2], '+inf', 'WITHSCORES',
  'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for i = 1, #fs, 2 do
  local d = redis.call('HGET', KEYS[1], fs[i]) or ''
  out[#out + 1] = fs[i]
  out[#out + 1] = fs[i + 1]
  out[#out + 1] = d
  if d ~= '' then out[#out + 1] = redis.call('GET', ARGV[1] .. d) or '' else out[#out + 1] = '' end
end
return out
"""

# KEYS: packages, packages:version. ARGV: channel, the record (JSON).
_PACKAGES_LUA = """
local v = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], v .. '\\n' .. ARGV[2])
redis.call('PUBLISH', ARGV[1], 'p ' .. v)
return v
"""

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class RedisReplica(Replica):
    def __init__(self, db: Database) -> None:
        self.db = db
        self._scripts: dict[str, Any] = {}

    def _key(self, *parts: str) -> bytes:
        return self.db.key("sync", *parts)

    def _script(self, name: str, text: str) -> Any:
        conn = self.db.client
        held = self._scripts.get(name)
        if held is None or held[0] is not conn:
            held = (conn, conn.register_script(text))
            self._scripts[name] = held
        return held[1]

    def publish(self, node: str, pub: Publication) -> int:
        scope = f"{pub.subdomain}\0{pub.exec_id}\0"
        args: list[Any] = [channel(self.db), self._key("blob:"), scope, len(pub.files)]
        for item in pub.files:
            args += [item.path, item.digest, item.content]
        args += pub.roots
        keys = [self._key(k) for k in ("seq", "rows", "log", "live", "refs")]
        script = self._script("publish", _PUBLISH_LUA)
        return int(self.db.run(lambda conn: script(keys=keys, args=args)))

    def since(self, seq: int, limit: int = BATCH) -> list[Change]:
        keys = [self._key("rows"), self._key("log")]
        script = self._script("since", _SINCE_LUA)
        flat = self.db.run(lambda conn: script(keys=keys, args=[self._key("blob:"), seq, limit]))
        out = []
        for i in range(0, len(flat), 4):
            sub, eid, path = flat[i].decode().split("\0", 2)
            dig = flat[i + 2].decode() or None
            content = bytes(flat[i + 3]) if dig else None
            out.append(Change(int(float(flat[i + 1])), sub, eid, path, dig, content))
        return out

    def head(self) -> int:
        value = self.db.run(lambda conn: conn.get(self._key("seq")))
        return int(value or 0)

    def mark(self, node: str, *, scripts: int | None = None, lock: str | None = None) -> None:
        key = self._key("nodes")

        def go(conn: redis.Redis) -> None:
            raw = conn.hget(key, node)
            held = _decode(raw) if raw else {"scripts": 0, "lock": ""}
            if scripts is not None:
                held["scripts"] = scripts
            if lock is not None:
                held["lock"] = lock
            held["at"] = time.time()
            pipe = conn.pipeline(transaction=False)
            pipe.hset(key, node, _encode(held))
            if scripts is not None:
                pipe.publish(channel(self.db), f"a {node} {scripts}")
            pipe.execute()

        self.db.run(go)

    def progress(self) -> dict[str, Progress]:
        raw: Any = self.db.run(lambda conn: conn.hgetall(self._key("nodes")))
        out = {}
        for name, value in raw.items():
            held = _decode(value)
            node = name.decode()
            out[node] = Progress(node, int(held["scripts"]), held["lock"], float(held["at"]))
        return out

    def put_packages(self, node: str, project: str | None, lock: str | None) -> int:
        record = _encode(
            {"project": project, "lock": lock, "digest": lock_digest(lock), "node": node}
        )
        keys = [self._key("packages"), self._key("packages", "version")]
        script = self._script("packages", _PACKAGES_LUA)
        return int(self.db.run(lambda conn: script(keys=keys, args=[channel(self.db), record])))

    def packages(self) -> Packages | None:
        raw: Any = self.db.run(lambda conn: conn.get(self._key("packages")))
        if not raw:
            return None
        version, _, body = raw.partition(b"\n")
        held = _decode(body)
        return Packages(int(version), held["project"], held["lock"], held["digest"], held["node"])

    def listen(self) -> Listener:
        return RedisListener(self.db.url, channel(self.db))

    def close(self) -> None:
        self.db.close()


def channel(db: Database) -> str:
    """Pub/sub ignores database numbers: the channel names the database."""
    number = db.client.connection_pool.connection_kwargs.get("db", 0)
    return f"{CHANNEL}:{number}"


class RedisListener(Listener):
    def __init__(self, url: str, name: str) -> None:
        self.conn = client(url)
        self.pubsub = self.conn.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            self.pubsub.subscribe(name)
        except _LOST as exc:
            self.close()
            raise _unavailable(exc) from None

    def wait(self, timeout: float) -> list[str]:
        out: list[str] = []
        try:
            message = self.pubsub.get_message(timeout=timeout)
            while message is not None:
                if message.get("type") == "message":
                    out.append(message["data"].decode())
                message = self.pubsub.get_message(timeout=0)
        except (*_LOST, redis.RedisError) as exc:
            raise _unavailable(exc) from None
        return out

    def close(self) -> None:
        try:
            self.pubsub.close()
            self.conn.close()
        except redis.RedisError:
            pass
