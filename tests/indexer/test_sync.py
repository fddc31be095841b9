"""Incremental sync (issue 19): the plan sorts a complete feed against the published build (added, changed
images, changed fields, unchanged, removed), a dry run and a refused or empty sync publish nothing and load
no model, and an applied sync is one new build that embeds only new and changed images."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from indexer.build import BuildOptions, build_index
from indexer.feed import CatalogItem, RowError, read_feed
from indexer.guards import CatalogueGuardError
from indexer.image_download import DownloadOptions
from indexer.manifest import METADATA_NAME
from indexer.metadata import ItemRecord, MetadataReader
from indexer.publish import BuildError, builds_root
from indexer.sync import (
    SyncReport,
    default_download_cache,
    image_digests,
    plan_sync,
    read_localised_feed,
    sync_index,
)
from models.attributes.extractor import AttributeExtractor, create_extractor
from models.attributes.guess import AttributeGuess
from models.embedder import Embedder
from tests.helpers import garment_image, write_catalog
from tests.indexer.test_catalogue_guards import CountingEmbedder

QUIET = BuildOptions(progress=False, batch_size=16)


class Models:
    """A `load_models` that counts its calls and the images its embedder embeds."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = CountingEmbedder(embedder)
        self.loads = 0

    def __call__(self) -> tuple[Any, AttributeExtractor]:
        self.loads += 1
        return self.embedder, create_extractor(self.embedder)  # type: ignore[arg-type]


def rows_of(feed: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in feed.read_text(encoding="utf-8").splitlines() if line]


def write_rows(feed: Path, rows: list[dict[str, Any]]) -> Path:
    feed.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return feed


def records_of(index: Path) -> dict[str, ItemRecord]:
    reader = MetadataReader(index.resolve() / METADATA_NAME)
    try:
        return {record.item_id: record for record in reader.all_records()}
    finally:
        reader.close()


def builds(index: Path) -> list[str]:
    return sorted(path.name for path in builds_root(index).iterdir() if not path.name.startswith("."))


def sync(feed: Path, index: Path, models: Models, options: BuildOptions = QUIET, **kwargs: Any) -> SyncReport:
    download = DownloadOptions(cache_dir=default_download_cache(index), progress=False)
    return sync_index(feed, index, options, models, download, **kwargs)


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    """20 items; item-0004 has an extra image and an attribute the taxonomy lacks (care)."""
    feed = write_catalog(tmp_path / "shop", 20)
    garment_image(500).save(tmp_path / "shop" / "images" / "back-0004.png")
    rows = rows_of(feed)
    rows[4] = {**rows[4], "extra_images": ["images/back-0004.png"]}
    rows[4]["attributes"] = {**rows[4]["attributes"], "care": "hand wash"}
    return write_rows(feed, rows)


@pytest.fixture
def live(tmp_path: Path, catalogue: Path, tiny_embedder: Embedder) -> Path:
    out = tmp_path / "index"
    build_index(catalogue, out, tiny_embedder, QUIET, create_extractor(tiny_embedder))
    return out


