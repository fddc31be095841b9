"""Search quality a shopper sees, on real held-out data, through the real code path (issue 15, section 1).

    python -m benchmarks.quality --data ../shared/data [--limit N] [--pipelines ours,whole-frame,...]
                                 [--feed-attributes labels|none] [--out benchmarks/results/quality.json]

Catalogue: the fpi validation products (fashion master categories) and the held-out clothing photos
(benchmarks/quality_data.py), written as a JSON Lines feed and indexed with `indexer.build.build_index`;
every pipeline is a named `Settings` turned into models, store and `OutfitSearcher` by `search.runtime`,
exactly as `fashion-search index build` and `fashion-search search` do. With `--feed-attributes labels`
(default) the feed carries the shop's structured fields (colour, gender, style); with `none` the index
predicts them.

Measured per pipeline, in one run, over the same catalogue and queries:
- product -> product: every catalogue photo is a query (itself excluded from its matches); the first
  garment's top 10: P@10 of the same article type, of the same article type and colour (queries with a
  colour label), and the share of queries that come back as exactly one garment; per source and overall.
- colour naming: the first garment's colour vs the product's colour label (fpi.COLOUR_MAP), top-1, top-2.
- street -> shop: the 90 held-out CCP photos; each returned garment whose box has IoU >= 0.5 with a
  ground-truth garment of any class is scored: P@10 of matches whose catalogue category is the true
  garment's class; per class and macro. Also per true garment (a missed one scores 0).
- detection: box recall at IoU >= 0.5 per class (same class, greedy by score), macro over the eight
  classes, class-agnostic recall, and precision (returned boxes matching a true box of their class).
- attributes: for every group the pipeline predicts on the product queries (the first garment's
  attributes; "category" = the detector's class), accuracy against the labels that exist, coverage and
  expected calibration error (10 bins) of the reported confidences. New predicted groups are measured
  wherever a label of the same name exists.
P@10 always divides by 10 (a short list counts its missing places as misses); `ceiling` is the best P@10
the catalogue allows (min(10, relevant items) / 10, averaged).

Pipelines (`--pipelines`, or FASHION_QUALITY_PIPELINES; comma-separated):
  ours              the service's settings (defaults and FASHION_* variables): parser + embedder
  whole-frame       ours with the full-frame detector (no detection)
  colour-histogram  HSV colour histogram of the whole frame (benchmarks.embedder_eval.ColourHistogram)
  v1                the v1 embedder file through the full pipeline
  NAME=WEIGHTS      ours with the fashion-net embedder weights WEIGHTS (e.g. v3=models/weights/x.safetensors)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.embedder_eval import ColourHistogram
from benchmarks.machine import machine_info
from benchmarks.parser_eval import box_iou, match
from benchmarks.quality_data import (
    SOURCES,
    Product,
    StreetPhoto,
    TruthGarment,
    missing_data,
    street_photos,
    validation_catalogue,
    write_feed,
)
from models.embedding import BatchedEmbedder, Embedder
from models.fashion_net.data import ccp_heldout_ids
from models.files import file_digest
from models.parser.taxonomy import GARMENT_CLASSES
from models.spec import SHIPPED_PARSER, WEIGHTS_DIR
from search.searcher import OutfitResult, OutfitSearcher, SearchRequest
from search.settings import EmbedderSettings, Settings

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
TOP_K = 10
IOU = 0.5
ECE_BINS = 10
DETECTION_CLASSES = ("top", "outerwear", "dress", "trousers", "shorts", "skirt", "footwear", "bag")
DEFAULT_PIPELINES = "ours,whole-frame,colour-histogram"
V1_WEIGHTS = WEIGHTS_DIR / "fashion-embedder-v1.safetensors"
HISTOGRAM_SIZE = 112  # the v1 embedder's input size, as in benchmarks/embedder_eval.py
LOG_EVERY_S = 15.0


# --- metrics (pure) -------------------------------------------------------------------------------


def precision_at_k(relevant: Sequence[bool], k: int = TOP_K) -> float:
    """Relevant among the first k, divided by k (a list shorter than k counts its gaps as misses)."""
    return sum(bool(r) for r in relevant[:k]) / k


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS
) -> float | None:
    """sum_b n_b / n * |accuracy_b - mean confidence_b| over equal-width bins of [0, 1] (1.0 in the last)."""
    if len(confidences) != len(correct):
        raise ValueError(f"{len(confidences)} confidences but {len(correct)} outcomes")
    if not confidences:
        return None
    conf = np.clip(np.asarray(confidences, dtype=np.float64), 0.0, 1.0)
    hits = np.asarray(correct, dtype=np.float64)
    index = np.minimum((conf * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = index == b
        if inside.any():
            total += inside.sum() / len(conf) * abs(hits[inside].mean() - conf[inside].mean())
    return float(total)


def assign_truth(
    boxes: Sequence[tuple[int, ...]], truth: Sequence[tuple[int, ...]], threshold: float = IOU
) -> list[int | None]:
    """For each box, the truth box it overlaps most if that IoU >= threshold (several boxes may share one)."""
    assigned: list[int | None] = []
    for box in boxes:
        best, best_iou = None, threshold
        for index, gt in enumerate(truth):
            iou = box_iou(box, gt)
            if iou >= best_iou:
                best, best_iou = index, iou
        assigned.append(best)
    return assigned


@dataclass(frozen=True)
class Detection:
    category: str | None
    score: float
    box: tuple[int, int, int, int]


def detection_counts(detections: Sequence[Detection], truth: Sequence[TruthGarment]) -> dict[str, Any]:
    """Per-class predicted / ground truth / true positives (same class, IoU >= 0.5, greedy by score), the
    class-agnostic hits over the DETECTION_CLASSES truth, and the returned boxes matching their class."""
    per_class = {}
    matched = 0
    for name in GARMENT_CLASSES:
        predicted = [(d.score, d.box) for d in detections if d.category == name]
        gt = [t.box for t in truth if t.category == name]
        hits = match(predicted, gt)
        matched += hits
        per_class[name] = {"predicted": len(predicted), "ground_truth": len(gt), "true_positive": hits}
    scored = [t.box for t in truth if t.category in DETECTION_CLASSES]
    agnostic = match([(d.score, d.box) for d in detections], scored)
    return {
        "per_class": per_class,
        "agnostic": {"ground_truth": len(scored), "true_positive": agnostic},
        "returned": len(detections),
        "returned_matching_class": matched,
    }


def ratio(numerator: float, denominator: float, digits: int = 4) -> float | None:
    return round(numerator / denominator, digits) if denominator else None


def mean(values: Iterable[float | None], digits: int = 4) -> float | None:
    kept = [v for v in values if v is not None]
    return round(statistics.fmean(kept), digits) if kept else None


# --- pipelines ------------------------------------------------------------------------------------


class HistogramEmbedder(BatchedEmbedder):
    """The colour-histogram baseline behind the `Embedder` interface (image only, no heads)."""

    def __init__(self, size: int, batch_size: int = 64) -> None:
        self._histogram = ColourHistogram(size)
        self._name = self._histogram.name
        self._dimension = self._histogram.dimension
        self._batch_size = batch_size

    def _encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._histogram.embed_images(images)


@dataclass(frozen=True)
class Pipeline:
    name: str
    settings: Settings
    description: str
    histogram: bool = False  # the colour-histogram embedder instead of settings.embedder

    def index_key(self) -> str:
        """Pipelines with the same key share one index (same vectors, same predicted attributes)."""
        s = self.settings
        embedder = "histogram" if self.histogram else s.embedder.model_dump_json()
        return json.dumps([embedder, s.zero_shot, s.zero_shot_min_confidence, s.max_image_pixels])

    def make_embedder(self) -> Embedder:
        from search.runtime import build_embedder

        return HistogramEmbedder(HISTOGRAM_SIZE) if self.histogram else build_embedder(self.settings)

    def summary(self) -> dict[str, Any]:
        s = self.settings
        detector: dict[str, Any] = {"name": s.detector}
        if s.detector == "garment-parser":
            weights = s.detector_weights or SHIPPED_PARSER
            detector |= {
                "weights": f"{Path(weights).stem}#{file_digest(Path(weights))[:12]}",
                "min_score": s.detector_min_score,
                "flip": s.detector_flip,
                "runtime": s.detector_runtime,
            }
        embedder = (
            {"name": f"colour-histogram (size {HISTOGRAM_SIZE})"}
            if self.histogram
            else s.embedder.model_dump(mode="json", include={"kind", "model_name", "pretrained", "runtime"})
        )
        return {"description": self.description, "detector": detector, "embedder": embedder}


def parse_pipelines(spec: str, base: Settings) -> list[Pipeline]:
    """Named pipelines from a comma-separated list (see the module docstring); ValueError on a bad name."""
    whole = base.model_copy(update={"detector": "full-frame"})
    builtin = {
        "ours": Pipeline("ours", base, "the service's settings: garment parser, embedder per garment"),
        "whole-frame": Pipeline("whole-frame", whole, "ours without detection: the whole photo, one garment"),
        "colour-histogram": Pipeline(
            "colour-histogram", whole, "HSV colour histogram of the whole photo, no detection", histogram=True
        ),
    }
    pipelines: list[Pipeline] = []
    for raw in (part.strip() for part in spec.split(",")):
        if not raw:
            continue
        name, _, weights = raw.partition("=")
        if name == "v1" and not weights:
            weights = str(V1_WEIGHTS)
        if weights:
            path = Path(weights)
            if not path.is_file():
                raise ValueError(f"pipeline {name!r}: weights file {path} does not exist")
            embedder = EmbedderSettings.model_validate(
                {**base.embedder.model_dump(), "kind": "fashion-net", "pretrained": str(path)}
            )
            settings = base.model_copy(update={"embedder": embedder})
            pipelines.append(Pipeline(name, settings, f"ours with the fashion-net embedder {path}"))
        elif name in builtin:
            pipelines.append(builtin[name])
        else:
            raise ValueError(
                f"unknown pipeline {name!r}: use {', '.join(builtin)}, v1 or NAME=path/to/weights.safetensors"
            )
    names = [p.name for p in pipelines]
    if not pipelines or len(set(names)) != len(names):
        raise ValueError(f"pipelines must be named once each, got {names}")
    return pipelines


# --- running the queries --------------------------------------------------------------------------


@dataclass
class Progress:
    label: str
    total: int
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)

    def step(self) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self.last >= LOG_EVERY_S or self.done == self.total:
            rate = self.done / max(now - self.started, 1e-9)
            log.info("%s: %d/%d queries, %.1f queries/s", self.label, self.done, self.total, rate)
            self.last = now


def timed_search(
    searcher: OutfitSearcher, path: Path, top_k: int, max_pixels: int
) -> tuple[OutfitResult, float]:
    from models.images import decode_image

    image = decode_image(path.read_bytes(), max_pixels)
    started = time.perf_counter()
    result = searcher.search(image, SearchRequest(top_k=top_k))
    return result, (time.perf_counter() - started) * 1000


def predictions(result: OutfitResult) -> dict[str, tuple[str, float]]:
    """The first garment's groups (value, confidence) as the searcher reports them for the photo (all of
    them predicted: pixels or a model), with "category" from the detector."""
    if not result.garments:
        return {}
    first = result.garments[0]
    found = {group: (guess.value, guess.confidence) for group, guess in first.attributes.values.items()}
    if first.garment.category is not None:
        found["category"] = (first.garment.category, first.garment.score)
    return found


def product_record(query: Product, result: OutfitResult, ms: float, truth: dict[str, Product]) -> dict:
    garments = result.garments
    first = garments[0].matches if garments else []
    matches = [m.item.item_id for m in first if m.item.item_id != query.item_id]
    top = [truth[item_id] for item_id in matches[:TOP_K]]
    colour = query.labels.get("colour")
    same_type = [p.article == query.article for p in top]
    record: dict[str, Any] = {
        "source": query.source,
        "garments": len(garments),
        "categories": [g.garment.category for g in garments],
        "p10_type": precision_at_k(same_type),
        "p10_type_colour": None,
        "colour_top1": None,
        "colour_top2": None,
        "predicted": predictions(result),
        "labels": query.labels,
        "ms": ms,
    }
    if colour is not None:
        both = [s and p.labels.get("colour") == colour for s, p in zip(same_type, top, strict=True)]
        record["p10_type_colour"] = precision_at_k(both)
        guess = garments[0].attributes.values.get("colour") if garments else None
        named = guess.values()[:2] if guess is not None else ()
        record["colour_top1"] = bool(named) and named[0] == colour
        record["colour_top2"] = colour in named
    return record


def street_record(photo: StreetPhoto, result: OutfitResult, ms: float) -> dict:
    truth = photo.truth
    detections = [Detection(g.garment.category, g.garment.score, g.garment.box) for g in result.garments]
    assigned = assign_truth([d.box for d in detections], [t.box for t in truth])
    scored = []  # (true class, P@10) per returned garment that overlaps a true one
    best_for_truth: dict[int, tuple[float, float]] = {}  # truth index -> (IoU, P@10) of its best garment
    for garment, index in zip(result.garments, assigned, strict=True):
        if index is None:
            continue
        wanted = truth[index].category
        p10 = precision_at_k([m.item.category == wanted for m in garment.matches])
        scored.append((wanted, p10))
        iou = box_iou(garment.garment.box, truth[index].box)
        if index not in best_for_truth or iou > best_for_truth[index][0]:
            best_for_truth[index] = (iou, p10)
    per_truth = [(t.category, best_for_truth.get(i, (0.0, 0.0))[1]) for i, t in enumerate(truth)]
    return {
        "photo_id": photo.photo_id,
        "scored": scored,
        "per_truth": per_truth,
        "detection": detection_counts(detections, truth),
        "ms": ms,
    }


# --- aggregation ----------------------------------------------------------------------------------


def product_metrics(records: list[dict], queries: list[Product], catalogue: list[Product]) -> dict[str, Any]:
    """Per source and overall: P@10 (type; type and colour), exactly one garment, colour naming, the
    P@10 ceilings, garments per query and the most common detected category lists. `records` are in the
    order of `queries`; `catalogue` is what was indexed."""
    article_counts = Counter(p.article for p in catalogue)
    type_colour_counts = Counter((p.article, p.labels["colour"]) for p in catalogue if "colour" in p.labels)

    def block(rows: list[dict], products: list[Product]) -> dict[str, Any]:
        type_ceiling = [min(TOP_K, article_counts[p.article] - 1) / TOP_K for p in products]
        colour_ceiling = [
            min(TOP_K, type_colour_counts[(p.article, p.labels["colour"])] - 1) / TOP_K
            for p in products
            if "colour" in p.labels
        ]
        shapes = Counter(" + ".join(c or "whole frame" for c in r["categories"]) for r in rows)
        return {
            "queries": len(rows),
            "p10_same_type": mean(r["p10_type"] for r in rows),
            "p10_same_type_ceiling": mean(type_ceiling),
            "p10_same_type_and_colour": mean(r["p10_type_colour"] for r in rows),
            "p10_same_type_and_colour_ceiling": mean(colour_ceiling),
            "colour_queries": sum(r["p10_type_colour"] is not None for r in rows),
            "exactly_one_garment": ratio(sum(r["garments"] == 1 for r in rows), len(rows)),
            "garments_per_query": mean((r["garments"] for r in rows), digits=2),
            "colour_top1": mean(float(r["colour_top1"]) for r in rows if r["colour_top1"] is not None),
            "colour_top2": mean(float(r["colour_top2"]) for r in rows if r["colour_top2"] is not None),
            "first_garment_category_by_true_category": first_categories(rows),
            "most_common_garment_lists": [
                {"categories": k or "(none)", "share": ratio(n, len(rows))} for k, n in shapes.most_common(8)
            ],
        }

    by_source = {
        source: block(
            [r for r in records if r["source"] == source], [p for p in queries if p.source == source]
        )
        for source in SOURCES
    }
    return {"all": block(records, queries), **{s: b for s, b in by_source.items() if b["queries"]}}


def first_categories(rows: list[dict], shown: int = 3) -> dict[str, list[dict[str, Any]]]:
    """Per true coarse category: the most common categories of the first returned garment, with shares."""
    by_truth: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        first = row["categories"][0] if row["categories"] else "(no garment)"
        by_truth[row["labels"].get("category", "?")][first or "whole frame"] += 1
    return {
        truth: [{"category": c, "share": ratio(n, sum(found.values()))} for c, n in found.most_common(shown)]
        for truth, found in sorted(by_truth.items(), key=lambda item: -sum(item[1].values()))
    }


def attribute_metrics(records: list[dict]) -> dict[str, Any]:
    """For every group predicted on at least one query: per source and overall, labelled queries, predicted
    among them (coverage), accuracy and ECE of the confidences. Queries without a label are not scored."""
    groups = sorted({group for r in records for group in r["predicted"]})
    result: dict[str, Any] = {}
    for group in groups:
        per: dict[str, Any] = {}
        for source in ("all", *SOURCES):
            rows = [r for r in records if source in ("all", r["source"]) and group in r["labels"]]
            scored = [(r["predicted"][group], r["labels"][group]) for r in rows if group in r["predicted"]]
            if not rows:
                continue
            correct = [value == label for (value, _), label in scored]
            ece = expected_calibration_error([conf for (_, conf), _ in scored], correct)
            per[source] = {
                "labelled": len(rows),
                "predicted": len(scored),
                "coverage": ratio(len(scored), len(rows)),
                "accuracy": ratio(sum(correct), len(correct)),
                "mean_confidence": mean(conf for (_, conf), _ in scored),
                "ece": round(ece, 4) if ece is not None else None,
            }
        if per:
            result[group] = per
    return result


def street_metrics(records: list[dict]) -> dict[str, Any]:
    scored: dict[str, list[float]] = defaultdict(list)
    per_truth: dict[str, list[float]] = defaultdict(list)
    for record in records:
        for category, p10 in record["scored"]:
            scored[category].append(p10)
        for category, p10 in record["per_truth"]:
            per_truth[category].append(p10)
    per_class = {
        name: {
            "scored_garments": len(scored[name]),
            "p10": mean(scored[name]),
            "true_garments": len(per_truth[name]),
            "p10_per_true_garment": mean(per_truth[name]),
        }
        for name in GARMENT_CLASSES
        if scored[name] or per_truth[name]
    }
    return {
        "photos": len(records),
        "scored_garments": sum(len(v) for v in scored.values()),
        "p10_macro": mean(c["p10"] for c in per_class.values()),
        "p10_micro": mean(p for values in scored.values() for p in values),
        "p10_per_true_garment_macro": mean(c["p10_per_true_garment"] for c in per_class.values()),
        "per_class": per_class,
    }


def detection_metrics(records: list[dict]) -> dict[str, Any]:
    totals: dict[str, Counter[str]] = {name: Counter() for name in GARMENT_CLASSES}
    agnostic: Counter[str] = Counter()
    returned = matched = 0
    for record in records:
        counts = record["detection"]
        for name, c in counts["per_class"].items():
            totals[name].update(c)
        agnostic.update(counts["agnostic"])
        returned += counts["returned"]
        matched += counts["returned_matching_class"]
    per_class = {
        name: {**c, "recall": ratio(c["true_positive"], c["ground_truth"])} for name, c in totals.items()
    }
    return {
        "recall_per_class": {name: per_class[name]["recall"] for name in DETECTION_CLASSES},
        "recall_macro": mean(per_class[name]["recall"] for name in DETECTION_CLASSES),
        "recall_class_agnostic": ratio(agnostic["true_positive"], agnostic["ground_truth"]),
        "precision": ratio(matched, returned),
        "returned_boxes": returned,
        "counts": per_class,
    }


def latency(records: list[dict]) -> dict[str, float | None]:
    values = [r["ms"] for r in records]
    if not values:
        return {"median": None, "p90": None}
    return {"median": round(statistics.median(values), 2), "p90": round(float(np.percentile(values, 90)), 2)}


# --- the run --------------------------------------------------------------------------------------


@dataclass
class BuiltIndex:
    embedder: Embedder
    store: Any  # indexer.store.IndexStore
    build: dict[str, Any]


def build_catalogue_index(pipeline: Pipeline, feed: Path, out_dir: Path) -> BuiltIndex:
    """`fashion-search index build` in process: the pipeline's embedder and extractor, its build options."""
    from indexer.build import build_index
    from indexer.store import IndexStore
    from search.runtime import build_extractor, build_options

    embedder = pipeline.make_embedder()
    extractor = build_extractor(pipeline.settings, embedder)
    report = build_index(feed, out_dir, embedder, build_options(pipeline.settings, progress=False), extractor)
    manifest = report.manifest
    log.info("index for %s: %d items in %.1f s", pipeline.name, manifest.count, manifest.build_seconds)
    build = {
        "model": manifest.model_name,
        "items": manifest.count,
        "skipped_rows": manifest.skipped_rows,
        "index_type": manifest.index_type,
        "predicted_attributes": list(manifest.predicted_attributes),
        "seconds": manifest.build_seconds,
        "items_per_s": round(report.items_per_s, 1),
    }
    return BuiltIndex(embedder, IndexStore.open(out_dir, pipeline.settings.milvus_uri), build)


