"""benchmarks/confidence.py: the threshold rule on synthetic score lists, the variant catalogues, the
scoring of a search result, and a smoke run on the real data (marked `data`, skipped without it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from benchmarks import confidence
from benchmarks.confidence import (
    Outcome,
    absent_categories,
    balanced_youden,
    category_groups,
    choose_threshold,
    product_outcome,
    rates,
    threshold_grid,
    type_folds,
    youden,
)
from benchmarks.quality_data import Product
from models.attributes.taxonomy import load_taxonomy
from tests.helpers import REPO_ROOT


def test_threshold_grid_runs_from_all_confident_to_none_confident() -> None:
    assert threshold_grid([0.534, 0.61]) == [0.53, 0.54, 0.55, 0.56, 0.57, 0.58, 0.59, 0.6, 0.61, 0.62]
    assert threshold_grid([0.5]) == [0.5, 0.51]  # exactly on the grid: 0.5 keeps it, 0.51 drops it
    assert threshold_grid([-0.031]) == [-0.04, -0.03]
    assert threshold_grid([]) == []


def test_youden_is_tpr_minus_fpr() -> None:
    outcomes = [(0.9, True), (0.8, True), (0.7, False), (0.6, True), (0.5, False)]
    assert youden(outcomes, 0.75) == pytest.approx(2 / 3 - 0)
    assert youden(outcomes, 0.55) == pytest.approx(1 - 1 / 2)
    assert youden(outcomes, 0.0) == 0.0 and youden(outcomes, 1.0) == 0.0  # all / none confident
    with pytest.raises(ValueError, match="0 right and 2 wrong"):
        youden([(0.5, False), (0.4, False)], 0.5)


def test_choose_threshold_separates_right_from_wrong_and_ties_go_low() -> None:
    separable = {"street": [(0.3, False), (0.4, False), (0.7, True), (0.8, True)]}
    grid = threshold_grid(score for score, _ in separable["street"])
    # every t in (0.4, 0.7] gives J = 1: the lowest grid value above 0.4
    assert choose_threshold(separable, grid) == 0.41
    assert balanced_youden(separable, 0.41) == 1.0
    with pytest.raises(ValueError, match="non-empty grid"):
        choose_threshold(separable, [])


def test_choose_threshold_weighs_each_kind_the_same() -> None:
    # many product garments separable at 0.8, few street garments separable at 0.5
    product = [(0.75, False)] * 90 + [(0.85, True)] * 90
    street = [(0.45, False), (0.55, True)]
    kinds = {"street": street, "product": product}
    grid = [round(0.40 + 0.05 * i, 2) for i in range(11)]
    # t in (0.45, 0.55] keeps every street garment right (J 1) and product at J 0: mean 0.5;
    # t in (0.75, 0.85] the other way round: mean 0.5 too. The product count does not break the tie.
    assert balanced_youden(kinds, 0.5) == balanced_youden(kinds, 0.8) == 0.5
    assert choose_threshold(kinds, grid) == 0.5  # tie: the lowest
    # two more street cases tip it: street J is now 1/2 at both 0.5 and 0.8, so 0.8 (product J 1) wins
    kinds["street"] = [*street, (0.8, True), (0.78, False)]
    assert choose_threshold(kinds, grid) == 0.8


def test_rates_at_a_threshold() -> None:
    outcomes = [(0.9, True), (0.8, False), (0.7, True), (0.6, False), (0.5, False)]
    assert rates(outcomes, 0.65) == {
        "garments": 5, "right": 2, "confident": 0.6, "precision": 0.6667, "right_confident": 1.0,
        "wrong_not_confident": 0.6667,
    }  # fmt: skip
    none = rates(outcomes, 1.0)
    assert none["confident"] == 0.0 and none["precision"] is None and none["wrong_not_confident"] == 1.0
    assert rates([], 0.5)["confident"] is None


def product(item_id: str, category: str, article: str, colour: str | None = None) -> Product:
    labels = {"category": category} | ({"colour": colour} if colour else {})
    return Product(item_id, "fpi", Path(f"{item_id}.jpg"), article, category, article, labels)


def test_category_groups_join_compatible_categories() -> None:
    groups = category_groups(["top", "outerwear", "bag", "other", "top"], load_taxonomy())
    assert groups == {"bag": "bag", "other": "other", "outerwear": "outerwear+top", "top": "outerwear+top"}
    assert absent_categories(groups, load_taxonomy()) == ["outerwear", "top"]
    assert absent_categories(["top", "bag"], load_taxonomy()) == []  # no neighbour in the catalogue


def test_type_folds_hold_out_one_common_type_per_group() -> None:
    products = (
        [product(f"t{i}", "top", "Tshirts") for i in range(5)]
        + [product(f"s{i}", "top", "Shirts") for i in range(4)]
        + [product(f"j{i}", "outerwear", "Jackets") for i in range(3)]
        + [product(f"h{i}", "bag", "Handbags") for i in range(4)]  # the only bag type: never held out
        + [product(f"f{i}", "footwear", "Heels") for i in range(3)]
        + [product(f"g{i}", "footwear", "Flats") for i in range(1)]  # too few to be held out
    )
    groups = category_groups({p.category for p in products}, load_taxonomy())
    folds = type_folds(products, groups, min_queries=3, min_left=1)
    assert folds == [
        {"footwear": "Heels", "outerwear+top": "Tshirts"},
        {"outerwear+top": "Shirts"},
        {"outerwear+top": "Jackets"},
    ]
    # Tshirts would leave 7 items of its group and Heels 1: held out no more
    assert type_folds(products, groups, min_queries=3, min_left=8) == [
        {"outerwear+top": "Shirts"},
        {"outerwear+top": "Jackets"},
    ]


def result(*garments: list[tuple[str, float]]) -> Any:
    """A stand-in OutfitResult: per garment, its matches as (item_id, score), best first."""
    return SimpleNamespace(
        garments=[
            SimpleNamespace(matches=[SimpleNamespace(item=SimpleNamespace(item_id=i), score=s) for i, s in g])
            for g in garments
        ]
    )


def test_product_outcome_skips_the_query_itself() -> None:
    query = product("q", "top", "Tshirts", "red")
    truth = {
        p.item_id: p for p in (query, product("a", "top", "Tshirts", "blue"), product("b", "top", "Tops"))
    }
    found = product_outcome(query, result([("q", 1.0), ("a", 0.8), ("b", 0.7)]), truth, "full")
    assert found == Outcome("product", "full", "fpi", "Tshirts", 0.8, True, False)
    found = product_outcome(query, result([("b", 0.7)], [("a", 0.9)]), truth, "absent")
    assert found == Outcome("product", "absent", "fpi", "Tshirts", 0.7, False, False)  # first garment only
    assert product_outcome(query, result([("q", 1.0)]), truth, "full") == "no matches"
    assert product_outcome(query, result(), truth, "full") == "no garment"


def test_missing_data_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "c.json"
    monkeypatch.setattr(sys, "argv", ["confidence", "--data", str(tmp_path), "--out", str(out)])
    with pytest.raises(SystemExit, match="confidence: data not found .*styles.csv.*pass --data"):
        confidence.main()
    assert not out.exists()


@pytest.mark.data
@pytest.mark.slow
def test_smoke_run_on_the_real_data(tmp_path: Path, real_data: Path) -> None:
    out = tmp_path / "confidence.json"
    subprocess.run(
        [sys.executable, "-m", "benchmarks.confidence", "--data", str(real_data), "--limit", "1",
         "--out", str(out)],
        cwd=REPO_ROOT, check=True, timeout=180, capture_output=True,
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert report["quick"] and report["data"]["product_queries"] == {"fpi": 1, "clothing": 1}
    assert report["data"]["catalogue_items"]["fpi"] > 1000  # the full catalogue, even in a quick run
    assert len(report["data"]["type_folds"]) == 1 and report["data"]["street_categories_removed"]
    assert report["sweep"] and report["rule"] == confidence.RULE
    if report["confident_score"] is not None:
        assert report["at_threshold"]["street"]["all"]["garments"] >= 1
