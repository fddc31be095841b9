"""The assistant's insight card: scripted event sequences -> the intent stage of each rule, the cart, the
opener (service/shopper_insight.py)."""

from __future__ import annotations

from typing import Any

import pytest

from service.shopper_insight import LONG_DWELL_S, LONG_VIEWS, RECENT, insight


def event(kind: str, item_id: str | None = None, category: str | None = "top", dwell_s: float | None = None):
    return {"type": kind, "item_id": item_id, "category": category, "garment": None, "dwell_s": dwell_s}


SCRIPTS: list[tuple[str, list[dict[str, Any]], str, str]] = [
    ("nothing yet", [], "browsing", "no activity yet"),
    ("one look", [event("click", "a")], "browsing", "looking around"),
    ("filter changes", [event("select_garment")] * 5, "browsing", "looking around"),
    ("two tops", [event("click", "a"), event("view_item", "b", dwell_s=5)], "comparing", "compared 2 tops"),
    (
        "three dresses among a bag",
        [
            event("click", "a", "dress"),
            event("click", "x", "bag"),
            event("click", "b", "dress"),
            event("view_item", "c", "dress", 3),
        ],
        "comparing",
        "compared 3 dresses",
    ),  # fmt: skip
    ("in the cart", [event("click", "a"), event("add_to_cart", "a")], "ready_to_buy", "1 item in the cart"),
    (
        "added then removed",
        [event("add_to_cart", "a"), event("view_item", "b", dwell_s=3), event("remove_from_cart", "a")],
        "hesitating",
        "added the top to the cart, then removed it",
    ),
    (
        "removed, then added back",
        [event("add_to_cart", "a"), event("remove_from_cart", "a"), event("add_to_cart", "a")],
        "ready_to_buy",
        "1 item in the cart",
    ),
    (
        "the same item, long and often",
        [event("view_item", "a", dwell_s=20)] * LONG_VIEWS,
        "hesitating",
        f"looked at the top {LONG_VIEWS} times (60 s) without adding it",
    ),
    (
        "the same item, often but briefly",
        [event("view_item", "a", dwell_s=2)] * LONG_VIEWS,
        "browsing",
        "looking around",
    ),
    ("bought", [event("add_to_cart", "a"), event("purchase", "a")], "browsing", "bought the top"),
]


@pytest.mark.parametrize(
    ("activity", "intent", "reason"), [s[1:] for s in SCRIPTS], ids=[s[0] for s in SCRIPTS]
)
def test_each_rule_gives_its_intent(activity: list[dict[str, Any]], intent: str, reason: str) -> None:
    card = insight(activity, None, False)
    assert (card.intent, card.reason) == (intent, reason)


def test_long_views_need_the_dwell_time_in_all() -> None:
    assert LONG_DWELL_S / LONG_VIEWS <= 20  # the script above passes the threshold
    short = [event("view_item", "a", dwell_s=(LONG_DWELL_S - 1) / LONG_VIEWS)] * LONG_VIEWS
    assert insight(short, None, False).intent == "browsing"


def test_the_cart_counts_adds_removes_and_purchases() -> None:
    activity = [
        event("add_to_cart", "a"), event("add_to_cart", "a"), event("add_to_cart", "b", "skirt"),
        event("remove_from_cart", "a"), event("add_to_cart", "c", "bag"), event("purchase", "c", "bag"),
        event("remove_from_cart", "zzz"),
    ]  # fmt: skip
    card = insight(activity, None, False)
    assert [(line.item_id, line.category, line.quantity) for line in card.cart] == [
        ("a", "top", 1),
        ("b", "skirt", 1),
    ]
    assert card.intent == "ready_to_buy"  # one of two a's taken out is no hesitation: a is still in the cart
    assert "removed" not in insight(activity[:3], None, False).reason


def test_old_hesitation_is_forgotten() -> None:
    activity = [event("add_to_cart", "a"), event("remove_from_cart", "a")]
    activity += [event("select_garment")] * RECENT
    assert insight(activity, None, False).intent == "browsing"


def test_returning_visitors_and_profiles_shape_the_opener() -> None:
    card = insight([], "likes navy, black; casual", True)
    assert card.returning and card.profile == "likes navy, black; casual"
    assert card.opener.startswith("Welcome back!") and "you like navy, black" in card.opener
    assert insight([], None, False).opener == "Hi! I'm here if you'd like a hand finding something."
    ready = insight([event("add_to_cart", "a")], None, False)
    assert "check out" in ready.opener
