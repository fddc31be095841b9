"""The validation data of benchmarks/quality.py: the catalogue, its feed, and the street ground truth.

Everything here is held out from every training run:
- fpi: `models.fashion_net.fpi.split_fpi` (seeded 10% of the fashion product ids of fpi-train, seed 0);
- clothing: `models.fashion_net.data.split_clothing` (15% of each label, seed 0; 765 photos);
- CCP: `models.fashion_net.data.ccp_heldout_ids` (90 photos with masks), as the garment parser's split.

Labels use the taxonomy's vocabulary through fpi.py's documented mappings (`product_labels`,
`clothing_labels`): a label that maps to None is "no label", never a guess.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.fashion_net.data import ccp_heldout_ids, clothing_samples, split_clothing
from models.fashion_net.fpi import ARTICLE_CATEGORY, clothing_labels, product_labels, read_fpi, split_fpi
from models.parser.data import photo_path, read_class_mask
from models.parser.instances import extract_instances
from models.parser.taxonomy import CLASS_INDEX, GARMENT_CLASSES, PARSER_CLASSES, load_label_lookup

SOURCES = ("fpi", "clothing")
GT_MIN_AREA_FRAC = 0.002  # ground-truth components under 0.2% of the photo are ignored
# Groups a shop's feed carries as structured fields (fpi: baseColour, gender, usage). The others (pattern,
# sleeve length, ...) are only weak title labels: they are measured, never put in the feed.
FEED_GROUPS = ("colour", "gender", "style")
# Label keys that are not attribute groups of a garment (the gate is the product-vs-scene label).
NOT_GROUPS = frozenset({"article", "gate"})


@dataclass(frozen=True)
class Product:
    """One validation catalogue product: a feed row, its query photo and its labels."""

    item_id: str
    source: str  # "fpi" or "clothing"
    path: Path
    title: str
    category: str  # coarse category (the feed's category)
    article: str  # article type, in the project's merged vocabulary (clothing T-Shirt = fpi Tshirts)
    labels: dict[str, str]  # attribute group (or "category") -> taxonomy value; absent = no label

    def feed_row(self, with_labels: bool) -> dict[str, object]:
        row: dict[str, object] = {
            "id": self.item_id,
            "image": str(self.path.resolve()),
            "title": self.title,
            "category": self.category,
        }
        attributes = {group: self.labels[group] for group in FEED_GROUPS if group in self.labels}
        if with_labels and attributes:
            row["attributes"] = attributes
        return row


@dataclass(frozen=True)
class TruthGarment:
    """One ground-truth garment of a street photo: its parser class and box [x0, y0, x1, y1)."""

    category: str
    box: tuple[int, int, int, int]


def _known(labels: dict[str, str | None]) -> dict[str, str]:
    return {key: value for key, value in labels.items() if value is not None and key not in NOT_GROUPS}


def fpi_products(root: Path) -> list[Product]:
    """The fpi validation products (fashion master categories only), in styles.csv order."""
    _, validation = split_fpi(read_fpi(root))
    products = []
    for product in validation:
        labels = product_labels(product)
        category = ARTICLE_CATEGORY.get(product.article_type, "other")
        products.append(
            Product(
                item_id=f"fpi-{product.item_id}",
                source="fpi",
                path=product.path,
                title=product.title or product.article_type,
                category=category,
                article=product.article_type,
                labels={**_known(labels), "category": category},
            )
        )
    return products


def clothing_products(root: Path) -> list[Product]:
    """The held-out clothing photos; no colour labels (the data set has none)."""
    _, heldout = split_clothing(clothing_samples(root), seed=0)
    products = []
    for sample in heldout:
        labels = clothing_labels(sample.label)
        category = labels["category"] or "other"
        products.append(
            Product(
                item_id=f"clothing-{sample.path.stem}",
                source="clothing",
                path=sample.path,
                title=sample.label,
                category=category,
                article=labels["article"] or sample.label,
                labels={**_known(labels), "category": category},
            )
        )
    return products


def validation_catalogue(data: Path) -> list[Product]:
    return fpi_products(data / "fpi-train") + clothing_products(data / "clothing")


def write_feed(
    products: list[Product],
    path: Path,
    with_labels: bool,
    extra: Mapping[str, Mapping[str, object]] | None = None,
) -> Path:
    """The catalogue as a JSON Lines feed (absolute image paths), as `fashion-search index build` reads it;
    `extra` adds feed fields per item id (e.g. a price)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for product in products:
            row = {**product.feed_row(with_labels), **(extra or {}).get(product.item_id, {})}
            handle.write(json.dumps(row) + "\n")
    return path


def truth_garments(class_map: np.ndarray, min_area_frac: float = GT_MIN_AREA_FRAC) -> list[TruthGarment]:
    """Connected components of each garment class in a class map, components under `min_area_frac` of the
    image ignored. Same-class fragments whose boxes lie mostly inside one another are one garment (the
    detector's own merging rule, `extract_instances`): a top cut in two by a bag strap is one top."""
    indices = tuple(CLASS_INDEX[name] for name in GARMENT_CLASSES)
    return [
        TruthGarment(PARSER_CLASSES[instance.class_index], instance.box)
        for instance in extract_instances(class_map, indices, min_area_frac=min_area_frac)
    ]


@dataclass(frozen=True)
class StreetPhoto:
    photo_id: int
    path: Path
    truth: list[TruthGarment]


def street_photos(ccp: Path, ids: list[int] | None = None) -> list[StreetPhoto]:
    """The held-out CCP photos (all 90 unless `ids`) with their ground-truth garments."""
    lookup = load_label_lookup(ccp)
    chosen = sorted(ccp_heldout_ids()) if ids is None else ids
    return [
        StreetPhoto(i, photo_path(ccp, i), truth_garments(read_class_mask(ccp, i, lookup))) for i in chosen
    ]


def missing_data(data: Path) -> list[Path]:
    """The files and folders the benchmark needs under `data` that are not there."""
    needed = [
        data / "fpi-train" / "styles.csv",
        data / "fpi-train" / "images",
        data / "clothing" / "images.csv",
        data / "clothing" / "images",
        data / "ccp" / "labels.json",
        data / "ccp" / "photos",
        data / "ccp" / "masks",
    ]
    return [path for path in needed if not path.exists()]
