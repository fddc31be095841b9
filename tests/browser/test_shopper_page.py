"""The shopper page in headless Chromium: a street photo on a phone, garment boxes, matches, filters,
shopper signals, readable upload errors and keyboard use."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
from playwright.sync_api import BrowserContext, Route, expect  # noqa: E402

from tests.browser.conftest import MAX_UPLOAD_BYTES, Shop  # noqa: E402
from tests.browser.pages import box_inside_photo, choose_garment, poll, upload, wait_for_thumbnails  # noqa: E402

pytestmark = pytest.mark.slow


def test_a_phone_shopper_sees_garments_matches_and_signals_are_counted(
    phone: BrowserContext, shop: Shop, screenshots: Path
) -> None:
    page = phone.new_page()
    page.goto("/")
    expect(page.get_by_label("Take a photo")).to_have_attribute("capture", "environment")
    assert upload(page, shop.scenes[0], min_boxes=2) >= 2
    labels = page.locator("#frame .labels .box-label").all_text_contents()
    assert all(label.strip() for label in labels), labels
    box_inside_photo(page)
    expect(page.locator("#status")).to_contain_text("Found")
    page.screenshot(path=screenshots / "shopper-phone-boxes.png")

    chosen = choose_garment(page)
    expect(page.locator("#frame .box").nth(chosen)).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#results-title")).to_be_in_viewport()  # a tap brings the matches up
    wait_for_thumbnails(page)
    first = page.locator("#cards .card").first
    expect(first.locator(".card-title")).not_to_be_empty()
    expect(first.locator(".price")).to_contain_text(re.compile(r"\d"))
    chip = page.locator("#cards .chip").first
    expect(chip).to_be_visible()
    expect(chip).to_have_text(re.compile(r"^[✓✗] (Matches|Differs) \w"))  # ✓/✗ spelled out for screen readers
    page.screenshot(path=screenshots / "shopper-phone-results.png")
    page.evaluate("window.scrollTo(0, 0)")  # or the sticky header lands mid-page
    page.screenshot(path=screenshots / "shopper-phone-full.png", full_page=True)

    before = shop.stats()["totals"]
    with phone.expect_page() as product:
        first.locator(".card-open").click()
    product.value.close()
    first.get_by_role("button", name="Add to cart").click()
    expect(first.get_by_role("button", name="Added ✓")).to_be_disabled()
    after = poll(
        lambda: shop.stats()["totals"],
        lambda totals: totals["clicks"] > before["clicks"] and totals["add_to_cart"] > before["add_to_cart"],
        "the click and add-to-cart events in /v1/stats",
    )
    assert after["clicks"] == before["clicks"] + 1 and after["add_to_cart"] == before["add_to_cart"] + 1
    assert after["searches"] >= 1


def test_filters_and_refinement_rerun_the_search_with_the_same_photo(
    phone: BrowserContext, shop: Shop
) -> None:
    page = phone.new_page()
    page.goto("/")
    upload(page, shop.scenes[1])
    chosen = choose_garment(page)
    page.get_by_label("Refine").fill("in red")
    page.get_by_text("Price and stock").click()  # the filters fold away on a phone
    page.get_by_label("Max price").fill("100")
    page.get_by_label("In stock only").check()
    with page.expect_response("**/v1/search") as answered:
        page.get_by_role("button", name="Update results").click()
    assert answered.value.ok
    expect(page.locator("body")).not_to_have_attribute("aria-busy", "true")  # rendered
    body = answered.value.request.post_data_buffer or b""
    assert b"in red" in body and b'"price_max":100' in body and b'"in_stock":true' in body
    expect(page.locator("#frame .box").nth(chosen)).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#results-count")).not_to_be_empty()
    for price in page.locator("#cards .price").all_inner_texts():
        assert float(re.sub(r"[^\d.]", "", price.replace(",", "."))) <= 100, price
    assert all(stock == "In stock" for stock in page.locator("#cards .stock").all_inner_texts())


def noise_png(min_bytes: int) -> bytes:
    """A real image that does not compress below `min_bytes`."""
    side = int((min_bytes / 3) ** 0.5) + 64
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    assert len(out.getvalue()) > min_bytes
    return out.getvalue()


def test_upload_errors_are_readable(phone: BrowserContext, shop: Shop, screenshots: Path) -> None:
    page = phone.new_page()
    page.goto("/")
    big = {"name": "huge.png", "mimeType": "image/png", "buffer": noise_png(MAX_UPLOAD_BYTES + 100_000)}
    page.set_input_files("#photo-file", files=[big])
    error = page.locator("#error")
    expect(error).to_contain_text("too large")
    expect(error).to_contain_text("The limit is 1 MB")  # the upload limit, not upload + multipart allowance
    expect(error).to_have_attribute("role", "alert")
    page.screenshot(path=screenshots / "shopper-phone-error.png")

    text = {"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"shopping list: socks, scarf\n" * 40}
    page.set_input_files("#photo-file", files=[text])
    expect(error).to_contain_text("not an image")


def test_keyboard_reaches_a_garment_and_enter_selects_it(
    desktop: BrowserContext, shop: Shop, screenshots: Path
) -> None:
    page = desktop.new_page()
    page.goto("/")
    upload(page, shop.scenes[0], min_boxes=2)
    page.locator("body").focus()
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('box')"):
            break
    else:
        pytest.fail("Tab never reached a garment box")
    focused = page.locator("#frame .box:focus")
    outline = focused.evaluate("(box) => getComputedStyle(box).outlineStyle")
    assert outline != "none"  # a visible focus style
    page.keyboard.press("Enter")
    expect(page.locator("#frame .box:focus")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#results")).to_be_visible()
    expect(page.locator("#results-title")).to_contain_text("Matches for")
    wait_for_thumbnails(page)
    page.screenshot(path=screenshots / "shopper-desktop-keyboard.png", full_page=True)


def test_busy_and_key_errors_are_readable_and_a_key_can_be_entered(
    desktop: BrowserContext, shop: Shop
) -> None:
    """The service answers these only under load or with keys configured; the page sees them from a route."""
    page = desktop.new_page()
    page.goto("/")
    answers = [
        (503, {"code": "overloaded", "message": "every search slot is busy"}, {"Retry-After": "1"}),
        (429, {"code": "rate_limited", "message": "too many requests; retry in 2.0 s"}, {"Retry-After": "2"}),
        (401, {"code": "unauthorized", "message": "a valid X-API-Key header is required"}, {}),
    ]
    sent_keys: list[str | None] = []

    def answer(route: Route) -> None:
        sent_keys.append(route.request.headers.get("x-api-key"))
        if answers:
            status, body, headers = answers.pop(0)
            route.fulfill(status=status, json=body, headers=headers)
        else:
            route.continue_()

    page.route("**/v1/search", answer)
    error = page.locator("#error")
    page.set_input_files("#photo-file", str(shop.scenes[0]))
    expect(error).to_contain_text("The service is busy. Please try again in 1 s.")
    page.set_input_files("#photo-file", str(shop.scenes[0]))
    expect(error).to_contain_text("Too many requests right now. Please try again in 2 s.")
    page.set_input_files("#photo-file", str(shop.scenes[0]))
    expect(error).to_contain_text("needs an access key")
    key = page.get_by_label("Access key")
    expect(key).to_be_focused()
    key.fill("storefront-key-0123456789")
    page.get_by_role("button", name="Save key").click()  # and the search runs again, with the key
    expect(page.locator("#frame .box").first).to_be_visible()
    expect(error).to_be_empty()
    assert sent_keys == [None, None, None, "storefront-key-0123456789"]
