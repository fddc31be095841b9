"""Incremental sync (issue 19): bring a published index in line with a complete catalogue feed, recomputing
only what changed.

    feed -> download URL images (shared cache) -> digest every image's bytes -> plan against the published
    build -> guards -> one atomic `update_index` (upserts and deletes together), or nothing at all

The plan puts each feed item in one class: `added` (an id the build lacks), `changed_images` (the bytes of
an image differ, or the number of images), `changed_fields` (same images; title, category, brand, price,
currency, in_stock, url, group, image links or feed attributes differ), `unchanged`; published ids the feed
no longer has are `removed`. A published item whose row is bad this time (a failed download, a typo) is
`kept` as published, neither replaced nor removed, and reported with the skipped rows.

The guards look at the whole feed: more than `max_bad_ratio` of its rows bad, or more than
`max_removed_ratio` of the published items removed (a truncated feed), refuses the sync before any model
loads, publishing nothing (`force` skips both). A dry run stops after the plan."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.build import BuildOptions, read_build_feed
from indexer.feed import IMAGE_NOT_DOWNLOADED, BadRow, CatalogItem, Feed, RowError, is_url, read_feed
from indexer.guards import CatalogueGuardError, bad_sample, check_catalogue, published_count
from indexer.image_download import DownloadOptions, DownloadStats, localise_items
from indexer.manifest import METADATA_NAME
from indexer.metadata import ItemRecord, MetadataReader
from indexer.publish import BuildError
from indexer.reuse import FEED_CATEGORY
from indexer.update import ModelLoader, update_index
from models.attributes.taxonomy import Taxonomy, load_taxonomy
from models.errors import FashionSearchError
from models.files import file_digest
from models.images import decode_image

log = logging.getLogger(__name__)


def default_download_cache(index: Path) -> Path:
    """Where an index's downloaded images are cached unless told otherwise: `<index>.cache/images`, beside
    the index link (and its `<index>.builds/`), so builds and syncs of that index share it."""
    return index.with_name(f"{index.name}.cache") / "images"


def has_image_urls(item: CatalogItem) -> bool:
    return bool(item.image_url) or any(is_url(extra) for extra in item.extra_images)


def localise_feed(feed: Feed, download: DownloadOptions) -> tuple[Feed, DownloadStats]:
    """The feed with its http(s) images downloaded into `download.cache_dir` (`image` and the extra images
    become cached files); an item whose main image fails is moved to the bad rows, with its line. A feed
    without links is returned as it is, and the cache is not touched."""
    if not any(has_image_urls(item) for item in feed.items):
        return feed, DownloadStats()
    items, failed, stats = localise_items(feed.items, download)
    bad = sorted([*feed.bad_rows, *failed], key=lambda row: row.line)
    return dataclasses.replace(feed, items=items, bad_rows=bad), stats


def read_localised_feed(
    feed_path: Path,
    out_dir: Path,
    options: BuildOptions,
    download: DownloadOptions,
    feed_format: str = "auto",
) -> tuple[Feed, DownloadStats]:
    """`read_build_feed` (its checks refuse a broken feed before anything is downloaded), then the images
    downloaded, then `--strict` and the catalogue guards again with the failed downloads as bad rows: all
    before any model loads."""
    feed = read_build_feed(feed_path, out_dir, options, feed_format)
    localised, stats = localise_feed(feed, download)
    if localised is not feed:
        failed = len(localised.bad_rows) - len(feed.bad_rows)
        if options.strict and failed:
            raise BuildError(
                f"--strict: {failed} image(s) failed to download: {bad_sample(localised.bad_rows)}"
            )
        _check_rows(localised, localised.items, localised.bad_rows, published_count(out_dir), options)
    return localised, stats


def image_digests(item: CatalogItem) -> tuple[str, ...]:
    """SHA-256 (hex) of the bytes of the item's image, then of each extra image (`extra_files`), in order.
    The images must be local files (after `localise_feed`); RowError with the reason otherwise or when one
    cannot be read."""
    if item.image_url and item.image == IMAGE_NOT_DOWNLOADED:
        raise RowError(f"image {item.image_url} has not been downloaded", item.item_id)
    if len(item.extra_files) != len(item.extra_images):
        raise RowError(
            f"the extra images {', '.join(item.extra_images)} are not all local files", item.item_id
        )
    digests = []
    for image in (item.image, *item.extra_files):
        try:
            digests.append(file_digest(image))
        except OSError as exc:
            raise RowError(f"unreadable image {image}: {exc.strerror or exc}", item.item_id) from None
    return tuple(digests)


@dataclass(frozen=True)
class SyncPlan:
    """What a sync would do, by catalogue id (each list in feed order; removed in published order)."""

    added: tuple[str, ...] = ()
    changed_images: tuple[str, ...] = ()
    changed_fields: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()  # published items whose feed row is bad this time: left as published
    published: int = 0  # items in the published build

    @property
    def changed(self) -> tuple[str, ...]:
        return self.changed_images + self.changed_fields

    @property
    def upserts(self) -> tuple[str, ...]:
        """The ids to send to `update_index` as upserts: new, changed images, changed fields."""
        return self.added + self.changed_images + self.changed_fields

    @property
    def empty(self) -> bool:
        return not self.upserts and not self.removed

    def counts(self) -> dict[str, int]:
        names = ("added", "changed_images", "changed_fields", "unchanged", "removed", "kept", "published")
        found = {name: getattr(self, name) for name in names}
        counts = {name: len(value) if isinstance(value, tuple) else value for name, value in found.items()}
        return {**counts, "changed": len(self.changed)}

    def to_json(self) -> dict[str, Any]:
        """The counts and the ids of everything that changes (unchanged ones are only counted)."""
        ids = ("added", "changed_images", "changed_fields", "removed", "kept")
        return {**self.counts(), "ids": {name: list(getattr(self, name)) for name in ids}}

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.changed)} changed ({len(self.changed_images)} images, "
            f"{len(self.changed_fields)} fields only), {len(self.removed)} removed, "
            f"{len(self.unchanged)} unchanged"
        )


def plan_sync(
    items: Iterable[CatalogItem],
    digests: Mapping[str, tuple[str, ...]],
    published: Sequence[ItemRecord],
    skipped_ids: Collection[str] = (),
) -> SyncPlan:
    """Classify the feed's `items` (images as the feed names them; their `digests` by id, from
    `image_digests` of the downloaded items) against the `published` build's records. `skipped_ids` are
    ids of the feed's bad rows: published ones among them are kept, not removed."""
    taxonomy = load_taxonomy()
    records: dict[str, ItemRecord] = {}
    for published_record in published:
        records.setdefault(published_record.item_id, published_record)
    found: dict[str, list[str]] = {"added": [], "changed_images": [], "changed_fields": [], "unchanged": []}
    seen: set[str] = set()
    for item in items:
        seen.add(item.item_id)
        record = records.get(item.item_id)
        if record is None:
            kind = "added"
        elif digests[item.item_id] != record.image_sha256s:
            kind = "changed_images"  # also a build from before image digests: it has none
        elif _feed_fields(item, taxonomy) != _record_fields(record):
            kind = "changed_fields"
        else:
            kind = "unchanged"
        found[kind].append(item.item_id)
    skipped = set(skipped_ids)
    gone = [item_id for item_id in records if item_id not in seen]
    return SyncPlan(
        **{name: tuple(ids) for name, ids in found.items()},
        removed=tuple(item_id for item_id in gone if item_id not in skipped),
        kept=tuple(item_id for item_id in gone if item_id in skipped),
        published=len(records),
    )


