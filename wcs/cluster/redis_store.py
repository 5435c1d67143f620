"""The whole server's entries in Redis, shared by the nodes of a cluster.

The same steps as :class:`~wcs.cluster.store.Store`, each one Lua script run
atomically by Redis, so that any node's workers agree on names, timelines and
holders. Nothing lives longer than its holders: every key a worker holds is
refreshed by its report (every second) and expires ``EXPIRY`` seconds after
the last, so the streams of a node that dies leave ``find_all`` within that.
Terminations are published on a channel every node listens to.

Keys, under ``wcsvod:``: ``e:ID`` (an entry, JSON), ``n:NAME`` and ``u:URI`` (the
entry a shared name or a uri means), ``hs:ID`` (its holders), ``h:ID:WORKER``
(that worker's viewers of it), ``w:WORKER`` (what the worker holds), ``l:WORKER``
(its load), and the sets ``entries`` and ``workers`` that list them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as redis
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from wcs.cluster.store import MEDIA, Entry, Load, shallow

log = Logger()

T = TypeVar("T")
PREFIX = "wcsvod:"
#: Seconds a key outlives the last report that refreshed it.
EXPIRY = 6
CHANNEL = PREFIX + "ended"

_PRELUDE = """
local P = ARGV[1]
local ttl = tonumber(ARGV[2])
local function holders(id)
  local alive = {}
  for _, w in ipairs(redis.call('SMEMBERS', P..'hs:'..id)) do
    if redis.call('EXISTS', P..'h:'..id..':'..w) == 1 then table.insert(alive, w)
    else redis.call('SREM', P..'hs:'..id, w) end
  end
  return alive
end
local function hold(id, w)
  redis.call('SET', P..'h:'..id..':'..w, redis.call('GET', P..'h:'..id..':'..w) or '0',
             'EX', ttl)
  redis.call('SADD', P..'hs:'..id, w)
  redis.call('EXPIRE', P..'hs:'..id, ttl)
  redis.call('SADD', P..'w:'..w, id)
  redis.call('EXPIRE', P..'w:'..w, ttl)
end
local function refresh(id, raw)
  local e = cjson.decode(raw)
  redis.call('EXPIRE', P..'e:'..id, ttl)
  redis.call('EXPIRE', P..'hs:'..id, ttl)
  if e.shared and redis.call('GET', P..'n:'..e.name) == id then
    redis.call('EXPIRE', P..'n:'..e.name, ttl) end
  if e.uri ~= '' and redis.call('GET', P..'u:'..e.uri) == id then
    redis.call('EXPIRE', P..'u:'..e.uri, ttl) end
end
local function add(w, raw)
  local e = cjson.decode(raw)
  redis.call('SET', P..'e:'..e.id, raw, 'EX', ttl)
  redis.call('SADD', P..'entries', e.id)
  if e.shared then
    redis.call('SET', P..'n:'..e.name, e.id, 'EX', ttl)
    if e.uri ~= '' then redis.call('SET', P..'u:'..e.uri, e.id, 'NX', 'EX', ttl) end
  end
  hold(e.id, w)
  return raw
end
local function relayed(e)  -- a page's stream or a playlist channel: ends with its owner
  return e.kind == 'published' or (type(e.relay) == 'string' and e.relay ~= '')
end
local function remove(id)
  local raw = redis.call('GET', P..'e:'..id)
  if not raw then return nil end
  local e = cjson.decode(raw)
  for _, w in ipairs(redis.call('SMEMBERS', P..'hs:'..id)) do
    redis.call('DEL', P..'h:'..id..':'..w)
    redis.call('SREM', P..'w:'..w, id)
  end
  redis.call('DEL', P..'e:'..id, P..'hs:'..id)
  redis.call('SREM', P..'entries', id)
  if redis.call('GET', P..'n:'..e.name) == id then redis.call('DEL', P..'n:'..e.name) end
  if e.uri ~= '' and redis.call('GET', P..'u:'..e.uri) == id then
    redis.call('DEL', P..'u:'..e.uri) end
  return raw
end
local function running(key)
  local id = redis.call('GET', key)
  if not id then return nil end
  local raw = redis.call('GET', P..'e:'..id)
  if not raw then redis.call('DEL', key) end
  return raw, id
end
"""

_SCRIPTS = {
    # ARGV: prefix, ttl, worker, entry
    "live": """
local raw, id = running(P..'u:'..cjson.decode(ARGV[4]).uri)
if raw then hold(id, ARGV[3]) return raw end
return add(ARGV[3], ARGV[4])
""",
    "claim": """
