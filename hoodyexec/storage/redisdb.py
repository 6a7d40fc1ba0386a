"""The Redis backend: shared state, schedule claims and history, nodes.

For a cluster of kit nodes sharing one Redis (``state-url = redis://...``).
Plain Redis is enough (no RedisJSON, no modules): Lua scripts and WATCH/MULTI.

Shared state is stored by path (``layout.py``): per document a sorted set of
its row paths, all with score 0, so that ``ZRANGEBYLEX`` reads a subtree as
one range (members compare bytewise), and a hash path → value. A read is one
Lua script (the rows of a range, and of the path's ancestors, atomically). A
write WATCHes the document's two keys, reads what it needs, then applies its
changes in one MULTI/EXEC; if another client changed the document meanwhile,
EXEC fails and the write is run again on the new rows (so concurrent ``incr``
calls each get a distinct value, on any number of nodes). Reads inside a write
see the write's own changes (``_Pending``).

Schedules: a claim is ``SET NX`` of ``claim:<script>:<tick>`` (with the claim
as JSON), so one node in the cluster claims a tick; a sorted set per script
holds its claimed ticks, a set the running ones. The history is a list,
newest first, trimmed to ``HISTORY_KEEP``. Nodes: a sorted set id → last beat,
a hash id → the node.

A failed connection is a ``StateUnavailable`` (503); redis-py reconnects on
the next call.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar, cast

import msgspec
import redis
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.retry import Retry

from .base import Rows, SharedStore
from .cluster import (
    HISTORY_KEEP,
    LOST_NOTE,
    Claim,
    ClaimStore,
    HistoryStore,
    NeedsSnapshot,
    Node,
    NodeRegistry,
    OneRead,
    Owners,
    StateUnavailable,
    matches,
)
from .layout import Row
from .sqlite import BUSY_TIMEOUT, StateBusy

T = TypeVar("T")
PREFIX = b"hoodyexec:"
CONNECT_TIMEOUT = 3.0
SOCKET_TIMEOUT = 5.0

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_LOST = (redis.ConnectionError, redis.TimeoutError)

# KEYS: paths (zset), values (hash). ARGV: lo, hi, limit, ancestors...
# Answers path1, value1, path2, value2, ...: the ancestors found, then the range.
_LOCATE_LUA = """
local out = {}
for i = 4, #ARGV do
  local v = redis.call('HGET', KEYS[2], ARGV[i])
  if v then out[#out + 1] = ARGV[i]; out[#out + 1] = v end
end
local n = tonumber(ARGV[3])
local paths
if n >= 0 then
  paths = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. ARGV[1], '(' .. ARGV[2], 'LIMIT', 0, n)
else
  paths = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. ARGV[1], '(' .. ARGV[2])
