"""Who may call what, and how often: admin and storefront keys (constant-time, never logged) and a
per-key (or per-client-address) token-bucket rate limit. Enforced in a middleware, before any body is read.

- `/v1/admin/...` and `/v1/stats` need `X-Admin-Key` = `admin_key`; with no admin key configured the admin
  API is off.
- `/v1/...` (search, items, sessions, events) needs `X-API-Key` = one of `search_keys` when any are
  configured.
- Every `/v1/...` request takes tokens from its caller's bucket: the key's when it is valid, else the client
  address's (so failed key guesses are rate limited too). A search takes a whole token, anything else
  OTHER_COST (a page's thumbnails and events must not use up a shopper's searches) unless its key is wrong.
  An event stream pays once, when it connects. An empty bucket answers 429 with Retry-After. Health,
  readiness, metrics, the pages and the docs are neither keyed nor limited.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from fastapi import FastAPI, Request
from pydantic import SecretStr

from service.errors import AdminDisabledError, RateLimitedError, UnauthorizedError, error_response

ADMIN_PREFIX = "/v1/admin/"
ADMIN_PATHS = frozenset({"/v1/stats"})
SEARCH_PATH = "/v1/search"
OTHER_COST = 0.2  # tokens; a search (and a request with a wrong key) costs 1
API_PREFIX = "/v1/"
ADMIN_HEADER = "x-admin-key"
API_KEY_HEADER = "x-api-key"


class RateLimiter:
    """Token buckets keyed by caller: `rate_per_s` sustained, `burst` at once. Holds at most `max_callers`
    buckets (least recently used dropped first), so a flood of new addresses cannot grow memory."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        max_callers: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"rate_per_s must be > 0 and burst >= 1, got {rate_per_s} and {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._max_callers = max_callers
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # caller -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, caller: str, cost: float = 1.0) -> float:
        """Take `cost` tokens: 0.0 when allowed, else the seconds until there are enough."""
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.pop(caller, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_s)
            enough = tokens >= cost - 1e-9  # five 0.2s make a whole token despite float rounding
            wait = 0.0 if enough else (cost - tokens) / self.rate_per_s
            self._buckets[caller] = (tokens - cost if enough else tokens, now)
            while len(self._buckets) > self._max_callers:
                self._buckets.popitem(last=False)
            return wait

    def __len__(self) -> int:
        return len(self._buckets)


def key_matches(given: str, keys: Sequence[SecretStr]) -> bool:
    """Constant-time comparison against every configured key (no early exit that would reveal which)."""
    given_bytes = given.encode("utf-8", "surrogateescape")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given_bytes, key.get_secret_value().encode("utf-8"))
    return found


def caller_of(request: Request, key: str | None) -> str:
    """A bucket name: a valid key's fingerprint (never the key itself), else the client address."""
    if key is not None:
        return "key:" + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return "addr:" + (request.client.host if request.client else "unknown")


def install_access_control(
    app: FastAPI,
    admin_key: SecretStr | None,
    search_keys: Sequence[SecretStr],
    limiter: RateLimiter | None,
) -> None:
    @app.middleware("http")
    async def _access(request: Request, call_next):
        path = request.url.path
        if not path.startswith(API_PREFIX) or request.method == "OPTIONS":
            return await call_next(request)
        is_admin = path.startswith(ADMIN_PREFIX) or path in ADMIN_PATHS
        keys: Sequence[SecretStr] = ([admin_key] if admin_key else []) if is_admin else search_keys
        given = request.headers.get(ADMIN_HEADER if is_admin else API_KEY_HEADER)
        valid = given is not None and key_matches(given, keys)
        if limiter is not None:
            full = path == SEARCH_PATH or (bool(keys) and not valid)
            wait = limiter.take(caller_of(request, given if valid else None), 1.0 if full else OTHER_COST)
            if wait > 0:
                message = f"too many requests; retry in {wait:.1f} s"
                return error_response(request, RateLimitedError(message, max(1, math.ceil(wait))))
        if is_admin and admin_key is None:
            message = "the admin API is off: the service has no admin key set"
            return error_response(request, AdminDisabledError(message))
        if keys and not valid:
            return error_response(request, UnauthorizedError("X-Admin-Key" if is_admin else "X-API-Key"))
        return await call_next(request)
