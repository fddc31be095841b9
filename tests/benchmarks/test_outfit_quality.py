"""Pure helpers of benchmarks/outfit_quality.py: category restriction, exact top-k, per-photo metrics."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.outfit_quality import allowed_categories, photo_metrics, summarise, top_rows
from models.attributes.taxonomy import load_taxonomy

SOLD = ("dress", "footwear", "outerwear", "top", "trousers")


def test_allowed_categories_follow_the_taxonomy_and_the_catalogue() -> None:
    taxonomy = load_taxonomy()
    assert allowed_categories("top", taxonomy, SOLD) == {"top", "outerwear"}
    assert allowed_categories("footwear", taxonomy, SOLD) == {"footwear"}
    assert allowed_categories("bag", taxonomy, SOLD) == frozenset()  # not sold: no list
    assert allowed_categories(None, taxonomy, SOLD) == frozenset(SOLD)  # full frame: everything


def test_top_rows_is_exact_restricted_and_stable() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.9, 0.7], dtype=np.float32)
    allowed = np.array([True, True, False, True, True])
    assert top_rows(scores, allowed, 3).tolist() == [1, 3, 4]  # tie broken by row, row 2 excluded
    assert top_rows(scores, np.array([False, False, True, False, False]), 10).tolist() == [2]


def test_photo_metrics() -> None:
    truth = {"top", "trousers", "footwear"}
    metrics = photo_metrics(truth, [["top"] * 8 + ["outerwear"] * 2, ["trousers"] * 10, []])
    assert metrics["coverage"] == pytest.approx(2 / 3, abs=1e-4)
    assert metrics["precision"] == pytest.approx(18 / 20)
    assert (metrics["lists"], metrics["items"]) == (2, 20)
    empty = photo_metrics(set(), [["top"] * 10])
    assert empty["coverage"] is None and empty["precision"] is None


def test_summarise_means_and_differences() -> None:
    def row(coverage: float, precision: float, covered: list[str], lists: int) -> dict:
        items = 10 * lists
        return {"coverage": coverage, "precision": precision, "lists": lists, "items": items,
                "covered": covered, "detected": lists, "ms": 10.0 * lists}  # fmt: skip

    records = [
        {"truth": ["top", "trousers"], "ours": row(1.0, 1.0, ["top", "trousers"], 2),
         "naive": row(0.5, 0.6, ["top"], 1)},
        {"truth": ["dress"], "ours": row(0.0, 0.0, [], 1), "naive": row(1.0, 1.0, ["dress"], 1)},
    ]  # fmt: skip
    result = summarise(records, ["dress", "top", "trousers"])
    assert result["ours"]["coverage_at_10"] == {"mean": 0.5, "n": 2}
    assert result["naive"]["coverage_at_10"] == {"mean": 0.75, "n": 2}
    assert result["ours_minus_naive"]["coverage_at_10"] == -0.25
    assert result["ours"]["coverage_per_category"]["trousers"] == {"photos": 1, "covered": 1, "coverage": 1.0}
    assert result["naive"]["coverage_per_category"]["dress"]["coverage"] == 1.0
    assert result["ours_minus_naive"]["latency_ratio_median"] == 1.5
