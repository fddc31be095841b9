"""Shop feeds as they come: Merchant Center TSV / CSV / XML, Shopify's product export, and ours; auto
detection, an explicit format, mapping to our rows, bad rows with line numbers, and hostile files refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.feed import FEED_FORMATS, IMAGE_NOT_DOWNLOADED, READERS, FeedError, read_feed
from indexer.feed_formats import MAX_LINE_CHARS, category_from_paths, detect_format
from tests.helpers import write_catalog

CDN = "https://cdn.shop.example/img"

MERCHANT_HEADER = [
    "id", "title", "description", "link", "image_link", "additional_image_link", "availability", "price",
    "sale_price", "brand", "gender", "color", "size", "age_group", "material", "pattern", "item_group_id",
    "product_type", "google_product_category",
]  # fmt: skip
MERCHANT_ROWS = [
    [
        "DR-100-RED-M", "Linen midi dress", "A breezy dress", "https://shop.example/p/dr-100?v=red-m",
        f"{CDN}/dr-100-red.jpg", f"{CDN}/dr-100-back.jpg,{CDN}/w_500,h_500/dr-100-side.jpg", "in stock",
        "89.00 EUR", "59.90 EUR", "Maison Lin", "female", "Red", "M", "adult", "Linen", "Solid", "DR-100",
        "Apparel & Accessories > Clothing > Dresses", "2271",
    ],
    [
        "TS-7", "Logo tee", "", "https://shop.example/p/ts-7", f"{CDN}/ts-7.jpg", "", "out_of_stock",
        "19.99 EUR", "", "Maison Lin", "unisex", "White", "L", "", "", "", "", "Women > Shirts & Tops", "",
    ],
    [
        "BAD-1", "Broken price", "", "https://shop.example/p/bad", f"{CDN}/bad.jpg", "", "in stock",
        "cheap", "", "", "", "", "", "", "", "", "", "Dresses", "",
    ],
]  # fmt: skip


def write_merchant_tsv(path: Path, rows: list[list[str]] = MERCHANT_ROWS, bom: bool = False) -> Path:
    text = "\n".join("\t".join(cells) for cells in [MERCHANT_HEADER, *rows]) + "\n"
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")
    return path


MERCHANT_XML = f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0">
  <channel>
    <title>Maison Lin</title>
    <link>https://shop.example</link>
    <description>All products</description>
    <item>
      <g:id>SK-9</g:id>
      <title>Pleated &amp; printed skirt</title>
      <link>https://shop.example/p/sk-9</link>
      <g:image_link>{CDN}/sk-9.jpg</g:image_link>
      <g:additional_image_link>{CDN}/sk-9-a.jpg</g:additional_image_link>
      <g:additional_image_link>{CDN}/sk-9-b.jpg</g:additional_image_link>
      <g:availability>preorder</g:availability>
      <g:price>45.00 USD</g:price>
      <g:brand>Maison Lin</g:brand>
      <g:color>Navy</g:color>
      <g:size>S</g:size>
      <g:gender>female</g:gender>
      <g:item_group_id>SK</g:item_group_id>
      <g:google_product_category>Apparel &amp; Accessories &gt; Clothing &gt; Skirts
      </g:google_product_category>
      <g:shipping><g:country>US</g:country><g:price>4.95 USD</g:price></g:shipping>
    </item>
    <item>
      <g:id>NO-IMAGE</g:id>
      <g:title>Scarf</g:title>
      <g:price>10 USD</g:price>
      <g:product_type>Accessories &gt; Scarves</g:product_type>
    </item>
  </channel>
</rss>
"""

