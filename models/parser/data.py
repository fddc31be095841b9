"""CCP data for the garment parser: the fixed held-out split, a uint8 cache, and tensor augmentation."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from models.parser.taxonomy import load_label_lookup

log = logging.getLogger(__name__)

# The same held-out photo ids as the fashion embedder (models/fashion_net/data.py): random.Random(0)
# sampling 90 of the 900 ids, so no garment seen by either model in training is in the other's evaluation.
SPLIT_SEED = 0
HELDOUT_COUNT = 90
PHOTO_IDS = range(1, 901)
IGNORE_INDEX = 255
CACHE_SCALE = 1.25  # cached arrays are this much larger than the training input, for zoom-in crops


def heldout_ids(seed: int = SPLIT_SEED, count: int = HELDOUT_COUNT) -> list[int]:
    return sorted(random.Random(seed).sample(list(PHOTO_IDS), count))


def train_ids() -> list[int]:
    held = set(heldout_ids())
    return [photo_id for photo_id in PHOTO_IDS if photo_id not in held]


def photo_path(data_dir: Path, photo_id: int) -> Path:
    return Path(data_dir) / "photos" / f"{photo_id:04d}.jpg"


def mask_path(data_dir: Path, photo_id: int) -> Path:
    return Path(data_dir) / "masks" / f"{photo_id:04d}.png"


def read_class_mask(data_dir: Path, photo_id: int, lookup: np.ndarray) -> np.ndarray:
    """The ground-truth mask of one photo mapped to parser class indices, at the photo's size."""
    with Image.open(mask_path(data_dir, photo_id)) as mask:
        return lookup[np.asarray(mask.convert("L"))]


@dataclass
class CachedSplit:
    ids: np.ndarray  # (n,) int
    images: np.ndarray  # (n, h, w, 3) uint8
    masks: np.ndarray  # (n, h, w) uint8 parser class indices


def load_cache(data_dir: Path, cache_dir: Path, size: tuple[int, int]) -> CachedSplit:
    """All 900 photos and class masks resized once to `size` (h, w) and cached as uint8 .npy files."""
    height, width = size
    folder = Path(cache_dir) / f"parser-ccp-{height}x{width}"
    files = {name: folder / f"{name}.npy" for name in ("ids", "images", "masks")}
    if not all(path.is_file() for path in files.values()):
        lookup = load_label_lookup(data_dir)
        ids = np.array(list(PHOTO_IDS), dtype=np.int32)
        images = np.empty((len(ids), height, width, 3), dtype=np.uint8)
        masks = np.empty((len(ids), height, width), dtype=np.uint8)
        log.info("caching %d photos at %dx%d into %s", len(ids), height, width, folder)
        for row, photo_id in enumerate(ids):
            with Image.open(photo_path(data_dir, int(photo_id))) as photo:
                images[row] = np.asarray(
                    photo.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
                )
            mask = Image.fromarray(read_class_mask(data_dir, int(photo_id), lookup))
            masks[row] = np.asarray(mask.resize((width, height), Image.Resampling.NEAREST))
        folder.mkdir(parents=True, exist_ok=True)
        for name, array in (("ids", ids), ("images", images), ("masks", masks)):
            temporary = folder / f"{name}.tmp.npy"
            np.save(temporary, array)
            temporary.replace(files[name])
    return CachedSplit(*(np.load(files[name]) for name in ("ids", "images", "masks")))


def subset(cache: CachedSplit, ids: list[int]) -> CachedSplit:
    rows = np.searchsorted(cache.ids, np.array(ids))
    if not np.array_equal(cache.ids[rows], np.array(ids)):
        raise ValueError("cache does not hold every requested photo id")
    return CachedSplit(cache.ids[rows], cache.images[rows], cache.masks[rows])


@dataclass(frozen=True)
class Augment:
    zoom: tuple[float, float] = (0.7, 1.5)
    aspect: tuple[float, float] = (0.9, 1.1)
    flip: float = 0.5
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3


def augment_sample(
    image: np.ndarray, mask: np.ndarray, size: tuple[int, int], aug: Augment, rng: random.Random
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random zoom/crop (padded with ignore), flip and colour jitter -> float (3,h,w) in [0,1], long (h,w)."""
    out_h, out_w = size
    src_h, src_w = mask.shape
    zoom = rng.uniform(*aug.zoom)
    zoom_w = zoom * rng.uniform(*aug.aspect)
    win_h = max(8, round(src_h / (CACHE_SCALE * zoom)))
    win_w = max(8, round(src_w / (CACHE_SCALE * zoom_w)))
    y0 = rng.randint(min(0, src_h - win_h), max(0, src_h - win_h))
    x0 = rng.randint(min(0, src_w - win_w), max(0, src_w - win_w))
    window_image = torch.zeros((3, win_h, win_w), dtype=torch.float32)
    window_mask = torch.full((win_h, win_w), IGNORE_INDEX, dtype=torch.uint8)
    sy0, sx0 = max(0, y0), max(0, x0)
    sy1, sx1 = min(src_h, y0 + win_h), min(src_w, x0 + win_w)
    window_image[:, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = (
        torch.from_numpy(image[sy0:sy1, sx0:sx1]).permute(2, 0, 1).float() / 255.0
    )
    window_mask[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = torch.from_numpy(mask[sy0:sy1, sx0:sx1])
    pixels = F.interpolate(
        window_image[None], size=size, mode="bilinear", align_corners=False, antialias=True
    )[0]
    labels = F.interpolate(window_mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
    if rng.random() < aug.flip:
        pixels, labels = pixels.flip(-1), labels.flip(-1)
    pixels = pixels * rng.uniform(1 - aug.brightness, 1 + aug.brightness)
    mean = pixels.mean()
    pixels = (pixels - mean) * rng.uniform(1 - aug.contrast, 1 + aug.contrast) + mean
    grey = pixels.mean(dim=0, keepdim=True)
    pixels = (pixels - grey) * rng.uniform(1 - aug.saturation, 1 + aug.saturation) + grey
    return pixels.clamp(0.0, 1.0), labels[:out_h, :out_w]


def normalise(pixels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(n,3,h,w) floats in [0,1] -> normalised network input."""
    mean_t = torch.tensor(mean, dtype=pixels.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=pixels.dtype).view(1, 3, 1, 1)
    return (pixels - mean_t) / std_t
