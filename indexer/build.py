"""Build an index from a catalogue feed: read -> decode -> embed -> write, into staging, then publish."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from indexer.feed import BadRow, CatalogItem, Feed, read_feed
from indexer.guards import (  # noqa: F401  (the guards: public here too)
    CatalogueGuardError,
    bad_sample,
    category_counts,
    check_catalogue,
    check_feed,
    published_count,
)
from indexer.item_images import embed_extra_images, with_digests
from indexer.manifest import METADATA_NAME, RAW_VECTORS_NAME, Manifest
from indexer.metadata import ImageRow, ItemRecord, write_metadata
from indexer.publish import BuildError, build_lock, check_out_dir, new_staging_dir, publish
from indexer.vector_backend import (
    check_vector_store,
    choose_index_type,
    discard_pruned,
    discard_vectors,
    write_vectors,
)
from models.attributes.extractor import AttributeExtractor
from models.attributes.guess import CATEGORY_GROUP, AttributeGuess
from models.embedding import Embedder, HeadOutput
from models.errors import FashionSearchError
from models.images import decode_image

log = logging.getLogger(__name__)
LOG_EVERY_S = 10.0
# One kept catalogue item: its feed row, its attributes (feed-given or predicted) and extra feed attributes.
Described = tuple[CatalogItem, dict[str, AttributeGuess], dict[str, str]]


@dataclass(frozen=True)
class BuildOptions:
    strict: bool = False
    batch_size: int = 64
    max_image_pixels: int = 40_000_000
    keep_builds: int = 3
    progress: bool = True
    index_factory: str | None = None  # FAISS factory string or Milvus index type; None = chosen by size
    vector_store: str = "faiss"  # "faiss": vectors.faiss in the build; "milvus": a collection per build
    milvus_uri: str | None = None  # Milvus server URI; None = Milvus Lite inside the build (milvus.db)
    # Catalogue guards (`check_catalogue`): a feed with more than this share of bad rows is refused, and so is
    # a build that would leave more than this share of the published build's items out; `force` skips both.
    max_bad_ratio: float = 0.05
    max_removed_ratio: float = 0.2
    force: bool = False


@dataclass
class BuildReport:
    out_dir: Path
    build_dir: Path
    manifest: Manifest
    bad_rows: list[BadRow] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)  # feed, embed, write (incl. publish), total
    unknown_categories: dict[str, int] = field(default_factory=dict)  # outside the taxonomy: items each
    renamed_categories: dict[str, int] = field(default_factory=dict)  # feed category -> named by the model

    @property
    def items_per_s(self) -> float:
        return self.manifest.count / self.manifest.build_seconds if self.manifest.build_seconds else 0.0


def build_index(
    feed_path: Path,
    out_dir: Path,
    embedder: Embedder,
    options: BuildOptions,
    extractor: AttributeExtractor,
    describe: Callable[[list[CatalogItem]], tuple[list[Described], np.ndarray, list[BadRow]]] | None = None,
    feed: Feed | None = None,
) -> BuildReport:
    """Build and atomically publish an index. On any failure the published index is left as it was.
    `feed` is the feed as `read_build_feed` returned it (read here when None); a feed the catalogue guards
    refuse (`check_catalogue`) fails before anything is embedded.

    Feed attributes are normalised through the taxonomy (source "feed"); groups the feed leaves out are
    predicted from the product image (source "predicted", with confidence) by `extractor`: build it with
    the composition root (`search.runtime.build_extractor`), as the service does, so both predict alike."""
    started = time.perf_counter()
    if feed is None:
        feed = read_build_feed(feed_path, out_dir, options)
    feed_s = time.perf_counter() - started
    with build_lock(out_dir):
        # Checked again under the lock: the published build may have changed since `read_build_feed`.
        check_feed(feed, [], len(feed.items), published_count(out_dir), options)
        with staged_build(out_dir, options.vector_store, options.milvus_uri) as staging:
            embed_started = time.perf_counter()
            if describe is None:
                described, vectors, batch_bad = describe_items(feed.items, embedder, extractor, options)
            else:
                described, vectors, batch_bad = describe(feed.items)
            bad = list(feed.bad_rows) + batch_bad
            _fail_if_strict(options, batch_bad)
            # Unreadable images are only found while embedding: the same guards, before anything is written.
            check_feed(feed, batch_bad, len(described), published_count(out_dir), options)
            unknown, renamed = category_counts(
                ((item.category, extra.get("feed_category")) for item, _, extra in described),
                extractor.taxonomy.categories,
                options.strict,
            )
            described = [(with_digests(item), given, extra) for item, given, extra in described]
            extra = embed_extra_images([entry[0] for entry in described], embedder, options, len(described))
            vectors = np.concatenate([vectors, extra.vectors])
            embed_s = time.perf_counter() - embed_started
            rows = [ItemRecord.of(row, *entry) for row, entry in enumerate(described)]
            factory = options.index_factory or choose_index_type(
                options.vector_store, len(rows), embedder.dimension
            )
            manifest = Manifest(
                model_name=embedder.name,
                dimension=embedder.dimension,
                metric="inner_product",
                count=len(rows),
                vectors=len(vectors),
                index_type=factory,
                feed_sha256=feed.sha256,
                feed_path=str(feed_path.resolve()),
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                skipped_rows=len(bad),
                build_seconds=0.0,
                detector="full-frame",
                predicted_attributes=extractor.predicted_groups,
                vector_store=options.vector_store,
            )
            write_started = time.perf_counter()
            manifest, final = write_and_publish(
                staging, out_dir, vectors, rows, manifest, started, options, extra.rows
            )
    bad.sort(key=lambda row: row.line)
    for row in bad:
        log.warning("skipped %s", row)
    timings = {
        "feed": feed_s,
        "embed": embed_s,
        "write": time.perf_counter() - write_started,
        "total": time.perf_counter() - started,
    }
    return BuildReport(
        out_dir=out_dir,
        build_dir=final,
        manifest=manifest,
        bad_rows=bad,
        timings_s={name: round(seconds, 3) for name, seconds in timings.items()},
        unknown_categories=unknown,
        renamed_categories=renamed,
    )


def read_build_feed(feed_path: Path, out_dir: Path, options: BuildOptions, feed_format: str = "auto") -> Feed:
    """Read the feed and make every check that needs no model: the vector store, the out dir, `--strict` and
    the catalogue guards against the published build. Seconds for a broken feed, before any model loads (the
    CLI calls it first, then loads the models and passes the feed to `build_index`)."""
    check_vector_store(options.vector_store, options.index_factory)
    check_out_dir(out_dir)
    feed = read_feed(feed_path, feed_format=feed_format)
    _fail_if_strict(options, feed.bad_rows)
    check_feed(feed, [], len(feed.items), published_count(out_dir), options)
    return feed


@contextlib.contextmanager
def staged_build(out_dir: Path, vector_store: str, milvus_uri: str | None) -> Iterator[Path]:
    """A fresh staging directory for a build of `out_dir` (the caller holds its lock). On any failure the
    directory goes, and so does a Milvus collection written for it; the published index is untouched."""
    staging = new_staging_dir(out_dir)
    try:
        yield staging
    except BaseException:
        discard_vectors(staging, vector_store, milvus_uri)
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_and_publish(
    staging: Path,
    out_dir: Path,
    vectors: np.ndarray,
    rows: list[ItemRecord],
    manifest: Manifest,
    started: float,
    options: BuildOptions,
    image_rows: list[ImageRow] | None = None,
) -> tuple[Manifest, Path]:
    """Write the build, publish it, prune old builds (dropping their server collections): the sealed
    manifest and the published build directory."""
    try:
        sealed = write_build(
            staging, vectors, rows, manifest, started, milvus_uri=options.milvus_uri, image_rows=image_rows
        )
    except (OSError, sqlite3.Error) as exc:  # a full disk, a folder made read-only meanwhile
        raise BuildError(f"could not write the new build in {staging}: {exc}; nothing was published") from exc
    prune_vectors = functools.partial(discard_pruned, milvus_uri=options.milvus_uri)
    return sealed, publish(staging, out_dir, options.keep_builds, prune_vectors)


def write_build(
    staging: Path,
    vectors: np.ndarray,
    rows: list[ItemRecord],
    manifest: Manifest,
    started: float,
    *,
    milvus_uri: str | None = None,
    image_rows: list[ImageRow] | None = None,
) -> Manifest:
    """Write one complete build into `staging`: raw vectors (the source of truth for updates and for
    re-indexing into another type), the searchable vectors in `manifest.vector_store` with its `index_type`
    (FAISS: vectors.faiss; Milvus: a new collection named from the build id, with each row's filterable
    fields, at `milvus_uri` or else in Milvus Lite inside `staging`), the items, then the sealed manifest
    (checksums, written last). Run it inside `staged_build`, which removes what it wrote if anything fails.
    Vector rows: the items' main images (row = item row), then `image_rows` (their further images)."""
    extra = image_rows or []
    expected = (len(rows) + len(extra), manifest.dimension)
    if vectors.shape != expected or vectors.dtype != np.float32:
        raise BuildError(
            f"{len(rows)} items and {len(extra)} further images but vectors {vectors.dtype} {vectors.shape}; "
            f"expected float32 {expected}"
        )
    if any(r.vector_row != len(rows) + i or not 0 <= r.item_row < len(rows) for i, r in enumerate(extra)):
        raise BuildError("further image rows must follow the items' rows in order and name an item")
    manifest = dataclasses.replace(manifest, vectors=expected[0])
    with (staging / RAW_VECTORS_NAME).open("wb") as handle:
        np.save(handle, np.ascontiguousarray(vectors), allow_pickle=False)
    manifest = write_vectors(staging, vectors, manifest, milvus_uri, records=rows, image_rows=extra)
    write_metadata(staging / METADATA_NAME, rows, extra)
    elapsed = round(time.perf_counter() - started, 3)
    return dataclasses.replace(manifest, build_seconds=elapsed).write(staging)


