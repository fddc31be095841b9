"""The simulated shoppers of benchmarks/profile_quality.py: hidden preferences, noisy quiz answers, what
fits them, and the metric (pure: no models, no index).

A shopper likes 1 or 2 colours (drawn by how common they are in the catalogue), one style (the same) and
one price band (a third of the catalogue's price range, uniformly). An item fits them when it is of the
searched category, in a colour they like, of their style and inside their band; items whose colour or style
label is unknown never fit (nobody knows whether they would).

The quiz is answered the way people answer quizzes: partly and not quite right (QUIZ_NOISE): each liked
colour is named with probability 0.7, a colour they do not like is named by mistake with 0.2, a colour
to avoid (one they do not like) with 0.5, the style with 0.6 and the price band with 0.6.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from benchmarks.quality_data import Product
from search.request_body import ProfileIn

TOP_K = 10
# The data sets have no prices: each item gets a deterministic synthetic one, log-uniform in
# [base / e, base * e] around a per-category base (a bag costs more than a T-shirt), from its id's hash.
PRICE_BASE = {
    "top": 30.0, "trousers": 45.0, "dress": 60.0, "outerwear": 90.0, "footwear": 70.0, "bag": 55.0,
    "shorts": 25.0, "skirt": 35.0,
}  # fmt: skip
OTHER_PRICE_BASE = 25.0
QUIZ_NOISE = {"colour": 0.7, "wrong_colour": 0.2, "avoid": 0.5, "style": 0.6, "price": 0.6}
TWO_COLOURS = 0.5  # share of shoppers who like two colours


def synthetic_price(item_id: str, category: str) -> float:
    digest = int(hashlib.sha256(item_id.encode("utf-8")).hexdigest()[:16], 16)
    spread = random.Random(digest).uniform(-1.0, 1.0)
    return round(PRICE_BASE.get(category, OTHER_PRICE_BASE) * math.exp(spread), 2)


def price_bands(prices: Sequence[float]) -> tuple[tuple[float, float], ...]:
    """The terciles of the prices as three [low, high) bands (the last one open above)."""
    if len(prices) < 3:
        raise ValueError(f"need at least 3 prices for terciles, got {len(prices)}")
    ordered = sorted(prices)
    first, second = ordered[len(ordered) // 3], ordered[2 * len(ordered) // 3]
    return ((0.0, first), (first, second), (second, math.inf))


@dataclass(frozen=True)
class Shopper:
    colours: frozenset[str]
    style: str
    band: tuple[float, float]

    def likes(self, product: Product, price: float) -> bool:
        """The item is in a liked colour, of the shopper's style and inside their band."""
        return (
            product.labels.get("colour") in self.colours
            and product.labels.get("style") == self.style
            and self.band[0] <= price < self.band[1]
        )

    def fits(self, product: Product, price: float, category: str) -> bool:
        """What they were looking for (the searched category) and to their liking."""
        return product.category == category and self.likes(product, price)


def _weighted(rng: random.Random, weights: Mapping[str, float], k: int) -> list[str]:
    """k distinct keys drawn with probability proportional to their weight."""
    pool = dict(weights)
    chosen = []
    for _ in range(min(k, len(pool))):
        names = sorted(pool)
        pick = rng.choices(names, weights=[pool[n] for n in names])[0]
        chosen.append(pick)
        del pool[pick]
    return chosen


def make_shopper(
    rng: random.Random,
    colour_weights: Mapping[str, float],
    style_weights: Mapping[str, float],
    bands: Sequence[tuple[float, float]],
) -> Shopper:
    colours = _weighted(rng, colour_weights, 2 if rng.random() < TWO_COLOURS else 1)
    (style,) = _weighted(rng, style_weights, 1)
    return Shopper(frozenset(colours), style, bands[rng.randrange(len(bands))])


def quiz_answers(shopper: Shopper, rng: random.Random, colours: Sequence[str]) -> ProfileIn:
    """The shopper's answers to the quiz (QUIZ_NOISE): partial, now and then wrong, never made up whole."""
    named = [c for c in sorted(shopper.colours) if rng.random() < QUIZ_NOISE["colour"]]
    others = [c for c in sorted(colours) if c not in shopper.colours]
    if others and rng.random() < QUIZ_NOISE["wrong_colour"]:
        named.append(rng.choice(others))
    left = [c for c in others if c not in named]
    avoid = [rng.choice(left)] if left and rng.random() < QUIZ_NOISE["avoid"] else []
    styles = [shopper.style] if rng.random() < QUIZ_NOISE["style"] else []
    low, high = shopper.band
    price = rng.random() < QUIZ_NOISE["price"]
    return ProfileIn(
        colours=named,
        avoid_colours=avoid,
        styles=styles,
        price_min=math.floor(low) if price and low > 0 else None,
        price_max=math.ceil(high) if price and not math.isinf(high) else None,
    )


def ndcg_at_k(relevant: Sequence[bool], n_relevant: int, k: int = TOP_K) -> float:
    """Binary nDCG@k: DCG of the list over the DCG of an ideal list of min(k, n_relevant) relevant items."""
    if n_relevant <= 0:
        raise ValueError("nDCG needs at least one relevant item")
    dcg = sum(1.0 / math.log2(rank + 2) for rank, hit in enumerate(relevant[:k]) if hit)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(k, n_relevant)))
    return dcg / ideal
