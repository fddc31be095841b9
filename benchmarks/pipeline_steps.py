"""The effect of each optimisation step on one search, in-process, measured side by side in one run.

    python -m benchmarks.pipeline_steps [--items 300] [--scenes 8] [--rounds 5]
        [--out benchmarks/results/pipeline_steps.json]

Steps are cumulative. Each step runs in a process of its own (PyTorch's OpenMP threads and ONNX Runtime's
pool in one process slow each other down, which would blame one step for another's threads), over the
same generated index and photos; `--passes` repeats the whole sequence and the step's figure is the
median over passes, so drifting machine load falls on every step alike:
  0 baseline      PyTorch, batch norms unfused, garment masks upsampled over the whole photo
                  (the code before this work, rebuilt here from its parts)
  1 mask_in_box   garment masks upsampled inside their box only
  2 fused_bn      batch norms folded into the convolutions (PyTorch path)
  3 onnx_parser   the garment parser on ONNX Runtime
  4 onnx_both     the fashion embedder on ONNX Runtime too
  5 torch_1_thread  PyTorch (now only light array work) at 1 thread beside ONNX Runtime: the service's
                  default (FASHION_TORCH_THREADS=0, automatic)
  x no_flip       step 5 without the parser's mirror average (a quality trade: see parser_eval)
Reported per step: median wall ms per stage and in total, and median CPU ms per search (process time:
the work done, less sensitive to other load on the machine than wall time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.arguments import argument_parser
from benchmarks.machine import machine_info
from indexer.build import BuildOptions, build_index
from indexer.store import IndexStore
from models.detector import FallbackDetector, FullFrameDetector, Garment
from models.fashion_net import FashionNetEmbedder
from models.images import decode_image
from models.parser.detector import ParserDetector
from models.parser.instances import Instance
from models.spec import SHIPPED_EMBEDDER, SHIPPED_PARSER
from scripts.demo_catalog import generate_catalog
from search.runtime import build_extractor
from search.searcher import OutfitSearcher, SearchRequest
from search.settings import Settings

STAGES = ("decode", "detect", "embed", "attributes", "search", "rank", "total")


class WholePhotoMasks(ParserDetector):
    """The parser as before this work: each garment mask upsampled over the whole photo."""

    def _to_garment(self, instance: Instance, size: tuple[int, int]) -> Garment:
        garment = super()._to_garment(instance, size)
        width, height = size
        map_height, map_width = instance.mask.shape
        rows = np.minimum((np.arange(height) + 0.5) * map_height / height, map_height - 1).astype(np.intp)
        cols = np.minimum((np.arange(width) + 0.5) * map_width / width, map_width - 1).astype(np.intp)
        mask = instance.mask[rows[:, None], cols[None, :]]
        return Garment(box=garment.box, category=garment.category, score=garment.score, mask=mask)


def unfused(parser: ParserDetector, embedder: FashionNetEmbedder) -> None:
    """Undo the batch-norm folding (the PyTorch path before this work): the graphs as trained, on PyTorch."""
    from models.graphs import graph_for

    def on_torch(module: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
        def run(pixels: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))).numpy()

        return run

    parser._logits = on_torch(graph_for(parser.weights_path).module)
    embedder._embed = on_torch(graph_for(SHIPPED_EMBEDDER).module)


def configurations(settings: Settings) -> dict[str, Callable[[], tuple[Any, FashionNetEmbedder]]]:
    min_score = settings.detector_min_score

    def make(
        masks: type[ParserDetector],
        fused: bool,
        parser_rt: str,
        embed_rt: str,
        flip: bool = True,
        threads: int = 0,
    ):
        def build() -> tuple[Any, FashionNetEmbedder]:
            if threads:  # one step per process, so this sets the step's own process
                torch.set_num_threads(threads)
            parser = masks(SHIPPED_PARSER, min_score=min_score, flip=flip, runtime=parser_rt)
            embedder = FashionNetEmbedder(SHIPPED_EMBEDDER, runtime=embed_rt)
            if not fused:
                unfused(parser, embedder)
            return FallbackDetector(parser, FullFrameDetector()), embedder

        return build

    return {
        "0_baseline": make(WholePhotoMasks, False, "torch", "torch"),
        "1_mask_in_box": make(ParserDetector, False, "torch", "torch"),
        "2_fused_bn": make(ParserDetector, True, "torch", "torch"),
        "3_onnx_parser": make(ParserDetector, True, "onnx", "torch"),
        "4_onnx_both": make(ParserDetector, True, "onnx", "onnx"),
        "5_torch_1_thread": make(ParserDetector, True, "onnx", "onnx", threads=1),
        "x_no_flip": make(ParserDetector, True, "onnx", "onnx", flip=False, threads=1),
    }


def main() -> None:
    parser = argument_parser(__doc__, "benchmarks/results/pipeline_steps.json", threads=None)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5, help="passes over the photos per configuration")
    parser.add_argument("--steps", default="", help="comma-separated step names to run (default: all)")
    parser.add_argument("--passes", type=int, default=2, help="times the whole sequence of steps runs")
    parser.add_argument("--one-process", action="store_true", help="run the steps here (internal)")
    args = parser.parse_args()
    if args.one_process:
        args.out.write_text(json.dumps(measure(args)) + "\n", encoding="utf-8")
        return
    names = [name for name in configurations(Settings()) if not args.steps or name in args.steps.split(",")]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="fashion-steps-") as tmp:
        for pass_ in range(args.passes):
            for name in names:
                print(f"[pipeline_steps] pass {pass_ + 1}/{args.passes}: {name} ...", flush=True)
                out = Path(tmp) / f"{name}-{pass_}.json"
                subprocess.run(
                    [sys.executable, "-m", "benchmarks.pipeline_steps", "--one-process", "--steps", name,
                     "--items", str(args.items), "--scenes", str(args.scenes), "--rounds", str(args.rounds),
                     "--out", str(out)], check=True,
                )  # fmt: skip
                runs[name].extend(json.loads(out.read_text(encoding="utf-8")))
    steps = [merge(name, found) for name, found in runs.items()]
    baseline = steps[0]["wall_median_ms"]["total"]
    for step in steps:
        step["total_vs_baseline"] = round(step["wall_median_ms"]["total"] / baseline, 3)
    report = {
        "benchmark": "pipeline_steps",
        "machine": machine_info(),
        "torch_threads": f"{torch.get_num_threads()} unless the step sets it",
        "catalogue_items": args.items,
        "photos": f"{args.scenes} generated street scenes (400 x 640)",
        "rounds_per_pass": args.rounds,
        "passes": args.passes,
        "steps": steps,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for step in steps:
        print(f"[pipeline_steps] {step['step']}: total {step['wall_median_ms']['total']} ms "
              f"(cpu {step['cpu_median_ms']} ms, x{step['total_vs_baseline']})", flush=True)  # fmt: skip


def merge(name: str, passes: list[dict[str, Any]]) -> dict[str, Any]:
    """One step's figures: the median over passes of each pass's medians."""
    return {
        "step": name,
        "wall_median_ms": {
            stage: round(statistics.median(p["wall_median_ms"][stage] for p in passes), 1) for stage in STAGES
        },
        "wall_p95_ms": round(statistics.median(p["wall_p95_ms"] for p in passes), 1),
        "cpu_median_ms": round(statistics.median(p["cpu_median_ms"] for p in passes), 1),
        "garments_per_photo_median": passes[0]["garments_per_photo_median"],
        "searches": sum(p["searches"] for p in passes),
        "passes": [p["wall_median_ms"]["total"] for p in passes],
    }


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The selected steps in this process, each over the same photos (one index built here)."""
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="fashion-steps-") as tmp:
        root = Path(tmp)
        catalog = generate_catalog(root / "catalog", n_items=args.items, n_scenes=args.scenes)
        embedder = FashionNetEmbedder(SHIPPED_EMBEDDER)
        build_index(
            catalog.feed,
            root / "index",
            embedder,
            BuildOptions(progress=False),
            build_extractor(settings, embedder),
        )
        store = IndexStore.open(root / "index", None)
        photos = [scene.read_bytes() for scene in catalog.scenes]
        searchers: dict[str, OutfitSearcher] = {}
        wanted = set(filter(None, args.steps.split(",")))
        for name, build in configurations(settings).items():
            if wanted and name not in wanted:
                continue
            detector, embedder = build()
            searchers[name] = OutfitSearcher(
                detector, embedder, store, build_extractor(settings, embedder), settings.ranking
            )
        wall: dict[str, dict[str, list[float]]] = {name: {s: [] for s in STAGES} for name in searchers}
        cpu: dict[str, list[float]] = {name: [] for name in searchers}
        garments: dict[str, list[int]] = {name: [] for name in searchers}
        for round_ in range(args.rounds + 1):  # round 0 warms up
            for photo in photos:
                for name, searcher in searchers.items():
                    started, cpu_started = time.perf_counter(), time.process_time()
                    image = decode_image(photo, settings.max_image_pixels)
                    decoded = time.perf_counter()
                    result = searcher.search(image, SearchRequest(top_k=10))
                    total = (time.perf_counter() - started) * 1000
                    if round_ == 0:
                        continue
                    cpu[name].append((time.process_time() - cpu_started) * 1000)
                    garments[name].append(len(result.garments))
                    timings = {**result.timings_ms, "decode": (decoded - started) * 1000, "total": total}
                    for stage in STAGES:
                        wall[name][stage].append(timings.get(stage, 0.0))
        store.close()
    return [
        {
            "step": name,
            "wall_median_ms": {s: round(statistics.median(v), 1) for s, v in wall[name].items()},
            "wall_p95_ms": round(float(np.percentile(wall[name]["total"], 95)), 1),
            "cpu_median_ms": round(statistics.median(cpu[name]), 1),
            "garments_per_photo_median": statistics.median(garments[name]),
            "searches": len(cpu[name]),
        }
        for name in searchers
    ]


if __name__ == "__main__":
    main()
