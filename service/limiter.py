"""Bounded admission for CPU-heavy searches: a slot or, after a short wait, a clear 503.

The wait happens on the event loop (an asyncio semaphore), so a queued search holds no thread of the pool
that runs searches and the plain `def` routes; only a search that has a slot goes to a thread."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from prometheus_client import Gauge

from service.errors import OverloadedError


class SearchLimiter:
    """`waiting` and `in_flight` gauges (optional) expose the queue depth to /metrics. Use it from one event
    loop (the server's)."""

    def __init__(
        self, slots: int, wait_s: float, waiting: Gauge | None = None, in_flight: Gauge | None = None
    ) -> None:
        self._slots = asyncio.Semaphore(slots)
        self._capacity = slots
        self._wait_s = wait_s
        self._waiting, self._in_flight = waiting, in_flight

    @contextlib.asynccontextmanager
    async def slot(self, deadline: float | None = None) -> AsyncIterator[None]:
        """Wait for a slot at most `wait_s`, and never past `deadline` (a time.monotonic() value)."""
        wait_s = self._wait_s if deadline is None else min(self._wait_s, deadline - time.monotonic())
        if not await self._acquire(max(0.0, wait_s)):
            raise OverloadedError(f"all {self._capacity} search slots are busy; retry shortly")
        if self._in_flight is not None:
            self._in_flight.inc()
        try:
            yield
        finally:
            if self._in_flight is not None:
                self._in_flight.dec()
            self._slots.release()

    async def _acquire(self, wait_s: float) -> bool:
        if not self._slots.locked():  # a free slot, nobody queued before us: no wait, even with wait_s 0
            await self._slots.acquire()
            return True
        if self._waiting is not None:
            self._waiting.inc()
        try:
            # wait_for, not asyncio.timeout: an acquire that wins the race with the timeout is kept, and no
            # cancellation is left pending on this task.
            return await asyncio.wait_for(self._slots.acquire(), wait_s)
        except TimeoutError:
            return False
        finally:
            if self._waiting is not None:
                self._waiting.dec()
