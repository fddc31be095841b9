"""Style profiles on a real catalogue: simulated shoppers with hidden preferences (issue 21).

    python -m benchmarks.profile_quality --data ../shared/data [--shoppers 200] [--seed 0]
        [--boosts 0.05,0.1,0.15,0.2,0.3,0.4,0.5] [--out benchmarks/results/profile_quality.json]

Catalogue: the validation catalogue of benchmarks/quality.py (fpi-train validation products + held-out
clothing photos), its feed carrying the shop's colour, gender and style labels and a synthetic price per
item (the data has no prices: benchmarks/profile_sim.py), indexed by `indexer.build.build_index` and
searched by the service's `OutfitSearcher` (default settings), as `fashion-search` does.

Each shopper (benchmarks/profile_sim.py: hidden colours, style, price band; noisy, partial quiz answers)
  1. searches product photos (fpi validation photos), looks at the top 10 of each, ranked under their
     profile so far, and clicks the results that fit them until they have clicked 5 (or made 20
     searches); each click teaches the profile (`search.profile.learned_from`, as a `click` event with the
     profile's id does);
  2. then searches 5 other product photos; each is ranked under four profiles:
       none         no profile (today's ranking)
       quiz         the quiz's answers (`search.query.style_profile`, as a request's `profile`)
       clicks       what 5 clicks taught an empty profile (learning without the quiz)
       quiz_clicks  the quiz's answers and what the clicks taught (learning started from the quiz)
Metrics over the evaluation searches (the query item itself never counts): nDCG@10 of the fitting items
(binary; the ideal list holds min(10, fitting items in the catalogue); searches for which the catalogue
has no fitting item are left out and counted), category P@10 (the share of the top 10 in the query's
category: the visual relevance the profile must not cost), article-type P@10 and the mean visual score
(cosine similarity to the photo) of the top 10. `pool_scores` gives the scale: how far apart the scores of
a searched pool lie without a profile.

Every condition and every `profile_max_boost` of the sweep re-ranks the same candidate pool (each photo is
searched once; `RankedPool.of` with the profile is what `search` does with one, see the test), so the
figures of one boost are paired with the others'. `chosen` names the boost with the largest quiz + clicks
nDCG among those that cost at most 0.02 of category P@10 and of article-type P@10 (the issue's bar is the
category; the candidate pool is already restricted to compatible categories, so the article type, a T-shirt
rather than a shirt, is where an overweight profile would show first) and that lift an item by no more than
the median gap between a pool's 1st and 10th scores (`choose`): simulated shoppers care only for what fits
them, a real one also for what looks like their photo.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.machine import machine_info
from benchmarks.profile_sim import (
    QUIZ_NOISE,
    TOP_K,
    Shopper,
    make_shopper,
    ndcg_at_k,
    price_bands,
    quiz_answers,
    synthetic_price,
)
from benchmarks.quality_data import Product, missing_data, validation_catalogue, write_feed
from indexer.metadata import ItemRecord
from models.attributes.taxonomy import load_taxonomy
from search.profile import StyleProfile, learned_from
from search.query import style_profile
from search.ranking import RankedPool, RankingConfig
from search.searcher import OutfitSearcher, SearchRequest
from search.settings import Settings

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
CONDITIONS = ("none", "quiz", "clicks", "quiz_clicks")
LEARNING_SEARCHES = 20  # searches a shopper makes at most to give their 5 clicks
MAX_CLICKS = 5
EVALUATION_SEARCHES = 5
DEFAULT_BOOSTS = "0.05,0.1,0.15,0.2,0.3,0.4,0.5"
P10 = ("category_p_at_10", "article_p_at_10")
MAX_P10_COST = 0.02
TARGET_GAIN = 0.30
BOOTSTRAP = 1000
LOG_EVERY_S = 15.0


def ranked_ids(
    pool: RankedPool, profile: StyleProfile | None, config: RankingConfig, exclude: str | None = None
) -> list[str]:
    """The top 10 item ids of a searched pool re-ranked under `profile` and `config`."""
    ranked = RankedPool.of(pool.candidates, pool.garment_values, config, pool.refinement, profile)
    return [c.item.item_id for c in ranked.candidates if c.item.item_id != exclude][:TOP_K]


class Searches:
    """Each product photo searched once through the real searcher (on first use): its first garment's pool."""

    def __init__(self, searcher: OutfitSearcher, max_pixels: int) -> None:
        self._searcher = searcher
        self._max_pixels = max_pixels
        self._pools: dict[str, RankedPool | None] = {}
        self.ms: list[float] = []

    def spread(self) -> dict[str, float]:
        """How far apart the searched pools' scores lie (no profile): medians of the best score minus the
        10th and minus the last, the scale a profile's boost is measured against."""
        pools = [p.scores for p in self._pools.values() if p is not None and len(p.scores) >= TOP_K]
        return {
            "first_minus_10th_median": round(statistics.median(s[0] - s[TOP_K - 1] for s in pools), 4),
            "first_minus_last_median": round(statistics.median(s[0] - s[-1] for s in pools), 4),
            "pool_size_median": statistics.median(len(s) for s in pools),
        }

    def pool(self, product: Product) -> RankedPool | None:
        from models.images import decode_image

        if product.item_id not in self._pools:
            image = decode_image(product.path.read_bytes(), self._max_pixels)
            started = time.perf_counter()
            result = self._searcher.search(image, SearchRequest(top_k=TOP_K + 1))
            self.ms.append((time.perf_counter() - started) * 1000)
            self._pools[product.item_id] = result.garments[0].pool if result.garments else None
        return self._pools[product.item_id]


