"""Shopper signals: searches, clicks and add-to-cart counted by garment category, so a store can see whether
visual search sells. In memory, since the service started; counters only, never who did what.

Categories come from shoppers' pages, so only the catalogue's categories get a counter of their own;
anything else (and garments without a category) is counted under OTHER: hostile input cannot grow memory.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence

from service.coview import iso
from service.shop_schemas import CategoryStats, EventType, StatsOut, StatsTotals

OTHER = "other"
COUNTED: dict[str, str] = {"click": "clicks", "add_to_cart": "add_to_cart"}  # event type -> counter
Increment = tuple[str | None, str, int]  # (category bucket, or None for the totals; counter; amount)


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
        self._add(
            [(None, "searches", 1), (None, "garments", len(buckets))]
            + [(bucket, "searches", 1) for bucket in buckets]
        )

    def record_event(self, event_type: EventType, category: str | None) -> None:
        """A click or an add-to-cart; garment selections are session activity only."""
        counter = COUNTED.get(event_type)
        if counter is None:
            return
        self._add([(None, counter, 1), (self.bucket(category), counter, 1)])

    def stats(self) -> StatsOut:
        since, totals, by_category = self._read()
        return stats_out(since, totals, by_category)

    def _add(self, increments: Sequence[Increment]) -> None:
        with self._lock:
            for bucket, counter, amount in increments:
                counts = self._totals if bucket is None else self._by_category.setdefault(bucket, Counter())
                counts[counter] += amount

    def _read(self) -> tuple[float, Counter[str], dict[str, Counter[str]]]:
        with self._lock:
            totals = Counter(self._totals)
            by_category = {name: Counter(counts) for name, counts in self._by_category.items()}
        return self._since, totals, by_category


def stats_out(since: float, totals: Counter[str], by_category: dict[str, Counter[str]]) -> StatsOut:
    return StatsOut(
        since=iso(since),
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
            for name, counts in sorted(by_category.items())
        },
    )


def click_through(counts: Counter[str]) -> float:
    return round(counts["clicks"] / counts["searches"], 4) if counts["searches"] else 0.0
