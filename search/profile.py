"""A shopper's style profile: quiz answers plus preferences learned from clicks, and the bounded boost it
gives a match (search/ranking.py adds it to the score).

For an item i and each dimension d the profile has an opinion on (colour, style, fit, brand, price, size):

    quiz_d(i)     +1 if the item's value is one the shopper chose, -1 if one they avoid (colours), else 0;
                  price: +1 inside the price band, else 0; size: +1 if the item (a variant) comes in a size
                  the shopper wears, else 0
    learned_d(i)  tanh(w_d[value]): w grows by `step` with each click (2 x step for add-to-cart and
                  purchase, -step for remove-from-cart) on an item of that value and every weight decays by
                  LEARN_DECAY per event; price: +1 within [0.6 p, 1.6 p] of the learned price p (an
                  average of the clicked prices, LEARN_PRICE_RATE per event) when the quiz gave no band
    match_d(i)    clip(quiz_d + learned_d, -1, 1); 0 when the item's value is unknown
    boost(i)      max_boost * sum_d match_d / (number of dimensions with an opinion), in [-max, +max]

So a profile can only reorder near-equals (the most it moves a score is `ranking.profile_max_boost`), avoid
answers push down softly (never filter), and an empty profile changes nothing. Nothing is kept but the
answers and the learned weights of attribute values (no item ids, no times).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from indexer.metadata import ItemRecord

DIMENSIONS = ("colour", "style", "fit", "brand", "price", "size")
LEARNED_DIMENSIONS = ("colour", "style", "fit", "brand")
LEARN_STEP = 0.5
LEARN_DECAY = 0.85
LEARN_PRICE_RATE = 0.3
LEARN_MIN_WEIGHT = 0.05  # a weight decayed under this is forgotten
LEARN_MAX_VALUES = 12  # per dimension: the strongest weights are kept
LEARN_MAX_WEIGHT = 4.0
PRICE_BAND = (0.6, 1.6)  # the learned price band, as multiples of the learned price
EVENT_STRENGTH = {
    "click": 1.0,
    "view_item": 0.0,
    "add_to_cart": 2.0,
    "purchase": 2.0,
    "remove_from_cart": -1.0,
}


@dataclass(frozen=True)
class StyleProfile:
    """Quiz answers (canonical taxonomy values; brands lower-case; sizes upper-case) and learned weights."""

    colours: frozenset[str] = frozenset()
    avoid_colours: frozenset[str] = frozenset()
    fits: frozenset[str] = frozenset()
    styles: frozenset[str] = frozenset()
    brands: frozenset[str] = frozenset()
    sizes: frozenset[str] = frozenset()
    price_min: float | None = None
    price_max: float | None = None
    learned: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # dimension -> value -> w
    learned_price: float | None = None

    def quiz(self, dimension: str) -> tuple[frozenset[str], frozenset[str]]:
        """(chosen, avoided) values of a dimension's quiz answer."""
        chosen = {
            "colour": self.colours,
            "style": self.styles,
            "fit": self.fits,
            "brand": self.brands,
            "size": self.sizes,
        }.get(dimension, frozenset())
        return chosen, self.avoid_colours if dimension == "colour" else frozenset()

    def price_band(self) -> tuple[float, float] | None:
        if self.price_min is not None or self.price_max is not None:
            return (self.price_min or 0.0, math.inf if self.price_max is None else self.price_max)
        if self.learned_price is not None:
            return (self.learned_price * PRICE_BAND[0], self.learned_price * PRICE_BAND[1])
        return None

    def dimensions(self) -> list[str]:
        """The dimensions this profile has an opinion on."""
        found = []
        for dimension in DIMENSIONS:
            if dimension == "price":
                opinion = self.price_band() is not None
            else:
                chosen, avoided = self.quiz(dimension)
                opinion = bool(chosen or avoided or self.learned.get(dimension))
            if opinion:
                found.append(dimension)
        return found


@dataclass(frozen=True)
class ProfileMatch:
    """How one item meets a profile: its boost and the values that earned or cost it."""

    boost: float
    matched: tuple[str, ...] = ()  # shown as "matches your style: navy, relaxed fit"
    avoided: tuple[str, ...] = ()  # shown as "you avoid: orange"

    @property
    def explanation(self) -> str | None:
        parts = []
        if self.matched:
            parts.append("matches your style: " + ", ".join(self.matched))
        if self.avoided:
            parts.append("you avoid: " + ", ".join(self.avoided))
        return "; ".join(parts) or None


NO_MATCH = ProfileMatch(0.0)


def item_value(item: ItemRecord, dimension: str) -> str | None:
    """The item's value on a dimension (price and size are handled apart)."""
    if dimension == "brand":
        return item.brand.strip().lower() or None
    guess = item.attributes.get(dimension)
    return guess.value if guess is not None else None


def item_sizes(item: ItemRecord, variants: Iterable[ItemRecord] = ()) -> set[str]:
    sizes: set[str] = set()
    for record in (item, *variants):
        size = record.extra_attributes.get("size")
        if size:
            sizes.update(part.strip().upper() for part in size.split(",") if part.strip())
    return sizes


def _label(dimension: str, value: str) -> str:
    return {"fit": f"{value} fit", "size": f"your size {value}"}.get(dimension, value)


