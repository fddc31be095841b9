"""The Lua scripts behind service/coview_redis.py, and what goes in and comes out of them. Each change to a
session, its numbering, its caps, its TTLs and the event it publishes happen in one script, atomically, so
replicas never interleave halfway.

Keys, each expiring with its session (ttl_s after its last write, never beyond max_age_s after its creation):
`<prefix>:session:<id>` (a hash: times, client, counters, selection, the last search), `...:photo`,
`...:messages`, `...:activity`, `...:pushed` (capped lists of JSON entries) and `...:streams` (the open
streams by lease end: MAX_STREAMS a session across replicas; a stream renews its lease as it pings, so a
replica's crash frees its slots). `<prefix>:sessions` (live sessions by expiry), `...:unsearched` (those
never searched, by last activity: eviction) and `...:client:<address>` (one address's, by expiry) hold the
caps, checked and taken in the same script as the change, so two replicas cannot both pass one.

Every script gets KEYS = (the live-sessions set, the never-searched set) and ARGV = (the session key prefix
`<prefix>:session:`, the client key prefix `<prefix>:sessions:client:`, now in ms by the replica's clock, the
session id, ttl ms, max age ms), then its own arguments. Times are epoch milliseconds throughout.

An event is published on `<prefix>:session:<id>:events` as `<seq> <expires ms> <event>\\n<data>`: `seq`
numbers the session's events, so a stream drops what its snapshot (taken at a known seq) already holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, NamedTuple

from pydantic import BaseModel

from service.coview import MAX_STREAMS, iso
from service.coview_session import (
    MAX_ACTIVITY,
    MAX_MESSAGES,
    MAX_PUSHES,
    Session,
    Subscriber,
    photo_url,
    search_event_data,
    sse_frame,
)
from service.errors import SessionNotFoundError, SharedStateUnavailableError, TooManyStreamsError
from service.shared_state import RETRY_AFTER_S, RedisState
from service.shopper_insight import insight_json

Limits = tuple[float, float]  # the sessions' ttl_s and max_age_s
NUMBERED = '{"id":0'  # how a message or push starts, rendered with id 0: the script puts in the real one
ENTRIES = {  # by model: its event, its list and how many of them a session keeps
    "MessageOut": ("message", ":messages", MAX_MESSAGES),
    "PushOut": ("push", ":pushed", MAX_PUSHES),
    "ActivityOut": ("activity", ":activity", MAX_ACTIVITY),
}


class SharedSubscriber(Subscriber):
    """One open stream on this replica; its queue holds the published events as they came."""

    def __init__(self, session_id: str, loop: asyncio.AbstractEventLoop, lease: str) -> None:
        super().__init__(Session(session_id, created_at=0.0, active_at=0.0), loop)
        self.lease = lease  # its member of the session's `streams` set
        self.seen = 0  # the seq of the last event its snapshot held or it sent
        self.expires_at = 0.0  # the session's, as of that event
        self.renewed_at = 0.0


class Read(NamedTuple):
    snapshot_json: str
    seq: int  # of the session's last event, which the snapshot holds
    expires_at: float


PRELUDE = """
local SESSION, CLIENT, NOW, ID = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local TTL, MAX_AGE = tonumber(ARGV[5]), tonumber(ARGV[6])
local ALL, UNSEARCHED = KEYS[1], KEYS[2]
local KEY = SESSION .. ID
local PARTS = {'', ':photo', ':messages', ':activity', ':pushed', ':streams'}

local function publish(id, expires, event, data)
  local seq = redis.call('HINCRBY', SESSION .. id, 'seq', 1)
  local head = string.format('%d %d ', seq, expires)
  redis.call('PUBLISH', SESSION .. id .. ':events', head .. event .. '\\n' .. data)
end

-- Drop a session and tell its streams (on every replica).
local function expire(id)
  local key = SESSION .. id
  if redis.call('EXISTS', key) == 1 then
    local client = redis.call('HGET', key, 'client')
    if client then redis.call('ZREM', CLIENT .. client, id) end
    publish(id, NOW, 'expired', '{}')
    for _, part in ipairs(PARTS) do redis.call('DEL', key .. part) end
  end
  redis.call('ZREM', ALL, id)
  redis.call('ZREM', UNSEARCHED, id)
end

-- The session's expiry, or nil when it is unknown or has expired (Redis's TTL may lag this replica's clock).
local function live()
  local expires = tonumber(redis.call('HGET', KEY, 'expires'))
  if expires and expires <= NOW then
    expire(ID)
    return nil
  end
  return expires
end

