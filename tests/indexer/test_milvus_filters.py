"""Milvus filters as expressions over the collection's scalar fields: the same rows and scores as FAISS
searching within the rows `FilterColumns` keeps, every image of an item qualifying with it, strings that
cannot add conditions, and collections built before the fields still served (by row lists)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from indexer.filters import FilterColumns, SearchFilters
from indexer.metadata import ImageRow, ItemRecord
from indexer.milvus_backend import MilvusBackend, write_collection
from indexer.milvus_fields import (
    ScalarFields,
    attribute_groups,
    field_name,
    filter_expression,
    group_of,
    quoted,
)
from indexer.vector_backend import FaissBackend
from indexer.vector_index import build_vector_index
from models.attributes.guess import AttributeGuess

pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (the scale extra)")

DIMENSION = 16
HOSTILE = 'x" or brand != "'  # closing the literal early would admit every brand
BRANDS = ("Acme", "acme", HOSTILE, "back\\slash\\", 'quo"te', "new\nline", "tab\tcr\r", "ünï😀", "nu\x00l")
CATEGORIES = ("top", "dress", "skirt", "bag")
COLOURS = ("black", "navy", "red")
GENDERS = ("women", "men", "unisex")


def _records(count: int) -> list[ItemRecord]:
    records = []
    for row in range(count):
        attributes = {"colour": AttributeGuess(COLOURS[row % 3], 0.9, "predicted")}
        if row % 4:
            attributes["gender"] = AttributeGuess(GENDERS[row % 3], 1.0, "feed")
        if row % 5 == 0:
            attributes["material"] = AttributeGuess("wool" if row % 2 else "cotton", 0.8, "predicted")
        records.append(
            ItemRecord(
                row=row,
                item_id=f"item-{row}",
                title=f"item {row}",
                category=CATEGORIES[row % 4],
                brand=BRANDS[row % len(BRANDS)],
                price=None if row % 7 == 0 else float(10 + row % 50),
                currency="EUR",
                in_stock=row % 3 != 0,
                url="",
                attributes=attributes,
            )
        )
    return records


RECORDS = _records(72)
IMAGE_ROWS = [ImageRow(72 + i, item_row, 1) for i, item_row in enumerate(range(0, 72, 5))]
COUNT = len(RECORDS) + len(IMAGE_ROWS)
ROW_ITEM = np.array([*range(len(RECORDS)), *(r.item_row for r in IMAGE_ROWS)], dtype=np.int64)


def _vectors() -> np.ndarray:
    vectors = np.random.default_rng(3).standard_normal((COUNT, DIMENSION)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


VECTORS = _vectors()
QUERIES = np.ascontiguousarray(np.concatenate([VECTORS[[0, 5, 80]], np.roll(VECTORS[:3], 1, axis=1)]))


def _rows(filters: SearchFilters) -> np.ndarray:
    """The vector rows the store passes for `filters` (every image of each item they keep)."""
    keep = np.zeros(len(RECORDS), dtype=bool)
    keep[FilterColumns(RECORDS).rows(filters)] = True
    return np.flatnonzero(keep[ROW_ITEM]).astype(np.int64)


@pytest.fixture(scope="module")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MilvusBackend, MilvusBackend]]:
    """(a collection with the scalar fields, one built without them as before issue 20) in Milvus Lite."""
    uri = str(tmp_path_factory.mktemp("milvus-filters") / "milvus.db")
    write_collection(uri, "with_fields", VECTORS, "FLAT", ScalarFields.of(RECORDS, IMAGE_ROWS))
    write_collection(uri, "rows_only", VECTORS, "FLAT")
    opened = MilvusBackend.open(uri, "with_fields", "FLAT"), MilvusBackend.open(uri, "rows_only", "FLAT")
    yield opened
    for backend in opened:
        backend.close()


@pytest.fixture(scope="module")
def faiss_backend() -> FaissBackend:
    return FaissBackend(build_vector_index("Flat", VECTORS), Path("flat"))


CASES = {
    "category": SearchFilters(categories=frozenset({"skirt"})),
    "categories": SearchFilters(categories=frozenset({"top", "bag"})),
    "brand": SearchFilters(brands=frozenset({"acme"})),
    "hostile brand": SearchFilters(brands=frozenset({HOSTILE.lower()})),
    "escaped brands": SearchFilters(brands=frozenset(b.lower() for b in BRANDS[3:])),
    "price band": SearchFilters(price_min=20.0, price_max=40.5),
    "price min": SearchFilters(price_min=55),
    "any known price": SearchFilters(price_min=float("-inf")),
    "no price": SearchFilters(price_max=float("-inf")),
    "nan price": SearchFilters(price_min=float("nan")),
    "in stock": SearchFilters(in_stock=True),
    "out of stock": SearchFilters(in_stock=False, categories=frozenset({"dress", "top"})),
    "gender with unisex": SearchFilters(gender="women"),
    "attribute values": SearchFilters(attributes={"colour": frozenset({"black", "red"})}),
    "rare attribute": SearchFilters(attributes={"material": frozenset({"wool"})}),
    "unknown group": SearchFilters(attributes={"sleeve_length": frozenset({"long"})}),
    "gender as a group": SearchFilters(attributes={"gender": frozenset({"men"})}),
    "unknown values": SearchFilters(attributes={"material": frozenset({"", "wool"})}),
    "unknown values of an unknown group": SearchFilters(attributes={"sleeve_length": frozenset({""})}),
    "all at once": SearchFilters(
        categories=frozenset({"top", "dress", "skirt"}),
        price_max=50.0,
        in_stock=True,
        gender="men",
        attributes={"colour": frozenset({"navy", "black"})},
    ),
    "nothing qualifies": SearchFilters(categories=frozenset({"hat"})),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("which", ["with_fields", "rows_only"])
def test_filters_find_what_faiss_finds_within_the_kept_rows(
    milvus: tuple[MilvusBackend, MilvusBackend], faiss_backend: FaissBackend, name: str, which: str
) -> None:
    backend = milvus[0] if which == "with_fields" else milvus[1]
    filters = CASES[name]
    rows = _rows(filters)
    for k in (5, COUNT):
        faiss_scores, faiss_rows = faiss_backend.search(QUERIES, k, rows)
        scores, found = backend.search(QUERIES, k, rows, filters)
        assert found.tolist() == faiss_rows.tolist(), name
        assert np.allclose(scores, faiss_scores, atol=1e-4)
    if len(rows):
        assert set(found[found >= 0].tolist()) == set(rows.tolist())  # k = COUNT: every kept row, no other


def test_further_images_qualify_with_their_item(milvus: tuple[MilvusBackend, MilvusBackend]) -> None:
    filters = SearchFilters(categories=frozenset({"skirt"}))  # item 10 is a skirt; row 74 its second image
    _, found = milvus[0].search(VECTORS[74:75], 3, _rows(filters), filters)
    assert found[0, 0] == 74 and RECORDS[10].category == "skirt"


def test_a_hostile_brand_is_one_literal() -> None:
    expression = filter_expression(SearchFilters(brands=frozenset({HOSTILE})), frozenset())
    assert expression == '(brand in ["x\\" or brand != \\""])'
    assert quoted('a\\"b\nc') == '"a\\\\\\"b\\nc"'


@pytest.mark.parametrize(
    "filters",
    [
        SearchFilters(brands=frozenset({'x" or row >= 0 or "'})),
        SearchFilters(categories=frozenset({'x" or row >= 0 or "', "top\\"})),
        SearchFilters(attributes={"colour": frozenset({'red"] or row >= 0 or attr_colour in ["'})}),
    ],
)
def test_milvus_reads_a_hostile_value_as_one_literal(
    milvus: tuple[MilvusBackend, MilvusBackend], filters: SearchFilters
) -> None:
    """No rows given, so nothing bounds k: only the expression keeps Milvus from answering every row."""
    _, found = milvus[0].search(QUERIES, COUNT, filters=filters)
    assert (found == -1).all()


def test_filter_expressions() -> None:
    filters = SearchFilters(
        categories=frozenset({"top", "dress"}),
        price_min=40,
        price_max=80.5,
        in_stock=False,
        gender="women",
        attributes={
            "pattern": frozenset({"striped"}),
            "colour": frozenset({"navy", "black"}),
            "sleeve_length": frozenset({"long"}),
        },
    )
    groups = frozenset({"colour", "gender", "pattern"})
    assert filter_expression(filters, groups) == (
        '(category in ["dress", "top"]) and (price >= 40.0) and (price <= 80.5) and (in_stock == false) and '
        '(gender in ["unisex", "women"]) and (attr_colour in ["black", "navy"]) and '
        '(attr_pattern in ["striped"]) and (row < 0)'  # no item has a sleeve length: none qualifies
    )
    assert filter_expression(SearchFilters(), groups) == ""
    assert filter_expression(SearchFilters(price_max=float("inf")), groups) == "(price is not null)"
    men = SearchFilters(gender="men", attributes={"gender": frozenset({"men"})})
    assert filter_expression(men, groups) == '(gender in ["men", "unisex"]) and (gender in ["men"])'


def test_every_attribute_group_has_a_field_of_its_own() -> None:
    names = {
        group: field_name(group) for group in ("colour", "sleeve_length", "gender", "Colour", "_x", "x y")
    }
    assert names["colour"] == "attr_colour" and names["sleeve_length"] == "attr_sleeve_length"
    assert names["gender"] == "gender" and names["Colour"] == "attr__436f6c6f7572"
    assert len(set(names.values())) == len(names)
    assert all(group_of(name) == group for group, name in names.items())
    assert group_of("category") is None and group_of("attr__zz") is None


def test_fields_follow_the_rows_of_further_images() -> None:
    fields = ScalarFields.of(RECORDS, IMAGE_ROWS)
    assert len(fields) == COUNT
    assert fields.values(72) == fields.values(0) and fields.values(73) == fields.values(5)
    assert fields.price[0] is None and fields.brand[0] == "acme"
    assert sorted(fields.attributes) == ["colour", "gender", "material"]
    assert fields.values(0)["gender"] == "" and fields.values(1)["gender"] == "men"  # row 0 has none
    assert fields.values(5)["attr_material"] == "wool" and fields.values(6)["attr_material"] == ""
    with pytest.raises(ValueError, match="further images rows n.. in order"):
        ScalarFields.of(RECORDS, [ImageRow(80, 0, 1)])


def test_a_collection_without_the_fields_opens_with_a_warning_and_filters_by_rows(
    milvus: tuple[MilvusBackend, MilvusBackend], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with_fields, rows_only = milvus
    assert with_fields.filterable and not rows_only.filterable
    uri = str(tmp_path / "old.db")
    write_collection(uri, "old", VECTORS[:10], "FLAT")
    with caplog.at_level(logging.WARNING, logger="indexer.milvus_backend"):
        old = MilvusBackend.open(uri, "old", "FLAT")
    try:
        assert "built before the filterable fields" in caplog.text and "rebuild the index" in caplog.text
        with pytest.raises(ValueError, match="pass the rows the filters keep"):
            old.search(QUERIES, 3, filters=CASES["category"])
    finally:
        old.close()


def test_rows_without_filters_still_restrict_a_collection_with_fields(
    milvus: tuple[MilvusBackend, MilvusBackend], faiss_backend: FaissBackend
) -> None:
    rows = np.arange(0, COUNT, 4, dtype=np.int64)
    _, found = milvus[0].search(QUERIES, 8, rows)
    assert found.tolist() == faiss_backend.search(QUERIES, 8, rows)[1].tolist()


def test_schema_holds_the_fields_with_scalar_indexes(milvus: tuple[MilvusBackend, MilvusBackend]) -> None:
    client = milvus[0]._client  # the backend's own connection: Milvus Lite serves one client per data path
    groups = attribute_groups(client.describe_collection("with_fields"))
    assert groups == {"colour", "gender", "material"}
    assert attribute_groups(client.describe_collection("rows_only")) is None
    indexed = set(client.list_indexes("with_fields"))
    scalar = {"category", "brand", "price", "in_stock", "gender", "attr_colour", "attr_material"}
    assert scalar <= indexed
    described = [client.describe_index("with_fields", name) for name in scalar]
    assert {index["index_type"] for index in described} == {"INVERTED"}
