"""Bounded admission for CPU-heavy searches: a slot or, after a short wait, a clear 503."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from service.errors import OverloadedError


class SearchLimiter:
    def __init__(self, slots: int, wait_s: float) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self._capacity = slots
        self._wait_s = wait_s

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self._wait_s):
            raise OverloadedError(f"all {self._capacity} search slots are busy; retry shortly")
        try:
            yield
        finally:
            self._slots.release()