@dataclass(frozen=True)
class Plan:
    """One shopper's hidden taste, quiz profile and photos, drawn once for every boost of the sweep."""

    shopper: Shopper
    quiz: StyleProfile
    learning: tuple[Product, ...]
    evaluation: tuple[Product, ...]


@dataclass
class World:
    products: dict[str, Product]
    prices: dict[str, float]
    records: dict[str, ItemRecord]
    searches: Searches
    fitting_counts: dict[tuple[Shopper, str], int] = field(default_factory=dict)

    def fits(self, shopper: Shopper, item_id: str, category: str) -> bool:
        return shopper.fits(self.products[item_id], self.prices[item_id], category)

    def fitting(self, shopper: Shopper, query: Product) -> int:
        """Catalogue items (the query aside) fitting the shopper's search; counted once for every boost."""
        key = (shopper, query.item_id)
        if key not in self.fitting_counts:
            self.fitting_counts[key] = sum(
                self.fits(shopper, i, query.category) for i in self.products if i != query.item_id
            )
        return self.fitting_counts[key]

    def learn(self, plan: Plan, start: StyleProfile, config: RankingConfig) -> tuple[StyleProfile, int]:
        """The profile after the learning searches: the shopper clicks what fits them, 5 clicks at most."""
        profile = start
        clicked: list[str] = []
        for query in plan.learning:
            pool = self.searches.pool(query)
            for item_id in ranked_ids(pool, profile, config, query.item_id) if pool else []:
                if len(clicked) < MAX_CLICKS and item_id not in clicked:
                    if self.fits(plan.shopper, item_id, query.category):
                        profile = learned_from(profile, self.records[item_id], "click")
                        clicked.append(item_id)
            if len(clicked) >= MAX_CLICKS:
                break
        return profile, len(clicked)

    def evaluate(self, plan: Plan, config: RankingConfig) -> tuple[list[dict[str, Any]], int, int]:
        """Per evaluation search and condition (nDCG@10, category P@10, article P@10); searches left out;
        clicks made (quiz + clicks)."""
        with_quiz, clicks = self.learn(plan, plan.quiz, config)
        profiles = {"none": None, "quiz": plan.quiz, "clicks": self.learn(plan, StyleProfile(), config)[0],
                    "quiz_clicks": with_quiz}  # fmt: skip
        rows, left_out = [], 0
        for query in plan.evaluation:
            pool = self.searches.pool(query)
            relevant = self.fitting(plan.shopper, query)
            if pool is None or relevant == 0:
                left_out += 1
                continue
            row = {}
            visual = {c.item.item_id: c.visual_score for c in pool.candidates}
            for condition, profile in profiles.items():
                top = ranked_ids(pool, profile, config, query.item_id)
                row[condition] = (
                    ndcg_at_k([self.fits(plan.shopper, i, query.category) for i in top], relevant),
                    sum(self.products[i].category == query.category for i in top) / TOP_K,
                    sum(self.products[i].article == query.article for i in top) / TOP_K,
                    statistics.fmean(visual[i] for i in top) if top else 0.0,
                )
            rows.append(row)
        return rows, left_out, clicks


def make_plans(catalogue: list[Product], prices: dict[str, float], shoppers: int, seed: int) -> list[Plan]:
    taxonomy = load_taxonomy()
    fpi = [p for p in catalogue if p.source == "fpi"]
    colours = Counter(p.labels["colour"] for p in fpi if "colour" in p.labels)
    styles = Counter(p.labels["style"] for p in fpi if "style" in p.labels)
    bands = price_bands(list(prices.values()))
    plans = []
    for index in range(shoppers):
        rng = random.Random(f"{seed}-{index}")
        shopper = make_shopper(rng, colours, styles, bands)
        quiz = style_profile(quiz_answers(shopper, rng, sorted(colours)), taxonomy)
        photos = rng.sample(fpi, LEARNING_SEARCHES + EVALUATION_SEARCHES)
        plans.append(
            Plan(shopper, quiz, tuple(photos[:LEARNING_SEARCHES]), tuple(photos[LEARNING_SEARCHES:]))
        )
    return plans


