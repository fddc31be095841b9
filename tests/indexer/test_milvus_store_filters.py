"""Filtered searches through the store and the searcher: one catalogue built into FAISS and into Milvus
Lite, where Milvus filters by the collection's scalar fields (never a row list) and FAISS within the rows
`FilterColumns` keeps, must find the same items at the same scores (within 1e-4): category, brand, price,
stock, gender and attribute filters alone and combined, a filter nothing meets, and hostile strings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from indexer.filters import SearchFilters
from indexer.manifest import RAW_VECTORS_NAME
from indexer.store import Hit, IndexStore
from models.attributes.extractor import create_extractor
from models.detector import FullFrameDetector
from models.embedder import Embedder
from search.searcher import OutfitSearcher, SearchRequest
from tests.helpers import garment_image, index_feed

pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (the scale extra)")

ITEMS = 48
HOSTILE = 'x" or brand != "'  # a literal closed early would admit every brand
EVERY_ROW = 'x" or row >= 0 or "'  # ... or every row
BRANDS = ("Acme", "ACME", HOSTILE, "back\\slash", 'quo"te', "new\nline", "Ünï 😀", "Plain")
CATEGORIES = ("top", "skirt", "trousers", "bag", "dress")
COLOURS = ("black", "navy", "red", "white")
PATTERNS = ("solid", "striped", "checked")
GENDERS = ("women", "men", "unisex")


def _feed(directory: Path) -> Path:
    """ITEMS items: some without a price, a pattern or a gender, every sixth with a further image."""
    (directory / "images").mkdir(parents=True)
    lines = []
    for index in range(ITEMS):
        garment_image(index).save(directory / "images" / f"{index}.jpg", quality=92)
        attributes = {"colour": COLOURS[index % 4], "material": "wool" if index % 2 else "cotton"}
        if index % 4:
            attributes["pattern"] = PATTERNS[index % 3]
        if index % 5:
            attributes["gender"] = GENDERS[index % 3]
        row = {
            "id": f"item-{index:02d}",
            "image": f"images/{index}.jpg",
            "title": f"garment {index}",
            "category": CATEGORIES[index % len(CATEGORIES)],
            "brand": BRANDS[index % len(BRANDS)],
            "currency": "EUR",
            "in_stock": index % 3 != 0,
            "url": f"https://shop.example/p/{index}",
            "attributes": attributes,
        }
        if index % 7:
            row["price"] = 10.0 + 1.5 * index
        if index % 6 == 0:
            garment_image(1000 + index).save(directory / "images" / f"{index}-b.jpg", quality=92)
            row["extra_images"] = [f"images/{index}-b.jpg"]
        lines.append(json.dumps(row))
    feed = directory / "catalog.jsonl"
    feed.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return feed


@pytest.fixture(scope="module")
def stores(
    tmp_path_factory: pytest.TempPathFactory, tiny_embedder: Embedder
) -> Iterator[dict[str, IndexStore]]:
    """{"faiss": ..., "milvus": ...}: the same catalogue in either vector store."""
    root = tmp_path_factory.mktemp("store-filters")
    feed = _feed(root / "feed")
    opened: dict[str, IndexStore] = {}
    try:
        for backend in ("faiss", "milvus"):
            index_feed(feed, root / backend, tiny_embedder, batch_size=16, vector_store=backend)
            opened[backend] = IndexStore.open(root / backend)
        yield opened
    finally:
        for store in opened.values():
            store.close()


@pytest.fixture
def no_row_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    """Milvus must filter by its fields: building a row list fails the test."""

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("a filtered search sent a row list to Milvus")

    monkeypatch.setattr("indexer.milvus_backend.row_filter", refused)


CASES = {
    "category": SearchFilters(categories=frozenset({"skirt"})),
    "categories": SearchFilters(categories=frozenset({"top", "bag"})),
    "brand, any case": SearchFilters(brands=frozenset({"acme"})),
    "hostile brand": SearchFilters(brands=frozenset({HOSTILE.lower()})),
    "escaped brands": SearchFilters(brands=frozenset(b.lower() for b in BRANDS[3:7])),
    "price band": SearchFilters(price_min=25.0, price_max=55.0),
    "price min": SearchFilters(price_min=60),
    "price max": SearchFilters(price_max=30),
    "in stock": SearchFilters(in_stock=True),
    "out of stock": SearchFilters(in_stock=False),
    "gender, with unisex": SearchFilters(gender="women"),
    "colour": SearchFilters(attributes={"colour": frozenset({"black", "red"})}),
    "pattern": SearchFilters(attributes={"pattern": frozenset({"striped"})}),
    "two groups": SearchFilters(
        attributes={"colour": frozenset({"navy", "white"}), "material": frozenset({"wool"})}
    ),
    "category and price": SearchFilters(categories=frozenset({"top", "dress"}), price_max=60.0),
    "brand and stock": SearchFilters(brands=frozenset({"plain", "acme"}), in_stock=True),
    "everything": SearchFilters(
        categories=frozenset({"top", "skirt", "trousers", "dress"}),
        price_min=12.0,
        price_max=80.0,
        in_stock=True,
        gender="men",
        attributes={"colour": frozenset({"navy", "black", "red"})},
    ),
    "nothing qualifies": SearchFilters(categories=frozenset({"top"}), brands=frozenset({"nobody"})),
    # Hostile strings beside values some items have, so Milvus evaluates them (none qualifying: k = 0)
    "hostile category": SearchFilters(categories=frozenset({'x" or category != "', "skirt"})),
    "hostile brand, every row": SearchFilters(brands=frozenset({EVERY_ROW, "plain"})),
    "hostile values, every row": SearchFilters(
        categories=frozenset({EVERY_ROW, "top"}), attributes={"colour": frozenset({EVERY_ROW, "black"})}
    ),
    "hostile values alone": SearchFilters(categories=frozenset({EVERY_ROW})),
    "hostile attribute value": SearchFilters(
        attributes={"colour": frozenset({'red"] or attr_colour != ["', "red"})}
    ),
    "hostile attribute group": SearchFilters(attributes={'colour in ["red"] or gender': frozenset({"red"})}),
}
EMPTY = {"nothing qualifies", "hostile values alone", "hostile attribute group"}


def _queries(stores: dict[str, IndexStore], tiny_embedder: Embedder) -> np.ndarray:
    raw = np.load(stores["faiss"].build_dir / RAW_VECTORS_NAME)
    fresh = tiny_embedder.embed_images([garment_image(seed) for seed in (500, 501)])
    return np.ascontiguousarray(np.concatenate([raw[[0, 7, ITEMS]], fresh]), dtype=np.float32)


def _same(faiss_hits: list[Hit], milvus_hits: list[Hit]) -> None:
    assert [(h.item.item_id, h.image) for h in milvus_hits] == [(h.item.item_id, h.image) for h in faiss_hits]
    assert np.allclose([h.score for h in milvus_hits], [h.score for h in faiss_hits], atol=1e-4)


@pytest.mark.parametrize("name", CASES)
def test_milvus_filters_find_what_faiss_finds(
    stores: dict[str, IndexStore], tiny_embedder: Embedder, no_row_lists: None, name: str
) -> None:
    filters = CASES[name]
    queries = _queries(stores, tiny_embedder)
    qualifying = stores["faiss"].columns.rows(filters)
    assert (len(qualifying) == 0) == (name in EMPTY), "the catalogue should exercise this case"
    for top_k in (5, ITEMS):
        found = {
            backend: store.search(queries, top_k, store.rows_for(filters), filters=filters)
            for backend, store in stores.items()
        }
        for faiss_hits, milvus_hits in zip(found["faiss"], found["milvus"], strict=True):
            _same(faiss_hits, milvus_hits)
            assert {hit.item.row for hit in faiss_hits} <= set(qualifying.tolist())
            assert len(faiss_hits) == min(top_k, len(qualifying))


def test_the_milvus_build_holds_the_filterable_fields(stores: dict[str, IndexStore]) -> None:
    vectors = stores["milvus"]._vectors
    assert getattr(vectors, "filterable", False) and vectors.kind == "milvus"


def test_searcher_passes_the_filters_to_milvus(
    stores: dict[str, IndexStore], tiny_embedder: Embedder, no_row_lists: None
) -> None:
    request = SearchRequest(top_k=6, filters=CASES["everything"])
    similar = SearchRequest(top_k=6, filters=SearchFilters(in_stock=True, gender="women"))
    answers = {}
    for backend, store in stores.items():
        searcher = OutfitSearcher(FullFrameDetector(), tiny_embedder, store, create_extractor(tiny_embedder))
        by_image = searcher.search(garment_image(9), request).garments[0].matches
        by_item = searcher.search_item("item-03", similar).garments[0].matches
        answers[backend] = [[(m.item.item_id, m.visual_score) for m in ms] for ms in (by_image, by_item)]
    for faiss_matches, milvus_matches in zip(answers["faiss"], answers["milvus"], strict=True):
        assert faiss_matches and [i for i, _ in milvus_matches] == [i for i, _ in faiss_matches]
        assert np.allclose([s for _, s in milvus_matches], [s for _, s in faiss_matches], atol=1e-4)
