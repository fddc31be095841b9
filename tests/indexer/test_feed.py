from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.feed import FeedError, read_feed
from tests.helpers import write_catalog


def test_valid_feed_parses_every_field(tmp_path: Path) -> None:
    feed = read_feed(write_catalog(tmp_path, 6))
    assert len(feed.items) == 6 and feed.bad_rows == []
    first = feed.items[0]
    assert first.item_id == "item-0000" and first.image == tmp_path / "images" / "item-0000.jpg"
    assert first.category == "top" and first.price == 10.0 and first.currency == "EUR"
    assert first.in_stock is False and first.attributes == {"colour": "red", "pattern": "striped"}
    assert len(feed.sha256) == 64


def test_bad_rows_are_reported_with_line_numbers_and_skipped(tmp_path: Path) -> None:
    good = {"image": "images/item-0000.jpg", "title": "t", "category": "top"}
    extra = [
        json.dumps({**good, "id": "item-0001"}),  # line 4: duplicate id
        json.dumps({**good, "id": "x1", "image": "images/missing.jpg"}),  # 5
        json.dumps({**good, "id": "x2", "price": "cheap"}),  # 6
        json.dumps({**good, "id": "x3", "in_stock": "maybe"}),  # 7
        json.dumps({**good, "id": "x4", "attributes": ["red"]}),  # 8
        json.dumps({**good, "id": "x5", "title": 42}),  # 9
        json.dumps({"id": "x6", "title": "t"}),  # 10: missing image and category
        "{broken json",  # 11
        "[1, 2]",  # 12
        json.dumps({**good, "id": "x7", "price": -3}),  # 13
        "",  # blank lines are ignored
        json.dumps({**good, "id": "ok-1", "price": "19.90", "in_stock": "yes"}),  # 15
    ]
    feed = read_feed(write_catalog(tmp_path, 3, extra))
    reasons = {row.line: row.reason for row in feed.bad_rows}
    assert sorted(reasons) == [4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    assert "duplicate id, first seen on line 2" in reasons[4]
    assert "missing.jpg does not exist" in reasons[5]
    assert "price must be a number" in reasons[6]
    assert "in_stock must be true or false" in reasons[7]
    assert "attributes must be an object" in reasons[8]
    assert "title must be text" in reasons[9]
    assert "missing required field(s): image, category" in reasons[10]
    assert "not valid JSON" in reasons[11]
    assert "must be a JSON object" in reasons[12]
    assert ">= 0" in reasons[13]
    assert [item.item_id for item in feed.items] == ["item-0000", "item-0001", "item-0002", "ok-1"]
    assert feed.items[-1].price == 19.9 and feed.items[-1].in_stock is True


def test_csv_feed(tmp_path: Path) -> None:
    write_catalog(tmp_path, 2)
    (tmp_path / "feed.csv").write_text(
        "id,image,title,category,brand,price,currency,in_stock,url,attributes\n"
        'a,images/item-0000.jpg,Red top,Top,B,12.5,eur,true,https://x/a,"{""colour"": ""Red""}"\n'
        "b,images/item-0001.jpg,Blue skirt,skirt,B,oops,EUR,false,https://x/b,\n"
        "c,images/item-0001.jpg,Extra,skirt,B,1,EUR,false,https://x/c,,surplus\n",
        encoding="utf-8",
    )
    feed = read_feed(tmp_path / "feed.csv")
    assert [item.item_id for item in feed.items] == ["a"]
    assert feed.items[0].category == "top" and feed.items[0].currency == "EUR"
    assert feed.items[0].attributes == {"colour": "red"}
    assert [(row.line, row.item_id) for row in feed.bad_rows] == [(3, "b"), (4, "c")]


def test_csv_without_required_columns_fails_whole_feed(tmp_path: Path) -> None:
    (tmp_path / "feed.csv").write_text("id,title\n1,x\n", encoding="utf-8")
    with pytest.raises(FeedError, match="lacks column.*image, category"):
        read_feed(tmp_path / "feed.csv")


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [("feed.xml", b"<x/>", "must end in .jsonl"), ("feed.jsonl", b"\xff\xfe\x00bad", "not UTF-8")],
)
def test_unreadable_feeds_fail_clearly(tmp_path: Path, name: str, content: bytes, fragment: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(FeedError, match=fragment):
        read_feed(tmp_path / name)


def test_missing_feed_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match="does not exist"):
        read_feed(tmp_path / "nope.jsonl")


def test_absolute_image_paths_are_kept(tmp_path: Path) -> None:
    write_catalog(tmp_path, 1)
    image = (tmp_path / "images" / "item-0000.jpg").resolve()
    feed_path = tmp_path / "sub" / "feed.jsonl"
    feed_path.parent.mkdir()
    feed_path.write_text(json.dumps({"id": "a", "image": str(image), "title": "t", "category": "c"}) + "\n")
    assert read_feed(feed_path).items[0].image == image


def test_categories_are_normalised_through_the_taxonomy(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    rows = [
        {"id": "1", "image": "a.jpg", "title": "t", "category": "T-Shirt"},
        {"id": "2", "image": "a.jpg", "title": "t", "category": "Jeans"},
        {"id": "3", "image": "a.jpg", "title": "t", "category": "Swim_Wear"},
    ]
    feed = tmp_path / "feed.jsonl"
    feed.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert [item.category for item in read_feed(feed).items] == ["top", "trousers", "swim wear"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("image", "images/item-0000\x00.jpg"), ("id", "item\n0000"), ("title", "Nice\x00top")],
)
def test_control_characters_in_names_are_bad_rows(tmp_path: Path, field: str, value: str) -> None:
    feed = write_catalog(tmp_path, 1)
    row = json.loads(feed.read_text().splitlines()[0])
    feed.write_text(json.dumps({**row, field: value}) + "\n", encoding="utf-8")
    result = read_feed(feed)
    assert result.items == [] and "control character" in result.bad_rows[0].reason
