"""Incremental add / upsert / delete: only new rows are embedded, every change is a new atomic build, and a
failure at any point leaves the published index as it was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer import build as build_module
from indexer.build import BuildOptions, build_index
from indexer.feed import read_feed
from indexer.manifest import METADATA_NAME, RAW_VECTORS_NAME, Manifest
from indexer.metadata import ItemRecord, MetadataReader
from indexer.publish import BuildError, builds_root
from indexer.store import IndexStore
from indexer.update import update_index
from models.attributes.extractor import create_extractor
from models.embedder import Embedder
from models.errors import ModelMismatchError
from tests.helpers import garment_image, write_catalog

QUIET = BuildOptions(progress=False, batch_size=16)


@pytest.fixture
def index(tmp_path: Path, tiny_embedder: Embedder) -> Path:
    out = tmp_path / "index"
    build_index(
        write_catalog(tmp_path / "base", 12), out, tiny_embedder, QUIET, create_extractor(tiny_embedder)
    )
    return out


def feed_of(directory: Path, ids_and_seeds: list[tuple[str, int]], category: str = "top") -> Path:
    (directory / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for item_id, seed in ids_and_seeds:
        garment_image(seed).save(directory / "images" / f"{item_id}.png")
        lines.append(json.dumps({"id": item_id, "image": f"images/{item_id}.png", "title": item_id,
                                 "category": category, "attributes": {"colour": "red"}}))  # fmt: skip
    path = directory / "feed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def update(index: Path, embedder: Embedder, **kwargs):
    """`update_index` as the CLI calls it: a feed path is read here and its items and bad rows passed on."""
    if (feed_path := kwargs.pop("feed_path", None)) is not None:
        feed = read_feed(feed_path)
        kwargs.update(items=feed.items, bad_rows=feed.bad_rows)
    return update_index(index, embedder, create_extractor(embedder), kwargs.pop("options", QUIET), **kwargs)


def records_of(index: Path) -> list[ItemRecord]:
    reader = MetadataReader(index.resolve() / METADATA_NAME)
    try:
        return reader.all_records()
    finally:
        reader.close()


def vectors_by_id(index: Path) -> dict[str, np.ndarray]:
    raw = np.load(index.resolve() / RAW_VECTORS_NAME)
    return {record.item_id: raw[record.row] for record in records_of(index)}


def top1(index: Path, embedder: Embedder, image: Image.Image) -> str:
    store = IndexStore.open(index)
    try:
        return store.search(embedder.embed_images([image]), top_k=1)[0][0].item.item_id
    finally:
        store.close()


def test_add_embeds_only_new_items_and_publishes_a_new_build(
    index: Path, tmp_path: Path, tiny_embedder: Embedder
) -> None:
    before, build_before = vectors_by_id(index), index.resolve()
    report = update(
        index, tiny_embedder, feed_path=feed_of(tmp_path / "new", [("new-1", 101), ("new-2", 102)])
    )
    assert report.changed and (report.added, report.replaced, report.deleted, report.count) == (2, 0, 0, 14)
    assert index.resolve() != build_before and build_before.is_dir()  # the old build stays for rollback
    after = vectors_by_id(index)
    assert all(np.array_equal(before[item_id], after[item_id]) for item_id in before)  # not re-embedded
    assert top1(index, tiny_embedder, garment_image(102)) == "new-2"
    assert Manifest.read(index.resolve()).count == 14


def test_add_refuses_known_ids_and_strict_changes_nothing(
    index: Path, tmp_path: Path, tiny_embedder: Embedder
) -> None:
    feed = feed_of(tmp_path / "dup", [("item-0003", 7), ("fresh", 55)])
    report = update(index, tiny_embedder, feed_path=feed)
    assert report.added == 1 and [row.item_id for row in report.bad_rows] == ["item-0003"]
    assert "use upsert" in report.bad_rows[0].reason
    build = index.resolve()
    with pytest.raises(BuildError, match="--strict: nothing changed: .*item-0003"):
        update(index, tiny_embedder, feed_path=feed, options=BuildOptions(progress=False, strict=True))
    assert index.resolve() == build


def test_upsert_replaces_the_vector_and_the_row(index: Path, tmp_path: Path, tiny_embedder: Embedder) -> None:
    old = vectors_by_id(index)["item-0004"]
    report = update(
        index, tiny_embedder, mode="upsert", feed_path=feed_of(tmp_path / "up", [("item-0004", 77)])
    )
    assert (report.added, report.replaced, report.count) == (0, 1, 12)
    assert not np.allclose(vectors_by_id(index)["item-0004"], old)
    store = IndexStore.open(index)
    try:
        record = store.item("item-0004")
        assert record is not None and record.title == "item-0004" and record.category == "top"
    finally:
        store.close()
    assert top1(index, tiny_embedder, garment_image(77)) == "item-0004"


def test_deleted_items_never_come_back(index: Path, tiny_embedder: Embedder) -> None:
    report = update(index, tiny_embedder, delete_ids=["item-0002", "item-0005", "ghost"])
    assert (report.deleted, report.count, report.missing_ids) == (2, 10, ["ghost"])
    store = IndexStore.open(index)
    try:
        assert store.item("item-0002") is None and store.item("item-0005") is None
        hits = store.search(tiny_embedder.embed_images([garment_image(2)]), top_k=10)[0]
        assert {"item-0002", "item-0005"}.isdisjoint(hit.item.item_id for hit in hits) and len(hits) == 10
        assert [record.row for record in records_of(index)] == list(range(10))  # rows stay contiguous
    finally:
        store.close()
    build = index.resolve()
    nothing = update(index, tiny_embedder, delete_ids=["ghost"])
    assert not nothing.changed and index.resolve() == build
    with pytest.raises(BuildError, match="ghost"):
        update(index, tiny_embedder, delete_ids=["ghost"], options=BuildOptions(progress=False, strict=True))


def test_a_change_cannot_empty_the_index(index: Path, tiny_embedder: Embedder) -> None:
    with pytest.raises(BuildError, match="empty"):
        update(index, tiny_embedder, delete_ids=[f"item-{n:04d}" for n in range(12)])


def test_a_crash_while_writing_leaves_the_old_build_and_the_next_change_works(
    index: Path, tmp_path: Path, tiny_embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = index.resolve()

    def crash(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(build_module, "publish", crash)
    with pytest.raises(RuntimeError, match="disk on fire"):
        update(index, tiny_embedder, feed_path=feed_of(tmp_path / "a", [("a-1", 201)]))
    assert index.resolve() == build
    assert not list(builds_root(index).glob("*.partial"))
    monkeypatch.undo()
    assert update(index, tiny_embedder, feed_path=feed_of(tmp_path / "b", [("b-1", 202)])).count == 13


def test_another_model_is_refused(index: Path, tmp_path: Path, tiny_embedder: Embedder) -> None:
    from models.embedder import create_embedder
    from models.spec import EmbedderSpec
    from tests.helpers import OTHER_TINY_MODEL

    other = create_embedder(EmbedderSpec(kind="open_clip", model_name=OTHER_TINY_MODEL, pretrained="random"))
    with pytest.raises(ModelMismatchError, match="was built with"):
        update(index, other, delete_ids=["item-0001"])


def test_a_build_from_before_raw_vectors_is_updated_from_its_flat_index(
    index: Path, tiny_embedder: Embedder
) -> None:
    build = index.resolve()
    before = vectors_by_id(index)
    (build / RAW_VECTORS_NAME).unlink()
    manifest = Manifest.read(build)
    checksums = {name: digest for name, digest in manifest.checksums.items() if name != RAW_VECTORS_NAME}
    import dataclasses

    dataclasses.replace(manifest, checksums=checksums).write(build)
    update(index, tiny_embedder, delete_ids=["item-0000"])
    after = vectors_by_id(index)
    assert all(np.allclose(before[item_id], after[item_id]) for item_id in after)