def describe_items(
    items: list[CatalogItem], embedder: Embedder, extractor: AttributeExtractor, options: BuildOptions
) -> tuple[list[Described], np.ndarray, list[BadRow]]:
    """Decode, embed and attribute `items` in batches: (kept items with attributes, their vectors in the
    same order, bad rows). The single-process core; the distributed build runs it per shard."""
    described: list[Described] = []
    chunks: list[np.ndarray] = []
    bad: list[BadRow] = []
    for good, images, (vectors, heads), batch_bad in _embedded_batches(items, embedder, options):
        bad.extend(batch_bad)
        _fail_if_strict(options, batch_bad)
        _check_vectors(vectors, len(good), embedder.dimension)
        for index, (item, image, vector) in enumerate(zip(good, images, vectors, strict=True)):
            described.append(_describe(item, image, vector, extractor, heads[index] if heads else None))
        chunks.append(vectors)
    matrix = np.concatenate(chunks) if chunks else np.zeros((0, embedder.dimension), np.float32)
    return described, matrix.astype(np.float32, copy=False), bad


def _describe(
    item: CatalogItem,
    image: Image.Image,
    vector: np.ndarray,
    extractor: AttributeExtractor,
    heads: HeadOutput | None = None,
) -> Described:
    given, extra = extractor.taxonomy.normalise_attributes(item.attributes)
    attributes = {group: AttributeGuess(value, 1.0, "feed") for group, value in given.items()}
    if item.category not in extractor.taxonomy.categories and heads is not None:
        # A category the taxonomy does not know ("kurtas", "misc"): the category head names it when sure;
        # the feed's word is kept as an extra attribute.
        guess = extractor.category_of(heads)
        if guess is not None:
            extra = {**extra, "feed_category": item.category}
            item = dataclasses.replace(item, category=guess.value)
            attributes[CATEGORY_GROUP] = guess
    if any(group not in attributes for group in extractor.predicted_groups):
        predicted = extractor.for_product(image, item.category, vector, heads)
        for group, guess in predicted.values.items():
            attributes.setdefault(group, guess)
    return item, attributes, extra


