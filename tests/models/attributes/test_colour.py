from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from models.attributes.colour import COLOUR_NAMES, garment_colours, name_colour
from models.attributes.foreground import foreground_mask
from models.attributes.taxonomy import load_taxonomy

DEMO = {
    "black": (28, 28, 30), "white": (246, 246, 244), "grey": (130, 130, 134), "red": (200, 32, 40),
    "blue": (40, 95, 205), "navy": (26, 38, 92), "green": (36, 140, 50), "yellow": (242, 204, 40),
    "orange": (240, 122, 30), "pink": (240, 150, 184), "purple": (122, 52, 152), "beige": (216, 196, 160),
    "brown": (112, 72, 40), "burgundy": (128, 0, 32), "teal": (0, 128, 128), "khaki": (195, 176, 145),
    "olive": (107, 112, 40), "lilac": (200, 162, 200), "cream": (250, 244, 220),
}  # fmt: skip


def shaded(rgb: tuple[int, int, int], size: tuple[int, int] = (60, 80)) -> Image.Image:
    """A vertical lightness gradient (x0.8 .. x1.1) with a soft shadow band."""
    width, height = size
    factor = np.linspace(0.8, 1.1, height)[:, None, None] * np.ones((1, width, 1))
    factor[height // 2 : height // 2 + 8] *= 0.9
    pixels = np.clip(np.array(rgb, dtype=np.float64)[None, None] * factor, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def test_palette_matches_the_taxonomy() -> None:
    assert load_taxonomy().groups["colour"].value_names == COLOUR_NAMES


@pytest.mark.parametrize(("name", "rgb"), sorted(DEMO.items()))
def test_flat_and_shaded_colours_are_named(name: str, rgb: tuple[int, int, int]) -> None:
    assert name_colour(rgb) == name
    flat = garment_colours(Image.new("RGB", (40, 40), rgb))
    assert flat[0].name == name and flat[0].fraction > 0.8
    if name not in (
        "white",
        "cream",
        "beige",
        "lilac",
        "khaki",
    ):  # light tones turn into others when darkened
        assert garment_colours(shaded(rgb))[0].name == name


def test_mask_excludes_a_busy_background() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)
    mask = np.zeros((80, 60), dtype=bool)
    mask[20:70, 15:45] = True
    pixels[mask] = DEMO["navy"]
    (only,) = garment_colours(Image.fromarray(pixels), mask=mask)
    assert only.name == "navy" and only.fraction == 1.0


def test_two_colours_in_order_with_fractions() -> None:
    pixels = np.zeros((100, 50, 3), dtype=np.uint8)
    for row in range(100):
        pixels[row] = DEMO["navy"] if (row // 10) % 5 < 3 else DEMO["white"]
    shares = garment_colours(Image.fromarray(pixels))
    assert [s.name for s in shares] == ["navy", "white"]
    assert shares[0].fraction == pytest.approx(0.6, abs=0.1) and shares[1].fraction == pytest.approx(
        0.4, abs=0.1
    )
    assert len(garment_colours(Image.fromarray(pixels), max_colours=1)) == 1


def test_errors_and_empty_selection() -> None:
    image = Image.new("RGB", (40, 30), DEMO["red"])
    with pytest.raises(ValueError):
        garment_colours(image, mask=np.ones((10, 10), dtype=bool))
    with pytest.raises(ValueError):
        garment_colours(image, box=(30, 0, 10, 20))
    assert garment_colours(image, mask=np.zeros((30, 40), dtype=bool)) == []


def test_product_shot_foreground_ignores_the_backdrop() -> None:
    image = Image.new("RGB", (80, 100), (235, 235, 235))
    image.paste(DEMO["green"], (15, 10, 65, 95))
    mask = foreground_mask(image)
    assert mask.shape == (100, 80) and abs(mask.mean() - 50 * 85 / 8000) < 0.03
    assert garment_colours(image, mask=mask)[0].name == "green"
