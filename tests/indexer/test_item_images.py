"""Several images per item: every image a vector row, an item found once at its best image, further images
kept by changes; product groups (variants) collapsed at search time; builds from before either still open."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from indexer.build import BuildOptions, build_index
from indexer.feed import read_feed
from indexer.filters import SearchFilters
from indexer.manifest import Manifest
from indexer.metadata import MetadataReader
from indexer.publish import BuildError
from indexer.store import IndexStore
from indexer.update import update_index
from models.attributes.extractor import create_extractor
from models.detector import FullFrameDetector
from models.embedding import Embedder
from models.images import decode_image
from search.searcher import OutfitSearcher, SearchRequest
from tests.helpers import garment_image

QUIET = BuildOptions(progress=False, batch_size=4)


def _feed(directory: Path, rows: list[dict[str, object]]) -> Path:
    (directory / "images").mkdir(parents=True, exist_ok=True)
    for index in range(12):
        garment_image(index).save(directory / "images" / f"look-{index}.jpg", quality=92)
    feed = directory / "catalog.jsonl"
    feed.write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    return feed


def _row(item_id: str, image: int, extra: tuple[int, ...] = (), **fields: object) -> dict[str, object]:
    return {
        "id": item_id,
        "image": f"images/look-{image}.jpg",
        "title": f"item {item_id}",
        "category": "top",
        "extra_images": [f"images/look-{index}.jpg" for index in extra],
        **fields,
    }


def _vector(embedder: Embedder, directory: Path, image: int) -> np.ndarray:
    data = (directory / "images" / f"look-{image}.jpg").read_bytes()
    return embedder.embed_images([decode_image(data, 10**8)])


def test_every_image_is_searched_and_an_item_is_found_once_at_its_best_image(
    tmp_path: Path, tiny_embedder: Embedder
) -> None:
    rows = [_row("a", 0, extra=(5, 6)), _row("b", 1), _row("c", 2, extra=(7,)), _row("d", 3)]
    feed = _feed(tmp_path, rows)
    out = tmp_path / "index"
    report = build_index(feed, out, tiny_embedder, QUIET, create_extractor(tiny_embedder))
    assert report.manifest.count == 4 and report.manifest.vectors == 7
    store = IndexStore.open(out)
    try:
        assert store.count == 4
        hits = store.search(_vector(tiny_embedder, tmp_path, 6), 4)[0]
        assert [hit.item.item_id for hit in hits][0] == "a" and hits[0].image == 2
        assert sorted(hit.item.item_id for hit in hits) == ["a", "b", "c", "d"]  # each item once
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        main = store.search(_vector(tiny_embedder, tmp_path, 2), 1)[0][0]
        assert (main.item.item_id, main.image) == ("c", 0)
        record = store.item("a")
        assert record is not None and record.extra_images == tuple(
            str(tmp_path / "images" / f"look-{i}.jpg") for i in (5, 6)
        )
        assert len(record.image_sha256s) == 3 and all(len(d) == 64 for d in record.image_sha256s)
    finally:
        store.close()


def test_a_filtered_search_keeps_the_further_images_of_the_items_it_keeps(
    tmp_path: Path, tiny_embedder: Embedder
) -> None:
    rows = [_row("a", 0, extra=(5,), brand="North"), _row("b", 5, brand="South"), _row("c", 2, brand="North")]
    out = tmp_path / "index"
    build_index(_feed(tmp_path, rows), out, tiny_embedder, QUIET, create_extractor(tiny_embedder))
    store = IndexStore.open(out)
    try:
        rows_north = store.rows_for(SearchFilters(brands=frozenset({"north"})))
        assert rows_north is not None and sorted(rows_north.tolist()) == [0, 2, 3]  # a, c, a's second image
        hits = store.search(_vector(tiny_embedder, tmp_path, 5), 3, rows_north)[0]
        assert [(hit.item.item_id, hit.image) for hit in hits][0] == ("a", 1)
        assert "b" not in {hit.item.item_id for hit in hits}
    finally:
        store.close()


def test_changes_keep_further_images_and_a_change_of_fields_embeds_nothing(
    tmp_path: Path, tiny_embedder: Embedder
) -> None:
    rows = [_row("a", 0, extra=(5,)), _row("b", 1, extra=(6, 7)), _row("c", 2)]
    feed = _feed(tmp_path, rows)
    out = tmp_path / "index"
    extractor = create_extractor(tiny_embedder)
    build_index(feed, out, tiny_embedder, QUIET, extractor)

    again = update_index(out, None, None, QUIET, read_feed(feed).items, "upsert")
    assert not again.changed and again.build_dir == out.resolve() and again.embedded == 0

    retitled = [_row("b", 1, extra=(6, 7), title="b, now on sale", price=9.5)]
    changed = _feed(tmp_path / "changed", retitled)
    shutil.copytree(tmp_path / "images", tmp_path / "changed" / "images", dirs_exist_ok=True)
    report = update_index(out, None, None, QUIET, read_feed(changed).items, "upsert", ["a"])
    assert (report.replaced, report.reused, report.embedded, report.deleted) == (1, 1, 0, 1)

    store = IndexStore.open(out)
    try:
        assert store.count == 2 and store.manifest.vectors == 4  # b (3 images) and c (1)
        record = store.item("b")
        assert record is not None and record.title == "b, now on sale" and record.price == 9.5
        hit = store.search(_vector(tiny_embedder, tmp_path, 7), 1)[0][0]
        assert (hit.item.item_id, hit.image) == ("b", 2) and hit.score == pytest.approx(1.0, abs=1e-4)
    finally:
        store.close()

    # A new main image is embedded, and so is a further image with new bytes; one whose bytes the build
    # already holds (look-6, b's) takes its vector from there.
    swapped = [_row("c", 3, extra=(6, 4))]
    report = update_index(
        out, tiny_embedder, extractor, QUIET, read_feed(_feed(tmp_path / "swap", swapped)).items, "upsert"
    )
    assert (report.replaced, report.reused, report.embedded) == (1, 0, 2)
    store = IndexStore.open(out)
    try:
        hit = store.search(_vector(tiny_embedder, tmp_path, 6), 2)[0]
        assert {(h.item.item_id, h.image) for h in hit} == {("b", 1), ("c", 1)}
        assert all(h.score == pytest.approx(1.0, abs=1e-4) for h in hit)
    finally:
        store.close()


def test_variants_collapse_into_one_match_listing_the_group(tmp_path: Path, tiny_embedder: Embedder) -> None:
    rows = [
        _row("tee-red-s", 0, group_id="tee", attributes={"colour": "red", "size": "S"}),
        _row("tee-red-m", 0, group_id="tee", attributes={"colour": "red", "size": "M"}, in_stock=False),
        _row("tee-blue-s", 4, group_id="tee", attributes={"colour": "blue", "size": "S"}),
        _row("shirt", 1, attributes={"colour": "green"}),
        _row("polo", 2, attributes={"colour": "black"}),
    ]
    out = tmp_path / "index"
    build_index(_feed(tmp_path, rows), out, tiny_embedder, QUIET, create_extractor(tiny_embedder))
    store = IndexStore.open(out)
    try:
        searcher = OutfitSearcher(FullFrameDetector(), tiny_embedder, store, create_extractor(tiny_embedder))
        photo = garment_image(0)
        collapsed = searcher.search(photo, SearchRequest(top_k=5)).garments[0].matches
        ids = [match.item.item_id for match in collapsed]
        assert len(ids) == 3 and sum(i.startswith("tee") for i in ids) == 1  # one tee, shirt, polo
        tee = next(match for match in collapsed if match.item.group_id == "tee")
        assert sorted(v.item_id for v in tee.variants) == ["tee-blue-s", "tee-red-m", "tee-red-s"]
        every = searcher.search(photo, SearchRequest(top_k=5, collapse_variants=False)).garments[0].matches
        assert sorted(m.item.item_id for m in every) == sorted(str(row["id"]) for row in rows)
        assert all(not match.variants for match in every)
        # Filters apply per variant: the blue one is the group's match when blue is asked for.
        blue = SearchFilters(attributes={"colour": frozenset({"blue"})})
        picked = searcher.search(photo, SearchRequest(top_k=5, filters=blue)).garments[0].matches
        assert [m.item.item_id for m in picked] == ["tee-blue-s"] and len(picked[0].variants) == 3
    finally:
        store.close()


def test_an_item_database_from_before_variants_and_further_images_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "items.sqlite"
    connection = sqlite3.connect(path)
    connection.executescript(
        """CREATE TABLE items (row INTEGER PRIMARY KEY, item_id TEXT NOT NULL UNIQUE, title TEXT NOT NULL,
        category TEXT NOT NULL, brand TEXT NOT NULL, price REAL, currency TEXT NOT NULL,
        in_stock INTEGER NOT NULL, url TEXT NOT NULL, attributes TEXT NOT NULL, image TEXT NOT NULL,
        extra_attributes TEXT NOT NULL DEFAULT '{}');
        INSERT INTO items VALUES (0, 'old', 'Old tee', 'top', 'Acme', 5.0, 'EUR', 1, '', '{}', 'a.jpg',
        '{}');"""
    )
    connection.commit()
    connection.close()
    reader = MetadataReader(path)
    try:
        (record,) = reader.all_records()
        assert (record.item_id, record.group_id, record.extra_images, record.image_sha256s) == (
            "old",
            "",
            (),
            (),
        )
        assert reader.image_rows() == []
    finally:
        reader.close()


def test_a_build_written_before_the_vectors_field_counts_one_row_per_item(built_index: Path) -> None:
    manifest = Manifest.read(built_index.resolve())
    assert manifest.vector_count == manifest.count == 40


def test_categories_outside_the_taxonomy_are_counted_and_refused_under_strict(
    tmp_path: Path, tiny_embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [
        _row("a", 0),
        _row("b", 1, category="long sleeve thing"),
        _row("c", 2, category="long sleeve thing"),
    ]
    feed = _feed(tmp_path, rows)
    extractor = create_extractor(tiny_embedder)
    report = build_index(feed, tmp_path / "index", tiny_embedder, QUIET, extractor)
    assert report.unknown_categories == {"long sleeve thing": 2}
    assert "2 item(s) have a category outside the taxonomy" in caplog.text
    strict = BuildOptions(progress=False, strict=True)
    with pytest.raises(BuildError, match="--strict: 2 item.*'long sleeve thing' \\(2\\)"):
        build_index(feed, tmp_path / "index", tiny_embedder, strict, extractor)
    assert Manifest.read((tmp_path / "index").resolve()).count == 3  # the first build serves on
