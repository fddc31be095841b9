"""Rate-limit buckets shared by every replica: the token buckets of service/access.py (the same rates, bursts,
all-or-nothing charges and RateLimit headers), kept in Redis and charged by one Lua script, which Redis runs
atomically. A burst split across replicas drains one bucket.

Each bucket is a hash `<prefix>:rate:<bucket>` (tokens, at) on Redis' own clock (TIME), so replicas whose
clocks differ agree. A bucket expires when it would be full again: then it is the same as no bucket, so
nothing outlives its use. When Redis is down the replica falls back to its own in-process buckets (limits
then hold per replica, not per service) and logs it; requests are neither refused for it nor slowed beyond
RedisState's timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from service.access import Charge, Quota, RateLimiter, checked_bucket, deciding, policy_name
from service.errors import SharedStateUnavailableError
from service.shared_state import RedisState

log = logging.getLogger(__name__)

# KEYS: the buckets; ARGV: cost, capacity, rate for each. Returns [refused, tokens1, wait1, tokens2, ...] as
# strings (Lua numbers would come back truncated to integers).
ADMIT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local seen = {}
local refused = 0
for i, key in ipairs(KEYS) do
  local cost, capacity, rate = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1]) or capacity
  local at = tonumber(state[2]) or now
  tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
  local wait = 0
  if tokens < cost - 1e-9 then
    wait = (cost - tokens) / rate
    refused = 1
  end
  seen[i] = {tokens, wait}
end
local out = {tostring(refused)}
for i, key in ipairs(KEYS) do
  local cost, capacity, rate = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local tokens = seen[i][1]
  if refused == 0 then
    tokens = tokens - cost
    redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'at', string.format('%.17g', now))
    redis.call('PEXPIRE', key, math.ceil((capacity - tokens) / rate * 1000) + 1000)
  end
  table.insert(out, string.format('%.17g', tokens))
  table.insert(out, string.format('%.17g', seen[i][2]))
end
return out
"""


class RedisRateLimiter:
    """`admit` (from a worker thread) and `admit_async` (from the event loop) over the shared buckets; while
    Redis is down, `fallback`'s."""

    def __init__(self, state: RedisState, rate_per_s: float, burst: int, fallback: RateLimiter) -> None:
        self.rate_per_s, self.burst = checked_bucket(rate_per_s, burst)
        self._state = state
        self._fallback = fallback
        self._script = state.sync.register_script(ADMIT_SCRIPT)
        self._script_async = state.aio.register_script(ADMIT_SCRIPT)

    def admit(self, charges: Iterable[Charge]) -> Quota | None:
        charges = list(charges)
        if not charges:
            return None
        keys, args = self._arguments(charges)
        try:
            reply = self._state.call(self._script, keys=keys, args=args)
        except SharedStateUnavailableError:
            return self._fallback.admit(charges)
        return self._decided(charges, reply)

    async def admit_async(self, charges: Iterable[Charge]) -> Quota | None:
        charges = list(charges)
        if not charges:
            return None
        keys, args = self._arguments(charges)
        try:
            reply = await self._state.acall(self._script_async, keys=keys, args=args)
        except SharedStateUnavailableError:
            return self._fallback.admit(charges)
        return self._decided(charges, reply)

    def _arguments(self, charges: Sequence[Charge]) -> tuple[list[str], list[str]]:
        keys = [self._state.key("rate", charge.bucket) for charge in charges]
        args = []
        for charge in charges:
            args += [repr(charge.cost), repr(self.burst * charge.scale), repr(self.rate_per_s * charge.scale)]
        return keys, args

    def _decided(self, charges: Sequence[Charge], reply: Sequence[bytes | str]) -> Quota | None:
        values = [float(value) for value in reply[1:]]
        quotas = [
            Quota(
                policy_name(charge.bucket),
                self.burst * charge.scale,
                self.rate_per_s * charge.scale,
                values[2 * i],
                values[2 * i + 1],
            )
            for i, charge in enumerate(charges)
        ]
        return deciding(quotas)
