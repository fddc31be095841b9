"""`region` over HTTP: the shopper's box is searched as the one garment, skipping detection; a malformed,
empty, too small or off-photo region is a 422 that says what is wrong (and the photo's size)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.helpers import garment_image, jpeg_bytes
from tests.service.test_api import upload

# Catalogue item 6's picture pasted at (90, 40) on a 200x150 photo of other things.
ITEM_AT = (90, 40, 154, 104)


def street_photo() -> bytes:
    photo = Image.new("RGB", (200, 150), (40, 40, 40))
    photo.paste(garment_image(11).resize((80, 150)), (0, 0))
    photo.paste(garment_image(6), ITEM_AT[:2])
    return jpeg_bytes(photo, quality=95)


def region(*values: float) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def test_a_region_is_searched_as_the_one_garment_with_that_box(client: TestClient) -> None:
    whole = upload(client, street_photo(), top_k="3")
    assert whole.status_code == 200 and whole.json()["garments"][0]["box"] == [0, 0, 200, 150]

    response = upload(client, street_photo(), top_k="3", region=region(*ITEM_AT))
    assert response.status_code == 200, response.text
    body = response.json()
    (garment,) = body["garments"]
    assert garment["box"] == list(ITEM_AT) and garment["score"] == 1.0
    assert garment["category"] is None  # the tiny embedder has no category head, like the full frame
    assert garment["matches"][0]["item_id"] == "item-0006"  # the crop is the catalogue picture
    assert body["image_size"] == [200, 150]
    assert set(body["timings_ms"]) == {"decode", "detect", "embed", "attributes", "search", "rank", "total"}


def test_a_region_takes_filters_and_fractional_pixels_round_outwards(client: TestClient) -> None:
    response = upload(client, street_photo(), top_k="5", region="[90.4, 40.6, 153.2, 103.9]", category="bag")
    assert response.status_code == 200, response.text
    (garment,) = response.json()["garments"]
    assert garment["box"] == [90, 40, 154, 104]
    assert garment["matches"] and {m["category"] for m in garment["matches"]} == {"bag"}


def test_a_region_partly_off_the_photo_is_clipped_to_it(client: TestClient) -> None:
    response = upload(client, street_photo(), region=region(150, 100, 220, 160))  # 50x50 of 70x60 on it
    assert response.status_code == 200, response.text
    assert [g["box"] for g in response.json()["garments"]] == [[150, 100, 200, 150]]


def test_a_region_is_in_pixels_after_exif_orientation(client: TestClient) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 80x40, shown 40x80
    photo = jpeg_bytes(Image.new("RGB", (80, 40), (9, 9, 9)), exif=exif.tobytes())
    response = upload(client, photo, region=region(0, 50, 40, 80))  # below y=40: only on the upright photo
    assert response.status_code == 200, response.text
    assert response.json()["garments"][0]["box"] == [0, 50, 40, 80]


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (region(250, 10, 300, 60), "region [250, 10, 300, 60] lies outside the 200x150 image"),
        (region(-100, -100, 20, 20), "lies mostly outside the 200x150 image: 3% of it is on the image"),
        (region(10, 10, 14, 60), "is 4x50 pixels on the 200x150 image; the smallest region is 8x8"),
        (region(50, 10, 50, 60), "region [50, 10, 50, 60] is empty: x1 must be greater than x0"),
        (region(10, 60, 50, 20), "is empty"),
        ("[1, 2, 3]", "region must be a JSON array of 4 numbers [x0, y0, x1, y1] (pixels"),
        ("[1, 2, 3, 4, 5]", "after EXIF orientation), got 5 numbers"),
        ('{"x0": 1}', "region must be a JSON array of 4 numbers"),
        ("[1, 2, 3, true]", "region must be a JSON array of 4 numbers"),
        ('["1", "2", "3", "4"]', "region must be a JSON array of 4 numbers"),
        ("1,2,3,4", "region: not valid JSON"),
        ("[1, 2, 3, 1e999]", "region must be 4 finite numbers"),
        ("[1, 2, 3, NaN]", "NaN is not a JSON number"),
    ],
    ids=[
        "outside",
        "mostly-outside",
        "too-small",
        "empty-width",
        "upside-down",
        "three-numbers",
        "five-numbers",
        "object",
        "boolean",
        "strings",
        "not-json",
        "infinite",
        "nan",
    ],  # fmt: skip
)
def test_a_bad_region_is_a_clear_invalid_request(client: TestClient, value: str, said: str) -> None:
    response = upload(client, street_photo(), region=value)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "invalid_request" and said in body["message"], body["message"]


def test_the_region_field_is_documented(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    content = schema["paths"]["/v1/search"]["post"]["requestBody"]["content"]
    described = content["multipart/form-data"]["schema"]["properties"]["region"]["description"]
    assert "[x0, y0, x1, y1]" in described and "EXIF" in described
    name = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    described = schema["components"]["schemas"][name]["properties"]["region"]["anyOf"][0]["description"]
    assert "[x0, y0, x1, y1]" in described and "EXIF" in described
