"""The parser v3 post-processing (models.parser.outfit) on generated probability maps."""

from __future__ import annotations

import numpy as np
import pytest

from models.parser.outfit import OutfitRules, class_map_of, outfit_instances
from models.parser.taxonomy import CLASS_INDEX, PARSER_CLASSES

PERSON, TOP, DRESS, SKIRT = (CLASS_INDEX[name] for name in ("person", "top", "dress", "skirt"))
TROUSERS, FOOTWEAR, HAT = CLASS_INDEX["trousers"], CLASS_INDEX["footwear"], CLASS_INDEX["hat"]


def probabilities(class_map: np.ndarray, peak: float = 0.9) -> np.ndarray:
    """Softmax-like maps: `peak` on each pixel's class, the rest shared by the other classes."""
    classes = len(PARSER_CLASSES)
    probs = np.full((classes, *class_map.shape), (1 - peak) / (classes - 1), dtype=np.float32)
    np.put_along_axis(probs, class_map[None], peak, axis=0)
    return probs


def person(height: int = 200, width: int = 120) -> np.ndarray:
    """A standing person (skin and hair) in the middle of the map, background around."""
    class_map = np.zeros((height, width), dtype=np.int64)
    class_map[10:195, 35:85] = PERSON
    return class_map


def named(instances: list) -> list[tuple[str, tuple[int, int, int, int]]]:
    return [(PARSER_CLASSES[instance.class_index], instance.box) for instance in instances]


def test_a_top_cut_by_a_two_pixel_strap_is_one_top() -> None:
    class_map = person()
    class_map[40:100, 38:82] = TOP
    class_map[40:100, 59:61] = PERSON  # a 2-px bag strap down the middle
    found = named(outfit_instances(probabilities(class_map)))
    assert found == [("top", (38, 40, 82, 100))]


def test_two_shoes_side_by_side_stay_two() -> None:
    class_map = person()
    class_map[180:192, 40:57] = FOOTWEAR
    class_map[180:192, 63:80] = FOOTWEAR  # 6 px apart: close, but shoes only merge when overlapping
    found = named(outfit_instances(probabilities(class_map)))
    assert sorted(found) == [("footwear", (40, 180, 57, 192)), ("footwear", (63, 180, 80, 192))]


def _dress_or_skirt(dress_peak: float, skirt_peak: float) -> list[tuple[str, tuple[int, int, int, int]]]:
    class_map = person()
    class_map[40:90, 38:82] = TOP
    class_map[90:150, 38:82] = DRESS
    class_map[120:150, 38:82] = SKIRT  # the hem read pixel by pixel as a skirt
    probs = probabilities(class_map)
    probs[DRESS, 90:150, 38:82] = dress_peak * np.where(class_map[90:150, 38:82] == DRESS, 1.0, 0.5)
    probs[SKIRT, 90:150, 38:82] = skirt_peak * np.where(class_map[90:150, 38:82] == SKIRT, 1.0, 0.5)
    probs[DRESS, 120:150, 38:82] = np.minimum(
        probs[DRESS, 120:150, 38:82], probs[SKIRT, 120:150, 38:82] - 0.01
    )
    return named(outfit_instances(probs))


def test_dress_or_top_and_skirt_is_decided_per_person_from_summed_probabilities() -> None:
    as_dress = _dress_or_skirt(dress_peak=0.9, skirt_peak=0.6)
    assert sorted(as_dress) == [("dress", (38, 90, 82, 150)), ("top", (38, 40, 82, 90))]
    as_skirt = _dress_or_skirt(dress_peak=0.5, skirt_peak=0.9)
    assert sorted(as_skirt) == [("skirt", (38, 90, 82, 150)), ("top", (38, 40, 82, 90))]


def test_at_most_one_dress_per_person_but_one_each_for_two_people() -> None:
    class_map = np.zeros((200, 260), dtype=np.int64)
    for left in (20, 160):
        class_map[10:195, left : left + 70] = PERSON
        class_map[40:110, left + 5 : left + 65] = DRESS
    class_map[160:175, 30:40] = DRESS  # a second, smaller "dress" on the first person's shin
    found = named(outfit_instances(probabilities(class_map)))
    assert sorted(found) == [("dress", (25, 40, 85, 110)), ("dress", (165, 40, 225, 110))]


def test_specks_tiny_relative_to_the_person_are_dropped() -> None:
    class_map = person()
    class_map[100:180, 38:82] = TROUSERS
    class_map[30:35, 40:45] = FOOTWEAR  # 25 px: above the map-level noise floor (24), under 1 % of 3,545
    assert named(outfit_instances(probabilities(class_map))) == [("trousers", (38, 100, 82, 180))]
    kept = outfit_instances(probabilities(class_map), rules=OutfitRules(min_person_frac=0.0))
    assert ("footwear", (40, 30, 45, 35)) in named(kept)


def test_accessories_need_the_measured_confidence() -> None:
    class_map = person()
    class_map[100:180, 38:82] = TROUSERS
    class_map[10:30, 45:75] = HAT
    assert ("hat", (45, 10, 75, 30)) in named(outfit_instances(probabilities(class_map, peak=0.9)))
    unsure = named(outfit_instances(probabilities(class_map, peak=0.5)))
    assert unsure == [("trousers", (38, 100, 82, 180))]


def test_garments_are_ordered_by_area_times_score() -> None:
    class_map = person()
    class_map[40:100, 38:82] = TOP
    class_map[180:192, 40:57] = FOOTWEAR
    probs = probabilities(class_map)
    probs[TOP][class_map == TOP] = 0.5  # large but unsure still comes first: 2,640 x 0.5 > 204 x 0.9
    instances = outfit_instances(probs)
    assert [PARSER_CLASSES[i.class_index] for i in instances] == ["top", "footwear"]
    keys = [instance.area * instance.score for instance in instances]
    assert keys == sorted(keys, reverse=True)
    assert abs(instances[0].score - 0.5) < 1e-6 and instances[0].area == 60 * 44
    assert instances[0].mask.shape == class_map.shape and instances[0].mask.sum() == instances[0].area


def test_class_map_of_is_the_argmax_and_empty_maps_give_nothing() -> None:
    probs = np.random.default_rng(0).random((len(PARSER_CLASSES), 30, 20)).astype(np.float32)
    assert np.array_equal(class_map_of(probs), probs.argmax(axis=0))
    assert outfit_instances(probabilities(np.zeros((40, 30), dtype=np.int64))) == []
    with pytest.raises(ValueError, match="classes, h, w"):
        outfit_instances(np.zeros((40, 30), dtype=np.float32))