-- A write renews the session: ttl from now, never beyond its maximum age.
local function touch()
  local fields = redis.call('HMGET', KEY, 'created', 'client')
  local expires = math.min(NOW + TTL, tonumber(fields[1]) + MAX_AGE)
  redis.call('HSET', KEY, 'active', NOW, 'expires', expires)
  for _, part in ipairs(PARTS) do redis.call('PEXPIREAT', KEY .. part, expires) end
  redis.call('ZADD', ALL, 'XX', expires, ID)
  redis.call('ZADD', UNSEARCHED, 'XX', NOW, ID)
  if fields[2] then redis.call('ZADD', CLIENT .. fields[2], 'XX', expires, ID) end
  return expires
end
"""

# ARGV[7..10]: client address ('' none), max sessions, per-client quota (0 none), evict idle ms.
# -> {'ok', expires, evicted 0/1} | {'quota', count, first expiry} | {'full', when there is room}
CREATE = (
    PRELUDE
    + """
local client, max_sessions = ARGV[7], tonumber(ARGV[8])
local quota, evict_idle = tonumber(ARGV[9]), tonumber(ARGV[10])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', ALL, '-inf', NOW)) do expire(id) end
local own = CLIENT .. client
if client ~= '' and quota > 0 then
  redis.call('ZREMRANGEBYSCORE', own, '-inf', NOW)
  local count = redis.call('ZCARD', own)
  if count >= quota then
    return {'quota', count, redis.call('ZRANGE', own, 0, 0, 'WITHSCORES')[2]}
  end
end
local evicted = 0
if redis.call('ZCARD', ALL) >= max_sessions then
  -- the least recently active session that never had a search, once idle for evict_idle
  local idle = redis.call('ZRANGE', UNSEARCHED, 0, 0, 'WITHSCORES')
  if idle[1] and NOW - tonumber(idle[2]) >= evict_idle then
    expire(idle[1])
    evicted = 1
  else
    local free = tonumber(redis.call('ZRANGE', ALL, 0, 0, 'WITHSCORES')[2])
    if idle[1] then free = math.min(free, tonumber(idle[2]) + evict_idle) end
    return {'full', string.format('%d', free)}
  end
end
local expires = NOW + math.min(TTL, MAX_AGE)
redis.call('HSET', KEY, 'created', NOW, 'active', NOW, 'expires', expires, 'seq', 0, 'last_id', 0,
  'photo_version', 0, 'selected', 'null')
redis.call('PEXPIREAT', KEY, expires)
redis.call('ZADD', ALL, expires, ID)
redis.call('ZADD', UNSEARCHED, NOW, ID)
redis.call('PEXPIRE', ALL, MAX_AGE)
redis.call('PEXPIRE', UNSEARCHED, MAX_AGE)
if client ~= '' then
  redis.call('HSET', KEY, 'client', client)
  redis.call('ZADD', own, expires, ID)
  redis.call('PEXPIRE', own, MAX_AGE)
end
return {'ok', expires, evicted}
"""
)

# ARGV[7..12]: event, list (':messages', ':activity', ':pushed'), its cap, numbered ('1': the entry is the
# JSON after `{"id":<n>`, n = the next message/push id), the entry, selected garment as JSON ('' unchanged).
# -> {'ok', id or 0, expires} | {'gone'}
ADD = (
    PRELUDE
    + """
local event, list, cap, entry, selected = ARGV[7], KEY .. ARGV[8], tonumber(ARGV[9]), ARGV[11], ARGV[12]
if not live() then return {'gone'} end
local expires = touch()
local id = 0
if ARGV[10] == '1' then
  id = redis.call('HINCRBY', KEY, 'last_id', 1)
  entry = '{"id":' .. id .. entry
end
redis.call('RPUSH', list, entry)
redis.call('LTRIM', list, -cap, -1)
redis.call('PEXPIREAT', list, expires)
if selected ~= '' then redis.call('HSET', KEY, 'selected', selected) end
publish(ID, expires, event, entry)
return {'ok', id, expires}
"""
)

# ARGV[7..8]: the search's JSON, the photo. The event's data is `<photo version> <search JSON>`.
# -> {'ok', photo version, expires} | {'gone'}
SEARCH = (
    PRELUDE
    + """
if not live() then return {'gone'} end
local expires = touch()
local version = redis.call('HINCRBY', KEY, 'photo_version', 1)
redis.call('HSET', KEY, 'search', ARGV[7], 'selected', 'null')
redis.call('SET', KEY .. ':photo', ARGV[8], 'PXAT', expires)
redis.call('ZREM', UNSEARCHED, ID)
publish(ID, expires, 'search', version .. ' ' .. ARGV[7])
return {'ok', version, expires}
"""
)

# ARGV[7..9]: a new stream's lease ('' for a plain read), the lease's end, the session's most streams.
# -> {'ok', expires, seq, search ('' none), photo version, selected, messages, activity, pushed, shopper}
#    | {'gone'} | {'streams'}
READ = (
    PRELUDE
    + """
