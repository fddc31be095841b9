"""Silhouettes, colours and patterns for the synthetic demo catalogue.

A garment is an :class:`Outline`: mask shapes and detail strokes (seams, buttons, laces) in pixel
coordinates. :func:`render_garment` draws the pattern on a full layer, strokes the details on it, pastes
it through the silhouette mask and outlines the edge, so product shots and street scenes share one path.
Upper-body garments are laid out in a "torso frame" (shoulders at v=0, hips at v=1, full sleeve span
across u=0..1) so that a scene's arms can follow the sleeves (:data:`ARM_LINE`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Box = tuple[float, float, float, float]
Point = tuple[float, float]
RGB = tuple[int, int, int]

COLOURS: dict[str, RGB] = {
    "black": (28, 28, 30),
    "white": (246, 246, 244),
    "grey": (130, 130, 134),
    "red": (200, 32, 40),
    "blue": (40, 95, 205),
    "navy": (26, 38, 92),
    "green": (36, 140, 50),
    "yellow": (242, 204, 40),
    "orange": (240, 122, 30),
    "pink": (240, 150, 184),
    "purple": (122, 52, 152),
    "beige": (216, 196, 160),
    "brown": (112, 72, 40),
}
PATTERNS = ("solid", "striped", "checked", "dotted")
TORSO_ASPECT = 0.75  # torso-frame height / width
ARM_LINE: tuple[Point, Point] = ((0.27, 0.14), (0.08, 0.98))  # shoulder -> wrist, torso frame
_LENGTHS = {  # garment height / width, per category and length attribute
    "dress": {"mini": 1.37 * TORSO_ASPECT, "midi": 2.02 * TORSO_ASPECT, "maxi": 2.36 * TORSO_ASPECT},
    "trousers": {"full": 2.45, "cropped": 2.05, "shorts": 0.85},
    "skirt": {"mini": 0.58, "knee": 1.05, "midi": 1.5, "maxi": 1.95},
}


@dataclass
class Outline:
    """Mask shapes ``(kind, points, value)`` and detail strokes ``(kind, points, width)`` in pixels."""

    fill: list[tuple[str, list[Point], int]] = field(default_factory=list)
    details: list[tuple[str, list[Point], int]] = field(default_factory=list)

    def __add__(self, other: Outline) -> Outline:
        return Outline(self.fill + other.fill, self.details + other.details)


@dataclass(frozen=True)
class _Frame:
    """Maps normalised (u, v) to pixels inside a box; ``mirror`` flips u."""

    box: Box
    mirror: bool = False

    def pts(self, uv: Sequence[Point]) -> list[Point]:
        x0, y0, x1, y1 = self.box
        return [(x0 + ((1 - u) if self.mirror else u) * (x1 - x0), y0 + v * (y1 - y0)) for u, v in uv]

    def px(self, fraction: float) -> int:
        return max(1, round(fraction * (self.box[2] - self.box[0])))


def sample_attributes(category: str, rng: random.Random) -> dict[str, str]:
    """Shape attributes beyond colour and pattern (sleeve length, length, footwear type)."""
    attrs: dict[str, str] = {}
    if category in ("top", "dress"):
        attrs["sleeve_length"] = rng.choice(("sleeveless", "short", "long"))
    if category == "outerwear":
        attrs["sleeve_length"] = "long"
    if category in _LENGTHS:
        attrs["length"] = rng.choice(tuple(_LENGTHS[category]))
    if category == "footwear":
        attrs["footwear_type"] = rng.choice(("sneaker", "boot"))
    return attrs


def noun(category: str, attrs: dict[str, str]) -> str:
    """The product noun for a title, e.g. "midi skirt" or "ankle boots"."""
    sleeve, length = attrs.get("sleeve_length"), attrs.get("length", "")
    if category == "top":
        return {"sleeveless": "tank top", "short": "t-shirt"}.get(sleeve or "", "long-sleeve top")
    if category == "trousers":
        return {"full": "trousers", "cropped": "cropped trousers"}.get(length, "shorts")
    if category in ("dress", "skirt"):
        return f"{'knee-length' if length == 'knee' else length} {category}"
    if category == "footwear":
        return "sneakers" if attrs.get("footwear_type") == "sneaker" else "ankle boots"
    return {"outerwear": "coat", "bag": "tote bag"}[category]


def garment_extent(category: str, attrs: dict[str, str], pair: bool = False) -> float:
    """Height / width of the garment's box (upper garments: the full sleeve span is the width)."""
    if category in _LENGTHS:
        return _LENGTHS[category][attrs["length"]]
    if category == "footwear":
        return (0.8 if attrs.get("footwear_type") == "boot" else 0.5) * (1.3 if pair else 1.0)
    return {"top": TORSO_ASPECT, "outerwear": 1.75 * TORSO_ASPECT, "bag": 1.0}[category]


