"""Catalogue feeds (ours, Merchant Center, Shopify): parse, validate and report bad rows with their line
numbers. The formats are read in `indexer.feed_formats`; every one gives rows in our row format."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from indexer.feed_formats import (
    FORMAT_NAMES,
    MAX_EXTRA_IMAGES,
    REQUIRED_FIELDS,
    FeedError,
    RowError,
    Rows,
    csv_rows,
    detect_format,
    jsonl_rows,
    merchant_csv_rows,
    merchant_tsv_rows,
)
from indexer.shop_feeds import merchant_xml_rows, shopify_csv_rows
from models.attributes.taxonomy import load_taxonomy
from models.errors import shown
from models.files import file_digest

__all__ = [
    "FEED_FORMATS",
    "REQUIRED_FIELDS",
    "FeedError",
    "RowError",
    "CatalogItem",
    "CatalogRow",
    "read_feed",
]

FEED_FORMATS = ("auto", *FORMAT_NAMES)
KNOWN_FIELDS = (
    *REQUIRED_FIELDS,
    *("brand", "price", "currency", "in_stock", "url", "attributes", "group_id", "extra_images"),
)
# `CatalogItem.image` of an item whose image is a URL (kept in `image_url`) until something downloads it: a
# path that never exists, so a builder that reads `image` reports the item as unreadable instead of guessing.
IMAGE_NOT_DOWNLOADED = Path("/nonexistent/image-url-not-downloaded")
READERS: dict[str, Callable[[Path], Rows]] = {
    "jsonl": jsonl_rows,
    "csv": csv_rows,
    "merchant-tsv": merchant_tsv_rows,
    "merchant-csv": merchant_csv_rows,
    "merchant-xml": merchant_xml_rows,
    "shopify-csv": shopify_csv_rows,
}
_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n"}


@dataclass(frozen=True)
class CatalogItem:
    item_id: str
    image: Path
    title: str
    category: str
    brand: str = ""
    price: float | None = None
    currency: str = ""
    in_stock: bool = True
    url: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    line: int = 0
    image_url: str = ""  # http(s) image of a shop feed; then `image` is IMAGE_NOT_DOWNLOADED
    extra_images: tuple[str, ...] = ()  # more images of the item: URLs, or paths resolved like `image`
    group_id: str = ""  # the product a variant belongs to (Merchant item_group_id, Shopify Handle)
    # The local files of `extra_images`, in the same order (empty until every one is local: the feed sets it
    # for paths, the downloader for links, dropping a link that failed from both); what the build embeds.
    extra_files: tuple[Path, ...] = ()
    image_sha256s: tuple[str, ...] = ()  # SHA-256 of the main image's bytes, then each extra file's (builds)


@dataclass(frozen=True)
class BadRow:
    line: int
    item_id: str | None
    reason: str

    def __str__(self) -> str:
        who = f" (id {self.item_id!r})" if self.item_id else ""
        return f"line {self.line}{who}: {self.reason}"


@dataclass
class Feed:
    path: Path
    items: list[CatalogItem]
    bad_rows: list[BadRow]
    sha256: str
    feed_format: str = ""  # the format it was read as (never "auto")


def read_feed(path: Path, feed_format: str = "auto") -> Feed:
    """Parse a feed in one of FEED_FORMATS ("auto": from the suffix and the first bytes; see
    `indexer.feed_formats.detect_format`). Bad rows are collected, never raised; FeedError when the feed as a
    whole cannot be read."""
    if feed_format not in FEED_FORMATS:
        raise FeedError(f"unknown feed format {shown(feed_format)}; use one of {', '.join(FEED_FORMATS)}")
    if not path.is_file():
        raise FeedError(f"catalogue feed {path} does not exist")
    chosen = detect_format(path) if feed_format == "auto" else feed_format
    rows = READERS[chosen](path)
    items: list[CatalogItem] = []
    bad: list[BadRow] = []
    seen: dict[str, int] = {}
    try:
        for line, raw in rows:
            try:
                item = parse_row(raw, line, path.parent)
            except RowError as exc:
                bad.append(BadRow(line, exc.item_id or _row_id(raw), str(exc)))
                continue
            if item.item_id in seen:
                bad.append(
                    BadRow(line, item.item_id, f"duplicate id, first seen on line {seen[item.item_id]}")
                )
                continue
            seen[item.item_id] = line
            items.append(item)
    except UnicodeDecodeError as exc:
        raise FeedError(f"catalogue feed {path} is not UTF-8 text: {exc}") from exc
    return Feed(path=path, items=items, bad_rows=bad, sha256=file_digest(path), feed_format=chosen)


def _row_id(raw: Any) -> str | None:
    value = raw.get("id") if isinstance(raw, dict) else None
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


# One set of limits for every catalogue row, from a feed file or from the admin API.
LIMITS = {"id": 256, "image": 4096, "title": 1000, "category": 100, "brand": 200, "currency": 3, "url": 2048}
LIMITS |= {"group_id": 256}


class CatalogRow(BaseModel):
    """One catalogue row as a feed or the admin API gives it; `image` is a path (relative to the feed's
    folder, or to the service's image root over HTTP) or, from a feed, an http(s) URL. Validation raises
    reasons a catalogue manager can act on ("price must be a number, got 'abc'"); the feed reports them per
    line, the admin API as a 422."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=LIMITS["id"])
    image: str = Field(min_length=1, max_length=LIMITS["image"])
    title: str = Field(min_length=1, max_length=LIMITS["title"])
    category: str = Field(min_length=1, max_length=LIMITS["category"])
    brand: str = Field("", max_length=LIMITS["brand"])
    price: float | None = Field(None, ge=0)
    currency: str = Field("", max_length=LIMITS["currency"], description="ISO 4217 code, e.g. EUR")
    in_stock: bool = True
    url: str = Field("", max_length=LIMITS["url"])
    attributes: dict[str, str] = Field(default_factory=dict, description="group -> value, e.g. colour: red")
    group_id: str = Field("", max_length=LIMITS["group_id"], description="the product a variant belongs to")
    extra_images: tuple[str, ...] = Field(
        (), max_length=MAX_EXTRA_IMAGES, description="more images of the item"
    )

    @model_validator(mode="before")
    @classmethod
    def _clean(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            raise RowError(f"a row must be a JSON object, got {type(raw).__name__}")
        missing = [name for name in REQUIRED_FIELDS if raw.get(name) in (None, "")]
        if missing:
            raise RowError(f"missing required field(s): {', '.join(missing)}")
        clean: dict[str, Any] = {name: _text(raw, name, LIMITS[name]) for name in REQUIRED_FIELDS}
        clean["category"] = load_taxonomy().normalise_category(clean["category"])
        for name in ("brand", "url", "group_id"):
            clean[name] = _text(raw, name, LIMITS[name], default="")
        clean["currency"] = _text(raw, "currency", LIMITS["currency"], default="").upper()
        clean["price"] = _price(raw.get("price"))
        clean["in_stock"] = _bool(raw.get("in_stock", True))
        clean["attributes"] = _attributes(raw.get("attributes", {}))
        clean["extra_images"] = _images(raw.get("extra_images", ()))
        unknown = sorted(set(raw) - set(clean))
        return {**clean, **{name: raw[name] for name in unknown}}  # extra="forbid" names them

    def to_item(self, base: Path, line: int = 0) -> CatalogItem:
        """The item, with its image resolved against `base`; RowError when the image file is missing. An
        http(s) image is kept as `image_url` (with `image` IMAGE_NOT_DOWNLOADED), unchecked: reading only."""
        image_url = self.image if is_url(self.image) else ""
        image = IMAGE_NOT_DOWNLOADED if image_url else _resolved(self.image, base)
        if not image_url and not image.is_file():
            raise RowError(f"image file {image} does not exist", self.id)
        extra = tuple(link if is_url(link) else str(_resolved(link, base)) for link in self.extra_images)
        files = () if any(is_url(link) for link in extra) else tuple(Path(link) for link in extra)
        fields = self.model_dump(exclude={"id", "image", "extra_images"})
        return CatalogItem(
            item_id=self.id,
            image=image,
            line=line,
            image_url=image_url,
            extra_images=extra,
            extra_files=files,
            **fields,
        )


def is_url(text: str) -> bool:
    """An http(s) URL with a host (what a shop feed's image links are)."""
    scheme, _, rest = text.partition("://")
    return scheme.lower() in ("http", "https") and bool(rest.split("/", 1)[0])


def _resolved(image: str, base: Path) -> Path:
    path = Path(image)
    return path if path.is_absolute() else base / path


def parse_row(raw: Any, line: int, base: Path) -> CatalogItem:
    """Validate one decoded feed row (unknown fields are ignored); raise RowError with the reason."""
    if isinstance(raw, RowError):
        raise raw
    known = (
        {name: value for name, value in raw.items() if name in KNOWN_FIELDS} if isinstance(raw, dict) else raw
    )
    try:
        row = CatalogRow.model_validate(known)
    except ValidationError as exc:
        raise RowError(row_reason(exc)) from None
    return row.to_item(base, line)


def row_reason(exc: ValidationError) -> str:
    """The first problem of a row, in the words of the check that found it."""
    first = exc.errors()[0]
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, RowError):
        return str(cause)
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


# Fields that name a file or a key: no control character at all (NUL, newline, ...). Other text: no NUL.
PLAIN_FIELDS = frozenset({"id", "image", "category", "currency", "group_id", "extra_images"})
CONTROL_CHARACTERS = frozenset(chr(code) for code in (*range(32), 127))


def _text(raw: dict[str, Any], key: str, max_len: int, default: str | None = None) -> str:
    value = raw.get(key, default)
    if value is None and default is not None:
        return default
    if isinstance(value, int | float) and not isinstance(value, bool) and key == "id":
        value = str(value)
    if not isinstance(value, str):
        raise RowError(f"{key} must be text, got {type(value).__name__}")
    value = value.strip()
    if len(value) > max_len:
        raise RowError(f"{key} is {len(value)} characters long; the limit is {max_len}")
    controls = "\x00" if key not in PLAIN_FIELDS else CONTROL_CHARACTERS
    if any(char in controls for char in value):
        raise RowError(f"{key} contains a control character (e.g. a NUL byte): {shown(value)}")
    return value


def _price(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RowError("price must be a number, got bool")
    try:
        price = float(value)
    except (TypeError, ValueError):
        raise RowError(f"price must be a number, got {shown(value)}") from None
    if not math.isfinite(price) or price < 0:
        raise RowError(f"price must be a finite number >= 0, got {shown(value)}")
    return price


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise RowError(f"in_stock must be true or false, got {shown(value)}")


def _images(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise RowError(f"extra_images must be a list of image links or paths, got {type(value).__name__}")
    if len(value) > MAX_EXTRA_IMAGES:
        raise RowError(f"extra_images has {len(value)} images; the limit is {MAX_EXTRA_IMAGES}")
    return tuple(_text({"extra_images": link}, "extra_images", LIMITS["image"]) for link in value)


def _attributes(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise RowError(f"attributes must be an object of group -> value, got {type(value).__name__}")
    clean: dict[str, str] = {}
    for group, attr in value.items():
        if not isinstance(attr, str | int | float) or isinstance(attr, bool):
            raise RowError(f"attribute {shown(group)} must be text, got {type(attr).__name__}")
        clean[str(group).strip().lower()] = str(attr).strip().lower()
    return clean