SHOPIFY_HEADER = (
    "Handle,Title,Body (HTML),Vendor,Product Category,Type,Tags,Published,Option1 Name,Option1 Value,"
    "Option2 Name,Option2 Value,Variant SKU,Variant Inventory Tracker,Variant Inventory Qty,"
    "Variant Inventory Policy,Variant Price,Variant Compare At Price,Image Src,Image Position,Variant Image,"
    "Status"
)
SHOPIFY_ROWS = [
    "wool-coat,Wool coat,<p>Warm</p>,North Co,Apparel & Accessories > Clothing > Outerwear > Coats & Jackets,"
    f"Coats,winter,TRUE,Color,Camel,Size,M,WC-CAM-M,shopify,3,deny,199.00,249.00,{CDN}/wc-1.jpg,1,,active",
    f",,,,,,,,,Black,,L,WC-BLK-L,shopify,0,deny,189.00,,{CDN}/wc-2.jpg,2,{CDN}/wc-black.jpg,",
    f",,,,,,,,,,,,,,,,,,{CDN}/wc-3.jpg,3,,",
    "silk-scarf,Silk scarf,,North Co,,Scarf,,TRUE,Title,Default Title,,,,shopify,0,continue,35,,"
    f"{CDN}/ss.jpg,1,,active",
    "silk-scarf,,,,,,,,,,,,,shopify,lots,deny,35,,,,,",
]


def write_shopify(path: Path) -> Path:
    # Shopify repeats the Handle on every row of a product; the test rows above leave it out to stay short.
    lines = [SHOPIFY_HEADER]
    for row in SHOPIFY_ROWS:
        lines.append(row if not row.startswith(",") else "wool-coat" + row)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_merchant_tsv_rows_map_to_our_fields(tmp_path: Path) -> None:
    feed = read_feed(write_merchant_tsv(tmp_path / "products.txt"))
    assert feed.feed_format == "merchant-tsv"
    assert [item.item_id for item in feed.items] == ["DR-100-RED-M", "TS-7"]
    dress, tee = feed.items
    assert dress.title == "Linen midi dress" and dress.url == "https://shop.example/p/dr-100?v=red-m"
    assert dress.price == 59.9 and dress.currency == "EUR"  # the sale price wins
    assert dress.in_stock is True and tee.in_stock is False
    assert dress.image == IMAGE_NOT_DOWNLOADED and dress.image_url == f"{CDN}/dr-100-red.jpg"
    assert dress.extra_images == (f"{CDN}/dr-100-back.jpg", f"{CDN}/w_500,h_500/dr-100-side.jpg")
    assert dress.group_id == "DR-100" and tee.group_id == ""
    assert dress.category == "dress" and tee.category == "top"  # last segment, through the taxonomy
    assert dress.brand == "Maison Lin" and dress.line == 2 and tee.line == 3
    assert dress.attributes == {
        "colour": "red", "size": "m", "gender": "women", "age_group": "adult", "material": "linen",
        "pattern": "solid",
    }  # fmt: skip
    assert tee.attributes["gender"] == "unisex" and tee.price == 19.99
    assert [(row.line, row.item_id) for row in feed.bad_rows] == [(4, "BAD-1")]
    assert "price must be a number and a currency code" in feed.bad_rows[0].reason


def test_merchant_csv_and_bom_are_accepted(tmp_path: Path) -> None:
    import csv

    path = tmp_path / "products.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows([MERCHANT_HEADER, *MERCHANT_ROWS])
    feed = read_feed(path)
    assert feed.feed_format == "merchant-csv"
    assert [item.item_id for item in feed.items] == ["DR-100-RED-M", "TS-7"]
    assert feed.items[0].extra_images[1] == f"{CDN}/w_500,h_500/dr-100-side.jpg"
    assert len(read_feed(write_merchant_tsv(tmp_path / "bom.tsv", bom=True)).items) == 2