def _fail_if_strict(options: BuildOptions, bad: list[BadRow]) -> None:
    if options.strict and bad:
        shown = "; ".join(str(row) for row in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise BuildError(f"--strict: {len(bad)} bad row(s): {shown}{more}")


def _check_vectors(vectors: np.ndarray, expected_rows: int, dimension: int) -> None:
    if vectors.dtype != np.float32 or vectors.shape != (expected_rows, dimension):
        raise BuildError(
            f"embedder returned {vectors.dtype} {vectors.shape}; "
            f"expected float32 ({expected_rows}, {dimension})"
        )


def _decoded_batches(
    items: list[CatalogItem], batch_size: int, max_pixels: int
) -> Iterator[tuple[list[CatalogItem], list[Image.Image], list[BadRow]]]:
    for start in range(0, len(items), batch_size):
        good: list[CatalogItem] = []
        images: list[Image.Image] = []
        bad: list[BadRow] = []
        for item in items[start : start + batch_size]:
            try:
                images.append(decode_image(item.image.read_bytes(), max_pixels))
                good.append(item)
            except (OSError, FashionSearchError) as exc:
                bad.append(BadRow(item.line, item.item_id, f"unreadable image {item.image}: {exc}"))
        yield good, images, bad


def _embedded_batches(
    items: list[CatalogItem], embedder: Embedder, options: BuildOptions
) -> Iterator[
    tuple[list[CatalogItem], list[Image.Image], tuple[np.ndarray, list[HeadOutput] | None], list[BadRow]]
]:
    done, last_log, started = 0, time.monotonic(), time.monotonic()
    with tqdm(total=len(items), unit="item", desc="embedding", disable=not options.progress) as bar:
        for good, images, bad in _decoded_batches(items, options.batch_size, options.max_image_pixels):
            described = embedder.describe_images(images)  # vectors, and head outputs in the same pass
            done += len(good) + len(bad)
            bar.update(len(good) + len(bad))
            now = time.monotonic()
            if now - last_log >= LOG_EVERY_S:
                log.info("embedded %d/%d items, %.1f items/s", done, len(items), done / (now - started))
                last_log = now
            yield good, images, described, bad
