"""End to end over HTTP at concurrency 1, 2, 4 and 8, against a real `fashion-search serve` on 127.0.0.1,
for our pipeline (garment parser: every garment; default settings, ONNX Runtime), the same pipeline on the
PyTorch runtime, and, in the same run, the naive alternative (whole image, one embedding, exact search, no
detection). Reports client latency p50/p95, throughput, the server's
median time per stage (decode, detect, embed, attributes, search, rank) and the ratios asked for in the
budget: our p50 over the naive p50, and throughput at concurrency 2 over concurrency 1.

    python -m benchmarks.http_concurrency [--items 500] [--requests 40]
        [--out benchmarks/results/http_concurrency.json]

Each level sends `--requests` x concurrency requests (bounded by `--max-seconds` per level). The
per-address rate limit is off (every client shares one address) and the search slots equal the highest
concurrency, so the figures measure the pipeline, not admission control.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from benchmarks.arguments import argument_parser
from benchmarks.load_test import percentiles, start_server
from benchmarks.machine import machine_info
from scripts.demo_catalog import generate_catalog

LEVELS = (1, 2, 4, 8)
PIPELINES = {  # name -> settings over the defaults
    "garment-parser": {},
    "garment-parser-torch": {"FASHION_DETECTOR_RUNTIME": "torch", "FASHION_EMBEDDER__RUNTIME": "torch"},
    "naive-full-frame": {"FASHION_DETECTOR": "full-frame"},
}
STAGES = ("decode", "detect", "embed", "attributes", "search", "rank", "total")


def run_level(
    base: str, photos: list[bytes], concurrency: int, requests: int, max_s: float
) -> dict[str, Any]:
    latencies: list[float] = []
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    garments: list[int] = []
    codes: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + max_s
    counter = iter(range(requests * concurrency))

    def client() -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            for n in counter:
                if time.monotonic() > deadline:
                    return
                files = {"image": ("scene.jpg", photos[n % len(photos)], "image/jpeg")}
                started = time.perf_counter()
                response = http.post("/v1/search", files=files, data={"top_k": "10"})
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    codes[str(response.status_code)] += 1
                    if response.status_code == 200:
                        body = response.json()
                        latencies.append(elapsed)
                        garments.append(len(body["garments"]))
                        for stage in STAGES:
                            stages[stage].append(float(body["timings_ms"].get(stage, 0.0)))

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()
    wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "answers": dict(codes),
        "latency_ms": percentiles(latencies),
        "throughput_per_s": round(len(latencies) / wall, 2),
        "server_stage_median_ms": {s: round(statistics.median(v), 1) for s, v in stages.items() if v},
        "garments_per_photo_median": statistics.median(garments) if garments else 0,
    }


def run_pipeline(name: str, index: Path, env: dict[str, str], photos: list[bytes], args: argparse.Namespace,
                 log_dir: Path) -> dict[str, Any]:  # fmt: skip
    server, base = start_server(index, env, log_dir / f"{name}.log")
    try:
        for photo in photos[:3]:  # warm-up: first calls allocate
            httpx.post(f"{base}/v1/search", files={"image": ("w.jpg", photo, "image/jpeg")}, timeout=60)
        levels = []
        for concurrency in LEVELS:
            print(f"[http_concurrency] {name}: concurrency {concurrency} ...", flush=True)
            levels.append(run_level(base, photos, concurrency, args.requests, args.max_seconds))
        return {"pipeline": name, "levels": levels}
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argument_parser(__doc__, "benchmarks/results/http_concurrency.json", threads=None)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--requests", type=int, default=40, help="requests per client at each level")
    parser.add_argument("--max-seconds", type=float, default=90, help="time limit per level")
    parser.add_argument("--pipelines", default=",".join(PIPELINES), help=f"some of {', '.join(PIPELINES)}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fashion-bench-") as tmp:
        root = Path(tmp)
        catalog = generate_catalog(root / "catalog", n_items=args.items, n_scenes=args.scenes)
        photos = [scene.read_bytes() for scene in catalog.scenes]
        base_env = {**os.environ, "FASHION_RATE_LIMIT_PER_S": "0",
                    "FASHION_MAX_CONCURRENT_SEARCHES": str(max(LEVELS)), "FASHION_QUEUE_TIMEOUT_S": "60",
                    "FASHION_REQUEST_TIMEOUT_S": "120"}  # fmt: skip
        built = subprocess.run(
            [sys.executable, "-m", "scripts.cli", "index", "build", "--catalog", str(catalog.feed), "--out",
             str(root / "index"), "--no-progress"], env=base_env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if built.returncode != 0:
            raise SystemExit(f"index build failed: {built.stderr[-2000:]}")
        results = [
            run_pipeline(name, root / "index", {**base_env, **PIPELINES[name]}, photos, args, root)
            for name in args.pipelines.split(",")
        ]
    by_name = {r["pipeline"]: r for r in results}
    p50 = {name: r["levels"][0]["latency_ms"]["p50"] for name, r in by_name.items()}
    levels = by_name["garment-parser"]["levels"]
    report = {
        "benchmark": "http_concurrency",
        "machine": machine_info(),
        "catalogue_items": args.items,
        "photos": f"{args.scenes} generated street scenes, 3-4 garments each",
        "results": results,
        "ratios": {
            "ours_p50_over_naive_p50_at_c1": round(p50["garment-parser"] / p50["naive-full-frame"], 2)
            if "naive-full-frame" in p50
            else None,
            "torch_runtime_p50_over_ours_p50_at_c1": round(
                p50["garment-parser-torch"] / p50["garment-parser"], 2
            )
            if "garment-parser-torch" in p50
            else None,
            "throughput_c2_over_c1": round(
                levels[1]["throughput_per_s"] / levels[0]["throughput_per_s"],
                2,
            ),
        },
        "budget": {"p50_c1_ms": 150, "p95_c1_ms": 250, "throughput_c2_over_c1": 1.6},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report["ratios"]), flush=True)


if __name__ == "__main__":
    main()
