"""Foreground of a catalogue product shot: the pixels that do not look like the photo's border.

Product photos put the garment on a plain or softly lit backdrop that touches the border. The border ring's
colours (a few k-means centres in CIELAB) model the backdrop; a pixel closer than `threshold` (delta E) to
one of them is background. When that leaves almost nothing (a garment that fills the frame, a busy
backdrop), the centre of the image is used instead, which is what a human would look at.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

BORDER_FRACTION = 0.04
MIN_FOREGROUND_FRACTION = 0.05
MIN_BACKDROP_SHARE = 0.3
WORK_SIDE = 160  # the mask is computed on a thumbnail; callers get it at full size


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 sRGB -> (..., 3) float32 CIELAB (D65)."""
    linear = rgb.astype(np.float32) / 255.0
    linear = np.where(linear <= 0.04045, linear / 12.92, ((linear + 0.055) / 1.055) ** 2.4)
    matrix = np.array(
        [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]], dtype=np.float32
    )
    xyz = linear @ matrix.T / np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
    cube = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    lightness = 116.0 * cube[..., 1] - 16.0
    a = 500.0 * (cube[..., 0] - cube[..., 1])
    b = 200.0 * (cube[..., 1] - cube[..., 2])
    return np.stack([lightness, a, b], axis=-1).astype(np.float32)


def foreground_mask(image: Image.Image, threshold: float = 12.0, backdrop_colours: int = 3) -> np.ndarray:
    """Bool mask (height, width) of the product in a catalogue shot."""
    width, height = image.size
    scale = min(1.0, WORK_SIDE / max(width, height))
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(image.convert("RGB").resize(small_size, Image.Resampling.BILINEAR))
    lab = srgb_to_lab(small)
    h, w = lab.shape[:2]
    ring = max(1, round(min(h, w) * BORDER_FRACTION))
    border = np.concatenate(
        [lab[:ring].reshape(-1, 3), lab[-ring:].reshape(-1, 3), lab[:, :ring].reshape(-1, 3)]
        + [lab[:, -ring:].reshape(-1, 3)]
    )
    centres = _kmeans(border, backdrop_colours)
    nearest = np.argmin(np.linalg.norm(border[:, None] - centres[None], axis=-1), axis=1)
    share = np.bincount(nearest, minlength=len(centres)) / len(border)
    # A garment that touches the border must not become backdrop: keep the border's main colours only.
    centres = centres[(share >= MIN_BACKDROP_SHARE) | (share == share.max())]
    distance = np.min(np.linalg.norm(lab[:, :, None, :] - centres[None, None], axis=-1), axis=-1)
    mask = distance > threshold
    if mask.mean() < MIN_FOREGROUND_FRACTION:
        mask = np.zeros((h, w), dtype=bool)
        mask[h // 4 : h - h // 4 or h, w // 4 : w - w // 4 or w] = True
    rows = np.minimum((np.arange(height) * h) // height, h - 1)
    cols = np.minimum((np.arange(width) * w) // width, w - 1)
    return mask[rows[:, None], cols[None, :]]


def _kmeans(points: np.ndarray, k: int, iterations: int = 8) -> np.ndarray:
    """Deterministic k-means (centres initialised at spread-out quantiles of lightness)."""
    order = np.argsort(points[:, 0], kind="stable")
    k = max(1, min(k, len(points)))
    centres = points[order[np.linspace(0, len(points) - 1, k).astype(int)]].copy()
    for _ in range(iterations):
        nearest = np.argmin(np.linalg.norm(points[:, None] - centres[None], axis=-1), axis=1)
        for index in range(k):
            members = points[nearest == index]
            if len(members):
                centres[index] = members.mean(axis=0)
    return centres
