"""Search filters, applied inside the vector search (as the set of rows FAISS may return), so a filtered
query still fills top_k whenever enough items qualify."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from indexer.metadata import ItemRecord
from models.attributes.taxonomy import Taxonomy
from models.errors import FashionSearchError, listed, shown

UNISEX = "unisex"


class FilterError(FashionSearchError):
    """A filter names an unknown attribute group or value, or is contradictory."""


@dataclass(frozen=True)
class SearchFilters:
    """All given conditions must hold. Attribute values are canonical taxonomy values (normalise first).

    `gender` also admits unisex items. Items whose value for a filtered attribute group is unknown do not
    qualify: a filter is a promise about what comes back.
    """

    categories: frozenset[str] = frozenset()
    brands: frozenset[str] = frozenset()  # lower-case
    price_min: float | None = None
    price_max: float | None = None
    in_stock: bool | None = None
    gender: str | None = None
    attributes: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise FilterError(f"price_min {self.price_min} is above price_max {self.price_max}")

    @property
    def empty(self) -> bool:
        return not (
            self.categories
            or self.brands
            or self.price_min is not None
            or self.price_max is not None
            or self.in_stock is not None
            or self.gender
            or self.attributes
        )


class FilterColumns:
    """Column arrays over every row, built once when the store opens; `rows` evaluates a filter in numpy."""

    def __init__(self, records: Sequence[ItemRecord]) -> None:
        self.size = len(records)
        self.category = np.array([r.category for r in records], dtype=object)
        self.brand = np.array([r.brand.lower() for r in records], dtype=object)
        self.price = np.array([np.nan if r.price is None else r.price for r in records], dtype=np.float64)
        self.in_stock = np.array([r.in_stock for r in records], dtype=bool)
        groups = sorted({group for r in records for group in r.attributes})
        self.attributes = {
            group: np.array(
                [r.attributes[group].value if group in r.attributes else "" for r in records], dtype=object
            )
            for group in groups
        }

    def rows(self, filters: SearchFilters) -> np.ndarray:
        """Row numbers (int64, ascending) of the items that pass every condition."""
        keep = np.ones(self.size, dtype=bool)
        if filters.categories:
            keep &= np.isin(self.category, list(filters.categories))
        if filters.brands:
            keep &= np.isin(self.brand, list(filters.brands))
        if filters.price_min is not None:
            keep &= self.price >= filters.price_min  # unknown prices (NaN) fail a price filter
        if filters.price_max is not None:
            keep &= self.price <= filters.price_max
        if filters.in_stock is not None:
            keep &= self.in_stock == filters.in_stock
        if filters.gender:
            keep &= np.isin(self._column("gender"), [filters.gender, UNISEX])
        for group, values in filters.attributes.items():
            keep &= np.isin(self._column(group), list(values))
        return np.flatnonzero(keep).astype(np.int64)

    def _column(self, group: str) -> np.ndarray:
        column = self.attributes.get(group)
        return column if column is not None else np.full(self.size, "", dtype=object)


def build_filters(
    taxonomy: Taxonomy,
    categories: Sequence[str] = (),
    brands: Sequence[str] = (),
    price_min: float | None = None,
    price_max: float | None = None,
    in_stock: bool | None = None,
    gender: str | None = None,
    attributes: Mapping[str, str | Sequence[str]] | None = None,
) -> SearchFilters:
    """Normalise shopper- or ops-facing filter values through the taxonomy; unknown ones raise FilterError
    naming what is accepted."""
    normalised: dict[str, frozenset[str]] = {}
    for raw_group, raw_values in (attributes or {}).items():
        group = taxonomy.group(raw_group)
        if group is None:
            raise FilterError(f"unknown attribute group {shown(raw_group)}; known: {listed(taxonomy.groups)}")
        values = [raw_values] if isinstance(raw_values, str) else list(raw_values)
        if not values:
            raise FilterError(f"attribute filter {shown(raw_group)} lists no values")
        normalised[group.name] = normalised.get(group.name, frozenset()) | {
            _value(taxonomy, group.name, value) for value in values
        }
    gender_value = _value(taxonomy, "gender", gender) if gender else None
    return SearchFilters(
        categories=frozenset(taxonomy.normalise_category(c) for c in categories if c.strip()),
        brands=frozenset(b.strip().lower() for b in brands if b.strip()),
        price_min=price_min,
        price_max=price_max,
        in_stock=in_stock,
        gender=gender_value,
        attributes=normalised,
    )


def _value(taxonomy: Taxonomy, group: str, raw: str) -> str:
    value = taxonomy.normalise_value(group, raw)
    if value is None:
        known = listed(taxonomy.groups[group].value_names)
        raise FilterError(f"unknown {group} value {shown(raw)}; known: {known}")
    return value
