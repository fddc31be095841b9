from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image, ImageDraw

from models.attributes.colour import COLOUR_NAMES, ColourShare, garment_colours, name_colour
from scripts.demo_shapes import COLOURS as DEMO_COLOURS

WIDTH, HEIGHT = 240, 300

# A typical catalogue tone for every name.
TYPICAL: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 22),
    "white": (250, 250, 250),
    "grey": (128, 128, 128),
    "cream": (250, 244, 220),
    "beige": (216, 196, 160),
    "khaki": (195, 176, 145),
    "brown": (110, 70, 40),
    "red": (200, 30, 40),
    "burgundy": (128, 0, 32),
    "pink": (240, 150, 184),
    "orange": (240, 120, 30),
    "yellow": (245, 205, 45),
    "olive": (107, 112, 40),
    "green": (40, 140, 60),
    "teal": (0, 128, 128),
    "light blue": (150, 190, 230),
    "blue": (40, 95, 205),
    "navy": (26, 38, 92),
    "purple": (122, 52, 152),
    "lilac": (200, 162, 200),
}
# The demo catalogue's colours, which the demo jitters by up to +-10 per channel.
DEMO: dict[str, tuple[int, int, int]] = dict(DEMO_COLOURS)


def garment_mask(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """A T-shirt silhouette: bool (height, width), True on the garment."""
    outline = [
        (0.3, 0.1),
        (0.7, 0.1),
        (0.95, 0.3),
        (0.8, 0.4),
        (0.75, 0.95),
        (0.25, 0.95),
        (0.2, 0.4),
        (0.05, 0.3),
    ]
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([(u * width, v * height) for u, v in outline], fill=255)
    return np.asarray(canvas) > 0


def garment_image(
    garment: tuple[int, int, int] | np.ndarray, mask: np.ndarray, background: np.ndarray | None = None
) -> Image.Image:
    """``garment`` (an RGB triple or an (H, W, 3) array) painted through ``mask`` on ``background``."""
    pixels = np.full((*mask.shape, 3), 235, np.uint8) if background is None else background.copy()
    painted = np.broadcast_to(np.asarray(garment, dtype=np.float64), (*mask.shape, 3))
    pixels[mask] = np.clip(np.round(painted[mask]), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def names(shares: list[ColourShare]) -> list[str]:
    return [share.name for share in shares]


def clipped(values: list[int]) -> tuple[int, int, int]:
    red, green, blue = (min(255, max(0, v)) for v in values)
    return red, green, blue


def assert_share(share: ColourShare, name: str, fraction: float, tolerance: float) -> None:
    assert share.name == name
    assert abs(share.fraction - fraction) <= tolerance, (share, fraction)


def test_typical_tones_cover_every_name() -> None:
    assert tuple(TYPICAL) == COLOUR_NAMES
    assert len(set(COLOUR_NAMES)) == 20


@pytest.mark.parametrize("name", COLOUR_NAMES)
def test_typical_tone_is_named(name: str) -> None:
    mask = garment_mask()
    assert name_colour(TYPICAL[name]) == name
    shares = garment_colours(garment_image(TYPICAL[name], mask), mask=mask)
    assert shares[0].name == name
    assert shares[0].fraction > 0.8


@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((255, 0, 0), "red"),
        ((128, 0, 0), "burgundy"),  # maroon
        ((0, 0, 255), "blue"),  # CIELAB puts pure blue's hue near purple's
        ((0, 0, 128), "navy"),
        ((75, 0, 130), "purple"),  # indigo
        ((255, 105, 180), "pink"),
        ((255, 165, 0), "orange"),
        ((135, 206, 235), "light blue"),
        ((64, 224, 208), "teal"),  # turquoise
        ((54, 69, 79), "grey"),  # charcoal
        ((255, 255, 240), "white"),  # ivory
        ((139, 69, 19), "brown"),
        ((128, 128, 0), "olive"),
    ],
)
def test_well_known_colours(rgb: tuple[int, int, int], name: str) -> None:
    assert name_colour(rgb) == name


