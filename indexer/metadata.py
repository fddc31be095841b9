"""The SQLite item store, written once per build, then opened read-only: one `items` row per catalogue item
at its main image's vector-store row (0..n-1), and one `image_rows` row per further image of an item
(vector-store rows n.., each naming its item's row and the image's position: 1 = the first extra image)."""

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
    extra_attributes TEXT NOT NULL DEFAULT '{}',
    group_id TEXT NOT NULL DEFAULT '',
    extra_images TEXT NOT NULL DEFAULT '[]',
    image_sha256s TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX items_category ON items(category);
CREATE TABLE image_rows (
    vector_row INTEGER PRIMARY KEY,
    item_row INTEGER NOT NULL REFERENCES items(row),
    position INTEGER NOT NULL CHECK (position >= 1)
);
"""
# Item fields kept as they are, in their column order; `row`, the JSON columns and `image` are converted.
ITEM_FIELDS = ("item_id", "title", "category", "brand", "price", "currency", "in_stock", "url")
_COLUMN_NAMES = ("row", *ITEM_FIELDS, "attributes", "image", "extra_attributes")
# Columns added for variants and several images; a build written before them reads them as their defaults.
_NEWER_COLUMNS = {"group_id": "''", "extra_images": "'[]'", "image_sha256s": "'[]'"}
_ALL_COLUMNS = (*_COLUMN_NAMES, *_NEWER_COLUMNS)
_COLUMNS = ", ".join(_ALL_COLUMNS)


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
    image: str = ""  # the feed's image link, or the local path
    extra_attributes: dict[str, str] = field(default_factory=dict)  # feed attributes the taxonomy lacks
    group_id: str = ""  # the product this variant belongs to ("" = a product of its own)
    extra_images: tuple[str, ...] = ()  # further images, links or paths, in the feed's order
    image_sha256s: tuple[str, ...] = ()  # SHA-256 of the bytes of `image`, then of each extra image

    @classmethod
    def of(
        cls, row: int, item: CatalogItem, attributes: dict[str, AttributeGuess], extra: dict[str, str]
    ) -> ItemRecord:
        """The record of `item` (images as the feed named them: a link stays a link)."""
        shared = {name: getattr(item, name) for name in ITEM_FIELDS}
        return cls(
            row=row,
            image=item.image_url or str(item.image),
            attributes=attributes,
            extra_attributes=extra,
            group_id=item.group_id,
            extra_images=item.extra_images,
            image_sha256s=item.image_sha256s,
            **shared,
        )

    @property
    def images(self) -> tuple[str, ...]:
        """Every image of the item: the main one (position 0), then the extra ones."""
        return (self.image, *self.extra_images)

    def _values(self) -> tuple:
        attributes = json.dumps({g: a.to_json() for g, a in self.attributes.items()}, sort_keys=True)
        shared = tuple(getattr(self, name) for name in ITEM_FIELDS)
        extra = json.dumps(self.extra_attributes, sort_keys=True)
        images = (json.dumps(list(self.extra_images)), json.dumps(list(self.image_sha256s)))
        return (self.row, *shared, attributes, self.image, extra, self.group_id, *images)


@dataclass(frozen=True)
class ImageRow:
    """A further image of an item: its vector-store row, its item's row, its position (1 = first extra)."""

    vector_row: int
    item_row: int
    position: int


def write_metadata(path: Path, records: Iterable[ItemRecord], image_rows: Iterable[ImageRow] = ()) -> int:
    """Create the item tables at `path` (which must not exist) and return the number of items."""
    connection = sqlite3.connect(path)
    try:
        connection.executescript(_SCHEMA)
        marks = ", ".join("?" * len(_ALL_COLUMNS))
        with connection:
            connection.executemany(
                f"INSERT INTO items ({_COLUMNS}) VALUES ({marks})", (record._values() for record in records)
            )
            connection.executemany(
                "INSERT INTO image_rows (vector_row, item_row, position) VALUES (?, ?, ?)",
                ((r.vector_row, r.item_row, r.position) for r in image_rows),
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
        self._columns = _COLUMNS
        self._has_image_rows = True
        try:
            have = {info[1] for info in self._connection.execute("PRAGMA table_info(items)")}
            tables = {name for (name,) in self._connection.execute("SELECT name FROM sqlite_master")}
        except sqlite3.DatabaseError:
            return  # not a database: the first query says so, where the store names the file
        if have and not set(_NEWER_COLUMNS) <= have:  # a build from before variants and several images
            self._columns = ", ".join(
                (
                    *_COLUMN_NAMES,
                    *(f"{_NEWER_COLUMNS[c]} AS {c}" if c not in have else c for c in _NEWER_COLUMNS),
                )
            )
        self._has_image_rows = "image_rows" in tables

    def close(self) -> None:
        self._connection.close()

    def count(self) -> int:
        with self._lock:
            (count,) = self._connection.execute("SELECT COUNT(*) FROM items").fetchone()
        return int(count)

    def by_item_id(self, item_id: str) -> ItemRecord | None:
        with self._lock:
            found = self._connection.execute(
                f"SELECT {self._columns} FROM items WHERE item_id = ?", (item_id,)
            ).fetchone()
        return _record(found) if found else None

    def all_records(self) -> list[ItemRecord]:
        """Every item in row order (the store builds its filter columns from them once, at open)."""
        with self._lock:
            found = self._connection.execute(f"SELECT {self._columns} FROM items ORDER BY row").fetchall()
        return [_record(values) for values in found]

    def image_rows(self) -> list[ImageRow]:
        """The further images' vector rows, in vector-row order (none in a build from before them)."""
        if not self._has_image_rows:
            return []
        with self._lock:
            found = self._connection.execute(
                "SELECT vector_row, item_row, position FROM image_rows ORDER BY vector_row"
            ).fetchall()
        return [ImageRow(*values) for values in found]


def _record(values: tuple) -> ItemRecord:
    found = dict(zip(_ALL_COLUMNS, values, strict=True))
    attributes = {g: AttributeGuess.from_json(a) for g, a in json.loads(found.pop("attributes")).items()}
    extra = json.loads(found.pop("extra_attributes"))
    found["in_stock"] = bool(found["in_stock"])
    found["extra_images"] = tuple(json.loads(found["extra_images"]))
    found["image_sha256s"] = tuple(json.loads(found["image_sha256s"]))
    return ItemRecord(attributes=attributes, extra_attributes=extra, **found)
