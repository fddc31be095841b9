"""Index build throughput on a generated catalogue, single process, through the ops command itself
(`fashion-search index build`): decode, embed, predict attributes, write and publish.

    python -m benchmarks.build_throughput [--items 2000] [--runtimes torch,onnx] [--passes 2]
        [--out benchmarks/results/build_throughput.json]

Each runtime (FASHION_EMBEDDER__RUNTIME) builds the same catalogue in a fresh process, `--passes` times,
alternating. Reported: the build's own items/s (model loading excluded, as in the manifest) and the
command's wall time (Python start and model loading included). Budget: >= 100 images/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.machine import machine_info
from scripts.demo_catalog import generate_catalog

BUDGET_ITEMS_PER_S = 100


def build_once(feed: Path, out: Path, runtime: str) -> dict[str, float]:
    env = {**os.environ, "FASHION_EMBEDDER__RUNTIME": runtime}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "scripts.cli", "index", "build", "--catalog", str(feed), "--out", str(out),
         "--no-progress"], env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"index build ({runtime}) failed: {done.stderr.strip()[-1500:]}")
    manifest = json.loads((out.resolve() / "manifest.json").read_text(encoding="utf-8"))
    return {
        "items": manifest["count"],
        "build_s": round(manifest["build_seconds"], 2),
        "items_per_s": round(manifest["count"] / manifest["build_seconds"], 1),
        "command_wall_s": round(wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--runtimes", default="torch,onnx")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/build_throughput.json"))
    args = parser.parse_args()
    runtimes = args.runtimes.split(",")
    runs: dict[str, list[dict[str, float]]] = {runtime: [] for runtime in runtimes}
    with tempfile.TemporaryDirectory(prefix="fashion-build-") as tmp:
        root = Path(tmp)
        catalog = generate_catalog(root / "catalog", n_items=args.items, n_scenes=1)
        for pass_ in range(args.passes):
            for runtime in runtimes:
                print(f"[build_throughput] pass {pass_ + 1}/{args.passes}: {runtime} ...", flush=True)
                runs[runtime].append(build_once(catalog.feed, root / f"index-{runtime}-{pass_}", runtime))
    results: dict[str, Any] = {}
    for runtime, found in runs.items():
        rates = [run["items_per_s"] for run in found]
        results[runtime] = {
            "items_per_s_median": round(statistics.median(rates), 1),
            "items_per_s_range": [min(rates), max(rates)],
            "command_wall_s_median": round(statistics.median(run["command_wall_s"] for run in found), 2),
            "runs": found,
        }
    best = max(result["items_per_s_median"] for result in results.values())
    report = {
        "benchmark": "build_throughput",
        "machine": machine_info(),
        "catalogue": f"{args.items} generated product images (studio shots, 224 px), feed attributes partial",
        "results": results,
        "budget": {"items_per_s": BUDGET_ITEMS_PER_S, "met": best >= BUDGET_ITEMS_PER_S},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for runtime, result in results.items():
        print(f"[build_throughput] {runtime}: {result['items_per_s_median']} items/s", flush=True)


if __name__ == "__main__":
    main()
