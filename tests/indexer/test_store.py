from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np
import pytest
from PIL import Image

from indexer.filters import SearchFilters
from indexer.manifest import MANIFEST_NAME, VECTORS_NAME, IndexCorruptError
from indexer.store import IndexStore, UnknownCategoryError
from models.attributes.extractor import create_extractor
from models.attributes.guess import AttributeGuess
from models.detector import FullFrameDetector, Garment
from models.embedder import Embedder
from models.errors import ModelMismatchError
from search.searcher import OutfitSearcher, SearchRequest
from tests.helpers import garment_image


@pytest.fixture
def store(backend_index: Path) -> IndexStore:
    """The same small index with its vectors in FAISS and in Milvus Lite: every test using it runs on both."""
    opened = IndexStore.open(backend_index)
    yield opened
    opened.close()


def test_category_filter_only_returns_that_category(store: IndexStore, tiny_embedder: Embedder) -> None:
    query = tiny_embedder.embed_images([garment_image(0)])
    hits = store.search(query, top_k=50, rows=store.rows_for(SearchFilters(categories=frozenset({"skirt"}))))[
        0
    ]
    assert len(hits) == 10 and {hit.item.category for hit in hits} == {"skirt"}
    assert store.categories == ["bag", "skirt", "top", "trousers"]


def test_filtered_search_agrees_with_exact_search(store: IndexStore, tiny_embedder: Embedder) -> None:
    query = tiny_embedder.embed_images([garment_image(5)])
    everything = store.search(query, top_k=40)[0]
    expected = [hit.item.item_id for hit in everything if hit.item.category == "bag"][:5]
    bags = store.rows_for(SearchFilters(categories=frozenset({"bag"})))
    assert [hit.item.item_id for hit in store.search(query, 5, bags)[0]] == expected
    scores = [hit.score for hit in everything]
    assert scores == sorted(scores, reverse=True)


def test_unknown_category_is_an_error(store: IndexStore) -> None:
    searcher = OutfitSearcher(FullFrameDetector(), _Stub(store), store, create_extractor(None))
    with pytest.raises(UnknownCategoryError, match="unknown category 'hat'"):
        searcher.search(garment_image(1), SearchRequest(filters=SearchFilters(categories=frozenset({"hat"}))))


def test_wrong_query_dimension_is_an_error(store: IndexStore) -> None:
    with pytest.raises(ModelMismatchError, match=r"shape \(1, 7\)"):
        store.search(np.zeros((1, 7), dtype=np.float32), 3)


def test_model_check(store: IndexStore, tiny_embedder: Embedder) -> None:
    store.check_model(tiny_embedder.name, tiny_embedder.dimension)
    with pytest.raises(ModelMismatchError, match="was built with"):
        store.check_model("open_clip:other", tiny_embedder.dimension)
    with pytest.raises(ModelMismatchError, match="dimension 64"):
        store.check_model(tiny_embedder.name, 64)


def test_item_lookup(store: IndexStore) -> None:
    record = store.item("item-0007")
    assert (
        record is not None
        and record.title == "Test garment 7"
        and record.attributes["pattern"] == AttributeGuess("striped", 1.0, "feed")
    )
    assert store.item("nope") is None


def _copy(built_index: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(built_index.resolve(), target)
    return target


def test_missing_parts_are_reported(built_index: Path, tmp_path: Path) -> None:
    copy = _copy(built_index, tmp_path)
    (copy / VECTORS_NAME).unlink()
    with pytest.raises(IndexCorruptError, match="vectors.faiss is missing"):
        IndexStore.open(copy)
    (copy / MANIFEST_NAME).unlink()
    with pytest.raises(IndexCorruptError, match="not a built index"):
        IndexStore.open(copy)


def test_parts_that_disagree_are_reported(built_index: Path, tmp_path: Path) -> None:
    copy = _copy(built_index, tmp_path)
    faiss.write_index(faiss.IndexFlatIP(32), str(copy / VECTORS_NAME))
    with pytest.raises(IndexCorruptError, match="disagrees with itself"):
        IndexStore.open(copy)
    (copy / VECTORS_NAME).write_bytes(b"garbage")
    with pytest.raises(IndexCorruptError, match="not a readable FAISS index"):
        IndexStore.open(copy)


def test_detected_category_filters_matches_and_unsold_category_gets_none(
    backend_index: Path, tiny_embedder: Embedder
) -> None:
    class TwoGarments:
        name = "fixed"

        def detect(self, image: Image.Image) -> list[Garment]:
            return [Garment((0, 0, 32, 32), "skirt", 0.9), Garment((32, 32, 64, 64), "hat", 0.8)]

    store = IndexStore.open(backend_index)
    try:
        searcher = OutfitSearcher(TwoGarments(), tiny_embedder, store, create_extractor(tiny_embedder))
        result = searcher.search(garment_image(3), SearchRequest(top_k=4))
    finally:
        store.close()
    skirt, hat = result.garments
    assert len(skirt.matches) == 4 and {ranked.item.category for ranked in skirt.matches} == {"skirt"}
    assert skirt.attributes.values["colour"].source == "predicted"
    assert hat.matches == []


class _Stub:
    """An embedder that names the index's model; never called when the request is refused up front."""

    def __init__(self, store: IndexStore) -> None:
        self.name, self.dimension = store.manifest.model_name, store.manifest.dimension
        self.has_text_tower = False

    def embed_images(self, images: list) -> np.ndarray:
        raise AssertionError("not reached")

    head_labels: dict[str, tuple[str, ...]] = {}  # no attribute heads

    def describe_images(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, None]:
        return self.embed_images(images), None


def test_text_vector_is_blended_when_the_embedder_has_a_text_tower(
    backend_index: Path, tiny_embedder: Embedder
) -> None:
    class WithText:
        """The tiny embedder, claiming a trained text tower so the searcher blends `text` in."""

        name, dimension, has_text_tower = tiny_embedder.name, tiny_embedder.dimension, True

        def __init__(self) -> None:
            self.prompts: list[str] = []

        def embed_images(self, images: list) -> np.ndarray:
            return tiny_embedder.embed_images(images)

        head_labels: dict[str, tuple[str, ...]] = {}  # no attribute heads

        def describe_images(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, None]:
            return self.embed_images(images), None

        def embed_texts(self, texts: list[str]) -> np.ndarray:
            self.prompts.extend(texts)
            return tiny_embedder.embed_texts(texts)  # type: ignore[attr-defined]

    store = IndexStore.open(backend_index)
    try:
        embedder = WithText()
        searcher = OutfitSearcher(FullFrameDetector(), embedder, store, create_extractor(None))
        plain = searcher.search(garment_image(4), SearchRequest(top_k=40))
        blended = searcher.search(garment_image(4), SearchRequest(top_k=40, text="in red"))
    finally:
        store.close()
    assert embedder.prompts == ["a photo of a garment in red"]
    visual = {r.item.item_id: r.visual_score for r in plain.garments[0].matches}
    moved = {r.item.item_id: r.visual_score for r in blended.garments[0].matches}
    assert visual.keys() == moved.keys() and visual != moved  # the query vector changed
