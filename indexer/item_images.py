"""An item's further images (`CatalogItem.extra_files`): each one embedded into a vector-store row of its own
after the items' main images, so a search can match a product by its back view or a detail shot; and the
SHA-256 of every image's bytes, which a sync compares to tell a changed image from a changed title."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from indexer.feed import CatalogItem
from indexer.metadata import ImageRow
from models.embedding import Embedder
from models.errors import FashionSearchError
from models.files import file_digest
from models.images import decode_image

log = logging.getLogger(__name__)


class ImageOptions(Protocol):
    """What this module reads of `indexer.build.BuildOptions`."""

    @property
    def batch_size(self) -> int: ...
    @property
    def max_image_pixels(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class ExtraVectors:
    """The further images' vectors (rows `first_row`.. of the build, in `rows` order) and their rows."""

    vectors: np.ndarray
    rows: list[ImageRow]
    embedded: int = 0  # how many of them were computed (the others came from `known`)


def with_digests(item: CatalogItem) -> CatalogItem:
    """`item` with `image_sha256s` (main image, then each extra file); an extra file that cannot be read gets
    "" (it is skipped when embedding too)."""
    digests = [file_digest(item.image)]
    for path in item.extra_files:
        try:
            digests.append(file_digest(path))
        except OSError:
            digests.append("")
    return dataclasses.replace(item, image_sha256s=tuple(digests))


def embed_extra_images(
    items: Sequence[CatalogItem],
    embedder: Embedder,
    options: ImageOptions,
    first_row: int,
    known: Mapping[str, np.ndarray] | None = None,
) -> ExtraVectors:
    """Embed the extra files of `items` (item row = position in `items`), in batches; an image whose bytes
    (`item.image_sha256s`) are in `known` (SHA-256 -> vector of the same model) takes that vector instead.
    A further image that cannot be read or decoded is left out with a warning: the item is still found by
    its other images."""
    wanted = [
        (item_row, position, path)
        for item_row, item in enumerate(items)
        for position, path in enumerate(item.extra_files, start=1)
    ]
    chunks: list[np.ndarray] = []
    rows: list[ImageRow] = []
    embedded = 0
    for start in range(0, len(wanted), options.batch_size):
        batch, images, cached = [], [], []
        for item_row, position, path in wanted[start : start + options.batch_size]:
            digests = items[item_row].image_sha256s
            digest = digests[position] if position < len(digests) else ""
            if known and digest in known:
                cached.append((item_row, position, known[digest]))
                continue
            try:
                images.append(decode_image(path.read_bytes(), options.max_image_pixels))
                batch.append((item_row, position))
            except (OSError, FashionSearchError) as exc:
                log.warning("extra image %s of %s left out: %s", path, items[item_row].item_id, exc)
        for item_row, position, vector in cached:
            rows.append(ImageRow(first_row + len(rows), item_row, position))
            chunks.append(vector[None, :].astype(np.float32))
        if not images:
            continue
        vectors = embedder.embed_images(images)
        if vectors.dtype != np.float32 or vectors.shape != (len(images), embedder.dimension):
            raise ValueError(
                f"embedder returned {vectors.dtype} {vectors.shape} for {len(images)} extra images; "
                f"expected float32 ({len(images)}, {embedder.dimension})"
            )
        for item_row, position in batch:
            rows.append(ImageRow(first_row + len(rows), item_row, position))
        chunks.append(vectors)
        embedded += len(images)
    matrix = np.concatenate(chunks) if chunks else np.zeros((0, embedder.dimension), np.float32)
    return ExtraVectors(matrix.astype(np.float32, copy=False), rows, embedded)