def test_the_plan_sorts_every_kind_of_change(live: Path, catalogue: Path, tiny_embedder: Embedder) -> None:
    images = catalogue.parent / "images"
    rows = rows_of(catalogue)
    rows[1]["title"] = "Renamed"
    rows[2]["price"] = 99.5
    garment_image(900).save(images / "new-0003.jpg")
    rows[3]["image"] = "images/new-0003.jpg"  # other bytes
    rows[4]["attributes"] = {**rows[4]["attributes"], "care": "machine wash"}  # one the taxonomy lacks
    rows[5]["attributes"] = {**rows[5]["attributes"], "colour": "crimson"}  # white -> red
    rows[6]["extra_images"] = ["images/item-0007.jpg"]  # one image more: the images changed
    shutil.copy(images / "item-0008.jpg", images / "moved-0008.jpg")
    rows[8]["image"] = "images/moved-0008.jpg"  # the same bytes elsewhere: only the link changed
    rows[9]["attributes"] = {**rows[9]["attributes"], "pattern": "Stripes"}  # a synonym: the same value
    rows[12]["category"] = "tops"  # a plural of the same category (top)
    del rows[11]
    rows.append({**rows[0], "id": "item-new", "title": "New"})
    feed = read_feed(write_rows(catalogue.parent / "changed.jsonl", rows))
    assert feed.bad_rows == []

    plan = plan_sync(feed.items, {item.item_id: image_digests(item) for item in feed.items},
                     list(records_of(live).values()))  # fmt: skip
    assert plan.added == ("item-new",)
    assert plan.changed_images == ("item-0003", "item-0006")
    assert plan.changed_fields == ("item-0001", "item-0002", "item-0004", "item-0005", "item-0008")
    assert plan.removed == ("item-0011",) and plan.kept == ()
    assert set(plan.unchanged) == {"item-0000", "item-0009", "item-0010"} | {f"item-{i:04d}" for i in
                                                                             (7, *range(12, 20))}  # fmt: skip
    assert plan.counts() == {"added": 1, "changed_images": 2, "changed_fields": 5, "unchanged": 12,
                             "removed": 1, "kept": 0, "published": 20, "changed": 7}  # fmt: skip
    shown = plan.to_json()
    assert shown["ids"]["removed"] == ["item-0011"] and "unchanged" not in shown["ids"]


def test_the_plan_compares_the_feeds_own_category_and_attributes() -> None:
    """A build whose category head renamed an unknown category keeps the feed's word in `feed_category`;
    predicted attributes are not the feed's, so they never make an item look changed."""
    item = CatalogItem("a", Path("/x.jpg"), "Kurta", "kurtas", attributes={"colour": "red", "care": "dry"})
    record = ItemRecord(
        0, "a", "Kurta", "top", "", None, "", True, "",
        attributes={"colour": AttributeGuess("red", 1.0, "feed"), "pattern": AttributeGuess("solid", 0.8,
                    "predicted"), "category": AttributeGuess("top", 0.9, "model")},
        image="/x.jpg", extra_attributes={"care": "dry", "feed_category": "kurtas"}, image_sha256s=("d",),
    )  # fmt: skip
    assert plan_sync([item], {"a": ("d",)}, [record]).unchanged == ("a",)
    for changed in ({"category": "dress"}, {"attributes": {"colour": "red"}}, {"group_id": "g1"},
                    {"in_stock": False}, {"url": "https://shop.example/a"}):  # fmt: skip
        assert plan_sync([dataclasses.replace(item, **changed)], {"a": ("d",)}, [record]).changed_fields == (
            "a",
        )
    assert plan_sync([item], {"a": ("e",)}, [record]).changed_images == ("a",)
    assert plan_sync([item], {"a": ("d", "e")}, [record]).changed_images == ("a",)
    old_build = dataclasses.replace(record, image_sha256s=())  # built before image digests: re-embedded
    assert plan_sync([item], {"a": ("d",)}, [old_build]).changed_images == ("a",)


def test_image_digests_read_every_image_in_order(tmp_path: Path) -> None:
    garment_image(1).save(tmp_path / "a.png")
    garment_image(2).save(tmp_path / "b.png")
    item = CatalogItem("a", tmp_path / "a.png", "A", "top", extra_images=(str(tmp_path / "b.png"),),
                       extra_files=(tmp_path / "b.png",))  # fmt: skip
    main, extra = image_digests(item)
    assert len(main) == 64 and main != extra
    assert image_digests(dataclasses.replace(item, image=tmp_path / "b.png"))[0] == extra
    with pytest.raises(RowError, match="unreadable image .*missing.png"):
        image_digests(dataclasses.replace(item, image=tmp_path / "missing.png"))
    linked = {"id": "u", "image": "https://cdn.example/u.jpg", "title": "U", "category": "top"}
    with pytest.raises(RowError, match="has not been downloaded"):
        image_digests(read_feed(write_rows(tmp_path / "f.jsonl", [linked])).items[0])


