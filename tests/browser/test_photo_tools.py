"""The photo on the shopper page in headless Chromium: the first garment is selected without a tap, labels
are whole and never on top of each other, a box dragged on the photo (mouse or finger) is searched, and the
page loads without a failed request (the favicon) or a console error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Response, expect  # noqa: E402

from tests.browser.conftest import Shop  # noqa: E402
from tests.browser.pages import upload, wait_for_thumbnails  # noqa: E402

pytestmark = pytest.mark.slow

LABELS = """
    () => {
      const frame = document.querySelector('#frame').getBoundingClientRect();
      return [...document.querySelectorAll('#frame .labels .box-label')].map((label) => {
        const r = label.getBoundingClientRect();
        return {
          text: label.textContent, shown: getComputedStyle(label).visibility === 'visible',
          cut: label.scrollWidth > label.clientWidth + 1,
          x: r.x - frame.x, y: r.y - frame.y, w: r.width, h: r.height, fw: frame.width, fh: frame.height,
        };
      });
    }
"""


def labels(page: Page) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = page.evaluate(LABELS)
    return result


def overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def watch_failures(page: Page) -> list[str]:
    """Console errors and failed requests (a missing favicon is both), as they happen."""
    failures: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            failures.append(f"console: {message.text}")

    def on_response(response: Response) -> None:
        if response.status >= 400:
            failures.append(f"{response.status} {response.url}")

    page.on("console", on_console)
    page.on("response", on_response)
    return failures


def test_first_garment_is_shown_labels_are_whole_and_apart_and_nothing_fails(
    phone: BrowserContext, shop: Shop, screenshots: Path
) -> None:
    page = phone.new_page()
    failures = watch_failures(page)
    page.goto("/")
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert icon and page.request.get(icon).ok  # the browser's favicon request has an answer
    n_boxes = upload(page, shop.scenes[0], min_boxes=2)

    # The first garment is selected and its matches are shown without a tap.
    expect(page.locator("#frame .box").first).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#cards .card").first).to_be_visible()
    expect(page.locator("#results-title")).to_contain_text("Matches for the")
    wait_for_thumbnails(page)

    found = labels(page)
    assert len(found) == n_boxes
    names = [page.locator("#frame .box").nth(i).get_attribute("aria-label") or "" for i in range(n_boxes)]
    assert [f"{label['text']}: show matches" for label in found] == names  # whole names, "top 2"
    shown = [label for label in found if label["shown"]]
    assert shown and found[0]["shown"]  # the selected garment's label always shows
    for label in shown:
        assert not label["cut"], label
        assert 0 <= label["x"] and label["x"] + label["w"] <= label["fw"] + 1, label
        assert 0 <= label["y"] and label["y"] + label["h"] <= label["fh"] + 1, label
    for i, a in enumerate(shown):
        for b in shown[i + 1 :]:
            assert not overlap(a, b), (a, b)
    folded = [i for i, label in enumerate(found) if not label["shown"]]
    if folded:  # a label with no room shows while its box has the focus (or the pointer)
        page.locator("#frame .box").nth(folded[0]).focus()
        assert labels(page)[folded[0]]["shown"]
    page.screenshot(path=screenshots / "shopper-phone-labels.png")
    assert not failures, failures


def drawn_search(page: Page, drag: Any) -> tuple[dict[str, Any], list[float]]:
    """Run `drag()` and answer the search it sent and the region in it."""
    with page.expect_response("**/v1/search") as answered:
        drag()
    assert answered.value.ok, answered.value.text()
    body = (answered.value.request.post_data_buffer or b"").decode("latin-1")
    field = body.split('name="region"', 1)[1].split("\r\n\r\n", 1)[1].split("\r\n", 1)[0]
    result: dict[str, Any] = answered.value.json()
    return result, json.loads(field)


def expected_region(page: Page, start: tuple[float, float], end: tuple[float, float]) -> list[float]:
    """The dragged rectangle (viewport pixels) in pixels of the upload."""
    frame = page.locator("#frame").bounding_box()
    assert frame is not None
    width, height = page.locator("#frame img").evaluate(
        "(image) => [image.naturalWidth, image.naturalHeight]"
    )
    sx, sy = width / frame["width"], height / frame["height"]
    return [
        (start[0] - frame["x"]) * sx,
        (start[1] - frame["y"]) * sy,
        (end[0] - frame["x"]) * sx,
        (end[1] - frame["y"]) * sy,
    ]


def test_a_box_dragged_with_the_mouse_is_searched_and_shows_its_matches(
    desktop: BrowserContext, shop: Shop, screenshots: Path
) -> None:
    page = desktop.new_page()
    failures = watch_failures(page)
    page.goto("/")
    n_boxes = upload(page, shop.scenes[1])
    frame = page.locator("#frame").bounding_box()
    assert frame is not None
    start = (frame["x"] + frame["width"] * 0.3, frame["y"] + frame["height"] * 0.35)
    end = (frame["x"] + frame["width"] * 0.7, frame["y"] + frame["height"] * 0.6)

    def drag() -> None:  # starts over a garment box: a drag draws, only a click selects
        page.mouse.move(*start)
        page.mouse.down()
        page.mouse.move(*end, steps=8)
        page.mouse.up()

    want = expected_region(page, start, end)
    search, region = drawn_search(page, drag)
    assert all(abs(got - wanted) <= 2 for got, wanted in zip(region, want, strict=True)), (region, want)
    (garment,) = search["garments"]
    assert garment["box"] == region and garment["matches"]
    expect(page.locator("#frame .box")).to_have_count(1)
    expect(page.locator("#frame .box")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#cards .card")).to_have_count(len(garment["matches"]))
    expect(page.locator("#status")).to_contain_text("Searched the area you drew")
    wait_for_thumbnails(page)
    page.screenshot(path=screenshots / "shopper-desktop-region.png", full_page=True)

    page.get_by_role("button", name="Show all garments").click()
    expect(page.locator("#frame .box")).to_have_count(n_boxes)
    expect(page.get_by_role("button", name="Show all garments")).to_be_hidden()
    assert not failures, failures


def test_a_box_drawn_with_a_finger_is_searched(phone: BrowserContext, shop: Shop) -> None:
    page = phone.new_page()
    page.goto("/")
    upload(page, shop.scenes[0])
    page.get_by_role("button", name="Draw a box").click()
    expect(page.get_by_role("button", name="Draw a box")).to_have_attribute("aria-pressed", "true")
    page.locator("#frame").scroll_into_view_if_needed()
    frame = page.locator("#frame").bounding_box()
    assert frame is not None
    start = (frame["x"] + frame["width"] * 0.25, frame["y"] + frame["height"] * 0.2)
    end = (frame["x"] + frame["width"] * 0.75, frame["y"] + frame["height"] * 0.5)
    touch = page.context.new_cdp_session(page)

    def swipe() -> None:  # a real touch sequence: with drawing armed it draws, it does not scroll
        touch.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [point(start)]})
        for step in range(1, 9):
            at = tuple(s + (e - s) * step / 8 for s, e in zip(start, end, strict=True))
            touch.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point(at)]})
        touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})

    scrolled = page.evaluate("window.scrollY")
    want = expected_region(page, start, end)
    search, region = drawn_search(page, swipe)
    assert page.evaluate("window.scrollY") == scrolled
    assert all(abs(got - wanted) <= 2 for got, wanted in zip(region, want, strict=True)), (region, want)
    (garment,) = search["garments"]
    assert garment["box"] == region
    expect(page.locator("#frame .box")).to_have_count(1)
    expect(page.locator("#cards .card").first).to_be_visible()
    expect(page.get_by_role("button", name="Draw a box")).to_have_attribute("aria-pressed", "false")


def point(at: tuple[float, ...]) -> dict[str, float]:
    return {"x": at[0], "y": at[1]}
