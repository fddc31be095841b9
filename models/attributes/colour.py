"""Dominant colour names of a garment, from its own pixels.

Method (numpy + PIL only):

1. Selection: the garment's pixels are the mask's pixels inside the box, the mask alone, the box alone or the
   whole image, whichever are given. Fully transparent pixels (alpha 0) never count: a cut-out product shot's
   background is not the garment.
2. Sample: a regular grid of about ``2 * sample_pixels`` selected pixels (read by a nearest-neighbour resize,
   so the cost does not grow with the photo), of which a seeded generator keeps at most ``sample_pixels``;
   the same input always gives the same answer.
3. Convert the sample from sRGB (D65) to CIELAB, where Euclidean distance roughly follows perceived
   difference.
4. Cluster with k-means (k = 5, k-means++ seeding from the same generator, 10 Lloyd iterations), so texture,
   JPEG noise and small prints collapse into a few tones.
5. Name each cluster centre (:func:`name_colour` on Lab). A centre of low chroma is neutral and named black /
   grey / white by lightness alone; the chroma limit is C* < 6 in the mid-tones, widening to 16 at L* <= 10
   and 9 at L* >= 95, where a faint tint is hard to see. Every other centre takes the name of its nearest
   reference tone (2-4 per name, chosen as a catalogue would label them) under the CIE94 distance with
   textile weights: for vivid references kL = 2, so a lightness difference counts half as much as an equal
   chroma or hue difference and a shaded or sunlit red stays red, a navy in shadow stays navy, while hue
   decides red vs burgundy or blue vs purple. Muted references (C* < 25: cream, beige, khaki, lilac, light
   blue, the dark browns) keep kL = 1, because lightness is what tells them apart.
6. Merge clusters that got the same name, summing their fractions (of all selected pixels), sort by fraction,
   keep names with at least ``min_fraction``, at most ``max_colours``.

Hard pairs: beige and khaki differ almost only in lightness (khaki is darker); a red in deep shadow (x0.65
in sRGB) is, pixel for pixel, a burgundy; a blue in deep shadow nears navy; a near-black with a blue cast is a
very dark navy. The references put the boundaries so that moderate shading (x0.7 .. x1.15) keeps the name.
CIELAB bends blue towards purple, so pure blue and violet each have a reference of their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

COLOUR_NAMES: tuple[str, ...] = (
    "black",
    "white",
    "grey",
    "cream",
    "beige",
    "khaki",
    "brown",
    "red",
    "burgundy",
    "pink",
    "orange",
    "yellow",
    "olive",
    "green",
    "teal",
    "light blue",
    "blue",
    "navy",
    "purple",
    "lilac",
)

RGB = tuple[int, int, int]

# Reference tones per name (sRGB). The first one is the name's typical catalogue colour.
_REFERENCES: dict[str, tuple[RGB, ...]] = {
    "black": ((28, 28, 30), (8, 8, 8)),
    "white": ((246, 246, 244), (255, 255, 255)),
    "grey": ((130, 130, 134), (90, 90, 92), (180, 180, 180)),
    "cream": ((250, 244, 220), (242, 234, 206)),
    "beige": ((216, 196, 160), (226, 208, 178)),
    "khaki": ((195, 176, 145), (180, 160, 120)),
    "brown": ((112, 72, 40), (80, 50, 30), (150, 100, 62)),
    "red": ((200, 32, 40), (230, 30, 45), (165, 25, 32)),
    "burgundy": ((128, 0, 32), (100, 16, 36), (125, 5, 5)),
    "pink": ((240, 150, 184), (250, 190, 205), (225, 90, 150), (240, 40, 200)),
    "orange": ((240, 122, 30), (255, 150, 60)),
    "yellow": ((242, 204, 40), (250, 225, 100)),
    "olive": ((107, 112, 40), (85, 90, 45)),
    "green": ((36, 140, 50), (20, 100, 45), (110, 185, 100)),
    "teal": ((0, 128, 128), (0, 100, 105)),
    "light blue": ((150, 190, 230), (175, 215, 235)),
    "blue": ((40, 95, 205), (30, 70, 160), (60, 130, 220), (15, 30, 235)),
    "navy": ((26, 38, 92), (20, 26, 60), (5, 10, 125)),
    "purple": ((122, 52, 152), (90, 40, 120), (140, 45, 225), (80, 10, 135)),
    "lilac": ((200, 162, 200), (180, 150, 210)),
}
_NEUTRALS = ("black", "grey", "white")
# Below this C* (piecewise linear in L*) a tone is neutral and named by lightness alone: tints are hard to see
# in near-blacks and near-whites, so the limit is wider there.
_NEUTRAL_LIGHTNESS, _NEUTRAL_CHROMA = (10.0, 25.0, 80.0, 95.0), (16.0, 6.0, 6.0, 9.0)
_MUTED_CHROMA = 25.0  # references below this C* are told apart mostly by lightness: kL = 1 for them
_K1, _K2 = 0.048, 0.014  # CIE94 textile weights; kL = 2 for vivid references, 1 for muted ones
_CLUSTERS = 5
_ITERATIONS = 10

# sRGB (linear) -> XYZ, D65, divided by the D65 white so that white maps to (1, 1, 1).
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
) / np.array([[0.95047], [1.0], [1.08883]])


@dataclass(frozen=True)
class ColourShare:
    """One named colour of a garment: ``fraction`` is its share of the garment's pixels (0..1, 3 decimals)."""

    name: str
    fraction: float