def _feed_fields(item: CatalogItem, taxonomy: Taxonomy) -> dict[str, Any]:
    given, extra = taxonomy.normalise_attributes(item.attributes)
    extra.pop(FEED_CATEGORY, None)
    return {
        **{name: getattr(item, name) for name in _COMPARED},
        "image": item.image_url or str(item.image),
        "extra_images": tuple(item.extra_images),
        "attributes": given,
        "extra_attributes": extra,
    }


def _record_fields(record: ItemRecord) -> dict[str, Any]:
    extra = dict(record.extra_attributes)
    category = extra.pop(FEED_CATEGORY, record.category)  # the feed's word, where a head renamed it
    attributes = {group: guess.value for group, guess in record.attributes.items() if guess.source == "feed"}
    return {
        **{name: getattr(record, name) for name in _COMPARED},
        "category": category,
        "image": record.image,
        "extra_images": tuple(record.extra_images),
        "attributes": attributes,
        "extra_attributes": extra,
    }


_COMPARED = ("title", "category", "brand", "price", "currency", "in_stock", "url", "group_id")


@dataclass
class SyncReport:
    plan: SyncPlan
    build: str  # the build serving after the sync (the same one when nothing was published)
    published: bool  # a new build was published
    dry_run: bool
    count: int  # items serving after the sync
    embedded: int = 0  # image vectors computed
    bad_rows: list[BadRow] = field(default_factory=list)
    downloads: DownloadStats = field(default_factory=DownloadStats)
    timings_s: dict[str, float] = field(default_factory=dict)  # feed, download, digest, plan, apply, total

    def to_json(self) -> dict[str, Any]:
        plan = self.plan.to_json()
        return {
            **{name: plan.pop(name) for name in ("added", "changed", "removed", "unchanged")},
            "plan": plan,
            "embedded": self.embedded,
            "skipped": [{"line": row.line, "id": row.item_id, "reason": row.reason} for row in self.bad_rows],
            "build": self.build,
            "published": self.published,
            "dry_run": self.dry_run,
            "count": self.count,
            "downloads": dataclasses.asdict(self.downloads),
            "timings_s": self.timings_s,
        }

    def summary(self) -> str:
        if self.dry_run:
            outcome = "dry run, nothing changed"
        elif self.published:
            outcome = f"published {self.build}, {self.embedded} image(s) embedded"
        else:
            outcome = f"nothing to do, {self.build} keeps serving"
        return f"{self.plan.summary()}, {len(self.bad_rows)} skipped: {outcome}"


