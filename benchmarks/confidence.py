"""Calibrate `Settings.confident_score` on real held-out photos (issue 18): the best-match score below which
a garment is reported `confident: false` ("no close match").

    python -m benchmarks.confidence --data ../shared/data [--limit N]
                                    [--out benchmarks/results/confidence.json]

Everything runs through the service's default pipeline: `Settings()` (defaults and FASHION_* variables),
the catalogue indexed by `indexer.build.build_index` and searched by the `OutfitSearcher` that
`search.runtime.build_searcher` makes (the shipped fashion-net-v3 embedder and garment parser). A garment's
score is the final ranked `score` of its best match (search/ranking.py), the number the threshold is
compared with.

Data (benchmarks/quality_data.py, the validation data of benchmarks/quality.py, never seen in training):
the catalogue is the fpi-train validation products plus the held-out clothing photos; the queries are
- product photos: every catalogue photo, its own item excluded from its matches; the first garment counts.
  Its best match is right when it has the query's article type (the merged vocabulary of quality.py);
  "type and colour" (fpi, colour labels) is reported beside it, not used by the rule.
- street photos: the 90 held-out CCP photos; every returned garment whose box has IoU >= 0.5 with a
  ground-truth garment counts, right when its best match's catalogue category is the true garment's class
  (as quality.py's street -> shop). Returned garments on no true garment are reported, not used.

Right-type-absent cases (a shop that does not sell what the shopper photographed; every best match is
wrong by construction), each in a variant catalogue built the same way:
- product: article-type folds. Article types with >= MIN_TYPE_QUERIES validation products whose category
  group (categories joined by the taxonomy's `compatible`, e.g. top + outerwear) keeps >= MIN_LEFT items
  without them are eligible; fold i removes the i-th most common eligible type of every group, and the
  removed types' products are the queries.
- street: category variants. A category whose garments may also match another catalogue category
  (`compatible`: top <-> outerwear) is removed whole; the street garments of that true class are the
  queries. Removing any other category leaves its garments with no matches at all, no threshold involved.

Rule (fixed before the first full run): a garment is confident when its best match's score >= t. For a
query kind (street garments; product photos), TPR(t) = right best matches marked confident / right best
matches, FPR(t) = wrong best matches marked confident / wrong best matches, each kind pooling its
full-catalogue and its right-type-absent garments. The threshold is the t on a 0.01 grid that maximises
the balanced Youden's J = mean over the two kinds of TPR(t) - FPR(t) (each kind weighs the same, however
many garments it has); ties go to the lowest t. The JSON has the sweep, coverage / precision /
wrong-rejected at the chosen t per kind, source and subset, and the J-best t of each kind alone with both
kinds' figures there (street and product scores differ: one threshold is a compromise between them).

--limit N: a quick run (N product queries per source and per removed type, N street photos, the first N
folds and category variants); not a calibration. No randomness beyond quality.py's seeded `subsample`.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.arguments import argument_parser
from benchmarks.machine import machine_info
from benchmarks.quality import (
    Progress,
    assign_truth,
    build_catalogue_index,
    parse_pipelines,
    ratio,
    subsample,
    timed_search,
)
from benchmarks.quality_data import (
    SOURCES,
    Product,
    StreetPhoto,
    missing_data,
    street_photos,
    validation_catalogue,
    write_feed,
)
from indexer.store import IndexStore
from models.attributes.taxonomy import Taxonomy, load_taxonomy
from models.fashion_net.data import ccp_heldout_ids
from search.searcher import OutfitResult, OutfitSearcher
from search.settings import Settings

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
KINDS = ("street", "product")
GRID_STEP = 0.01
MIN_TYPE_QUERIES = 20  # an article type needs this many validation products to be held out
MIN_LEFT = 5  # ... and its category group must keep this many items without it
RULE = (
    "confident when the best match's score >= t; t = the 0.01-grid value maximising the balanced Youden's "
    "J = mean over the query kinds (street garments, product photos) of TPR - FPR, where TPR = right best "
    "matches marked confident / right best matches and FPR = wrong best matches marked confident / wrong "
    "best matches, each kind pooling its full-catalogue and right-type-absent garments; ties: lowest t"
)


@dataclass(frozen=True)
class Outcome:
    """One scored garment: its best match's score and whether that match is of the right type."""

    kind: str  # "street" or "product"
    subset: str  # "full" (the whole catalogue) or "absent" (a variant without the garment's type)
    source: str  # "ccp", "fpi" or "clothing"
    truth: str  # the true article type (product) or class (street)
    score: float
    right: bool
    right_colour: bool | None = None  # type and colour right (product queries with a colour label)


