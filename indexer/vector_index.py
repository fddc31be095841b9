"""Which FAISS index a catalogue gets, how it is built from vectors, and how close it stays to exact search.

By size (inner product on L2-normalised vectors = cosine):
- below `FLAT_MAX` items: `Flat`, exact, about 1 KB per item at 256-d;
- up to `HNSW_MAX`: `HNSW32,Flat`, a graph over the full vectors (fast, recall ~0.95+, more memory);
- above: `IVF{nlist},PQ{m},Refine(SQ8)`, `nlist ~ 4 sqrt(n)`, `m = d / 8` PQ codes (32 bytes per 256-d item)
  to find candidates and 8-bit scalar codes (256 bytes) to re-score them.
An explicit FAISS factory string overrides the choice. Search-time knobs (efSearch, nprobe) are set when
the index is opened; they trade latency for recall (`index verify` measures the recall).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

import faiss
import numpy as np

from models.errors import ConfigError

FLAT_MAX = 50_000
HNSW_MAX = 2_000_000
HNSW_EF_SEARCH = 128  # 1M clustered 256-d: recall@10 0.84 at 64, 0.94 at 128 (0.37 ms p50), 0.97 at 256
IVF_NPROBE = 32
REFINE_K_FACTOR = 4  # a refined index re-scores 4k compressed candidates with its finer codes
TRAIN_PER_LIST = 64  # training vectors per IVF list (FAISS warns below 39)


def choose_factory(count: int, dimension: int) -> str:
    """The FAISS factory string for a catalogue of `count` vectors (see the module docstring)."""
    if count < FLAT_MAX:
        return "Flat"
    if count <= HNSW_MAX:
        return "HNSW32,Flat"
    return ivf_pq_factory(count, dimension)


def ivf_pq_factory(count: int, dimension: int) -> str:
    """`IVF{nlist},PQ{m},Refine(SQ8)`: nlist the power of two nearest 4 sqrt(count), m = d / 8 one-byte PQ
    codes to find candidates, re-scored with 8-bit scalar codes (PQ alone reached recall@10 0.43 on 200k
    clustered 256-d vectors; with the SQ8 refinement 0.96, at 288 instead of 32 bytes per item)."""
    nlist = 1 << round(math.log2(4 * math.sqrt(max(count, 1))))
    codes = max(1, dimension // 8)
    while dimension % codes:
        codes -= 1
    return f"IVF{nlist},PQ{codes},Refine(SQ8)"


LEGACY_TYPES = {"IndexFlatIP": "Flat"}  # index_type values written by earlier builds


def create_index(factory: str, dimension: int) -> faiss.Index:
    """An empty inner-product index; a bad factory string is a ConfigError naming it."""
    factory = LEGACY_TYPES.get(factory, factory)
    try:
        index = faiss.index_factory(dimension, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ConfigError(
            f"FAISS cannot build index type {factory!r} for dimension {dimension}: {exc}"
        ) from exc
    hnsw = _hnsw_of(index)
    if hnsw is not None:
        hnsw.hnsw.efConstruction = 80
    return index


def build_vector_index(
    factory: str, vectors: np.ndarray, seed: int = 0, train_sample: int | None = None
) -> faiss.Index:
    """Train (if the type needs it, on a seeded sample) and fill an index with `vectors` in row order."""
    if vectors.ndim != 2 or vectors.dtype != np.float32:
        raise ValueError(f"vectors must be float32 (n, d); got {vectors.dtype} {vectors.shape}")
    index = create_index(factory, vectors.shape[1])
    if not index.is_trained:
        needed = train_sample or _training_size(index, len(vectors))
        if len(vectors) < _min_training(index):
            raise ConfigError(
                f"index type {factory!r} needs at least {_min_training(index)} vectors to train; "
                f"the catalogue has {len(vectors)}: use Flat or a smaller IVF"
            )
        rng = np.random.default_rng(seed)
        sample = vectors[np.sort(rng.choice(len(vectors), min(needed, len(vectors)), replace=False))]
        index.train(np.ascontiguousarray(sample))
    for start in range(0, len(vectors), 65_536):
        index.add(np.ascontiguousarray(vectors[start : start + 65_536]))
    tune_for_search(index)
    return index


def tune_for_search(index: faiss.Index, ef_search: int = HNSW_EF_SEARCH, nprobe: int = IVF_NPROBE) -> None:
    hnsw = _hnsw_of(index)
    if hnsw is not None:
        hnsw.hnsw.efSearch = ef_search
    ivf = _ivf_of(index)
    if ivf is not None:
        ivf.nprobe = min(nprobe, ivf.nlist)
    refine = _refine_of(index)
    if refine is not None:
        refine.k_factor = REFINE_K_FACTOR


def read_vector_index(path: str) -> faiss.Index:
    """Read an index memory-mapped where FAISS supports it (flat codes, HNSW storage, IVF lists), so several
    processes share the page cache and a large index opens without reading it all; else read it whole."""
    try:
        index = faiss.read_index(path, faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError:
        index = faiss.read_index(path)
    tune_for_search(index)
    return index


def search_params(index: faiss.Index, rows: np.ndarray | None) -> faiss.SearchParameters | None:
    """Per-query parameters of the right FAISS type: a row filter (IDSelector) and the index's own
    search knobs, which a generic SearchParameters would reset (IVF refuses one outright)."""
    if rows is None:
        return None
    selector = faiss.IDSelectorBatch(np.ascontiguousarray(rows, dtype=np.int64))
    hnsw = _hnsw_of(index)
    if hnsw is not None:
        return faiss.SearchParametersHNSW(sel=selector, efSearch=hnsw.hnsw.efSearch)  # type: ignore[attr-defined]
    ivf = _ivf_of(index)
    if ivf is not None:
        base = faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe)  # type: ignore[call-arg]
        refine = _refine_of(index)
        if refine is None:
            return base
        return faiss.IndexRefineSearchParameters(  # type: ignore[call-arg]
            k_factor=refine.k_factor, base_index_params=base
        )
    return faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]


@dataclass(frozen=True)
class RecallReport:
    queries: int
    k: int
    recall: float  # share of the exact top-k found by the index, averaged over queries
    exact_ms_per_query: float
    index_ms_per_query: float


class Searchable(Protocol):
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


def measure_recall(index: Searchable, vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> RecallReport:
    """Recall@k of `index` (a FAISS index or a vector backend) against exact inner-product search over the
    same `vectors`."""
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(np.ascontiguousarray(vectors))
    started = time.perf_counter()
    _, truth = exact.search(queries, k)
    exact_ms = (time.perf_counter() - started) * 1000 / len(queries)
    started = time.perf_counter()
    _, found = index.search(queries, k)
    index_ms = (time.perf_counter() - started) * 1000 / len(queries)
    hits = sum(len(set(t[t >= 0]) & set(f[f >= 0])) for t, f in zip(truth, found, strict=True))
    return RecallReport(len(queries), k, hits / (len(queries) * k), exact_ms, index_ms)


def _hnsw_of(index: faiss.Index) -> faiss.IndexHNSW | None:
    concrete = faiss.downcast_index(index)
    return concrete if isinstance(concrete, faiss.IndexHNSW) else None


def _refine_of(index: faiss.Index) -> faiss.IndexRefine | None:
    concrete = faiss.downcast_index(index)
    return concrete if isinstance(concrete, faiss.IndexRefine) else None


def _ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _min_training(index: faiss.Index) -> int:
    ivf = _ivf_of(index)
    return 39 * ivf.nlist if ivf is not None else 256


def _training_size(index: faiss.Index, count: int) -> int:
    ivf = _ivf_of(index)
    return max(TRAIN_PER_LIST * ivf.nlist, 65_536) if ivf is not None else min(count, 65_536)