local e = cjson.decode(ARGV[4])
if e.shared and running(P..'n:'..e.name) then return nil end
return add(ARGV[3], ARGV[4])
""",
    # ARGV: prefix, ttl, name
    "lookup": "return (running(P..'n:'..ARGV[3]))",
    # ARGV: prefix, ttl, worker, id
    "hold": """
local raw = redis.call('GET', P..'e:'..ARGV[4])
if raw then hold(ARGV[4], ARGV[3]) end
return raw
""",
    "release": """
local w, id = ARGV[3], ARGV[4]
redis.call('DEL', P..'h:'..id..':'..w)
redis.call('SREM', P..'hs:'..id, w)
redis.call('SREM', P..'w:'..w, id)
local raw = redis.call('GET', P..'e:'..id)
if not raw then return nil end
local e = cjson.decode(raw)
if #holders(id) == 0 or (relayed(e) and e.owner == w) then remove(id) end
return nil
""",
    # ARGV: prefix, ttl, worker, load, then id, viewers, id, viewers...
    "report": """
local w = ARGV[3]
for i = 5, #ARGV, 2 do
  local id = ARGV[i]
  local raw = redis.call('GET', P..'e:'..id)
  if raw and redis.call('SISMEMBER', P..'hs:'..id, w) == 1 then
    redis.call('SET', P..'h:'..id..':'..w, ARGV[i + 1], 'EX', ttl)
    refresh(id, raw)
  end
end
redis.call('EXPIRE', P..'w:'..w, ttl)
redis.call('SET', P..'l:'..w, ARGV[4], 'EX', ttl)
redis.call('SADD', P..'workers', w)
return nil
""",
    # ARGV: prefix, ttl -> [entry, {worker, viewers...}]...
    "select": """
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', P..'entries')) do
  local raw = redis.call('GET', P..'e:'..id)
  if not raw then redis.call('SREM', P..'entries', id)
  else
    local counts = {}
    for _, w in ipairs(holders(id)) do
      table.insert(counts, w)
      table.insert(counts, redis.call('GET', P..'h:'..id..':'..w) or '0')
    end
    table.insert(out, {raw, counts})
  end
end
return out
""",
    # ARGV: prefix, ttl, id... -> the entries removed
    "terminate": """
local out = {}
for i = 3, #ARGV do
  local raw = remove(ARGV[i])
  if raw then table.insert(out, raw) end
end
return out
""",
    # ARGV: prefix, ttl, worker: it is gone, it holds nothing
    "drop": """
local w = ARGV[3]
for _, id in ipairs(redis.call('SMEMBERS', P..'w:'..w)) do
  redis.call('DEL', P..'h:'..id..':'..w)
  redis.call('SREM', P..'hs:'..id, w)
  local raw = redis.call('GET', P..'e:'..id)
  if raw then
    local e = cjson.decode(raw)
    if #holders(id) == 0 or (relayed(e) and e.owner == w) then remove(id) end
  end
end
redis.call('DEL', P..'w:'..w, P..'l:'..w)
redis.call('SREM', P..'workers', w)
return nil
""",
    "loads": """
local out = {}
for _, w in ipairs(redis.call('SMEMBERS', P..'workers')) do
  local raw = redis.call('GET', P..'l:'..w)
  if raw then table.insert(out, raw) else redis.call('SREM', P..'workers', w) end
