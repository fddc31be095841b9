"""What a catalogue change can keep of the published build: an upserted item whose images have the same bytes
(by SHA-256) and whose category and feed attributes are unchanged keeps its vectors and predicted attributes,
so a changed title, price or stock embeds nothing. The vectors of a build are its cache, keyed by image
content and, through the manifest check, by the model."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from indexer.feed import CatalogItem
from indexer.item_images import ExtraVectors, with_digests
from indexer.metadata import ImageRow, ItemRecord
from models.attributes.taxonomy import Taxonomy

FEED_CATEGORY = "feed_category"  # the extra attribute keeping a feed category the category head renamed


def looks_the_same(record: ItemRecord, item: CatalogItem, taxonomy: Taxonomy) -> bool:
    """Same image bytes (every image, in order), same category and same feed attributes: what the vectors
    and the predicted attributes of `record` were computed from."""
    if not record.image_sha256s or record.image_sha256s != item.image_sha256s or "" in item.image_sha256s:
        return False
    extra = dict(record.extra_attributes)
    feed_category = extra.pop(FEED_CATEGORY, record.category)
    given, leftovers = taxonomy.normalise_attributes(item.attributes)
    from_feed = {group: guess.value for group, guess in record.attributes.items() if guess.source == "feed"}
    return item.category == feed_category and given == from_feed and leftovers == extra


def split_reusable(
    items: Sequence[CatalogItem], known: dict[str, ItemRecord], taxonomy: Taxonomy
) -> tuple[list[tuple[ItemRecord, CatalogItem]], list[CatalogItem]]:
    """(published record and new item of each item that keeps its vectors, the items to embed). An item
    whose files cannot be read is left to the embedding, which reports it as a bad row."""
    reused: list[tuple[ItemRecord, CatalogItem]] = []
    embed: list[CatalogItem] = []
    for item in items:
        record = known.get(item.item_id)
        if record is not None:
            try:
                item = with_digests(item)
            except OSError:
                embed.append(item)
                continue
            if looks_the_same(record, item, taxonomy):
                reused.append((record, item))
                continue
        embed.append(item)
    return reused, embed


def known_vectors(
    records: Sequence[ItemRecord], vectors: np.ndarray, images: Sequence[ImageRow]
) -> dict[str, np.ndarray]:
    """SHA-256 of an image's bytes -> its vector in the published build (the main images and the further
    ones), for further images that a change would otherwise embed again."""
    rows = {(record.row, 0): record.row for record in records}
    rows |= {(image.item_row, image.position): image.vector_row for image in images}
    known: dict[str, np.ndarray] = {}
    for record in records:
        for position, digest in enumerate(record.image_sha256s):
            row = rows.get((record.row, position))
            if digest and row is not None:
                known.setdefault(digest, vectors[row])
    return known


def reused_record(row: int, record: ItemRecord, item: CatalogItem) -> ItemRecord:
    """The new fields of `item` with what `record` computed from its images (attributes, category)."""
    fresh = ItemRecord.of(row, item, record.attributes, record.extra_attributes)
    return dataclasses.replace(fresh, category=record.category)


def merged_vectors(
    old: Sequence[ItemRecord],
    vectors: np.ndarray,
    old_images: Sequence[ImageRow],
    new_vectors: np.ndarray,
    new_images: ExtraVectors,
) -> tuple[np.ndarray, list[ImageRow]]:
    """The vectors of a changed build whose items are `old` (records of the published build, in their new
    order) followed by the new items: main images first, then the further images of the old items (from the
    published build) and of the new ones; with the further images' rows."""
    count = len(old) + len(new_vectors)
    by_item: dict[int, list[ImageRow]] = defaultdict(list)
    for image in old_images:
        by_item[image.item_row].append(image)
    picked = [record.row for record in old]
    rows: list[ImageRow] = []
    extra_rows: list[int] = []
    for item_row, record in enumerate(old):
        for image in by_item.get(record.row, []):
            rows.append(ImageRow(count + len(rows), item_row, image.position))
            extra_rows.append(image.vector_row)
    for image in new_images.rows:
        rows.append(ImageRow(count + len(rows), len(old) + image.item_row, image.position))
    merged = np.concatenate([vectors[picked], new_vectors, vectors[extra_rows], new_images.vectors]).astype(
        np.float32
    )
    return merged, rows
