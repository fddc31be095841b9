from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.build import BuildOptions, build_index
from indexer.manifest import MANIFEST_NAME, Manifest
from indexer.publish import BuildError, build_lock, builds_root
from indexer.store import IndexStore
from models.attributes.extractor import create_extractor
from models.embedder import Embedder
from tests.helpers import garment_image, write_catalog

# Feeds here hold bad rows on purpose; the bad-row guard is tested in test_catalogue_guards.py.
QUIET = BuildOptions(progress=False, batch_size=16, max_bad_ratio=1.0)


class FailingEmbedder:
    """Wraps a real embedder and fails on the n-th batch, like a crash half-way through a build."""

    def __init__(self, inner: Embedder, fail_on_batch: int) -> None:
        self._inner, self._fail_on, self._calls = inner, fail_on_batch, 0
        self.name, self.dimension, self.has_text_tower = inner.name, inner.dimension, False

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        self._calls += 1
        if self._calls == self._fail_on:
            raise RuntimeError("simulated crash while embedding")
        return self._inner.embed_images(images)

    head_labels: dict[str, tuple[str, ...]] = {}  # no attribute heads

    def describe_images(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, None]:
        return self.embed_images(images), None


def test_every_catalogue_image_finds_itself_first(built_index: Path, tiny_embedder: Embedder) -> None:
    store = IndexStore.open(built_index)
    try:
        assert store.count == 40
        for index in range(40):
            record = store.item(f"item-{index:04d}")
            assert record is not None
            vector = tiny_embedder.embed_images([Image.open(record.image).convert("RGB")])
            hits = store.search(vector, top_k=3)[0]
            assert hits[0].item.item_id == record.item_id
            assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    finally:
        store.close()


def test_manifest_records_the_build(built_index: Path, catalog_feed: Path, tiny_embedder: Embedder) -> None:
    manifest = Manifest.read(built_index.resolve())
    assert manifest.model_name == tiny_embedder.name and manifest.dimension == 32
    assert manifest.count == 40 and manifest.metric == "inner_product" and manifest.index_type == "Flat"
    assert manifest.feed_path == str(catalog_feed.resolve()) and manifest.skipped_rows == 0
    assert len(manifest.feed_sha256) == 64 and manifest.created_at.endswith("+00:00")
    assert built_index.is_symlink()


def test_bad_rows_are_skipped_and_strict_fails(tmp_path: Path, tiny_embedder: Embedder) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    extra = [
        json.dumps({"id": "broken", "image": "images/broken.jpg", "title": "b", "category": "top"}),
        json.dumps({"id": "item-0000", "image": "images/item-0000.jpg", "title": "dup", "category": "top"}),
    ]
    feed = write_catalog(tmp_path, 5, extra)
    report = build_index(feed, tmp_path / "index", tiny_embedder, QUIET, create_extractor(tiny_embedder))
    assert report.manifest.count == 5 and report.manifest.skipped_rows == 2
    assert [(row.line, row.item_id) for row in report.bad_rows] == [(6, "broken"), (7, "item-0000")]
    assert "unreadable image" in report.bad_rows[0].reason

    before = os.readlink(tmp_path / "index")
    strict = BuildOptions(progress=False, strict=True)
    with pytest.raises(BuildError, match="--strict: 1 bad row"):
        build_index(feed, tmp_path / "index", tiny_embedder, strict, create_extractor(tiny_embedder))
    assert os.readlink(tmp_path / "index") == before


def test_failed_build_keeps_previous_index_serving(tmp_path: Path, tiny_embedder: Embedder) -> None:
    feed = write_catalog(tmp_path, 40)
    out = tmp_path / "index"
    build_index(feed, out, tiny_embedder, QUIET, create_extractor(tiny_embedder))
    published = out.resolve()
    store = IndexStore.open(out)
    query = tiny_embedder.embed_images([garment_image(3)])

    with pytest.raises(RuntimeError, match="simulated crash"):
        build_index(
            feed,
            out,
            FailingEmbedder(tiny_embedder, fail_on_batch=2),
            QUIET,
            create_extractor(FailingEmbedder(tiny_embedder, fail_on_batch=2)),
        )

    assert out.resolve() == published
    assert [p.name for p in builds_root(out).iterdir() if p.name.endswith(".partial")] == []
    assert store.search(query, 1)[0][0].item.item_id == "item-0003"
    reopened = IndexStore.open(out)
    assert reopened.count == 40 and reopened.search(query, 1)[0][0].item.item_id == "item-0003"
    store.close()
    reopened.close()


def test_rebuild_swaps_atomically_and_prunes(tmp_path: Path, tiny_embedder: Embedder) -> None:
    out = tmp_path / "index"
    targets = []
    for size in (3, 4, 5, 6):
        feed = write_catalog(tmp_path / f"feed{size}", size)
        build_index(
            feed,
            out,
            tiny_embedder,
            BuildOptions(progress=False, keep_builds=2),
            create_extractor(tiny_embedder),
        )
        targets.append(out.resolve())
        assert Manifest.read(out.resolve()).count == size
    remaining = sorted(p for p in builds_root(out).iterdir() if p.is_dir())
    assert remaining == targets[-2:]


def test_leftover_partial_build_is_cleaned(tmp_path: Path, tiny_embedder: Embedder) -> None:
    feed = write_catalog(tmp_path, 3)
    stale = builds_root(tmp_path / "index") / "20200101T000000-000000001.partial"
    stale.mkdir(parents=True)
    (stale / "vectors.faiss").write_bytes(b"half written")
    build_index(feed, tmp_path / "index", tiny_embedder, QUIET, create_extractor(tiny_embedder))
    assert not stale.exists()


def test_concurrent_build_is_refused(tmp_path: Path, tiny_embedder: Embedder) -> None:
    feed = write_catalog(tmp_path, 3)
    with build_lock(tmp_path / "index"), pytest.raises(BuildError, match="another build"):
        build_index(feed, tmp_path / "index", tiny_embedder, QUIET, create_extractor(tiny_embedder))


def test_out_dir_that_is_not_ours_is_refused(tmp_path: Path, tiny_embedder: Embedder) -> None:
    feed = write_catalog(tmp_path, 3)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep me")
    with pytest.raises(BuildError, match="not an index link"):
        build_index(feed, precious, tiny_embedder, QUIET, create_extractor(tiny_embedder))
    assert (precious / "data.txt").read_text() == "keep me"


def test_feed_with_no_valid_rows_publishes_nothing(tmp_path: Path, tiny_embedder: Embedder) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_text('{"id": "a"}\n', encoding="utf-8")
    with pytest.raises(BuildError, match="no valid items"):
        build_index(feed, tmp_path / "index", tiny_embedder, QUIET, create_extractor(tiny_embedder))
    assert not (tmp_path / "index").exists()
    assert not list(builds_root(tmp_path / "index").glob(f"*/{MANIFEST_NAME}"))
