"""Searches kept for paging: `query_id` -> each garment's ranked pool, least recently used dropped first.

A later page of a garment's matches is a slice of the pool the first answer came from: no decode, detect or
embed, and the same order as one large top_k. An entry holds no pixels (masks are dropped), only the
garments' boxes and attributes and references to the catalogue records the store already holds; at most
`candidate_pool` candidates per garment. Ids are random 128-bit tokens: unguessable, so a query's matches
are only seen by whoever made it (or was given its id).
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from search.errors import QueryNotFoundError
from search.searcher import OutfitResult

QUERY_ID_PREFIX = "q_"


@dataclass(frozen=True)
class CachedQuery:
    result: OutfitResult  # garments without masks; each garment's `pool` holds its ranked candidates
    image_size: tuple[int, int] | None  # None for a search by catalogue item
    build: str  # the index build the ranking came from
    expires_at: float


class QueryCache:
    """Thread-safe LRU with a time to live (renewed on each use); `put` returns the new query id."""

    def __init__(self, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s <= 0 or max_entries < 1:
            raise ValueError(f"ttl_s must be > 0 and max_entries >= 1; got {ttl_s}, {max_entries}")
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, CachedQuery] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def put(self, result: OutfitResult, image_size: tuple[int, int] | None, build: str) -> str:
        garments = [
            dataclasses.replace(g, garment=dataclasses.replace(g.garment, mask=None)) for g in result.garments
        ]
        query_id = QUERY_ID_PREFIX + secrets.token_urlsafe(16)
        now = self._clock()
        entry = CachedQuery(
            dataclasses.replace(result, garments=garments), image_size, build, now + self.ttl_s
        )
        with self._lock:
            self._drop_expired(now)
            self._entries[query_id] = entry
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return query_id

    def get(self, query_id: str) -> CachedQuery:
        """The cached query (now the most recently used); QueryNotFoundError when unknown or expired."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(query_id)
            if entry is None or entry.expires_at <= now:
                self._entries.pop(query_id, None)
                raise QueryNotFoundError(
                    f"no search with query_id {query_id[:40]!r} is kept: unknown, or older than "
                    f"{self.ttl_s:g} s (run the search again)"
                )
            entry = dataclasses.replace(entry, expires_at=now + self.ttl_s)  # kept while it is being paged
            self._entries[query_id] = entry
            self._entries.move_to_end(query_id)
            return entry

    def expires_at(self) -> float:
        """When an entry used now expires (on this cache's clock)."""
        return self._clock() + self.ttl_s

    def _drop_expired(self, now: float) -> None:
        """Expired entries leave from the front: use renews an entry and moves it to the back."""
        while self._entries:
            oldest_id, oldest = next(iter(self._entries.items()))
            if oldest.expires_at > now:
                break
            del self._entries[oldest_id]
