from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.parser.taxonomy import (
    CCP_LABEL_TO_CLASS,
    CLASS_INDEX,
    GARMENT_CLASSES,
    PARSER_CLASSES,
    label_lookup,
)
from tests.helpers import DATA_DIR

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_table_maps_all_59_labels_to_parser_classes() -> None:
    assert len(CCP_LABEL_TO_CLASS) == 59
    assert set(CCP_LABEL_TO_CLASS.values()) <= set(PARSER_CLASSES)
    assert set(CCP_LABEL_TO_CLASS.values()) == set(PARSER_CLASSES), "every parser class has a source label"
    assert GARMENT_CLASSES == PARSER_CLASSES[2:] and "person" not in GARMENT_CLASSES
    assert CCP_LABEL_TO_CLASS["null"] == "background" and CCP_LABEL_TO_CLASS["skin"] == "person"
    assert CCP_LABEL_TO_CLASS["jeans"] == "trousers" and CCP_LABEL_TO_CLASS["purse"] == "bag"


def test_lookup_has_256_entries_and_follows_label_order() -> None:
    labels = list(CCP_LABEL_TO_CLASS)
    lookup = label_lookup(labels)
    assert lookup.shape == (256,) and lookup.dtype == np.uint8
    assert lookup[labels.index("blouse")] == CLASS_INDEX["top"]
    assert lookup[labels.index("sunglasses")] == CLASS_INDEX["eyewear"]
    assert lookup[200] == CLASS_INDEX["background"]


def test_lookup_refuses_an_unknown_label() -> None:
    with pytest.raises(ValueError, match="kilt"):
        label_lookup(["null", "kilt"])


@pytest.mark.data
def test_table_covers_labels_json_exactly_once() -> None:
    labels_file = DATA_DIR / "ccp" / "labels.json"
    if not labels_file.is_file():
        pytest.skip(f"CCP data not found at {labels_file} (set FASHION_DATA_DIR)")
    labels = json.loads(labels_file.read_text(encoding="utf-8"))
    assert len(labels) == len(set(labels)) == 59
    assert labels == list(CCP_LABEL_TO_CLASS)
