"""Parser models against each other on the held-out CCP photos: the same yardstick, post-processing and run.

    python -m benchmarks.parser_models --data ../shared/data --candidate var/garment-parser-v3.safetensors \
        [--candidate-flip] [--threads 1] [--min-score 0.5] [--out benchmarks/results/parser_models.json]

Each model is the service's `ParserDetector` (ONNX Runtime, v3 post-processing `OutfitRules`, `--threads`):
the shipped weights with their mirror average (`v2`), and the candidate weights with or without it. The
yardstick is benchmarks/quality.py's detection section (via benchmarks/detection.py: CCP-mask components per
class, same class at IoU >= 0.5, greedy by score). `detect_ms` is the whole detect stage (resize, network,
post-processing, full-size masks), the models interleaved per photo (alternating which goes first), the
fastest of `--repeats` runs each, so both see the same machine load; `detect_ratio` = candidate / shipped,
per photo, median. Recall and precision on `informative_merged_truth` (v3's fragment rule applied to the
masks) are reported beside the yardstick's, as in benchmarks/detection.py.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from benchmarks.arguments import argument_parser
from benchmarks.detection import first_correct, merged_truth, summary
from benchmarks.machine import machine_info
from benchmarks.quality import Detection, detection_counts
from benchmarks.quality_data import StreetPhoto, street_photos
from models.parser.detector import ParserDetector
from models.spec import SHIPPED_PARSER, SHIPPED_PARSER_FLIP, SHIPPED_PARSER_MIN_SCORE

log = logging.getLogger(__name__)


def scored(detector: ParserDetector, image: Image.Image, photo: StreetPhoto) -> dict[str, Any]:
    detections = [Detection(g.category or "", g.score, g.box) for g in detector.detect(image)]
    return {
        "detection": detection_counts(detections, photo.truth),
        "first_correct": first_correct(detections, photo),
    }


def fastest_ms(detector: ParserDetector, image: Image.Image, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        detector.detect(image)
        best = min(best, (time.perf_counter() - started) * 1000)
    return best


def run(
    photos: list[StreetPhoto],
    merged: list[StreetPhoto],
    models: dict[str, ParserDetector],
    repeats: int,
) -> dict[str, Any]:
    names = list(models)
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    on_merged: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    timings: dict[str, list[float]] = {name: [] for name in names}
    for number, (photo, merged_photo) in enumerate(zip(photos, merged, strict=True), 1):
        with Image.open(photo.path) as handle:
            image = handle.convert("RGB")
        for name in names if number % 2 else reversed(names):
            timings[name].append(fastest_ms(models[name], image, repeats))
        for name, detector in models.items():
            records[name].append(scored(detector, image, photo))
            on_merged[name].append(scored(detector, image, merged_photo))
        if number % 15 == 0:
            log.info("%d / %d photos", number, len(photos))
    shipped, candidate = names[0], names[-1]
    ratios = [new / old for old, new in zip(timings[shipped], timings[candidate], strict=True)]
    return {
        "detect_ms_p50": {name: round(statistics.median(values), 2) for name, values in timings.items()},
        "detect_ratio_p50": round(statistics.median(ratios), 3),
        "models": {name: summary(records[name], [0.0]) for name in names},
        "informative_merged_truth": {
            name: {key: value for key, value in summary(rows, [0.0]).items() if key != "post_ms_p50"}
            for name, rows in on_merged.items()
        },
    }


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argument_parser(__doc__, "benchmarks/results/parser_models.json")
    parser.add_argument("--data", type=Path, required=True, help="the shared data folder (holds ccp/)")
    parser.add_argument("--candidate", type=Path, required=True, help="the parser weights to compare")
    parser.add_argument("--candidate-flip", action="store_true", help="the candidate with the mirror average")
    parser.add_argument(
        "--min-score", type=float, default=SHIPPED_PARSER_MIN_SCORE, help="the service's detector_min_score"
    )
    parser.add_argument("--limit", type=int, default=0, help="only the first N held-out photos (smoke runs)")
    parser.add_argument("--repeats", type=int, default=3, help="detect stages timed per photo and model")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    photos = street_photos(args.data / "ccp")[: args.limit or None]
    merged = [merged_truth(args.data / "ccp", photo) for photo in photos]
    candidate_name = f"{args.candidate.stem}{'' if args.candidate_flip else '_no_flip'}"
    models = {
        f"{SHIPPED_PARSER.stem}{'_flip' if SHIPPED_PARSER_FLIP else '_no_flip'}": ParserDetector(
            SHIPPED_PARSER, threads=args.threads, min_score=args.min_score, flip=SHIPPED_PARSER_FLIP
        ),
        candidate_name: ParserDetector(
            args.candidate, threads=args.threads, min_score=args.min_score, flip=args.candidate_flip
        ),
    }
    started = time.perf_counter()
    result = run(photos, merged, models, args.repeats)
    report = {
        "benchmark": "parser models, held-out CCP, v3 post-processing (issue 17)",
        "command": f"python -m benchmarks.parser_models --data {args.data} --candidate {args.candidate}"
        + (" --candidate-flip" if args.candidate_flip else "")
        + f" --threads {args.threads} --min-score {args.min_score} --repeats {args.repeats}"
        + (f" --limit {args.limit}" if args.limit else ""),
        "machine": machine_info(),
        "photos": len(photos),
        "input_size": {name: list(d.config.input_size) for name, d in models.items()},
        "seconds": round(time.perf_counter() - started, 1),
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for name, row in report["models"].items():
        log.info(
            "%-28s macro %.3f agnostic %.3f precision %.3f boxes/photo %.2f detect p50 %.1f ms",
            name,
            row["recall_macro"],
            row["recall_class_agnostic"],
            row["precision"],
            row["boxes_per_photo"],
            report["detect_ms_p50"][name],
        )
    log.info("detect ratio candidate / shipped (median per photo): %.3f", report["detect_ratio_p50"])


if __name__ == "__main__":
    main()
