"""benchmarks/profile_quality.py and profile_sim.py: the re-ranked pool is the real search's ranking, the
simulated shoppers and their quiz, the metric, and a smoke run on the real data."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import profile_quality
from benchmarks.profile_quality import choose, parse_boosts, ranked_ids
from benchmarks.profile_sim import (
    PRICE_BASE,
    QUIZ_NOISE,
    Shopper,
    make_shopper,
    ndcg_at_k,
    price_bands,
    quiz_answers,
    synthetic_price,
)
from benchmarks.quality_data import Product
from indexer.store import IndexStore
from models.attributes.extractor import create_extractor
from models.attributes.taxonomy import load_taxonomy
from models.detector import FullFrameDetector
from models.embedder import Embedder
from search.profile import StyleProfile
from search.query import style_profile
from search.ranking import RankingConfig
from search.searcher import OutfitSearcher, SearchRequest
from tests.helpers import garment_image

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(built_index: Path) -> Iterator[IndexStore]:
    opened = IndexStore.open(built_index)
    yield opened
    opened.close()


def test_re_ranking_the_searched_pool_is_the_search_with_the_profile(
    tiny_embedder: Embedder, store: IndexStore
) -> None:
    searcher = OutfitSearcher(FullFrameDetector(), tiny_embedder, store, create_extractor(tiny_embedder))
    config = RankingConfig(profile_max_boost=0.3)
    profile = StyleProfile(colours=frozenset({"green"}), price_min=20, price_max=35)
    image = garment_image(3)
    pool = searcher.search(image, SearchRequest(top_k=11)).garments[0].pool
    assert pool is not None
    real = searcher.search(image, SearchRequest(top_k=10, profile=profile, ranking=config)).garments[0]
    assert ranked_ids(pool, profile, config) == [m.item.item_id for m in real.matches]
    assert ranked_ids(pool, profile, config) != ranked_ids(pool, None, config)  # the profile moved something
    excluded = ranked_ids(pool, profile, config)[0]
    assert excluded not in ranked_ids(pool, profile, config, exclude=excluded)


def test_ndcg_at_10() -> None:
    assert ndcg_at_k([True, True], 2) == pytest.approx(1.0)
    assert ndcg_at_k([False, True], 1) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k([False] * 10 + [True], 1) == 0.0  # past the tenth place
    assert ndcg_at_k([True] + [False] * 9, 20) == pytest.approx(
        1 / sum(1 / math.log2(r + 2) for r in range(10))
    )
    with pytest.raises(ValueError, match="at least one relevant"):
        ndcg_at_k([True], 0)


def test_synthetic_prices_are_deterministic_and_bands_are_terciles() -> None:
    price = synthetic_price("fpi-123", "top")
    assert price == synthetic_price("fpi-123", "top") != synthetic_price("fpi-124", "top")
    prices = [synthetic_price(f"item-{i}", "bag") for i in range(300)]
    assert all(PRICE_BASE["bag"] / math.e - 0.01 <= p <= PRICE_BASE["bag"] * math.e + 0.01 for p in prices)
    bands = price_bands(prices)
    assert bands[0][0] == 0 and bands[-1][1] == math.inf and bands[0][1] == bands[1][0]
    inside = Counter(next(i for i, (low, high) in enumerate(bands) if low <= p < high) for p in prices)
    assert all(90 <= inside[i] <= 110 for i in range(3))
    with pytest.raises(ValueError, match="at least 3"):
        price_bands([1.0, 2.0])


def _product(colour: str | None, style: str | None, category: str = "top") -> Product:
    labels = {k: v for k, v in {"colour": colour, "style": style}.items() if v is not None}
    return Product("x", "fpi", Path("x.jpg"), "x", category, "Tshirts", labels)


def test_what_fits_a_shopper() -> None:
    shopper = Shopper(frozenset({"navy", "black"}), "casual", (20.0, 40.0))
    assert shopper.fits(_product("navy", "casual"), 25.0, "top")
    assert not shopper.fits(_product("navy", "casual"), 25.0, "trousers")  # not what they searched for
    assert not shopper.fits(_product("red", "casual"), 25.0, "top")
    assert not shopper.fits(_product("navy", "formal"), 25.0, "top")
    assert not shopper.fits(_product("navy", "casual"), 40.0, "top")  # the band is [low, high)
    assert not shopper.fits(_product(None, "casual"), 25.0, "top")  # unknown colour: never fits


def test_quiz_answers_are_partial_noisy_and_valid() -> None:
    taxonomy = load_taxonomy()
    colours = {"black": 30, "navy": 10, "white": 20, "red": 5, "beige": 3}
    bands = ((0.0, 30.0), (30.0, 60.0), (60.0, math.inf))
    rng = random.Random(0)
    named_style = named_liked = liked = 0
    for _ in range(600):
        shopper = make_shopper(rng, colours, {"casual": 8, "formal": 1}, bands)
        assert 1 <= len(shopper.colours) <= 2 and shopper.band in bands
        answers = quiz_answers(shopper, rng, sorted(colours))
        profile = style_profile(answers, taxonomy)  # every answer is a taxonomy value
        assert not profile.avoid_colours & shopper.colours  # they never avoid what they like
        assert profile.styles <= {shopper.style}
        if answers.price_min is not None or answers.price_max is not None:
            assert (answers.price_min or 0) <= shopper.band[0] + 1 and shopper.band[1] <= (
                answers.price_max or math.inf
            )
        named_style += bool(profile.styles)
        named_liked += len(profile.colours & shopper.colours)
        liked += len(shopper.colours)
    assert abs(named_style / 600 - QUIZ_NOISE["style"]) < 0.06
    assert abs(named_liked / liked - QUIZ_NOISE["colour"]) < 0.06


def test_boosts_are_checked_and_the_choice_respects_the_visual_cost() -> None:
    assert parse_boosts("0.05, 0.2") == [0.05, 0.2]
    for bad in ("", "0", "0.6", "x"):
        with pytest.raises(ValueError, match="--boosts"):
            parse_boosts(bad)

    def result(ndcg: float, category_cost: float, article_cost: float) -> dict:
        return {"conditions": {"quiz_clicks": {"ndcg_at_10": ndcg}},
                "category_p10_cost": {"quiz_clicks": category_cost},
                "article_p10_cost": {"quiz_clicks": article_cost}}  # fmt: skip

    sweep = {"0.1": result(0.1, 0.0, 0.01), "0.2": result(0.2, 0.01, 0.02), "0.3": result(0.3, 0.0, 0.05)}
    wide = {"first_minus_10th_median": 0.5}
    assert choose(sweep, wide)["boost"] == "0.2"  # 0.3 ranks better but costs the article type
    assert choose(sweep, {"first_minus_10th_median": 0.15})["boost"] == "0.1"  # 0.2 lifts past the page
    assert choose({"0.3": result(0.3, 0.03, 0.0)}, wide)["boost"] is None


def test_missing_data_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "p.json"
    monkeypatch.setattr(sys, "argv", ["profile_quality", "--data", str(tmp_path), "--out", str(out)])
    with pytest.raises(SystemExit, match="profile_quality: data not found .*styles.csv.*pass --data"):
        profile_quality.main()
    assert not out.exists()


@pytest.mark.data
@pytest.mark.slow
def test_smoke_run_on_the_real_data(tmp_path: Path, real_data: Path) -> None:
    out = tmp_path / "profile_quality.json"
    subprocess.run(
        [sys.executable, "-m", "benchmarks.profile_quality", "--data", str(real_data), "--shoppers", "3",
         "--boosts", "0.1", "--out", str(out)],
        cwd=REPO_ROOT, check=True, timeout=180, capture_output=True,
    )  # fmt: skip
    report = json.loads(out.read_text())
    result = report["sweep"]["0.1"]
    assert report["method"]["shoppers"] == 3 and report["data"]["catalogue_items"] > 2000
    assert set(result["conditions"]) == {"none", "quiz", "clicks", "quiz_clicks"}
    assert result["evaluation_searches"] + result["left_out_searches"] == 3 * 5
    for condition in result["conditions"].values():
        assert all(0.0 <= value <= 1.0 for value in condition.values())
    assert 0 <= result["clicks_mean"] <= 5
    assert report["latency_ms"]["searches"] >= 3 and report["machine"]["cpu"]
    assert report["pool_scores"]["first_minus_10th_median"] > 0 and "boost" in report["chosen"]
