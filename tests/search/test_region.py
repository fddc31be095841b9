"""The searcher's `region`: checked against the image (clipped, refused), searched without the detector,
and named by the embedder's category head like a product photo."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.filters import SearchFilters
from indexer.store import IndexStore
from models.attributes.extractor import create_extractor
from models.embedding import Embedder, HeadOutput
from models.garment import Garment
from search.errors import InvalidRequestError
from search.query import parse_region
from search.searcher import OutfitSearcher, Region, SearchRequest, region_box
from tests.helpers import garment_image

HEAD = ("top", "skirt", "bag", "other")


class CategoryHead:
    """The tiny embedder with a category head that names every crop `label`."""

    def __init__(self, inner: Embedder, label: str) -> None:
        self.inner, self.label = inner, label
        self.name, self.dimension, self.has_text_tower = inner.name, inner.dimension, False
        self.head_labels = {"category": HEAD}
        self.seen: list[tuple[int, int]] = []

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.inner.embed_images(images)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        raise AssertionError("no text tower")

    def describe_images(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, list[HeadOutput]]:
        self.seen.extend(image.size for image in images)
        probabilities = np.array([0.9 if label == self.label else 0.1 / 3 for label in HEAD])
        head = HeadOutput(self.head_labels, {"category": probabilities})
        return self.embed_images(images), [head for _ in images]


class NoDetector:
    name = "none"

    def detect(self, image: Image.Image) -> list[Garment]:
        raise AssertionError("a region search must not run the detector")


@pytest.fixture
def store(built_index: Path) -> Iterator[IndexStore]:
    opened = IndexStore.open(built_index)
    yield opened
    opened.close()


def photo() -> Image.Image:
    image = Image.new("RGB", (120, 90), (30, 30, 30))
    image.paste(garment_image(2), (40, 20))
    return image


@pytest.mark.parametrize(
    ("region", "box"),
    [
        ((40, 20, 104, 84), (40, 20, 104, 84)),
        ((40.7, 20.2, 103.1, 83.5), (40, 20, 104, 84)),  # outwards to whole pixels
        ((100, 60, 130, 100), (100, 60, 120, 90)),  # 20x30 of 30x40 on the image: clipped
        ((-2, -2, 10, 10), (0, 0, 10, 10)),
    ],
)
def test_region_box_clips_and_rounds_outwards(region: Region, box: tuple[int, int, int, int]) -> None:
    assert region_box(region, (120, 90)) == box


@pytest.mark.parametrize(
    ("region", "said"),
    [
        ((120, 0, 150, 30), "lies outside the 120x90 image"),
        ((0, -90, 120, 0), "lies outside the 120x90 image"),  # touches the edge: no overlap
        ((100, 70, 160, 130), "lies mostly outside the 120x90 image: 11% of it"),
    ],
)
def test_region_box_refuses_regions_off_the_image(region: Region, said: str) -> None:
    with pytest.raises(InvalidRequestError, match=said):
        region_box(region, (120, 90))


def test_region_box_refuses_a_sliver() -> None:
    with pytest.raises(InvalidRequestError, match=r"is 120x7 pixels on the 120x90 image; the smallest.* 8x8"):
        region_box((0, 83, 120, 95), (120, 90))  # clipped to a 7-pixel strip


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ("[1, 2, 3]", "got 3 numbers"),
        ("[[1, 2], [3, 4]]", "got \\[\\[1, 2\\], \\[3, 4\\]\\]"),
        ("[5, 0, 5, 9]", r"region \[5, 0, 5, 9\] is empty"),
        ("[0, 9, 5, 2]", "is empty"),
        ('"0,0,5,5"', "region must be a JSON array"),
    ],
)
def test_parse_region_refuses_what_is_no_region(raw: str, said: str) -> None:
    with pytest.raises(InvalidRequestError, match=said):
        parse_region(raw)


def test_parse_region_reads_four_numbers() -> None:
    assert parse_region(" ") is None and parse_region(None) is None
    assert parse_region("[1, 2.5, 30, 40]") == (1.0, 2.5, 30.0, 40.0)


@pytest.mark.parametrize(("label", "category"), [("top", "top"), ("other", None)])
def test_a_region_is_named_by_the_category_head_without_detection(
    tiny_embedder: Embedder, store: IndexStore, label: str, category: str | None
) -> None:
    heads = CategoryHead(tiny_embedder, label)
    searcher = OutfitSearcher(NoDetector(), heads, store, create_extractor(None))
    result = searcher.search(photo(), SearchRequest(top_k=3, region=(40, 20, 104, 84)))
    (found,) = result.garments
    assert found.garment.box == (40, 20, 104, 84) and found.garment.category == category
    assert found.garment.score == 1.0 and heads.seen == [(64, 64)]  # one pass over the crop only
    assert len(found.matches) == 3
    if category is not None:
        assert {m.item.category for m in found.matches} == {"top"}  # compatible categories, as detected ones


def test_a_category_filter_restricts_a_region_instead_of_dropping_it(
    tiny_embedder: Embedder, store: IndexStore
) -> None:
    searcher = OutfitSearcher(NoDetector(), CategoryHead(tiny_embedder, "top"), store, create_extractor(None))
    request = SearchRequest(
        top_k=4, filters=SearchFilters(categories=frozenset({"bag"})), region=(0, 0, 60, 60)
    )
    (found,) = searcher.search(photo(), request).garments
    assert found.garment.category == "top"
    assert found.matches and {m.item.category for m in found.matches} == {"bag"}
