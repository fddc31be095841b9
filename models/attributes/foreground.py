"""Foreground of a catalogue product shot: the pixels that do not look like the photo's border.

Product photos put the garment on a plain or softly lit backdrop that touches the border. The border ring's
colours (a few k-means centres in CIELAB) model the backdrop; a pixel closer than `threshold` (delta E) to
one of them is background. When that leaves almost nothing (a garment that fills the frame, a busy
backdrop), the centre of the image is used instead, which is what a human would look at.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from models.attributes.colour import kmeans, srgb_to_lab

BORDER_FRACTION = 0.04
MIN_FOREGROUND_FRACTION = 0.05
MIN_BACKDROP_SHARE = 0.3
WORK_SIDE = 160  # the mask is computed on a thumbnail; callers get it at full size
KMEANS_ITERATIONS = 8


def foreground_mask(image: Image.Image, threshold: float = 12.0, backdrop_colours: int = 3) -> np.ndarray:
    """Bool mask (height, width) of the product in a catalogue shot."""
    width, height = image.size
    scale = min(1.0, WORK_SIDE / max(width, height))
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(image.convert("RGB").resize(small_size, Image.Resampling.BILINEAR))
    h, w = small.shape[:2]
    lab = srgb_to_lab(small.reshape(-1, 3).astype(np.float64)).reshape(h, w, 3)
    ring = max(1, round(min(h, w) * BORDER_FRACTION))
    border = np.concatenate(
        [lab[:ring].reshape(-1, 3), lab[-ring:].reshape(-1, 3), lab[:, :ring].reshape(-1, 3)]
        + [lab[:, -ring:].reshape(-1, 3)]
    )
    centres, counts = kmeans(border, backdrop_colours, KMEANS_ITERATIONS, np.random.default_rng(0))
    share = counts / counts.sum()
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
