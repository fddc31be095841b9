"""Garment instances of an outfit from the parser's class probabilities (parser v3 post-processing).

Per person (a connected piece of the photo's non-background pixels, grown a little so that an arm or a
bag does not cut one person in two):
1. dress or top + skirt: when the person has both dress and skirt pixels, the class with the larger
   summed probability over the person's garment pixels wins; the loser's pixels take their next most
   probable piece of clothing. A dress and a skirt on one person is never a reading of one photo (never
   in the CCP masks either), while a top or a coat over a dress is.
2. fragments of one garment become one instance: same-class components whose boxes mostly overlap, or
   that are close (gap <= `gap_frac` of the person's height) and whose union box is not much larger than
   the pieces (`growth`) - a top cut by a strap, a coat cut by an arm. Footwear (and the other classes in
   `overlap_only`) merge only when their boxes truly overlap: two shoes stay two.
3. components tiny relative to the person (`min_person_frac` of its garment pixels) are dropped; at most
   one dress per person (the largest); accessories only at or above `accessory_min_score`.
4. instances are ordered by area x score, largest and most confident first: the garment to pre-select.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from models.parser.instances import (
    Box,
    Instance,
    box_area,
    label_components,
    overlap_of_smaller,
    slice_box,
    union_box,
)
from models.parser.taxonomy import CLASS_INDEX, GARMENT_CLASSES

ACCESSORY_CLASSES: tuple[str, ...] = ("hat", "scarf", "belt", "eyewear")
CLOTHING_CLASSES: tuple[str, ...] = ("top", "outerwear", "dress", "trousers", "shorts", "skirt")


@dataclass(frozen=True)
class OutfitRules:
    """The thresholds of `outfit_instances`, measured on the CCP validation split (benchmarks/detection.py
    and the parser model card)."""

    min_area_frac: float = 0.001  # components under this share of the map are noise, before merging
    min_person_frac: float = 0.01  # instances under this share of their person's garment pixels are dropped
    merge_overlap: float = 0.5  # boxes overlapping this much of the smaller one are one garment
    gap_frac: float = 0.05  # close fragments: gap between boxes <= this share of the person's height
    growth: float = 1.3  # ... and union box area <= growth x the sum of both box areas (0: never)
    overlap_only: tuple[str, ...] = ("footwear",)  # classes merged only when overlapping
    person_reach_frac: float = 0.02  # grow the foreground by this share of the map height to find people
    min_person_share: float = 0.2  # a person has at least this share of the largest person's garment pixels
    one_dress: bool = True  # dress vs top + skirt per person, at most one dress per person
    accessory_min_score: float = 0.65  # hat, scarf, belt, eyewear kept only at or above this score


@dataclass
class _Group:
    """Same-class components merged into one garment candidate."""

    labels: list[int]
    box: Box
    area: int
    mass: float  # summed probability of the class over the group's pixels

    @property
    def score(self) -> float:
        return self.mass / max(1, self.area)


def class_map_of(probs: np.ndarray) -> np.ndarray:
    """Most probable class per pixel of (classes, h, w) probabilities, as int64 (numpy's argmax over the
    first axis is strided and several times slower than this running maximum)."""
    best = probs[0].copy()
    class_map = np.zeros(best.shape, dtype=np.int64)
    for class_index in range(1, probs.shape[0]):
        better = probs[class_index] > best
        class_map[better] = class_index
        np.maximum(best, probs[class_index], out=best)
    return class_map


def people(class_map: np.ndarray, garment: np.ndarray, rules: OutfitRules) -> tuple[np.ndarray, list[int]]:
    """Person labels of the map (0 = nobody) and the labels that count as people: connected pieces of the
    grown non-background, with at least `min_person_share` of the largest piece's garment pixels."""
    reach = max(1, round(rules.person_reach_frac * class_map.shape[0]))
    foreground = ndimage.maximum_filter(class_map != 0, size=2 * reach + 1)
    labels, count = label_components(foreground)
    garment_area = np.bincount(labels[garment], minlength=count + 1)
    garment_area[0] = 0
    if count == 0 or garment_area.max() == 0:
        return labels, []
    keep = np.nonzero(garment_area >= rules.min_person_share * garment_area.max())[0]
    return labels, [int(label) for label in keep if label]


def resolve_dress(probs: np.ndarray, class_map: np.ndarray, region: np.ndarray) -> None:
    """Dress or skirt for the garment pixels `region` of one person, in place on `class_map`: the class
    with the larger summed probability keeps its pixels; the other's pixels get their most probable
    other piece of clothing (never a bag, a shoe or an accessory: they were clothing either way)."""
    dress, skirt = CLASS_INDEX["dress"], CLASS_INDEX["skirt"]
    here = class_map[region]
    if not (here == dress).any() or not (here == skirt).any():
        return
    loser = skirt if probs[dress][region].sum() >= probs[skirt][region].sum() else dress
    pixels = region & (class_map == loser)
    others = np.array([CLASS_INDEX[name] for name in CLOTHING_CLASSES if CLASS_INDEX[name] != loser])
    class_map[pixels] = others[probs[others][:, pixels].argmax(axis=0)]