local expires = live()
if not expires then return {'gone'} end
local stream = ARGV[7]
if stream ~= '' then
  local streams = KEY .. ':streams'
  redis.call('ZREMRANGEBYSCORE', streams, '-inf', NOW)
  if redis.call('ZCARD', streams) >= tonumber(ARGV[9]) then return {'streams'} end
  redis.call('ZADD', streams, ARGV[8], stream)
  redis.call('PEXPIREAT', streams, expires)
end
local fields = redis.call('HMGET', KEY, 'seq', 'search', 'photo_version', 'selected', 'shopper')
return {'ok', expires, fields[1], fields[2] or '', fields[3], fields[4] or 'null',
  redis.call('LRANGE', KEY .. ':messages', 0, -1), redis.call('LRANGE', KEY .. ':activity', 0, -1),
  redis.call('LRANGE', KEY .. ':pushed', 0, -1), fields[5] or ''}
"""
)

# ARGV[7..9]: an event, its data, the shopper context to keep ('' unchanged; given, the write renews the
# session). Publishes the event. -> {'ok', expires} | {'gone'}
NOTE = (
    PRELUDE
    + """
local expires = live()
if not expires then return {'gone'} end
if ARGV[9] ~= '' then
  expires = touch()
  redis.call('HSET', KEY, 'shopper', ARGV[9])
end
publish(ID, expires, ARGV[7], ARGV[8])
return {'ok', expires}
"""
)

# ARGV[7..8]: a stream's lease, its new end. -> the session's expiry, or 0 when it has expired.
RENEW = (
    PRELUDE
    + """
