"""The assistant page's shopper-insight card in headless Chromium: the shopper's events (sent to the API as
the shopper page sends them) move the card through browsing, comparing, ready to buy and hesitating; the
shared profile and returning visitor show; repeated activity merges ("×3"); the assistant edits the
suggested opener, which a live update leaves alone, and posts it to the shopper's chat."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
from playwright.sync_api import BrowserContext, Page, expect  # noqa: E402

from tests.browser.conftest import PHONE, Shop  # noqa: E402

pytestmark = pytest.mark.slow

NO_HORIZONTAL_OVERFLOW = "document.documentElement.scrollWidth <= document.documentElement.clientWidth"


def send_event(shop: Shop, session_id: str, kind: str, item_id: str | None = None, **fields: Any) -> None:
    """A shopper's event for the session, as the shopper page posts it."""
    body = {"type": kind, "item_id": item_id, "session_id": session_id, **fields}
    response = httpx.post(f"{shop.base}/v1/events", json=body, timeout=10)
    assert response.status_code == 202, response.text


def share_profile(shop: Shop, session_id: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.put(f"{shop.base}/v1/sessions/{session_id}/profile", json=body, timeout=10)
    assert response.status_code == 200, response.text
    card: dict[str, Any] = response.json()
    return card


def snapshot(shop: Shop, session_id: str) -> dict[str, Any]:
    response = httpx.get(f"{shop.base}/v1/sessions/{session_id}", timeout=10)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def expect_intent(assistant: Page, label: str, reason: str) -> None:
    expect(assistant.locator("#intent")).to_have_text(label)
    expect(assistant.locator("#intent-reason")).to_contain_text(reason)


def no_horizontal_overflow(page: Page) -> None:
    assert page.evaluate(NO_HORIZONTAL_OVERFLOW), page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )


def test_the_card_follows_the_shopper_and_the_opener_reaches_the_chat(
    phone: BrowserContext, desktop: BrowserContext, shop: Shop, screenshots: Path
) -> None:
    shopper = phone.new_page()
    shopper.goto("/")
    shopper.get_by_role("button", name="Ask an assistant").click()
    link = shopper.get_by_label("Assistant link")
    expect(link).not_to_have_value("")
    assist_url = link.input_value()
    session_id = unquote(urlsplit(assist_url).path.rstrip("/").rsplit("/", 1)[-1])

    assistant = desktop.new_page()
    assistant.goto(assist_url)
    expect(assistant.locator("#live")).to_have_text("Live")
    card = assistant.locator("#insight")
    opener = card.get_by_label("Suggested opener")
    expect_intent(assistant, "Browsing", "no activity yet")
    expect(card.locator("#cart-empty")).to_be_visible()
    expect(opener).to_have_value(snapshot(shop, session_id)["insight"]["opener"])

    # The same garment looked at three times: one line, counted live.
    activity = assistant.locator("#activity li")
    for count in (1, 2, 3):
        send_event(shop, session_id, "select_garment", category="top", garment=0)
        expect(activity.first).to_contain_text("Looked at the top")
        if count > 1:
            expect(activity.first).to_contain_text(f"Looked at the top ×{count}")
    expect(activity).to_have_count(1)
    expect(activity.first).not_to_contain_text("×4")

    # Two tops viewed: comparing (a different entry starts a new line).
    send_event(shop, session_id, "view_item", "top-a", category="top", dwell_s=8)
    send_event(shop, session_id, "view_item", "top-b", category="top", dwell_s=5)
    expect_intent(assistant, "Comparing", "compared 2 tops")
    expect(activity).to_have_count(3)
    expect(activity.first).to_contain_text("Viewed top-b")
    expect(activity.first).not_to_contain_text("×")
    expect(opener).to_have_value("Comparing a few tops? I can tell you how they differ.")

    # Added to the cart: ready to buy, the cart lists it.
    send_event(shop, session_id, "add_to_cart", "top-a", category="top")
    expect_intent(assistant, "Ready to buy", "1 item in the cart")
    line = card.locator('#cart li[data-item="top-a"]')
    expect(line).to_contain_text("1 ×")
    expect(line).to_contain_text("top-a")
    expect(line.locator(".category")).to_have_text("top")
    expect(card.locator("#cart-empty")).to_be_hidden()
    send_event(shop, session_id, "add_to_cart", "top-a", category="top")
    expect(line).to_contain_text("2 ×")
    expect_intent(assistant, "Ready to buy", "2 items in the cart")

    # Taken out again: hesitating, the cart is empty.
    send_event(shop, session_id, "remove_from_cart", "top-a", category="top")
    send_event(shop, session_id, "remove_from_cart", "top-a", category="top")
    expect_intent(assistant, "Hesitating", "added the top to the cart, then removed it")
    expect(card.locator("#cart li")).to_have_count(0)
    expect(card.locator("#cart-empty")).to_be_visible()
    expect(activity.first).to_contain_text("Removed top-a from the cart ×2")
    suggested = snapshot(shop, session_id)["insight"]["opener"]
    assert "took the top out of your cart" in suggested
    expect(opener).to_have_value(suggested)

    # The assistant edits the opener; the shopper's profile arrives live and leaves the edit alone.
    expect(card.locator("#returning")).to_be_hidden()
    expect(card.locator("#profile")).to_be_hidden()
    mine = "Hi! The top you removed also comes in navy, shall I show you?"
    opener.fill(mine)
    shared = share_profile(shop, session_id, {"profile": {"colours": ["navy"]}, "returning": True})
    assert shared["returning"] is True and "navy" in shared["profile"]
    expect(card.locator("#returning")).to_have_text("Returning visitor")
    expect(card.locator("#profile")).to_contain_text(f"Style profile: {shared['profile']}")
    expect(opener).to_have_value(mine)
    expect(card.get_by_role("button", name="Use the suggestion")).to_be_visible()
    no_horizontal_overflow(assistant)
    card.screenshot(path=screenshots / "assistant-desktop-insight.png")

    # Posted: in the assistant's chat, on the shopper's page, in the session; the opener is fresh again.
    card.get_by_role("button", name="Post to chat").click()
    expect(card.locator("#opener-status")).to_have_text("Posted to the chat.")
    expect(assistant.locator("#messages .msg.mine")).to_have_text(f"You: {mine}")
    expect(shopper.locator("#messages .msg.theirs")).to_contain_text(mine)
    messages = snapshot(shop, session_id)["messages"]
    assert [(m["sender"], m["text"]) for m in messages] == [("assistant", mine)]
    expect(opener).to_have_value(snapshot(shop, session_id)["insight"]["opener"])
    expect(card.get_by_role("button", name="Use the suggestion")).to_be_hidden()

    # Untouched, the opener follows the next insight: the top back in the cart, ready to buy again.
    send_event(shop, session_id, "add_to_cart", "top-a", category="top")
    expect_intent(assistant, "Ready to buy", "1 item in the cart")
    expect(opener).to_have_value(snapshot(shop, session_id)["insight"]["opener"])
    expect(opener).not_to_have_value(suggested)
    send_event(shop, session_id, "purchase", "top-a", category="top")
    expect(activity.first).to_contain_text("Bought top-a")