def test_a_dry_run_changes_nothing_and_loads_no_model(
    live: Path, catalogue: Path, tiny_embedder: Embedder
) -> None:
    rows = rows_of(catalogue)
    rows[1]["title"] = "Renamed"
    before, built = os.readlink(live), builds(live)
    models = Models(tiny_embedder)
    report = sync(write_rows(catalogue.parent / "changed.jsonl", rows), live, models, dry_run=True)
    assert report.dry_run and not report.published and report.plan.changed_fields == ("item-0001",)
    assert models.loads == 0 and os.readlink(live) == before and builds(live) == built
    assert records_of(live)["item-0001"].title == "Test garment 1"
    assert set(report.timings_s) == {"feed", "download", "digest", "plan", "apply", "total"}


def test_a_sync_embeds_only_new_and_changed_images_in_one_build(
    live: Path, catalogue: Path, tiny_embedder: Embedder
) -> None:
    images = catalogue.parent / "images"
    rows = rows_of(catalogue)
    rows[1]["title"] = "Renamed"
    garment_image(900).save(images / "item-0002.jpg")  # same path, other bytes
    del rows[3]
    rows.append({**rows[0], "id": "item-new", "title": "New"})
    built = builds(live)
    models = Models(tiny_embedder)
    report = sync(write_rows(catalogue, rows), live, models)
    summary = report.to_json()
    assert {name: summary[name] for name in ("added", "changed", "removed", "embedded")} == {
        "added": 1, "changed": 2, "removed": 1, "embedded": 2}  # fmt: skip
    assert summary["unchanged"] == 17 and summary["plan"]["changed_images"] == 1
    assert models.loads == 1 and models.embedder.images == 2
    assert report.published and len(builds(live)) == len(built) + 1 and report.build == live.resolve().name
    records = records_of(live)
    assert len(records) == report.count == 20 and "item-0003" not in records
    assert records["item-0001"].title == "Renamed" and records["item-new"].title == "New"

    again = sync(catalogue, live, models)  # the feed is now the index: nothing to do, nothing published
    assert not again.published and again.build == report.build and again.plan.empty
    assert len(again.plan.unchanged) == 20 and models.loads == 1 and len(builds(live)) == len(built) + 1


def test_a_sync_removing_half_the_catalogue_is_refused(
    live: Path, catalogue: Path, tiny_embedder: Embedder
) -> None:
    half = write_rows(catalogue.parent / "half.jsonl", rows_of(catalogue)[:10])
    before, models = os.readlink(live), Models(tiny_embedder)
    with pytest.raises(CatalogueGuardError, match=r"10 of the 20 published items \(50%\) are not in .*"
                       r"over --max-removed-ratio 0.2.*nothing was published") as refused:  # fmt: skip
        sync(half, live, models)
    assert "\n" not in str(refused.value)
    with pytest.raises(CatalogueGuardError):  # a dry run says so too
        sync(half, live, models, dry_run=True)
    assert models.loads == 0 and os.readlink(live) == before and len(records_of(live)) == 20

    forced = sync(half, live, models, dataclasses.replace(QUIET, force=True))
    assert forced.published and forced.count == 10 and forced.embedded == 0 and models.loads == 0


