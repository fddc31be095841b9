"""Shopper signals: counts by category with an "other" bucket, click-through, the admin-only stats route, and
what the page's requests cost in rate-limit tokens."""

from __future__ import annotations

import random
import string

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from search.settings import Settings
from service.app import create_app
from service.signals import ShopperSignals
from tests.helpers import CATEGORIES, garment_image, jpeg_bytes

ADMIN_KEY = "admin-key-0123456789abcdef"
SHOP_KEY = "shop-key-0123456789abcdef"
ADMIN = {"X-Admin-Key": ADMIN_KEY}


def test_counts_by_category_with_other_and_click_through() -> None:
    signals = ShopperSignals(lambda: ["skirt", "top"], clock=lambda: 1_800_000_000.0)
    signals.record_search(["top", "top", "dress", None])
    signals.record_search(["skirt"])
    for event_type, category in [
        ("click", "top"),
        ("click", "top"),
        ("click", "skirt"),
        ("add_to_cart", "top"),
        ("click", "hat"),
        ("select_garment", "top"),  # activity only, not a signal
    ]:
        signals.record_event(event_type, category)  # type: ignore[arg-type]
    stats = signals.stats().model_dump()
    assert stats["since"] == "2027-01-15T08:00:00.000Z"
    assert stats["totals"] == {
        "searches": 2,
        "garments": 5,
        "clicks": 4,
        "add_to_cart": 1,
        "click_through": 2.0,  # clicks / search requests
    }
    assert stats["by_category"] == {
        "other": {"searches": 2, "clicks": 1, "add_to_cart": 0, "click_through": 0.5},
        "skirt": {"searches": 1, "clicks": 1, "add_to_cart": 0, "click_through": 1.0},
        "top": {"searches": 2, "clicks": 2, "add_to_cart": 1, "click_through": 1.0},
    }


def test_click_through_is_zero_without_searches() -> None:
    signals = ShopperSignals(lambda: ["top"])
    signals.record_event("click", "top")
    stats = signals.stats()
    assert stats.totals.click_through == 0.0 and stats.by_category["top"].click_through == 0.0


def test_hostile_categories_cannot_grow_memory() -> None:
    signals = ShopperSignals(lambda: CATEGORIES)
    rng = random.Random(0)
    for _ in range(2000):
        made_up = "".join(rng.choices(string.printable, k=rng.randrange(1, 100)))
        signals.record_event("click", made_up)
        signals.record_search([made_up])
    stats = signals.stats()
    assert set(stats.by_category) == {"other"}
    assert stats.by_category["other"].clicks == 2000


def test_the_catalogue_decides_what_is_known() -> None:
    known = ["top"]
    signals = ShopperSignals(lambda: known)
    signals.record_search(["skirt"])
    known.append("skirt")  # an admin added skirts to the catalogue
    signals.record_search(["skirt"])
    assert {name: c.searches for name, c in signals.stats().by_category.items()} == {"other": 1, "skirt": 1}


@pytest.fixture
def admin_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"admin_key": SecretStr(ADMIN_KEY)})


def test_searches_and_events_are_counted_over_http(admin_settings: Settings) -> None:
    photo = {"image": ("a.jpg", jpeg_bytes(garment_image(4)), "image/jpeg")}
    events = [
        {"type": "click", "item_id": "item-0001", "category": "top"},
        {"type": "add_to_cart", "item_id": "item-0001", "category": "top"},
        {"type": "click", "item_id": "item-0002", "category": "<script>"},
        {"type": "select_garment", "garment": 0},
    ]
    with TestClient(create_app(admin_settings)) as client:
        searched = [client.post("/v1/search", files=photo) for _ in range(2)]
        accepted = [client.post("/v1/events", json=event) for event in events]
        refused = client.post("/v1/events", json={"type": "click", "category": "top"})  # no item_id
        stats = client.get("/v1/stats", headers=ADMIN)
    assert [r.status_code for r in searched] == [200, 200]
    assert [r.status_code for r in accepted] == [202] * 4
    assert accepted[0].json() == {"accepted": True}
    assert refused.status_code == 422
    assert stats.status_code == 200, stats.text
    body = stats.json()
    garments = sum(len(r.json()["garments"]) for r in searched)  # full-frame detector: no category
    assert body["totals"] == {
        "searches": 2,
        "garments": garments,
        "clicks": 2,
        "add_to_cart": 1,
        "click_through": 1.0,
    }
    assert body["by_category"]["other"]["searches"] == garments
    assert body["by_category"]["other"]["clicks"] == 1
    assert body["by_category"]["top"] == {"searches": 0, "clicks": 1, "add_to_cart": 1, "click_through": 0.0}


def test_stats_need_the_admin_key(admin_settings: Settings, settings: Settings) -> None:
    keyed = admin_settings.model_copy(update={"search_keys": [SecretStr(SHOP_KEY)]})
    with TestClient(create_app(keyed)) as client:
        missing = client.get("/v1/stats")
        shop_key = client.get("/v1/stats", headers={"X-API-Key": SHOP_KEY})
        shop_key_as_admin = client.get("/v1/stats", headers={"X-Admin-Key": SHOP_KEY})
        admin = client.get("/v1/stats", headers=ADMIN)
        event = client.post("/v1/events", json={"type": "select_garment"}, headers={"X-API-Key": SHOP_KEY})
    assert [r.status_code for r in (missing, shop_key, shop_key_as_admin)] == [401, 401, 401]
    assert missing.headers["WWW-Authenticate"] == "X-Admin-Key"
    assert admin.status_code == 200 and event.status_code == 202
    with TestClient(create_app(settings)) as client:
        off = client.get("/v1/stats", headers=ADMIN)
    assert off.status_code == 403 and off.json()["code"] == "admin_disabled"


def test_page_requests_cost_a_fifth_of_a_search(settings: Settings) -> None:
    """A bucket of 2 tokens that hardly refills: two searches, or ten events and thumbnails."""
    limited = settings.model_copy(
        update={"rate_limit_per_s": 0.001, "rate_limit_burst": 2, "search_keys": [SecretStr(SHOP_KEY)]}
    )
    photo = {"image": ("a.jpg", jpeg_bytes(garment_image(4)), "image/jpeg")}
    shop = {"X-API-Key": SHOP_KEY}
    event = {"type": "select_garment"}
    with TestClient(create_app(limited)) as client:
        events = [client.post("/v1/events", json=event, headers=shop).status_code for _ in range(11)]
        search = client.post("/v1/search", files=photo, headers=shop)
    assert events == [202] * 10 + [429]
    assert search.status_code == 429  # events and searches share the key's bucket

    with TestClient(create_app(limited)) as client:
        searches = [client.post("/v1/search", files=photo, headers=shop).status_code for _ in range(3)]
        spent = client.post("/v1/events", json=event, headers={"X-API-Key": "wrong"}).status_code
    assert searches == [200, 200, 429]
    assert spent == 429  # the client's address has no tokens left, whatever key it sends
    with TestClient(create_app(limited)) as client:
        guesses = [
            client.post("/v1/events", json=event, headers={"X-API-Key": "wrong"}).status_code
            for _ in range(3)
        ]
    assert guesses == [401, 401, 429]  # a wrong key pays a whole token: guessing stays slow