def run_pipeline(
    pipeline: Pipeline,
    index: BuiltIndex,
    queries: list[Product],
    catalogue: list[Product],
    photos: list[StreetPhoto],
) -> dict[str, Any]:
    from search.runtime import build_searcher

    settings = pipeline.settings
    searcher = build_searcher(settings, index.store, index.embedder)
    truth = {p.item_id: p for p in catalogue}
    timed_search(searcher, (photos[0].path if photos else queries[0].path), 1, settings.max_image_pixels)
    progress = Progress(f"{pipeline.name} products", len(queries))
    products = []
    for query in queries:
        result, ms = timed_search(searcher, query.path, TOP_K + 1, settings.max_image_pixels)
        products.append(product_record(query, result, ms, truth))
        progress.step()
    progress = Progress(f"{pipeline.name} street photos", len(photos))
    street = []
    for photo in photos:
        result, ms = timed_search(searcher, photo.path, TOP_K, settings.max_image_pixels)
        street.append(street_record(photo, result, ms))
        progress.step()
    return {
        **pipeline.summary(),
        "models": {"embedder": index.embedder.name, "detector": searcher.detector.name},
        "index": index.build,
        "product_to_product": product_metrics(products, queries, catalogue),
        "street_to_shop": street_metrics(street),
        "detection": detection_metrics(street),
        "attributes": attribute_metrics(products),
        "latency_ms": {"product_query": latency(products), "street_query": latency(street)},
    }