def test_a_mostly_bad_feed_is_refused_and_force_overrides(
    live: Path, catalogue: Path, tiny_embedder: Embedder
) -> None:
    rows = rows_of(catalogue)
    broken = [rows[index] if index < 5 else {"id": row["id"], "title": "no image"} for index, row in
              enumerate(rows)]  # fmt: skip
    feed = write_rows(catalogue.parent / "broken.jsonl", broken)
    before, models = os.readlink(live), Models(tiny_embedder)
    with pytest.raises(
        CatalogueGuardError, match=r"15 of 20 rows .* are bad \(75%.*line 6 \(id 'item-0005'\)"
    ):
        sync(feed, live, models)
    assert models.loads == 0 and os.readlink(live) == before and len(records_of(live)) == 20

    # Forced: the bad rows' published items are kept as they are (a broken row is not a removal).
    forced = sync(feed, live, models, dataclasses.replace(QUIET, force=True))
    assert not forced.published and forced.plan.kept == tuple(f"item-{i:04d}" for i in range(5, 20))
    assert len(forced.bad_rows) == 15 and forced.count == 20 and os.readlink(live) == before


def test_strict_refuses_any_bad_row(live: Path, catalogue: Path, tiny_embedder: Embedder) -> None:
    rows = rows_of(catalogue)
    rows[2]["title"] = "Renamed"
    rows[3]["image"] = "images/missing.jpg"
    feed = write_rows(catalogue.parent / "one-bad.jsonl", rows)
    before = os.readlink(live)
    with pytest.raises(BuildError, match=r"--strict: 1 bad row.*line 4 \(id 'item-0003'\)"):
        sync(feed, live, Models(tiny_embedder), dataclasses.replace(QUIET, strict=True))
    assert os.readlink(live) == before
    relaxed = sync(feed, live, Models(tiny_embedder))  # 1 of 20 bad is within 5%: applied, item-0003 kept
    assert relaxed.published and relaxed.plan.kept == ("item-0003",) and relaxed.count == 20


def test_an_undecodable_new_image_is_a_bad_row_of_the_feed(
    live: Path, catalogue: Path, tiny_embedder: Embedder
) -> None:
    images = catalogue.parent / "images"
    rows = rows_of(catalogue)
    (images / "item-0002.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")  # readable, not decodable
    models = Models(tiny_embedder)
    report = sync(write_rows(catalogue, rows), live, models)
    assert [row.item_id for row in report.bad_rows] == ["item-0002"] and report.plan.kept == ("item-0002",)
    assert report.plan.empty and not report.published and models.loads == 0


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serving(directory: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_image_links_are_downloaded_and_a_changed_image_behind_the_same_link_is_found(
    tmp_path: Path, tiny_embedder: Embedder
) -> None:
    feed = write_catalog(tmp_path / "cdn", 8)
    images = tmp_path / "cdn" / "images"
    out = tmp_path / "index"
    download = DownloadOptions(cache_dir=default_download_cache(out), progress=False, retries=0)
    with serving(images) as base:
        rows = [{**row, "image": f"{base}/{Path(row['image']).name}"} for row in rows_of(feed)]
        rows[7]["image"] = f"{base}/missing.jpg"  # a 404: a bad row (1 of 8: over 5%, so forced)
        write_rows(feed, rows)
        forced = dataclasses.replace(QUIET, force=True)
        localised, stats = read_localised_feed(feed, out, forced, download)
        assert stats.fetched == 7 and stats.failed == 1
        assert [row.line for row in localised.bad_rows] == [8] and "404" in localised.bad_rows[0].reason
        build_index(feed, out, tiny_embedder, forced, create_extractor(tiny_embedder), feed=localised)
        assert records_of(out)["item-0000"].image == rows[0]["image"]  # the link, not the cached file
        assert default_download_cache(out) == tmp_path / "index.cache" / "images"

        garment_image(700).save(images / "item-0001.jpg")  # new bytes behind the same link
        later = os.stat(images / "item-0001.jpg").st_mtime + 10  # Last-Modified counts whole seconds
        os.utime(images / "item-0001.jpg", (later, later))
        models = Models(tiny_embedder)
        report = sync(feed, out, models, forced)
    assert report.plan.changed_images == ("item-0001",) and len(report.plan.unchanged) == 6
    assert [row.item_id for row in report.bad_rows] == ["item-0007"]
    assert report.embedded == 1 and models.embedder.images == 1 and report.downloads.fetched >= 1