@pytest.mark.parametrize("name", ["red", "blue", "navy", "green", "grey"])
def test_name_survives_light_and_shadow(name: str) -> None:
    for factor in np.linspace(0.7, 1.15, 10):
        rgb = clipped([round(c * factor) for c in DEMO[name]])
        assert name_colour(rgb) == name, (round(factor, 2), rgb)


@pytest.mark.parametrize(
    ("rgb", "name"),
    [((22, 22, 36), "black"), ((36, 28, 20), "black"), ((246, 246, 236), "white"), ((250, 244, 246), "white")]
    + [((130, 130, 142), "grey"), ((138, 130, 124), "grey")],
)
def test_faintly_tinted_neutrals_stay_neutral(rgb: tuple[int, int, int], name: str) -> None:
    assert name_colour(rgb) == name  # all within the demo's +-10 jitter of its black, white and grey


@pytest.mark.parametrize("name", list(DEMO))
def test_demo_colours_are_named_as_their_key_after_jitter(name: str) -> None:
    mask = garment_mask()
    rng = random.Random(name)
    variants = [DEMO[name]] + [clipped([c + rng.randint(-10, 10) for c in DEMO[name]]) for _ in range(6)]
    for rgb in variants:
        shares = garment_colours(garment_image(rgb, mask), mask=mask)
        assert names(shares) == [name], rgb
        assert shares[0].fraction == 1.0


def shaded(rgb: tuple[int, int, int], height: int, width: int) -> np.ndarray:
    """``rgb`` under a vertical light gradient (x0.75 at the top .. x1.15 at the bottom) with a soft shadow
    band (a further x0.75) across a fifth of the height."""
    light = np.linspace(0.75, 1.15, height)
    light[int(0.45 * height) : int(0.65 * height)] *= 0.75
    return np.asarray(rgb, dtype=np.float64)[None, None, :] * np.broadcast_to(
        light[:, None, None], (height, width, 1)
    )


@pytest.mark.parametrize("name", ["red", "blue", "navy", "green", "grey"])
def test_shading_keeps_the_name(name: str) -> None:
    mask = garment_mask()
    image = garment_image(shaded(DEMO[name], HEIGHT, WIDTH), mask)
    shares = garment_colours(image, mask=mask)
    assert names(shares) == [name]
    assert shares[0].fraction > 0.95


@pytest.mark.parametrize("name", ["red", "navy", "green"])
def test_mask_ignores_a_noisy_background(name: str) -> None:
    mask = garment_mask()
    noise = np.random.default_rng(1).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    image = garment_image(DEMO[name], mask, background=noise)
    assert garment_colours(image, mask=mask) == [ColourShare(name, 1.0)]
    assert garment_colours(image, min_fraction=0)[0].fraction < 0.9  # without the mask the noise counts


