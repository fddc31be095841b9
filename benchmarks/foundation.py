"""Build throughput and search latency of the whole slice, on a generated catalogue.

    python -m benchmarks.foundation [--items 1000] [--queries 60] [--out benchmarks/results/foundation.json]

Builds an index with the configured models (FASHION_* settings; default the shipped parser and embedder),
then times searches in-process (per stage) and over HTTP against a real uvicorn server on loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.machine import machine_info
from indexer.build import BuildOptions, build_index
from indexer.store import IndexStore
from models.images import decode_image
from scripts.demo_catalog import generate_catalog
from search.runtime import build_embedder, build_extractor, build_searcher
from search.searcher import SearchRequest
from search.settings import Settings


def summarise(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 2),
        "n": len(ordered),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/foundation.json"))
    args = parser.parse_args()
    settings = Settings()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        catalog = generate_catalog(root / "catalog", n_items=args.items, n_scenes=4)
        embedder = build_embedder(settings)
        extractor = build_extractor(settings, embedder)
        report = build_index(catalog.feed, root / "index", embedder, BuildOptions(progress=False), extractor)
        queries = [*catalog.scenes, *sorted((root / "catalog" / "images").glob("*.jpg"))[:16]]
        payloads = [query.read_bytes() for query in queries]

        store = IndexStore.open(root / "index")
        searcher = build_searcher(settings, store, embedder)
        stages: dict[str, list[float]] = {}
        for i in range(args.queries):
            started = time.perf_counter()
            image = decode_image(payloads[i % len(payloads)], settings.max_image_pixels)
            result = searcher.search(image, SearchRequest(top_k=10))
            for stage, value in result.timings_ms.items():
                stages.setdefault(stage, []).append(value)
            stages.setdefault("total", []).append((time.perf_counter() - started) * 1000)
        store.close()
        http = time_http(root / "index", queries, payloads, args.queries)

    results = {
        "benchmark": "foundation",
        "machine": machine_info(),
        "embedder": embedder.name,
        "build": {
            "items": report.manifest.count,
            "seconds": report.manifest.build_seconds,
            "items_per_s": round(report.items_per_s, 1),
        },
        "search_in_process": {stage: summarise(values) for stage, values in stages.items()},
        "search_http": http,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))


def time_http(index: Path, queries: list[Path], payloads: list[bytes], n: int) -> dict[str, float]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "scripts.cli", "serve", "--index", str(index), "--port", str(port)],
        env={**os.environ, "FASHION_RATE_LIMIT_PER_S": "0"},  # one client measuring latency, not a flood
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        samples = []
        with httpx.Client(base_url=base, timeout=30) as client:
            for i in range(n):
                files = {"image": (queries[i % len(queries)].name, payloads[i % len(payloads)], "image/jpeg")}
                started = time.perf_counter()
                response = client.post("/v1/search", files=files, data={"top_k": "10"})
                samples.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
        return summarise(samples)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
