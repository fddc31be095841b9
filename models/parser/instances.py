"""Garment instances from a per-pixel class map: connected components, nested-fragment merging, area filter.

Connected components and their boxes come from `scipy.ndimage` (`label`, 4-connectivity, and
`find_objects`). `extract_instances` is the plain component rule: the parser v2 post-processing and the
quality benchmark's ground-truth rule (benchmarks/quality_data.py). The detector's own post-processing,
which works per person on the class probabilities, is `models.parser.outfit.outfit_instances`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Instance:
    """One component in class-map pixels. `box` is [x0, y0, x1, y1) (exclusive end)."""

    class_index: int
    box: Box
    mask: np.ndarray  # bool, shape of the class map
    area: int
    score: float


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of a 2-D bool mask -> (int32 labels with 0 = off and 1..n, n), numbered in
    raster order of each component's first pixel."""
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    labels, count = ndimage.label(mask)
    return labels.astype(np.int32, copy=False), int(count)


def slice_box(region: tuple[slice, slice]) -> Box:
    """[x0, y0, x1, y1) of a `find_objects` (rows, cols) slice pair."""
    rows, cols = region
    return int(cols.start), int(rows.start), int(cols.stop), int(rows.stop)


def union_box(a: Box, b: Box) -> Box:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def box_area(box: Box) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def overlap_of_smaller(a: Box, b: Box) -> float:
    """Intersection of two boxes over the smaller box's area."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    return width * height / max(1, min(box_area(a), box_area(b)))


def extract_instances(
    class_map: np.ndarray,
    class_indices: tuple[int, ...],
    confidence: np.ndarray | None = None,
    min_area_frac: float = 0.001,
    merge_overlap: float = 0.5,
    label: Callable[[np.ndarray], tuple[np.ndarray, int]] = label_components,
) -> list[Instance]:
    """Components of each class in `class_indices`, largest first within a class.

    Components smaller than `min_area_frac` of the map are dropped. A remaining component whose box lies
    mostly (`merge_overlap` of the smaller box) inside another same-class component's box is merged into it:
    a top cut in two by a bag strap is one garment; two shoes side by side stay two. `confidence` (same
    shape, the predicted class's probability) gives each instance the mean inside it; without it score is 1.
    `label` finds the components (a reference implementation can be passed to compare against).
    """
    min_area = max(1, round(min_area_frac * class_map.size))
    instances: list[Instance] = []
    for class_index in class_indices:
        mask = class_map == class_index
        if not mask.any():
            continue
        labels, count = label(mask)
        areas = np.bincount(labels.reshape(-1), minlength=count + 1)
        regions = ndimage.find_objects(labels, max_label=count)
        merged: list[tuple[np.ndarray, Box]] = []
        for component in np.argsort(-areas[1:]) + 1:
            if areas[component] < min_area:
                break
            region = regions[component - 1]
            assert region is not None  # every label 1..count has pixels
            part = np.zeros(mask.shape, dtype=bool)
            part[region] = labels[region] == component
            box = slice_box(region)
            for position, (kept, kept_box) in enumerate(merged):
                if overlap_of_smaller(box, kept_box) >= merge_overlap:
                    kept |= part
                    merged[position] = (kept, union_box(kept_box, box))
                    break
            else:
                merged.append((part, box))
        for part, box in merged:
            score = float(confidence[part].mean()) if confidence is not None else 1.0
            instances.append(Instance(class_index, box, part, int(part.sum()), score))
    return instances