# --- the rule (pure) ------------------------------------------------------------------------------


def threshold_grid(scores: Iterable[float], step: float = GRID_STEP) -> list[float]:
    """Multiples of `step` from the last one at or below the lowest score to the first one above the
    highest (so the grid runs from "all confident" to "none confident")."""
    values = list(scores)
    if not values:
        return []
    low = math.floor(min(values) / step + 1e-9)
    high = math.floor(max(values) / step + 1e-9) + 1
    return [round(i * step, 6) for i in range(low, high + 1)]


def youden(outcomes: Sequence[tuple[float, bool]], threshold: float) -> float:
    """TPR - FPR of "confident when score >= threshold"; ValueError without both right and wrong cases."""
    right = [score for score, ok in outcomes if ok]
    wrong = [score for score, ok in outcomes if not ok]
    if not right or not wrong:
        raise ValueError(f"need right and wrong best matches, got {len(right)} right and {len(wrong)} wrong")
    tpr = sum(score >= threshold for score in right) / len(right)
    fpr = sum(score >= threshold for score in wrong) / len(wrong)
    return tpr - fpr


def balanced_youden(kinds: Mapping[str, Sequence[tuple[float, bool]]], threshold: float) -> float:
    return statistics.fmean(youden(outcomes, threshold) for outcomes in kinds.values())


def choose_threshold(kinds: Mapping[str, Sequence[tuple[float, bool]]], grid: Sequence[float]) -> float:
    """The grid value with the highest balanced Youden's J over `kinds` (kind -> (score, right) pairs);
    ties go to the lowest value."""
    if not grid or not kinds:
        raise ValueError("need a non-empty grid and at least one kind of query")
    best = max(balanced_youden(kinds, t) for t in grid)
    return min(t for t in grid if balanced_youden(kinds, t) >= best - 1e-12)


def rates(outcomes: Sequence[tuple[float, bool]], threshold: float) -> dict[str, Any]:
    """Coverage (share confident), precision of the confident ones, right ones confident, wrong ones not."""
    confident = [ok for score, ok in outcomes if score >= threshold]
    right = sum(ok for _, ok in outcomes)
    wrong = len(outcomes) - right
    return {
        "garments": len(outcomes),
        "right": right,
        "confident": ratio(len(confident), len(outcomes)),
        "precision": ratio(sum(confident), len(confident)),
        "right_confident": ratio(sum(confident), right),
        "wrong_not_confident": ratio(wrong - (len(confident) - sum(confident)), wrong),
    }


# --- the variant catalogues -----------------------------------------------------------------------


def category_groups(categories: Iterable[str], taxonomy: Taxonomy) -> dict[str, str]:
    """Each category -> its group: the categories joined to it by `compatible` (either way), "+"-joined."""
    present = sorted(set(categories))
    group = {c: {c} for c in present}
    for category in present:
        for other in taxonomy.compatible_categories(category):
            if other in group and group[other] is not group[category]:
                merged = group[category] | group[other]
                for member in merged:
                    group[member] = merged
    return {c: "+".join(sorted(group[c])) for c in present}


def type_folds(
    products: Sequence[Product], groups: Mapping[str, str], min_queries: int = MIN_TYPE_QUERIES,
    min_left: int = MIN_LEFT,
) -> list[dict[str, str]]:  # fmt: skip
    """Fold i: group -> the i-th most common eligible article type of that group (see the docstring)."""
    per_group: dict[str, Counter[str]] = defaultdict(Counter)
    for product in products:
        per_group[groups[product.category]][product.article] += 1
    eligible = {
        group: [
            article
            for article, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            if n >= min_queries and sum(counts.values()) - n >= min_left
        ]
        for group, counts in per_group.items()
    }
    folds = max((len(types) for types in eligible.values()), default=0)
    return [
        {group: types[i] for group, types in sorted(eligible.items()) if i < len(types)} for i in range(folds)
    ]


