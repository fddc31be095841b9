"""Issue 19: a feed must never empty a live catalogue. The guards refuse a broken feed before anything is
embedded (a counting embedder proves it), the published build keeps serving, and `force` overrides them."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.build import BuildOptions, CatalogueGuardError, build_index, read_build_feed
from indexer.feed import read_feed
from indexer.manifest import Manifest
from indexer.publish import BuildError, builds_root
from indexer.update import update_index
from models.attributes.extractor import AttributeExtractor, create_extractor
from models.embedder import Embedder
from tests.helpers import write_catalog

QUIET = BuildOptions(progress=False, batch_size=16)


class CountingEmbedder:
    """A real embedder that counts the images it is asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self._inner, self.images = inner, 0
        self.name, self.dimension, self.has_text_tower = inner.name, inner.dimension, False

    head_labels: dict[str, tuple[str, ...]] = {}

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        self.images += len(images)
        return self._inner.embed_images(images)

    def describe_images(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, None]:
        return self.embed_images(images), None


def feed_with(directory: Path, good: int, bad: int, start: int = 0) -> Path:
    """`good` valid rows (item-0000...) then `bad` rows without an image or category."""
    feed = write_catalog(directory, start + good)
    lines = [line for line in feed.read_text(encoding="utf-8").splitlines()[start:] if line]
    lines += [json.dumps({"id": f"bad-{index}", "title": "no image"}) for index in range(bad)]
    feed.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return feed


def build(feed: Path, out: Path, embedder: Embedder, options: BuildOptions = QUIET) -> Manifest:
    return build_index(feed, out, embedder, options, create_extractor(embedder)).manifest


@pytest.fixture
def live(tmp_path: Path, tiny_embedder: Embedder) -> Path:
    out = tmp_path / "index"
    assert build(write_catalog(tmp_path / "live", 20), out, tiny_embedder).count == 20
    return out


def test_a_mostly_bad_feed_is_refused_before_embedding(
    live: Path, tmp_path: Path, tiny_embedder: Embedder
) -> None:
    before = os.readlink(live)
    counting = CountingEmbedder(tiny_embedder)
    feed = feed_with(tmp_path / "broken", good=5, bad=15)
    with pytest.raises(CatalogueGuardError, match=r"15 of 20 rows .* are bad \(75%") as refused:
        build(feed, live, counting)
    message = str(refused.value)
    assert "line 6 (id 'bad-0')" in message and "(and 12 more)" in message and "\n" not in message
    assert "published build (20 items) keeps serving" in message
    assert counting.images == 0
    assert os.readlink(live) == before
    assert [p.name for p in builds_root(live).iterdir() if p.name.endswith(".partial")] == []


def test_force_publishes_the_mostly_bad_feed(live: Path, tmp_path: Path, tiny_embedder: Embedder) -> None:
    feed = feed_with(tmp_path / "broken", good=5, bad=15)
    forced = build(feed, live, tiny_embedder, BuildOptions(progress=False, force=True))
    assert forced.count == 5 and forced.skipped_rows == 15
    assert Manifest.read(live.resolve()).count == 5


def test_a_feed_missing_too_many_items_is_refused(
    live: Path, tmp_path: Path, tiny_embedder: Embedder
) -> None:
    counting = CountingEmbedder(tiny_embedder)
    with pytest.raises(CatalogueGuardError, match=r"14 items, 6 \(30%\) fewer than the 20 published"):
        build(write_catalog(tmp_path / "short", 14), live, counting)
    assert counting.images == 0 and Manifest.read(live.resolve()).count == 20
    # Within the allowed share (20% fewer is not more than 0.2), and with a looser limit, it publishes.
    assert build(write_catalog(tmp_path / "fewer", 16), live, tiny_embedder).count == 16
    looser = BuildOptions(progress=False, max_removed_ratio=0.5)
    assert build(write_catalog(tmp_path / "half", 9), live, tiny_embedder, looser).count == 9


def test_a_first_build_is_held_to_the_bad_row_share(tmp_path: Path, tiny_embedder: Embedder) -> None:
    """No build is published yet, so nothing can shrink; an almost all-bad feed is still refused."""
    out = tmp_path / "index"
    with pytest.raises(CatalogueGuardError, match="nothing was published; fix the feed"):
        read_build_feed(feed_with(tmp_path / "broken", good=5, bad=15), out, QUIET)
    assert not out.exists()
    assert build(feed_with(tmp_path / "fine", good=20, bad=1), out, tiny_embedder).count == 20  # 1/21 < 5%


def test_unreadable_images_count_once_embedding_finds_them(
    live: Path, tmp_path: Path, tiny_embedder: Embedder
) -> None:
    feed = write_catalog(tmp_path / "images", 20)
    for index in range(4):  # parse fine, fail to decode: only the embedding pass can tell
        (tmp_path / "images" / "images" / f"item-{index:04d}.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    before = os.readlink(live)
    with pytest.raises(CatalogueGuardError, match=r"4 of 20 rows .* are bad .*unreadable image"):
        build(feed, live, tiny_embedder)
    assert os.readlink(live) == before


def test_every_row_bad_names_the_reasons_even_with_force(tmp_path: Path, tiny_embedder: Embedder) -> None:
    feed = feed_with(tmp_path / "all-bad", good=0, bad=4)
    for options in (QUIET, BuildOptions(progress=False, force=True)):
        with pytest.raises(BuildError, match=r"no valid items .*\(4 bad row\(s\)\): line 1 \(id 'bad-0'\)"):
            read_build_feed(feed, tmp_path / "index", options)


def test_add_is_held_to_the_bad_row_share_before_loading_models(
    live: Path, tmp_path: Path, tiny_embedder: Embedder
) -> None:
    feed = read_feed(feed_with(tmp_path / "more", good=2, bad=3, start=20))
    loads: list[int] = []

    def load_models() -> tuple[Embedder, AttributeExtractor]:
        loads.append(1)
        return tiny_embedder, create_extractor(tiny_embedder)

    before = os.readlink(live)
    with pytest.raises(CatalogueGuardError, match=r"3 of 5 rows"):
        update_index(live, None, None, QUIET, feed.items, "add", (), feed.bad_rows, load_models=load_models)
    assert loads == [] and os.readlink(live) == before
    forced = BuildOptions(progress=False, force=True)
    report = update_index(
        live, None, None, forced, feed.items, "add", (), feed.bad_rows, load_models=load_models
    )
    assert loads == [1] and report.added == 2 and report.count == 22


def test_rerunning_an_add_is_not_a_broken_feed(live: Path, tmp_path: Path, tiny_embedder: Embedder) -> None:
    """Rows whose id is already indexed are skipped and reported, but do not count as bad rows."""
    feed = read_feed(write_catalog(tmp_path / "again", 20))
    report = update_index(live, tiny_embedder, create_extractor(tiny_embedder), QUIET, feed.items, "add")
    assert not report.changed and len(report.bad_rows) == 20


def test_delete_needs_no_models(live: Path) -> None:
    report = update_index(live, None, None, QUIET, delete_ids=["item-0001", "item-0002"])
    assert report.deleted == 2 and report.count == 18
    with pytest.raises(BuildError, match="no models"):
        update_index(live, None, None, QUIET, read_feed(write_catalog(live.parent / "x", 21)).items[20:])
