"""`index verify`: how close the published index's answers are to exact search, measured on a sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indexer.manifest import RAW_VECTORS_NAME, IndexCorruptError, Manifest
from indexer.vector_backend import open_vectors
from indexer.vector_index import measure_recall


def verify_index(
    directory: Path, sample: int = 200, k: int = 10, seed: int = 0, milvus_uri: str | None = None
) -> dict[str, object]:
    """Recall@k of the index against exact inner-product search over the build's raw vectors, with `sample`
    catalogue vectors (seeded) as queries; checksums are verified first."""
    build = directory.resolve()
    manifest = Manifest.read(build)
    manifest.verify(build)
    raw = build / RAW_VECTORS_NAME
    if not raw.is_file():
        raise IndexCorruptError(f"{build} has no {RAW_VECTORS_NAME} to verify against; rebuild it once")
    vectors = np.load(raw, mmap_mode="r")
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(vectors), min(sample, len(vectors)), replace=False))
    queries = np.ascontiguousarray(vectors[picked], dtype=np.float32)
    backend = open_vectors(build, manifest, milvus_uri)
    try:
        report = measure_recall(backend, np.asarray(vectors), queries, k)
    finally:
        backend.close()
    return {
        "build": build.name,
        "index_type": manifest.index_type,
        "vector_store": manifest.vector_store,
        "count": manifest.count,
        "queries": report.queries,
        "k": k,
        f"recall_at_{k}": round(report.recall, 4),
        "index_ms_per_query": round(report.index_ms_per_query, 3),
        "exact_ms_per_query": round(report.exact_ms_per_query, 3),
        "checksums": "ok" if manifest.checksums else "not recorded (older build)",
    }