def absent_categories(categories: Iterable[str], taxonomy: Taxonomy) -> list[str]:
    """Categories whose garments may also match another category of the catalogue (top <-> outerwear)."""
    present = set(categories)
    return sorted(c for c in present if set(taxonomy.compatible_categories(c)) & (present - {c}))


# --- scoring the searches -------------------------------------------------------------------------


def product_outcome(
    query: Product, result: OutfitResult, truth: Mapping[str, Product], subset: str
) -> Outcome | str:
    """The first garment's best match other than the query itself; a reason string when there is none."""
    if not result.garments:
        return "no garment"
    others = [m for m in result.garments[0].matches if m.item.item_id != query.item_id]
    if not others:
        return "no matches"
    best = truth[others[0].item.item_id]
    right = best.article == query.article
    colour = query.labels.get("colour")
    return Outcome(
        "product", subset, query.source, query.article, others[0].score, right,
        None if colour is None else right and best.labels.get("colour") == colour,
    )  # fmt: skip


def street_outcomes(
    photo: StreetPhoto, result: OutfitResult, subset: str, only: str | None = None
) -> tuple[list[Outcome], list[float], int]:
    """Garments on a true garment (of class `only`, if given) -> outcomes; the best-match scores of garments
    on no true garment (None when `only`); and the garments with no matches."""
    assigned = assign_truth([g.garment.box for g in result.garments], [t.box for t in photo.truth])
    outcomes, stray, empty = [], [], 0
    for garment, index in zip(result.garments, assigned, strict=True):
        wanted = photo.truth[index].category if index is not None else None
        if only is not None and wanted != only:
            continue
        if not garment.matches:
            empty += 1
        elif wanted is None:
            stray.append(garment.matches[0].score)
        else:
            best = garment.matches[0]
            outcomes.append(
                Outcome("street", subset, "ccp", wanted, best.score, best.item.category == wanted)
            )
    return outcomes, stray, empty


@dataclass
class Collected:
    outcomes: list[Outcome]
    stray: list[float]  # street garments on no true garment: best-match scores
    missing: Counter[str]  # (kind/subset: reason) -> count of queries or garments with no score


def search_products(
    searcher: OutfitSearcher, queries: Sequence[Product], truth: Mapping[str, Product], subset: str,
    settings: Settings, collected: Collected, label: str,
) -> None:  # fmt: skip
    progress = Progress(label, len(queries))
    for query in queries:
        result, _ = timed_search(searcher, query.path, 2, settings.max_image_pixels)
        found = product_outcome(query, result, truth, subset)
        if isinstance(found, Outcome):
            collected.outcomes.append(found)
        else:
            collected.missing[f"product/{subset}: {found}"] += 1
        progress.step()


def search_street(
    searcher: OutfitSearcher, photos: Sequence[StreetPhoto], subset: str, settings: Settings,
    collected: Collected, only: str | None = None,
) -> None:  # fmt: skip
    progress = Progress(f"street {subset}" + (f" without {only}" if only else ""), len(photos))
    for photo in photos:
        result, _ = timed_search(searcher, photo.path, 1, settings.max_image_pixels)
        outcomes, stray, empty = street_outcomes(photo, result, subset, only)
        collected.outcomes += outcomes
        collected.stray += stray
        collected.missing[f"street/{subset}: no matches"] += empty
        progress.step()


def variant_store(
    products: Sequence[Product], searcher: OutfitSearcher, settings: Settings, directory: Path
) -> IndexStore:
    """The catalogue `products` indexed as `fashion-search index build` would, with the searcher's models."""
    from indexer.build import build_index
    from search.runtime import build_options

    feed = write_feed(list(products), directory / "catalogue.jsonl", with_labels=True)
    options = build_options(settings, progress=False)
    build_index(feed, directory / "index", searcher.embedder, options, searcher.extractor)
    return IndexStore.open(directory / "index", settings.milvus_uri)


