"""Shop feed formats that need more than one line per item: Merchant Center XML (RSS `<item>` or Atom
`<entry>` with the g: namespace, streamed through defusedxml) and Shopify's product CSV export (the rows of
one Handle make one product; each variant is an item of its group). Same contract as
`indexer.feed_formats`: (line number, row in our row format) or a RowError."""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError

import defusedxml
from defusedxml.ElementTree import DefusedXMLParser

from indexer.feed_formats import (
    CHUNK_BYTES,
    GOOGLE_NS,
    MAX_ELEMENT_CHARS,
    MAX_EXTRA_IMAGES,
    MAX_PRODUCT_ROWS,
    FeedError,
    RowError,
    Rows,
    attribute_name,
    category_from_paths,
    csv_records,
    merchant_row,
    read_header,
)
from models.errors import shown


def merchant_xml_rows(path: Path) -> Rows:
    """Items (RSS `<item>` or Atom `<entry>`) of a Merchant Center XML feed, streamed through defusedxml."""
    collector = _ItemCollector()
    parser = DefusedXMLParser(target=collector)
    collector.locate = lambda: int(parser.parser.CurrentLineNumber)
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as handle:
        try:
            while chunk := handle.read(CHUNK_BYTES):
                decoder.decode(chunk)  # UnicodeDecodeError: read_feed says "not UTF-8"
                parser.feed(chunk)
                yield from collector.take()
            decoder.decode(b"", final=True)
            parser.close()
        except defusedxml.EntitiesForbidden as exc:
            raise FeedError(
                f"catalogue feed {path} is refused: it declares the XML entity {exc.name!r}; entity "
                "declarations are not accepted (they allow billion-laughs and external-entity attacks)"
            ) from None
        except defusedxml.DefusedXmlException as exc:
            raise FeedError(
                f"catalogue feed {path} is refused: {exc} (external references are not followed)"
            ) from None
        except ParseError as exc:
            raise FeedError(f"catalogue feed {path} is not well-formed XML: {exc}") from None
    yield from collector.take()
    if not collector.items and not collector.google:
        raise FeedError(f"catalogue feed {path} is XML but not a Merchant Center feed: no <item> or <entry>")


class _ItemCollector:
    """An XML parser target that keeps only the direct children of each `<item>`/`<entry>` (g: ones first)
    and the line each item starts on; no tree is built."""

    def __init__(self) -> None:
        self.locate: Callable[[], int] = lambda: 0
        self.items = 0
        self.google = False  # an element of the Merchant Center namespace was seen
        self._ready: list[tuple[int, dict[str, Any] | RowError]] = []
        self._depth = 0
        self._item_depth = 0  # 0: outside any item
        self._line = 0
        self._fields: dict[str, list[str]] = {}
        self._plain: dict[str, list[str]] = {}
        self._field: tuple[bool, str] | None = None
        self._text: list[str] = []
        self._size = 0
        self._error: RowError | None = None

    def take(self) -> list[tuple[int, dict[str, Any] | RowError]]:
        ready, self._ready = self._ready, []
        return ready

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self._depth += 1
        google, name = _split_tag(tag)
        self.google = self.google or google
        if not self._item_depth:
            if name in ("item", "entry"):
                self._item_depth, self._line, self._error = self._depth, self.locate(), None
                self._fields, self._plain = {}, {}
        elif self._depth == self._item_depth + 1:
            self._field, self._size = (google, name), 0
            self._text = [attrib["href"]] if name == "link" and "href" in attrib else []  # Atom <link href>

    def data(self, text: str) -> None:
        if self._field is not None and self._depth == self._item_depth + 1:
            self._size += len(text)
            if self._size > MAX_ELEMENT_CHARS:
                self._error = RowError(f"<{self._field[1]}> is longer than {MAX_ELEMENT_CHARS} characters")
            else:
                self._text.append(text)

    def end(self, tag: str) -> None:
        if self._item_depth and self._depth == self._item_depth + 1 and self._field is not None:
            google, name = self._field
            value = "".join(self._text).strip()
            if value:
                (self._fields if google else self._plain).setdefault(name, []).append(value)
            self._field = None
        elif self._item_depth and self._depth == self._item_depth:
            row = merchant_row({**self._plain, **self._fields})
            if self._error is not None:
                item_id = row.get("id") if isinstance(row, dict) else row.item_id
                row = RowError(str(self._error), item_id)
            self._ready.append((self._line, row))
            self.items += 1
            self._item_depth = 0
        self._depth -= 1

    def close(self) -> None:
        return None