def profile_match(
    item: ItemRecord, profile: StyleProfile | None, max_boost: float, variants: Iterable[ItemRecord] = ()
) -> ProfileMatch:
    """The item's boost under `profile` (the module docstring's formula) and why."""
    if profile is None or max_boost <= 0:
        return NO_MATCH
    dimensions = profile.dimensions()
    if not dimensions:
        return NO_MATCH
    total = 0.0
    matched: list[str] = []
    avoided: list[str] = []
    for dimension in dimensions:
        if dimension == "price":
            band = profile.price_band()
            inside = band is not None and item.price is not None and band[0] <= item.price <= band[1]
            score = 1.0 if inside else 0.0
            label = "in your price range"
        elif dimension == "size":
            fitting = sorted(item_sizes(item, variants) & profile.sizes)
            score = 1.0 if fitting else 0.0
            label = _label("size", fitting[0]) if fitting else ""
        else:
            value = item_value(item, dimension)
            if value is None:
                continue
            chosen, avoid = profile.quiz(dimension)
            quiz = 1.0 if value in chosen else -1.0 if value in avoid else 0.0
            learned = math.tanh(profile.learned.get(dimension, {}).get(value, 0.0))
            score = max(-1.0, min(1.0, quiz + learned))
            label = _label(dimension, value)
        total += score
        if score >= 0.25:
            matched.append(label)
        elif score <= -0.25:
            avoided.append(label)
    boost = max_boost * total / len(dimensions)
    return ProfileMatch(round(boost, 6), tuple(matched), tuple(avoided))


def learned_from(profile: StyleProfile, item: ItemRecord, event: str) -> StyleProfile:
    """The profile after the shopper's `event` (click, add_to_cart, ...) on `item`: every learned weight
    decays, the item's values gain the event's strength, the learned price moves towards the item's."""
    strength = EVENT_STRENGTH.get(event, 0.0)
    if strength == 0.0:
        return profile
    learned: dict[str, dict[str, float]] = {}
    for dimension in LEARNED_DIMENSIONS:
        weights = {v: w * LEARN_DECAY for v, w in profile.learned.get(dimension, {}).items()}
        value = item_value(item, dimension)
        if value is not None:
            weights[value] = max(
                -LEARN_MAX_WEIGHT, min(LEARN_MAX_WEIGHT, weights.get(value, 0.0) + strength * LEARN_STEP)
            )
        kept = sorted(
            ((v, round(w, 4)) for v, w in weights.items() if abs(w) >= LEARN_MIN_WEIGHT),
            key=lambda pair: (-abs(pair[1]), pair[0]),
        )[:LEARN_MAX_VALUES]
        if kept:
            learned[dimension] = dict(kept)
    price = profile.learned_price
    if item.price is not None and strength > 0:
        price = item.price if price is None else price + LEARN_PRICE_RATE * (item.price - price)
        price = round(price, 2)
    return StyleProfile(
        colours=profile.colours,
        avoid_colours=profile.avoid_colours,
        fits=profile.fits,
        styles=profile.styles,
        brands=profile.brands,
        sizes=profile.sizes,
        price_min=profile.price_min,
        price_max=profile.price_max,
        learned=learned,
        learned_price=price,
    )


def summary(profile: StyleProfile | None) -> str | None:
    """The profile in one line, for the assistant: "likes navy, black; avoids orange; casual; ..."."""
    if profile is None:
        return None
    parts = []
    liked = sorted(profile.colours) or _strongest(profile, "colour")
    if liked:
        parts.append("likes " + ", ".join(liked))
    if profile.avoid_colours:
        parts.append("avoids " + ", ".join(sorted(profile.avoid_colours)))
    for dimension, suffix in (("style", ""), ("fit", " fit")):
        chosen = sorted(profile.quiz(dimension)[0]) or _strongest(profile, dimension)
        if chosen:
            parts.append(", ".join(chosen) + suffix)
    brands = sorted(profile.brands) or _strongest(profile, "brand")
    if brands:
        parts.append("brands " + ", ".join(brands))
    band = profile.price_band()
    if band is not None:
        high = "" if math.isinf(band[1]) else f"{band[1]:.0f}"
        parts.append(f"price {band[0]:.0f}-{high}".rstrip("-") if high else f"price from {band[0]:.0f}")
    if profile.sizes:
        parts.append("size " + ", ".join(sorted(profile.sizes)))
    return "; ".join(parts) or "no preferences yet"


def _strongest(profile: StyleProfile, dimension: str, most: int = 2) -> list[str]:
    weights = profile.learned.get(dimension, {})
    return [v for v, w in sorted(weights.items(), key=lambda p: (-p[1], p[0])) if w > 0.3][:most]


SET_FIELDS = ("colours", "avoid_colours", "fits", "styles", "brands", "sizes")


def profile_json(profile: StyleProfile) -> dict[str, object]:
    """The profile as JSON data (sets sorted), as the paging cache and the profile stores keep it."""
    return {
        **{name: sorted(getattr(profile, name)) for name in SET_FIELDS},
        "price_min": profile.price_min,
        "price_max": profile.price_max,
        "learned": {d: dict(weights) for d, weights in profile.learned.items()},
        "learned_price": profile.learned_price,
    }


def profile_of_json(data: Mapping[str, object]) -> StyleProfile:
    """The inverse of `profile_json`."""
    learned = data.get("learned") or {}
    assert isinstance(learned, Mapping)
    sets: dict[str, Any] = {name: frozenset(map(str, data.get(name) or ())) for name in SET_FIELDS}  # type: ignore[call-overload]
    return StyleProfile(
        **sets,
        price_min=_number(data.get("price_min")),
        price_max=_number(data.get("price_max")),
        learned={str(d): {str(v): float(w) for v, w in weights.items()} for d, weights in learned.items()},
        learned_price=_number(data.get("learned_price")),
    )


def _number(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]
