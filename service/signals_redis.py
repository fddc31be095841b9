"""Shopper statistics shared by every replica, surviving restarts: one Redis hash `<prefix>:stats`
whose fields are `<counter>` (totals) and `<counter>\\t<category>` (HINCRBY, atomic across replicas), and
`since`, set once.
The hash is bounded like the in-process counters (the catalogue's categories and OTHER) and expires
STATS_TTL_S after its last change.

A search never fails for its statistics: when Redis is down its counts are dropped (logged once by
RedisState). A click or add-to-cart (`/v1/events`) and `/v1/stats` answer 503 then.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence

from service.errors import SharedStateUnavailableError
from service.shared_state import RedisState
from service.signals import Increment, ShopperSignals

log = logging.getLogger(__name__)
STATS_TTL_S = 90 * 24 * 3600
SINCE = "since"


class RedisShopperSignals(ShopperSignals):
    def __init__(
        self,
        state: RedisState,
        known_categories: Callable[[], Collection[str]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(known_categories, clock)
        self._state = state
        self._key = state.key("stats")

    def record_search(self, garment_categories: Iterable[str | None]) -> None:
        try:
            super().record_search(garment_categories)
        except SharedStateUnavailableError:
            log.debug("a search was not counted: Redis is unavailable")

    def _add(self, increments: Sequence[Increment]) -> None:
        pipe = self._state.sync.pipeline(transaction=True)
        pipe.hsetnx(self._key, SINCE, repr(self._since))
        for bucket, counter, amount in increments:
            pipe.hincrby(self._key, counter if bucket is None else f"{counter}\t{bucket}", amount)
        pipe.expire(self._key, STATS_TTL_S)
        self._state.call(pipe.execute)

    def _hgetall(self) -> dict[bytes, bytes]:
        return self._state.sync.hgetall(self._key)  # type: ignore[return-value]  # bytes: no decoding

    def _read(self) -> tuple[float, Counter[str], dict[str, Counter[str]]]:
        fields: dict[bytes, bytes] = self._state.call(self._hgetall)
        since = self._since
        totals: Counter[str] = Counter()
        by_category: dict[str, Counter[str]] = {}
        for raw_name, raw_value in fields.items():
            name, value = raw_name.decode("utf-8", "replace"), raw_value.decode("ascii", "replace")
            if name == SINCE:
                since = float(value)
                continue
            counter, _, bucket = name.partition("\t")
            counts = by_category.setdefault(bucket, Counter()) if bucket else totals
            counts[counter] = int(value)
        return since, totals, by_category
