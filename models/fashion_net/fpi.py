"""Fashion Product Images (fpi-train): the reader, its seeded validation split and its label mappings;
and the labelled parts (train / calibration / validation) of every fashion-net-v3 source.

The catalogue fields (articleType, baseColour, gender, usage, season, productDisplayName) are mapped
onto the retrieval taxonomy's vocabulary here; the label spaces themselves live in
`models.fashion_net.multitask`. A mapping that returns None means "no label for this head" (the training
target is then the ignore index), never a guess.

Data paths are always arguments; nothing here reads the data at import time.
"""

from __future__ import annotations

import csv
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from models.fashion_net.data import (
    CCP_PHOTO_IDS,
    COARSE_CATEGORY,
    Sample,
    ccp_heldout_ids,
    clothing_samples,
    labelled_boxes,
    split_clothing,
)
from models.fashion_net.multitask import CLOTHING_ARTICLE, Part

# masterCategory values that are not fashion (README): never read.
DROPPED_MASTER_CATEGORIES = frozenset({"Personal Care", "Free Items", "Home", "Sporting Goods"})
FPI_VALIDATION_FRACTION = 0.10
FPI_VALIDATION_SEED = 0

# articleType -> coarse category. "other" is an explicit class for fashion items outside the 12
# categories (jewellery, watches, ties, socks, innerwear, sets, sarees, ...), so the head can say "none of
# them" instead of forcing a garment. Article types not listed here get no category label.
ARTICLE_CATEGORY = {
    # tops (taxonomy: cardigan, sweater, camisole, undershirt, tunic are tops)
    "Tshirts": "top", "Shirts": "top", "Tops": "top", "Kurtas": "top", "Kurtis": "top", "Tunics": "top",
    "Sweaters": "top", "Sweatshirts": "top", "Shrug": "top", "Camisoles": "top", "Innerwear Vests": "top",
    "Lounge Tshirts": "top",
    # outerwear (gilet/waistcoat is outerwear in the taxonomy)
    "Jackets": "outerwear", "Rain Jacket": "outerwear", "Waistcoat": "outerwear",
    # dresses (taxonomy: jumpsuit, romper are dresses)
    "Dresses": "dress", "Jumpsuit": "dress", "Rompers": "dress", "Nightdress": "dress", "Baby Dolls": "dress",
    # trousers
    "Jeans": "trousers", "Trousers": "trousers", "Track Pants": "trousers", "Leggings": "trousers",
    "Jeggings": "trousers", "Capris": "trousers", "Lounge Pants": "trousers", "Salwar": "trousers",
    "Patiala": "trousers", "Churidar": "trousers",
    # shorts, skirts
    "Shorts": "shorts", "Lounge Shorts": "shorts", "Skirts": "skirt",
    # footwear
    "Casual Shoes": "footwear", "Sports Shoes": "footwear", "Formal Shoes": "footwear", "Heels": "footwear",
    "Flats": "footwear", "Sandals": "footwear", "Sports Sandals": "footwear", "Flip Flops": "footwear",
    # bags (taxonomy: wallet is a bag)
    "Handbags": "bag", "Backpacks": "bag", "Clutches": "bag", "Duffel Bag": "bag", "Laptop Bag": "bag",
    "Messenger Bag": "bag", "Mobile Pouch": "bag", "Rucksacks": "bag", "Waist Pouch": "bag",
    "Wallets": "bag",
    # hat, scarf (taxonomy: stole is a scarf; a dupatta is a long stole), belt, eyewear
    "Caps": "hat", "Scarves": "scarf", "Stoles": "scarf", "Dupatta": "scarf", "Belts": "belt",
    "Sunglasses": "eyewear",
    # explicit "other": fashion items that are none of the 12 categories
    "Watches": "other", "Earrings": "other", "Pendant": "other", "Necklace and Chains": "other",
    "Ring": "other", "Bangle": "other", "Bracelet": "other", "Jewellery Set": "other", "Cufflinks": "other",
    "Ties and Cufflinks": "other", "Ties": "other", "Socks": "other", "Booties": "other",  # baby booties
    "Stockings": "other", "Tights": "other", "Gloves": "other", "Headband": "other",
    "Hair Accessory": "other",
    "Bra": "other", "Briefs": "other", "Boxers": "other", "Trunk": "other", "Shapewear": "other",
    "Swimwear": "other", "Sarees": "other", "Lehenga Choli": "other", "Kurta Sets": "other",
    "Clothing Set": "other", "Night suits": "other", "Tracksuits": "other", "Salwar and Dupatta": "other",
    "Bath Robe": "other", "Robe": "other", "Key chain": "other", "Accessory Gift Set": "other",
    "Travel Accessory": "other", "Tablet Sleeve": "other", "Trolley Bag": "other",
    "Perfume and Body Mist": "other", "Wristbands": "other",
}  # fmt: skip

