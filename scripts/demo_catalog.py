"""Deterministic synthetic demo catalogue: product shots, a JSON Lines feed and street-style scenes.

No real product data ships with the repository, so the demo generates it: flat silhouettes of seven
garment categories in named colours and patterns on a studio background, plus portrait scenes of a
blob figure wearing several garments, with ground-truth boxes. Same seed, same bytes.

    python -m scripts.demo_catalog --out demo-out --items 300 --scenes 4 --seed 0
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from scripts.demo_shapes import (
    ARM_LINE,
    COLOURS,
    PATTERNS,
    RGB,
    TORSO_ASPECT,
    Box,
    build_outline,
    garment_extent,
    noun,
    render_garment,
    sample_attributes,
)

log = logging.getLogger(__name__)

CATEGORIES = ("top", "outerwear", "dress", "trousers", "skirt", "footwear", "bag")
BRANDS = ("Northwind", "Atelier Nove", "Kestrel & Co", "Maison Lume", "Fernhill", "Solvik", "Odd Thread")
SCENE_SIZE = (400, 640)
_PRICES = {
    "top": (12, 60),
    "outerwear": (70, 320),
    "dress": (30, 180),
    "trousers": (30, 140),
    "skirt": (25, 120),
    "footwear": (40, 220),
    "bag": (25, 260),
}
_OUTFITS = (  # drawing order: later garments cover earlier ones
    ("trousers", "top", "footwear", "bag"),
    ("dress", "outerwear", "footwear"),
    ("skirt", "top", "footwear", "bag"),
    ("trousers", "outerwear", "footwear", "bag"),
)
_SKIN = ((241, 206, 180), (224, 172, 135), (198, 134, 96), (141, 85, 54), (92, 56, 38))
_HAIR = ((28, 22, 20), (58, 38, 26), (104, 62, 34), (160, 120, 66), (120, 120, 118))
_MIN_VISIBLE_PX = 60


@dataclass(frozen=True)
class DemoCatalog:
    feed: Path
    scenes: tuple[Path, ...]
    n_items: int


def generate_catalog(
    out_dir: Path, n_items: int = 300, n_scenes: int = 4, seed: int = 0, size: int = 224
) -> DemoCatalog:
    """Write ``n_items`` product JPEGs and ``catalog.jsonl``, and ``n_scenes`` scenes with ground truth."""
    if n_items < len(CATEGORIES):
        raise ValueError(f"n_items must be at least {len(CATEGORIES)} (one per category), got {n_items}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    if n_scenes < 0:
        raise ValueError(f"n_scenes must be >= 0, got {n_scenes}")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    width = max(5, len(str(n_items - 1)))
    feed = out_dir / "catalog.jsonl"
    with feed.open("w", encoding="utf-8") as handle:
        for index in range(n_items):
            rng = random.Random(f"demo-item:{seed}:{index}")
            record, image = _product(
                f"demo-{index:0{width}d}", CATEGORIES[index % len(CATEGORIES)], size, rng
            )
            image.save(out_dir / record["image"], "JPEG", quality=90)
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    scenes: list[Path] = []
    if n_scenes:
        (out_dir / "scenes").mkdir(exist_ok=True)
    for index in range(n_scenes):
        image, truth = _scene(index, random.Random(f"demo-scene:{seed}:{index}"))
        path = out_dir / "scenes" / f"scene_{index:02d}.jpg"
        image.save(path, "JPEG", quality=90)
        path.with_suffix(".json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
        scenes.append(path)
    elapsed = time.perf_counter() - started
    log.info(
        "demo catalogue: %d items, %d scenes in %.1f s (%.0f items/s)",
        n_items,
        n_scenes,
        elapsed,
        n_items / max(elapsed, 1e-9),
    )
    return DemoCatalog(feed=feed, scenes=tuple(scenes), n_items=n_items)


def _jitter_colour(rgb: RGB, rng: random.Random, spread: int = 10) -> RGB:
    r, g, b = (min(255, max(0, c + rng.randint(-spread, spread))) for c in rgb)
    return r, g, b


def _garment_attributes(category: str, rng: random.Random) -> dict[str, str]:
    colour = rng.choice(tuple(COLOURS))
    pattern = rng.choices(PATTERNS, weights=(4, 2, 2, 2))[0]
    return {"colour": colour, "pattern": pattern, **sample_attributes(category, rng)}


def _product(
    item_id: str, category: str, size: int, rng: random.Random
) -> tuple[dict[str, Any], Image.Image]:
    attrs = _garment_attributes(category, rng)
    pair = category == "footwear" and rng.random() < 0.7
    aspect = garment_extent(category, attrs, pair) * rng.uniform(0.95, 1.05)
    longest = size * rng.uniform(0.72, 0.88)
    w, h = (longest, longest * aspect) if aspect <= 1 else (longest / aspect, longest)
    cx, cy = (size / 2 + rng.uniform(-0.04, 0.04) * size for _ in range(2))
    box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    image = _studio(size, rng)
    outline = build_outline(category, box, attrs, rng, pair=pair)
    render_garment(image, outline, _jitter_colour(COLOURS[attrs["colour"]], rng), attrs["pattern"], w, rng)
    pattern = "" if attrs["pattern"] == "solid" else f"{attrs['pattern']} "
    low, high = _PRICES[category]
    record = {
        "id": item_id,
        "image": f"images/{item_id}.jpg",
        "title": f"{attrs['colour'].capitalize()} {pattern}{noun(category, attrs)}",
        "category": category,
        "brand": rng.choice(BRANDS),
        "price": round(rng.randint(low, high) + rng.choice((0.0, 0.5, 0.95, 0.99)), 2),
        "currency": "EUR",
        "in_stock": rng.random() < 0.85,
        "url": f"https://shop.example/p/{item_id}",
        "attributes": attrs,
    }
    return record, image


def _gradient(width: int, height: int, top: RGB, bottom: RGB) -> np.ndarray:
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    rows = (1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32)
    return np.broadcast_to(rows, (height, width, 3)).round().astype(np.uint8)


def _studio(size: int, rng: random.Random) -> Image.Image:
    """White to light-grey seamless backdrop."""
    top, bottom = rng.randint(240, 253), rng.randint(228, 245)
    return Image.fromarray(_gradient(size, size, (top, top, top), (bottom, bottom, bottom)), "RGB")


def _street(rng: random.Random) -> tuple[Image.Image, int]:
    """Sky or wall above a pavement; returns the image and the horizon row."""
    w, h = SCENE_SIZE
    horizon = round(h * rng.uniform(0.6, 0.7))
    if rng.random() < 0.5:
        upper = _gradient(w, horizon, (118, 164, 222), (204, 224, 240))
    else:
        wall = rng.choice(((178, 92, 70), (226, 214, 190), (150, 150, 156), (196, 180, 150)))
        upper = _gradient(w, horizon, _jitter_colour(wall, rng), _jitter_colour(wall, rng, 25))
    ground = _gradient(w, h - horizon, (172, 170, 166), (120, 118, 116))
    image = Image.fromarray(np.concatenate([upper, ground]), "RGB")
    draw = ImageDraw.Draw(image)
    for y in range(horizon + 24, h, 36):  # paving slabs
        draw.line((0, y, w, y), fill=(104, 102, 100), width=1)
    for x in range(rng.randrange(40), w, 80):
        draw.line((x, horizon, x, h), fill=(110, 108, 106), width=1)
    return image, horizon


@dataclass(frozen=True)
class _Figure:
    """A standing figure: ``unit`` is one head height, ``top`` the crown's row, ``cx`` the centre line."""

    cx: float
    top: float
    unit: float

    def torso(self) -> Box:
        """The torso frame of upper garments: full sleeve span, shoulders to hips."""
        half = 1.75 * self.unit
        y0 = self.top + 1.3 * self.unit
        return self.cx - half, y0, self.cx + half, y0 + 2 * half * TORSO_ASPECT

    def arm(self, side: int) -> tuple[tuple[float, float], tuple[float, float]]:
        x0, y0, x1, y1 = self.torso()
        (su, sv), (eu, ev) = ARM_LINE
        us = (su, eu) if side < 0 else (1 - su, 1 - eu)
        (ax, bx), (ay, by) = ((x0 + u * (x1 - x0) for u in us), (y0 + v * (y1 - y0) for v in (sv, ev)))
        return (ax, ay), (ax + 1.12 * (bx - ax), ay + 1.12 * (by - ay))

    def box(self, category: str, attrs: dict[str, str], side: int = 1) -> Box:
        u, aspect = self.unit, garment_extent(category, attrs)
        if category in ("top", "dress", "outerwear"):
            x0, y0, x1, _ = self.torso()
            return x0, y0, x1, y0 + (x1 - x0) * aspect
        if category == "trousers":
            y0 = self.top + 3.6 * u
            return self.cx - 0.8 * u, y0, self.cx + 0.8 * u, y0 + 1.6 * u * aspect
        if category == "skirt":
            y0 = self.top + 3.55 * u
            return self.cx - u, y0, self.cx + u, y0 + 2 * u * aspect
        if category == "footwear":
            heel, bottom = self.cx + side * 0.08 * u, self.top + 8.0 * u
            return min(heel, heel + side * u), bottom - u * aspect, max(heel, heel + side * u), bottom
        (hx, hy) = self.arm(1)[1]
        return hx - 0.6 * u, hy - 0.2 * u, hx + 0.6 * u, hy + 1.0 * u  # bag hangs from the right hand

    def draw(self, image: Image.Image, skin: RGB, hair: RGB) -> None:
        draw, u, cx, top = ImageDraw.Draw(image), self.unit, self.cx, self.top
        for side in (-1, 1):
            draw.line(
                (cx + side * 0.4 * u, top + 3.6 * u, cx + side * 0.42 * u, top + 7.8 * u),
                fill=skin,
                width=round(0.4 * u),
            )
            start, hand = self.arm(side)
            draw.line((start, hand), fill=skin, width=round(0.3 * u), joint="curve")
            draw.ellipse(
                (hand[0] - 0.17 * u, hand[1] - 0.17 * u, hand[0] + 0.17 * u, hand[1] + 0.17 * u), fill=skin
            )
        shoulders = [
            (0.3, 1.3),
            (0.55, 1.38),
            (0.82, 1.7),
            (0.7, 3.9),
        ]  # (half-width, row) in units, sloping shoulders
        torso = [(cx - w * u, top + v * u) for w, v in shoulders]
        draw.polygon(torso + [(2 * cx - x, y) for x, y in reversed(torso)], fill=skin)
        draw.rectangle((cx - 0.15 * u, top + 0.9 * u, cx + 0.15 * u, top + 1.4 * u), fill=skin)
        draw.ellipse((cx - 0.42 * u, top - 0.02 * u, cx + 0.42 * u, top + 0.8 * u), fill=hair)
        draw.ellipse((cx - 0.36 * u, top + 0.18 * u, cx + 0.36 * u, top + 1.05 * u), fill=skin)