def _mergeable(a: _Group, b: _Group, separate: bool, reach: float, rules: OutfitRules) -> bool:
    if overlap_of_smaller(a.box, b.box) >= rules.merge_overlap:
        return True
    if separate:
        return False
    gap = max(b.box[0] - a.box[2], a.box[0] - b.box[2], b.box[1] - a.box[3], a.box[1] - b.box[3])
    grown = box_area(union_box(a.box, b.box))
    return gap <= reach and grown <= rules.growth * (box_area(a.box) + box_area(b.box))


def _groups(
    labels: np.ndarray,
    count: int,
    weights: np.ndarray,
    min_area: int,
    separate: bool,
    reach: float,
    rules: OutfitRules,
) -> list[_Group]:
    """Components of one class and person (labels of a window of the map, `weights` the class's
    probabilities over the same window) merged largest first, each joining the first group it fits."""
    areas = np.bincount(labels.reshape(-1), minlength=count + 1)
    masses = np.bincount(labels.reshape(-1), weights=weights.reshape(-1), minlength=count + 1)
    regions = ndimage.find_objects(labels, max_label=count)
    groups: list[_Group] = []
    for component in np.argsort(-areas[1:], kind="stable") + 1:
        region = regions[component - 1]
        if areas[component] < min_area or region is None:
            break
        part = _Group([int(component)], slice_box(region), int(areas[component]), float(masses[component]))
        for group in groups:
            if _mergeable(group, part, separate, reach, rules):
                group.labels += part.labels
                group.box = union_box(group.box, part.box)
                group.area += part.area
                group.mass += part.mass
                break
        else:
            groups.append(part)
    return groups


def outfit_instances(
    probs: np.ndarray, class_map: np.ndarray | None = None, rules: OutfitRules | None = None
) -> list[Instance]:
    """Garment instances of `probs` (classes, h, w; softmax probabilities of the parser's classes) by the
    rules above, largest x most confident first. `class_map` (the argmax, if already computed) is not
    modified. Scores are the mean probability of the instance's class over its pixels."""
    rules = rules or OutfitRules()
    if probs.ndim != 3:
        raise ValueError(f"expected probabilities of shape (classes, h, w), got {probs.shape}")
    class_map = (class_map_of(probs) if class_map is None else class_map).copy()
    garment_indices = [CLASS_INDEX[name] for name in GARMENT_CLASSES]
    garment = np.isin(class_map, garment_indices)
    person_labels, persons = people(class_map, garment, rules)
    if rules.one_dress:
        for person in persons:
            resolve_dress(probs, class_map, garment & (person_labels == person))
    min_area = max(1, round(rules.min_area_frac * class_map.size))
    accessories = {CLASS_INDEX[name] for name in ACCESSORY_CLASSES}
    separate = {CLASS_INDEX[name] for name in rules.overlap_only}
    class_regions = ndimage.find_objects(class_map)  # the bounding window of every class (None: absent)
    instances: list[Instance] = []
    for person in persons:
        body = person_labels == person
        mine = garment & body
        rows = np.nonzero(mine.any(axis=1))[0]
        if rows.size == 0:
            continue
        reach = rules.gap_frac * (rows[-1] - rows[0] + 1)
        min_person_area = rules.min_person_frac * np.count_nonzero(mine)
        found: list[tuple[int, _Group, np.ndarray, tuple[slice, slice]]] = []
        for class_index in garment_indices:
            window = class_regions[class_index - 1] if class_index <= len(class_regions) else None
            if window is None:
                continue
            mask = (class_map[window] == class_index) & body[window]
            labels, count = label_components(mask)
            if count == 0:
                continue
            groups = _groups(
                labels, count, probs[class_index][window], min_area, class_index in separate, reach, rules
            )
            for group in groups:
                if group.area < min_person_area:
                    continue
                if class_index in accessories and group.score < rules.accessory_min_score:
                    continue
                found.append((class_index, group, labels, window))
        dress = CLASS_INDEX["dress"]
        dresses = [item for item in found if item[0] == dress]
        if rules.one_dress and len(dresses) > 1:
            largest = max(dresses, key=lambda item: item[1].area * item[1].score)
            found = [item for item in found if item[0] != dress or item is largest]
        for class_index, group, labels, window in found:
            rows_at, cols_at = window[0].start, window[1].start
            x0, y0, x1, y1 = group.box
            full = np.zeros(class_map.shape, dtype=bool)
            full[window] = np.isin(labels, group.labels)
            box = (x0 + cols_at, y0 + rows_at, x1 + cols_at, y1 + rows_at)
            instances.append(Instance(class_index, box, full, group.area, group.score))
    return sorted(instances, key=lambda instance: instance.area * instance.score, reverse=True)
