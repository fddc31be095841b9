"""The filterable fields of a Milvus collection, and search filters as Milvus filter expressions over them.

Every vector row carries its item's fields, so the row of a further image qualifies exactly when its item's
main image does. One scalar field per filter column of `FilterColumns`, each with an INVERTED index:
- `category` VARCHAR, `brand` VARCHAR (lower-case, as brand filters are);
- `price` DOUBLE, nullable: an unknown price is null and fails any price condition;
- `in_stock` BOOL;
- `gender` VARCHAR, the item's value of the `gender` attribute group;
- one VARCHAR per other attribute group the catalogue's items have, `attr_<group>` (`attr_colour`,
  `attr_pattern`; a group name that is not lower-case snake_case becomes `attr__<hex of its UTF-8>`).
An item has at most one value per group (`ItemRecord.attributes`); "" where its value is unknown, as in
`FilterColumns`, so an unknown value never matches a filter's (canonical, non-empty) values.

`SearchFilters` -> expression, every condition in parentheses and joined with `and` (all must hold):
categories `category in ["top", "dress"]`; brands `brand in [...]`; price_min / price_max `price >= 40.0` /
`price <= 80.0`; in_stock `in_stock == true`; gender `gender in ["unisex", "women"]`; each attribute group
`attr_colour in ["black", "navy"]`, and for a group no item has, a condition no row meets (`row < 0`).
The same rows as `FilterColumns.rows` keeps, which the FAISS backend searches within. Strings are literals
in double quotes with backslash, quote and line breaks escaped (`quoted`): the expression parser (Milvus
Lite takes no filter templates) ends a literal only at an unescaped quote, so no value can add a condition.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from indexer.filters import UNISEX, SearchFilters
from indexer.metadata import ImageRow, ItemRecord
from indexer.milvus_connection import VectorStoreError

CATEGORY, BRAND, PRICE, IN_STOCK, GENDER = "category", "brand", "price", "in_stock", "gender"
FIXED_FIELDS = (CATEGORY, BRAND, PRICE, IN_STOCK, GENDER)  # every collection with fields has these
GENDER_GROUP = "gender"  # the attribute group held in the `gender` field
ATTRIBUTE_PREFIX = "attr_"
NOTHING = "row < 0"  # a condition no row meets (rows are 0..n-1)
MAX_VARCHAR_BYTES = 65_535  # Milvus's limit for a VARCHAR
MAX_FIELD_NAME = 255  # Milvus's limit for a field name
MAX_ATTRIBUTE_FIELDS = 50  # Milvus allows 64 fields per collection: row, vector, the fixed ones, these
_SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quoted(text: str) -> str:
    """A Milvus string literal for `text`. The parser knows no \\u or \\x escapes; any other character
    stands for itself between the quotes."""
    return '"' + "".join(_ESCAPES.get(char, char) for char in text) + '"'


def field_name(group: str) -> str:
    """The field holding attribute group `group`: `gender`, `attr_<group>`, or `attr__<hex>` for a name that
    is not snake_case (so two groups never share a field: a snake_case name never starts with `_`)."""
    if group == GENDER_GROUP:
        return GENDER
    suffix = group if _SNAKE_CASE.fullmatch(group) else "_" + group.encode("utf-8").hex()
    return ATTRIBUTE_PREFIX + suffix


def group_of(field: str) -> str | None:
    """The attribute group a field holds (the inverse of `field_name`), None for a field of no group."""
    if field == GENDER:
        return GENDER_GROUP
    if not field.startswith(ATTRIBUTE_PREFIX):
        return None
    suffix = field.removeprefix(ATTRIBUTE_PREFIX)
    if suffix.startswith("_"):
        try:
            return bytes.fromhex(suffix[1:]).decode("utf-8")
        except ValueError:
            return None
    return suffix


def filter_expression(filters: SearchFilters, groups: Collection[str]) -> str:
    """The Milvus filter expression for `filters` ("" when they are empty) over a collection whose attribute
    fields hold `groups`; see the module docstring."""
    clauses: list[str] = []
    if filters.categories:
        clauses.append(f"{CATEGORY} in {_strings(filters.categories)}")
    if filters.brands:
        clauses.append(f"{BRAND} in {_strings(filters.brands)}")
    if filters.price_min is not None:
        clauses.append(_price(">=", filters.price_min))
    if filters.price_max is not None:
        clauses.append(_price("<=", filters.price_max))
    if filters.in_stock is not None:
        clauses.append(f"{IN_STOCK} == {'true' if filters.in_stock else 'false'}")
    if filters.gender:
        clauses.append(f"{GENDER} in {_strings((filters.gender, UNISEX))}")
    for group, values in sorted(filters.attributes.items()):
        if group in groups:
            clauses.append(f"{field_name(group)} in {_strings(values)}")
        elif "" not in values:  # no item has the group: every value is unknown ("")
            clauses.append(NOTHING)
    return " and ".join(f"({clause})" for clause in clauses)


def _strings(values: Iterable[str]) -> str:
    return "[" + ", ".join(quoted(value) for value in sorted(set(values))) + "]"


def _price(operator: str, bound: float) -> str:
    """`price >= bound` / `price <= bound`; as in numpy an unknown price (null) fails either, a NaN bound
    admits nothing and an infinite one every known price or none."""
    bound = float(bound)
    if math.isnan(bound):
        return NOTHING
    if math.isinf(bound):
        every_price = (bound < 0) == (operator == ">=")
        return f"{PRICE} is not null" if every_price else NOTHING
    return f"{PRICE} {operator} {bound!r}"


@dataclass(frozen=True)
class ScalarFields:
    """The filterable values of every vector row, in row order: the items' main images (row = item row),
    then their further images (`image_rows`), each with its item's values. `attributes` maps each attribute
    group the items have (gender always) to its values, "" where unknown."""

    category: list[str]
    brand: list[str]
    price: list[float | None]
    in_stock: list[bool]
    attributes: dict[str, list[str]]

    @classmethod
    def of(cls, records: Sequence[ItemRecord], image_rows: Sequence[ImageRow] = ()) -> ScalarFields:
        if any(r.row != i for i, r in enumerate(records)) or any(
            r.vector_row != len(records) + i or not 0 <= r.item_row < len(records)
            for i, r in enumerate(image_rows)
        ):
            raise ValueError("items must be rows 0..n-1 and further images rows n.. in order, naming an item")
        items = [*records, *(records[r.item_row] for r in image_rows)]
        groups = sorted({GENDER_GROUP, *(group for r in records for group in r.attributes)})
        if len(groups) > MAX_ATTRIBUTE_FIELDS:
            raise VectorStoreError(
                f"the items have {len(groups)} attribute groups; a Milvus collection holds at most "
                f"{MAX_ATTRIBUTE_FIELDS} besides the other fields: use the FAISS vector store"
            )
        for group in groups:
            _checked_name(field_name(group), group)
        return cls(
            category=[r.category for r in items],
            brand=[r.brand.lower() for r in items],
            price=[None if r.price is None or math.isnan(r.price) else float(r.price) for r in items],
            in_stock=[bool(r.in_stock) for r in items],
            attributes={
                group: [r.attributes[group].value if group in r.attributes else "" for r in items]
                for group in groups
            },
        )

    def __len__(self) -> int:
        return len(self.category)

    @property
    def names(self) -> list[str]:
        """Every field, fixed ones first."""
        return [CATEGORY, BRAND, PRICE, IN_STOCK, *(field_name(group) for group in self.attributes)]

    def values(self, row: int) -> dict[str, Any]:
        """The fields of vector row `row`, as a Milvus entity's."""
        fixed = {
            CATEGORY: self.category[row],
            BRAND: self.brand[row],
            PRICE: self.price[row],
            IN_STOCK: self.in_stock[row],
        }
        return fixed | {field_name(group): values[row] for group, values in self.attributes.items()}

    def add_to(self, schema: Any) -> None:
        """Add the fields to a collection schema, VARCHARs sized to their longest values."""
        from pymilvus import DataType

        schema.add_field(CATEGORY, DataType.VARCHAR, max_length=_longest(CATEGORY, self.category))
        schema.add_field(BRAND, DataType.VARCHAR, max_length=_longest(BRAND, self.brand))
        schema.add_field(PRICE, DataType.DOUBLE, nullable=True)
        schema.add_field(IN_STOCK, DataType.BOOL)
        for group, values in self.attributes.items():
            name = field_name(group)
            schema.add_field(name, DataType.VARCHAR, max_length=_longest(f"{group} attribute", values))

    def add_indexes(self, index: Any) -> None:
        """An INVERTED index on every field (Milvus Lite builds these on VARCHAR, DOUBLE and BOOL alike)."""
        for name in self.names:
            index.add_index(name, index_type="INVERTED")


def attribute_groups(description: dict[str, Any]) -> frozenset[str] | None:
    """The attribute groups of a collection (from describe_collection) with the filterable fields; None for
    one without them (built before them: row and vector only)."""
    names = {str(field.get("name")) for field in description.get("fields", [])}
    if not set(FIXED_FIELDS) <= names:
        return None
    return frozenset(group for group in map(group_of, names) if group is not None)


def _checked_name(name: str, group: str) -> None:
    if len(name) > MAX_FIELD_NAME:
        raise VectorStoreError(
            f"attribute group {group[:40]!r}... needs a Milvus field name of {len(name)} characters; "
            f"Milvus allows {MAX_FIELD_NAME}: shorten the group's name in the taxonomy"
        )


def _longest(name: str, values: Iterable[str]) -> int:
    longest = max([1, *(len(value.encode("utf-8")) for value in values)])
    if longest > MAX_VARCHAR_BYTES:
        raise ValueError(
            f"a {name} value is {longest} bytes long; Milvus stores at most {MAX_VARCHAR_BYTES} bytes in one"
        )
    return longest
