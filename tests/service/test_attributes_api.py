"""Attributes over HTTP: explanations, filters inside the search, text refinement, clear 422s."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from tests.helpers import garment_image
from tests.service.test_api import jpeg_bytes, upload


def test_garment_attributes_and_match_explanations(client: TestClient) -> None:
    response = upload(client, jpeg_bytes(garment_image(6), quality=95), top_k="3")
    assert response.status_code == 200, response.text
    garment = response.json()["garments"][0]
    assert garment["attributes"]["colour"]["value"] == "pink" and garment["colours"][0]["name"] == "pink"
    assert "pattern" in garment["unknown_attributes"]  # random-weight test model: no zero-shot guesses
    best = garment["matches"][0]
    assert best["item_id"] == "item-0006"
    assert {"group": "colour", "value": "pink", "query": "pink", "source": "feed"} in best["matched"]
    assert best["attributes"]["colour"] == {
        "value": "pink",
        "confidence": 1.0,
        "source": "feed",
        "alternatives": [],
    }


def test_filters_apply_inside_the_search_and_still_fill_top_k(client: TestClient) -> None:
    filters = {"price_max": 30, "in_stock": True, "brand": ["TESTWEAR"]}
    response = upload(client, jpeg_bytes(garment_image(6)), top_k="10", filters=json.dumps(filters))
    assert response.status_code == 200, response.text
    matches = response.json()["garments"][0]["matches"]
    assert len(matches) == 10  # 16 items qualify (price 10..30, not every fifth)
    assert all(m["price"] <= 30 and m["in_stock"] for m in matches)


def test_attribute_and_gender_filters_use_synonyms(client: TestClient) -> None:
    filters = {"attributes": {"color": ["Crimson"]}}  # red: items 0, 8, 16, 24, 32
    response = upload(client, jpeg_bytes(garment_image(6)), top_k="10", filters=json.dumps(filters))
    assert response.status_code == 200, response.text
    ids = {m["item_id"] for m in response.json()["garments"][0]["matches"]}
    assert ids == {"item-0000", "item-0008", "item-0016", "item-0024", "item-0032"}


def test_text_refinement_reorders_and_is_echoed(client: TestClient) -> None:
    response = upload(client, jpeg_bytes(garment_image(6)), top_k="5", text="in yellow, not checked, sparkly")
    assert response.status_code == 200, response.text
    garment = response.json()["garments"][0]
    assert garment["refinement"] == {
        "wanted": {"colour": ["yellow"]},
        "unwanted": {"pattern": ["checked"]},
        "unmatched": ["sparkly"],
    }
    assert all(m["attributes"]["colour"]["value"] == "yellow" for m in garment["matches"][:5])


def test_weights_zero_is_visual_order(client: TestClient) -> None:
    response = upload(client, jpeg_bytes(garment_image(6)), top_k="5", attribute_weight="0")
    matches = response.json()["garments"][0]["matches"]
    assert [m["score"] for m in matches] == [m["visual_score"] for m in matches]


@pytest.mark.parametrize(
    ("form", "code", "needle"),
    [
        ({"filters": "{not json"}, "invalid_request", "filters"),
        ({"filters": json.dumps({"colour": "red"})}, "invalid_request", "Extra inputs are not permitted"),
        (
            {"filters": json.dumps({"attributes": {"sparkle": "x"}})},
            "invalid_filter",
            "unknown attribute group",
        ),
        ({"filters": json.dumps({"attributes": {"colour": "octarine"}})}, "invalid_filter", "unknown colour"),
        ({"filters": json.dumps({"price_min": 50, "price_max": 5})}, "invalid_request", "above price_max"),
        ({"filters": json.dumps({"price_max": -1})}, "invalid_request", "price_max"),
        ({"weights": json.dumps({"sparkle": 1})}, "invalid_request", "unknown attribute group"),
        ({"weights": "[1, 2]"}, "invalid_request", "JSON object"),
        ({"attribute_weight": "1.5"}, "invalid_request", "attribute_weight"),
        ({"text": "x" * 201}, "invalid_request", "limit is 200"),
        ({"profile": json.dumps({"colours": ["octarine"]})}, "invalid_request", "profile.colours"),
    ],
)
def test_bad_search_options_are_clear_422s(client: TestClient, form: dict, code: str, needle: str) -> None:
    response = upload(client, jpeg_bytes(garment_image(1)), **form)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code and needle in response.json()["message"]
