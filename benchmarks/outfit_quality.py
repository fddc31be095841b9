"""Outfit search quality on held-out CCP street photos: our pipeline against the naive alternative.

    python -m benchmarks.outfit_quality [--data ../shared/data] [--out FILE] [--limit N]

Catalogue: the held-out clothing images (models.fashion_net.data.split_clothing, seed 0), each with its
coarse category (COARSE_CATEGORY), embedded by the shipped FashionNet. Both pipelines search it exactly
(inner product over all rows, numpy), so the only difference between them is detection.
Queries: the 90 held-out CCP photos (models.parser.data.heldout_ids). A photo's truth is the set of garment
classes in its ground-truth mask (extract_instances, as benchmarks/parser_eval.py), restricted to the
categories the catalogue sells; bag, scarf, belt and eyewear have no catalogue counterpart and are left out.
- ours: the garment parser (min score SHIPPED_PARSER_MIN_SCORE, the service default; full frame when it
  finds nothing), one
  crop per garment embedded in one batch, each searched within the catalogue categories compatible with its
  detected category (models/attributes/taxonomy.json, as search.searcher.OutfitSearcher), top 10 each. A
  garment the catalogue does not sell (a bag) gets no list. The attribute re-ranking is not applied.
- naive: the whole photo embedded once, searched over the whole catalogue, top 10.
Metrics (means over photos): coverage@10 = share of a photo's true categories with at least one result of
that category in any returned list; precision@10 = share of returned items whose category is true for the
photo; lists and items returned; latency per photo (detect + embed + search, decode excluded).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.arguments import argument_parser
from benchmarks.machine import machine_info
from models.attributes.taxonomy import Taxonomy, load_taxonomy
from models.detector import create_detector
from models.fashion_net import FashionNetEmbedder
from models.fashion_net.data import COARSE_CATEGORY, clothing_samples, load_image, split_clothing
from models.files import file_digest
from models.images import crop_box
from models.parser.data import heldout_ids, photo_path, read_class_mask
from models.parser.instances import extract_instances
from models.parser.taxonomy import CLASS_INDEX, GARMENT_CLASSES, PARSER_CLASSES, load_label_lookup
from models.spec import SHIPPED_EMBEDDER, SHIPPED_PARSER, SHIPPED_PARSER_MIN_SCORE

REPO = Path(__file__).resolve().parents[1]
TOP_K = 10
MIN_SCORE = SHIPPED_PARSER_MIN_SCORE  # service default (FASHION_DETECTOR_MIN_SCORE)
PIPELINES = ("ours", "naive")


def allowed_categories(detected: str | None, taxonomy: Taxonomy, sold: Iterable[str]) -> frozenset[str]:
    """Catalogue categories a garment may match: all for an uncategorised (full-frame) garment, else its
    compatible categories that the catalogue sells (empty: the catalogue has none, no list)."""
    sold = frozenset(sold)
    if detected is None:
        return sold
    return frozenset(taxonomy.compatible_categories(detected)) & sold


def top_rows(scores: np.ndarray, allowed: np.ndarray, k: int) -> np.ndarray:
    """Rows of the k best scores among `allowed` rows, best first, ties by row (deterministic)."""
    masked = np.where(allowed, scores, -np.inf)
    order = np.argsort(-masked, kind="stable")[: min(k, int(allowed.sum()))]
    return order


def photo_metrics(truth: set[str], returned: Sequence[Sequence[str]]) -> dict[str, float | int | None]:
    """Coverage, precision and counts for one photo; `returned` holds the categories of each result list.
    Coverage and precision are None for a photo without true categories, precision also without items."""
    items = [category for found in returned for category in found]
    covered = truth & set(items)
    return {
        "coverage": round(len(covered) / len(truth), 4) if truth else None,
        "precision": round(sum(c in truth for c in items) / len(items), 4) if truth and items else None,
        "lists": sum(1 for found in returned if found),
        "items": len(items),
    }


def mean_of(values: Iterable[float | int | None]) -> dict[str, float | int | None]:
    kept = [float(v) for v in values if v is not None]
    return {"mean": round(statistics.fmean(kept), 4) if kept else None, "n": len(kept)}


def summarise(records: list[dict], categories: Sequence[str]) -> dict[str, dict]:
    """Per-pipeline means over photos, per-category coverage, and the differences ours - naive."""
    result: dict[str, dict] = {}
    for name in PIPELINES:
        rows = [r[name] for r in records]
        per_category = {}
        for category in categories:
            holding = [r for r in records if category in r["truth"]]
            hits = sum(category in r[name]["covered"] for r in holding)
            per_category[category] = {
                "photos": len(holding),
                "covered": hits,
                "coverage": round(hits / len(holding), 4) if holding else None,
            }
        latencies = [row["ms"] for row in rows]
        result[name] = {
            "coverage_at_10": mean_of(row["coverage"] for row in rows),
            "precision_at_10": mean_of(row["precision"] for row in rows),
            "lists_per_photo": mean_of(row["lists"] for row in rows),
            "items_per_photo": mean_of(row["items"] for row in rows),
            "garments_detected_per_photo": mean_of(row["detected"] for row in rows),
            "latency_ms": {
                "median": round(statistics.median(latencies), 2) if latencies else None,
                "p90": round(float(np.percentile(latencies, 90)), 2) if latencies else None,
            },
            "coverage_per_category": per_category,
        }
    difference: dict[str, float | None] = {}
    for metric in ("coverage_at_10", "precision_at_10", "lists_per_photo", "items_per_photo"):
        ours, naive = result["ours"][metric]["mean"], result["naive"][metric]["mean"]
        difference[metric] = round(ours - naive, 4) if ours is not None and naive is not None else None
    ours_ms, naive_ms = result["ours"]["latency_ms"]["median"], result["naive"]["latency_ms"]["median"]
    difference["latency_ratio_median"] = round(ours_ms / naive_ms, 2) if ours_ms and naive_ms else None
    result["ours_minus_naive"] = difference
    return result


def main() -> None:
    parser = argument_parser(__doc__, str(REPO / "benchmarks" / "results" / "outfit_quality.json"))
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--limit", type=int, default=0, help="only the first N held-out photos (quick run)")
    args = parser.parse_args()
    ccp, clothing = args.data / "ccp", args.data / "clothing"
    missing = [p for p in (ccp / "labels.json", ccp / "photos", clothing / "images.csv") if not p.exists()]
    if missing:
        sys.exit(f"outfit_quality: data not found ({missing[0]}); pass --data pointing at shared/data")
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)

    embedder = FashionNetEmbedder(SHIPPED_EMBEDDER, threads=args.threads)
    detector = create_detector("garment-parser", threads=args.threads, min_score=MIN_SCORE)
    taxonomy = load_taxonomy()
    _, catalogue = split_clothing(clothing_samples(clothing), seed=0)
    item_categories = np.array([COARSE_CATEGORY[s.label] for s in catalogue])
    sold = sorted(set(item_categories.tolist()))
    vectors = embedder.embed_images([load_image(s) for s in catalogue])
    if vectors.shape != (len(catalogue), embedder.dimension) or vectors.dtype != np.float32:
        raise ValueError(f"catalogue vectors {vectors.shape} {vectors.dtype}, want ({len(catalogue)}, d)")

    def search(query: np.ndarray, allowed: frozenset[str]) -> list[str]:
        rows = top_rows(vectors @ query, np.isin(item_categories, sorted(allowed)), TOP_K)
        return item_categories[rows].tolist()

    lookup = load_label_lookup(ccp)
    garment_indices = tuple(CLASS_INDEX[name] for name in GARMENT_CLASSES)
    unsold = [name for name in GARMENT_CLASSES if name not in sold]
    ids = heldout_ids()[: args.limit or None]
    with Image.open(photo_path(ccp, ids[0])) as handle:  # warm-up, untimed
        warm = handle.convert("RGB")
    embedder.embed_images([crop_box(warm, g.box) for g in detector.detect(warm)] + [warm])
    records = []
    for photo_id in ids:
        with Image.open(photo_path(ccp, photo_id)) as handle:
            image = handle.convert("RGB")
        class_map = read_class_mask(ccp, photo_id, lookup)
        present = {PARSER_CLASSES[i.class_index] for i in extract_instances(class_map, garment_indices)}
        truth = present & set(sold)

        started = time.perf_counter()
        garments = detector.detect(image)
        garment_vectors = embedder.embed_images([crop_box(image, g.box) for g in garments])
        ours = []
        for garment, vector in zip(garments, garment_vectors, strict=True):
            allowed = allowed_categories(garment.category, taxonomy, sold)
            ours.append(search(vector, allowed) if allowed else [])
        ours_ms = (time.perf_counter() - started) * 1000

        started = time.perf_counter()
        naive = [search(embedder.embed_images([image])[0], frozenset(sold))]
        naive_ms = (time.perf_counter() - started) * 1000

        record: dict = {"photo_id": photo_id, "truth": sorted(truth), "unsold": sorted(present - truth)}
        for name, returned, ms, detected in (
            ("ours", ours, ours_ms, [g.category for g in garments]),
            ("naive", naive, naive_ms, [None]),
        ):
            covered = sorted(truth & {c for found in returned for c in found})
            record[name] = {
                **photo_metrics(truth, returned),
                "covered": covered,
                "detected": len(detected),
                "detected_categories": detected,
                "ms": round(ms, 2),
            }
        records.append(record)

    metrics = summarise(records, sold)
    report = {
        "benchmark": "outfit_quality: our outfit pipeline vs whole-image embedding, held-out CCP photos",
        "machine": {**machine_info(), "torch_threads": torch.get_num_threads()},
        "models": {
            "embedder": embedder.name,
            "detector": f"garment-parser:{SHIPPED_PARSER.stem}#{file_digest(SHIPPED_PARSER)[:12]}",
            "detector_min_score": MIN_SCORE,
            "detector_flip": True,
            "taxonomy_version": taxonomy.version,
        },
        "data": {
            "root": str(args.data),
            "catalogue": "held-out clothing-dataset images (CC0 1.0), 15% of each label, seed 0 "
            "(models.fashion_net.data.split_clothing); coarse category via COARSE_CATEGORY",
            "catalogue_items": len(catalogue),
            "catalogue_categories": {c: int((item_categories == c).sum()) for c in sold},
            "queries": "held-out CCP photos (Apache-2.0, Yang et al. CVPR 2014), models.parser.data."
            "heldout_ids (random.Random(0).sample of ids 1-900, 90 photos)",
            "photos": len(ids),
            "photos_with_sold_garments": sum(1 for r in records if r["truth"]),
            "truth": "garment classes of extract_instances (min area 0.1%) on the ground-truth class map, "
            "restricted to the categories the catalogue sells",
            "left_out_categories": unsold,
            "left_out_note": "no catalogue counterpart: garments of these classes count in neither "
            "the truth nor the results (ours gives them no list)",
        },
        "method": {
            "search": "exact inner product over all catalogue rows (numpy), identical for both pipelines",
            "top_k": TOP_K,
            "ours": "detect -> crop per garment -> one embedder batch -> search within compatible categories "
            "per garment (attribute re-ranking not applied)",
            "naive": "whole photo -> one embedding -> search the whole catalogue, one list",
            "latency": "in-process wall time per photo, detect + embed + search, image decode excluded",
        },
        "metrics": metrics,
        "photos_detail": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    mine, base = metrics["ours"], metrics["naive"]
    print(
        f"{len(ids)} photos: coverage@10 ours {mine['coverage_at_10']['mean']} vs naive "
        f"{base['coverage_at_10']['mean']}, precision@10 ours {mine['precision_at_10']['mean']} vs naive "
        f"{base['precision_at_10']['mean']}, median ms ours {mine['latency_ms']['median']} vs naive "
        f"{base['latency_ms']['median']} -> {args.out}"
    )


if __name__ == "__main__":
    main()
