from __future__ import annotations

import numpy as np

from models.parser.instances import extract_instances, label_components
from models.parser.taxonomy import CLASS_INDEX, GARMENT_CLASSES

GARMENTS = tuple(CLASS_INDEX[name] for name in GARMENT_CLASSES)
FOOTWEAR, TOP, SKIRT = CLASS_INDEX["footwear"], CLASS_INDEX["top"], CLASS_INDEX["skirt"]


def test_two_blobs_are_two_instances_with_exact_boxes_and_a_tiny_blob_is_dropped() -> None:
    class_map = np.zeros((100, 80), dtype=np.int64)
    class_map[80:95, 10:25] = FOOTWEAR
    class_map[82:96, 50:70] = FOOTWEAR
    class_map[5:7, 5:7] = FOOTWEAR  # 4 px < 0.001 * 8000 = 8 px
    class_map[20:60, 20:60] = TOP
    instances = extract_instances(class_map, GARMENTS, min_area_frac=0.001)
    shoes = sorted(inst.box for inst in instances if inst.class_index == FOOTWEAR)
    assert shoes == [(10, 80, 25, 95), (50, 82, 70, 96)]
    tops = [inst for inst in instances if inst.class_index == TOP]
    assert len(tops) == 1 and tops[0].box == (20, 20, 60, 60) and tops[0].area == 1600
    assert all(inst.mask.shape == class_map.shape and inst.mask.dtype == bool for inst in instances)


def test_fragments_inside_one_box_merge_and_scores_come_from_confidence() -> None:
    class_map = np.zeros((60, 60), dtype=np.int64)
    class_map[10:50, 10:50] = SKIRT
    class_map[10:50, 29:31] = 0  # a strap cuts the skirt into two halves; their boxes do not overlap
    class_map[20:30, 35:45] = 0
    class_map[22:28, 37:43] = SKIRT  # an island inside the right half's box: merged into it
    confidence = np.full(class_map.shape, 0.75, dtype=np.float32)
    instances = extract_instances(class_map, (SKIRT,), confidence, min_area_frac=0.0)
    assert len(instances) == 2
    assert sorted(inst.box for inst in instances) == [(10, 10, 29, 50), (31, 10, 50, 50)]
    assert all(abs(inst.score - 0.75) < 1e-6 for inst in instances)


def test_label_components_matches_a_flood_fill() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((30, 25)) < 0.55
    labels, count = label_components(mask)
    reference = np.zeros(mask.shape, dtype=int)
    found = 0
    for y, x in zip(*np.nonzero(mask), strict=True):
        if reference[y, x]:
            continue
        found += 1
        stack = [(y, x)]
        reference[y, x] = found
        while stack:
            a, b = stack.pop()
            for c, d in ((a + 1, b), (a - 1, b), (a, b + 1), (a, b - 1)):
                if 0 <= c < mask.shape[0] and 0 <= d < mask.shape[1] and mask[c, d] and not reference[c, d]:
                    reference[c, d] = found
                    stack.append((c, d))
    assert count == found
    assert (labels > 0).sum() == mask.sum() and not labels[~mask].any()
    assert len(set(zip(labels[mask], reference[mask], strict=True))) == found  # same partition


def test_empty_map_gives_no_instances() -> None:
    assert extract_instances(np.zeros((10, 10), dtype=np.int64), GARMENTS) == []
    assert label_components(np.zeros((4, 4), dtype=bool))[1] == 0