def test_merchant_xml_items_with_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_text(MERCHANT_XML, encoding="utf-8")
    feed = read_feed(path)
    assert feed.feed_format == "merchant-xml"
    [skirt] = feed.items
    assert skirt.item_id == "SK-9" and skirt.title == "Pleated & printed skirt" and skirt.line == 7
    assert skirt.url == "https://shop.example/p/sk-9" and skirt.image_url == f"{CDN}/sk-9.jpg"
    assert skirt.extra_images == (f"{CDN}/sk-9-a.jpg", f"{CDN}/sk-9-b.jpg")
    assert skirt.price == 45.0 and skirt.currency == "USD"  # not the nested shipping price
    assert skirt.in_stock is False and skirt.group_id == "SK" and skirt.category == "skirt"
    assert skirt.attributes == {"colour": "navy", "size": "s", "gender": "women"}
    [bad] = feed.bad_rows
    assert (bad.line, bad.item_id) == (25, "NO-IMAGE") and "missing required field(s): image" in bad.reason


def test_merchant_atom_entries(tmp_path: Path) -> None:
    path = tmp_path / "feed.atom"
    path.write_text(
        '<?xml version="1.0"?>\n<feed xmlns="http://www.w3.org/2005/Atom" xmlns:g="http://base.google.com/ns/1.0">'
        "\n<entry><id>tag:shop,2024:1</id><g:id>B-1</g:id><title>Leather tote</title>"
        f'<link href="https://shop.example/p/b-1"/><g:image_link>{CDN}/b-1.jpg</g:image_link>'
        "<g:price>120.00 GBP</g:price>"
        "<g:product_type>Bags &gt; Handbags, Wallets &amp; Cases</g:product_type>"
        "<g:availability>in_stock</g:availability></entry>\n</feed>\n",
        encoding="utf-8",
    )
    [item] = read_feed(path).items
    assert item.item_id == "B-1" and item.url == "https://shop.example/p/b-1" and item.line == 3
    assert item.category == "bag" and item.currency == "GBP" and item.in_stock is True


def test_shopify_variants_share_their_product(tmp_path: Path) -> None:
    feed = read_feed(write_shopify(tmp_path / "products_export.csv"))
    assert feed.feed_format == "shopify-csv"
    camel, black, scarf = feed.items
    assert [camel.item_id, black.item_id, scarf.item_id] == ["WC-CAM-M", "WC-BLK-L", "silk-scarf-1"]
    assert camel.title == black.title == "Wool coat" and camel.brand == black.brand == "North Co"
    assert camel.group_id == black.group_id == "wool-coat" and scarf.group_id == "silk-scarf"
    assert camel.category == black.category == "outerwear" and scarf.category == "scarf"
    assert camel.attributes == {"colour": "camel", "size": "m"}
    assert black.attributes == {"colour": "black", "size": "l"}
    assert scarf.attributes == {}  # "Title / Default Title" is no attribute
    assert camel.image_url == f"{CDN}/wc-1.jpg" and black.image_url == f"{CDN}/wc-black.jpg"
    assert camel.extra_images == (f"{CDN}/wc-2.jpg", f"{CDN}/wc-3.jpg")
    assert black.extra_images == (f"{CDN}/wc-1.jpg", f"{CDN}/wc-2.jpg", f"{CDN}/wc-3.jpg")
    assert camel.price == 199.0 and camel.currency == "" and black.price == 189.0
    assert camel.in_stock is True and black.in_stock is False
    assert scarf.in_stock is True  # quantity 0, but the policy is to keep selling
    assert [item.line for item in feed.items] == [2, 3, 5]
    [bad] = feed.bad_rows
    assert (bad.line, bad.item_id) == (6, "silk-scarf-2")
    assert "Inventory Qty must be a whole number" in bad.reason


def test_our_jsonl_and_csv_read_as_before(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, 3)
    feed = read_feed(path)
    assert feed.feed_format == "jsonl" and len(feed.items) == 3 and feed.bad_rows == []
    first = feed.items[0]
    assert first.image == tmp_path / "images" / "item-0000.jpg" and first.image_url == ""
    assert first.extra_images == () and first.group_id == ""
    (tmp_path / "feed.csv").write_text("id,image,title,category\na,images/item-0000.jpg,Top,top\n")
    assert read_feed(tmp_path / "feed.csv").feed_format == "csv"