def build_outline(
    category: str,
    box: Box,
    attrs: dict[str, str],
    rng: random.Random,
    *,
    mirror: bool = False,
    pair: bool = False,
    open_front: bool = False,
) -> Outline:
    """The silhouette of one garment filling ``box``, with small random jitter in its proportions."""
    x0, y0, x1, y1 = box
    if category in ("top", "outerwear", "dress"):
        torso = _Frame((x0, y0, x1, y0 + (x1 - x0) * TORSO_ASPECT))
        return _upper(torso, category, attrs, (y1 - y0) / (torso.box[3] - y0), rng, open_front)
    if category == "footwear" and pair:
        w, h = x1 - x0, y1 - y0
        back = _shoe(_Frame((x0 + 0.22 * w, y0, x1, y0 + 0.77 * h), mirror), attrs, rng)
        return back + _shoe(_Frame((x0, y0 + 0.23 * h, x1 - 0.22 * w, y1), mirror), attrs, rng)
    shape = {"trousers": _trousers, "skirt": _skirt, "footwear": _shoe, "bag": _bag}[category]
    return shape(_Frame(box, mirror), attrs, rng)


def _j(rng: random.Random, spread: float = 0.015) -> float:
    return rng.uniform(-spread, spread)


def _symmetric(left: list[Point]) -> list[Point]:
    """Close a left half-outline (neck to hem) with its mirror image (hem to neck)."""
    return left + [(1 - u, v) for u, v in reversed(left)]


def _upper(
    f: _Frame, category: str, attrs: dict[str, str], hem_v: float, rng: random.Random, open_front: bool
) -> Outline:
    sleeve, neck, arm_v = attrs.get("sleeve_length", "long"), 0.09 + _j(rng), 0.32 + _j(rng)
    widen = 0.02 if category == "outerwear" else 0.0
    sh = 0.26 - widen + _j(rng, 0.01)
    if sleeve == "sleeveless":
        side = [(0.34, 0.02), (0.31, 0.18), (0.29, arm_v)]
    elif sleeve == "short":
        side = [(sh, 0.04), (0.13 + _j(rng), 0.38 + _j(rng)), (0.22, 0.45), (0.28 - widen, arm_v)]
    else:
        side = [(sh, 0.04), (0.035 - widen / 2, 0.9 + _j(rng)), (0.14, 0.96), (0.28 - widen, arm_v)]
    if category == "dress":
        hem_half = min(0.47, 0.17 + 0.1 * hem_v + _j(rng))
        body = [(0.33 + _j(rng, 0.01), 0.62), (0.5 - hem_half, hem_v)]
    else:
        body = [(0.29 - widen * 1.5 + _j(rng), hem_v)]
    out = Outline()
    out.fill.append(("polygon", f.pts([*_symmetric([(0.5 - neck, 0.0), *side, *body]), (0.5, 0.11)]), 255))
    if sleeve != "sleeveless":  # sleeve seams
        for u in (0.0, 1.0):
            seam = [(abs(u - sh), 0.04), (abs(u - 0.28 + widen), arm_v)]
            out.details.append(("line", f.pts(seam), f.px(0.006)))
    if category == "dress":
        out.details.append(("line", f.pts([(0.3, 0.62), (0.7, 0.62)]), f.px(0.01)))
    elif category == "top":
        out.details.append(("line", f.pts([(0.5 - neck, 0.0), (0.5, 0.11), (0.5 + neck, 0.0)]), f.px(0.02)))
    else:  # coat: collar, lapels, front edge, buttons, pocket flaps
        for s in (-1, 1):
            lapel = [
                (0.5 + s * neck, 0.0),
                (0.5 + s * (neck + 0.06), 0.1),
                (0.5 + s * 0.08, 0.24),
                (0.5, 0.5),
            ]
            out.details.append(("line", f.pts(lapel), f.px(0.012)))
            flap = [(0.5 + s * 0.11, 1.3), (0.5 + s * 0.18, 1.3)]
            out.details.append(("line", f.pts(flap), f.px(0.01)))
        if open_front:
            gap = [(0.48, 0.12), (0.52, 0.12), (0.59, hem_v), (0.41, hem_v)]
            out.fill.append(("polygon", f.pts(gap), 0))
        else:
            out.details.append(("line", f.pts([(0.5, 0.5), (0.5, hem_v)]), f.px(0.008)))
            for v in (0.62, 0.85, 1.08):
                out.details.append(("dot", f.pts([(0.535, v)]), f.px(0.016)))
    return out