def subsample(items: list, limit: int, seed: int = 0) -> list:
    """A seeded sample of `limit` items in their original order (all of them when limit is 0)."""
    if not limit or limit >= len(items):
        return list(items)
    keep = set(random.Random(seed).sample(range(len(items)), limit))
    return [item for index, item in enumerate(items) if index in keep]


def run(args: argparse.Namespace, pipelines: list[Pipeline]) -> dict[str, Any]:
    from search.runtime import apply_threads

    started = time.perf_counter()
    apply_threads(pipelines[0].settings)
    catalogue = validation_catalogue(args.data)
    queries = [
        query
        for source in SOURCES
        for query in subsample([p for p in catalogue if p.source == source], args.limit)
    ]
    photo_ids = subsample(sorted(ccp_heldout_ids()), args.limit)
    photos = street_photos(args.data / "ccp", photo_ids)
    log.info(
        "catalogue %d items (%s); %d product queries, %d street photos; pipelines %s",
        len(catalogue),
        ", ".join(f"{s} {sum(p.source == s for p in catalogue)}" for s in SOURCES),
        len(queries),
        len(photos),
        ", ".join(p.name for p in pipelines),
    )
    results: dict[str, Any] = {}
    indexes: dict[str, BuiltIndex] = {}
    with tempfile.TemporaryDirectory(prefix="quality-") as tmp:
        feed = write_feed(catalogue, Path(tmp) / "catalogue.jsonl", args.feed_attributes == "labels")
        try:
            for pipeline in pipelines:
                key = pipeline.index_key()
                if key not in indexes:
                    indexes[key] = build_catalogue_index(pipeline, feed, Path(tmp) / f"index-{len(indexes)}")
                pipeline_started = time.perf_counter()
                results[pipeline.name] = run_pipeline(pipeline, indexes[key], queries, catalogue, photos)
                results[pipeline.name]["seconds"] = round(time.perf_counter() - pipeline_started, 1)
        finally:
            for index in indexes.values():
                index.store.close()
    categories = Counter(p.category for p in catalogue)
    return {
        "benchmark": "quality: search quality on held-out real photos through the CLI code path (issue 15)",
        "finished_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python -m benchmarks.quality " + " ".join(sys.argv[1:]),
        "quick": bool(args.limit),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {**machine_info(), "torch_threads": _torch_threads()},
        "data": {
            "root": str(args.data),
            "catalogue": "fpi-train validation products (models.fashion_net.fpi.split_fpi: seeded 10% of the "
            "fashion product ids, seed 0) + held-out clothing photos (split_clothing, 15% per label, seed 0)",
            "catalogue_items": {s: sum(p.source == s for p in catalogue) for s in SOURCES},
            "catalogue_categories": dict(sorted(categories.items())),
            "feed_attributes": args.feed_attributes,
            "product_queries": {s: sum(q.source == s for q in queries) for s in SOURCES},
            "street_queries": "held-out CCP photos (models.fashion_net.data.ccp_heldout_ids, 90)",
            "street_photos": len(photos),
            "street_truth": "connected components of each coarse class in the CCP mask, components under "
            "0.2% of the photo ignored, same-class fragments merged as the detector merges them",
            "street_true_garments": dict(Counter(t.category for p in photos for t in p.truth)),
            "limit": args.limit,
        },
        "method": {
            "top_k": TOP_K,
            "iou": IOU,
            "ece_bins": ECE_BINS,
            "search": "OutfitSearcher.search(image, SearchRequest(top_k)) built by search.runtime from each "
            "pipeline's Settings; the catalogue indexed by indexer.build.build_index from a JSON Lines feed",
            "product_query": "the first garment's matches (top 11, the query itself removed, first 10)",
            "relevance": "same article type: the project's merged article vocabulary (fpi articleType; "
            "clothing labels through CLOTHING_ARTICLE); colour: fpi.COLOUR_MAP (clothing has no colours)",
            "latency": "wall time of OutfitSearcher.search per query, decode excluded",
        },
        "pipelines": results,
    }


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


