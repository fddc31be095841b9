"""Style profiles in the Redis every replica shares (FASHION_PROFILES_ENABLED with FASHION_REDIS_URL): one
string key `<prefix>:profile:<id>` holding the document (service/profiles.py), its expiry the key's TTL, and
`<prefix>:profiles`, the ids by expiry, which counts them against `max_profiles`.
Updates are optimistic (WATCH, then MULTI/EXEC, retried when another replica wrote in between). Redis down
is a 503 shared_state_unavailable, as for sessions."""

from __future__ import annotations

import json
from typing import Any, cast

import redis

from service.profiles import Document, ProfileStore, Update, full
from service.shared_state import RedisState


class RedisProfiles(ProfileStore):
    def __init__(self, state: RedisState, *args: Any, **kwargs: Any) -> None:
        """ProfileStore's arguments after the shared state."""
        super().__init__(*args, **kwargs)
        self._state = state
        self._index = state.key("profiles")

    def _key(self, profile_id: str) -> str:
        return self._state.key("profile", profile_id)

    def _put(self, profile_id: str, document: Document, expires_at: float) -> None:
        pipe = self._state.sync.pipeline(transaction=True)
        pipe.zremrangebyscore(self._index, "-inf", int(self.clock() * 1000))
        pipe.zcard(self._index)
        _, count = self._state.call(pipe.execute)
        if count >= self.max_profiles:
            raise full(self.max_profiles)
        pipe = self._state.sync.pipeline(transaction=True)
        pipe.set(self._key(profile_id), json.dumps(document), pxat=int(expires_at * 1000))
        pipe.zadd(self._index, {profile_id: int(expires_at * 1000)})
        pipe.pexpireat(self._index, int(expires_at * 1000))
        self._state.call(pipe.execute)

    def _update(self, profile_id: str, now: float, update: Update) -> tuple[Document, float] | None:
        key = self._key(profile_id)
        expires_at = now + self.ttl_s

        def transaction(pipe: redis.client.Pipeline) -> Document | None:
            raw = pipe.get(key)
            if raw is None:
                return None
            found: Document = json.loads(raw)
            document = update(found) or found
            pipe.multi()
            pipe.set(key, json.dumps(document), pxat=int(expires_at * 1000))
            pipe.zadd(self._index, {profile_id: int(expires_at * 1000)})
            pipe.pexpireat(self._index, int(expires_at * 1000))
            return document

        document = self._state.call(self._state.sync.transaction, transaction, key, value_from_callable=True)
        return None if document is None else (cast(Document, document), expires_at)

    def _delete(self, profile_id: str, now: float) -> bool:
        pipe = self._state.sync.pipeline(transaction=True)
        pipe.delete(self._key(profile_id))
        pipe.zrem(self._index, profile_id)
        deleted, _ = self._state.call(pipe.execute)
        return bool(deleted)