def _trousers(f: _Frame, attrs: dict[str, str], rng: random.Random) -> Outline:
    h = _LENGTHS["trousers"][attrs["length"]]
    crotch, taper, band = min(0.7, 0.55 / h + _j(rng, 0.02)), 0.03 + _j(rng, 0.02), 0.1 / h
    left = [(0.06, 0.0), (0.03 + _j(rng, 0.01), 0.3 / h), (0.03 + taper, 1.0), (0.47 - taper, 1.0)]
    right = [(1 - u, v) for u, v in reversed(left)]
    out = Outline(fill=[("polygon", f.pts([*left, (0.5, crotch), *right]), 255)])
    fly = [(0.5, band), (0.5, crotch * 0.75), (0.44, crotch * 0.9)]
    out.details += [
        ("line", f.pts([(0.0, band), (1.0, band)]), f.px(0.02)),
        ("line", f.pts(fly), f.px(0.015)),
    ]
    for s in (-1, 1):
        pocket = [(0.5 + s * 0.26, band), (0.5 + s * 0.4, band + 0.18 / h)]
        out.details.append(("line", f.pts(pocket), f.px(0.015)))
    return out


def _skirt(f: _Frame, attrs: dict[str, str], rng: random.Random) -> Outline:
    h = _LENGTHS["skirt"][attrs["length"]]
    waist, hem, band = 0.3 + _j(rng, 0.03), min(0.5, 0.36 + 0.1 * h + _j(rng, 0.02)), 0.08 / h
    out = Outline(
        fill=[
            (
                "polygon",
                f.pts([(0.5 - waist, 0.0), (0.5 + waist, 0.0), (0.5 + hem, 1.0), (0.5 - hem, 1.0)]),
                255,
            )
        ]
    )
    out.details.append(("line", f.pts([(0.0, band), (1.0, band)]), f.px(0.015)))
    for s in (-0.5, 0.5):  # pleats
        out.details.append(("line", f.pts([(0.5 + s * waist, band), (0.5 + s * hem, 1.0)]), f.px(0.008)))
    return out


def _shoe(f: _Frame, attrs: dict[str, str], rng: random.Random) -> Outline:
    boot = attrs.get("footwear_type") == "boot"
    toe = 0.6 + _j(rng, 0.05)
    if boot:
        upper = [(0.04, 0.45), (0.06, 0.0), (0.40, 0.0), (0.42, 0.5), (0.85, toe)]
    else:
        upper = [(0.02, 0.42), (0.10, 0.28), (0.30, 0.32), (0.42, 0.44), (0.62, 0.5), (0.85, toe)]
    outline = [*upper, (0.98, 0.76), (0.99, 0.98), (0.01, 0.98)]
    out = Outline(fill=[("polygon", f.pts(outline), 255)])
    out.details += [
        ("line", f.pts([(0.01, 0.86), (0.99, 0.86)]), f.px(0.03)),
        ("line", f.pts([*outline, outline[0]]), f.px(0.012)),
    ]
    lace_from = (0.42, 0.5) if boot else (0.42, 0.44)
    for k in range(3):
        u, v = lace_from[0] + 0.07 * k, lace_from[1] + 0.03 * k
        out.details.append(("line", f.pts([(u, v), (u + 0.03, v + 0.1)]), f.px(0.012)))
    return out


