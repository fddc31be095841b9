"""Test helpers: a tiny open_clip config, generated garment-like images and catalogue feeds."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import open_clip
from PIL import Image, ImageDraw

from indexer.build import BuildOptions, BuildReport, build_index
from models.attributes.extractor import create_extractor

TINY_MODEL = "test-tiny-vit"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 1, "layers": 1},
}
OTHER_TINY_MODEL = "test-tiny-vit-wide"
OTHER_TINY_CONFIG = {**TINY_CONFIG, "embed_dim": 48}
CATEGORIES = ("top", "skirt", "trousers", "bag")
COLOURS = {
    "red": (200, 30, 30),
    "blue": (30, 60, 200),
    "green": (30, 160, 60),
    "yellow": (230, 210, 40),
    "black": (20, 20, 20),
    "white": (245, 245, 245),
    "pink": (240, 140, 180),
    "brown": (120, 70, 30),
}


REPO_ROOT = Path(__file__).resolve().parents[1]
# The shared data set (tests that need it skip when it is absent).
DATA_DIR = Path(os.environ.get("FASHION_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def register_tiny_configs(directory: Path) -> None:
    for name, config in ((TINY_MODEL, TINY_CONFIG), (OTHER_TINY_MODEL, OTHER_TINY_CONFIG)):
        (directory / f"{name}.json").write_text(json.dumps(config))
    open_clip.add_model_config(directory)


def garment_image(seed: int, size: int = 64) -> Image.Image:
    """A distinct product-like picture: coloured shape with a pattern on a light background."""
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), (235, 235, 235))
    draw = ImageDraw.Draw(image)
    colour = list(COLOURS.values())[seed % len(COLOURS)]
    second = tuple(rng.randrange(256) for _ in range(3))
    x0, y0 = rng.randrange(2, size // 4), rng.randrange(2, size // 4)
    x1, y1 = rng.randrange(size * 3 // 4, size - 2), rng.randrange(size * 3 // 4, size - 2)
    draw.rectangle((x0, y0, x1, y1), fill=colour)
    step = rng.randrange(4, 12)
    for offset in range(x0, x1, step):
        draw.line((offset, y0, offset + rng.randrange(-8, 8), y1), fill=second, width=rng.randrange(1, 4))
    draw.ellipse((rng.randrange(size), rng.randrange(size), size - 1, size - 1), outline=second, width=2)
    return image


def write_catalog(directory: Path, n_items: int, extra_rows: list[str] | None = None) -> Path:
    """Write n_items images and a JSON Lines feed; `extra_rows` are appended verbatim (bad rows)."""
    (directory / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(n_items):
        garment_image(index).save(directory / "images" / f"item-{index:04d}.jpg", quality=92)
        lines.append(
            json.dumps(
                {
                    "id": f"item-{index:04d}",
                    "image": f"images/item-{index:04d}.jpg",
                    "title": f"Test garment {index}",
                    "category": CATEGORIES[index % len(CATEGORIES)],
                    "brand": "Testwear",
                    "price": 10.0 + index,
                    "currency": "EUR",
                    "in_stock": index % 5 != 0,
                    "url": f"https://shop.example/p/{index}",
                    "attributes": {"colour": list(COLOURS)[index % len(COLOURS)], "pattern": "striped"},
                }
            )
        )
    feed = directory / "catalog.jsonl"
    feed.write_text("\n".join(lines + (extra_rows or [])) + "\n", encoding="utf-8")
    return feed


def jpeg_bytes(image: Image.Image, **options: object) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def index_feed(feed: Path, out: Path, embedder: Any, **options: Any) -> BuildReport:
    """`index build` as the CLI runs it (the extractor made for this embedder), quietly. The catalogue guards
    are off unless `force=False` is given: tests rebuild onto an index with other feeds on purpose, and the
    guards have tests of their own (tests/indexer/test_catalogue_guards.py)."""
    options = {"force": True, **options}
    return build_index(
        feed, out, embedder, BuildOptions(progress=False, **options), create_extractor(embedder)
    )
