"""Where a build's searchable vectors live, behind one interface: FAISS (`vectors.faiss` in the build) or
Milvus (a collection per build, see indexer/milvus_backend.py). The manifest's `vector_store` says which;
a Milvus address is never recorded: it comes from settings when the index is built or opened, and without
one the build keeps Milvus Lite's data inside its own directory (`milvus.db`), so publishing and pruning
builds work as for FAISS. Either way `vectors.npy` in the build stays the source of truth for updates.

Filtered searches: FAISS searches within the rows `FilterColumns` keeps; a Milvus collection holds each
row's filterable fields and takes the filters as an expression over them (indexer/milvus_fields.py).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np

from indexer import milvus_backend
from indexer.filters import SearchFilters
from indexer.manifest import (
    MILVUS_LITE_NAME,
    RAW_VECTORS_NAME,
    VECTOR_STORES,
    VECTORS_NAME,
    IndexCorruptError,
    Manifest,
)
from indexer.metadata import ImageRow, ItemRecord
from indexer.milvus_backend import MilvusBackend, collection_name
from indexer.milvus_connection import VectorStoreError
from indexer.milvus_fields import ScalarFields
from indexer.publish import PARTIAL_SUFFIX
from indexer.vector_index import build_vector_index, choose_factory, read_vector_index, search_params
from models.errors import ConfigError, FashionSearchError

log = logging.getLogger(__name__)

__all__ = [
    "FaissBackend",
    "MilvusBackend",
    "VectorBackend",
    "VectorStoreError",
    "check_vector_store",
    "choose_index_type",
    "discard_vectors",
    "milvus_address",
    "open_vectors",
    "write_vectors",
]


class VectorBackend(Protocol):
    """Nearest rows by inner product. `kind` is "faiss" or "milvus"; `location` names the data in messages."""

    kind: str
    location: str

    @property
    def dimension(self) -> int: ...

    @property
    def count(self) -> int: ...

    def search(
        self,
        queries: np.ndarray,
        k: int,
        rows: np.ndarray | None = None,
        filters: SearchFilters | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`queries` float32 (n, d) -> (scores float32 (n, k'), rows int64 (n, k')), best first, k' <= k;
        rows are -1 (and their scores meaningless) where fewer than k' rows qualify. `rows` restricts the
        search to those rows (int64 array); an empty array gives k' = 0. `filters`, given with the rows they
        keep, let a store that holds the items' fields filter by them instead (Milvus); FAISS uses `rows`."""
        ...

    def close(self) -> None: ...


class FaissBackend:
    """A FAISS index read from the build (memory-mapped where FAISS can)."""

    kind = "faiss"

    def __init__(self, index: faiss.Index, path: Path) -> None:
        self._index = index
        self.location = str(path)

    @classmethod
    def open(cls, path: Path) -> FaissBackend:
        try:
            index = read_vector_index(str(path))
        except RuntimeError as exc:
            raise IndexCorruptError(f"{path} is not a readable FAISS index: {exc}") from exc
        return cls(index, path)

    @property
    def dimension(self) -> int:
        return int(self._index.d)

    @property
    def count(self) -> int:
        return int(self._index.ntotal)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        rows: np.ndarray | None = None,
        filters: SearchFilters | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Within `rows` (an IDSelector); `filters` are ignored: `rows` are the rows they keep."""
        if rows is not None:
            k = min(k, len(rows))
        k = min(k, self.count)
        if k <= 0 or len(queries) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        return self._index.search(queries, k, params=search_params(self._index, rows))

    def close(self) -> None:
        """Nothing to release: the mapping goes with the index object."""


def check_vector_store(vector_store: str, index_type: str | None = None) -> None:
    """Refuse an unknown store, a Milvus index type this project does not build, or Milvus without pymilvus,
    before any work is done."""
    if vector_store not in VECTOR_STORES:
        raise ConfigError(f"vector store {vector_store!r} is not one of {', '.join(VECTOR_STORES)}")
    if vector_store == "milvus":
        if index_type is not None:
            milvus_backend.check_index_type(index_type)
        if importlib.util.find_spec("pymilvus") is None:
            raise ConfigError("the Milvus vector store needs pymilvus: install fashion-search[scale]")


def choose_index_type(vector_store: str, count: int, dimension: int) -> str:
    """The manifest's `index_type` for a catalogue of `count` vectors: a FAISS factory string, or a Milvus
    index type."""
    if vector_store == "milvus":
        return milvus_backend.choose_index_type(count)
    return choose_factory(count, dimension)


def milvus_address(build_dir: Path, milvus_uri: str | None) -> str:
    """The configured Milvus URI, or else Milvus Lite's data inside the build."""
    return milvus_uri or str(build_dir / MILVUS_LITE_NAME)


