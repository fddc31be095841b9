"""Shopper signals: searches, clicks and add-to-cart counted by garment category, so a store can see whether
visual search sells. In memory, since the service started; counters only, never who did what.

Categories come from shoppers' pages, so only the catalogue's categories get a counter of their own;
anything else (and garments without a category) is counted under OTHER: hostile input cannot grow memory.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable

from service.coview import iso
from service.shop_schemas import CategoryStats, EventType, StatsOut, StatsTotals

OTHER = "other"
COUNTED: dict[str, str] = {"click": "clicks", "add_to_cart": "add_to_cart"}  # event type -> counter


class ShopperSignals:
    def __init__(
        self, known_categories: Callable[[], Collection[str]], clock: Callable[[], float] = time.time
    ) -> None:
        self._known = known_categories
        self._since = clock()
        self._totals: Counter[str] = Counter()
        self._by_category: dict[str, Counter[str]] = {}
        self._lock = threading.Lock()

    def bucket(self, category: str | None, known: Collection[str] | None = None) -> str:
        known = self._known() if known is None else known
        return category if category is not None and category in known else OTHER

    def record_search(self, garment_categories: Iterable[str | None]) -> None:
        """One search request; each garment found counts as a search of its category."""
        known = set(self._known())
        buckets = [self.bucket(category, known) for category in garment_categories]
        with self._lock:
            self._totals["searches"] += 1
            self._totals["garments"] += len(buckets)
            for bucket in buckets:
                self._counter(bucket)["searches"] += 1

    def record_event(self, event_type: EventType, category: str | None) -> None:
        """A click or an add-to-cart; garment selections are session activity only."""
        counter = COUNTED.get(event_type)
        if counter is None:
            return
        bucket = self.bucket(category)
        with self._lock:
            self._totals[counter] += 1
            self._counter(bucket)[counter] += 1

    def stats(self) -> StatsOut:
        with self._lock:
            totals = Counter(self._totals)
            by_category = {name: Counter(counts) for name, counts in sorted(self._by_category.items())}
        return StatsOut(
            since=iso(self._since),
            totals=StatsTotals(
                searches=totals["searches"],
                garments=totals["garments"],
                clicks=totals["clicks"],
                add_to_cart=totals["add_to_cart"],
                click_through=click_through(totals),
            ),
            by_category={
                name: CategoryStats(
                    searches=counts["searches"],
                    clicks=counts["clicks"],
                    add_to_cart=counts["add_to_cart"],
                    click_through=click_through(counts),
                )
                for name, counts in by_category.items()
            },
        )

    def _counter(self, bucket: str) -> Counter[str]:
        return self._by_category.setdefault(bucket, Counter())


def click_through(counts: Counter[str]) -> float:
    return round(counts["clicks"] / counts["searches"], 4) if counts["searches"] else 0.0
