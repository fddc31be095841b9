"""Catalogue feed formats: ours (JSON Lines, CSV), Google Merchant Center text (TSV or CSV) and XML (RSS or
Atom with the g: namespace), and Shopify's product CSV export. Each reader yields (line number, row) with the
row in our row format (the fields of `indexer.feed.CatalogRow`), or a RowError for a row it cannot map, so
one validator and one bad-row report serve every format. Reading only: nothing is written or fetched.

Hostile feeds: XML goes through defusedxml (no entity declarations, no external references); a text line
longer than MAX_LINE_CHARS is a bad row and is never held in memory whole; a cell over csv's field limit is
a bad row; anything but UTF-8 (a UTF-8 byte-order mark is fine) fails the whole feed."""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from models.attributes.taxonomy import load_taxonomy
from models.errors import FashionSearchError, shown

Rows = Iterator[tuple[int, Any]]

REQUIRED_FIELDS = ("id", "image", "title", "category")
GOOGLE_NS = "http://base.google.com/ns/1.0"
MAX_LINE_CHARS = 1 << 20  # one physical line of a text feed
MAX_ELEMENT_CHARS = 1 << 20  # the text of one XML element of an item
MAX_EXTRA_IMAGES = 50
MAX_PRODUCT_ROWS = 5000  # Shopify rows buffered for one product before its variants are given out
# The formats a feed can be read as (the readers are in `indexer.feed.READERS`).
FORMAT_NAMES = ("jsonl", "csv", "merchant-tsv", "merchant-csv", "merchant-xml", "shopify-csv")
SUFFIXES = (".jsonl", ".ndjson", ".csv", ".tsv", ".txt", ".xml", ".rss", ".atom")
CHUNK_BYTES = 64 * 1024


class FeedError(FashionSearchError):
    """The feed as a whole cannot be read (missing, wrong format, bad header, hostile or not UTF-8)."""


class RowError(ValueError):
    """One row is invalid; carries the reason (and the row's id when it has one)."""

    def __init__(self, reason: str, item_id: str | None = None) -> None:
        super().__init__(reason)
        self.item_id = item_id


def not_utf8(path: Path, exc: UnicodeDecodeError) -> FeedError:
    return FeedError(f"catalogue feed {path} is not UTF-8 text: {exc}; save it as UTF-8")


# detection


def detect_format(path: Path) -> str:
    """The format of `path` from its suffix and its first bytes (the header line of a text feed)."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".xml", ".rss", ".atom"):
        if GOOGLE_NS in _head(path):
            return "merchant-xml"
        raise _undetected(path, f'XML without the Merchant Center namespace xmlns:g="{GOOGLE_NS}"')
    if suffix in (".csv", ".tsv", ".txt"):
        header = _head(path).lstrip("\ufeff").splitlines()[:1]
        found = _text_format(header[0] if header else "", suffix)
        if found is None:
            raise _undetected(path, f"header {shown(header[0] if header else '', 200)} is none of ours")
        return found
    raise _undetected(path, f"suffix {suffix or 'nothing'!r}")


def _undetected(path: Path, why: str) -> FeedError:
    return FeedError(
        f"catalogue feed {path}: cannot tell its format ({why}); a feed must end in "
        f"{', '.join(SUFFIXES)} with a header (or first bytes) of its format, or be read with an explicit "
        f"format: {', '.join(FORMAT_NAMES)}"
    )


def _head(path: Path) -> str:
    """The first 64 KiB as text (a multi-byte character cut at the end is dropped)."""
    with path.open("rb") as handle:
        head = handle.read(CHUNK_BYTES)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FeedError(
            f"catalogue feed {path} is not UTF-8 text: it is UTF-16 (byte-order mark); save as UTF-8"
        )
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        raise not_utf8(path, exc) from None


def attribute_name(header_cell: str) -> str:
    """`Image Link`, `g:image_link`, ` image_link ` -> `image_link`; `Variant SKU` -> `variant_sku`."""
    name = header_cell.strip().lower().removeprefix("g:")
    return re.sub(r"\s+", "_", name)


def _text_format(header: str, suffix: str) -> str | None:
    delimiter = "\t" if "\t" in header else ","
    cells = next(csv.reader([header], delimiter=delimiter), [])
    names = {attribute_name(cell) for cell in cells}
    shopify = {"variant_sku", "variant_price", "image_src", "option1_value"}
    if delimiter == "," and "handle" in names and names & shopify:
        return "shopify-csv"
    if delimiter == "," and set(REQUIRED_FIELDS) <= set(cells):
        return "csv"
    if "id" in names and names & {"link", "image_link", "availability", "price"} and "image" not in names:
        return "merchant-tsv" if delimiter == "\t" else "merchant-csv"
    if suffix == ".csv" and delimiter == ",":
        return "csv"  # ours; its reader names the missing columns
    return None


# text lines and csv records


class _BoundedLines:
    """The lines of a text file, each at most MAX_LINE_CHARS: a longer one is skipped in pieces (never read
    whole), stands as an empty line, and its number is kept in `overlong`."""

    def __init__(self, handle: TextIO) -> None:
        self._handle = handle
        self.number = 0
        self.overlong: list[int] = []

    def __iter__(self) -> _BoundedLines:
        return self

    def __next__(self) -> str:
        text = self._handle.readline(MAX_LINE_CHARS + 1)
        if not text:
            raise StopIteration
        self.number += 1
        if len(text) <= MAX_LINE_CHARS:
            return text
        while text and not text.endswith(("\n", "\r")):
            text = self._handle.readline(MAX_LINE_CHARS)
        self.overlong.append(self.number)
        return "\n"


def _too_long(line: int) -> RowError:
    return RowError(f"line {line} is longer than {MAX_LINE_CHARS} characters; it was skipped unread")


def csv_records(path: Path, delimiter: str) -> Iterator[tuple[int, list[str] | RowError]]:
    """Every csv record (the header included) with the number of its last line; blank lines are skipped."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        lines = _BoundedLines(handle)
        reader = csv.reader(lines, delimiter=delimiter)
        done = 0  # overlong lines up to this one are accounted for
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield reader.line_num, RowError(f"unreadable row: {exc}")
                done = len(lines.overlong)
                continue
            if len(lines.overlong) > done:
                first = lines.overlong[done]
                done = len(lines.overlong)
                yield reader.line_num, _too_long(first)
            elif cells:
                yield reader.line_num, cells


