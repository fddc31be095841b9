"""fashion-net-v3: the v1 retrieval network plus attribute heads and a product-vs-scene gate.

One MobileNetV3-Small trunk (112 px input, squashed, ImageNet mean/std) feeds:
- the v1 embedding path (GeM -> 576->256 projection -> BN neck -> L2 norm), and
- one linear head per attribute on the GeM-pooled trunk features (576-d).

`MultiTaskNet.forward(pixels)` returns `(embedding, {head: logits})`: the embedding is L2-normalised
float32 (n, 256); logits are raw (n, len(labels)). `probabilities(logits)` divides each head's logits by
its calibrated temperature before the softmax. Head label lists, their training sources and temperatures
are stored in the safetensors metadata and checked by `load_multitask`.

Also here, for the training recipe and benchmarks: `Part` (a source's images with their head labels,
encoded to class indices with ignore_index -100), batched `predict` on uint8 pixels and the per-head
temperature fit.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from models.errors import ModelMismatchError, WeightsNotFoundError
from models.fashion_net.data import Sample, to_input
from models.fashion_net.network import ARCHITECTURE as V1_ARCHITECTURE
from models.fashion_net.network import GeM, network_metadata
from models.files import read_weights_metadata, require_weights
from models.spec import MULTITASK_FORMAT

FORMAT = MULTITASK_FORMAT
ARCHITECTURE = "fashion-net-v3-mnv3s"
DIMENSION = 256
INPUT_SIZE = 112
TRUNK_CHANNELS = 576
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
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


class MultiTaskNet(nn.Module):
    """Pixels (n, 3, s, s), normalised -> (L2-normalised embedding (n, d), {head: logits (n, k)})."""

    def __init__(
        self,
        dimension: int = DIMENSION,
        heads: Mapping[str, Sequence[str]] | None = None,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.trunk = torchvision.models.mobilenet_v3_small(weights=None).features
        self.pool = GeM()
        self.project = nn.Linear(TRUNK_CHANNELS, dimension, bias=False)
        self.neck = nn.BatchNorm1d(dimension)
        self.dimension = dimension
        self.head_labels: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in (heads or HEADS).items()}
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict(
            {name: nn.Linear(TRUNK_CHANNELS, len(labels)) for name, labels in self.head_labels.items()}
        )
        self.temperatures: dict[str, float] = dict.fromkeys(self.head_labels, 1.0)

    def features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(un-normalised BN-neck embedding, pooled trunk features)."""
        pooled = self.pool(self.trunk(pixels))
        return self.neck(self.project(pooled)), pooled

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        embedding, pooled = self.features(pixels)
        hidden = self.dropout(pooled)
        logits = {name: head(hidden).float() for name, head in self.heads.items()}
        return F.normalize(embedding.float(), dim=-1), logits

    def probabilities(self, logits: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Softmax of each head's logits divided by its calibrated temperature; rows sum to 1."""
        return {
            name: F.softmax(value.float() / self.temperatures[name], dim=-1) for name, value in logits.items()
        }


# --- training-time helpers (label encoding, batched prediction, calibration) --------------------------


@dataclass
class Part:
    """The images of one source in one split, their group keys and head labels (-100 = none)."""

    source: str
    samples: list[Sample] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    labels: list[dict[str, str | None]] = field(default_factory=list)

    def add(self, sample: Sample, key: str, labels: dict[str, str | None]) -> None:
        self.samples.append(sample)
        self.keys.append(key)
        self.labels.append(labels)

    def subset(self, keep: set[str] | None = None, drop: set[str] | None = None) -> Part:
        part = Part(self.source)
        for sample, key, labels in zip(self.samples, self.keys, self.labels, strict=True):
            if (keep is None or key in keep) and (drop is None or key not in drop):
                part.add(sample, key, labels)
        return part

    def first(self, limit: int | None) -> Part:
        part = Part(self.source, self.samples[:limit], self.keys[:limit], self.labels[:limit])
        return part if limit else self

    def targets(self) -> np.ndarray:
        """(n, heads) int64 class indices; -100 where a head has no label or the source does not label it."""
        index = {name: {label: i for i, label in enumerate(labels)} for name, labels in HEADS.items()}
        out = np.full((len(self.samples), len(HEADS)), IGNORE_INDEX, dtype=np.int64)
        for row, labels in enumerate(self.labels):
            for column, name in enumerate(HEADS):
                value = labels.get(name)
                if value is not None and self.source in HEAD_SOURCES[name]:
                    out[row, column] = index[name].get(value, IGNORE_INDEX)
        return out


@torch.inference_mode()
def predict(
    model: MultiTaskNet, pixels: np.ndarray, size: int, mean: torch.Tensor, std: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Embeddings and raw logits of uint8 (n, h, w, 3) pixels, resized to `size`, in batches of 256."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    embeddings, logits = [], defaultdict(list)
    for start in range(0, len(pixels), 256):
        emb, out = model(to_input(torch.from_numpy(pixels[start : start + 256]), size, mean, std).to(device))
        embeddings.append(emb.cpu())
        for name, value in out.items():
            logits[name].append(value.cpu())
    model.train(was_training)
    return torch.cat(embeddings), {name: torch.cat(values) for name, values in logits.items()}


def fit_temperatures(
    model: MultiTaskNet,
    pixels: np.ndarray,
    targets: np.ndarray,
    size: int,
    mean: torch.Tensor,
    std: torch.Tensor,
) -> dict[str, float]:
    """One temperature per head minimising the NLL on the calibration images (grid search, 0.25-8)."""
    _, logits = predict(model, pixels, size, mean, std)
    grid = torch.logspace(math.log10(0.25), math.log10(8.0), 241)
    temperatures = {}
    for column, name in enumerate(HEADS):
        mask = torch.from_numpy(targets[:, column] != IGNORE_INDEX)
        if int(mask.sum()) < 10:  # too few labels to fit: uncalibrated
            temperatures[name] = 1.0
            continue
        values, labels = logits[name][mask], torch.from_numpy(targets[:, column])[mask]
        losses = torch.stack([F.cross_entropy(values / t, labels) for t in grid])
        temperatures[name] = round(float(grid[int(losses.argmin())]), 4)
    return temperatures


# --- weights file -----------------------------------------------------------------------------------


def init_from_v1(model: MultiTaskNet, path: Path) -> None:
    """Copy trunk, pooling, projection and neck from the v1 embedder file (read-only); heads stay random."""
    if not path.is_file():
        raise WeightsNotFoundError(
            f"v1 embedder weights {path} do not exist (models/weights/fashion-embedder-v1.md)"
        )
    metadata = read_weights_metadata(path)
    if metadata.get("architecture") != V1_ARCHITECTURE or metadata.get("dimension") != str(model.dimension):
        raise ModelMismatchError(
            f"{path} is architecture={metadata.get('architecture')!r} "
            f"dimension={metadata.get('dimension')!r}; "
            f"expected {V1_ARCHITECTURE!r} with dimension {model.dimension}"
        )
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    if unexpected or any(not key.startswith("heads.") for key in missing):
        raise ModelMismatchError(
            f"{path} does not fit the v3 trunk: missing={missing}, unexpected={unexpected}"
        )


def save_multitask(
    model: MultiTaskNet,
    path: Path,
    input_size: int = INPUT_SIZE,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    head_sources: Mapping[str, Sequence[str]] | None = None,
    training: dict[str, Any] | None = None,
) -> None:
    """Write the network (trunk, embedding path, heads) as safetensors with labels and temperatures."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    sources = head_sources if head_sources is not None else HEAD_SOURCES
    metadata = {
        "format": FORMAT,
        **network_metadata(ARCHITECTURE, model.dimension, input_size, mean, std),
        "heads": json.dumps({name: list(labels) for name, labels in model.head_labels.items()}),
        "head_sources": json.dumps({name: list(sources.get(name, ())) for name in model.head_labels}),
        "temperatures": json.dumps(model.temperatures),
        "training": json.dumps(training or {}),
    }
    save_file(state, str(path), metadata=metadata)


def read_multitask_metadata(path: Path) -> dict[str, Any]:
    """The parsed, checked metadata of a v3 weights file (heads, sources, temperatures, preprocessing)."""
    path = require_weights(path, "fashion-net-v3", TRAIN_COMMAND, "models/weights/fashion-net-v3.md")
    raw = read_weights_metadata(path)
    if raw.get("format") != FORMAT or raw.get("architecture") != ARCHITECTURE:
        raise ModelMismatchError(
            f"{path} was saved as format={raw.get('format')!r} architecture={raw.get('architecture')!r}; "
            f"this loader expects {FORMAT!r} / {ARCHITECTURE!r}"
        )
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


def load_multitask(path: Path, device: str = "cpu") -> MultiTaskNet:
    """The v3 network from `path` in eval mode, with its calibrated temperatures; checks the metadata.

    Raises WeightsNotFoundError (naming the path and the training command) when the file is missing and
    ModelMismatchError when the metadata or tensors do not match this architecture and label spaces.
    """
    path = Path(path)
    metadata = read_multitask_metadata(path)
    model = MultiTaskNet(metadata["dimension"], metadata["heads"])
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as exc:
        lines = str(exc).splitlines()
        raise ModelMismatchError(f"{path} does not fit {ARCHITECTURE}: {' '.join(lines[:2])}") from exc
    model.temperatures = dict(metadata["temperatures"])
    return model.to(device).eval()
