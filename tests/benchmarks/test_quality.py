"""benchmarks/quality.py: its metric functions on tiny synthetic arrays, its pipelines, and a smoke run on
the real data (marked `data`, skipped without it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import quality
from benchmarks.quality import (
    Detection,
    assign_truth,
    attribute_metrics,
    detection_counts,
    detection_metrics,
    expected_calibration_error,
    parse_pipelines,
    precision_at_k,
    product_metrics,
    street_metrics,
    subsample,
)
from benchmarks.quality_data import Product, TruthGarment, missing_data, truth_garments
from models.parser.taxonomy import CLASS_INDEX
from search.settings import Settings
from tests.helpers import REPO_ROOT


def test_precision_at_k_divides_by_k() -> None:
    assert precision_at_k([True, False, True]) == pytest.approx(0.2)  # a short list: gaps are misses
    assert precision_at_k([True] * 12) == 1.0  # only the first 10 count
    assert precision_at_k([False, True], k=2) == 0.5
    assert precision_at_k([]) == 0.0


def test_expected_calibration_error() -> None:
    assert expected_calibration_error([], []) is None
    assert expected_calibration_error([1.0, 1.0], [True, True]) == pytest.approx(0.0)  # 1.0: last bin
    # one bin (0.9), half right: |0.5 - 0.9| = 0.4
    assert expected_calibration_error([0.9] * 4, [True, False, True, False]) == pytest.approx(0.4)
    # two bins of two: 0.25 (0.0 right) -> 0.25 and 0.75 (all right) -> 0.25, weighted equally
    ece = expected_calibration_error([0.25, 0.25, 0.75, 0.75], [False, False, True, True])
    assert ece == pytest.approx(0.25)
    with pytest.raises(ValueError, match="2 confidences but 1"):
        expected_calibration_error([0.5, 0.5], [True])


def test_assign_truth_best_iou_at_least_half() -> None:
    truth = [(0, 0, 10, 10), (20, 0, 30, 10)]
    boxes = [
        (0, 0, 10, 10),  # exact: truth 0
        (0, 0, 10, 20),  # IoU 0.5 exactly: kept
        (0, 0, 10, 21),  # IoU < 0.5: none
        (18, 0, 30, 10),  # truth 1 (IoU 10/12)
        (100, 100, 110, 110),  # nothing
    ]
    assert assign_truth(boxes, truth) == [0, 0, None, 1, None]
    assert assign_truth([], truth) == []
    assert assign_truth(boxes[:1], []) == [None]


def test_detection_counts_recall_agnostic_and_precision() -> None:
    truth = [
        TruthGarment("top", (0, 0, 10, 10)),
        TruthGarment("trousers", (0, 10, 10, 30)),
        TruthGarment("hat", (0, 0, 4, 4)),  # not one of the eight classes: only in precision
    ]
    detections = [
        Detection("top", 0.9, (0, 0, 10, 10)),  # right class: TP
        Detection("top", 0.8, (0, 0, 10, 10)),  # duplicate: the truth is used, a false positive
        Detection("skirt", 0.7, (0, 10, 10, 30)),  # wrong class, right box: class-agnostic hit only
        Detection("hat", 0.6, (0, 0, 4, 4)),  # TP for precision
        Detection(None, 1.0, (0, 0, 100, 100)),  # full frame: never a TP
    ]
    counts = detection_counts(detections, truth)
    assert counts["per_class"]["top"] == {"predicted": 2, "ground_truth": 1, "true_positive": 1}
    assert counts["per_class"]["trousers"] == {"predicted": 0, "ground_truth": 1, "true_positive": 0}
    assert counts["agnostic"] == {"ground_truth": 2, "true_positive": 2}
    assert (counts["returned"], counts["returned_matching_class"]) == (5, 2)
    metrics = detection_metrics([{"detection": counts}])
    assert metrics["recall_per_class"]["top"] == 1.0 and metrics["recall_per_class"]["trousers"] == 0.0
    assert metrics["recall_per_class"]["dress"] is None  # no truth: left out of the macro
    assert metrics["recall_macro"] == 0.5
    assert metrics["recall_class_agnostic"] == 1.0
    assert metrics["precision"] == 0.4


def test_truth_garments_connected_components_and_the_area_rule() -> None:
    class_map = np.zeros((100, 100), dtype=np.uint8)  # 10,000 pixels: 0.2% = 20 pixels
    top, trousers, shorts = CLASS_INDEX["top"], CLASS_INDEX["trousers"], CLASS_INDEX["shorts"]
    class_map[0:4, 0:5] = top  # 20 pixels: kept
    class_map[50:51, 0:19] = shorts  # 19 pixels: ignored
    class_map[60:80, 10:20] = trousers  # two legs far apart: two garments
    class_map[60:80, 60:70] = trousers
    class_map[90:95, 90:95] = CLASS_INDEX["person"]  # not a garment class
    garments = truth_garments(class_map)
    assert sorted((g.category, g.box) for g in garments) == [
        ("top", (0, 0, 5, 4)),
        ("trousers", (10, 60, 20, 80)),
        ("trousers", (60, 60, 70, 80)),
    ]
    assert [g.category for g in truth_garments(class_map, min_area_frac=0.0019)].count("shorts") == 1


def test_street_metrics_per_class_macro_and_per_truth() -> None:
    records = [
        {"scored": [("top", 1.0), ("top", 0.5), ("footwear", 0.0)],
         "per_truth": [("top", 1.0), ("bag", 0.0)]},
        {"scored": [("footwear", 1.0)], "per_truth": [("footwear", 1.0), ("footwear", 0.0)]},
    ]  # fmt: skip
    metrics = street_metrics(records)
    assert metrics["per_class"]["top"]["p10"] == 0.75 and metrics["per_class"]["footwear"]["p10"] == 0.5
    assert metrics["p10_macro"] == 0.625  # bag has no scored garment: not in the macro
    assert metrics["p10_micro"] == 0.625
    assert metrics["scored_garments"] == 4
    assert metrics["per_class"]["bag"]["p10_per_true_garment"] == 0.0
    assert metrics["p10_per_true_garment_macro"] == pytest.approx((1.0 + 0.0 + 0.5) / 3, abs=1e-4)


def _product(item_id: str, source: str, article: str, **labels: str) -> Product:
    return Product(item_id, source, Path(f"{item_id}.jpg"), article, "top", article, labels)


def test_product_metrics_per_source_with_ceilings() -> None:
    catalogue = [
        _product("a", "fpi", "Tshirts", colour="red"),
        _product("b", "fpi", "Tshirts", colour="red"),
        _product("c", "clothing", "Tshirts"),
    ]
    records = [
        {"source": "fpi", "garments": 1, "categories": ["top"], "p10_type": 0.2, "p10_type_colour": 0.1,
         "colour_top1": True, "colour_top2": True, "labels": {"category": "top"}},
        {"source": "fpi", "garments": 3, "categories": ["top", "hat", "top"], "p10_type": 0.0,
         "p10_type_colour": 0.0, "colour_top1": False, "colour_top2": True, "labels": {"category": "top"}},
        {"source": "clothing", "garments": 1, "categories": [None], "p10_type": 0.1, "p10_type_colour": None,
         "colour_top1": None, "colour_top2": None, "labels": {"category": "top"}},
    ]  # fmt: skip
    metrics = product_metrics(records, catalogue, catalogue)
    assert metrics["all"]["queries"] == 3 and metrics["all"]["exactly_one_garment"] == pytest.approx(0.6667)
    assert metrics["fpi"]["p10_same_type"] == 0.1 and metrics["fpi"]["p10_same_type_and_colour"] == 0.05
    assert metrics["fpi"]["colour_top1"] == 0.5 and metrics["fpi"]["colour_top2"] == 1.0
    assert metrics["fpi"]["p10_same_type_ceiling"] == 0.2  # two other T-shirts of three
    assert metrics["fpi"]["p10_same_type_and_colour_ceiling"] == 0.1  # one other red one
    assert metrics["clothing"]["colour_top1"] is None
    shapes = metrics["clothing"]["most_common_garment_lists"]
    assert shapes == [{"categories": "whole frame", "share": 1.0}]
    assert metrics["all"]["first_garment_category_by_true_category"] == {
        "top": [{"category": "top", "share": 0.6667}, {"category": "whole frame", "share": 0.3333}]
    }


def test_attribute_metrics_cover_every_predicted_group_with_labels() -> None:
    records = [
        {"source": "fpi", "predicted": {"colour": ("red", 0.9), "pattern": ("solid", 0.6)},
         "labels": {"colour": "red", "pattern": "striped", "gender": "men"}},
        {"source": "fpi", "predicted": {"colour": ("blue", 0.9)},
         "labels": {"colour": "red", "pattern": "solid"}},
        {"source": "clothing", "predicted": {"colour": ("red", 0.5), "sleeve_length": ("long", 0.8)},
         "labels": {"category": "top"}},
    ]  # fmt: skip
    metrics = attribute_metrics(records)
    assert set(metrics) == {"colour", "pattern"}  # sleeve_length predicted but never labelled; gender never
    assert metrics["colour"]["fpi"] == {
        "labelled": 2, "predicted": 2, "coverage": 1.0, "accuracy": 0.5, "mean_confidence": 0.9, "ece": 0.4,
    }  # fmt: skip
    assert "clothing" not in metrics["colour"]  # no colour labels there
    assert metrics["pattern"]["all"]["accuracy"] == 0.0 and metrics["pattern"]["all"]["coverage"] == 0.5


def test_parse_pipelines(tmp_path: Path) -> None:
    base = Settings()
    ours, whole, histogram = parse_pipelines("ours, whole-frame,colour-histogram", base)
    assert (ours.settings, ours.histogram) == (base, False)
    assert whole.settings.detector == "full-frame" and whole.settings.embedder == base.embedder
    assert histogram.histogram and histogram.settings.detector == "full-frame"
    assert ours.index_key() == whole.index_key() != histogram.index_key()  # one index for the first two
    weights = tmp_path / "v3.safetensors"
    weights.write_bytes(b"")
    (v3,) = parse_pipelines(f"v3={weights}", base)
    assert v3.name == "v3" and v3.settings.embedder.pretrained == str(weights)
    assert v3.settings.detector == base.detector and v3.index_key() != ours.index_key()
    (v1,) = parse_pipelines("v1", base)
    assert Path(v1.settings.embedder.pretrained or "").name == "fashion-embedder-v1.safetensors"
    with pytest.raises(ValueError, match="unknown pipeline 'v2'"):
        parse_pipelines("ours,v2", base)
    with pytest.raises(ValueError, match="does not exist"):
        parse_pipelines(f"v3={tmp_path / 'missing.safetensors'}", base)
    with pytest.raises(ValueError, match="named once each"):
        parse_pipelines("ours,ours", base)


def test_subsample_is_seeded_and_keeps_order() -> None:
    items = list(range(100))
    picked = subsample(items, 10)
    assert picked == sorted(picked) and len(picked) == 10 and picked == subsample(items, 10)
    assert subsample(items, 0) == items and subsample(items, 500) == items


def test_missing_data_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert missing_data(tmp_path)[0] == tmp_path / "fpi-train" / "styles.csv"
    monkeypatch.setattr(sys, "argv", ["quality", "--data", str(tmp_path), "--out", str(tmp_path / "q.json")])
    with pytest.raises(SystemExit, match="quality: data not found .*styles.csv.*pass --data"):
        quality.main()
    assert not (tmp_path / "q.json").exists()


@pytest.mark.data
@pytest.mark.slow
def test_smoke_run_on_the_real_data(tmp_path: Path, real_data: Path) -> None:
    out = tmp_path / "quality.json"
    subprocess.run(
        [sys.executable, "-m", "benchmarks.quality", "--data", str(real_data), "--limit", "2",
         "--pipelines", "ours", "--out", str(out)],
        cwd=REPO_ROOT, check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert report["quick"] and report["data"]["product_queries"] == {"fpi": 2, "clothing": 2}
    assert report["data"]["catalogue_items"]["fpi"] > 1000  # the full catalogue, even in a quick run
    ours = report["pipelines"]["ours"]
    assert ours["product_to_product"]["all"]["queries"] == 4
    assert 0.0 <= ours["product_to_product"]["all"]["p10_same_type"] <= 1.0
    assert ours["street_to_shop"]["photos"] == 2
    assert set(ours["detection"]["recall_per_class"]) >= {"top", "footwear", "bag"}
    assert "colour" in ours["attributes"]
    assert out.with_suffix(".md").read_text().startswith("# Search quality on held-out real data")