def read_header(path: Path, records: Iterator[tuple[int, list[str] | RowError]]) -> list[str]:
    for _, record in records:
        if isinstance(record, RowError):
            raise FeedError(f"catalogue feed {path}: unreadable header line ({record})")
        return record
    raise FeedError(f"catalogue feed {path} is empty: no header line")


# ours


def jsonl_rows(path: Path) -> Rows:
    with path.open(encoding="utf-8-sig") as handle:
        lines = _BoundedLines(handle)
        for text in lines:
            if lines.overlong and lines.overlong[-1] == lines.number:
                yield lines.number, _too_long(lines.number)
            elif text.strip():
                try:
                    yield lines.number, json.loads(text)
                except json.JSONDecodeError as exc:
                    yield lines.number, RowError(f"not valid JSON: {exc.msg} at column {exc.colno}")


def csv_rows(path: Path) -> Rows:
    records = csv_records(path, ",")
    header = read_header(path, records)
    missing = [name for name in REQUIRED_FIELDS if name not in header]
    if missing:
        raise FeedError(f"catalogue feed {path}: CSV header lacks column(s) {', '.join(missing)}")
    for line, record in records:
        if isinstance(record, RowError):
            yield line, record
            continue
        values = dict(zip(header, record, strict=False))
        row: dict[str, Any] = {name: value for name, value in values.items() if value != ""}
        if len(record) > len(header):
            yield line, RowError("more cells than header columns", values.get("id"))
            continue
        if "attributes" in row:
            try:
                row["attributes"] = json.loads(row["attributes"])
            except json.JSONDecodeError:
                yield line, RowError("attributes cell is not a JSON object", row.get("id"))
                continue
        yield line, row


# Google Merchant Center

_AVAILABILITY = {"in stock": True, "out of stock": False, "preorder": False, "backorder": False}
_GENDERS = {"male": "men", "female": "women", "unisex": "unisex"}
_MERCHANT_ATTRIBUTES = {"color": "colour", "size": "size", "age_group": "age_group", "material": "material"}
_MERCHANT_ATTRIBUTES |= {"pattern": "pattern"}
_PRICE = re.compile(r"(?:([A-Za-z]{3})\s*)?([0-9][0-9.,]*)\s*([A-Za-z]{3})?")
_IMAGE_SPLIT = re.compile(r"\s*,\s*(?=https?://)", re.IGNORECASE)  # a comma inside a URL stays


def merchant_tsv_rows(path: Path) -> Rows:
    return _merchant_text_rows(path, "\t")