# --- the report -----------------------------------------------------------------------------------


def pairs(outcomes: Iterable[Outcome], colour: bool = False) -> list[tuple[float, bool]]:
    if colour:
        return [(o.score, bool(o.right_colour)) for o in outcomes if o.right_colour is not None]
    return [(o.score, o.right) for o in outcomes]


def quantiles(scores: Sequence[float]) -> dict[str, float] | None:
    if not scores:
        return None
    ordered = sorted(scores)
    pick = [ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in (0.1, 0.5, 0.9)]
    return {"p10": round(pick[0], 4), "median": round(pick[1], 4), "p90": round(pick[2], 4)}


def at_threshold(collected: Collected, threshold: float) -> dict[str, Any]:
    """The rates at `threshold` per kind: all, full catalogue, right type absent, and per product source."""
    outcomes = collected.outcomes
    at: dict[str, Any] = {}
    for kind in KINDS:
        mine = [o for o in outcomes if o.kind == kind]
        block = {"all": rates(pairs(mine), threshold)}
        for subset in ("full", "absent"):
            block[subset] = rates(pairs(o for o in mine if o.subset == subset), threshold)
        for source in SOURCES if kind == "product" else ():
            block[source] = rates(pairs(o for o in mine if o.source == source), threshold)
        at[kind] = block
    products = (o for o in outcomes if o.kind == "product")
    at["product"]["fpi_type_and_colour"] = rates(pairs(products, colour=True), threshold)
    at["street"]["garments_on_no_true_garment"] = {
        "garments": len(collected.stray),
        "confident": ratio(sum(s >= threshold for s in collected.stray), len(collected.stray)),
    }
    return at


def summarise(collected: Collected) -> dict[str, Any]:
    """The chosen threshold, the figures at it, the score distributions and the sweep. The rule uses the
    kinds that have both right and wrong best matches (all of them, except in a tiny quick run)."""
    outcomes = collected.outcomes
    by_kind = {kind: pairs(o for o in outcomes if o.kind == kind) for kind in KINDS}
    usable = {kind: found for kind, found in by_kind.items() if len({ok for _, ok in found}) == 2}
    grid = threshold_grid(o.score for o in outcomes)
    chosen = choose_threshold(usable, grid) if usable and grid else None
    own = {kind: choose_threshold({kind: found}, grid) for kind, found in usable.items()}  # each kind alone
    sweep = [
        {"threshold": t, "balanced_j": round(balanced_youden(usable, t), 4) if usable else None,
         **{kind: rates(by_kind[kind], t) for kind in KINDS}}
        for t in grid
    ]  # fmt: skip
    scores = {
        f"{kind}/{subset}/{'right' if right else 'wrong'}": quantiles(
            [o.score for o in outcomes if (o.kind, o.subset, o.right) == (kind, subset, right)]
        )
        for kind in KINDS for subset in ("full", "absent") for right in (True, False)
    }  # fmt: skip
    return {
        "confident_score": chosen,
        "rule": RULE,
        "kinds_in_rule": list(usable),
        "balanced_j": round(balanced_youden(usable, chosen), 4) if chosen is not None else None,
        "best_threshold_per_kind": {kind: own[kind] for kind in usable},
        "at_best_threshold_per_kind": {
            kind: {"threshold": own[kind], **{k: rates(by_kind[k], own[kind]) for k in KINDS}}
            for kind in usable
        },
        "at_threshold": at_threshold(collected, chosen) if chosen is not None else None,
        "best_match_scores": scores,
        "unscored": dict(sorted((k, v) for k, v in collected.missing.items() if v)),
        "sweep": sweep,
    }