def test_our_rows_may_name_urls_groups_and_extra_images(tmp_path: Path) -> None:
    write_catalog(tmp_path, 1)
    row = {
        "id": "u1", "image": "HTTPS://img.example//a/b.jpg", "title": "t", "category": "dress",
        "group_id": "g1", "extra_images": ["images/item-0000.jpg", f"{CDN}/x.jpg"],
    }  # fmt: skip
    (tmp_path / "feed.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    [item] = read_feed(tmp_path / "feed.jsonl").items
    assert item.image_url == "HTTPS://img.example//a/b.jpg" and item.image == IMAGE_NOT_DOWNLOADED
    assert item.extra_images == (str(tmp_path / "images" / "item-0000.jpg"), f"{CDN}/x.jpg")
    assert item.group_id == "g1"
    row["image"] = "https:///no-host.jpg"
    (tmp_path / "feed.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    assert "does not exist" in read_feed(tmp_path / "feed.jsonl").bad_rows[0].reason


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("products.txt", "merchant-tsv"),
        ("products.tsv", "merchant-tsv"),
        ("feed.xml", "merchant-xml"),
        ("products_export.csv", "shopify-csv"),
        ("catalog.jsonl", "jsonl"),
    ],
)
def test_auto_detection(tmp_path: Path, name: str, expected: str) -> None:
    path = tmp_path / name
    if expected == "merchant-tsv":
        write_merchant_tsv(path)
    elif expected == "merchant-xml":
        path.write_text(MERCHANT_XML, encoding="utf-8")
    elif expected == "shopify-csv":
        write_shopify(path)
    else:
        path = write_catalog(tmp_path, 1)
    assert detect_format(path) == expected and read_feed(path).feed_format == expected


def test_an_explicit_format_overrides_the_suffix(tmp_path: Path) -> None:
    path = write_merchant_tsv(tmp_path / "export.dat")
    with pytest.raises(FeedError, match="cannot tell its format"):
        read_feed(path)
    feed = read_feed(path, "merchant-tsv")
    assert feed.feed_format == "merchant-tsv" and len(feed.items) == 2
    xml = tmp_path / "feed.rss.txt"
    xml.write_text(MERCHANT_XML, encoding="utf-8")
    assert [item.item_id for item in read_feed(xml, feed_format="merchant-xml").items] == ["SK-9"]
    with pytest.raises(FeedError, match="header lacks the Handle column"):
        read_feed(path, "shopify-csv")