def _bag(f: _Frame, attrs: dict[str, str], rng: random.Random) -> Outline:
    top, slant = 0.38 + _j(rng, 0.04), 0.07 + _j(rng, 0.03)
    body = [(0.03 + slant, top), (0.97 - slant, top), (0.97, 1.0), (0.03, 1.0)]
    out = Outline(
        fill=[
            ("ellipse", f.pts([(0.24, 0.0), (0.76, top + 0.24)]), 255),
            ("ellipse", f.pts([(0.31, 0.07), (0.69, top + 0.18)]), 0),
            ("polygon", f.pts(body), 255),
        ]
    )
    out.details += [
        ("line", f.pts([(0.06 + slant, top + 0.12), (0.94 - slant, top + 0.12)]), f.px(0.012)),
        ("dot", f.pts([(0.5, top + 0.2)]), f.px(0.03)),
    ]
    return out


def _shade(rgb: RGB, amount: float) -> RGB:
    """Darker (amount < 0) or lighter (amount > 0) version of a colour."""
    target = 255.0 if amount > 0 else 0.0
    r, g, b = (round(c + (target - c) * abs(amount)) for c in rgb)
    return r, g, b


def _luma(rgb: Sequence[int]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def pattern_layer(
    size: tuple[int, int], rgb: RGB, pattern: str, scale: float, rng: random.Random
) -> Image.Image:
    """A full ``size`` layer of ``pattern`` in ``rgb`` and a lighter/darker tone, ~7 repeats per ``scale``."""
    w, h = size
    pixels = np.empty((h, w, 3), np.uint8)
    pixels[:] = rgb
    second = _shade(rgb, -0.38 if _luma(rgb) > 140 else 0.45)
    period = max(4, round(scale / rng.uniform(5.0, 9.0)))
    ys, xs = np.ogrid[:h, :w]
    ys, xs = (ys + rng.randrange(period)) % period, (xs + rng.randrange(period)) % period
    if pattern == "striped":
        band = (ys if rng.random() < 0.6 else xs) < period * rng.uniform(0.3, 0.5)
        pixels[np.broadcast_to(band, (h, w))] = second
    elif pattern == "checked":
        across, down = np.broadcast_arrays(xs < period / 2, ys < period / 2)
        pixels[across ^ down] = second
        pixels[across & down] = _shade(rgb, -0.3)  # gingham: where the bands cross, the deepest tone
    elif pattern == "dotted":
        radius = period * rng.uniform(0.16, 0.26)
        pixels[(xs - period / 2) ** 2 + (ys - period / 2) ** 2 < radius**2] = second
    return Image.fromarray(pixels, "RGB")


def render_garment(
    canvas: Image.Image, outline: Outline, rgb: RGB, pattern: str, scale: float, rng: random.Random
) -> Image.Image:
    """Paint ``outline`` on ``canvas`` in place; return its mask ("L", 255 inside)."""
    mask = Image.new("L", canvas.size, 0)
    mask_draw = ImageDraw.Draw(mask)
    for kind, points, value in outline.fill:
        (mask_draw.polygon if kind == "polygon" else mask_draw.ellipse)(points, fill=value)
    layer = pattern_layer(canvas.size, rgb, pattern, scale, rng)
    edge_colour = _shade(rgb, 0.45 if _luma(rgb) < 60 else -0.45)
    layer_draw = ImageDraw.Draw(layer)
    for kind, points, width in outline.details:  # drawn on the layer so the mask clips them
        if kind == "dot":
            (x, y), r = points[0], width
            layer_draw.ellipse((x - r, y - r, x + r, y + r), fill=edge_colour)
        else:
            layer_draw.line(points, fill=edge_colour, width=width, joint="curve")
    canvas.paste(layer, (0, 0), mask)
    canvas.paste(edge_colour, (0, 0, *canvas.size), mask.filter(ImageFilter.FIND_EDGES))
    return mask