end
return out
""",
}


def _entry_json(entry: Entry, worker: str) -> str:
    """An entry as Redis keeps it: without viewers (kept per holder), with its owner."""
    fields = dataclasses.asdict(entry)
    fields.pop("viewers")
    fields["owner"] = entry.owner or worker
    return json.dumps(fields)


def _entry(raw: bytes | str | None, viewers: dict[str, int] | None = None) -> Entry | None:
    if raw is None:
        return None
    return _decoded(raw, viewers)


def _decoded(raw: bytes | str, viewers: dict[str, int] | None = None) -> Entry:
    return Entry(**json.loads(raw), viewers=viewers or {})


class RedisStore:
    """A :class:`~wcs.cluster.store.Store` whose entries are in Redis at ``url``:
    the same methods, each answering with a Deferred."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = redis.Redis.from_url(url)
        self.scripts = {
            name: self.client.register_script(_PRELUDE + body) for name, body in _SCRIPTS.items()
        }
        self.listeners: dict[str, Callable[[list[str], str], None]] = {}
        self._listening: asyncio.Task[None] | None = None

    def _run(self, coroutine: Awaitable[T]) -> Deferred[T]:
        return Deferred.fromFuture(asyncio.ensure_future(coroutine))

    async def _script(self, name: str, *args: Any) -> Any:
        return await self.scripts[name](args=[PREFIX, EXPIRY, *args])

    def ping(self) -> Deferred[bool]:
        return self._run(self.client.ping())

    def secret(self) -> Deferred[str]:
        """The cluster's relay secret: made by the first node that asks."""

        async def secret() -> str:
            await self.client.set(PREFIX + "secret", secrets.token_urlsafe(32), nx=True)
            secret = await self.client.get(PREFIX + "secret")
            assert isinstance(secret, bytes)  # just set if it was not (responses undecoded)
            return secret.decode()

        return self._run(secret())

    def live(self, worker: str, entry: Entry) -> Deferred[Entry]:
        # (the script answers the broadcast that runs, or this one: never nil)
        return self._run(self._script("live", worker, _entry_json(entry, worker))).addCallback(
            _decoded
        )

    def claim(self, worker: str, entry: Entry) -> Deferred[Entry | None]:
        return self._run(self._script("claim", worker, _entry_json(entry, worker))).addCallback(
            _entry
        )

    def lookup(self, name: str) -> Deferred[Entry | None]:
        return self._run(self._script("lookup", name)).addCallback(_entry)

    def hold(self, worker: str, entry_id: str) -> Deferred[Entry | None]:
        return self._run(self._script("hold", worker, entry_id)).addCallback(_entry)

    def release(self, worker: str, entry_id: str) -> Deferred[None]:
        return self._run(self._script("release", worker, entry_id))

    def report(
        self, worker: str, viewers: dict[str, int], load: Load | None = None
    ) -> Deferred[None]:
        pairs = [item for pair in viewers.items() for item in pair]
        load_json = json.dumps(shallow(load or Load(worker)))
        return self._run(self._script("report", worker, load_json, *pairs))

    def select(
        self,
        name: str | None = None,
        uri: str | None = None,
        entry_id: str | None = None,
        kind: str | None = "vod",
    ) -> Deferred[list[Entry]]:
        def chosen(rows: list[Any]) -> list[Entry]:
            found = []
            for raw, counts in rows:
                viewers = {counts[i].decode(): int(counts[i + 1]) for i in range(0, len(counts), 2)}
                entry = _entry(raw, viewers)
                if (
                    entry is not None
                    and (kind is None or entry.kind == kind)
                    and (name is None or entry.name == name)
                    and (uri is None or entry.uri == uri)
                    and (entry_id is None or entry.id == entry_id)
                ):
                    found.append(entry)
            return sorted(found, key=lambda entry: entry.start)

        return self._run(self._script("select")).addCallback(chosen)

    def terminate(self, entry_ids: list[str], info: str) -> Deferred[list[Entry]]:
        async def terminate() -> list[Entry]:
            ended = [_entry(raw) for raw in await self._script("terminate", *entry_ids)]
            found = [entry for entry in ended if entry is not None]
            if found:
                await self.client.publish(
                    CHANNEL, json.dumps({"ids": [entry.id for entry in found], "info": info})
                )
            return found

        return self._run(terminate())

    def stop(self, media_ids: list[str], info: str) -> Deferred[int]:
        """Every node's workers stop their media sessions of these ids."""
        return self._run(
            self.client.publish(
                CHANNEL,
                json.dumps({"ids": [MEDIA + media_id for media_id in media_ids], "info": info}),
            )
        )

    def drop(self, worker: str) -> Deferred[None]:
        self.listeners.pop(worker, None)
        return self._run(self._script("drop", worker))

    def loads(self) -> Deferred[list[Load]]:
        return self._run(self._script("loads")).addCallback(
            lambda rows: [Load(**json.loads(raw)) for raw in rows]
        )

    def listen(self, worker: str, terminated: Callable[[list[str], str], None]) -> None:
        """Tell ``worker`` of terminations, from any node (one subscription a node)."""
        self.listeners[worker] = terminated
        if self._listening is None:
            self._listening = asyncio.ensure_future(self._listen())

    async def _listen(self) -> None:
        lost = False
        while True:
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    if lost:
                        log.info("cluster: the termination channel is back")
                        lost = False
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        ended = json.loads(message["data"])
                        for terminated in list(self.listeners.values()):
                            terminated(ended["ids"], ended["info"])
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Redis went away: listen again shortly
                if not lost:
                    log.warn(
                        "cluster: lost the termination channel ({error}); trying every second",
                        error=error,
                    )
                lost = True
                await asyncio.sleep(1.0)

    def close(self) -> Deferred[None]:
        if self._listening is not None:
            self._listening.cancel()
            self._listening = None
        return self._run(self.client.aclose())
