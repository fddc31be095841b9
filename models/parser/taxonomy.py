"""Retrieval taxonomy of the garment parser and the Clothing Co-Parsing (CCP) label -> class table.

The parser predicts one of `PARSER_CLASSES` per pixel. "person" is skin and hair (visible, not retrieved);
"background" is the CCP `null` label plus every label the service does not retrieve (jewellery, watches,
socks, hosiery, gloves, ties, generic accessories, underwear and swimwear).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PARSER_CLASSES: tuple[str, ...] = (
    "background",
    "person",
    "top",
    "outerwear",
    "dress",
    "trousers",
    "shorts",
    "skirt",
    "footwear",
    "bag",
    "hat",
    "scarf",
    "belt",
    "eyewear",
)
GARMENT_CLASSES: tuple[str, ...] = PARSER_CLASSES[2:]
CLASS_INDEX: dict[str, int] = {name: index for index, name in enumerate(PARSER_CLASSES)}

# Every one of the 59 CCP labels, in labels.json order, mapped to exactly one parser class.
CCP_LABEL_TO_CLASS: dict[str, str] = {
    "null": "background",
    "accessories": "background",
    "bag": "bag",
    "belt": "belt",
    "blazer": "outerwear",
    "blouse": "top",
    "bodysuit": "top",
    "boots": "footwear",
    "bra": "background",
    "bracelet": "background",
    "cape": "outerwear",
    "cardigan": "top",
    "clogs": "footwear",
    "coat": "outerwear",
    "dress": "dress",
    "earrings": "background",
    "flats": "footwear",
    "glasses": "eyewear",
    "gloves": "background",
    "hair": "person",
    "hat": "hat",
    "heels": "footwear",
    "hoodie": "top",
    "intimate": "background",
    "jacket": "outerwear",
    "jeans": "trousers",
    "jumper": "top",
    "leggings": "trousers",
    "loafers": "footwear",
    "necklace": "background",
    "panties": "background",
    "pants": "trousers",
    "pumps": "footwear",
    "purse": "bag",
    "ring": "background",
    "romper": "dress",
    "sandals": "footwear",
    "scarf": "scarf",
    "shirt": "top",
    "shoes": "footwear",
    "shorts": "shorts",
    "skin": "person",
    "skirt": "skirt",
    "sneakers": "footwear",
    "socks": "background",
    "stockings": "background",
    "suit": "outerwear",
    "sunglasses": "eyewear",
    "sweater": "top",
    "sweatshirt": "top",
    "swimwear": "background",
    "t-shirt": "top",
    "tie": "background",
    "tights": "background",
    "top": "top",
    "vest": "top",
    "wallet": "bag",
    "watch": "background",
    "wedges": "footwear",
}


def label_lookup(labels: list[str]) -> np.ndarray:
    """A uint8 array of 256 entries: CCP pixel value -> parser class index (unknown values -> background)."""
    unknown = sorted(set(labels) - set(CCP_LABEL_TO_CLASS))
    if unknown:
        raise ValueError(f"CCP labels without a parser class: {unknown}")
    lookup = np.zeros(256, dtype=np.uint8)
    for value, label in enumerate(labels):
        lookup[value] = CLASS_INDEX[CCP_LABEL_TO_CLASS[label]]
    return lookup


def load_label_lookup(data_dir: Path) -> np.ndarray:
    """`label_lookup` for the `labels.json` of a CCP directory."""
    labels = json.loads((Path(data_dir) / "labels.json").read_text(encoding="utf-8"))
    return label_lookup(labels)