def sync_index(
    feed_path: Path,
    out_dir: Path,
    options: BuildOptions,
    load_models: ModelLoader,
    download: DownloadOptions,
    feed_format: str = "auto",
    dry_run: bool = False,
) -> SyncReport:
    """Sync the index published at `out_dir` with the complete feed at `feed_path` (see the module's
    docstring). The models are loaded (`load_models`) only when rows must be embedded; a dry run, a refused
    sync and a sync with nothing to do never load them, and publish nothing. CatalogueGuardError when a
    guard refuses; BuildError with `options.strict` and any bad row."""
    clock = _Clock()
    if not out_dir.is_symlink() or not out_dir.resolve().is_dir():
        raise BuildError(f"{out_dir} is not a published index; build one first with `index build --out`")
    feed = read_feed(feed_path, feed_format=feed_format)
    clock.lap("feed")
    localised, downloads = localise_feed(feed, download)
    clock.lap("download")
    digests: dict[str, tuple[str, ...]] = {}
    bad = list(localised.bad_rows)
    for item in localised.items:
        try:
            digests[item.item_id] = image_digests(item)
        except RowError as exc:
            bad.append(BadRow(item.line, item.item_id, str(exc)))
    clock.lap("digest")
    good = {item.item_id: item for item in localised.items if item.item_id in digests}
    build, records = _published(out_dir)
    plan = _plan(feed, good, digests, records, bad)
    # Rows to embed are decoded once here, so that an undecodable image counts against the whole feed.
    undecodable = _undecodable([good[item_id] for item_id in plan.added + plan.changed_images], options)
    if undecodable:
        bad += undecodable
        for row in undecodable:
            good.pop(str(row.item_id))
        plan = _plan(feed, good, digests, records, bad)
    bad.sort(key=lambda row: row.line)
    _check_sync(feed, good.values(), bad, plan, options)
    clock.lap("plan")
    report = SyncReport(plan, build, False, dry_run, plan.published, bad_rows=bad, downloads=downloads)
    upserts = [dataclasses.replace(good[item_id], image_sha256s=digests[item_id]) for item_id in plan.upserts]
    if not dry_run and (upserts or plan.removed):
        # The guards above judged the whole feed; update_index's own would judge only the changed rows.
        forced = dataclasses.replace(options, force=True)
        update = update_index(
            out_dir, None, None, forced, upserts, "upsert", plan.removed, bad, load_models=load_models
        )
        report.published, report.build, report.count = update.changed, update.build_dir.name, update.count
        report.embedded, report.bad_rows = update.embedded, update.bad_rows
    clock.lap("apply")
    report.timings_s = clock.timings()
    log.info("synced %s with %s: %s", out_dir, feed_path, report.summary())
    return report