def test_the_card_fills_from_the_snapshot_on_a_phone(
    phone: BrowserContext, shop: Shop, screenshots: Path
) -> None:
    created = httpx.post(f"{shop.base}/v1/sessions", json={}, timeout=10)
    assert created.status_code == 201, created.text
    session_id = created.json()["session_id"]
    long_item = "quilted_navy_outerwear_catalogue_item_" * 3
    for _ in range(2):
        send_event(shop, session_id, "select_garment", category="outerwear", garment=1)
    send_event(shop, session_id, "add_to_cart", long_item, category="outerwear")
    share_profile(shop, session_id, {"profile": {"colours": ["navy"]}, "returning": True})

    assistant = phone.new_page()
    assistant.goto(created.json()["assist_url"])
    expect(assistant.locator("#live")).to_have_text("Live")
    card = assistant.locator("#insight")
    expect_intent(assistant, "Ready to buy", "1 item in the cart")
    expect(card.locator(f'#cart li[data-item="{long_item}"]')).to_contain_text("1 ×")
    expect(card.locator("#returning")).to_be_visible()
    expect(card.locator("#profile")).to_contain_text("likes navy")
    expect(assistant.locator("#activity li").nth(1)).to_contain_text("Looked at the outerwear ×2")
    opener = card.get_by_label("Suggested opener")
    expect(opener).to_have_value(snapshot(shop, session_id)["insight"]["opener"])

    # Readable on a phone: nothing wider than the screen, the card's controls inside it.
    no_horizontal_overflow(assistant)
    width = PHONE["width"]
    for control in (opener, card.get_by_role("button", name="Post to chat")):
        box = control.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, box
    assert card.locator("#intent").evaluate("(node) => parseFloat(getComputedStyle(node).fontSize)") >= 14
    card.screenshot(path=screenshots / "assistant-phone-insight.png")

    # Live on the phone too.
    send_event(shop, session_id, "remove_from_cart", long_item, category="outerwear")
    expect_intent(assistant, "Hesitating", "added the outerwear to the cart, then removed it")
    expect(card.locator("#cart-empty")).to_be_visible()
    no_horizontal_overflow(assistant)
