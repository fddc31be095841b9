"""The SQLite item store: one row per vector-store row, written once per build, then opened read-only."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from indexer.feed import CatalogItem
from models.attributes.guess import AttributeGuess

_SCHEMA = """
CREATE TABLE items (
    row INTEGER PRIMARY KEY,
    item_id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    category TEXT NOT NULL,
    brand TEXT NOT NULL,
    price REAL,
    currency TEXT NOT NULL,
    in_stock INTEGER NOT NULL,
    url TEXT NOT NULL,
    attributes TEXT NOT NULL,
    image TEXT NOT NULL,
    extra_attributes TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX items_category ON items(category);
"""
# Item fields kept as they are, in their column order; `row`, the JSON columns and `image` are converted.
ITEM_FIELDS = ("item_id", "title", "category", "brand", "price", "currency", "in_stock", "url")
_COLUMN_NAMES = ("row", *ITEM_FIELDS, "attributes", "image", "extra_attributes")
_COLUMNS = ", ".join(_COLUMN_NAMES)


@dataclass(frozen=True)
class ItemRecord:
    """One indexed item: its catalogue row plus normalised and predicted attributes, at vector-store `row`.
    The build writes it and the query side reads it back."""

    row: int
    item_id: str
    title: str
    category: str
    brand: str
    price: float | None
    currency: str
    in_stock: bool
    url: str
    attributes: dict[str, AttributeGuess] = field(default_factory=dict)
    image: str = ""
    extra_attributes: dict[str, str] = field(default_factory=dict)  # feed attributes the taxonomy lacks

    @classmethod
    def of(
        cls, row: int, item: CatalogItem, attributes: dict[str, AttributeGuess], extra: dict[str, str]
    ) -> ItemRecord:
        shared = {name: getattr(item, name) for name in ITEM_FIELDS}
        return cls(row=row, image=str(item.image), attributes=attributes, extra_attributes=extra, **shared)

    def _values(self) -> tuple:
        attributes = json.dumps({g: a.to_json() for g, a in self.attributes.items()}, sort_keys=True)
        shared = tuple(getattr(self, name) for name in ITEM_FIELDS)
        return (self.row, *shared, attributes, self.image, json.dumps(self.extra_attributes, sort_keys=True))


def write_metadata(path: Path, records: Iterable[ItemRecord]) -> int:
    """Create the item table at `path` (which must not exist) and return the number of rows."""
    connection = sqlite3.connect(path)
    try:
        connection.executescript(_SCHEMA)
        marks = ", ".join("?" * len(_COLUMN_NAMES))
        with connection:
            connection.executemany(
                f"INSERT INTO items ({_COLUMNS}) VALUES ({marks})", (record._values() for record in records)
            )
        (count,) = connection.execute("SELECT COUNT(*) FROM items").fetchone()
    finally:
        connection.close()
    return int(count)


class MetadataReader:
    """Read-only access, safe to share between the service's worker threads."""

    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._connection.close()

    def count(self) -> int:
        with self._lock:
            (count,) = self._connection.execute("SELECT COUNT(*) FROM items").fetchone()
        return int(count)

    def by_item_id(self, item_id: str) -> ItemRecord | None:
        with self._lock:
            found = self._connection.execute(
                f"SELECT {_COLUMNS} FROM items WHERE item_id = ?", (item_id,)
            ).fetchone()
        return _record(found) if found else None

    def all_records(self) -> list[ItemRecord]:
        """Every item in row order (the store builds its filter columns from them once, at open)."""
        with self._lock:
            found = self._connection.execute(f"SELECT {_COLUMNS} FROM items ORDER BY row").fetchall()
        return [_record(values) for values in found]


def _record(values: tuple) -> ItemRecord:
    found = dict(zip(_COLUMN_NAMES, values, strict=True))
    attributes = {g: AttributeGuess.from_json(a) for g, a in json.loads(found.pop("attributes")).items()}
    extra = json.loads(found.pop("extra_attributes"))
    found["in_stock"] = bool(found["in_stock"])
    return ItemRecord(attributes=attributes, extra_attributes=extra, **found)