# baseColour (all 46 names in fpi-train) -> taxonomy colour, following the taxonomy's own synonyms where
# it lists the name (silver/charcoal -> grey, gold/mustard -> yellow, maroon -> burgundy, off white ->
# cream, nude/taupe -> beige, tan -> brown, peach/rust -> orange, magenta/rose -> pink, turquoise -> teal,
# lavender/mauve -> lilac). Metallic browns (bronze, copper) -> brown; skin -> beige. "Multi" and
# "Metallic" name no single colour: None (ignored by the colour head). No name maps to "light blue".
COLOUR_MAP: dict[str, str | None] = {
    "Black": "black", "White": "white", "Blue": "blue", "Brown": "brown", "Grey": "grey", "Red": "red",
    "Silver": "grey", "Pink": "pink", "Green": "green", "Navy Blue": "navy", "Purple": "purple",
    "Gold": "yellow", "Beige": "beige", "Multi": None, "Yellow": "yellow", "Orange": "orange",
    "Maroon": "burgundy", "Olive": "olive", "Cream": "cream", "Steel": "grey", "Grey Melange": "grey",
    "Charcoal": "grey", "Peach": "orange", "Lavender": "lilac", "Teal": "teal", "Khaki": "khaki",
    "Off White": "cream", "Mustard": "yellow", "Bronze": "brown", "Magenta": "pink",
    "Turquoise Blue": "teal", "Tan": "brown", "Rust": "orange", "Skin": "beige", "Burgundy": "burgundy",
    "Copper": "brown", "Mushroom Brown": "brown", "Sea Green": "green", "Coffee Brown": "brown",
    "Metallic": None, "Nude": "beige", "Rose": "pink", "Taupe": "beige", "Mauve": "lilac",
    "Lime Green": "green", "Fluorescent Green": "green",
}  # fmt: skip

GENDER_MAP: dict[str, str | None] = {
    "Women": "women", "Men": "men", "Unisex": "unisex", "Girls": "girls", "Boys": "boys",
}  # fmt: skip

# usage -> taxonomy style. "Ethnic" (kurtas, sarees, ...) has no taxonomy style value: ignored.
# "Travel" (6 products: luggage, travel jackets) -> outdoor.
USAGE_STYLE: dict[str, str | None] = {
    "Casual": "casual", "Formal": "formal", "Sports": "sporty", "Party": "party",
    "Smart Casual": "smart casual", "Travel": "outdoor", "Ethnic": None, "Home": None, "NA": None,
}  # fmt: skip

SEASON_MAP: dict[str, str | None] = {
    "Summer": "summer",
    "Winter": "winter",
    "Spring": "spring",
    "Fall": "fall",
}

# Footwear articleType -> taxonomy footwear_type. Formal Shoes are mostly lace-up derbies/oxfords:
# "oxford". Casual Shoes in this shop are mostly canvas/leather sneakers: "sneaker". Booties are baby
# socks (subCategory Socks), not ankle boots: not mapped.
FOOTWEAR_TYPE = {
    "Casual Shoes": "sneaker", "Sports Shoes": "sneaker", "Heels": "heel", "Flats": "flat",
    "Sandals": "sandal", "Sports Sandals": "sandal", "Flip Flops": "slide", "Formal Shoes": "oxford",
}  # fmt: skip

# Sleeve length from the article type where it is implied by the garment itself.
ARTICLE_SLEEVE = {"Camisoles": "sleeveless", "Innerwear Vests": "sleeveless"}

# Title words -> pattern, first match wins (specific before generic: "floral print" is floral).
# A title with none of these words gets NO pattern label (it is not assumed solid).
PATTERN_WORDS: tuple[tuple[str, str], ...] = (
    (r"\bcamouflage\b|\bcamo\b", "camouflage"),
    (r"\bfloral\b|\bflower(?:s|ed)?\b", "floral"),
    (r"\bpolka\b|\bdott?ed\b|\bdots\b", "dotted"),
    (r"\bstrip(?:e|es|ed)\b", "striped"),
    (r"\bcheck(?:s|ed)?\b|\bchequered\b|\bplaid\b", "checked"),
    (r"\bprint(?:s|ed)?\b|\bgraphic\b", "graphic"),
    (r"\bsolid\b|\bplain\b", "solid"),
)
# Title words -> sleeve length ("3/4" in this shop's titles is a trouser length, so it is not used).
SLEEVE_WORDS: tuple[tuple[str, str], ...] = (
    (r"\bsleeveless\b", "sleeveless"),
    (r"\bshort[- ]sleeve[sd]?\b|\bhalf[- ]sleeve[sd]?\b", "short"),
    (r"\bfull[- ]sleeve[sd]?\b|\blong[- ]sleeve[sd]?\b", "long"),
)


