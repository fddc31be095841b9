"""Garment parser on the held-out CCP split: per-class IoU, box precision/recall per garment class, latency.

    python -m benchmarks.parser_eval --data DIR --weights FILE --out FILE.eval.json

IoU is computed at each photo's full resolution (probabilities upsampled bilinearly). Ground-truth boxes are
the connected components of the mapped ground-truth mask, with the same minimum-area filter and fragment
merging as the detector. A predicted box is a true positive when it matches a not yet matched ground-truth
box of the same class with IoU >= 0.5 (greedy, highest score first). Latency: wall time of
`ParserDetector.detect` per photo (resize, network, components, full-size masks); median over the split.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from benchmarks.arguments import argument_parser
from benchmarks.machine import machine_info
from models.parser.data import heldout_ids, photo_path, read_class_mask
from models.parser.detector import ParserDetector
from models.parser.instances import extract_instances
from models.parser.taxonomy import CLASS_INDEX, GARMENT_CLASSES, PARSER_CLASSES, load_label_lookup


def box_iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def match(predicted: Sequence[tuple[float, tuple[int, ...]]], truth: Sequence[tuple[int, ...]]) -> int:
    """True positives among `predicted` (score, box) against `truth` boxes at IoU >= 0.5, greedy by score."""
    used: set[int] = set()
    hits = 0
    for _, box in sorted(predicted, key=lambda item: -item[0]):
        best, best_iou = -1, 0.5
        for index, gt in enumerate(truth):
            iou = box_iou(box, gt)
            if index not in used and iou >= best_iou:
                best, best_iou = index, iou
        if best >= 0:
            used.add(best)
            hits += 1
    return hits


def main() -> None:
    parser = argument_parser(__doc__, "benchmarks/results/parser_eval.json")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--min-area-frac", type=float, default=0.001)
    parser.add_argument("--min-score", type=float, default=0.0, help="drop instances scoring below this")
    parser.add_argument("--no-flip", action="store_true", help="disable test-time horizontal flip")
    parser.add_argument("--limit", type=int, default=0, help="only the first N held-out photos (smoke runs)")
    args = parser.parse_args()

    detector = ParserDetector(
        args.weights,
        threads=args.threads,
        min_area_frac=args.min_area_frac,
        flip=not args.no_flip,
        min_score=args.min_score,
    )
    lookup = load_label_lookup(args.data)
    ids = heldout_ids()[: args.limit or None]
    num = len(PARSER_CLASSES)
    confusion = np.zeros((num, num), dtype=np.int64)
    counts = {name: {"predicted": 0, "ground_truth": 0, "true_positive": 0} for name in GARMENT_CLASSES}
    garment_indices = tuple(CLASS_INDEX[name] for name in GARMENT_CLASSES)
    latencies = []
    for photo_id in ids:
        with Image.open(photo_path(args.data, photo_id)) as handle:
            image = handle.convert("RGB")
        truth = read_class_mask(args.data, photo_id, lookup).astype(np.int64)
        with torch.inference_mode():
            probs = detector.probabilities(image)
            full = F.interpolate(probs[None], size=truth.shape, mode="bilinear", align_corners=False)[0]
        prediction = full.argmax(0).numpy()
        confusion += np.bincount((truth * num + prediction).reshape(-1), minlength=num * num).reshape(
            num, num
        )

        started = time.perf_counter()
        garments = detector.detect(image)
        latencies.append(time.perf_counter() - started)
        gt_instances = extract_instances(truth, garment_indices, min_area_frac=args.min_area_frac)
        for name in GARMENT_CLASSES:
            predicted = [(g.score, g.box) for g in garments if g.category == name]
            gt_boxes = [inst.box for inst in gt_instances if PARSER_CLASSES[inst.class_index] == name]
            counts[name]["predicted"] += len(predicted)
            counts[name]["ground_truth"] += len(gt_boxes)
            counts[name]["true_positive"] += match(predicted, gt_boxes)

    intersection = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    iou = {
        name: (round(float(i / u), 4) if u else None)
        for name, i, u in zip(PARSER_CLASSES, intersection, union, strict=True)
    }
    boxes = {
        name: {
            **c,
            "precision": round(c["true_positive"] / c["predicted"], 4) if c["predicted"] else None,
            "recall": round(c["true_positive"] / c["ground_truth"], 4) if c["ground_truth"] else None,
        }
        for name, c in counts.items()
    }
    result = {
        "benchmark": "garment-parser held-out CCP",
        "machine": machine_info(),
        "weights": str(args.weights),
        "config": {
            "architecture": detector.config.architecture,
            "input_size": list(detector.config.input_size),
            "threads": args.threads,
            "flip": not args.no_flip,
            "min_area_frac": args.min_area_frac,
            "min_score": args.min_score,
            "heldout_photos": len(ids),
        },
        "miou": round(float(np.nanmean([v for v in iou.values() if v is not None])), 4),
        "miou_garments": round(float(np.mean([iou[n] for n in GARMENT_CLASSES if iou[n] is not None])), 4),
        "pixel_accuracy": round(float(intersection.sum() / confusion.sum()), 4),
        "iou": iou,
        "boxes_iou50": boxes,
        "latency_s": {
            "median": round(statistics.median(latencies), 4),
            "p90": round(float(np.percentile(latencies, 90)), 4),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("miou", "miou_garments", "iou", "latency_s")}, indent=2))
    for name, c in boxes.items():
        print(
            f"{name:10s} P={c['precision']} R={c['recall']} (gt {c['ground_truth']}, pred {c['predicted']})"
        )


if __name__ == "__main__":
    main()
