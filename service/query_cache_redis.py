"""The paging cache shared by every replica: a search answered by replica A can be paged on replica B.

Each kept search is one Redis string `<prefix>:query:<query_id>` (search/query_codec.py: compact JSON, items
by id, a few KB) with the cache's TTL, renewed when a page is read (GETEX). Redis bounds the number of
entries by their TTL. The process keeps its own LRU (search.query_cache.QueryCache) as well: a search
answered while Redis is down is still paged on the replica that answered it, and a page asked for then is
answered from it when it can be, else 503 (Retry-After) rather than a wrong "unknown query".
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from search.errors import QueryNotFoundError
from search.query_cache import CachedQuery, QueryCache
from search.query_codec import ItemLookup, decode_query, encode_query
from search.searcher import OutfitResult
from service.errors import SharedStateUnavailableError
from service.shared_state import RedisState

log = logging.getLogger(__name__)


class SharedQueryCache:
    """QueryCache's `put` and `get` over Redis; `lookup()` gives the current store's item lookup."""

    def __init__(self, state: RedisState, local: QueryCache, lookup: Callable[[], ItemLookup]) -> None:
        self._state = state
        self._local = local
        self._lookup = lookup
        self.ttl_s = local.ttl_s

    def __len__(self) -> int:
        return len(self._local)

    def put(self, result: OutfitResult, image_size: tuple[int, int] | None, build: str) -> str:
        query_id = self._local.put(result, image_size, build)
        blob = encode_query(self._local.get(query_id))
        try:
            self._state.call(self._state.sync.set, self._key(query_id), blob, ex=max(1, round(self.ttl_s)))
        except SharedStateUnavailableError:
            log.info("a search was kept for paging on this replica only: Redis is unavailable")
        return query_id

    def _getex(self, query_id: str) -> bytes | None:
        """The kept search's bytes (the clients do not decode answers), its TTL renewed."""
        return self._state.sync.getex(self._key(query_id), ex=max(1, round(self.ttl_s)))  # type: ignore[return-value]

    def get(self, query_id: str) -> CachedQuery:
        try:
            blob = self._state.call(self._getex, query_id)
        except SharedStateUnavailableError:
            try:
                return self._local.get(query_id)
            except QueryNotFoundError:
                raise SharedStateUnavailableError(
                    "the kept search is in the shared state (Redis), which is unavailable; retry shortly",
                    2,
                ) from None
        if blob is None:
            return self._local.get(query_id)  # raises QueryNotFoundError, unless only Redis lost it
        try:
            return decode_query(blob, self._lookup(), self._local.expires_at())
        except ValueError as exc:
            log.warning("a kept search in Redis could not be read (%s): answered as unknown", exc)
            raise QueryNotFoundError(f"no search with query_id {query_id[:40]!r} is kept") from None

    def _key(self, query_id: str) -> str:
        return self._state.key("query", query_id)
