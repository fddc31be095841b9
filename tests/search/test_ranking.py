from __future__ import annotations

import pytest

from indexer.metadata import ItemRecord
from models.attributes.guess import AttributeGuess
from models.attributes.refinement import Refinement
from search.profile import StyleProfile
from search.ranking import Candidate, RankingConfig, rank


def item(
    item_id: str, colour: str, pattern: str = "solid", brand: str = "acme", price: float = 20.0
) -> ItemRecord:
    return ItemRecord(
        row=0,
        item_id=item_id,
        title=item_id,
        category="top",
        brand=brand,
        price=price,
        currency="EUR",
        in_stock=True,
        url="",
        attributes={
            "colour": AttributeGuess(colour, 1.0, "feed"),
            "pattern": AttributeGuess(pattern, 0.8, "predicted"),
        },
    )


RED = {"colour": AttributeGuess("red", 0.9, "predicted")}
CONFIG = RankingConfig(attribute_weight=0.3, group_weights={"colour": 2.0, "pattern": 1.0}, prior=1.0)


def test_attribute_agreement_lifts_a_slightly_less_similar_item_with_the_documented_score() -> None:
    blue, red = Candidate(item("blue", "blue"), 0.80), Candidate(item("red", "red"), 0.78)
    ranked = rank([blue, red], RED, CONFIG)
    assert [r.item.item_id for r in ranked] == ["red", "blue"]
    evidence = 2.0 * 0.9
    expected_red = (0.5 + evidence) / (1 + evidence)
    expected_blue = 0.5 / (1 + evidence)
    assert ranked[0].attribute_score == pytest.approx(expected_red, abs=1e-6)
    assert ranked[1].attribute_score == pytest.approx(expected_blue, abs=1e-6)
    assert ranked[0].score == pytest.approx(0.7 * 0.78 + 0.3 * expected_red, abs=1e-6)
    assert [(a.group, a.item_value, a.query_value) for a in ranked[0].matched] == [("colour", "red", "red")]
    assert [(a.group, a.item_value) for a in ranked[1].mismatched] == [("colour", "blue")]


def test_attribute_weight_zero_is_pure_visual_order() -> None:
    config = RankingConfig(attribute_weight=0.0, group_weights={"colour": 2.0})
    ranked = rank([Candidate(item("blue", "blue"), 0.80), Candidate(item("red", "red"), 0.78)], RED, config)
    assert [r.item.item_id for r in ranked] == ["blue", "red"]
    assert ranked[0].score == pytest.approx(0.80)


def test_no_shared_attribute_is_neutral() -> None:
    ranked = rank([Candidate(item("a", "blue"), 0.5)], {}, CONFIG)
    assert ranked[0].attribute_score == pytest.approx(0.5) and not ranked[0].matched


def test_text_preference_overrides_the_photo_colour_and_exclusions_demote() -> None:
    candidates = [
        Candidate(item("red-striped", "red", "striped"), 0.80),
        Candidate(item("blue-solid", "blue", "solid"), 0.79),
        Candidate(item("blue-striped", "blue", "striped"), 0.79),
    ]
    text = Refinement(
        wanted={"colour": frozenset({"blue"})}, unwanted={"pattern": frozenset({"striped"})}, unmatched=()
    )
    ranked = rank(candidates, RED, CONFIG, refinement=text)
    assert [r.item.item_id for r in ranked] == ["blue-solid", "blue-striped", "red-striped"]
    assert ("pattern", "striped", "not striped") in [
        (a.group, a.item_value, a.query_value) for a in ranked[1].mismatched
    ]


def test_secondary_colour_counts_half() -> None:
    query = {"colour": AttributeGuess("navy", 1.0, "predicted", ("white",))}
    config = RankingConfig(attribute_weight=1.0, group_weights={"colour": 1.0}, prior=1.0)
    ranked = rank([Candidate(item("white", "white"), 0.5)], query, config)
    assert ranked[0].attribute_score == pytest.approx((0.5 + 0.5) / 2)


def test_profile_boost_is_bounded_and_proportional() -> None:
    config = RankingConfig(attribute_weight=0.0, profile_max_boost=0.05)
    profile = StyleProfile(brands=frozenset({"acme"}), colours=frozenset({"red"}), price_max=10.0)
    ranked = rank([Candidate(item("a", "red", price=50.0), 0.5)], {}, config, profile=profile)
    assert ranked[0].profile_boost == pytest.approx(0.05 * 2 / 3, abs=1e-6)
    assert ranked[0].score == pytest.approx(0.5 + 0.05 * 2 / 3, abs=1e-6)


def test_top_k_and_deterministic_ties() -> None:
    candidates = [Candidate(item(name, "red"), 0.5) for name in ("c", "a", "b")]
    assert [r.item.item_id for r in rank(candidates, RED, CONFIG, top_k=2)] == ["a", "b"]
