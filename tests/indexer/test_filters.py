from __future__ import annotations

import pytest

from indexer.filters import FilterColumns, FilterError, SearchFilters, build_filters
from indexer.metadata import ItemRecord
from models.attributes.guess import AttributeGuess
from models.attributes.taxonomy import load_taxonomy


def record(row: int, **attributes: str) -> ItemRecord:
    return ItemRecord(
        row=row,
        item_id=f"i{row}",
        title="",
        category="top" if row % 2 else "skirt",
        brand="Acme" if row < 3 else "Other",
        price=None if row == 5 else 10.0 * row,
        currency="EUR",
        in_stock=row != 1,
        url="",
        attributes={g: AttributeGuess(v, 1.0, "feed") for g, v in attributes.items()},
    )


COLUMNS = FilterColumns(
    [
        record(0, colour="red", gender="women"),
        record(1, colour="red", gender="unisex"),
        record(2, colour="blue", gender="men"),
        record(3, colour="red"),
        record(4, colour="blue", gender="women"),
        record(5, colour="red", gender="women"),
    ]
)


def test_each_condition() -> None:
    assert COLUMNS.rows(SearchFilters(categories=frozenset({"top"}))).tolist() == [1, 3, 5]
    assert COLUMNS.rows(SearchFilters(brands=frozenset({"acme"}))).tolist() == [0, 1, 2]
    assert COLUMNS.rows(SearchFilters(price_min=20, price_max=40)).tolist() == [2, 3, 4]
    assert COLUMNS.rows(SearchFilters(in_stock=True)).tolist() == [0, 2, 3, 4, 5]
    assert COLUMNS.rows(SearchFilters(gender="women")).tolist() == [0, 1, 4, 5]  # unisex too
    assert COLUMNS.rows(SearchFilters(attributes={"colour": frozenset({"blue"})})).tolist() == [2, 4]


def test_conditions_combine_and_unknown_values_do_not_qualify() -> None:
    both = SearchFilters(attributes={"colour": frozenset({"red"})}, price_max=100, gender="women")
    assert COLUMNS.rows(both).tolist() == [0, 1]  # 5 has no price, 3 no gender
    assert COLUMNS.rows(SearchFilters(attributes={"material": frozenset({"silk"})})).tolist() == []


def test_build_filters_normalises_through_synonyms() -> None:
    filters = build_filters(
        load_taxonomy(),
        categories=["T-Shirt"],
        brands=[" ACME "],
        gender="Ladies",
        attributes={"color": ["Crimson", "navy blue"], "pattern": "plaid"},
    )
    assert filters.categories == {"top"} and filters.brands == {"acme"} and filters.gender == "women"
    assert filters.attributes == {"colour": {"red", "navy"}, "pattern": {"checked"}}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attributes": {"sparkle": "high"}}, "unknown attribute group 'sparkle'"),
        ({"attributes": {"colour": "octarine"}}, "unknown colour value 'octarine'"),
        ({"attributes": {"colour": []}}, "lists no values"),
        ({"gender": "robots"}, "unknown gender value"),
        ({"price_min": 50.0, "price_max": 10.0}, "price_min 50.0 is above price_max 10.0"),
    ],
)
def test_bad_filters_raise_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        build_filters(load_taxonomy(), **kwargs)