def test_unknown_format_is_refused_naming_the_accepted_ones(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, 1)
    with pytest.raises(FeedError, match="unknown feed format 'amazon'.*auto, jsonl, csv, merchant-tsv"):
        read_feed(path, "amazon")
    assert set(FEED_FORMATS) == {"auto", *READERS}


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<rss xmlns:g="http://base.google.com/ns/1.0"><channel><item><g:id>&lol3;</g:id></item></channel></rss>
"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<rss xmlns:g="http://base.google.com/ns/1.0"><channel><item><g:id>&secret;</g:id></item></channel></rss>
"""


@pytest.mark.parametrize(("content", "name"), [(BILLION_LAUGHS, "'lol'"), (EXTERNAL_ENTITY, "'secret'")])
def test_xml_entities_are_refused(tmp_path: Path, content: str, name: str) -> None:
    path = tmp_path / "feed.xml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(FeedError, match=f"refused: it declares the XML entity {name}"):
        read_feed(path)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"<rss><channel><item><id>1</id></item></channel></rss>", "without the Merchant Center namespace"),
        (MERCHANT_XML.encode()[:400], "not well-formed XML"),
        (MERCHANT_XML.replace("Maison Lin", "Maison L\u00efn").encode("latin-1"), "not UTF-8"),
    ],
)
def test_unreadable_xml_fails_the_feed(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "feed.xml"
    path.write_bytes(content)
    with pytest.raises(FeedError, match=fragment):
        read_feed(path)


@pytest.mark.parametrize("name", ["products.txt", "products_export.csv", "catalog.jsonl"])
def test_text_feeds_that_are_not_utf8_fail_the_feed(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".txt"):
        path.write_bytes(write_merchant_tsv(path).read_text().replace("Linen", "L\u00efnen").encode("cp1252"))
    elif name.endswith(".csv"):
        path.write_bytes(write_shopify(path).read_text().replace("Wool", "W\u00f6ol").encode("latin-1"))
    else:
        path.write_bytes(b'{"id": "a", "title": "Caf\xe9"}\n')
    with pytest.raises(FeedError, match="not UTF-8"):
        read_feed(path)
    path.write_bytes("id\ttitle\n".encode("utf-16"))
    with pytest.raises(FeedError, match="not UTF-8"):
        read_feed(path)


def test_overlong_lines_and_cells_are_bad_rows(tmp_path: Path) -> None:
    long_line = ["HUGE", "x" * (MAX_LINE_CHARS + 10), *MERCHANT_ROWS[1][2:]]
    big_cell = ["BIG", '"' + "y" * 200_000 + '"', *MERCHANT_ROWS[1][2:]]  # over csv's field limit
    rows = [MERCHANT_ROWS[0], long_line, big_cell, MERCHANT_ROWS[1]]
    feed = read_feed(write_merchant_tsv(tmp_path / "p.tsv", rows))
    assert [item.item_id for item in feed.items] == ["DR-100-RED-M", "TS-7"]
    assert [item.line for item in feed.items] == [2, 5]
    reasons = {row.line: row.reason for row in feed.bad_rows}
    assert sorted(reasons) == [3, 4]
    assert "line 3 is longer than" in reasons[3] and "field larger than field limit" in reasons[4]
    jsonl = tmp_path / "big.jsonl"
    jsonl.write_text('{"id": "' + "z" * (MAX_LINE_CHARS + 1) + '"}\n{"broken\n', encoding="utf-8")
    assert [(row.line, row.reason[:16]) for row in read_feed(jsonl).bad_rows] == [
        (1, "line 1 is longer"),
        (2, "not valid JSON: "),
    ]


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        ("19.99 EUR", (19.99, "EUR")),
        ("EUR 19.99", (19.99, "EUR")),
        ("19,99 eur", (19.99, "EUR")),
        ("1,299.00 USD", (1299.0, "USD")),
        ("1,299 USD", (1299.0, "USD")),
        ("12", (12.0, "")),
    ],
)
def test_merchant_prices(tmp_path: Path, price: str, expected: tuple[float, str]) -> None:
    row = [*MERCHANT_ROWS[1][:7], price, *MERCHANT_ROWS[1][8:]]
    [item] = read_feed(write_merchant_tsv(tmp_path / "p.tsv", [row])).items
    assert (item.price, item.currency) == expected


@pytest.mark.parametrize(("availability", "reason"), [("sold out", "availability must be one of in stock")])
def test_unknown_availability_is_a_bad_row(tmp_path: Path, availability: str, reason: str) -> None:
    row = [*MERCHANT_ROWS[1][:6], availability, *MERCHANT_ROWS[1][7:]]
    feed = read_feed(write_merchant_tsv(tmp_path / "p.tsv", [row]))
    assert feed.items == [] and reason in feed.bad_rows[0].reason and feed.bad_rows[0].item_id == "TS-7"


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["Apparel & Accessories > Clothing > Dresses"], "dresses"),
        (["Women > Shirts & Tops"], "shirts"),
        (["Women > New In & Tops"], "tops"),
        (["2271", "Clothing > Swimwear"], "swimwear"),
        (["", "Bags"], "bags"),
        ([], ""),
    ],
)
def test_category_is_the_last_segment(paths: list[str], expected: str) -> None:
    assert category_from_paths(paths) == expected