def _mean(values: Sequence[float]) -> float:
    return round(statistics.fmean(values), 4) if values else 0.0


def _gain(rows: Sequence[dict[str, Any]], condition: str) -> float | None:
    base = sum(r["none"][0] for r in rows)
    return sum(r[condition][0] for r in rows) / base - 1 if base else None


def summarise(per_shopper: list[list[dict[str, Any]]], clicks: list[int], left_out: int, seed: int) -> dict:
    rows = [row for rows in per_shopper for row in rows]
    conditions = {
        c: {
            "ndcg_at_10": _mean([r[c][0] for r in rows]),
            "category_p_at_10": _mean([r[c][1] for r in rows]),
            "article_p_at_10": _mean([r[c][2] for r in rows]),
            "visual_score_at_10": _mean([r[c][3] for r in rows]),
        }
        for c in CONDITIONS
    }
    rng = random.Random(seed)
    resampled = []
    for _ in range(BOOTSTRAP):
        picked = [
            row for i in rng.choices(range(len(per_shopper)), k=len(per_shopper)) for row in per_shopper[i]
        ]
        gain = _gain(picked, "quiz_clicks")
        if gain is not None:
            resampled.append(gain)
    resampled.sort()
    gain = _gain(rows, "quiz_clicks")
    costs = {  # how much lower than without a profile
        f"{name}_cost": {
            c: round(conditions["none"][metric] - conditions[c][metric], 4) for c in CONDITIONS[1:]
        }
        for name, metric in (("category_p10", "category_p_at_10"), ("article_p10", "article_p_at_10"),
                             ("visual_score", "visual_score_at_10"))
    }  # fmt: skip
    ci = [round(resampled[int(0.025 * len(resampled))], 4), round(resampled[int(0.975 * len(resampled))], 4)]
    return {
        "conditions": conditions,
        "ndcg_gain": {c: None if (g := _gain(rows, c)) is None else round(g, 4) for c in CONDITIONS[1:]},
        "ndcg_gain_quiz_clicks_ci95": ci if resampled else None,
        **costs,
        "target_met": gain is not None
        and gain >= TARGET_GAIN
        and costs["category_p10_cost"]["quiz_clicks"] <= MAX_P10_COST,
        "evaluation_searches": len(rows),
        "left_out_searches": left_out,
        "clicks_mean": _mean(clicks),
    }


def simulate(world: World, plans: list[Plan], config: RankingConfig, seed: int) -> dict[str, Any]:
    per_shopper, clicks, left_out = [], [], 0
    last = time.monotonic()
    for index, plan in enumerate(plans, 1):
        rows, skipped, made = world.evaluate(plan, config)
        per_shopper.append(rows)
        clicks.append(made)
        left_out += skipped
        if time.monotonic() - last >= LOG_EVERY_S or index == len(plans):
            log.info("boost %.2f: %d/%d shoppers", config.profile_max_boost, index, len(plans))
            last = time.monotonic()
    return summarise(per_shopper, clicks, left_out, seed)


def choose(sweep: dict[str, dict[str, Any]], spread: dict[str, float]) -> dict[str, Any]:
    """The default bound: the best quiz + clicks nDCG among the boosts that cost at most MAX_P10_COST of
    category and of article-type P@10 and that lift an item by no more than a pool's median gap between its
    1st and 10th scores (an item from page two can reach page one; one deep in the 100-candidate pool
    cannot jump over the best visual matches, whatever the profile)."""
    gap = spread["first_minus_10th_median"]
    within = [
        b
        for b, r in sweep.items()
        if max(r["category_p10_cost"]["quiz_clicks"], r["article_p10_cost"]["quiz_clicks"]) <= MAX_P10_COST
        and float(b) <= gap
    ]
    best = max(within, key=lambda b: sweep[b]["conditions"]["quiz_clicks"]["ndcg_at_10"], default=None)
    rule = (
        f"largest quiz + clicks nDCG@10 with category and article-type P@10 costs <= {MAX_P10_COST} and a "
        f"boost <= the median 1st-to-10th score gap of a pool ({gap})"
    )
    return {"rule": rule, "boost": best}