def open_vectors(build_dir: Path, manifest: Manifest, milvus_uri: str | None = None) -> VectorBackend:
    """Open the vectors of the build in `build_dir` (resolved) from the store its manifest names."""
    if manifest.vector_store == "milvus":
        return MilvusBackend.open(
            milvus_address(build_dir, milvus_uri), manifest.collection, manifest.index_type
        )
    return FaissBackend.open(build_dir / VECTORS_NAME)


def verify_vectors(backend: VectorBackend, build_dir: Path) -> None:
    """Compare a sample of a Milvus collection with the build's raw vectors (FAISS's file is checksummed)."""
    raw = build_dir / RAW_VECTORS_NAME
    if isinstance(backend, MilvusBackend) and raw.is_file():
        backend.check_sample(np.load(raw, mmap_mode="r", allow_pickle=False))


def write_vectors(
    build_dir: Path,
    vectors: np.ndarray,
    manifest: Manifest,
    milvus_uri: str | None = None,
    *,
    records: Sequence[ItemRecord],
    image_rows: Sequence[ImageRow] = (),
) -> Manifest:
    """Write the searchable vectors of the build in `build_dir` (staging) to the manifest's store, with its
    `index_type`; returns the manifest, for Milvus with the new collection's name (one per build). The items
    (`records`, rows 0..n-1) and their further images (`image_rows`, rows n..) give Milvus every row's
    filterable fields."""
    check_vector_store(manifest.vector_store)
    if manifest.vector_store == "faiss":
        faiss.write_index(build_vector_index(manifest.index_type, vectors), str(build_dir / VECTORS_NAME))
        return manifest
    collection = collection_name(build_id(build_dir))
    milvus_backend.write_collection(
        milvus_address(build_dir, milvus_uri),
        collection,
        vectors,
        manifest.index_type,
        ScalarFields.of(records, image_rows),
    )
    return dataclasses.replace(manifest, collection=collection)


def discard_vectors(build_dir: Path, vector_store: str, milvus_uri: str | None = None) -> None:
    """Drop the Milvus collection of a failed or pruned build, best effort (a failure is logged). Nothing to
    do for FAISS, nor for Milvus Lite inside the build: those go with the directory."""
    if vector_store != "milvus" or milvus_uri is None:
        return
    collection = collection_name(build_id(build_dir))
    try:
        milvus_backend.drop_collection(milvus_uri, collection)
    except (VectorStoreError, ConfigError) as exc:
        log.warning("could not drop Milvus collection %r of %s: %s", collection, build_dir.name, exc)


def discard_pruned(build_dir: Path, milvus_uri: str | None) -> None:
    """`publish`'s on_prune: drop a pruned build's Milvus collection on the server (best effort)."""
    try:
        vector_store = Manifest.read(build_dir).vector_store
    except FashionSearchError:
        return
    discard_vectors(build_dir, vector_store, milvus_uri)


def build_id(build_dir: Path) -> str:
    return build_dir.name.removesuffix(PARTIAL_SUFFIX)
