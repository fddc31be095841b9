"""Variants and several images through POST /v1/search: one match per product group listing its variants,
collapse_variants=false in the JSON body and the form, and which image matched."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from search.settings import Settings
from service.app import create_app
from tests.helpers import garment_image, index_feed, jpeg_bytes


@pytest.fixture
def grouped(tmp_path: Path, settings: Settings, tiny_embedder: object) -> Iterator[TestClient]:
    images = tmp_path / "images"
    images.mkdir()
    for index in range(6):
        garment_image(index).save(images / f"look-{index}.jpg", quality=92)
    rows = [
        {"id": "tee-red", "image": "images/look-0.jpg", "title": "Tee", "category": "top", "group_id": "tee",
         "attributes": {"colour": "red", "size": "M"}},
        {"id": "tee-blue", "image": "images/look-1.jpg", "title": "Tee", "category": "top", "group_id": "tee",
         "attributes": {"colour": "blue", "size": "L"}, "in_stock": False},
        {"id": "shirt", "image": "images/look-2.jpg", "title": "Shirt", "category": "top",
         "extra_images": ["images/look-3.jpg", "images/look-4.jpg"]},
    ]  # fmt: skip
    feed = tmp_path / "catalog.jsonl"
    feed.write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    index_feed(feed, tmp_path / "index", tiny_embedder)
    own = settings.model_copy(update={"index_dir": tmp_path / "index"})
    with TestClient(create_app(own), raise_server_exceptions=False) as client:
        yield client


def _matches(answer: object) -> list[dict[str, object]]:
    assert isinstance(answer, dict)
    return answer["garments"][0]["matches"]


def test_a_group_is_one_match_with_its_variants_unless_collapse_is_off(grouped: TestClient) -> None:
    photo = base64.b64encode(jpeg_bytes(garment_image(0))).decode()
    answer = grouped.post("/v1/search", json={"image": {"base64": photo}, "top_k": 5})
    assert answer.status_code == 200, answer.text
    matches = _matches(answer.json())
    assert len(matches) == 2 and sum(str(m["item_id"]).startswith("tee-") for m in matches) == 1
    tee = next(m for m in matches if m["group_id"] == "tee")
    assert sorted((v["item_id"], v["colour"], v["size"], v["in_stock"]) for v in tee["variants"]) == [
        ("tee-blue", "blue", "l", False),  # feed attribute values are lower-cased
        ("tee-red", "red", "m", True),
    ]
    every = grouped.post(
        "/v1/search", json={"image": {"base64": photo}, "top_k": 5, "collapse_variants": False}
    )
    assert sorted(m["item_id"] for m in _matches(every.json())) == ["shirt", "tee-blue", "tee-red"]
    form = grouped.post(
        "/v1/search",
        files={"image": ("p.jpg", jpeg_bytes(garment_image(0)), "image/jpeg")},
        data={"collapse_variants": "false", "top_k": "5"},
    )
    assert form.status_code == 200 and len(_matches(form.json())) == 3
    wrong = grouped.post(
        "/v1/search",
        files={"image": ("p.jpg", jpeg_bytes(garment_image(0)), "image/jpeg")},
        data={"collapse_variants": "sometimes"},
    )
    assert wrong.status_code == 422 and "collapse_variants must be true or false" in wrong.text


def test_a_match_says_which_of_its_images_matched(grouped: TestClient) -> None:
    photo = base64.b64encode(jpeg_bytes(garment_image(4), quality=95)).decode()
    matches = _matches(grouped.post("/v1/search", json={"image": {"base64": photo}, "top_k": 1}).json())
    assert matches[0]["item_id"] == "shirt" and matches[0]["matched_image"] == 2
    assert str(matches[0]["matched_image_link"]).endswith("images/look-4.jpg")