def name_colour(rgb: tuple[int, int, int]) -> str:
    """The name (one of :data:`COLOUR_NAMES`) of one sRGB colour."""
    if len(rgb) != 3 or any(not 0 <= int(c) <= 255 for c in rgb):
        raise ValueError(f"rgb must be three integers in 0..255, got {rgb!r}")
    return _name_lab(srgb_to_lab(np.array([rgb], dtype=np.float64)))[0]


def garment_colours(
    image: Image.Image,
    box: tuple[int, int, int, int] | None = None,
    mask: np.ndarray | None = None,
    *,
    max_colours: int = 2,
    min_fraction: float = 0.15,
    sample_pixels: int = 4096,
    seed: int = 0,
) -> list[ColourShare]:
    """Up to ``max_colours`` dominant colour names of the garment, largest share first.

    ``box`` is [x0, y0, x1, y1] in pixels of the upright image (x1, y1 exclusive); ``mask`` is a bool array of
    the image's shape (H, W). Both given: the mask's pixels inside the box. Neither: the whole image. An empty
    selection gives ``[]``. Fractions are of all selected pixels, so they need not sum to 1. A box that is
    empty or not inside the image, or a mask of another shape, raises ``ValueError``.
    """
    if max_colours < 1 or sample_pixels < 1 or not 0.0 <= min_fraction <= 1.0:
        raise ValueError(
            f"need max_colours >= 1, sample_pixels >= 1 and 0 <= min_fraction <= 1, got "
            f"max_colours={max_colours}, sample_pixels={sample_pixels}, min_fraction={min_fraction}"
        )
    rng = np.random.default_rng(seed)
    pixels = _sample_pixels(image, box, mask, sample_pixels, rng)
    if len(pixels) == 0:
        return []
    lab = srgb_to_lab(pixels.astype(np.float64))
    centres, counts = kmeans(lab, _CLUSTERS, _ITERATIONS, rng)
    totals: dict[str, int] = {}
    for name, count in zip(_name_lab(centres), counts.tolist(), strict=True):
        totals[name] = totals.get(name, 0) + count
    ranked = sorted(totals.items(), key=lambda item: (-item[1], COLOUR_NAMES.index(item[0])))
    shares = [ColourShare(name, round(count / len(lab), 3)) for name, count in ranked]
    return [share for share in shares if share.fraction >= min_fraction][:max_colours]


