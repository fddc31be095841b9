"""Dominant colour names of a garment, from its own pixels.

Method (numpy + PIL only):

1. Selection: the garment's pixels are the mask's pixels inside the box, the mask alone, the box alone or the
   whole image, whichever are given. Fully transparent pixels (alpha 0) never count: a cut-out product shot's
   background is not the garment.
2. Sample: at most ``sample_pixels`` of the selected pixels, drawn with replacement by a seeded generator, so
   the cost does not grow with the photo and the same input always gives the same answer.
3. Convert the sample from sRGB (D65) to CIELAB, where Euclidean distance roughly follows perceived
   difference.
4. Cluster with k-means (k = 5, k-means++ seeding from the same generator, 10 Lloyd iterations), so texture,
   JPEG noise and small prints collapse into a few tones.
5. Name each cluster centre (:func:`name_colour` on Lab): centres of low chroma (C* < 5) are neutral and named
   black / grey / white by lightness alone. Every other centre takes the name of its nearest reference tone
   (a few per name, chosen as a catalogue would label them) under a CIE94 distance with textile weights
   (kL = 2): a lightness difference counts half as much as an equal hue or chroma difference, so a shaded or
   sunlit red stays red and a navy in shadow stays navy, while hue (red vs burgundy, blue vs purple) decides.
6. Merge clusters that got the same name, summing their fractions (of all selected pixels), sort by fraction,
   keep names with at least ``min_fraction``, at most ``max_colours``.

Hard pairs: beige and khaki differ almost only in lightness (khaki is darker); a red in deep shadow (x0.6) is,
pixel for pixel, a burgundy; a blue in deep shadow nears navy. The references put the boundaries so that
moderate shading (x0.7 .. x1.15 in sRGB) keeps the name.
"""

from __future__ import annotations

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
    "burgundy": ((128, 0, 32), (100, 16, 36)),
    "pink": ((240, 150, 184), (250, 190, 205), (225, 90, 150)),
    "orange": ((240, 122, 30), (255, 150, 60)),
    "yellow": ((242, 204, 40), (250, 225, 100)),
    "olive": ((107, 112, 40), (85, 90, 45)),
    "green": ((36, 140, 50), (20, 100, 45), (110, 185, 100)),
    "teal": ((0, 128, 128), (0, 100, 105)),
    "light blue": ((150, 190, 230), (175, 215, 235)),
    "blue": ((40, 95, 205), (30, 70, 160), (60, 130, 220)),
    "navy": ((26, 38, 92), (20, 26, 60)),
    "purple": ((122, 52, 152), (90, 40, 120)),
    "lilac": ((200, 162, 200), (180, 150, 210)),
}
_NEUTRALS = ("black", "grey", "white")
_NEUTRAL_CHROMA = 5.0  # C* below this: hue is noise, name by lightness alone
_KL, _K1, _K2 = 2.0, 0.048, 0.014  # CIE94, textile weights
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
    return _name_lab(_srgb_to_lab(np.array([rgb], dtype=np.float64)))[0]


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
    selection gives ``[]``. Fractions are of all selected pixels, so they need not sum to 1.
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
    lab = _srgb_to_lab(pixels.astype(np.float64))
    centres, counts = _kmeans(lab, _CLUSTERS, _ITERATIONS, rng)
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
    """(n, 3) uint8 sRGB pixels drawn from the selection, n <= sample_pixels; (0, 3) when it is empty."""
    width, height = image.size
    if box is None:
        x0, y0, x1, y1 = 0, 0, width, height
    else:
        x0, y0, x1, y1 = (int(v) for v in box)
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(
                f"box {tuple(box)} must satisfy 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height} "
                f"(image width x height = {width} x {height})"
            )
    crop = image.crop((x0, y0, x1, y1))
    has_alpha = "A" in crop.getbands() or "transparency" in crop.info
    rgba = np.asarray(crop.convert("RGBA" if has_alpha else "RGB"))
    keep: np.ndarray | None = None
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != (height, width) or mask.dtype.kind not in "biu":
            raise ValueError(
                f"mask must be a bool array of the image's shape {(height, width)}, "
                f"got shape {mask.shape} dtype {mask.dtype}"
            )
        keep = mask[y0:y1, x0:x1] != 0
    if has_alpha:
        opaque = rgba[..., 3] > 0
        keep = opaque if keep is None else keep & opaque
    colours = rgba[..., :3].reshape(-1, 3)
    if keep is None:
        return colours[rng.integers(0, len(colours), size=min(sample_pixels, len(colours)))]
    chosen = np.flatnonzero(keep)
    if len(chosen) == 0:
        return colours[:0]
    return colours[chosen[rng.integers(0, len(chosen), size=min(sample_pixels, len(chosen)))]]


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(n, 3) sRGB in 0..255 -> (n, 3) CIELAB (D65 white, 2-degree observer)."""
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
    return _srgb_to_lab(np.array(tones, dtype=np.float64)), np.array(names)


_REFERENCE_LAB, _REFERENCE_NAME = _reference_table()
_REFERENCE_CHROMA = np.hypot(_REFERENCE_LAB[:, 1], _REFERENCE_LAB[:, 2])
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
        (d_l / _KL) ** 2
        + (d_c / (1 + _K1 * _REFERENCE_CHROMA)) ** 2
        + d_h2 / (1 + _K2 * _REFERENCE_CHROMA) ** 2
    )
    distance[np.ix_(chroma < _NEUTRAL_CHROMA, ~_NEUTRAL_ROWS)] = np.inf
    return [COLOUR_NAMES[i] for i in _REFERENCE_NAME[np.argmin(distance, axis=1)]]


def _kmeans(
    points: np.ndarray, k: int, iterations: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding -> (centres (j, 3), counts (j,)), j <= k, no empty cluster."""
    centres = points[rng.integers(len(points))][None, :]
    nearest = ((points - centres[0]) ** 2).sum(axis=1)
    while len(centres) < k and nearest.sum() > 0:
        new = points[rng.choice(len(points), p=nearest / nearest.sum())]
        centres = np.vstack([centres, new])
        nearest = np.minimum(nearest, ((points - new) ** 2).sum(axis=1))
    for _ in range(iterations):
        labels = _assign(points, centres)
        counts = np.bincount(labels, minlength=len(centres))
        sums = np.stack(
            [np.bincount(labels, weights=points[:, d], minlength=len(centres)) for d in range(3)], 1
        )
        filled = counts > 0
        moved = sums[filled] / counts[filled, None]
        if np.allclose(moved, centres[filled]) and filled.all():
            break
        centres[filled] = moved
    labels = _assign(points, centres)
    counts = np.bincount(labels, minlength=len(centres))
    return centres[counts > 0], counts[counts > 0]


def _assign(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.argmin(((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2), axis=1)
