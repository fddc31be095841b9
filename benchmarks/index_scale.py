"""Vector index types at scale: for each FAISS type, build over N synthetic vectors of the embedder's
dimension and measure build time, memory per item, single-query latency (p50/p99, one thread, as the
service searches) and recall@10 against exact search.

The vectors are clustered (a mixture of Gaussians, L2-normalised) rather than uniform noise: real
embeddings cluster, and on uniform noise every approximate index looks worse than it is. Queries are
perturbed catalogue vectors (a crop of a product is near, not on, its catalogue vector).

    python -m benchmarks.index_scale --count 1000000 --out benchmarks/results/index_scale.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from benchmarks.machine import machine_info
from indexer.vector_index import (
    build_vector_index,
    choose_factory,
    ivf_pq_factory,
    measure_recall,
    tune_for_search,
)

DEFAULT_TYPES = ("Flat", "HNSW32,Flat", "ivf-pq")


def synthetic_vectors(count: int, dimension: int, seed: int, clusters: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dimension), dtype=np.float32)
    vectors = np.empty((count, dimension), dtype=np.float32)
    for start in range(0, count, 100_000):
        stop = min(count, start + 100_000)
        labels = rng.integers(0, clusters, stop - start)
        vectors[start:stop] = centres[labels] + 0.6 * rng.standard_normal(
            (stop - start, dimension), np.float32
        )
    faiss.normalize_L2(vectors)
    return vectors


def queries_near(vectors: np.ndarray, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    picked = vectors[rng.choice(len(vectors), count, replace=False)]
    queries = (picked + 0.05 * rng.standard_normal(picked.shape, np.float32)).astype(np.float32)
    faiss.normalize_L2(queries)
    return queries


def single_query_latency(index: faiss.Index, queries: np.ndarray) -> dict[str, float]:
    faiss.omp_set_num_threads(1)
    samples = []
    for query in queries:
        started = time.perf_counter()
        index.search(query[None, :], 10)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 3),
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 3),
        "min_ms": round(samples[0], 3),
        "max_ms": round(samples[-1], 3),
        "n": len(samples),
    }


def measure(factory: str, vectors: np.ndarray, queries: np.ndarray, threads: int) -> dict[str, object]:
    faiss.omp_set_num_threads(threads)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    index = build_vector_index(factory, vectors)
    build_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vectors.faiss"
        faiss.write_index(index, str(path))
        file_bytes = path.stat().st_size
    faiss.omp_set_num_threads(threads)
    recall = measure_recall(index, vectors, queries, k=10)
    latency = single_query_latency(index, queries)
    sweep = [_at_setting(index, vectors, queries, knob, value) for knob, value in _knobs(index)]
    tune_for_search(index)
    return {
        "factory": factory,
        "build_s": round(build_s, 2),
        "build_items_per_s": round(len(vectors) / build_s, 1),
        "index_bytes_per_item": round(file_bytes / len(vectors), 1),
        "peak_rss_growth_mb": round(
            (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024, 1
        ),
        "recall_at_10": round(recall.recall, 4),
        "single_query_latency": latency,
        "exact_batch_ms_per_query": round(recall.exact_ms_per_query, 3),
        "search_knob_sweep": sweep,
    }


def _knobs(index: faiss.Index) -> list[tuple[str, int]]:
    name = type(faiss.downcast_index(index)).__name__
    if "HNSW" in name:
        return [("efSearch", value) for value in (32, 64, 128, 256)]
    if "IVF" in name or "Refine" in name:  # a refined IVF index is swept through its IVF part
        return [("nprobe", value) for value in (8, 16, 32, 64, 128)]
    return []


def _at_setting(
    index: faiss.Index, vectors: np.ndarray, queries: np.ndarray, knob: str, value: int
) -> dict[str, object]:
    tune_for_search(index, ef_search=value, nprobe=value)
    recall = measure_recall(index, vectors, queries, k=10)
    return {knob: value, "recall_at_10": round(recall.recall, 4), **single_query_latency(index, queries)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--dimension", type=int, default=256, help="the shipped embedder's dimension")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument(
        "--types", default=";".join(DEFAULT_TYPES), help="';'-separated factory strings, or ivf-pq"
    )
    parser.add_argument("--threads", type=int, default=2, help="FAISS threads for building")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/index_scale.json"))
    args = parser.parse_args()

    started = time.perf_counter()
    vectors = synthetic_vectors(args.count, args.dimension, args.seed)
    queries = queries_near(vectors, args.queries, args.seed)
    report: dict[str, object] = {
        "benchmark": "index_scale",
        "machine": machine_info(),
        "count": args.count,
        "dimension": args.dimension,
        "queries": args.queries,
        "data": "2,000-cluster Gaussian mixture, L2-normalised; queries = catalogue vectors + noise 0.05",
        "auto_choice": choose_factory(args.count, args.dimension),
    }
    results: list[dict[str, object]] = []
    report["results"] = results
    for name in args.types.split(";"):
        factory = ivf_pq_factory(args.count, args.dimension) if name == "ivf-pq" else name
        print(f"[index_scale] {factory} over {args.count} x {args.dimension} ...", flush=True)
        result = measure(factory, vectors, queries, args.threads)
        print(f"[index_scale] {json.dumps(result)}", flush=True)
        results.append(result)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")  # partial results survive a kill
    report["total_s"] = round(time.perf_counter() - started, 1)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
