"""Steps the browser tests share: upload a photo, wait for boxes and cards, poll the shopper signals, take
the style quiz."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

QUIZ_QUESTIONS = 7  # GET /v1/quiz
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


def take_quiz(page: Page, answers: dict[str, Any]) -> Locator:
    """Open "Your style" (no answers saved yet) and answer the quiz up to its review: question id -> the
    choices to tick (a list), the text to type (a str) or the price range (a (min, max) tuple); every other
    question is skipped. Answers the dialog."""
    page.get_by_role("button", name="Your style").click()
    quiz = page.get_by_role("dialog", name="Your style")
    expect(quiz).to_be_visible()
    for number in range(1, QUIZ_QUESTIONS + 1):
        expect(quiz.locator("#quiz-progress")).to_have_text(f"Question {number} of {QUIZ_QUESTIONS}")
        given = answers.get(quiz.locator(".quiz-step").get_attribute("data-question") or "")
        if given is None:
            quiz.get_by_role("button", name="Skip").click()
            continue
        if isinstance(given, tuple):
            quiz.get_by_label("From").fill(str(given[0]))
            quiz.get_by_label("To", exact=True).fill(str(given[1]))
        elif isinstance(given, str):
            quiz.locator("#quiz-text").fill(given)
        else:
            for choice in given:
                quiz.get_by_label(choice, exact=True).check()
        quiz.locator("#quiz-next").click()
    expect(quiz.locator("#quiz-progress")).to_have_text("Check and save")
    return quiz


def local_storage(page: Page) -> dict[str, str]:
    """The page's localStorage, key -> value."""
    stored: dict[str, str] = page.evaluate("() => Object.fromEntries(Object.entries(localStorage))")
    return stored
