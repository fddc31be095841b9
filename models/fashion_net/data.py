"""Training and evaluation data for the fashion embedder: labels, held-out splits, CCP garment crops.

Data paths are always arguments. Decoded, resized images are cached as uint8 arrays under a work
directory (the repository's gitignored var/), never inside the package.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

log = logging.getLogger(__name__)

DROPPED_CLOTHING_LABELS = frozenset({"Not sure", "Skip", "Other"})
CLOTHING_LABELS = (
    "Blazer", "Blouse", "Body", "Dress", "Hat", "Hoodie", "Longsleeve", "Outwear", "Pants", "Polo",
    "Shirt", "Shoes", "Shorts", "Skirt", "T-Shirt", "Top", "Undershirt",
)  # fmt: skip
# Street-domain classes with no catalogue counterpart in the clothing set, trained as extra classes.
EXTRA_LABELS = ("Bag", "Scarf")
TRAIN_LABELS = CLOTHING_LABELS + EXTRA_LABELS

# CCP mask label -> training label (the nearest clothing-dataset label, or an extra class).
# Not mapped (too small, not a garment, or ambiguous): null, accessories, belt, bracelet, earrings,
# glasses, gloves, hair, intimate, necklace, panties, ring, skin, socks, stockings, sunglasses, swimwear,
# tie, tights, vest, watch, bra.
CCP_TO_LABEL = {
    "blazer": "Blazer", "suit": "Blazer", "blouse": "Blouse", "bodysuit": "Body", "dress": "Dress",
    "romper": "Dress", "hat": "Hat", "hoodie": "Hoodie", "sweater": "Longsleeve", "jumper": "Longsleeve",
    "sweatshirt": "Longsleeve", "cardigan": "Outwear", "coat": "Outwear", "jacket": "Outwear",
    "cape": "Outwear", "pants": "Pants", "jeans": "Pants", "leggings": "Pants", "shirt": "Shirt",
    "shorts": "Shorts", "skirt": "Skirt", "t-shirt": "T-Shirt", "top": "Top", "shoes": "Shoes",
    "boots": "Shoes", "heels": "Shoes", "sneakers": "Shoes", "sandals": "Shoes", "flats": "Shoes",
    "loafers": "Shoes", "pumps": "Shoes", "wedges": "Shoes", "clogs": "Shoes", "bag": "Bag",
    "purse": "Bag", "scarf": "Scarf",
}  # fmt: skip

# Clothing label -> the retrieval taxonomy's coarse category (used for cross-domain evaluation).
COARSE_CATEGORY = {
    "T-Shirt": "top", "Longsleeve": "top", "Shirt": "top", "Polo": "top", "Undershirt": "top",
    "Top": "top", "Blouse": "top", "Body": "top", "Hoodie": "top", "Outwear": "outerwear",
    "Blazer": "outerwear", "Dress": "dress", "Pants": "trousers", "Shorts": "shorts", "Skirt": "skirt",
    "Shoes": "footwear", "Hat": "hat",
}  # fmt: skip

CCP_PHOTO_IDS = range(1, 901)
CCP_HELDOUT_SEED = 0
CCP_HELDOUT_COUNT = 90
CLOTHING_HELDOUT_FRACTION = 0.15


@dataclass(frozen=True)
class Sample:
    """One training or evaluation image: a whole clothing photo or a box cut from a CCP photo."""

    path: Path
    label: str
    domain: str  # "clothing" or "ccp"
    box: tuple[int, int, int, int] | None = None  # (left, top, right, bottom) in photo pixels

    @property
    def key(self) -> str:
        return f"{self.path.name}:{self.box}" if self.box else self.path.name


def ccp_heldout_ids() -> set[int]:
    """The CCP photo ids no training run may see (shared with the garment parser)."""
    return set(random.Random(CCP_HELDOUT_SEED).sample(range(1, 901), CCP_HELDOUT_COUNT))


def clothing_samples(root: Path) -> list[Sample]:
    """Labelled clothing photos present on disk, minus the dropped labels, in csv order."""
    samples = []
    with (root / "images.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["label"] in DROPPED_CLOTHING_LABELS:
                continue
            path = root / "images" / f"{row['image']}.jpg"
            if path.is_file():
                samples.append(Sample(path, row["label"], "clothing"))
    return samples


def split_clothing(samples: list[Sample], seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """A fixed stratified split: 15% of each label (sorted by file name, seeded shuffle) held out."""
    by_label: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_label[sample.label].append(sample)
    train, heldout = [], []
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda s: s.path.name)
        random.Random(f"{seed}:{label}").shuffle(group)
        cut = max(1, round(CLOTHING_HELDOUT_FRACTION * len(group)))
        heldout += group[:cut]
        train += group[cut:]
    return train, heldout


def garment_boxes(
    mask: np.ndarray, label_names: list[str], min_pixels: int = 1500, min_side: int = 24, margin: float = 0.08
) -> list[tuple[str, tuple[int, int, int, int]]]:
    """For each mapped CCP label present in a mask: the bounding box of its pixels with a margin.

    Regions smaller than `min_pixels` or with a side under `min_side` are skipped.
    """
    return [(label, box) for _, label, box in labelled_boxes(mask, label_names, min_pixels, min_side, margin)]


def labelled_boxes(
    mask: np.ndarray, label_names: list[str], min_pixels: int = 1500, min_side: int = 24, margin: float = 0.08
) -> list[tuple[str, str, tuple[int, int, int, int]]]:
    """`garment_boxes` with each region's raw CCP label first: (raw label, mapped label, box)."""
    height, width = mask.shape
    boxes = []
    for index in np.unique(mask):
        raw = label_names[int(index)]
        label = CCP_TO_LABEL.get(raw)
        if label is None:
            continue
        region = mask == index
        if int(region.sum()) < min_pixels:
            continue
        rows = np.flatnonzero(region.any(axis=1))
        cols = np.flatnonzero(region.any(axis=0))
        top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        if min(bottom - top, right - left) < min_side:
            continue
        pad_y, pad_x = margin * (bottom - top), margin * (right - left)
        box = (
            max(0, int(left - pad_x)),
            max(0, int(top - pad_y)),
            min(width, int(right + pad_x)),
            min(height, int(bottom + pad_y)),
        )
        boxes.append((raw, label, box))
    return boxes


