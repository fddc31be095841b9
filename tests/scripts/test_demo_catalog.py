"""The synthetic demo catalogue: feed shape, determinism, colours that mean something, scene ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scripts.demo_catalog import CATEGORIES, SCENE_SIZE, DemoCatalog, generate_catalog, main

FEED_TYPES = {
    "id": str,
    "image": str,
    "title": str,
    "category": str,
    "brand": str,
    "price": float,
    "currency": str,
    "in_stock": bool,
    "url": str,
    "attributes": dict,
}


def _records(feed: Path) -> list[dict]:
    return [json.loads(line) for line in feed.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> DemoCatalog:
    return generate_catalog(tmp_path_factory.mktemp("demo") / "out", n_items=70, n_scenes=4, seed=0, size=64)


def test_feed_rows_are_complete_and_images_open(catalog: DemoCatalog) -> None:
    records = _records(catalog.feed)
    assert catalog.n_items == len(records) == 70
    assert len({r["id"] for r in records}) == len(records)
    for record in records:
        assert set(record) == set(FEED_TYPES)
        for key, kind in FEED_TYPES.items():
            assert isinstance(record[key], kind), (key, record[key])
        assert record["category"] in CATEGORIES
        assert record["currency"] == "EUR" and record["price"] > 0
        assert record["price"] == round(record["price"], 2)
        assert record["url"].endswith(record["id"])
        assert {"colour", "pattern"} <= set(record["attributes"])
        assert all(isinstance(v, str) for v in record["attributes"].values())
        with Image.open(catalog.feed.parent / record["image"]) as image:
            assert image.format == "JPEG" and image.size == (64, 64) and image.mode == "RGB"
    counts = [sum(r["category"] == c for r in records) for c in CATEGORIES]
    assert counts == [10] * len(CATEGORIES)


def test_items_are_all_different(catalog: DemoCatalog) -> None:
    images = {(catalog.feed.parent / r["image"]).read_bytes() for r in _records(catalog.feed)}
    assert len(images) == catalog.n_items


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    first = generate_catalog(tmp_path / "a", n_items=7, n_scenes=1, seed=5, size=48)
    again = generate_catalog(tmp_path / "b", n_items=7, n_scenes=1, seed=5, size=48)
    other = generate_catalog(tmp_path / "c", n_items=7, n_scenes=1, seed=6, size=48)
    assert first.feed.read_bytes() == again.feed.read_bytes()
    assert first.feed.read_bytes() != other.feed.read_bytes()
    for name in ("images/demo-00003.jpg", "scenes/scene_00.jpg", "scenes/scene_00.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "scenes/scene_00.jpg").read_bytes() != (
        tmp_path / "c" / "scenes/scene_00.jpg"
    ).read_bytes()


def _garment_mean(path: Path) -> np.ndarray:
    """Mean colour of the pixels that differ clearly from the studio backdrop (sampled on the border)."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    backdrop = np.median(border, axis=0)
    garment = np.abs(pixels - backdrop).max(axis=2) > 40
    assert garment.mean() > 0.05, f"{path.name}: almost no garment pixels"
    return pixels[garment].mean(axis=0)


@pytest.mark.parametrize(
    ("colour", "channel"),
    [("red", 0), ("green", 1), ("blue", 2)],
)
def test_garment_pixels_carry_the_named_colour(catalog: DemoCatalog, colour: str, channel: int) -> None:
    records = [r for r in _records(catalog.feed) if r["attributes"]["colour"] == colour]
    assert records, f"seed 0 with 70 items should include a {colour} item"
    for record in records:
        mean = _garment_mean(catalog.feed.parent / record["image"])
        others = np.delete(mean, channel)
        assert (mean[channel] - others > 25).all(), (record["title"], mean.round())


def test_dark_and_light_items_differ(catalog: DemoCatalog) -> None:
    luma = np.array([0.299, 0.587, 0.114])
    records = _records(catalog.feed)
    means = {}
    for colour in ("navy", "yellow"):
        paths = [catalog.feed.parent / r["image"] for r in records if r["attributes"]["colour"] == colour]
        assert paths, f"seed 0 with 70 items should include a {colour} item"
        means[colour] = float(np.mean([_garment_mean(path) @ luma for path in paths]))
    assert means["yellow"] - means["navy"] > 80, means


def test_scenes_have_ground_truth_inside_the_image(catalog: DemoCatalog) -> None:
    assert [p.name for p in catalog.scenes] == [f"scene_{i:02d}.jpg" for i in range(4)]
    seen: set[str] = set()
    for path in catalog.scenes:
        with Image.open(path) as image:
            assert image.size == SCENE_SIZE
        truth = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        assert len(truth) >= 2
        for garment in truth:
            assert set(garment) == {"category", "box", "colour", "pattern"}
            assert garment["category"] in CATEGORIES
            x0, y0, x1, y1 = garment["box"]
            assert 0 <= x0 < x1 <= SCENE_SIZE[0] and 0 <= y0 < y1 <= SCENE_SIZE[1], garment
            seen.add(garment["category"])
    assert seen == set(CATEGORIES)  # the four outfits together wear every category


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_items": 6}, "n_items"), ({"size": 31}, "size"), ({"n_scenes": -1}, "n_scenes")],
)
def test_bad_arguments_raise(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_catalog(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_cli_writes_and_summarises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path / "cli"), "--items", "7", "--scenes", "0", "--size", "32"]) == 0
    assert "wrote 7 items" in capsys.readouterr().out
    assert len((tmp_path / "cli" / "catalog.jsonl").read_text().splitlines()) == 7
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "bad"), "--items", "3"])
