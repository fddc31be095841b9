"""Re-rank a candidate pool by visual similarity and attribute agreement, and say why each item matched.

For a garment g and a candidate item i, over every attribute group G with weight w_G > 0 that both sides
know (the garment's value, or the shopper's text for that group, and the item's feed or predicted value):

    agreement a_G      1 if the values agree, 0.5 if one side's secondary colour is the other's main one,
                       else 0 (an excluded value, "not striped", agrees when the item is anything else)
    evidence  c_G      min(garment confidence, item confidence); 1 for shopper text
    attribute_score    (prior * 0.5 + sum w_G c_G a_G) / (prior + sum w_G c_G)     (0.5 = no evidence)
    score              (1 - attribute_weight) * visual_score + attribute_weight * attribute_score
                       + profile_boost   (-profile_max_boost <= profile_boost <= profile_max_boost)

The profile boost (search/profile.py) comes from a shopper's style profile: quiz answers and what they
clicked; it only reorders near-equals and an avoided value pushes down, never filters.

Groups the shopper named in `text` get `text_weight` times their group weight, so "in red" outranks the
photo's own colour. `category` is a group too: an item of a compatible but different category (a jacket for
a detected top) is a mismatch on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from indexer.metadata import ItemRecord
from models.attributes.guess import CATEGORY_GROUP, AttributeGuess
from models.attributes.refinement import Refinement
from models.attributes.taxonomy import load_taxonomy
from models.errors import listed, shown
from search.profile import NO_MATCH, ProfileMatch, StyleProfile, profile_match

SECONDARY_AGREEMENT = 0.5


DEFAULT_GROUP_WEIGHTS = {
    CATEGORY_GROUP: 1.0,
    "colour": 2.0,
    "pattern": 1.5,
    "sleeve_length": 1.0,
    "neckline": 0.75,
    "length": 1.0,
    "fit": 0.5,
    "material": 0.75,
    "footwear_type": 1.5,
}


def check_group_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Weights must name taxonomy groups (or "category") and lie in [0, 10]."""
    known = [CATEGORY_GROUP, *load_taxonomy().groups]
    for group, weight in weights.items():
        if group not in known:
            raise ValueError(f"unknown attribute group {shown(group)} in weights; known: {listed(known)}")
        if not 0 <= weight <= 10:
            raise ValueError(f"weight for {shown(group)} must be between 0 and 10, got {weight}")
    return dict(weights)


class RankingConfig(BaseModel):
    """The re-ranking formula's knobs (the module docstring); settings hold one, a request may override it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attribute_weight: float = Field(
        0.3, ge=0, le=1, description="share of the attribute score in the final score (0 = visual only)"
    )
    group_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_GROUP_WEIGHTS),
        description="weight per attribute group; groups not listed get default_group_weight",
    )
    default_group_weight: float = Field(0.5, ge=0, le=10)
    prior: float = Field(1.0, gt=0, description="pseudo-evidence pulling the attribute score towards 0.5")
    text_weight: float = Field(3.0, ge=0, le=100, description="multiplier for groups named in `text`")
    profile_max_boost: float = Field(
        0.1,
        ge=0,
        le=0.5,
        description="most a shopper's style profile can add to (or take from) a score (chosen by "
        "benchmarks/profile_quality.py)",
    )

    @field_validator("group_weights")
    @classmethod
    def _known_groups(cls, weights: dict[str, float]) -> dict[str, float]:
        return check_group_weights(weights)

    def weight(self, group: str) -> float:
        return float(self.group_weights.get(group, self.default_group_weight))

    def overridden(
        self, group_weights: Mapping[str, float] | None = None, attribute_weight: float | None = None
    ) -> RankingConfig:
        """This config with a request's group weights merged in and/or its attribute weight."""
        update: dict[str, object] = {}
        if group_weights:
            update["group_weights"] = {**self.group_weights, **check_group_weights(group_weights)}
        if attribute_weight is not None:
            update["attribute_weight"] = attribute_weight
        return self.model_copy(update=update) if update else self