def _split_tag(tag: str) -> tuple[bool, str]:
    namespace, _, name = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    return namespace == GOOGLE_NS, name


# Shopify

_SHOPIFY_OPTIONS = {"color": "colour", "colour": "colour", "size": "size", "material": "material"}


def shopify_csv_rows(path: Path) -> Rows:
    """Variants of a Shopify product export. The rows of one product (one Handle, consecutive) are read
    together: the first carries the product (Title, Vendor, Type, option names), later ones variants or
    images only."""
    records = csv_records(path, ",")
    names = [attribute_name(cell) for cell in read_header(path, records)]
    if "handle" not in names:
        raise FeedError(f"catalogue feed {path}: Shopify header lacks the Handle column")
    product: list[tuple[int, dict[str, str] | RowError]] = []
    first: dict[str, str] = {}
    for line, record in records:
        if isinstance(record, RowError):
            product.append((line, record))
            continue
        cells = {name: cell.strip() for name, cell in zip(names, record, strict=False) if cell.strip()}
        if len(record) > len(names):
            product.append((line, RowError("more cells than header columns", cells.get("variant_sku"))))
            continue
        if not cells.get("handle"):
            product.append((line, RowError("Handle is empty", cells.get("variant_sku"))))
            continue
        if cells["handle"] != first.get("handle") or len(product) >= MAX_PRODUCT_ROWS:
            yield from _shopify_variants(product, first)
            product = []
            if cells["handle"] != first.get("handle"):
                first = cells
        product.append((line, cells))
    yield from _shopify_variants(product, first)


def _shopify_variants(
    product: list[tuple[int, dict[str, str] | RowError]], first: dict[str, str]
) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    images = _shopify_images([cells for _, cells in product if isinstance(cells, dict)])
    index = 0
    for line, cells in product:
        if isinstance(cells, RowError):
            yield line, cells
        elif any(cells.get(name) for name in ("variant_sku", "variant_price", "option1_value")):
            index += 1
            yield line, _shopify_row(cells, first, images, index)


def _shopify_images(rows: list[dict[str, str]]) -> list[str]:
    def position(cells: dict[str, str]) -> int:
        text = cells.get("image_position", "")
        return int(text) if text.isdigit() else 1 << 30

    ordered = sorted((cells for cells in rows if cells.get("image_src")), key=position)  # stable
    return list(dict.fromkeys(cells["image_src"] for cells in ordered))


def _shopify_row(
    cells: dict[str, str], first: dict[str, str], images: list[str], index: int
) -> dict[str, Any] | RowError:
    def product(name: str) -> str:
        return cells.get(name) or first.get(name, "")

    item_id = cells.get("variant_sku") or f"{cells['handle']}-{index}"
    image = cells.get("variant_image") or (images[0] if images else "")
    attributes = {}
    for number in (1, 2, 3):
        group = _SHOPIFY_OPTIONS.get(product(f"option{number}_name").lower())
        value = cells.get(f"option{number}_value", "")
        if group and value:
            attributes[group] = value
    row: dict[str, Any] = {
        "id": item_id,
        "title": product("title"),
        "image": image,
        "category": category_from_paths([product("type"), product("product_category")]),
        "brand": product("vendor"),
        "price": cells.get("variant_price", ""),
        "group_id": cells["handle"],
        "extra_images": [link for link in images if link != image][:MAX_EXTRA_IMAGES],
        "attributes": attributes,
    }
    quantity = cells.get("variant_inventory_qty", "")
    if cells.get("variant_inventory_policy", "").lower() != "continue" and quantity:
        try:
            row["in_stock"] = int(quantity) > 0
        except ValueError:
            return RowError(f"Variant Inventory Qty must be a whole number, got {shown(quantity)}", item_id)
    return {name: value for name, value in row.items() if value not in ("", None)}
