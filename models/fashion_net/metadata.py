"""What a fashion-net weights file declares, and its checks, without PyTorch: the v1 embedder's format and
preprocessing, and fashion-net-v3's label spaces, head sources and calibrated temperatures. The serving path
(ONNX Runtime) reads only this; the networks themselves are in `network` and `multitask` (PyTorch)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.errors import ModelMismatchError
from models.files import read_weights_metadata, require_weights
from models.spec import MULTITASK_FORMAT

# --- v1: the embedding network alone ------------------------------------------------------------------
V1_FORMAT = "fashion-net"
V1_ARCHITECTURE = "fashion-net-mnv3s"
DEFAULT_DIMENSION = 256
DEFAULT_INPUT_SIZE = 112
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
V1_TRAIN_COMMAND = (
    "python -m models.fashion_net.train --clothing ../shared/data/clothing --ccp ../shared/data/ccp "
    "--out {path} --minutes 30 --seed 0 --threads 1"
)


def network_metadata(
    architecture: str, dimension: int, input_size: int, mean: Sequence[float], std: Sequence[float]
) -> dict[str, str]:
    """What a weights file says about its network and preprocessing (checked again on load)."""
    return {
        "architecture": architecture,
        "dimension": str(dimension),
        "input_size": str(input_size),
        "mean": json.dumps(list(mean)),
        "std": json.dumps(list(std)),
    }


def read_declared(path: Path, format_name: str, architecture: str) -> dict[str, str]:
    """The metadata of a weights file; ModelMismatchError unless it declares that format and architecture."""
    metadata = read_weights_metadata(path)
    if metadata.get("format") != format_name or metadata.get("architecture") != architecture:
        raise ModelMismatchError(
            f"{path} was saved as format={metadata.get('format')!r} architecture="
            f"{metadata.get('architecture')!r}; this loader expects {format_name!r} / {architecture!r}"
        )
    return metadata


def read_v1_metadata(path: Path) -> tuple[int, int, list[float], list[float], list[str]]:
    """(dimension, input size, mean, std, training labels) of a v1 weights file, checked."""
    require_weights(path, "fashion embedder", V1_TRAIN_COMMAND, "models/weights/fashion-embedder-v1.md")
    metadata = read_declared(path, V1_FORMAT, V1_ARCHITECTURE)
    try:
        dimension = int(metadata["dimension"])
        input_size = int(metadata["input_size"])
        mean = [float(v) for v in json.loads(metadata["mean"])]
        std = [float(v) for v in json.loads(metadata["std"])]
        labels = [str(v) for v in json.loads(metadata.get("labels", "[]"))]
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelMismatchError(f"{path} has missing or malformed metadata: {exc!r}") from exc
    if dimension < 1 or not 16 <= input_size <= 1024 or len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ModelMismatchError(
            f"{path} metadata is out of range: dimension={dimension}, input_size={input_size}, "
            f"mean={mean}, std={std}"
        )
    return dimension, input_size, mean, std, labels


# --- v3: the embedding network, attribute heads and the product gate -------------------------------------
ARCHITECTURE = "fashion-net-v3-mnv3s"
DIMENSION = 256
INPUT_SIZE = 112
TRUNK_CHANNELS = 576
FORMAT = MULTITASK_FORMAT
IGNORE_INDEX = -100
TRAIN_COMMAND = (
    "python -m models.fashion_net.train_v3 --fpi ../shared/data/fpi-train --clothing ../shared/data/clothing "
    "--ccp ../shared/data/ccp --out {path} --minutes 70 --seed 0 --threads 1"
)


# --- label spaces -----------------------------------------------------------------------------------
# Values are the retrieval taxonomy's (models/attributes/taxonomy.json) wherever it has the group. A
# head lists only values that have training labels: taxonomy values with no source (colour "light blue",
# style "business"/"evening"/..., pattern "camouflage"/"animal"/..., sleeve "three-quarter") are absent.

CATEGORY_LABELS = (
    "top", "outerwear", "dress", "trousers", "shorts", "skirt", "footwear", "bag", "hat", "scarf", "belt",
    "eyewear", "other",
)  # fmt: skip
# fpi articleTypes with >= 20 products in the fpi training split (validation ids excluded), then the
# clothing/CCP labels that have no fpi equivalent (the equivalents are merged: see CLOTHING_ARTICLE).
FPI_ARTICLES = (
    "Backpacks", "Bangle", "Belts", "Boxers", "Bra", "Bracelet", "Briefs", "Camisoles", "Capris", "Caps",
    "Casual Shoes", "Clutches", "Cufflinks", "Dresses", "Duffel Bag", "Dupatta", "Earrings", "Flats",
    "Flip Flops", "Formal Shoes", "Handbags", "Heels", "Innerwear Vests", "Jackets", "Jeans", "Jeggings",
    "Jewellery Set", "Kurta Sets", "Kurtas", "Kurtis", "Laptop Bag", "Leggings", "Lounge Pants",
    "Mobile Pouch", "Necklace and Chains", "Night suits", "Nightdress", "Patiala", "Pendant", "Ring",
    "Sandals", "Sarees", "Scarves", "Shirts", "Shorts", "Skirts", "Socks", "Sports Shoes", "Stoles",
    "Sunglasses", "Ties", "Tops", "Track Pants", "Trousers", "Trunk", "Tshirts", "Tunics", "Wallets",
    "Watches",
)  # fmt: skip
CLOTHING_ONLY_ARTICLES = (
    "Bag", "Blazer", "Blouse", "Body", "Hat", "Hoodie", "Longsleeve", "Outwear", "Pants", "Polo", "Shoes",
    "Undershirt",
)  # fmt: skip
ARTICLE_LABELS = FPI_ARTICLES + CLOTHING_ONLY_ARTICLES
# clothing-dataset / CCP training label -> the fpi articleType that names the same garment.
CLOTHING_ARTICLE = {
    "T-Shirt": "Tshirts", "Shirt": "Shirts", "Dress": "Dresses", "Shorts": "Shorts", "Skirt": "Skirts",
    "Top": "Tops", "Scarf": "Scarves",
}  # fmt: skip
COLOUR_LABELS = (
    "black", "white", "grey", "cream", "beige", "khaki", "brown", "red", "burgundy", "pink", "orange",
    "yellow", "olive", "green", "teal", "blue", "navy", "purple", "lilac",
)  # fmt: skip
GENDER_LABELS = ("women", "men", "unisex", "girls", "boys")
STYLE_LABELS = ("casual", "smart casual", "formal", "party", "sporty", "outdoor")
SEASON_LABELS = ("spring", "summer", "fall", "winter")
PATTERN_LABELS = ("solid", "striped", "checked", "floral", "dotted", "graphic")
FOOTWEAR_LABELS = ("sneaker", "boot", "heel", "pump", "sandal", "slide", "flat", "loafer", "oxford")
SLEEVE_LABELS = ("sleeveless", "short", "long")
GATE_LABELS = ("product", "scene")

HEADS: dict[str, tuple[str, ...]] = {
    "category": CATEGORY_LABELS,
    "article": ARTICLE_LABELS,
    "colour": COLOUR_LABELS,
    "gender": GENDER_LABELS,
    "style": STYLE_LABELS,
    "season": SEASON_LABELS,
    "pattern": PATTERN_LABELS,
    "footwear_type": FOOTWEAR_LABELS,
    "sleeve_length": SLEEVE_LABELS,
    "gate": GATE_LABELS,
}
# Which training sources give each head labels ("fpi" catalogue products, "clothing" photos, "ccp"
# street garment crops, "scene" whole CCP training photos). Every other source is ignore_index.
HEAD_SOURCES: dict[str, tuple[str, ...]] = {
    "category": ("fpi", "clothing", "ccp"),
    "article": ("fpi", "clothing", "ccp"),
    "colour": ("fpi",),
    "gender": ("fpi",),
    "style": ("fpi",),  # from usage
    "season": ("fpi",),
    "pattern": ("fpi",),  # weak: title words only
    "footwear_type": ("fpi", "ccp"),
    "sleeve_length": ("fpi", "clothing", "ccp"),
    "gate": ("fpi", "clothing", "scene"),
}


def read_multitask_metadata(path: Path) -> dict[str, Any]:
    """The parsed, checked metadata of a v3 weights file (heads, sources, temperatures, preprocessing)."""
    path = require_weights(path, "fashion-net-v3", TRAIN_COMMAND, "models/weights/fashion-net-v3.md")
    raw = read_declared(path, FORMAT, ARCHITECTURE)
    try:
        parsed: dict[str, Any] = {
            "dimension": int(raw["dimension"]),
            "input_size": int(raw["input_size"]),
            "mean": [float(v) for v in json.loads(raw["mean"])],
            "std": [float(v) for v in json.loads(raw["std"])],
            "heads": {k: tuple(v) for k, v in json.loads(raw["heads"]).items()},
            "head_sources": {k: tuple(v) for k, v in json.loads(raw.get("head_sources", "{}")).items()},
            "temperatures": {k: float(v) for k, v in json.loads(raw["temperatures"]).items()},
            "training": json.loads(raw.get("training", "{}")),
        }
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ModelMismatchError(f"{path} has missing or malformed metadata: {exc!r}") from exc
    if parsed["dimension"] != DIMENSION or parsed["input_size"] != INPUT_SIZE:
        raise ModelMismatchError(
            f"{path} has dimension={parsed['dimension']} input_size={parsed['input_size']}; "
            f"{ARCHITECTURE} is dimension {DIMENSION}, input {INPUT_SIZE} px"
        )
    if len(parsed["mean"]) != 3 or len(parsed["std"]) != 3 or min(parsed["std"]) <= 0:
        raise ModelMismatchError(f"{path} has bad mean/std: {parsed['mean']} / {parsed['std']}")
    heads = parsed["heads"]
    if list(heads) != list(HEADS):
        raise ModelMismatchError(f"{path} has heads {list(heads)}; this code expects {list(HEADS)}")
    for name, labels in HEADS.items():
        if heads[name] != labels:
            raise ModelMismatchError(
                f"{path} head {name!r} has labels {list(heads[name])}; this code expects {list(labels)}"
            )
    temperatures = parsed["temperatures"]
    bad = {k: v for k, v in temperatures.items() if not (math.isfinite(v) and v > 0)}
    if set(temperatures) != set(HEADS) or bad:
        raise ModelMismatchError(
            f"{path} temperatures {temperatures} must be positive and cover every head {list(HEADS)}"
        )
    return parsed