def _sample_pixels(
    image: Image.Image,
    box: tuple[int, int, int, int] | None,
    mask: np.ndarray | None,
    sample_pixels: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """(n, 3) uint8 sRGB pixels of the selection, n <= sample_pixels; (0, 3) when the selection is empty.

    A nearest-neighbour resize of the box reads a grid of about ``2 * sample_pixels`` selected pixels and
    touches nothing else (converting a whole 640x800 photo to an array costs more than the rest put
    together); the mask goes through the same resize, so the two grids line up exactly. The grid step is kept
    off whole numbers so that a stripe whose period divides the step is not sampled at a single phase.
    """
    width, height = image.size
    region = (0, 0, width, height) if box is None else _checked_box(box, width, height)
    x0, y0, x1, y1 = region
    selected = (x1 - x0) * (y1 - y0)
    mask_image = None
    if mask is not None:
        mask = _checked_mask(mask, height, width)
        selected = int(np.count_nonzero(mask[y0:y1, x0:x1]))
        if selected == 0:
            return np.zeros((0, 3), np.uint8)
        mask_image = Image.fromarray(mask.view(np.uint8))
    mode = "RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB"
    step = max(1.0, math.sqrt(selected / (2 * sample_pixels)))
    for size in (_grid_size(x1 - x0, y1 - y0, step), (x1 - x0, y1 - y0)):
        grid = image.resize(size, Image.Resampling.NEAREST, box=region).convert(mode)
        pixels = np.asarray(grid).reshape(-1, len(mode))
        if mask_image is None:
            keep = np.ones(len(pixels), bool)
        else:
            keep = np.asarray(mask_image.resize(size, Image.Resampling.NEAREST, box=region)).reshape(-1) != 0
        if mode == "RGBA":
            keep &= pixels[:, 3] > 0
        chosen = np.flatnonzero(keep)
        if len(chosen) > 0 or step == 1.0:  # a sparse mask can slip between the grid's points: go dense
            break
    if len(chosen) > sample_pixels:
        chosen = np.sort(rng.choice(chosen, size=sample_pixels, replace=False))
    return pixels[chosen, :3]


def _grid_size(width: int, height: int, step: float) -> tuple[int, int]:
    """Output size of a resize by about ``step``, nudged so that no axis's step is a whole number above 1."""
    size = []
    for extent in (width, height):
        count = max(1, round(extent / step))
        if count < extent and extent % count == 0:
            count += 1
        size.append(count)
    return size[0], size[1]


def _checked_box(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    if len(box) != 4:
        raise ValueError(f"box must be [x0, y0, x1, y1], got {box!r}")
    x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(
            f"box {tuple(box)} must satisfy 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height} "
            f"(image width x height = {width} x {height})"
        )
    return x0, y0, x1, y1


def _checked_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != (height, width) or mask.dtype.kind not in "biu":
        raise ValueError(
            f"mask must be a bool array of the image's shape (H, W) = {(height, width)}, "
            f"got shape {mask.shape} dtype {mask.dtype}"
        )
    return np.ascontiguousarray(mask if mask.dtype == bool else mask != 0)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(n, 3) sRGB in 0..255 -> (n, 3) CIELAB (D65 white, 2-degree observer). Shared with foreground.py."""
    c = rgb / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T
    delta = 6.0 / 29.0
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4.0 / 29.0)
    return np.stack(
        [116.0 * f[:, 1] - 16.0, 500.0 * (f[:, 0] - f[:, 1]), 200.0 * (f[:, 1] - f[:, 2])], axis=1
    )


def _reference_table() -> tuple[np.ndarray, np.ndarray]:
    names, tones = [], []
    for name in COLOUR_NAMES:
        for tone in _REFERENCES[name]:
            names.append(COLOUR_NAMES.index(name))
            tones.append(tone)
    return srgb_to_lab(np.array(tones, dtype=np.float64)), np.array(names)


_REFERENCE_LAB, _REFERENCE_NAME = _reference_table()
_REFERENCE_CHROMA = np.hypot(_REFERENCE_LAB[:, 1], _REFERENCE_LAB[:, 2])
_REFERENCE_KL = np.where(_REFERENCE_CHROMA < _MUTED_CHROMA, 1.0, 2.0)
_NEUTRAL_ROWS = np.isin(_REFERENCE_NAME, [COLOUR_NAMES.index(name) for name in _NEUTRALS])


def _name_lab(lab: np.ndarray) -> list[str]:
    """Names of (m, 3) Lab colours: neutrals by lightness, the rest by the nearest reference under CIE94."""
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    d_l = lab[:, None, 0] - _REFERENCE_LAB[None, :, 0]
    d_c = chroma[:, None] - _REFERENCE_CHROMA[None, :]
    d_a = lab[:, None, 1] - _REFERENCE_LAB[None, :, 1]
    d_b = lab[:, None, 2] - _REFERENCE_LAB[None, :, 2]
    d_h2 = np.maximum(d_a**2 + d_b**2 - d_c**2, 0.0)
    distance = (
        (d_l / _REFERENCE_KL) ** 2
        + (d_c / (1 + _K1 * _REFERENCE_CHROMA)) ** 2
        + d_h2 / (1 + _K2 * _REFERENCE_CHROMA) ** 2
    )
    neutral = chroma < np.interp(lab[:, 0], _NEUTRAL_LIGHTNESS, _NEUTRAL_CHROMA)
    distance[np.ix_(neutral, ~_NEUTRAL_ROWS)] = np.inf
    return [COLOUR_NAMES[i] for i in _REFERENCE_NAME[np.argmin(distance, axis=1)]]


def kmeans(
    points: np.ndarray, k: int, iterations: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding -> (centres (j, 3), counts (j,)), j <= k, no empty cluster.

    Fewer than k centres when the points hold fewer than k distinct values (a flat colour gives one).
    """
    centres = points[rng.integers(len(points))][None, :].copy()
    nearest = ((points - centres[0]) ** 2).sum(axis=1)
    while len(centres) < k and nearest.sum() > 0:
        new = points[rng.choice(len(points), p=nearest / nearest.sum())]
        centres = np.vstack([centres, new])
        nearest = np.minimum(nearest, ((points - new) ** 2).sum(axis=1))
    labels = _assign(points, centres)
    for _ in range(iterations):
        counts = np.bincount(labels, minlength=len(centres))
        filled = counts > 0
        for d in range(points.shape[1]):
            sums = np.bincount(labels, weights=points[:, d], minlength=len(centres))
            centres[filled, d] = sums[filled] / counts[filled]
        new_labels = _assign(points, centres)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
    counts = np.bincount(labels, minlength=len(centres))
    return centres[counts > 0], counts[counts > 0]


def _assign(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of each point's nearest centre (squared Euclidean; |p|^2 is the same for every centre)."""
    return np.argmin((centres**2).sum(axis=1)[None, :] - 2.0 * points @ centres.T, axis=1)