def multicolour_background(height: int, width: int) -> np.ndarray:
    """Blocks of the demo colours, so every colour the garment could be is also in the background."""
    tones = np.array(list(DEMO.values()), np.uint8)
    blocks = np.random.default_rng(2).integers(0, len(tones), (height // 20 + 1, width // 20 + 1))
    return tones[np.kron(blocks, np.ones((20, 20), int))[:height, :width]]


def test_mask_inside_box_ignores_a_multicolour_background() -> None:
    mask = garment_mask()
    image = garment_image(DEMO["orange"], mask, background=multicolour_background(HEIGHT, WIDTH))
    assert garment_colours(image, box=(0, 0, WIDTH // 2, HEIGHT), mask=mask) == [ColourShare("orange", 1.0)]


def test_box_alone_names_the_garment_that_fills_most_of_it() -> None:
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[40:260, 50:190] = True
    image = garment_image(DEMO["purple"], mask, background=multicolour_background(HEIGHT, WIDTH))
    shares = garment_colours(image, box=(40, 30, 200, 270))  # the garment is 80% of the box
    assert_share(shares[0], "purple", 0.8, tolerance=0.05)


def striped(
    colours: list[tuple[int, int, int]], period_rows: list[int], height: int, width: int
) -> np.ndarray:
    """Horizontal stripes: ``period_rows[i]`` rows of ``colours[i]``, repeating."""
    pattern = np.concatenate([np.full(rows, i) for i, rows in enumerate(period_rows)])
    rows = pattern[np.arange(height) % len(pattern)]
    return np.broadcast_to(np.array(colours, np.uint8)[rows][:, None, :], (height, width, 3))


def test_striped_garment_gives_two_colours_in_order() -> None:
    mask = garment_mask()
    image = garment_image(striped([DEMO["navy"], DEMO["white"]], [12, 8], HEIGHT, WIDTH), mask)
    navy, white = garment_colours(image, mask=mask)
    assert_share(navy, "navy", 0.6, tolerance=0.1)
    assert_share(white, "white", 0.4, tolerance=0.1)


def test_small_third_colour_is_dropped_and_max_colours_is_respected() -> None:
    mask = garment_mask()
    stripes = striped([DEMO["red"], DEMO["white"], DEMO["black"]], [14, 4, 2], HEIGHT, WIDTH)  # 70/20/10 %
    image = garment_image(stripes, mask)
    assert names(garment_colours(image, mask=mask, max_colours=3)) == ["red", "white"]
    assert names(garment_colours(image, mask=mask, max_colours=3, min_fraction=0.05)) == [
        "red",
        "white",
        "black",
    ]
    assert names(garment_colours(image, mask=mask, max_colours=1)) == ["red"]
    fractions = [
        share.fraction for share in garment_colours(image, mask=mask, max_colours=3, min_fraction=0.0)
    ]
    assert fractions == sorted(fractions, reverse=True)
    assert fractions == [round(f, 3) for f in fractions]
    assert sum(fractions) == pytest.approx(1.0, abs=0.003)


def test_same_input_same_output() -> None:
    mask = garment_mask()
    noise = np.random.default_rng(3).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    image = garment_image(shaded(DEMO["blue"], HEIGHT, WIDTH), mask, background=noise)
    first = garment_colours(image, min_fraction=0.0, max_colours=5)
    assert garment_colours(image, min_fraction=0.0, max_colours=5) == first
    assert garment_colours(image.copy(), min_fraction=0.0, max_colours=5) == first
    assert (
        names(garment_colours(image, mask=mask, seed=7))
        == names(garment_colours(image, mask=mask))
        == ["blue"]
    )


def test_fine_stripes_on_a_large_image_are_not_aliased_by_the_sampling_grid() -> None:
    # 512 x 256 px = 2 * 4096 * 4^2: an exact sampling step of 4 would see one phase of a 4-row stripe only.
    image = Image.fromarray(np.ascontiguousarray(striped([DEMO["white"], DEMO["navy"]], [1, 3], 256, 512)))
    white, navy = sorted(garment_colours(image, min_fraction=0.0), key=lambda share: share.name, reverse=True)
    assert_share(white, "white", 0.25, tolerance=0.05)
    assert_share(navy, "navy", 0.75, tolerance=0.05)


def test_mask_and_pixels_stay_aligned_when_subsampled() -> None:
    # Alternate columns: red ones are the garment, green ones are not. Any misalignment lets green in.
    height, width = 600, 640
    mask = np.zeros((height, width), bool)
    mask[:, ::2] = True
    image = garment_image(DEMO["red"], mask, background=np.full((height, width, 3), DEMO["green"], np.uint8))
    assert garment_colours(image, mask=mask) == [ColourShare("red", 1.0)]
    assert garment_colours(image, box=(101, 50, 603, 577), mask=mask) == [ColourShare("red", 1.0)]


def test_tiny_mask_on_a_large_image_is_still_read() -> None:
    mask = np.zeros((800, 640), bool)
    mask[400, 100:140] = True
    image = garment_image(DEMO["yellow"], mask)
    assert garment_colours(image, mask=mask) == [ColourShare("yellow", 1.0)]


def test_thin_mask_that_the_sampling_grid_steps_over_is_still_read() -> None:
    # 20,000 selected pixels give a grid step of ~1.5: on a 3-px-wide image the grid reads columns 0 and 2.
    mask = np.zeros((20_000, 3), bool)
    mask[:, 1] = True
    image = garment_image(DEMO["blue"], mask)
    assert garment_colours(image, mask=mask) == [ColourShare("blue", 1.0)]


def test_wrong_mask_shape_is_a_value_error_naming_both_shapes() -> None:
    image = Image.new("RGB", (WIDTH, HEIGHT), DEMO["red"])
    with pytest.raises(ValueError, match=r"\(300, 240\).*\(240, 300\)"):
        garment_colours(image, mask=np.ones((WIDTH, HEIGHT), bool))
    with pytest.raises(ValueError, match="dtype float"):
        garment_colours(image, mask=np.ones((HEIGHT, WIDTH), np.float32))


@pytest.mark.parametrize(
    "box", [(0, 0, WIDTH + 1, HEIGHT), (-1, 0, 10, 10), (50, 10, 50, 20), (60, 10, 50, 20), (0, 30, 10, 20)]
)
def test_box_outside_the_image_or_empty_is_a_value_error(box: tuple[int, int, int, int]) -> None:
    image = Image.new("RGB", (WIDTH, HEIGHT), DEMO["red"])
    with pytest.raises(ValueError, match=r"box .*240 x 300"):
        garment_colours(image, box=box)


def test_empty_selection_gives_no_colours() -> None:
    image = Image.new("RGB", (WIDTH, HEIGHT), DEMO["red"])
    mask = np.zeros((HEIGHT, WIDTH), bool)
    assert garment_colours(image, mask=mask) == []
    mask[0:10, 0:10] = True
    assert garment_colours(image, box=(100, 100, 200, 200), mask=mask) == []  # mask entirely outside the box
    assert garment_colours(Image.new("RGBA", (WIDTH, HEIGHT), (*DEMO["red"], 0))) == []  # fully transparent


def test_bad_arguments_are_value_errors() -> None:
    image = Image.new("RGB", (WIDTH, HEIGHT), DEMO["red"])
    for kwargs in ({"max_colours": 0}, {"sample_pixels": 0}, {"min_fraction": 1.5}):
        with pytest.raises(ValueError, match="max_colours"):
            garment_colours(image, **kwargs)
    with pytest.raises(ValueError, match="0..255"):
        name_colour((300, 0, 0))


def test_rgba_ignores_fully_transparent_pixels() -> None:
    mask = garment_mask()
    rgba = np.zeros((HEIGHT, WIDTH, 4), np.uint8)  # transparent black around the garment, as cut-outs have
    rgba[mask] = (*DEMO["pink"], 255)
    assert garment_colours(Image.fromarray(rgba, "RGBA")) == [ColourShare("pink", 1.0)]


def test_greyscale_image() -> None:
    mask = garment_mask()
    white = np.full((HEIGHT, WIDTH, 3), 250, np.uint8)
    image = garment_image(DEMO["black"], mask, background=white).convert("L")
    assert garment_colours(image, mask=mask) == [ColourShare("black", 1.0)]
    black, background = garment_colours(image)  # no mask: the garment is ~60% of the image
    assert_share(black, "black", mask.mean(), tolerance=0.03)
    assert_share(background, "white", 1 - mask.mean(), tolerance=0.03)


def test_palette_image_with_and_without_transparency() -> None:
    mask = garment_mask()
    image = garment_image(TYPICAL["teal"], mask).convert("P", palette=Image.Palette.ADAPTIVE)
    assert image.mode == "P"
    assert garment_colours(image, mask=mask) == [ColourShare("teal", 1.0)]
    assert names(garment_colours(image)) == ["teal", "white"]  # no mask: the light background counts too
    image.info["transparency"] = int(np.asarray(image)[0, 0])  # the background's palette index
    assert garment_colours(image) == [ColourShare("teal", 1.0)]