end
for first = 1, #paths, 500 do
  local last = math.min(first + 499, #paths)
  local values = redis.call('HMGET', KEYS[2], unpack(paths, first, last))
  for i = first, last do
    out[#out + 1] = paths[i]; out[#out + 1] = values[i - first + 1]
  end
end
return out
"""

# KEYS: claim, the script's ticks (zset), running (set), scripts (set).
# ARGV: claim JSON, tick, running member, "1" when running, script.
_CLAIM_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[2])
  if ARGV[4] == '1' then redis.call('SADD', KEYS[3], ARGV[3]) end
  redis.call('SADD', KEYS[4], ARGV[5])
  return 1
end
return 0
"""

# KEYS: claim, running (set). ARGV: the claim as read, the claim as changed, member.
_SWAP_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('SREM', KEYS[2], ARGV[3])
  return 1
end
return 0
"""

# KEYS: schedules (hash). ARGV: script, expression, now. Answers registered_at.
_REGISTER_LUA = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held then
  local sep = string.find(held, '\\n', 1, true)
  if string.sub(held, sep + 1) == ARGV[2] then return string.sub(held, 1, sep - 1) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. '\\n' .. ARGV[2])
return ARGV[3]
"""


def _no_script(**_: Any) -> Any:
    raise AssertionError("the Lua scripts are registered with the client")


def _unavailable(exc: BaseException) -> StateUnavailable:
    return StateUnavailable(f"Redis: {exc or type(exc).__name__}")


def client(url: str) -> redis.Redis:
    """A client for ``url`` (connections are opened on demand, per process)."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        retry=Retry(NoBackoff(), 1),  # once more on a fresh connection (a restarted server)
        decode_responses=False,
    )


def check(url: str) -> None:
    """At the kit's start: the server answers (or ``StateUnavailable`` saying why)."""
    conn = client(url)
    try:
        conn.ping()
    except redis.RedisError as exc:
        raise _unavailable(exc) from None
    finally:
        conn.close()


class Database:
    """One process's client (re-created in a forked child) and the Lua scripts."""

    def __init__(self, url: str, prefix: bytes = PREFIX) -> None:
        self.url = url
        self.prefix = prefix
        self._client: redis.Redis | None = None
        self._pid = 0
        self._lock = threading.Lock()
        # The Lua scripts, registered with the client (called with keys=, args=).
        self.locate: Callable[..., Any] = _no_script
        self.claim: Callable[..., Any] = _no_script
        self.swap: Callable[..., Any] = _no_script
        self.register: Callable[..., Any] = _no_script

    def key(self, *parts: str | bytes) -> bytes:
        return self.prefix + b":".join(p.encode() if isinstance(p, str) else p for p in parts)

    @property
    def client(self) -> redis.Redis:
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                conn = client(self.url)
                self.locate = conn.register_script(_LOCATE_LUA)
                self.claim = conn.register_script(_CLAIM_LUA)
                self.swap = conn.register_script(_SWAP_LUA)
                self.register = conn.register_script(_REGISTER_LUA)
                self._client, self._pid = conn, os.getpid()
            return self._client

    def run(self, fn: Callable[[redis.Redis], T]) -> T:
        try:
            return fn(self.client)
        except _LOST as exc:
            raise _unavailable(exc) from None

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.close()
            self._client = None


# -- shared state ---------------------------------------------------------------------


def _bytes(answer: Any) -> list[bytes]:
    """A list (or set) answer of the client, which answers bytes here."""
    return list(answer)


def _pairs(flat: list[bytes]) -> list[Row]:
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


class _Pending(Rows):
    """A write's view of one document: the rows in Redis (read as the write goes,
    under WATCH) with the write's own changes over them; ``flush`` queues the
    changes in the MULTI."""

    def __init__(self, locate: Callable[[list[bytes], bytes, bytes, int], list[Row]]) -> None:
        self._locate = locate
        self.changed: dict[bytes, bytes | None] = {}  # path → new value, None: removed
        self.touched = False

    def locate(self, ancestors: list[bytes], lo: bytes, hi: bytes, limit: int = -1) -> list[Row]:
        if not self.changed:
            return self._locate(ancestors, lo, hi, limit)
        found = dict(self._locate(ancestors, lo, hi, -1))
        wanted = set(ancestors)
        for path, value in self.changed.items():
            if path in wanted or lo <= path < hi:
                if value is None:
                    found.pop(path, None)
                else:
                    found[path] = value
        ancestral = [(p, v) for p, v in found.items() if p in wanted]
        ranged = sorted((p, v) for p, v in found.items() if p not in wanted)
        return ancestral + (ranged if limit < 0 else ranged[:limit])

    def put(self, rows: list[Row]) -> None:
        self.changed.update(rows)

    def erase(self, lo: bytes, hi: bytes) -> int:
        gone = self.locate([], lo, hi)
        for path, _ in gone:
            self.changed[path] = None
        return len(gone)

    def touch(self) -> None:
        self.touched = True

    def flush(self, pipe: Pipeline, paths: bytes, values: bytes, docs: bytes, key: str) -> None:
        removed = [p for p, v in self.changed.items() if v is None]
        kept = {p: v for p, v in self.changed.items() if v is not None}
        if removed:
            pipe.zrem(paths, *removed)
            pipe.hdel(values, *removed)
        if kept:
            pipe.zadd(paths, dict.fromkeys(kept, 0))
            pipe.hset(values, mapping=cast(dict[Any, Any], kept))
        pipe.sadd(docs, key)  # every write makes the document exist


class RedisStore(SharedStore):
    """Shared state in Redis (thread-safe: redis-py pools its connections)."""

    def __init__(self, db: Database, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.db = db
        self.busy_timeout = busy_timeout

    def close(self) -> None:
        self.db.close()

    def _keys(self, key: str) -> tuple[bytes, bytes]:
        return self.db.key("paths", key), self.db.key("values", key)

    def _fetch(
        self, key: str, conn: redis.Redis | Pipeline
    ) -> Callable[[list[bytes], bytes, bytes, int], list[Row]]:
        keys = self._keys(key)

        def fetch(ancestors: list[bytes], lo: bytes, hi: bytes, limit: int = -1) -> list[Row]:
            flat = self.db.locate(keys=list(keys), args=[lo, hi, limit, *ancestors], client=conn)
            return _pairs(flat)

        return fetch

    def _read(self, key: str, fn: Callable[[Rows], T]) -> T:
        def once(conn: redis.Redis) -> T:
            try:
                return fn(OneRead(self._fetch(key, conn)))
            except NeedsSnapshot:
                return self._transaction(key, fn, write=False)

        return self.db.run(once)

    def _write(self, key: str, fn: Callable[[Rows], T]) -> T:
        return self.db.run(lambda _: self._transaction(key, fn, write=True))

    def _transaction(self, key: str, fn: Callable[[Rows], T], write: bool) -> T:
        paths, values = self._keys(key)
        deadline = time.monotonic() + self.busy_timeout
        attempt = 0
        while True:
            with self.db.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(paths, values)  # type: ignore[no-untyped-call]
                    rows = _Pending(self._fetch(key, pipe))
                    result = fn(rows)
                    pipe.multi()
                    if write:
                        rows.flush(pipe, paths, values, self.db.key("docs"), key)
                    pipe.execute()
                    return result
                except redis.WatchError:
                    attempt += 1
                    if time.monotonic() > deadline:
                        raise StateBusy(
                            f"shared state is busy: a write lost the race {attempt} times "
                            f"in {self.busy_timeout:g} s"
                        ) from None
                    time.sleep(random.uniform(0, min(0.002, 0.0001 * attempt)))

    def clear(self, key: str | None = None) -> int:
        docs = self.db.key("docs")

        def drop(conn: redis.Redis) -> int:
            if key is not None:
                with conn.pipeline(transaction=True) as pipe:
                    pipe.delete(*self._keys(key))
                    pipe.srem(docs, key)
                    removed, gone = pipe.execute()
                return 1 if removed or gone else 0
            count = 0
            for member in _bytes(conn.smembers(docs)):
                name = member.decode()
                with conn.pipeline(transaction=True) as pipe:
                    pipe.delete(*self._keys(name))
                    pipe.srem(docs, member)
                    _, gone = pipe.execute()
                count += 1 if gone else 0
            return count

        return self.db.run(drop)


# -- nodes ----------------------------------------------------------------------------


class RedisNodes(NodeRegistry):
    def __init__(self, db: Database, ttl: float | None = None) -> None:
        self.db = db
        if ttl is not None:
            self.ttl = ttl

    def beat(self, node: Node) -> None:
        seen, info = self.db.key("nodes"), self.db.key("node-info")

        def go(conn: redis.Redis) -> None:
            gone = conn.zrangebyscore(seen, "-inf", node.last_seen - 10 * self.ttl)
            with conn.pipeline(transaction=True) as pipe:
                pipe.zadd(seen, {node.id: node.last_seen})
                pipe.hset(info, node.id, _encode(node.to_dict()))
                if gone:  # long-gone nodes leave the registry
                    pipe.zrem(seen, *gone)
                    pipe.hdel(info, *gone)
                pipe.execute()

        self.db.run(go)

    def leave(self, node_id: str) -> None:
        def go(conn: redis.Redis) -> None:
            with conn.pipeline(transaction=True) as pipe:
                pipe.zrem(self.db.key("nodes"), node_id)
                pipe.hdel(self.db.key("node-info"), node_id)
                pipe.execute()

        self.db.run(go)

    def nodes(self, now: float) -> list[Node]:
        def go(conn: redis.Redis) -> list[Node]:
            ids = conn.zrangebyscore(self.db.key("nodes"), f"({now - self.ttl!r}", "+inf")
            if not ids:
                return []
            raw = conn.hmget(self.db.key("node-info"), _bytes(ids))
            out = []
            for item in raw:
                if item is None:
                    continue
                d = _decode(item)
                out.append(
                    Node(d["id"], d["bind"], d["host"], d["pid"], d["started"], d["lastSeen"])
                )
            return sorted(out, key=lambda n: n.id)

        return self.db.run(go)

    def close(self) -> None:
        self.db.close()


# -- schedules ------------------------------------------------------------------------


def _claim_of(raw: bytes) -> tuple[Claim, str]:
    d = _decode(raw)
    claim = Claim(
        d["script"],
        d["tick"],
        d["run_id"],
        d["status"],
        d["owner"],
        d["claimed_at"],
        d.get("finished_at"),
        d.get("duration_ms"),
        d.get("error"),
    )
    return claim, d["node"]


class RedisClaims(ClaimStore):
    """Claims by ``SET NX``: of all the nodes' schedulers one claims a tick."""

    def __init__(self, db: Database, owners: Owners, clock: Callable[[], float] = time.time):
        self.db = db
        self.owners = owners
        self.clock = clock

    def _claim_key(self, script: str, tick: int) -> bytes:
        return self.db.key("claim", script, str(tick))

    @staticmethod
    def _member(script: str, tick: int) -> bytes:
        return f"{tick}\n{script}".encode()

    def claim(self, script: str, tick: int, run_id: str, status: str = "running") -> bool:
        value = _encode(
            {
                "script": script,
                "tick": tick,
                "run_id": run_id,
                "status": status,
                "owner": os.getpid(),
                "node": self.owners.node,
                "claimed_at": self.clock(),
            }
        )
        keys = [
            self._claim_key(script, tick),
            self.db.key("ticks", script),
            self.db.key("running"),
            self.db.key("fired"),
        ]
        args = [value, tick, self._member(script, tick), "1" if status == "running" else "0"]
        args.append(script)
        return bool(self.db.run(lambda _: self.db.claim(keys=keys, args=args)) == 1)

    def _change(self, script: str, tick: int, change: Callable[[dict[str, Any]], bool]) -> bool:
        """Compare-and-swap the claim through ``change`` (False: leave it)."""
        key = self._claim_key(script, tick)
        keys = [key, self.db.key("running")]
        for _ in range(20):
            raw = self.db.run(lambda conn: conn.get(key))
            if raw is None:
                return False
            d = _decode(raw)
            if not change(d):
                return False
            swap = [raw, _encode(d), self._member(script, tick)]
            if self.db.run(partial(self._swap, keys, swap)) == 1:
                return True
        return False

    def _swap(self, keys: list[bytes], args: list[Any], _: redis.Redis) -> Any:
        return self.db.swap(keys=keys, args=args)

    def finish(
        self, script: str, tick: int, status: str, duration_ms: float, error: str | None
    ) -> None:
        now = self.clock()

        def done(d: dict[str, Any]) -> bool:
            d.update(status=status, finished_at=now, duration_ms=duration_ms, error=error)
            return True

        self._change(script, tick, done)

    def last_tick(self, script: str) -> int | None:
        top = _bytes(self.db.run(lambda c: c.zrevrange(self.db.key("ticks", script), 0, 0)))
        return int(top[0]) if top else None

    def last(self) -> dict[str, Claim]:
        def go(conn: redis.Redis) -> dict[str, Claim]:
            scripts = sorted(m.decode() for m in _bytes(conn.smembers(self.db.key("fired"))))
            with conn.pipeline(transaction=False) as pipe:
                for script in scripts:
                    pipe.zrevrange(self.db.key("ticks", script), 0, 0)
                tops = pipe.execute()
            keys = [
                self._claim_key(s, int(cast(bytes, t[0])))
                for s, t in zip(scripts, tops, strict=True)
                if t
            ]
            out = {}
            for raw in _bytes(conn.mget(keys)) if keys else []:
                if raw is not None:
                    claim, _ = _claim_of(raw)
                    out[claim.script] = claim
            return out

        return self.db.run(go)

    def _running(self) -> list[tuple[Claim, str]]:
        def go(conn: redis.Redis) -> list[tuple[Claim, str]]:
            members = _bytes(conn.smembers(self.db.key("running")))
            keys = []
            for m in members:
                tick, _, script = m.decode().partition("\n")
                keys.append(self._claim_key(script, int(tick)))
            raws = _bytes(conn.mget(keys)) if keys else []
            found = [_claim_of(raw) for raw in raws if raw is not None]
            return [(c, n) for c, n in found if c.status == "running"]

        return self.db.run(go)

    def running_elsewhere(self, script: str) -> bool:
        running = [
            (c, n)
            for c, n in self._running()
            if c.script == script and not self.owners.mine(n, c.owner)
        ]
        if not running:
            return False
        live = self.owners.live()
        return any(self.owners.alive(n, c.owner, live) for c, n in running)

    def orphans(self) -> list[Claim]:
        running = [(c, n) for c, n in self._running() if not self.owners.mine(n, c.owner)]
        if not running:
            return []
        live = self.owners.live()
        now = self.clock()

        def lost(d: dict[str, Any]) -> bool:
            if d["status"] != "running":
                return False  # another node's sweep marked it first
            d.update(status="lost", finished_at=now, error=LOST_NOTE)
            return True

        return [
            c
            for c, n in running
            if not self.owners.alive(n, c.owner, live) and self._change(c.script, c.tick, lost)
        ]

    def registered(self, script: str, expression: str, now: float) -> float:
        keys = [self.db.key("schedules")]
        held = self.db.run(
            lambda _: self.db.register(keys=keys, args=[script, expression, repr(now)])
        )
        return float(held)

    def forget(self, script: str) -> None:
        self.db.run(lambda c: c.hdel(self.db.key("schedules"), script))

    def close(self) -> None:
        self.db.close()


def _lrange(key: bytes, start: int, conn: redis.Redis) -> Any:
    return conn.lrange(key, start, start + 499)


class RedisHistory(HistoryStore):
    """The fire history of the whole cluster: a list, newest first."""

    def __init__(self, db: Database, keep: int = HISTORY_KEEP) -> None:
        self.db = db
        self.keep = keep

    def append(self, entry: dict[str, Any]) -> None:
        key = self.db.key("history")

        def go(conn: redis.Redis) -> None:
            with conn.pipeline(transaction=True) as pipe:
                pipe.lpush(key, _encode(entry))
                pipe.ltrim(key, 0, self.keep - 1)
                pipe.execute()

        self.db.run(go)

    def read(
        self,
        *,
        script: str | None = None,
        since: float | None = None,
        limit: int = 100,
        rotated: bool = False,
    ) -> list[dict[str, Any]]:
        key = self.db.key("history")
        out: list[dict[str, Any]] = []
        start = 0
        while len(out) < limit:
            chunk = _bytes(self.db.run(partial(_lrange, key, start)))
            if not chunk:
                break
            for raw in chunk:
                entry = _decode(raw)
                if isinstance(entry, dict) and matches(entry, script, since):
                    out.append(entry)
                    if len(out) >= limit:
                        break
            start += len(chunk)
        return out