local expires = live()
if not expires then return 0 end
redis.call('ZADD', KEY .. ':streams', ARGV[8], ARGV[7])
redis.call('PEXPIREAT', KEY .. ':streams', expires)
return expires
"""
)


def ms(seconds: float) -> int:
    return int(seconds * 1000)


def text(value: bytes) -> str:
    return value.decode("utf-8")


def unavailable() -> SharedStateUnavailableError:
    return SharedStateUnavailableError(
        "the shared state (Redis) is unavailable; retry shortly", RETRY_AFTER_S
    )


def not_found() -> SessionNotFoundError:
    return SessionNotFoundError("no such co-viewing session: it never existed or it has expired")


class SessionScripts:
    """The scripts, registered on one replica's clients, called with the sessions' (ttl_s, max_age_s) as
    `limits`. Redis failures surface as SharedStateUnavailableError (RedisState.call)."""

    def __init__(self, state: RedisState) -> None:
        self._state = state
        self._head = [state.key("session", ""), state.key("sessions", "client", "")]
        self.keys = [state.key("sessions"), state.key("sessions", "unsearched")]
        sources = {"CREATE": CREATE, "ADD": ADD, "SEARCH": SEARCH, "READ": READ, "NOTE": NOTE}
        self._scripts = {name: state.sync.register_script(source) for name, source in sources.items()}
        self._renew = state.aio.register_script(RENEW)

    def run(self, name: str, session_id: str, now: float, limits: Limits, *args: Any) -> list[Any]:
        arguments = self._arguments(session_id, now, limits, args)
        reply: list[Any] = self._state.call(self._scripts[name], keys=self.keys, args=arguments)
        return reply

    def read(
        self, session_id: str, now: float, limits: Limits, lease: str = "", lease_ends: float = 0
    ) -> Read:
        """The session's state (SessionNotFoundError, or TooManyStreamsError when `lease` would be one too
        many of its streams)."""
        reply = self.run("READ", session_id, now, limits, lease, ms(lease_ends), MAX_STREAMS)
        if reply[0] == b"gone":
            raise not_found()
        if reply[0] == b"streams":
            raise TooManyStreamsError(f"the session already has {MAX_STREAMS} open streams")
        return Read(snapshot_json(session_id, reply), int(reply[2]), int(reply[1]) / 1000)

    def add(self, session_id: str, now: float, limits: Limits, entry: BaseModel, selected: str = "") -> int:
        """Append a MessageOut, PushOut or ActivityOut (rendered with id 0) to its list and publish it; the id
        the script numbered it with (0 for activity). `selected`: the garment it selects, as JSON."""
        event, entries, most = ENTRIES[type(entry).__name__]
        entry_json = entry.model_dump_json()
        numbered = entry_json.startswith(NUMBERED)
        body = entry_json[len(NUMBERED) :] if numbered else entry_json
        reply = self.run("ADD", session_id, now, limits, event, entries, most, int(numbered), body, selected)
        if reply[0] == b"gone":
            raise not_found()
        return int(reply[1])

    def insight_json(self, session_id: str, shopper_json: str | None = None) -> str:
        """The session's insight card, from its activity and its shopper context (`shopper_json` when the
        caller is about to keep a new one); SessionNotFoundError when it is gone."""
        key = self._state.key("session", session_id)
        pipe = self._state.sync.pipeline(transaction=True)
        pipe.hmget(key, "expires", "shopper")
        pipe.lrange(key + ":activity", 0, -1)
        (expires, shopper), activity = self._state.call(pipe.execute)
        if expires is None:
            raise not_found()
        context = shopper_json if shopper_json is not None else text(shopper) if shopper else None
        return insight_json(map(text, activity), context)

    def note(
        self, session_id: str, now: float, limits: Limits, event: str, data: str, shopper: str = ""
    ) -> None:
        """Publish `event` (and keep `shopper`, the shopper context, when given)."""
        if self.run("NOTE", session_id, now, limits, event, data, shopper)[0] == b"gone":
            raise not_found()

    def live(self, session_id: str, now: float, part: str | None = None) -> bytes | None:
        """SessionNotFoundError unless the session is live at `now`; its key `part` (e.g. "photo")."""
        pipe = self._state.sync.pipeline(transaction=True)
        pipe.hget(self._state.key("session", session_id), "expires")
        if part is not None:
            pipe.get(self._state.key("session", session_id, part))
        expires, *value = self._state.call(pipe.execute)
        if expires is None or int(expires) <= ms(now):
            raise not_found()
        return value[0] if value else None

    async def renew(
        self, subscriber: SharedSubscriber, now: float, limits: Limits, lease_s: float
    ) -> bool | None:
        """Renew a stream's lease for `lease_s`: whether its session is still live (then its expiry is the
        subscriber's), None when Redis is down."""
        session_id, lease = subscriber.session.session_id, subscriber.lease
        arguments = self._arguments(session_id, now, limits, (lease, ms(now + lease_s)))
        try:
            expires = await self._state.acall(self._renew, keys=self.keys, args=arguments)
        except SharedStateUnavailableError:
            return None
        subscriber.renewed_at = now
        if not expires:
            return False
        subscriber.expires_at = int(expires) / 1000
        return True

    def forget_now(self, subscriber: SharedSubscriber) -> None:
        """Free a stream's slot (in a worker thread); when Redis is down its lease lapses by itself."""
        with contextlib.suppress(SharedStateUnavailableError):
            self._state.call(self._state.sync.zrem, self._streams(subscriber), subscriber.lease)

    async def forget(self, subscriber: SharedSubscriber) -> None:
        """The same on the event loop."""
        with contextlib.suppress(SharedStateUnavailableError):
            await self._state.acall(self._state.aio.zrem, self._streams(subscriber), subscriber.lease)

    def _streams(self, subscriber: SharedSubscriber) -> str:
        return self._state.key("session", subscriber.session.session_id, "streams")

    def _arguments(self, session_id: str, now: float, limits: Limits, args: tuple[Any, ...]) -> list[Any]:
        return [*self._head, ms(now), session_id, ms(limits[0]), ms(limits[1]), *args]


def snapshot_json(session_id: str, reply: list[Any]) -> str:
    """The SessionSnapshot JSON of a READ reply (rendered by Session, as in one process)."""
    _, expires, _, search, version, selected, messages, activity, pushed, shopper = reply
    session = Session(session_id, created_at=0.0, active_at=0.0, search_json=text(search) or None)
    session.shopper = text(shopper) or None
    session.photo_version, session.selected = int(version), json.loads(selected)
    session.messages.extend(map(text, messages))
    session.activity.extend(map(text, activity))
    session.pushed.extend(map(text, pushed))
    return session.snapshot_json(iso(int(expires) / 1000))


def event_frame(session_id: str, event: str) -> tuple[int, float, str]:
    """A published event as (its seq, the session's expiry then, its server-sent event)."""
    head, _, data = event.partition("\n")
    seq, expires_ms, name = head.split(" ")
    if name == "search":
        version, _, search_json = data.partition(" ")
        data = search_event_data(search_json, photo_url(session_id, int(version)))
    return int(seq), int(expires_ms) / 1000, sse_frame(name, data)