def timed(calls: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        calls()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


def run(args: argparse.Namespace, boosts: list[float]) -> dict[str, Any]:
    from benchmarks.quality import build_catalogue_index, parse_pipelines
    from search.runtime import apply_threads, build_searcher

    started = time.perf_counter()
    settings = Settings()
    apply_threads(settings)
    catalogue = validation_catalogue(args.data)
    prices = {p.item_id: synthetic_price(p.item_id, p.category) for p in catalogue}
    plans = make_plans(catalogue, prices, args.shoppers, args.seed)
    with tempfile.TemporaryDirectory(prefix="profile-quality-") as tmp:
        priced = {item_id: {"price": price, "currency": "EUR"} for item_id, price in prices.items()}
        feed = write_feed(catalogue, Path(tmp) / "catalogue.jsonl", with_labels=True, extra=priced)
        built = build_catalogue_index(parse_pipelines("ours", settings)[0], feed, Path(tmp) / "index")
        try:
            searcher = build_searcher(settings, built.store, built.embedder)
            records = {p.item_id: searcher.item(p.item_id) for p in catalogue}
            world = World(
                {p.item_id: p for p in catalogue},
                prices,
                records,
                Searches(searcher, settings.max_image_pixels),
            )
            base = settings.ranking
            sweep = {}
            for boost in boosts:
                config = base.model_copy(update={"profile_max_boost": boost})
                sweep[f"{boost:g}"] = simulate(world, plans, config, args.seed)
            sample = next(p for p in plans[0].evaluation + plans[0].learning if world.searches.pool(p))
            pool = world.searches.pool(sample)
            assert pool is not None
            rerank_ms = timed(lambda: ranked_ids(pool, plans[0].quiz, base), 50)
            spread = world.searches.spread()
        finally:
            built.store.close()
    default = f"{RankingConfig().profile_max_boost:g}"
    return {
        "benchmark": "profile_quality: style profiles for simulated shoppers on a real catalogue (issue 21)",
        "finished_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python -m benchmarks.profile_quality " + " ".join(sys.argv[1:]),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": machine_info(),
        "data": {
            "root": str(args.data),
            "catalogue_items": len(catalogue),
            "catalogue": "fpi-train validation products + held-out clothing photos "
            "(benchmarks/quality_data.py)",
            "prices": "synthetic: the data has no prices; log-uniform per item around a category base "
            "(benchmarks/profile_sim.py), price bands are the terciles",
            "price_bands": [list(b) for b in price_bands(list(prices.values()))],
            "queries": "fpi validation product photos (clothing has no colour or style labels: its items are "
            "in the catalogue but never count as fitting)",
        },
        "method": {
            "shoppers": args.shoppers,
            "seed": args.seed,
            "learning_searches": LEARNING_SEARCHES,
            "max_clicks": MAX_CLICKS,
            "evaluation_searches_per_shopper": EVALUATION_SEARCHES,
            "quiz_noise": QUIZ_NOISE,
            "ranking": base.model_dump(exclude={"group_weights"}),
            "bootstrap": f"{BOOTSTRAP} resamples of shoppers, 95% interval of the quiz + clicks nDCG gain",
        },
        "target": {"ndcg_gain_quiz_clicks": TARGET_GAIN, "max_category_p10_cost": MAX_P10_COST},
        "default_boost": default,
        "at_default": sweep.get(default),
        "sweep": sweep,
        "chosen": choose(sweep, spread),
        "latency_ms": {
            "search_median": round(statistics.median(world.searches.ms), 2),
            "searches": len(world.searches.ms),
            "rerank_pool_median": rerank_ms,
        },
        "pool_scores": spread,
    }


def parse_boosts(text: str) -> list[float]:
    try:
        boosts = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--boosts must be comma-separated numbers, got {text!r}") from None
    if not boosts or any(not 0 < b <= 0.5 for b in boosts):
        raise ValueError(f"--boosts must be in (0, 0.5] (ranking.profile_max_boost), got {text!r}")
    return boosts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "profile_quality.json")
    parser.add_argument("--shoppers", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--boosts", default=DEFAULT_BOOSTS, help=f"profile_max_boost values (default {DEFAULT_BOOSTS})"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    missing = missing_data(args.data)
    if missing:
        sys.exit(f"profile_quality: data not found ({missing[0]}); pass --data pointing at shared/data")
    if args.shoppers < 1:
        sys.exit("profile_quality: --shoppers must be >= 1")
    try:
        boosts = parse_boosts(args.boosts)
    except ValueError as exc:
        sys.exit(f"profile_quality: {exc}")
    report = run(args, boosts)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for boost, result in report["sweep"].items():
        c = result["conditions"]
        ndcg = [c[name]["ndcg_at_10"] for name in CONDITIONS]
        p10 = [c[name][metric] for name in ("none", "quiz_clicks") for metric in P10]
        log.info(
            "boost %s: nDCG@10 none %.4f quiz %.4f clicks %.4f quiz+clicks %.4f (gain %+.1f%%); "
            "category P@10 %.4f, article P@10 %.4f -> %.4f, %.4f",
            boost, *ndcg, 100 * (result["ndcg_gain"]["quiz_clicks"] or 0), *p10,
        )  # fmt: skip
    log.info("chosen: %s; wrote %s", report["chosen"], args.out)


if __name__ == "__main__":
    main()
