from __future__ import annotations

from PIL import Image, ImageDraw

from models.attributes.colour import garment_colours
from models.attributes.foreground import foreground_mask


def test_product_on_a_plain_backdrop() -> None:
    image = Image.new("RGB", (80, 100), (235, 235, 235))
    image.paste((36, 140, 50), (15, 10, 65, 95))
    mask = foreground_mask(image)
    assert mask.shape == (100, 80) and abs(mask.mean() - 50 * 85 / 8000) < 0.03
    assert garment_colours(image, mask=mask)[0].name == "green"


def test_a_garment_touching_the_border_is_not_taken_for_backdrop() -> None:
    image = Image.new("RGB", (80, 100), (240, 240, 240))
    ImageDraw.Draw(image).rectangle((0, 20, 60, 99), fill=(200, 32, 40))  # touches left and bottom edges
    mask = foreground_mask(image)
    assert mask[50, 30] and not mask[5, 75]
    assert garment_colours(image, mask=mask)[0].name == "red"


def test_a_frame_filling_garment_falls_back_to_the_centre() -> None:
    image = Image.new("RGB", (60, 60), (26, 38, 92))
    mask = foreground_mask(image)
    assert 0.2 < mask.mean() < 0.3 and mask[30, 30] and not mask[2, 2]