# --- the report -----------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.0f}"
    return str(value)


def _get(data: dict, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


HEADLINE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("product → product P@10 same type (all)", ("product_to_product", "all", "p10_same_type")),
    ("… fpi", ("product_to_product", "fpi", "p10_same_type")),
    ("… clothing", ("product_to_product", "clothing", "p10_same_type")),
    ("P@10 same type and colour (fpi)", ("product_to_product", "fpi", "p10_same_type_and_colour")),
    ("exactly one garment (all)", ("product_to_product", "all", "exactly_one_garment")),
    ("… fpi", ("product_to_product", "fpi", "exactly_one_garment")),
    ("… clothing", ("product_to_product", "clothing", "exactly_one_garment")),
    ("garments per product query", ("product_to_product", "all", "garments_per_query")),
    ("colour named right, top-1 (fpi)", ("product_to_product", "fpi", "colour_top1")),
    ("colour named right, top-2 (fpi)", ("product_to_product", "fpi", "colour_top2")),
    ("street → shop category P@10, macro", ("street_to_shop", "p10_macro")),
    ("… scored garments", ("street_to_shop", "scored_garments")),
    ("… per true garment (missed = 0), macro", ("street_to_shop", "p10_per_true_garment_macro")),
    ("detection recall @0.5, macro of 8", ("detection", "recall_macro")),
    ("detection recall, class-agnostic", ("detection", "recall_class_agnostic")),
    ("detection precision", ("detection", "precision")),
    ("median ms, product query", ("latency_ms", "product_query", "median")),
    ("median ms, street query", ("latency_ms", "street_query", "median")),
    ("index build items/s", ("index", "items_per_s")),
)