def run(data: Path, limit: int) -> dict[str, Any]:
    from search.runtime import apply_threads, build_searcher

    started = time.perf_counter()
    settings = Settings()
    (pipeline,) = parse_pipelines("ours", settings)
    apply_threads(settings)
    taxonomy = load_taxonomy()
    catalogue = validation_catalogue(data)
    truth = {p.item_id: p for p in catalogue}
    groups = category_groups((p.category for p in catalogue), taxonomy)
    folds = type_folds(catalogue, groups)[: limit or None]
    removed_categories = absent_categories(groups, taxonomy)[: limit or None]
    queries = [q for s in SOURCES for q in subsample([p for p in catalogue if p.source == s], limit)]
    photos = street_photos(data / "ccp", subsample(sorted(ccp_heldout_ids()), limit))
    collected = Collected([], [], Counter())
    fold_counts = []
    with tempfile.TemporaryDirectory(prefix="confidence-") as tmp:
        feed = write_feed(catalogue, Path(tmp) / "catalogue.jsonl", with_labels=True)
        index = build_catalogue_index(pipeline, feed, Path(tmp) / "index")
        try:
            searcher = build_searcher(settings, index.store, index.embedder)
            search_products(searcher, queries, truth, "full", settings, collected, "products")
            search_street(searcher, photos, "full", settings, collected)
            for number, fold in enumerate(folds):
                held = set(fold.items())
                left = [p for p in catalogue if (groups[p.category], p.article) not in held]
                absent = [
                    q
                    for group, article in sorted(fold.items())
                    for q in subsample(
                        [p for p in catalogue if (groups[p.category], p.article) == (group, article)], limit
                    )
                ]
                store = variant_store(left, searcher, settings, Path(tmp) / f"fold-{number}")
                try:
                    label = f"products, fold {number + 1}/{len(folds)}"
                    search_products(
                        searcher.with_store(store), absent, truth, "absent", settings, collected, label
                    )
                finally:
                    store.close()
                fold_counts.append({"removed": fold, "catalogue_items": len(left), "queries": len(absent)})
            for category in removed_categories:
                left = [p for p in catalogue if p.category != category]
                store = variant_store(left, searcher, settings, Path(tmp) / f"without-{category}")
                try:
                    search_street(searcher.with_store(store), photos, "absent", settings, collected, category)
                finally:
                    store.close()
        finally:
            index.store.close()
    report = summarise(collected)
    counts = Counter((o.kind, o.subset) for o in collected.outcomes)
    return {
        "benchmark": "confidence: the best-match score below which a garment is not `confident` (issue 18)",
        "finished_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python -m benchmarks.confidence " + " ".join(sys.argv[1:]),
        "quick": bool(limit),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {**machine_info(), "torch_threads": _torch_threads()},
        "pipeline": {
            **pipeline.summary(),
            "models": {"embedder": index.embedder.name, "detector": searcher.detector.name},
            "ranking": settings.ranking.model_dump(
                include={"attribute_weight", "prior", "profile_max_boost"}
            ),
            "candidate_pool": settings.candidate_pool,
        },
        "data": {
            "root": str(data),
            "catalogue_items": {s: sum(p.source == s for p in catalogue) for s in SOURCES},
            "product_queries": {s: sum(q.source == s for q in queries) for s in SOURCES},
            "street_photos": len(photos),
            "scored_garments": {f"{kind}/{subset}": n for (kind, subset), n in sorted(counts.items())},
            "category_groups": dict(sorted(groups.items())),
            "type_folds": fold_counts,
            "street_categories_removed": removed_categories,
            "min_type_queries": MIN_TYPE_QUERIES,
            "min_left": MIN_LEFT,
            "limit": limit,
        },
        **report,
    }


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> None:
    parser = argument_parser(__doc__, str(REPO / "benchmarks" / "results" / "confidence.json"), threads=None)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--limit", type=int, default=0, help="a quick run: N queries per source and type")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    missing = missing_data(args.data)
    if missing:
        sys.exit(f"confidence: data not found ({missing[0]}); pass --data pointing at shared/data")
    if args.limit < 0:
        sys.exit("confidence: --limit must be >= 0")
    report = run(args.data, args.limit)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    at = report["at_threshold"]
    shown = {kind: at[kind]["all"] for kind in KINDS} if at else "no threshold (too few garments)"
    print(f"confident_score {report['confident_score']} (balanced J {report['balanced_j']}): {shown}")
    log.info("wrote %s in %.0f s", args.out, report["seconds"])


if __name__ == "__main__":
    main()
