"""The style profile's boost (search/profile.py): bounded both ways, avoid answers push down, learning from
clicks decays, the explanation names what matched, the paging cache's JSON round-trips."""

from __future__ import annotations

import pytest

from indexer.metadata import ItemRecord
from models.attributes.guess import AttributeGuess
from models.attributes.taxonomy import load_taxonomy
from search.errors import InvalidRequestError
from search.profile import (
    LEARN_DECAY,
    LEARN_MAX_VALUES,
    LEARN_STEP,
    StyleProfile,
    learned_from,
    profile_json,
    profile_match,
    profile_of_json,
    summary,
)
from search.query import style_profile
from search.ranking import Candidate, RankingConfig, rank
from search.request_body import ProfileIn

MAX = 0.1


def item(
    item_id: str = "a",
    colour: str | None = "navy",
    style: str | None = "casual",
    fit: str | None = "loose",
    brand: str = "Acme",
    price: float | None = 50.0,
    size: str | None = None,
) -> ItemRecord:
    attributes = {
        group: AttributeGuess(value, 1.0, "feed")
        for group, value in (("colour", colour), ("style", style), ("fit", fit))
        if value is not None
    }
    return ItemRecord(
        row=0, item_id=item_id, title=item_id, category="top", brand=brand, price=price, currency="EUR",
        in_stock=True, url="", attributes=attributes, extra_attributes={"size": size} if size else {},
    )  # fmt: skip


def test_an_item_matching_every_answer_gets_the_whole_boost_and_says_why() -> None:
    profile = StyleProfile(
        colours=frozenset({"navy"}),
        fits=frozenset({"loose"}),
        styles=frozenset({"casual"}),
        brands=frozenset({"acme"}),
        sizes=frozenset({"M"}),
        price_min=20,
        price_max=80,
    )
    fit = profile_match(item(size="S, M"), profile, MAX)
    assert fit.boost == pytest.approx(MAX)
    assert fit.matched == ("navy", "casual", "loose fit", "acme", "in your price range", "your size M")
    assert fit.explanation == (
        "matches your style: navy, casual, loose fit, acme, in your price range, your size M"
    )


def test_the_boost_is_proportional_and_never_beyond_the_bound_either_way() -> None:
    profile = StyleProfile(colours=frozenset({"navy"}), styles=frozenset({"formal"}), price_max=10.0)
    assert profile_match(item(), profile, MAX).boost == pytest.approx(MAX / 3, abs=1e-6)  # colour only
    avoid = StyleProfile(avoid_colours=frozenset({"navy"}))
    pushed = profile_match(item(), avoid, MAX)
    assert pushed.boost == pytest.approx(-MAX) and pushed.avoided == ("navy",)
    assert pushed.explanation == "you avoid: navy"
    strong = StyleProfile(colours=frozenset({"navy"}), learned={"colour": {"navy": 4.0}})
    assert profile_match(item(), strong, MAX).boost == pytest.approx(MAX)  # clipped at +1 a dimension


def test_no_profile_an_empty_one_or_an_unknown_value_changes_nothing() -> None:
    assert profile_match(item(), None, MAX).boost == 0
    assert profile_match(item(), StyleProfile(), MAX).boost == 0
    only_colour = StyleProfile(colours=frozenset({"navy"}))
    assert profile_match(item(colour=None), only_colour, MAX).boost == 0
    assert profile_match(item(), only_colour, 0.0).explanation is None


def test_the_boost_reorders_near_equals_only() -> None:
    config = RankingConfig(attribute_weight=0.0, profile_max_boost=MAX)
    profile = StyleProfile(colours=frozenset({"red"}))
    close = [Candidate(item("navy", colour="navy"), 0.80), Candidate(item("red", colour="red"), 0.75)]
    far = [Candidate(item("navy", colour="navy"), 0.90), Candidate(item("red", colour="red"), 0.75)]
    assert [r.item.item_id for r in rank(close, {}, config, profile=profile)] == ["red", "navy"]
    assert [r.item.item_id for r in rank(far, {}, config, profile=profile)] == ["navy", "red"]


def test_clicks_teach_with_decay_and_bounded_memory() -> None:
    profile = StyleProfile()
    profile = learned_from(profile, item(colour="navy", price=40.0), "click")
    assert profile.learned["colour"] == {"navy": LEARN_STEP} and profile.learned_price == 40.0
    profile = learned_from(profile, item(colour="red", price=60.0), "add_to_cart")
    assert profile.learned["colour"]["navy"] == pytest.approx(LEARN_STEP * LEARN_DECAY)
    assert profile.learned["colour"]["red"] == pytest.approx(2 * LEARN_STEP)
    assert profile.learned_price == pytest.approx(46.0)
    profile = learned_from(profile, item(colour="red"), "remove_from_cart")
    assert profile.learned["colour"]["red"] == pytest.approx(2 * LEARN_STEP * LEARN_DECAY - LEARN_STEP)
    assert learned_from(profile, item(), "view_item") is profile  # views teach nothing
    for n in range(40):
        profile = learned_from(profile, item(brand=f"brand-{n}"), "click")
    assert len(profile.learned["brand"]) <= LEARN_MAX_VALUES and "brand-39" in profile.learned["brand"]
    # learned from clicks alone: the learned price band and the strongest colour count
    fit = profile_match(item(colour="navy", brand="brand-39", price=48.0), profile, MAX)
    assert fit.boost > 0 and "in your price range" in fit.matched


def test_quiz_answers_are_checked_against_the_taxonomy() -> None:
    taxonomy = load_taxonomy()
    profile = style_profile(
        ProfileIn(colours=["Navy Blue"], fits=["relaxed"], styles=["Casual"], brands=[" Acme "]), taxonomy
    )
    assert profile.colours == {"navy"} and profile.styles == {"casual"} and profile.brands == {"acme"}
    assert profile.fits == {"loose"}
    with pytest.raises(InvalidRequestError, match="profile.fits: unknown fit 'baggy-ish'"):
        style_profile(ProfileIn(fits=["baggy-ish"]), taxonomy)
    with pytest.raises(InvalidRequestError, match="profile.avoid_colours"):
        style_profile(ProfileIn(avoid_colours=["ultraviolet"]), taxonomy)


def test_the_summary_and_the_json_round_trip() -> None:
    profile = StyleProfile(
        colours=frozenset({"navy", "black"}),
        avoid_colours=frozenset({"orange"}),
        styles=frozenset({"casual"}),
        fits=frozenset({"loose"}),
        price_min=20,
        price_max=120,
        sizes=frozenset({"M"}),
        learned={"brand": {"acme": 1.0}},
    )
    assert summary(profile) == (
        "likes black, navy; avoids orange; casual; loose fit; brands acme; price 20-120; size M"
    )
    assert profile_of_json(profile_json(profile)) == profile
    assert summary(StyleProfile()) == "no preferences yet"
