"""The Redis that several replicas share (`FASHION_REDIS_URL`): co-viewing sessions and their events,
rate-limit buckets, shopper statistics and the paging cache (each module says what it keeps there). Unset,
all of it stays in the process, as on one machine.

Every key is `<prefix>:<kind>:...` (FASHION_REDIS_PREFIX, so shops can share a Redis) and has a TTL or a
bound. Redis being down never hangs a request: each call has `timeout_s` to connect and to answer, and after
a failure the next calls within DOWN_S fail at once (one timeout a second at most, not one a request), as
SharedStateUnavailableError: a 503 with Retry-After for the routes that need Redis. Search does not need it.
The clients reconnect by themselves once Redis answers again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.errors import SharedStateUnavailableError

log = logging.getLogger(__name__)
T = TypeVar("T")
DOWN_S = 1.0  # after a failed call, calls fail at once for this long
RETRY_AFTER_S = 2
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


class RedisState:
    """A synchronous client (routes in the thread pool), an asynchronous one (middleware and event streams,
    on the event loop) and the key namespace. `call`/`acall` turn every connection failure into
    SharedStateUnavailableError."""

    def __init__(
        self, url: str, prefix: str, timeout_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        options: dict[str, Any] = {
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
            "health_check_interval": 15,
        }
        self.sync = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 1), **options)
        self.aio = aioredis.Redis.from_url(url, retry=aioredis.retry.Retry(NoBackoff(), 1), **options)
        self.prefix = prefix
        self.timeout_s = timeout_s
        self._clock = clock
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._reported_down = False

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @property
    def up(self) -> bool:
        """False while a recent call failed (the readiness probe's `redis` entry)."""
        return self._clock() >= self._down_until

    def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`function(*args)` (a method of `sync`, a script, a pipeline's execute), or
        SharedStateUnavailableError when Redis is down or did not answer in time."""
        self._check()
        try:
            result = function(*args, **kwargs)
        except REDIS_ERRORS as exc:
            raise self._failed(exc) from exc
        self._recovered()
        return result

    async def acall(self, function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """The same for a coroutine function of `aio`."""
        self._check()
        try:
            result = await function(*args, **kwargs)
        except REDIS_ERRORS as exc:
            raise self._failed(exc) from exc
        self._recovered()
        return result

    async def aping(self) -> bool:
        """Whether Redis answers now (a PING with the usual timeout); never raises."""
        try:
            await self.acall(self.aio.ping)
        except SharedStateUnavailableError:
            return False
        return True

    def ping(self) -> bool:
        try:
            self.call(self.sync.ping)
        except SharedStateUnavailableError:
            return False
        return True

    def close(self) -> None:
        self.sync.close()

    async def aclose(self) -> None:
        await self.aio.aclose()

    def _check(self) -> None:
        if self._clock() < self._down_until:
            raise SharedStateUnavailableError(
                "the shared state (Redis) is unavailable; retry shortly", RETRY_AFTER_S
            )

    def _failed(self, exc: BaseException) -> SharedStateUnavailableError:
        with self._lock:
            self._down_until = self._clock() + DOWN_S
            first = not self._reported_down
            self._reported_down = True
        if first:
            log.warning("Redis is unavailable (%s): shared-state routes answer 503 until it is back", exc)
        return SharedStateUnavailableError(
            "the shared state (Redis) did not answer; retry shortly", RETRY_AFTER_S
        )

    def _recovered(self) -> None:
        if self._reported_down:
            with self._lock:
                was_down, self._reported_down = self._reported_down, False
            if was_down:
                log.warning("Redis answers again: shared state is back")