def _published(out_dir: Path) -> tuple[str, list[ItemRecord]]:
    build = out_dir.resolve()
    try:
        reader = MetadataReader(build / METADATA_NAME)
        try:
            return build.name, reader.all_records()
        finally:
            reader.close()
    except (sqlite3.Error, ValueError) as exc:  # ValueError: a damaged JSON column
        raise BuildError(f"cannot read the items of the published build {build}: {exc}") from exc


def _plan(
    feed: Feed,
    good: Mapping[str, CatalogItem],
    digests: Mapping[str, tuple[str, ...]],
    records: Sequence[ItemRecord],
    bad: Iterable[BadRow],
) -> SyncPlan:
    """The plan of the feed's valid items, as the feed names their images (not the downloaded files)."""
    items = [item for item in feed.items if item.item_id in good]
    return plan_sync(items, digests, records, skipped_ids={row.item_id for row in bad if row.item_id})


def _undecodable(items: Sequence[CatalogItem], options: BuildOptions) -> list[BadRow]:
    bad = []
    for item in items:
        try:
            decode_image(item.image.read_bytes(), options.max_image_pixels)
        except (OSError, FashionSearchError) as exc:
            bad.append(BadRow(item.line, item.item_id, f"unreadable image {item.image}: {exc}"))
    return bad


def _check_sync(
    feed: Feed, good: Collection[CatalogItem], bad: list[BadRow], plan: SyncPlan, options: BuildOptions
) -> None:
    if options.strict and bad:
        raise BuildError(f"--strict: {len(bad)} bad row(s): {bad_sample(bad, 5)}; nothing was published")
    _check_rows(feed, good, bad, None, options)
    if options.force or not plan.published:
        return
    share = len(plan.removed) / plan.published
    if share > options.max_removed_ratio:
        raise CatalogueGuardError(
            f"refusing to sync: {len(plan.removed)} of the {plan.published} published items ({share:.0%}) "
            f"are not in {feed.path} (over --max-removed-ratio {options.max_removed_ratio:g}); nothing was "
            f"published; the published build keeps serving; check that the feed is complete or pass --force"
        )


def _check_rows(
    feed: Feed, good: Collection[CatalogItem], bad: list[BadRow], published: int | None, options: BuildOptions
) -> None:
    """The bad-row share of the whole feed (`check_catalogue`), and at least one valid row (even forced)."""
    if not good:
        raise BuildError(
            f"no valid items in {feed.path} ({len(bad)} bad row(s)): {bad_sample(bad)}; nothing was published"
        )
    rows = len(feed.items) + len(feed.bad_rows)
    check_catalogue(str(feed.path), rows, bad, len(good), published, options)


class _Clock:
    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name], self.last = now - self.last, now

    def timings(self) -> dict[str, float]:
        total = time.perf_counter() - self.started
        return {name: round(seconds, 3) for name, seconds in {**self.laps, "total": total}.items()}
