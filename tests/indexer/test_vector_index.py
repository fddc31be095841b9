"""Index types by size: the rule, each type built for real, and recall measured against exact search."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from indexer.vector_index import (
    FLAT_MAX,
    HNSW_MAX,
    build_vector_index,
    choose_factory,
    create_index,
    ivf_pq_factory,
    measure_recall,
)
from models.errors import ConfigError


def clustered(count: int, dimension: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dimension), dtype=np.float32)
    vectors = centres[rng.integers(0, 50, count)] + 0.5 * rng.standard_normal((count, dimension), np.float32)
    faiss.normalize_L2(vectors)
    return vectors


def test_size_rule_picks_exact_then_graph_then_compressed() -> None:
    assert choose_factory(10, 256) == "Flat" and choose_factory(FLAT_MAX - 1, 256) == "Flat"
    assert choose_factory(FLAT_MAX, 256) == "HNSW32,Flat" == choose_factory(HNSW_MAX, 256)
    assert choose_factory(HNSW_MAX + 1, 256) == ivf_pq_factory(HNSW_MAX + 1, 256)
    assert ivf_pq_factory(100_000_000, 256) == "IVF32768,PQ32,Refine(SQ8)"  # 4 sqrt(1e8) = 40,000 -> 2^15
    assert ivf_pq_factory(1_000_000, 48) == "IVF4096,PQ6,Refine(SQ8)"


@pytest.mark.parametrize(
    ("factory", "min_recall"),
    [("Flat", 1.0), ("HNSW32,Flat", 0.9), ("IVF16,Flat", 0.9), ("IVF16,PQ16x4,Refine(SQ8)", 0.9)],
)
def test_each_type_finds_what_exact_search_finds(factory: str, min_recall: float) -> None:
    vectors = clustered(3000, 32)
    index = build_vector_index(factory, vectors)
    assert index.ntotal == 3000 and index.d == 32
    queries = vectors[:50] + 0.01
    faiss.normalize_L2(queries)
    report = measure_recall(index, vectors, queries, k=10)
    assert report.recall >= min_recall and report.queries == 50


def test_compressed_index_trades_recall_and_recall_is_measured_not_assumed() -> None:
    vectors = clustered(4000, 32)
    index = build_vector_index("IVF16,PQ4x4", vectors)
    report = measure_recall(index, vectors, vectors[:100], k=10)
    assert 0.05 < report.recall < 1.0  # 2 bytes per vector cannot be exact


def test_bad_factory_and_too_few_training_vectors_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="'Nonsense'"):
        create_index("Nonsense", 32)
    with pytest.raises(ConfigError, match="needs at least 39936 vectors"):
        build_vector_index("IVF1024,Flat", clustered(500, 32))
    with pytest.raises(ValueError, match="float32"):
        build_vector_index("Flat", np.zeros((3, 4), dtype=np.float64))


def test_a_row_filter_works_for_every_type() -> None:
    from indexer.vector_index import search_params

    vectors = clustered(3000, 32)
    allowed = np.arange(0, 3000, 3, dtype=np.int64)
    for factory in ("Flat", "HNSW32,Flat", "IVF16,Flat", "IVF16,PQ4x4,Refine(SQ8)"):
        index = build_vector_index(factory, vectors)
        _, rows = index.search(vectors[:5], 10, params=search_params(index, allowed))
        assert set(rows.ravel()) <= set(allowed.tolist()), factory
        assert (rows >= 0).all(), factory