def street_scene(index: int, seed: int = 0) -> Image.Image:
    """One generated street scene (outfit ``index % 4``), for tests and benchmarks."""
    return _scene(index, random.Random(seed))[0]


def _scene(index: int, rng: random.Random) -> tuple[Image.Image, list[dict[str, Any]]]:
    """A figure on a street wearing outfit ``index % 4``; ground truth boxes cover the visible pixels."""
    image, _ = _street(rng)
    unit = rng.uniform(62.0, 70.0)
    figure = _Figure(cx=SCENE_SIZE[0] / 2 + rng.uniform(-25, 25), top=rng.uniform(22, 38), unit=unit)
    figure.draw(image, rng.choice(_SKIN), rng.choice(_HAIR))
    outfit = _OUTFITS[index % len(_OUTFITS)]
    worn: list[tuple[dict[str, str], str, Image.Image]] = []
    for category, colour in zip(outfit, rng.sample(tuple(COLOURS), len(outfit)), strict=True):
        attrs = {**_garment_attributes(category, rng), "colour": colour}
        if "outerwear" in outfit and category in ("dress", "trousers"):  # show below the coat's hem
            attrs["length"] = rng.choice(("midi", "maxi")) if category == "dress" else "full"
        if category == "footwear":
            left, right = figure.box(category, attrs, -1), figure.box(category, attrs, 1)
            outline = build_outline(category, left, attrs, rng, mirror=True)
            outline += build_outline(category, right, attrs, rng)
            scale = 2 * (right[2] - right[0])
        else:
            box = figure.box(category, attrs)
            open_front = category == "outerwear" and "dress" in outfit  # the dress shows in the gap
            outline = build_outline(category, box, attrs, rng, open_front=open_front)
            scale = box[2] - box[0]
        rgb = _jitter_colour(COLOURS[colour], rng)
        worn.append((attrs, category, render_garment(image, outline, rgb, attrs["pattern"], scale, rng)))
    truth: list[dict[str, Any]] = []
    for k, (attrs, category, mask) in enumerate(worn):
        for _, _, later in worn[k + 1 :]:
            mask = ImageChops.subtract(mask, later)
        bbox = mask.getbbox()
        if bbox and np.count_nonzero(np.asarray(mask)) >= _MIN_VISIBLE_PX:
            truth.append(
                {
                    "category": category,
                    "box": list(bbox),
                    "colour": attrs["colour"],
                    "pattern": attrs["pattern"],
                }
            )
    return image, truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the synthetic demo catalogue and scenes.")
    parser.add_argument("--out", type=Path, required=True, help="output directory (created if missing)")
    parser.add_argument("--items", type=int, default=300, help="number of products (default 300)")
    parser.add_argument("--scenes", type=int, default=4, help="number of street scenes (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=int, default=224, help="product image side in pixels (default 224)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    try:
        catalog = generate_catalog(args.out, args.items, args.scenes, args.seed, args.size)
    except ValueError as exc:
        parser.error(str(exc))
    print(  # noqa: T201
        f"wrote {catalog.n_items} items to {catalog.feed} and {len(catalog.scenes)} scenes "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