@dataclass(frozen=True)
class FpiProduct:
    """One catalogue product: its photo and the csv fields."""

    item_id: str
    path: Path
    gender: str
    master_category: str
    sub_category: str
    article_type: str
    base_colour: str
    season: str
    usage: str
    title: str


def read_fpi(root: Path) -> list[FpiProduct]:
    """Products in styles.csv order, minus the non-fashion master categories and missing images."""
    products = []
    with (root / "styles.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["masterCategory"] in DROPPED_MASTER_CATEGORIES:
                continue
            path = root / "images" / f"{row['id']}.jpg"
            if not path.is_file():
                continue
            products.append(
                FpiProduct(
                    item_id=row["id"],
                    path=path,
                    gender=row["gender"],
                    master_category=row["masterCategory"],
                    sub_category=row["subCategory"],
                    article_type=row["articleType"],
                    base_colour=row["baseColour"],
                    season=row["season"],
                    usage=row["usage"],
                    title=row["productDisplayName"] or "",
                )
            )
    return products


def fpi_validation_ids(
    ids: list[str] | set[str], seed: int = FPI_VALIDATION_SEED, fraction: float = FPI_VALIDATION_FRACTION
) -> set[str]:
    """The validation product ids: a seeded `fraction` of the given ids (sorted numerically, then sampled).

    Depends only on the set of ids, not their order, so a benchmark that reads the same styles.csv with
    the same filter gets the same split.
    """
    ordered = sorted(set(ids), key=lambda item_id: (len(item_id), item_id))
    count = round(fraction * len(ordered))
    return set(random.Random(seed).sample(ordered, count))


def split_fpi(
    products: list[FpiProduct], seed: int = FPI_VALIDATION_SEED
) -> tuple[list[FpiProduct], list[FpiProduct]]:
    """(train, validation) for the products `read_fpi` returns; validation ids are never trained on."""
    held = fpi_validation_ids([p.item_id for p in products], seed)
    train = [p for p in products if p.item_id not in held]
    validation = [p for p in products if p.item_id in held]
    return train, validation


def _first_match(text: str, rules: tuple[tuple[str, str], ...]) -> str | None:
    lowered = text.lower()
    for pattern, value in rules:
        if re.search(pattern, lowered):
            return value
    return None


def title_pattern(title: str) -> str | None:
    """The pattern a product title names, or None when it names none (not 'solid')."""
    return _first_match(title, PATTERN_WORDS)


def title_sleeve(title: str) -> str | None:
    return _first_match(title, SLEEVE_WORDS)


def product_labels(product: FpiProduct) -> dict[str, str | None]:
    """Head name -> taxonomy value (or None) for one product; the article head gets the raw articleType."""
    footwear = FOOTWEAR_TYPE.get(product.article_type)
    sleeve = ARTICLE_SLEEVE.get(product.article_type) or title_sleeve(product.title)
    category = ARTICLE_CATEGORY.get(product.article_type)
    if category not in ("top", "outerwear", "dress"):
        sleeve = None  # sleeve_length applies to tops, outerwear and dresses only (taxonomy)
    return {
        "category": category,
        "article": product.article_type,
        "colour": COLOUR_MAP.get(product.base_colour),
        "gender": GENDER_MAP.get(product.gender),
        "style": USAGE_STYLE.get(product.usage),
        "season": SEASON_MAP.get(product.season),
        "pattern": title_pattern(product.title),
        "footwear_type": footwear,
        "sleeve_length": sleeve,
        "gate": "product",
    }


# --- labelled parts of every v3 training source ----------------------------------------------------

CALIBRATION_FRACTION = 0.05
# CCP shoe mask labels -> footwear_type ("shoes", "wedges" and "clogs" give none).
CCP_FOOTWEAR = {
    "sneakers": "sneaker", "boots": "boot", "heels": "heel", "pumps": "pump", "sandals": "sandal",
    "flats": "flat", "loafers": "loafer",
}  # fmt: skip
# clothing / CCP training label -> sleeve length (where the label itself says it).
LABEL_SLEEVE = {"Longsleeve": "long", "T-Shirt": "short", "Polo": "short"}
EXTRA_CATEGORY = {"Bag": "bag", "Scarf": "scarf"}


def clothing_labels(label: str, footwear: str | None = None) -> dict[str, str | None]:
    return {
        "category": COARSE_CATEGORY.get(label) or EXTRA_CATEGORY.get(label),
        "article": CLOTHING_ARTICLE.get(label, label),
        "sleeve_length": LABEL_SLEEVE.get(label),
        "footwear_type": footwear,
        "gate": "product",
    }


def ccp_crops(
    root: Path, heldout: bool, min_pixels: int = 1500, min_side: int = 24, margin: float = 0.08
) -> Part:
    """v1's CCP garment crops (same boxes as data.garment_boxes), keeping the raw mask label."""
    label_names = json.loads((root / "labels.json").read_text())
    held = ccp_heldout_ids()
    part = Part("ccp")
    for photo_id in CCP_PHOTO_IDS:
        if (photo_id in held) != heldout:
            continue
        mask_path, photo_path = (
            root / "masks" / f"{photo_id:04d}.png",
            root / "photos" / f"{photo_id:04d}.jpg",
        )
        if not (mask_path.is_file() and photo_path.is_file()):
            continue
        mask = np.asarray(Image.open(mask_path))
        for raw, label, box in labelled_boxes(mask, label_names, min_pixels, min_side, margin):
            part.add(
                Sample(photo_path, label, "ccp", box),
                str(photo_id),
                clothing_labels(label, CCP_FOOTWEAR.get(raw)),
            )
    return part


def ccp_scenes(root: Path, heldout: bool) -> Part:
    """Whole CCP photos as gate "scene" examples: training ids (+ tagged/) or the held-out ids."""
    held = ccp_heldout_ids()
    part = Part("scene")
    ids = [i for i in CCP_PHOTO_IDS if (i in held) == heldout]
    paths = [(str(i), root / "photos" / f"{i:04d}.jpg") for i in ids]
    if not heldout:
        paths += [(path.stem, path) for path in sorted((root / "tagged").glob("*.jpg"))]
    for key, path in paths:
        if path.is_file():
            part.add(Sample(path, "scene", "scene"), key, {"gate": "scene"})
    return part


def calibration_keys(keys: list[str], seed: int, fraction: float = CALIBRATION_FRACTION) -> set[str]:
    ordered = sorted(set(keys), key=lambda key: (len(key), key))
    return set(random.Random(f"calibration:{seed}").sample(ordered, round(fraction * len(ordered))))


def training_parts(
    fpi: Path, clothing: Path, ccp: Path, seed: int = 0, limit: int | None = None
) -> tuple[dict[str, Part], dict[str, Part], dict[str, Part]]:
    """(train, calibration, validation) parts per source. Validation: the fpi validation ids, v1's
    held-out clothing photos, the held-out CCP photos (crops and whole). Calibration: a seeded slice of
    the training keys (CCP by photo id, so crops and scenes of one photo stay together)."""
    fpi_train, fpi_validation = split_fpi(read_fpi(fpi), seed=0)
    clothing_train, clothing_heldout = split_clothing(clothing_samples(clothing), seed=0)

    def fpi_part(products: list[FpiProduct]) -> Part:
        part = Part("fpi")
        for product in products:
            part.add(
                Sample(product.path, product.article_type, "fpi"), product.item_id, product_labels(product)
            )
        return part

    def clothing_part(samples: list[Sample]) -> Part:
        part = Part("clothing")
        for sample in samples:
            part.add(sample, sample.path.name, clothing_labels(sample.label))
        return part

    pools = {
        "fpi": fpi_part(fpi_train),
        "clothing": clothing_part(clothing_train),
        "ccp": ccp_crops(ccp, heldout=False),
        "scene": ccp_scenes(ccp, heldout=False),
    }
    ccp_calibration = calibration_keys(pools["ccp"].keys + pools["scene"].keys, seed)
    train, calibration = {}, {}
    for source, pool in pools.items():
        held = ccp_calibration if source in ("ccp", "scene") else calibration_keys(pool.keys, seed)
        train[source] = pool.subset(drop=held).first(limit)
        calibration[source] = pool.subset(keep=held).first(limit)
    validation = {
        "fpi": fpi_part(fpi_validation).first(limit),
        "clothing": clothing_part(clothing_heldout).first(limit),
        "ccp": ccp_crops(ccp, heldout=True).first(limit),
        "scene": ccp_scenes(ccp, heldout=True).first(limit),
    }
    return train, calibration, validation
