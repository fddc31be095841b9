"""Build an index from a catalogue feed: read -> decode -> embed -> write, into staging, then publish."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np
from PIL import Image
from tqdm import tqdm

from indexer.feed import BadRow, CatalogItem, read_feed
from indexer.manifest import METADATA_NAME, VECTORS_NAME, Manifest
from indexer.metadata import ItemRow, write_metadata
from indexer.publish import BuildError, build_lock, check_out_dir, new_staging_dir, publish
from models.attributes.extractor import AttributeExtractor, create_extractor
from models.attributes.guess import AttributeGuess
from models.embedder import Embedder
from models.errors import FashionSearchError
from models.images import decode_image

log = logging.getLogger(__name__)
LOG_EVERY_S = 10.0


@dataclass(frozen=True)
class BuildOptions:
    strict: bool = False
    batch_size: int = 64
    max_image_pixels: int = 40_000_000
    keep_builds: int = 3
    progress: bool = True


@dataclass
class BuildReport:
    out_dir: Path
    build_dir: Path
    manifest: Manifest
    bad_rows: list[BadRow] = field(default_factory=list)

    @property
    def items_per_s(self) -> float:
        return self.manifest.count / self.manifest.build_seconds if self.manifest.build_seconds else 0.0


def build_index(
    feed_path: Path,
    out_dir: Path,
    embedder: Embedder,
    options: BuildOptions,
    extractor: AttributeExtractor | None = None,
) -> BuildReport:
    """Build and atomically publish an index. On any failure the published index is left as it was.

    Feed attributes are normalised through the taxonomy (source "feed"); groups the feed leaves out are
    predicted from the product image (source "predicted", with confidence) by `extractor` (default: colour,
    plus zero-shot groups when the embedder has a text tower)."""
    started = time.perf_counter()
    extractor = extractor or create_extractor(embedder)
    check_out_dir(out_dir)
    feed = read_feed(feed_path)
    _fail_if_strict(options, feed.bad_rows)
    with build_lock(out_dir):
        staging = new_staging_dir(out_dir)
        try:
            index = faiss.IndexFlatIP(embedder.dimension)
            kept: list[ItemRow] = []
            bad = list(feed.bad_rows)
            for items, images, vectors, batch_bad in _embedded_batches(feed.items, embedder, options):
                bad.extend(batch_bad)
                _fail_if_strict(options, batch_bad)
                _check_vectors(vectors, len(items), embedder.dimension)
                for item, image, vector in zip(items, images, vectors, strict=True):
                    kept.append(_item_row(len(kept), item, image, vector, extractor))
                if len(items):
                    index.add(vectors)
            if not kept:
                raise BuildError(f"no valid items in {feed_path} ({len(bad)} bad rows): nothing to index")
            faiss.write_index(index, str(staging / VECTORS_NAME))
            write_metadata(staging / METADATA_NAME, kept)
            manifest = Manifest(
                model_name=embedder.name,
                dimension=embedder.dimension,
                metric="inner_product",
                count=int(index.ntotal),
                index_type="IndexFlatIP",
                feed_sha256=feed.sha256,
                feed_path=str(feed_path.resolve()),
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                skipped_rows=len(bad),
                build_seconds=round(time.perf_counter() - started, 3),
                detector="full-frame",
                predicted_attributes=extractor.predicted_groups,
            )
            manifest.write(staging)
            final = publish(staging, out_dir, options.keep_builds)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    bad.sort(key=lambda row: row.line)
    for row in bad:
        log.warning("skipped %s", row)
    return BuildReport(out_dir=out_dir, build_dir=final, manifest=manifest, bad_rows=bad)


def _item_row(
    row: int, item: CatalogItem, image: Image.Image, vector: np.ndarray, extractor: AttributeExtractor
) -> ItemRow:
    given, extra = extractor.taxonomy.normalise_attributes(item.attributes)
    attributes = {group: AttributeGuess(value, 1.0, "feed") for group, value in given.items()}
    if any(group not in attributes for group in extractor.predicted_groups):
        predicted = extractor.for_product(image, item.category, vector)
        for group, guess in predicted.values.items():
            attributes.setdefault(group, guess)
    return ItemRow(row, item, attributes, extra)


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
) -> Iterator[tuple[list[CatalogItem], list[Image.Image], np.ndarray, list[BadRow]]]:
    done, last_log, started = 0, time.monotonic(), time.monotonic()
    with tqdm(total=len(items), unit="item", desc="embedding", disable=not options.progress) as bar:
        for good, images, bad in _decoded_batches(items, options.batch_size, options.max_image_pixels):
            vectors = embedder.embed_images(images)
            done += len(good) + len(bad)
            bar.update(len(good) + len(bad))
            now = time.monotonic()
            if now - last_log >= LOG_EVERY_S:
                log.info("embedded %d/%d items, %.1f items/s", done, len(items), done / (now - started))
                last_log = now
            yield good, images, vectors, bad
