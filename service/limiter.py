"""Bounded admission for CPU-heavy searches: a slot or, after a short wait, a clear 503."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from prometheus_client import Gauge

from service.errors import OverloadedError


class SearchLimiter:
    """`waiting` and `in_flight` gauges (optional) expose the queue depth to /metrics."""

    def __init__(
        self, slots: int, wait_s: float, waiting: Gauge | None = None, in_flight: Gauge | None = None
    ) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self._capacity = slots
        self._wait_s = wait_s
        self._waiting, self._in_flight = waiting, in_flight

    @contextlib.contextmanager
    def slot(self, deadline: float | None = None) -> Iterator[None]:
        """Wait for a slot at most `wait_s`, and never past `deadline` (a time.monotonic() value)."""
        wait_s = self._wait_s if deadline is None else min(self._wait_s, deadline - time.monotonic())
        if self._waiting is not None:
            self._waiting.inc()
        try:
            acquired = self._slots.acquire(timeout=max(0.0, wait_s))
        finally:
            if self._waiting is not None:
                self._waiting.dec()
        if not acquired:
            raise OverloadedError(f"all {self._capacity} search slots are busy; retry shortly")
        if self._in_flight is not None:
            self._in_flight.inc()
        try:
            yield
        finally:
            if self._in_flight is not None:
                self._in_flight.dec()
            self._slots.release()
