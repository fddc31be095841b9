"""Vectors in Milvus: one collection per build, named from the build id, holding `row` (int64 primary key,
the vector-store row), `vector` (float32, inner product on L2-normalised vectors = cosine) and the
filterable fields of the row's item (category, brand, price, in_stock, gender and one field per
attribute group, each with an INVERTED index: see indexer/milvus_fields.py). Addresses and connections (a
server URI, or Milvus Lite embedded) are in indexer/milvus_connection.py. Milvus answers at most `MAX_K`
neighbours per query.

A filtered search sends its `SearchFilters` as a Milvus filter expression over those fields. Two cases
still send rows (`row in [...]` or, when most rows qualify, the shorter `row not in [...]`; against a
server the list travels as a filter template parameter): a caller that restricts the search to rows of
its own choosing (no filters), and, as a fallback, a collection built before the fields existed, which
opens with a warning to rebuild the index.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from indexer.filters import SearchFilters
from indexer.manifest import RAW_VECTORS_NAME, IndexCorruptError
from indexer.milvus_connection import (
    TIMEOUT_S,
    VectorStoreError,
    connect,
    disconnect,
    fsync_tree,
    is_lite,
    public_uri,
    translated,
)
from indexer.milvus_fields import ScalarFields, attribute_groups, filter_expression
from indexer.vector_index import FLAT_MAX
from models.errors import ConfigError

log = logging.getLogger(__name__)

ROW_FIELD = "row"
VECTOR_FIELD = "vector"
INDEX_TYPES = ("FLAT", "HNSW", "AUTOINDEX")  # index types this project builds and searches in Milvus
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 64  # as the FAISS HNSW32 index
MAX_K = 16_384  # Milvus refuses a larger limit (topk)
INSERT_BATCH_BYTES = 16 << 20  # vectors per insert request, well below gRPC's 64 MB message limit
SAMPLE_ROWS = 8  # rows compared with vectors.npy when a collection is opened
LOG_EVERY_S = 10.0


def collection_name(build_id: str) -> str:
    """`fashion_<build id>`, with the characters Milvus refuses in names turned into underscores."""
    return "fashion_" + re.sub(r"[^0-9A-Za-z_]", "_", build_id)


def choose_index_type(count: int) -> str:
    """Exact search below the FAISS Flat threshold, an HNSW graph above it."""
    return "FLAT" if count < FLAT_MAX else "HNSW"


def check_index_type(index_type: str) -> None:
    if index_type not in INDEX_TYPES:
        raise ConfigError(
            f"Milvus index type {index_type!r} is not one this project builds; "
            f"use one of {', '.join(INDEX_TYPES)}"
        )


def row_filter(rows: np.ndarray, count: int, templated: bool) -> tuple[str, dict[str, list[int]]]:
    """A Milvus filter for `rows` (unique, within 0..count-1): the shorter of `row in [...]` and
    `row not in [...]`; with `templated` the list is a parameter (Milvus >= 2.5), else a literal."""
    negate = len(rows) > count // 2
    if negate:
        keep = np.ones(count, dtype=bool)
        keep[rows] = False
        listed = np.flatnonzero(keep)
    else:
        listed = rows
    operator = "not in" if negate else "in"
    values = [int(row) for row in listed]
    if templated:
        return f"{ROW_FIELD} {operator} {{rows}}", {"rows": values}
    return f"{ROW_FIELD} {operator} [{','.join(map(str, values))}]", {}


class MilvusBackend:
    """One build's collection, loaded for search; open with `MilvusBackend.open`, thread-safe."""

    kind = "milvus"

    def __init__(
        self,
        client: Any,
        uri: str,
        collection: str,
        shape: tuple[int, int],
        index: str,
        groups: frozenset[str] | None,
    ) -> None:
        self._client = client
        self._uri = uri
        self.collection = collection
        self._count, self._dimension = shape
        self._index_type = index
        self._groups = groups  # attribute groups with a field; None: built before the filterable fields
        self.location = f"Milvus collection {collection!r} at {public_uri(uri)}"
        # A store the service swaps out on reload is never closed explicitly; disconnect when it is collected.
        self._finalizer = weakref.finalize(self, disconnect, client, uri)

    @classmethod
    def open(cls, uri: str, collection: str, index_type: str) -> MilvusBackend:
        if is_lite(uri) and not Path(uri).exists():
            raise IndexCorruptError(
                f"Milvus Lite data {uri} does not exist, so collection {collection!r} cannot be opened; "
                "configure the Milvus server that holds it (FASHION_MILVUS_URI) or rebuild the index"
            )
        client = connect(uri)
        try:
            with translated("open", collection, uri):
                if not client.has_collection(collection, timeout=TIMEOUT_S):
                    raise IndexCorruptError(
                        f"Milvus at {public_uri(uri)} has no collection {collection!r}: it was dropped, or "
                        "this is not the Milvus the index was built into; configure that one or rebuild it"
                    )
                description = client.describe_collection(collection, timeout=TIMEOUT_S)
                dimension = _dimension(description, collection)
                groups = attribute_groups(description)
                client.load_collection(collection)  # no time limit: a large collection takes a while
                count = _count(client, collection)
        except BaseException:
            disconnect(client, uri)
            raise
        if groups is None:
            log.warning(
                "Milvus collection %r at %s was built before the filterable fields: filtered searches send "
                "row lists (slower); rebuild the index (`fashion-search index build`) to filter in Milvus",
                collection,
                public_uri(uri),
            )
        return cls(client, uri, collection, (count, dimension), index_type, groups)

    @property
    def filterable(self) -> bool:
        """Whether the collection holds the filterable fields (False: built before them)."""
        return self._groups is not None

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def count(self) -> int:
        return self._count

    def search(
        self,
        queries: np.ndarray,
        k: int,
        rows: np.ndarray | None = None,
        filters: SearchFilters | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like FAISS: (scores float32 (n, k'), rows int64 (n, k')), -1 rows where fewer qualify. `filters`,
        with `rows` the rows they keep (which bound k'), become a filter expression over the collection's
        fields; `rows` alone (or a collection without the fields) become a row list."""
        n = len(queries)
        expression, parameters = "", dict[str, list[int]]()
        if filters is not None and not filters.empty and self._groups is not None:
            if rows is not None:
                k = min(k, len(rows))
            expression = filter_expression(filters, self._groups)
        elif rows is not None:
            allowed = np.unique(np.asarray(rows, dtype=np.int64))
            allowed = allowed[(allowed >= 0) & (allowed < self._count)]
            k = min(k, len(allowed))
            if 0 < len(allowed) < self._count:
                expression, parameters = row_filter(allowed, self._count, templated=not is_lite(self._uri))
        elif filters is not None and not filters.empty:
            raise ValueError(f"{self.location} has no filterable fields: pass the rows the filters keep")
        k = min(k, self._count, MAX_K)
        scores = np.full((n, max(k, 0)), -np.inf, dtype=np.float32)
        found = np.full((n, max(k, 0)), -1, dtype=np.int64)
        if k <= 0 or n == 0:
            return scores, found
        params: dict[str, Any] = {"metric_type": "IP"}
        if self._index_type == "HNSW":
            params["params"] = {"ef": max(HNSW_EF_SEARCH, k)}
        extra = {"filter_params": parameters} if parameters else {}
        with translated("search", self.collection, self._uri):
            result = self._client.search(
                self.collection,
                data=np.ascontiguousarray(queries, dtype=np.float32),
                limit=k,
                filter=expression,
                anns_field=VECTOR_FIELD,
                output_fields=[ROW_FIELD],
                search_params=params,
                timeout=TIMEOUT_S,
                **extra,
            )
        for i, hits in enumerate(result):
            # {"distance": d, "entity": {"row": r}, ...} in pymilvus 2.5 and 3 alike
            hits = hits[:k]
            found[i, : len(hits)] = [int(hit["entity"][ROW_FIELD]) for hit in hits]
            scores[i, : len(hits)] = [float(hit["distance"]) for hit in hits]
        return scores, found

    def vectors(self, rows: np.ndarray) -> dict[int, np.ndarray]:
        """The stored vectors of `rows` (those the collection has)."""
        with translated("read", self.collection, self._uri):
            got = self._client.get(
                self.collection,
                ids=[int(row) for row in rows],
                output_fields=[VECTOR_FIELD],
                timeout=TIMEOUT_S,
            )
        return {int(entity[ROW_FIELD]): np.asarray(entity[VECTOR_FIELD], dtype=np.float32) for entity in got}

    def check_sample(self, raw: np.ndarray) -> None:
        """Compare a few rows with the build's raw vectors: a collection of the right name and size that
        holds other vectors (another deployment's Milvus, a hand edit) would serve wrong neighbours."""
        rows = np.unique(np.linspace(0, self._count - 1, min(SAMPLE_ROWS, self._count)).astype(np.int64))
        stored = self.vectors(rows)
        for row in rows.tolist():
            vector = stored.get(row)
            if vector is None or not np.allclose(vector, raw[row], atol=1e-5):
                raise IndexCorruptError(
                    f"{self.location} holds other vectors than the build's {RAW_VECTORS_NAME} (row {row} "
                    f"{'is missing' if vector is None else 'differs'}): it is not this build's collection; "
                    "configure the Milvus the index was built into or rebuild the index"
                )

    def close(self) -> None:
        self._finalizer()


def write_collection(
    uri: str, collection: str, vectors: np.ndarray, index_type: str, fields: ScalarFields | None = None
) -> None:
    """Create `collection` and fill it with `vectors` in row order, and with `fields` (each row's filterable
    values; without them the collection can filter by rows only): insert in batches, flush, index, load,
    check the count. On failure the collection is dropped again."""
    check_index_type(index_type)
    if fields is not None and len(fields) != len(vectors):
        raise ValueError(f"{len(vectors)} vectors but filterable fields for {len(fields)} rows")
    client = connect(uri)
    try:
        with translated("write", collection, uri):
            if client.has_collection(collection, timeout=TIMEOUT_S):
                raise VectorStoreError(
                    f"Milvus at {public_uri(uri)} already has a collection {collection!r}; "
                    "refusing to overwrite it"
                )
            schema = _schema(client, vectors.shape[1], fields)
            client.create_collection(collection, schema=schema, timeout=TIMEOUT_S)
            try:
                _fill(client, uri, collection, vectors, fields, index_type)
            except BaseException:
                with contextlib.suppress(Exception):
                    client.drop_collection(collection, timeout=TIMEOUT_S)
                raise
    finally:
        disconnect(client, uri)
    if is_lite(uri):
        fsync_tree(Path(uri))
    log.info("wrote %d vectors to Milvus collection %r at %s", len(vectors), collection, public_uri(uri))


def drop_collection(uri: str, collection: str) -> bool:
    """Drop `collection` if it exists; True when it did."""
    if is_lite(uri) and not Path(uri).exists():
        return False
    client = connect(uri)
    try:
        with translated("drop", collection, uri):
            if not client.has_collection(collection, timeout=TIMEOUT_S):
                return False
            client.drop_collection(collection, timeout=TIMEOUT_S)
    finally:
        disconnect(client, uri)
    log.info("dropped Milvus collection %r at %s", collection, public_uri(uri))
    return True


def _schema(client: Any, dimension: int, fields: ScalarFields | None) -> Any:
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(ROW_FIELD, DataType.INT64, is_primary=True)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dimension)
    if fields is not None:
        fields.add_to(schema)
    return schema


def _fill(
    client: Any, uri: str, collection: str, vectors: np.ndarray, fields: ScalarFields | None, index_type: str
) -> None:
    batch = max(1, INSERT_BATCH_BYTES // (4 * vectors.shape[1]))
    started = last_log = time.monotonic()
    for start in range(0, len(vectors), batch):
        chunk = np.ascontiguousarray(vectors[start : start + batch], dtype=np.float32)
        entities = [{ROW_FIELD: start + i, VECTOR_FIELD: vector} for i, vector in enumerate(chunk)]
        if fields is not None:
            for entity in entities:
                entity.update(fields.values(entity[ROW_FIELD]))
        client.insert(collection, entities, timeout=TIMEOUT_S)
        now = time.monotonic()
        if now - last_log >= LOG_EVERY_S:
            done = start + len(chunk)
            log.info("inserted %d/%d vectors, %.0f/s", done, len(vectors), done / (now - started))
            last_log = now
    client.flush(collection)
    index = client.prepare_index_params()
    params = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION} if index_type == "HNSW" else {}
    index.add_index(VECTOR_FIELD, index_type=index_type, metric_type="IP", params=params)
    if fields is not None:
        fields.add_indexes(index)
    # Milvus Lite builds the index at once and lacks the call pymilvus waits with (AllocTimestamp).
    client.create_index(collection, index, sync=not is_lite(uri))
    client.load_collection(collection)
    written = _count(client, collection)
    if written != len(vectors):
        raise VectorStoreError(
            f"Milvus collection {collection!r} at {public_uri(uri)} holds {written} vectors "
            f"after writing {len(vectors)}"
        )


def _dimension(description: dict[str, Any], collection: str) -> int:
    for field in description.get("fields", []):
        if field.get("name") == VECTOR_FIELD:
            return int(field.get("params", {}).get("dim", 0))
    raise IndexCorruptError(f"Milvus collection {collection!r} has no {VECTOR_FIELD!r} field")


def _count(client: Any, collection: str) -> int:
    result = client.query(
        collection, filter="", output_fields=["count(*)"], consistency_level="Strong", timeout=TIMEOUT_S
    )
    return int(result[0]["count(*)"])
