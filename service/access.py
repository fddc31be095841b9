"""Who may call what, and how often: admin and storefront keys (constant-time, never logged) and a
per-key (or per-client-address) token-bucket rate limit. Enforced in a middleware, before any body is read.

- `/v1/admin/...` needs `X-Admin-Key` = `admin_key`; with no admin key configured the admin API is off.
- `/v1/...` (search, items) needs `X-API-Key` = one of `search_keys` when any are configured.
- Every `/v1/...` request takes a token from its caller's bucket: the key's when it is valid, else the
  client address's (so failed key guesses are rate limited too). An empty bucket answers 429 with
  Retry-After. Health, readiness, metrics and the docs are neither keyed nor limited.
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
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from service.errors import error_body

ADMIN_PREFIX = "/v1/admin/"
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

    def take(self, caller: str) -> float:
        """Take one token: 0.0 when allowed, else the seconds until the next token."""
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.pop(caller, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_s)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate_per_s
            self._buckets[caller] = (tokens - 1 if wait == 0 else tokens, now)
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
        is_admin = path.startswith(ADMIN_PREFIX)
        keys: Sequence[SecretStr] = ([admin_key] if admin_key else []) if is_admin else search_keys
        given = request.headers.get(ADMIN_HEADER if is_admin else API_KEY_HEADER)
        valid = given is not None and key_matches(given, keys)
        if limiter is not None:
            wait = limiter.take(caller_of(request, given if valid else None))
            if wait > 0:
                return JSONResponse(
                    error_body("rate_limited", f"too many requests; retry in {wait:.1f} s"),
                    status_code=429,
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
        if is_admin and admin_key is None:
            return JSONResponse(
                error_body("admin_disabled", "the admin API is off: the service has no admin key set"),
                status_code=403,
            )
        if keys and not valid:
            header = "X-Admin-Key" if is_admin else "X-API-Key"
            return JSONResponse(
                error_body("unauthorized", f"a valid {header} header is required"),
                status_code=401,
                headers={"WWW-Authenticate": header},
            )
        return await call_next(request)
