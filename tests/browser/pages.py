"""Steps the browser tests share: upload a photo, wait for boxes and cards, poll the shopper signals."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

LOADED_THUMBNAILS = """
    () => {
      const images = [...document.querySelectorAll('#cards .card img')];
      return images.length > 0 && images.every((image) => image.complete && image.naturalWidth > 0);
    }
"""


def upload(page: Page, photo: Path, min_boxes: int = 1) -> int:
    """Choose a photo on the shopper page; answer how many garment boxes appeared."""
    page.set_input_files("#photo-file", str(photo))
    boxes = page.locator("#frame .box")
    expect(boxes.nth(min_boxes - 1)).to_be_visible()
    return boxes.count()


def choose_garment(page: Page) -> int:
    """Tap the first garment that has matches; answer its index."""
    boxes = page.locator("#frame .box")
    for index in range(boxes.count()):
        boxes.nth(index).click()
        expect(page.locator("#results")).to_be_visible()
        if page.locator("#cards .card").count():
            return index
    pytest.fail("no garment in the photo has matches")


def wait_for_thumbnails(page: Page) -> None:
    page.wait_for_function(LOADED_THUMBNAILS)


def box_inside_photo(page: Page, frame: str = "#frame") -> None:
    """Every box lies within the displayed photo (boxes scale with it)."""
    photo = page.locator(f"{frame} img").bounding_box()
    assert photo is not None and photo["width"] > 0
    for box in page.locator(f"{frame} .box").all():
        rect = box.bounding_box()
        assert rect is not None
        assert rect["x"] >= photo["x"] - 1 and rect["y"] >= photo["y"] - 1
        assert rect["x"] + rect["width"] <= photo["x"] + photo["width"] + 1
        assert rect["y"] + rect["height"] <= photo["y"] + photo["height"] + 1


def poll(read: Callable[[], Any], accept: Callable[[Any], bool], what: str, timeout_s: float = 10) -> Any:
    """Read until `accept` holds (events are posted asynchronously by the page)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; last value {value!r}")
        time.sleep(0.1)
