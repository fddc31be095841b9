"""Incremental changes to a published index: add, upsert and delete items without a full rebuild.

Copy-on-write: a change reads the published build (raw vectors + items), embeds only the new feed rows,
writes a complete new build beside it and publishes it with the same atomic link swap as `index build`.
So a change is durable once acknowledged (every file fsynced before the link moves), a crash at any point
leaves the previous build serving, and a service watching the link picks the change up on its own.
Unchanged items keep their vectors and attributes; nothing is re-embedded. The cost is one rewrite of the
index per change (seconds for 100k items on Flat; a large HNSW is rebuilt), so batch small changes.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

from indexer.build import BuildOptions, Described, describe_items, staged_build, write_and_publish
from indexer.feed import BadRow, CatalogItem
from indexer.guards import check_catalogue
from indexer.item_images import ExtraVectors, embed_extra_images, with_digests
from indexer.manifest import METADATA_NAME, RAW_VECTORS_NAME, VECTORS_NAME, IndexCorruptError, Manifest
from indexer.metadata import ImageRow, ItemRecord, MetadataReader
from indexer.publish import BuildError, build_lock
from indexer.reuse import known_vectors, merged_vectors, reused_record, split_reusable
from models.attributes.extractor import AttributeExtractor
from models.attributes.taxonomy import load_taxonomy
from models.embedding import Embedder
from models.errors import ModelMismatchError

log = logging.getLogger(__name__)
Mode = Literal["add", "upsert"]
# Builds the embedder and extractor when an update has rows to embed (the CLI's: none for a delete).
ModelLoader = Callable[[], tuple[Embedder, AttributeExtractor]]


@dataclass
class UpdateReport:
    build_dir: Path  # the build serving after the change (the old one when nothing changed)
    changed: bool
    count: int
    added: int = 0
    replaced: int = 0
    deleted: int = 0
    embedded: int = 0  # image vectors computed (main and further images); 0 for a change of fields only
    reused: int = 0  # replaced items that kept their vectors: the same image bytes, category and attributes
    missing_ids: list[str] = field(default_factory=list)  # delete ids the index did not have
    bad_rows: list[BadRow] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.added} added, {self.replaced} replaced, {self.deleted} deleted, {self.embedded} images "
            f"embedded, {len(self.bad_rows)} skipped, {self.count} items, {self.seconds:.1f} s"
        )


def update_index(
    out_dir: Path,
    embedder: Embedder | None,
    extractor: AttributeExtractor | None,
    options: BuildOptions,
    items: Iterable[CatalogItem] = (),
    mode: Mode = "add",
    delete_ids: Iterable[str] = (),
    bad_rows: Iterable[BadRow] = (),
    load_models: ModelLoader | None = None,
) -> UpdateReport:
    """Apply catalogue items (`add`: new ids only, a known id is a bad row; `upsert`: new or replaced) and/or
    deletions to the index published at `out_dir`. The items come from a feed reader (`read_feed(path).items`,
    whose `bad_rows` are passed along to be reported) or from the admin API. `options.strict` turns bad rows
    and unknown delete ids into a failure that changes nothing.

    The models are needed only for rows to embed: pass them, or None and a `load_models` that is called only
    when there are such rows (a delete never loads a model). Items are checked by the catalogue guard's
    bad-row share (`check_catalogue`; rows of an add whose id is already indexed do not count: re-running an
    add is harmless) before anything is embedded, and again with the unreadable images found while
    embedding. The removed-items share does not apply: add and upsert remove nothing, and a delete names
    its ids.

    An upserted item whose image bytes, category and feed attributes are those of the published build keeps
    its vectors and predicted attributes (`indexer.reuse`): only its fields change, nothing is embedded."""
    started = time.perf_counter()
    with build_lock(out_dir):
        current = _published_build(out_dir)
        manifest = Manifest.read(current)
        manifest.verify(current)
        if embedder is not None:
            _check_model(out_dir, manifest, embedder)
        records, vectors, old_images = _read_build(current, manifest)
        known = {record.item_id: record.row for record in records}

        bad = list(bad_rows)
        incoming: list[CatalogItem] = []
        first_line: dict[str, int] = {}
        known_rows: list[BadRow] = []  # an add's rows whose id is indexed: reported, not counted as broken
        for item in items:
            if item.item_id in first_line:
                reason = f"duplicate id, first seen on line {first_line[item.item_id]}"
                bad.append(BadRow(item.line, item.item_id, reason))
            elif mode == "add" and item.item_id in known:
                reason = "already in the index (use upsert to replace it)"
                known_rows.append(BadRow(item.line, item.item_id, reason))
            else:
                incoming.append(item)
            first_line.setdefault(item.item_id, item.line)
        wanted_deletes = list(dict.fromkeys(delete_ids))
        missing = [item_id for item_id in wanted_deletes if item_id not in known]
        if options.strict and (bad or known_rows or missing):
            raise BuildError(_strict_reason(sorted(bad + known_rows, key=lambda row: row.line), missing))
        change = f"the rows given to {out_dir}"
        rows_given = len(incoming) + len(bad) + len(known_rows)
        check_catalogue(change, rows_given, bad, len(incoming) + len(known_rows), None, options)

        embed_bad: list[BadRow] = []
        described: list[Described] = []
        new_vectors = np.zeros((0, manifest.dimension), np.float32)
        new_images = ExtraVectors(new_vectors, [])
        by_id = {record.item_id: record for record in records}
        reused, incoming = split_reusable(incoming, by_id, load_taxonomy())
        # An upserted row identical to its published item changes nothing (re-running a feed is harmless).
        reused = [
            (record, item) for record, item in reused if reused_record(record.row, record, item) != record
        ]
        if incoming:
            if embedder is None or extractor is None:
                if load_models is None:
                    raise BuildError("there are rows to embed but no models: pass them or `load_models`")
                embedder, extractor = load_models()
                _check_model(out_dir, manifest, embedder)
            described, new_vectors, embed_bad = describe_items(incoming, embedder, extractor, options)
            described = [(with_digests(item), given, extra) for item, given, extra in described]
            new_items = [entry[0] for entry in described]
            known_images = known_vectors(records, vectors, old_images)
            new_images = embed_extra_images(new_items, embedder, options, 0, known_images)
        if options.strict and embed_bad:
            raise BuildError(_strict_reason(embed_bad, []))
        kept_count = len(described) + len(reused) + len(known_rows)
        check_catalogue(change, rows_given, bad + embed_bad, kept_count, None, options)
        bad.extend(embed_bad)
        bad.extend(known_rows)
        replacing = {entry[0].item_id for entry in described if entry[0].item_id in known}
        replacing |= {record.item_id for record, _ in reused}
        removed = (set(wanted_deletes) - set(missing)) | replacing
        report = UpdateReport(
            build_dir=current,
            changed=bool(described or removed),
            count=manifest.count,
            added=len(described) + len(reused) - len(replacing),
            replaced=len(replacing),
            embedded=len(described) + new_images.embedded,
            reused=len(reused),
            deleted=len(set(wanted_deletes) - set(missing) - replacing),
            missing_ids=missing,
            bad_rows=sorted(bad, key=lambda row: row.line),
        )
        if not report.changed:
            report.seconds = round(time.perf_counter() - started, 3)
            return report
        kept = [record for record in records if record.item_id not in removed]
        if not kept and not described and not reused:
            raise BuildError(f"the change would leave {out_dir} empty; an index needs at least one item")
        rows = [dataclasses.replace(record, row=row) for row, record in enumerate(kept)]
        rows += [reused_record(len(rows) + offset, *pair) for offset, pair in enumerate(reused)]
        rows += [ItemRecord.of(len(rows) + offset, *entry) for offset, entry in enumerate(described)]
        old = kept + [record for record, _ in reused]
        merged, image_rows = merged_vectors(old, vectors, old_images, new_vectors, new_images)
        with staged_build(out_dir, manifest.vector_store, options.milvus_uri) as staging:
            changed = dataclasses.replace(
                manifest,
                count=len(rows),
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                skipped_rows=len(bad),
                checksums={},
            )
            sealed, report.build_dir = write_and_publish(
                staging, out_dir, merged, rows, changed, started, options, image_rows
            )
    report.count = sealed.count
    report.seconds = round(time.perf_counter() - started, 3)
    log.info("updated %s -> %s: %s", out_dir, report.build_dir.name, report.summary())
    return report


def _check_model(out_dir: Path, manifest: Manifest, embedder: Embedder) -> None:
    if manifest.model_name != embedder.name or manifest.dimension != embedder.dimension:
        raise ModelMismatchError(
            f"the index at {out_dir} was built with {manifest.model_name!r} (dimension "
            f"{manifest.dimension}); the configured embedder is {embedder.name!r} ({embedder.dimension})"
        )


def _published_build(out_dir: Path) -> Path:
    if not out_dir.is_symlink() or not out_dir.resolve().is_dir():
        raise BuildError(f"{out_dir} is not a published index; build one first with `index build --out`")
    return out_dir.resolve()


def _read_build(build: Path, manifest: Manifest) -> tuple[list[ItemRecord], np.ndarray, list[ImageRow]]:
    """The published build's items, raw vectors (all rows) and further images' rows; IndexCorruptError (the
    same refusal as a reload) when any is missing or unreadable."""
    if not (build / METADATA_NAME).is_file():
        raise IndexCorruptError(f"{build / METADATA_NAME} is missing: the published index is incomplete")
    try:
        reader = MetadataReader(build / METADATA_NAME)
        try:
            records = reader.all_records()
            images = reader.image_rows()
        finally:
            reader.close()
    except (sqlite3.DatabaseError, ValueError) as exc:  # ValueError: a row's JSON columns
        raise IndexCorruptError(f"{build / METADATA_NAME} is not a readable item database: {exc}") from exc
    raw = build / RAW_VECTORS_NAME
    if raw.is_file():
        try:
            vectors = np.load(raw, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise IndexCorruptError(f"{raw} is not a readable vector file: {exc}") from exc
    else:  # a build from before vectors.npy: only an exact index holds the vectors themselves
        index = faiss.read_index(str(build / VECTORS_NAME))
        if not isinstance(faiss.downcast_index(index), faiss.IndexFlat):
            raise IndexCorruptError(
                f"{build} has no {RAW_VECTORS_NAME} and its {manifest.index_type} index cannot give its "
                "vectors back; rebuild it once with `index build`"
            )
        vectors = index.reconstruct_n(0, index.ntotal)
    if vectors.shape != (len(records) + len(images), manifest.dimension) or vectors.dtype != np.float32:
        raise IndexCorruptError(
            f"{build}: {len(records)} items and {len(images)} further images but vectors {vectors.dtype} "
            f"{vectors.shape}; rebuild the index"
        )
    return records, vectors, images


def _strict_reason(bad: list[BadRow], missing: list[str]) -> str:
    parts = [str(row) for row in bad[:5]] + [f"id {item_id!r} is not in the index" for item_id in missing[:5]]
    more = len(bad) + len(missing) - len(parts)
    return f"--strict: nothing changed: {'; '.join(parts)}" + (f" (and {more} more)" if more > 0 else "")