def markdown(report: dict[str, Any]) -> str:
    pipelines = report["pipelines"]
    names = list(pipelines)
    machine, data = report["machine"], report["data"]
    head = "| | " + " | ".join(names) + " |"
    rule = "|---|" + "---|" * len(names)
    lines = [
        "# Search quality on held-out real data",
        "",
        f"{report['finished_at']}, {report['seconds']} s on {machine['cpu']} ({machine['cores']} cores). "
        f"`{report['command']}`" + (" QUICK RUN (--limit): not the published figures." * report["quick"]),
        "",
        f"Catalogue: {data['catalogue_items']} items (feed attributes: {data['feed_attributes']}); queries: "
        f"{data['product_queries']} product photos, {data['street_photos']} CCP street photos.",
        "",
        head,
        rule,
    ]
    for label, path in HEADLINE:
        lines.append(f"| {label} | " + " | ".join(_cell(_get(pipelines[n], *path)) for n in names) + " |")
    lines.append(
        "| P@10 ceiling same type / and colour (fpi) | "
        + " | ".join(
            f"{_cell(_get(pipelines[n], 'product_to_product', 'fpi', 'p10_same_type_ceiling'))} / "
            f"{_cell(_get(pipelines[n], 'product_to_product', 'fpi', 'p10_same_type_and_colour_ceiling'))}"
            for n in names
        )
        + " |"
    )
    lines += ["", "## Street → shop category P@10 per true class (scored garments)", "", head, rule]
    for name in GARMENT_CLASSES:
        cells = []
        for n in names:
            c = _get(pipelines[n], "street_to_shop", "per_class", name)
            cells.append(f"{_cell(c['p10'])} ({c['scored_garments']})" if c else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Detection: box recall at IoU ≥ 0.5 per class (ground truth boxes)", "", head, rule]
    for name in DETECTION_CLASSES:
        cells = []
        for n in names:
            c = _get(pipelines[n], "detection", "counts", name) or {}
            cells.append(f"{_cell(c.get('recall'))} (of {c.get('ground_truth', 0)})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Attributes predicted on product queries: accuracy / ECE (predicted of labelled)",
        "",
        head,
        rule,
    ]
    groups = sorted({g for n in names for g in pipelines[n]["attributes"]})
    for group in groups:
        for source in ("all", *SOURCES):
            cells = []
            for n in names:
                c = _get(pipelines[n], "attributes", group, source)
                cells.append(
                    f"{_cell(c['accuracy'])} / {_cell(c['ece'])} ({c['predicted']} of {c['labelled']})"
                    if c
                    else "–"
                )
            if any(c != "–" for c in cells):
                lines.append(f"| {group} ({source}) | " + " | ".join(cells) + " |")
    lines += ["", "## What product queries come back as (first garment lists, most common)", ""]
    for n in names:
        for source in SOURCES:
            shapes = _get(pipelines[n], "product_to_product", source, "most_common_garment_lists") or []
            shown = ", ".join(f"{s['categories']} {s['share']:.0%}" for s in shapes[:5])
            lines.append(f"- {n}, {source}: {shown}")
    lines += ["", "## First garment's category on product queries, by true category", "", head, rule]
    first = _get(pipelines[names[0]], "product_to_product", "all", "first_garment_category_by_true_category")
    for truth in first or {}:
        cells = []
        for n in names:
            found = _get(pipelines[n], "product_to_product", "all", "first_garment_category_by_true_category")
            shares = (found or {}).get(truth, [])
            cells.append(", ".join(f"{c['category']} {c['share']:.0%}" for c in shares) or "–")
        lines.append(f"| {truth} | " + " | ".join(cells) + " |")
    lines += ["", "Pipelines:", ""]
    for n in names:
        lines.append(f"- **{n}**: {pipelines[n]['description']} (`{pipelines[n]['models']['embedder']}`)")
    lines += ["", "Definitions: see the docstring of `benchmarks/quality.py` and `method` in the JSON."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "quality.json")
    parser.add_argument("--limit", type=int, default=0, help="a seeded sample of N queries per source")
    parser.add_argument(
        "--pipelines",
        default=os.environ.get("FASHION_QUALITY_PIPELINES", DEFAULT_PIPELINES),
        help=f"comma-separated named pipelines (default {DEFAULT_PIPELINES})",
    )
    parser.add_argument(
        "--feed-attributes",
        choices=("labels", "none"),
        default="labels",
        help="labels: the feed carries colour/gender/style as a shop's would; none: the index predicts them",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    missing = missing_data(args.data)
    if missing:
        sys.exit(f"quality: data not found ({missing[0]}); pass --data pointing at shared/data")
    if args.limit < 0:
        sys.exit("quality: --limit must be >= 0")
    try:
        pipelines = parse_pipelines(args.pipelines, Settings())
    except ValueError as exc:
        sys.exit(f"quality: {exc}")
    report = run(args, pipelines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = markdown(report)
    args.out.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text, flush=True)
    log.info("wrote %s and %s", args.out, args.out.with_suffix(".md"))


if __name__ == "__main__":
    main()
