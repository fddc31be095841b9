"""The read-only index the service opens: vectors (FAISS or Milvus) + SQLite items + manifest, checked for
agreement."""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.filters import FilterColumns, SearchFilters
from indexer.manifest import METADATA_NAME, RAW_VECTORS_NAME, VECTORS_NAME, IndexCorruptError, Manifest
from indexer.metadata import ItemRecord, MetadataReader
from indexer.vector_backend import VectorBackend, open_vectors, verify_vectors
from models.errors import FashionSearchError, ModelMismatchError

log = logging.getLogger(__name__)


class UnknownCategoryError(FashionSearchError):
    """A category filter names a category the catalogue does not have."""


@dataclass(frozen=True)
class Hit:
    item: ItemRecord
    score: float
    image: int = 0  # which of the item's images matched best: 0 = the main one, 1.. = `item.extra_images`


class IndexStore:
    """Open with `IndexStore.open(directory)`; thread-safe for concurrent searches."""

    def __init__(self, directory: Path, manifest: Manifest, vectors: VectorBackend, items: MetadataReader):
        self.directory = directory
        self.build_dir = directory.resolve()  # the build the link pointed at when opened
        self.manifest = manifest
        self._vectors = vectors
        self._items = items
        # Every record in row order, read once: search results come from memory, not one SQLite query per
        # garment (the filter columns need a full pass anyway). About 1 KB per item.
        self._records = items.all_records()
        self.columns = FilterColumns(self._records)
        names, counts = np.unique(self.columns.category.astype(str), return_counts=True)
        self._category_counts = {str(n): int(c) for n, c in zip(names, counts, strict=True)}
        self._raw: np.ndarray | None = None  # vectors.npy, opened by the first `vector` call
        # Vector rows past the items' main images are further images: their item rows and positions.
        image_rows = items.image_rows()
        count = len(self._records)
        self._row_item = np.concatenate(
            [np.arange(count, dtype=np.int64), np.array([r.item_row for r in image_rows], dtype=np.int64)]
        )
        self._row_image = np.array([0] * count + [r.position for r in image_rows], dtype=np.int64)
        per_item = np.bincount(self._row_item, minlength=count) if count else np.zeros(0, np.int64)
        self._most_images = int(per_item.max()) if count else 1
        self._groups: dict[str, list[ItemRecord]] = {}
        for record in self._records:
            if record.group_id:
                self._groups.setdefault(record.group_id, []).append(record)

    @classmethod
    def open(cls, directory: Path, milvus_uri: str | None = None) -> IndexStore:
        """Open the index at `directory` (link or build). A build whose vectors are in Milvus is opened at
        `milvus_uri` (a server) or else in the Milvus Lite data inside the build."""
        resolved = directory.resolve()
        manifest = Manifest.read(resolved)
        needed = (VECTORS_NAME, METADATA_NAME) if manifest.vector_store == "faiss" else (METADATA_NAME,)
        for name in needed:
            if not (resolved / name).is_file():
                raise IndexCorruptError(
                    f"{resolved / name} is missing: the index at {directory} is incomplete"
                )
        vectors = open_vectors(resolved, manifest, milvus_uri)
        items = MetadataReader(resolved / METADATA_NAME)
        try:
            store = cls._checked(directory, manifest, vectors, items)
        except BaseException:
            items.close()
            vectors.close()
            raise
        log.info(
            "opened index %s: %d items, model %s, vectors in %s",
            resolved,
            manifest.count,
            manifest.model_name,
            vectors.location,
        )
        return store

    @classmethod
    def _checked(
        cls, directory: Path, manifest: Manifest, vectors: VectorBackend, items: MetadataReader
    ) -> IndexStore:
        resolved = directory.resolve()
        try:
            store = cls(directory, manifest, vectors, items)
            counts = {"manifest": manifest.count, "sqlite": items.count()}
            vector_rows = {"manifest": manifest.vector_count, vectors.kind: vectors.count}
            vector_rows["sqlite"] = len(store._row_item)
        except (sqlite3.DatabaseError, json.JSONDecodeError) as exc:
            raise IndexCorruptError(
                f"{resolved / METADATA_NAME} is not a readable item database: {exc}"
            ) from exc
        contiguous = all(record.row == row for row, record in enumerate(store._records))
        agree = len(set(counts.values())) == 1 and len(set(vector_rows.values())) == 1
        if not agree or vectors.dimension != manifest.dimension or not contiguous:
            raise IndexCorruptError(
                f"index at {directory} disagrees with itself: items {counts}, vector rows {vector_rows}, "
                f"dimension "
                f"{vectors.kind}={vectors.dimension} manifest={manifest.dimension}, rows numbered 0..n-1: "
                f"{contiguous} (vectors in {vectors.location})"
            )
        manifest.verify(resolved)  # after the checks above: they name the more specific faults
        verify_vectors(vectors, resolved)
        return store

    def close(self) -> None:
        self._items.close()
        self._vectors.close()

    @property
    def count(self) -> int:
        """Catalogue items (each with one or more vector rows)."""
        return len(self._records)

    def variants(self, group_id: str) -> list[ItemRecord]:
        """The items of one product group (its colours and sizes), in row order; [] for no group."""
        return list(self._groups.get(group_id, [])) if group_id else []

    @property
    def categories(self) -> list[str]:
        return sorted(self._category_counts)

    def category_counts(self) -> dict[str, int]:
        return dict(sorted(self._category_counts.items()))

    def rows_for(self, filters: SearchFilters) -> np.ndarray | None:
        """The vector rows a filtered search may return (every image of each item the filters keep); None
        means every row (no filter)."""
        if filters.empty:
            return None
        items = self.columns.rows(filters)
        if len(self._row_item) == len(self._records):
            return items
        keep = np.zeros(len(self._records), dtype=bool)
        keep[items] = True
        return np.flatnonzero(keep[self._row_item]).astype(items.dtype, copy=False)

    def check_model(self, model_name: str, dimension: int) -> None:
        """Refuse a model that is not the one the index was built with."""
        if model_name != self.manifest.model_name or dimension != self.manifest.dimension:
            raise ModelMismatchError(
                f"the index at {self.directory} was built with {self.manifest.model_name!r} "
                f"(dimension {self.manifest.dimension}) but the loaded embedder is {model_name!r} "
                f"(dimension {dimension}); rebuild the index or configure the same model"
            )

    def item(self, item_id: str) -> ItemRecord | None:
        return self._items.by_item_id(item_id)

    def vector(self, row: int) -> np.ndarray:
        """The stored float32 vector of `row` (from the build's vectors.npy, memory-mapped once opened);
        IndexCorruptError when the build has none (built before vectors.npy existed: rebuild it)."""
        if self._raw is None:
            path = self.build_dir / RAW_VECTORS_NAME
            try:
                raw = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise IndexCorruptError(
                    f"the index build {self.build_dir.name} has no readable {RAW_VECTORS_NAME} ({exc}); "
                    "searching by item needs it: rebuild the index with `fashion-search index build`"
                ) from exc
            if raw.shape != (len(self._row_item), self.manifest.dimension):
                raise IndexCorruptError(
                    f"{RAW_VECTORS_NAME} of build {self.build_dir.name} has shape {raw.shape}; expected "
                    f"({len(self._row_item)}, {self.manifest.dimension})"
                )
            self._raw = raw
        return np.ascontiguousarray(self._raw[row], dtype=np.float32)

    def search(
        self,
        vectors: np.ndarray,
        top_k: int,
        rows: np.ndarray | None = None,
        *,
        filters: SearchFilters | None = None,
    ) -> list[list[Hit]]:
        """Nearest items by inner product (cosine on normalised vectors), one list per query vector; an item
        with several images is found once, at its best image's score (`Hit.image` says which).

        `rows` (vector rows, from `rows_for`) restricts the search to those rows inside the vector store, so
        a filtered search still returns top_k hits when at least that many items qualify. Give the `filters`
        those rows came from too: FAISS searches within the rows (an IDSelector), a Milvus collection with
        the items' fields takes the filters as an expression instead of a row list."""
        if vectors.ndim != 2 or vectors.shape[1] != self.manifest.dimension:
            raise ModelMismatchError(
                f"query vectors have shape {vectors.shape}; the index expects (n, {self.manifest.dimension})"
            )
        queries = np.ascontiguousarray(vectors, dtype=np.float32)
        top_k = min(top_k, self.count)
        if rows is not None:
            top_k = min(top_k, len(rows))
        if top_k <= 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        # Each item has at most `_most_images` rows, so that many times top_k rows hold top_k items.
        fetched = min(top_k * self._most_images, len(self._row_item) if rows is None else len(rows))
        scores, rows_found = self._vectors.search(queries, fetched, rows, filters)
        return [
            self._hits(score_row, row_row, top_k)
            for score_row, row_row in zip(scores, rows_found, strict=True)
        ]

    def _hits(self, scores: np.ndarray, rows: np.ndarray, top_k: int) -> list[Hit]:
        hits: list[Hit] = []
        seen: set[int] = set()
        for score, row in zip(scores, rows, strict=True):
            if row < 0:
                continue
            item_row = int(self._row_item[row])
            if item_row in seen:
                continue
            seen.add(item_row)
            hits.append(Hit(self._records[item_row], float(score), int(self._row_image[row])))
            if len(hits) == top_k:
                break
        return hits