def ccp_samples(root: Path, heldout: bool) -> list[Sample]:
    """Garment crops from the CCP training photos (heldout=False) or the held-out photos (True)."""
    label_names = json.loads((root / "labels.json").read_text())
    held = ccp_heldout_ids()
    samples = []
    for photo_id in CCP_PHOTO_IDS:
        if (photo_id in held) != heldout:
            continue
        mask_path = root / "masks" / f"{photo_id:04d}.png"
        photo_path = root / "photos" / f"{photo_id:04d}.jpg"
        if not (mask_path.is_file() and photo_path.is_file()):
            continue
        mask = np.asarray(Image.open(mask_path))
        for label, box in garment_boxes(mask, label_names):
            samples.append(Sample(photo_path, label, "ccp", box))
    return samples


def to_input(pixels: torch.Tensor, out_size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Cached uint8 pixels (n, h, w, 3) -> normalised network input (n, 3, out_size, out_size)."""
    x = pixels.permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-1] != out_size:
        x = F.interpolate(x, size=(out_size, out_size), mode="bilinear", antialias=True, align_corners=False)
    return (x - mean) / std


def load_image(sample: Sample) -> Image.Image:
    with Image.open(sample.path) as opened:
        image = opened.convert("RGB")
    return image.crop(sample.box) if sample.box else image


def decode_resized(sample: Sample, size: int) -> np.ndarray:
    """The sample as a (size, size, 3) uint8 array, squashed to a square like the embedder's preprocess."""
    image = load_image(sample)
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0), dtype=np.uint8)


def cached_pixels(samples: list[Sample], size: int, cache_dir: Path) -> np.ndarray:
    """Decode and resize once; later runs read the (n, size, size, 3) uint8 array from cache_dir."""
    digest = hashlib.sha256("\n".join(f"{s.path}|{s.box}" for s in samples).encode()).hexdigest()[:16]
    path = cache_dir / f"pixels-{size}-{digest}.npy"
    if path.is_file():
        return np.load(path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    pixels = np.empty((len(samples), size, size, 3), dtype=np.uint8)
    for row, sample in enumerate(samples):
        pixels[row] = decode_resized(sample, size)
        if (row + 1) % 1000 == 0:
            log.info("decoded %d/%d images", row + 1, len(samples))
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, pixels)
    tmp.replace(path)
    return pixels