@dataclass(frozen=True)
class Agreement:
    group: str
    item_value: str
    query_value: str  # what the garment or the shopper's text asked for ("not striped" for an exclusion)
    source: str  # where the item's value came from: feed or predicted


@dataclass(frozen=True)
class RankedItem:
    item: ItemRecord
    visual_score: float
    attribute_score: float
    score: float
    profile_boost: float
    matched: list[Agreement]
    mismatched: list[Agreement]
    image: int = 0  # which image of the item matched: 0 = the main one, 1.. = item.extra_images
    variants: tuple[ItemRecord, ...] = ()  # its product group's items, when results are collapsed
    profile_match: ProfileMatch = NO_MATCH  # why the shopper's profile boosted it (or pushed it down)


@dataclass(frozen=True)
class Candidate:
    item: ItemRecord
    visual_score: float
    image: int = 0  # which image of the item matched (see `indexer.store.Hit.image`)
    variants: tuple[ItemRecord, ...] = ()  # set by `RankedPool.collapsed`


def rank(
    candidates: Sequence[Candidate],
    garment_values: Mapping[str, AttributeGuess],
    config: RankingConfig,
    refinement: Refinement | None = None,
    profile: StyleProfile | None = None,
    top_k: int | None = None,
) -> list[RankedItem]:
    """Score every candidate and return the best `top_k` (all when None), best first, ties by item_id.
    The explanations (matched / mismatched) are built for the returned items only."""
    pool = RankedPool.of(candidates, garment_values, config, refinement, profile)
    return pool.page(0, len(pool) if top_k is None else top_k)


@dataclass(frozen=True)
class RankedPool:
    """A garment's candidates in ranked order, explained a page at a time: the first page of a search and
    every later page (`page(offset, k)`) come from one ordering, so pages never overlap and follow the
    order of one large top_k. Holds what explaining needs; no pixels."""

    candidates: tuple[Candidate, ...]  # in ranked order, best first
    scores: tuple[float, ...]
    garment_values: Mapping[str, AttributeGuess]
    config: RankingConfig
    refinement: Refinement | None
    profile: StyleProfile | None

    @classmethod
    def of(
        cls,
        candidates: Sequence[Candidate],
        garment_values: Mapping[str, AttributeGuess],
        config: RankingConfig,
        refinement: Refinement | None = None,
        profile: StyleProfile | None = None,
    ) -> RankedPool:
        scored = [_score(c, garment_values, config, refinement, profile, explain=False) for c in candidates]
        order = sorted(range(len(scored)), key=lambda i: (-scored[i].score, -scored[i].visual_score,
                                                          scored[i].item.item_id))  # fmt: skip
        return cls(
            tuple(candidates[i] for i in order),
            tuple(scored[i].score for i in order),
            dict(garment_values),
            config,
            refinement,
            profile,
        )

    def __len__(self) -> int:
        return len(self.candidates)

    @property
    def best_score(self) -> float | None:
        return self.scores[0] if self.scores else None

    def collapsed(self, variants: Callable[[str], Sequence[ItemRecord]]) -> RankedPool:
        """One candidate per product group (`ItemRecord.group_id`): its best-ranked variant, which carries
        the group's items (`variants(group_id)`); items without a group are left as they are. Filters were
        applied per variant before, so the variant kept is one that passed them."""
        seen: set[str] = set()
        kept: list[tuple[Candidate, float]] = []
        for candidate, score in zip(self.candidates, self.scores, strict=True):
            group = candidate.item.group_id
            if group:
                if group in seen:
                    continue
                seen.add(group)
                candidate = dataclasses.replace(candidate, variants=tuple(variants(group)))
            kept.append((candidate, score))
        return dataclasses.replace(
            self, candidates=tuple(c for c, _ in kept), scores=tuple(s for _, s in kept)
        )

    def at_least(self, min_score: float | None) -> RankedPool:
        """The pool without the candidates scoring under `min_score` (a prefix: the order is by score)."""
        if min_score is None:
            return self
        kept = sum(1 for score in self.scores if score >= min_score)
        return dataclasses.replace(self, candidates=self.candidates[:kept], scores=self.scores[:kept])

    def page(self, offset: int, k: int) -> list[RankedItem]:
        """Items offset .. offset + k - 1 of the ranking, explained."""
        return [
            _score(c, self.garment_values, self.config, self.refinement, self.profile)
            for c in self.candidates[offset : offset + k]
        ]

    def next_offset(self, offset: int, k: int) -> int | None:
        """Where the page after `page(offset, k)` starts; None when that page is the last."""
        return offset + k if offset + k < len(self.candidates) else None


