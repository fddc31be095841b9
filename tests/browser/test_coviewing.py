"""Co-viewing in headless Chromium: a shopper on a phone asks for help, an assistant at a desk opens the
shared link, sees the same photo and garment, pushes a product, and both chat."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
from playwright.sync_api import BrowserContext, expect  # noqa: E402

from tests.browser.conftest import Shop  # noqa: E402
from tests.browser.pages import box_inside_photo, choose_garment, upload, wait_for_thumbnails  # noqa: E402

pytestmark = pytest.mark.slow


def test_assistant_sees_the_shopper_pushes_a_product_and_they_chat(
    phone: BrowserContext, desktop: BrowserContext, shop: Shop, screenshots: Path
) -> None:
    shopper = phone.new_page()
    shopper.goto("/")
    n_boxes = upload(shopper, shop.scenes[0], min_boxes=2)
    chosen = choose_garment(shopper)
    category = (shopper.locator("#frame .box").nth(chosen).get_attribute("data-category") or "").replace(
        "_", " "
    )
    shopper.get_by_role("button", name="Ask an assistant").click()
    link = shopper.get_by_label("Assistant link")
    expect(link).not_to_have_value("")
    assist_url = link.input_value()
    assert assist_url.startswith(f"{shop.base}/assist/")
    expect(shopper.get_by_role("button", name="Copy link")).to_be_visible()

    assistant = desktop.new_page()
    assistant.goto(assist_url)
    expect(assistant.locator("#live")).to_have_text("Live")
    boxes = assistant.locator("#frame .box")
    expect(boxes).to_have_count(n_boxes)
    assistant.wait_for_function("document.querySelector('#frame img').naturalWidth > 0")
    box_inside_photo(assistant)
    expect(assistant.locator("#frame .box.shopper")).to_have_attribute("data-garment", str(chosen))
    expect(assistant.locator("#results-title")).to_contain_text(f"Matches for the {category}")
    expect(assistant.locator("#results-title")).to_contain_text("the shopper's view")
    expect(assistant.locator("#activity")).to_contain_text("Looked at the")
    wait_for_thumbnails(assistant)

    # The shopper opens a product: the assistant's activity list shows it.
    with phone.expect_page() as product:
        shopper.locator("#cards .card-open").first.click()
    product.value.close()
    expect(assistant.locator("#activity")).to_contain_text("Opened")

    # The assistant pushes the second match; the shopper sees it highlighted.
    card = assistant.locator("#cards .card").nth(1)
    item_id = card.get_attribute("data-item")
    card.get_by_role("button", name="Show to shopper").click()
    expect(card.get_by_role("button", name="Shown ✓")).to_be_visible()
    # On a phone the suggestion arrives below the results: a banner says so and takes the shopper there.
    notice = shopper.locator("#notice")
    expect(notice).to_contain_text("Your assistant suggests")
    shopper.screenshot(path=screenshots / "shopper-phone-notice.png")
    notice.get_by_role("button", name="Show").click()
    suggested = shopper.locator(f'#suggested .card[data-item="{item_id}"]')
    expect(suggested).to_be_in_viewport()
    expect(notice).to_be_hidden()
    expect(shopper.locator("#suggestions")).to_contain_text("Your assistant suggests")
    expect(shopper.locator(f'#cards .card.pushed[data-item="{item_id}"]')).to_be_attached()
    shopper.wait_for_function(
        f"document.querySelector('#suggested .card[data-item=\"{item_id}\"] img').naturalWidth > 0"
    )

    # Chat both ways.
    shopper.get_by_label("Message to the assistant").fill("Do you have this in blue?")
    shopper.get_by_label("Message to the assistant").press("Enter")
    expect(assistant.locator("#messages .msg.theirs")).to_contain_text("Do you have this in blue?")
    assistant.get_by_label("Message to the shopper").fill("Yes, have a look at the one I just sent.")
    assistant.get_by_role("button", name="Send").click()
    expect(shopper.locator("#messages .msg.theirs")).to_contain_text("the one I just sent")
    expect(shopper.locator("#messages .msg.mine")).to_contain_text("in blue?")

    assistant.evaluate("window.scrollTo(0, 0)")
    assistant.screenshot(path=screenshots / "assistant-desktop.png", full_page=True)
    shopper.locator("#suggestions").scroll_into_view_if_needed()
    shopper.screenshot(path=screenshots / "shopper-phone-suggestion.png")


def test_an_unknown_session_link_says_so(desktop: BrowserContext) -> None:
    page = desktop.new_page()
    page.goto("/assist/not-a-session-0123456789abcdef0123456789")
    expect(page.locator("#error")).to_contain_text("expired or does not exist")
    expect(page.locator("#live")).to_have_text("Ended")