def merchant_csv_rows(path: Path) -> Rows:
    return _merchant_text_rows(path, ",")


def _merchant_text_rows(path: Path, delimiter: str) -> Rows:
    records = csv_records(path, delimiter)
    names = [attribute_name(cell) for cell in read_header(path, records)]
    if "id" not in names:
        raise FeedError(f"catalogue feed {path}: Merchant Center header lacks the id column")
    for line, record in records:
        if isinstance(record, RowError):
            yield line, record
            continue
        fields: dict[str, list[str]] = {}
        for name, cell in zip(names, record, strict=False):
            if cell.strip():
                fields.setdefault(name, []).append(cell.strip())
        if len(record) > len(names):
            yield line, RowError("more cells than header columns", _first(fields, "id") or None)
        else:
            yield line, merchant_row(fields)


def _first(fields: dict[str, list[str]], name: str) -> str:
    values = fields.get(name)
    return values[0] if values else ""


def merchant_row(fields: dict[str, list[str]]) -> dict[str, Any] | RowError:
    """A Merchant Center product (attribute name -> its values) as a row of ours."""
    item_id = _first(fields, "id")
    try:
        sale = _first(fields, "sale_price")
        price, currency = (
            _merchant_price(sale, "sale_price") if sale else _merchant_price(_first(fields, "price"))
        )
        row: dict[str, Any] = {
            "id": item_id,
            "title": _first(fields, "title"),
            "image": _first(fields, "image_link"),
            "category": category_from_paths(
                [*fields.get("product_type", ()), *fields.get("google_product_category", ())]
            ),
            "brand": _first(fields, "brand"),
            "price": price,
            "currency": currency,
            "url": _first(fields, "link"),
            "group_id": _first(fields, "item_group_id"),
            "extra_images": split_images(fields.get("additional_image_link", ())),
        }
        availability = _first(fields, "availability")
        if availability:
            key = availability.lower().replace("_", " ")
            if key not in _AVAILABILITY:
                raise RowError(
                    f"availability must be one of {', '.join(_AVAILABILITY)}, got {shown(availability)}"
                )
            row["in_stock"] = _AVAILABILITY[key]
    except RowError as exc:
        return RowError(str(exc), item_id or None)
    attributes = {
        ours: _first(fields, name) for name, ours in _MERCHANT_ATTRIBUTES.items() if _first(fields, name)
    }
    gender = _first(fields, "gender")
    if gender:
        attributes["gender"] = _GENDERS.get(gender.lower(), gender)
    row["attributes"] = attributes
    return {name: value for name, value in row.items() if value not in ("", None)}


def _merchant_price(text: str, name: str = "price") -> tuple[str, str]:
    """ "19.99 EUR" (or "EUR 19.99", "19,99 EUR", "1,299.00 USD") -> ("19.99", "EUR"); "" -> ("", "")."""
    if not text:
        return "", ""
    match = _PRICE.fullmatch(text.strip())
    if match is None or (match[1] and match[3]):
        raise RowError(f"{name} must be a number and a currency code such as '19.99 EUR', got {shown(text)}")
    number = match[2]
    if "," in number and ("." in number or re.fullmatch(r"\d{1,3}(,\d{3})+", number)):
        number = number.replace(",", "")  # thousands separators
    else:
        number = number.replace(",", ".")  # a decimal comma
    return number, (match[1] or match[3] or "").upper()


def split_images(values: Iterable[str]) -> list[str]:
    """Image links, repeated or comma separated, at most MAX_EXTRA_IMAGES, each once."""
    links: list[str] = []
    for value in values:
        links.extend(link for link in _IMAGE_SPLIT.split(value.strip()) if link and link not in links)
    return links[:MAX_EXTRA_IMAGES]


def category_from_paths(paths: Iterable[str]) -> str:
    """The category a product-type path names: its last segment ("Apparel & Accessories > Clothing >
    Dresses" -> "dresses"), or the first part of that segment the taxonomy knows ("Shirts & Tops" -> "tops").
    Numeric Google category ids are skipped. The row validator normalises the result through the taxonomy."""
    taxonomy = load_taxonomy()
    for path in paths:
        segment = path.split(">")[-1].strip()
        if not segment or segment.isdigit():
            continue
        for part in (segment, *re.split(r"\s*(?:&|,|/|\band\b)\s*", segment)):
            if part and taxonomy.normalise_category(part) in taxonomy.categories:
                return part.lower()
        return segment.lower()
    return ""