def _score(
    candidate: Candidate,
    garment_values: Mapping[str, AttributeGuess],
    config: RankingConfig,
    refinement: Refinement | None,
    profile: StyleProfile | None,
    explain: bool = True,
) -> RankedItem:
    item = candidate.item
    total_weight = 0.0
    total_agreement = 0.0
    matched: list[Agreement] = []
    mismatched: list[Agreement] = []

    def add(
        group: str, weight: float, evidence: float, agreement: float, item_value: str, asked: str, source: str
    ):
        nonlocal total_weight, total_agreement
        total_weight += weight * evidence
        total_agreement += weight * evidence * agreement
        if explain:
            (matched if agreement > 0 else mismatched).append(Agreement(group, item_value, asked, source))

    wanted = refinement.wanted if refinement else {}
    unwanted = refinement.unwanted if refinement else {}
    for group, query in garment_values.items():
        weight = config.weight(group)
        theirs = _item_value(item, group)
        if weight <= 0 or theirs is None or group in wanted:
            continue
        add(
            group,
            weight,
            min(query.confidence, theirs.confidence),
            _agreement(query, theirs),
            theirs.value,
            query.value,
            theirs.source,
        )
    for group, values in wanted.items():
        theirs = _item_value(item, group)
        weight = config.weight(group) * config.text_weight
        if theirs is None or weight <= 0:
            continue
        agreement = (
            1.0 if theirs.value in values else SECONDARY_AGREEMENT * bool(set(theirs.alternatives) & values)
        )
        add(group, weight, 1.0, agreement, theirs.value, " or ".join(sorted(values)), theirs.source)
    for group, values in unwanted.items():
        theirs = _item_value(item, group)
        weight = config.weight(group) * config.text_weight
        if theirs is None or weight <= 0:
            continue
        agreement = 0.0 if theirs.value in values else 1.0
        add(group, weight, 1.0, agreement, theirs.value, "not " + " or ".join(sorted(values)), theirs.source)

    attribute_score = (config.prior * 0.5 + total_agreement) / (config.prior + total_weight)
    fit = profile_match(item, profile, config.profile_max_boost, candidate.variants)
    boost = fit.boost
    score = (1 - config.attribute_weight) * candidate.visual_score + config.attribute_weight * attribute_score
    return RankedItem(
        item=item,
        visual_score=round(candidate.visual_score, 6),
        attribute_score=round(attribute_score, 6),
        score=round(score + boost, 6),
        profile_boost=round(boost, 6),
        matched=matched,
        mismatched=mismatched,
        image=candidate.image,
        variants=candidate.variants,
        profile_match=fit,
    )


def _item_value(item: ItemRecord, group: str) -> AttributeGuess | None:
    if group == CATEGORY_GROUP:  # the feed's category, or the category head's when the feed's was unknown
        return item.attributes.get(CATEGORY_GROUP) or AttributeGuess(item.category, 1.0, "feed")
    return item.attributes.get(group)


def _agreement(query: AttributeGuess, theirs: AttributeGuess) -> float:
    if query.value == theirs.value:
        return 1.0
    if query.value in theirs.alternatives or theirs.value in query.alternatives:
        return SECONDARY_AGREEMENT
    return 0.0
