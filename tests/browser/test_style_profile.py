"""The style quiz and profile on the shopper page in headless Chromium: answered on a phone and at a desk
(some questions skipped), kept as a server profile (only its id in the browser) or in the browser, applied to
searches ("matches your style" on a card), edited, forgotten everywhere; the cart controls' events; the
co-viewing session told of the profile and a returning visitor; errors said in words."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
from playwright.sync_api import BrowserContext, Page, Request, Route, expect  # noqa: E402

from tests.browser.conftest import PHONE, Shop  # noqa: E402
from tests.browser.pages import choose_garment, local_storage, poll, take_quiz, upload  # noqa: E402

pytestmark = pytest.mark.slow

STYLE = {"colours": ["navy", "black"], "styles": ["casual"], "price": (1, 10000), "sizes": ["M"]}
ID_KEY, ANSWERS_KEY = "fashion.styleId", "fashion.style"


def profile(shop: Shop, profile_id: str) -> httpx.Response:
    return httpx.get(f"{shop.base}/v1/profiles/{profile_id}", timeout=10)


def session_insight(shop: Shop, page: Page) -> dict[str, Any]:
    session_id = unquote(urlsplit(page.get_by_label("Assistant link").input_value()).path.rsplit("/", 1)[-1])
    response = httpx.get(f"{shop.base}/v1/sessions/{session_id}", timeout=10)
    response.raise_for_status()
    insight: dict[str, Any] = response.json()["insight"]
    return insight


def form_field(request: Request, name: str) -> str | None:
    """A text field of a multipart search request."""
    body = (request.post_data_buffer or b"").decode("utf-8", "replace")
    marker = f'name="{name}"\r\n\r\n'
    if marker not in body:
        return None
    return body.split(marker, 1)[1].split("\r\n--", 1)[0]


def events_of(page: Page) -> list[dict[str, Any]]:
    """Every event the page posts, as sent (appended as they go)."""
    sent: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda request: (
            sent.append(request.post_data_json)
            if request.url.endswith("/v1/events") and request.method == "POST"
            else None
        ),
    )
    return sent


def test_a_phone_quiz_keeps_only_a_profile_id_and_matches_say_why(
    phone: BrowserContext, shop: Shop, screenshots: Path
) -> None:
    page = phone.new_page()
    page.goto("/")
    quiz = take_quiz(page, STYLE)
    box = quiz.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    review = quiz.locator(".quiz-review")
    expect(review.locator('[data-question="colours"]')).to_contain_text("black, navy")
    expect(review.locator('[data-question="avoid_colours"]')).to_contain_text("skipped")
    expect(review.locator('[data-question="price"]')).to_contain_text("1 to 10000")
    quiz.get_by_label("Learn from what I click").check()
    expect(quiz.get_by_role("button", name="Save")).to_be_in_viewport()
    page.screenshot(path=screenshots / "shopper-phone-quiz.png")
    with page.expect_response("**/v1/profiles") as created:
        quiz.get_by_role("button", name="Save").click()
    assert created.value.status == 201
    expect(quiz).to_be_hidden()
    expect(page.locator("#style-status")).to_contain_text("Your style is saved")

    profile_id = created.value.json()["profile_id"]
    stored = local_storage(page)
    assert stored[ID_KEY] == profile_id and ANSWERS_KEY not in stored
    assert not any("navy" in value or "casual" in value for value in stored.values()), stored
    saved = profile(shop, profile_id).json()
    assert set(saved["colours"]) == {"navy", "black"} and saved["styles"] == ["casual"]
    assert (saved["price_min"], saved["price_max"], saved["sizes"], saved["learn"]) == (1, 10000, ["M"], True)
    assert saved["fits"] == [] and saved["brands"] == [] and saved["avoid_colours"] == []

    with page.expect_request("**/v1/search") as searched:
        upload(page, shop.scenes[0])
    assert form_field(searched.value, "profile_id") == profile_id
    assert form_field(searched.value, "profile") is None
    choose_garment(page)
    why = page.locator("#cards .card .card-why").first
    expect(why).to_contain_text("matches your style:")
    expect(why).to_contain_text("in your price range")
    page.screenshot(path=screenshots / "shopper-phone-style-match.png")

    # Opted in: an add-to-cart sent with the profile_id teaches the profile.
    card = page.locator("#cards .card").first
    with page.expect_request("**/v1/events") as event:  # nothing else is sent meanwhile
        card.get_by_role("button", name="Add to cart").click()
    assert event.value.post_data_json["type"] == "add_to_cart"
    assert event.value.post_data_json["profile_id"] == profile_id
    poll(lambda: profile(shop, profile_id).json()["learned"], bool, "what the add-to-cart taught")


def test_a_desktop_shopper_edits_shares_and_forgets_the_profile(
    desktop: BrowserContext, shop: Shop, screenshots: Path
) -> None:
    page = desktop.new_page()
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto("/")
    # The whole quiz can be closed unanswered: nothing is saved.
    page.get_by_role("button", name="Your style").click()
    page.get_by_role("dialog", name="Your style").get_by_role("button", name="Close").click()
    expect(page.get_by_role("dialog", name="Your style")).to_be_hidden()
    assert ID_KEY not in local_storage(page)

    quiz = take_quiz(page, {"colours": ["navy"], "brands": "Northwind, Fernhill"})
    expect(quiz.locator('.quiz-review [data-question="brands"]')).to_contain_text("Northwind, Fernhill")
    expect(quiz.get_by_label("Learn from what I click")).not_to_be_checked()  # opt-in
    quiz.get_by_role("button", name="Save").click()
    expect(quiz).to_be_hidden()
    expect(page.get_by_role("button", name="Your style")).to_be_focused()
    profile_id = local_storage(page)[ID_KEY]
    assert profile(shop, profile_id).json()["colours"] == ["navy"]

    # Editing opens on the saved answers; a change is PUT, under the same id.
    page.get_by_role("button", name="Your style").click()
    expect(quiz.locator('.quiz-review [data-question="colours"]')).to_contain_text("navy")
    quiz.get_by_role("button", name="Change colours you love").click()
    expect(quiz.get_by_label("navy", exact=True)).to_be_checked()
    expect(quiz.get_by_role("button", name="Next")).to_be_in_viewport()
    page.screenshot(path=screenshots / "shopper-desktop-quiz.png")
    quiz.get_by_label("navy", exact=True).uncheck()
    quiz.get_by_label("black", exact=True).check()
    for _ in range(7):  # through the other questions, their answers kept, to the review
        quiz.locator("#quiz-next").click()
    expect(quiz.locator("#quiz-progress")).to_have_text("Check and save")
    expect(quiz.locator('.quiz-review [data-question="brands"]')).to_contain_text("Northwind, Fernhill")
    with page.expect_request(
        lambda request: request.method == "PUT" and "/v1/profiles/" in request.url
    ) as put:
        quiz.get_by_role("button", name="Save").click()
    assert put.value.url.endswith(profile_id)
    expect(quiz).to_be_hidden()
    edited = profile(shop, profile_id).json()
    assert edited["colours"] == ["black"] and {brand.lower() for brand in edited["brands"]} == {
        "northwind",
        "fernhill",
    }
    assert local_storage(page)[ID_KEY] == profile_id

    # A second visit (another tab, the first-visit time kept) asks for help: the session hears of both.
    later = desktop.new_page()
    later.goto("/")
    later.get_by_role("button", name="Ask an assistant").click()
    expect(later.get_by_label("Assistant link")).not_to_have_value("")
    insight = poll(lambda: session_insight(shop, later), lambda card: card["profile"], "the profile line")
    assert insight["returning"] is True and "black" in insight["profile"]

    # Forget me: the stored profile, this browser's copy and the assistant's line are gone.
    later.get_by_role("button", name="Your style").click()
    with later.expect_response(lambda response: response.request.method == "DELETE") as deleted:
        later.get_by_role("dialog", name="Your style").get_by_role("button", name="Forget me").click()
    assert deleted.value.status == 204
    expect(later.locator("#style-status")).to_contain_text("Forgotten")
    assert profile(shop, profile_id).status_code == 404
    assert local_storage(later) == {}
    poll(lambda: session_insight(shop, later), lambda card: card["profile"] is None, "the line removed")
    later.get_by_role("button", name="Your style").click()
    expect(later.locator("#quiz-progress")).to_have_text("Question 1 of 7")  # a fresh quiz


def browser_mode(route: Route) -> None:
    """The shop as configured by default: the answers stay in the browser."""
    quiz = route.fetch().json()
    route.fulfill(json={**quiz, "profiles": "browser"})


def test_in_browser_mode_the_answers_stay_in_local_storage_and_go_with_each_search(
    phone: BrowserContext, shop: Shop
) -> None:
    page = phone.new_page()
    page.route("**/v1/quiz", browser_mode)
    posted: list[str] = []
    page.on("request", lambda request: posted.append(request.url) if "/v1/profiles" in request.url else None)
    page.goto("/")
    quiz = take_quiz(page, {"colours": ["navy"], "fits": ["loose"], "price": (1, 10000)})
    expect(quiz.get_by_label("Learn from what I click")).to_have_count(0)  # nothing learns in a browser
    quiz.get_by_role("button", name="Save").click()
    expect(page.locator("#style-status")).to_contain_text("saved in this browser")
    kept = json.loads(local_storage(page)[ANSWERS_KEY])
    assert kept == {"colours": ["navy"], "fits": ["loose"], "price_min": 1, "price_max": 10000}
    assert ID_KEY not in local_storage(page)

    with page.expect_request("**/v1/search") as searched:
        upload(page, shop.scenes[1])
    assert json.loads(form_field(searched.value, "profile") or "null") == kept
    assert form_field(searched.value, "profile_id") is None
    choose_garment(page)
    expect(page.locator("#cards .card-why").first).to_contain_text("in your price range")

    # A reload keeps them: the quiz opens on them.
    page.reload()
    page.get_by_role("button", name="Your style").click()
    expect(quiz.locator('.quiz-review [data-question="fits"]')).to_contain_text("loose")
    quiz.get_by_role("button", name="Forget me").click()
    expect(quiz).to_be_hidden()
    assert local_storage(page) == {}
    assert posted == []  # nothing was sent to the profile store


def test_cart_controls_and_a_viewed_product_send_their_events(phone: BrowserContext, shop: Shop) -> None:
    page = phone.new_page()
    sent = events_of(page)
    page.goto("/")
    upload(page, shop.scenes[0])
    choose_garment(page)
    card = page.locator("#cards .card").first
    item_id = card.get_attribute("data-item")
    before = shop.stats()["totals"]

    with phone.expect_page() as product:
        card.locator(".card-open").click()
    page.wait_for_timeout(1200)  # looking at the product
    product.value.close()
    card.get_by_role("button", name="Add to cart").click()  # back on the page: the view ends
    expect(card.get_by_role("button", name="Added ✓")).to_be_disabled()
    card.get_by_role("button", name="Remove").click()
    expect(card.get_by_role("button", name="Add to cart")).to_be_enabled()
    expect(card.get_by_role("button", name="Buy now")).to_be_hidden()
    card.get_by_role("button", name="Add to cart").click()
    card.get_by_role("button", name="Buy now").click()
    expect(card.get_by_role("button", name="Bought ✓")).to_be_disabled()
    expect(card.get_by_role("button", name="Remove")).to_be_hidden()

    kinds = ["click", "view_item", "add_to_cart", "remove_from_cart", "add_to_cart", "purchase"]
    poll(lambda: [event["type"] for event in sent if event["item_id"] == item_id], kinds.__eq__, "the events")
    viewed = next(event for event in sent if event["type"] == "view_item")
    assert viewed["dwell_s"] >= 1.0, viewed
    assert all("profile_id" not in event for event in sent)  # no profile saved
    after = poll(
        lambda: shop.stats()["totals"],
        lambda totals: totals["add_to_cart"] >= before["add_to_cart"] + 2,
        "the add-to-cart events in /v1/stats",
    )
    assert after["add_to_cart"] == before["add_to_cart"] + 2 and after["clicks"] == before["clicks"] + 1


def test_profile_errors_are_readable(desktop: BrowserContext, shop: Shop) -> None:
    page = desktop.new_page()
    page.goto("/")
    # A brand name longer than the service takes: its 422, in the quiz, which stays open.
    quiz = take_quiz(page, {"brands": "x" * 150})
    quiz.get_by_role("button", name="Save").click()
    error = quiz.locator("#quiz-error")
    expect(error).to_contain_text("Some answers were not accepted")
    expect(error).to_contain_text("brands")
    expect(quiz).to_be_visible()
    assert ID_KEY not in local_storage(page)

    # The shop stopped keeping profiles (403 profiles_disabled): the answers are kept in the browser.
    page.route(
        "**/v1/profiles",
        lambda route: route.fulfill(
            status=403, json={"code": "profiles_disabled", "message": "this shop keeps no style profiles"}
        ),
    )
    quiz.get_by_role("button", name="Change brands you like").click()
    quiz.locator("#quiz-text").fill("Northwind")
    quiz.get_by_role("button", name="Next").click()
    quiz.get_by_role("button", name="Review").click()
    quiz.get_by_role("button", name="Save").click()
    expect(quiz).to_be_hidden()
    expect(page.locator("#style-status")).to_contain_text("saved in this browser instead")
    assert json.loads(local_storage(page)[ANSWERS_KEY]) == {"brands": ["Northwind"]}

    # An expired profile id: the search says so and runs without it.
    expired = desktop.new_page()
    expired.add_init_script(f"localStorage.setItem('{ID_KEY}', 'expired-profile-0123456789')")
    expired.goto("/")
    with expired.expect_response("**/v1/search") as first:
        upload(expired, shop.scenes[0])
    assert first.value.status == 404
    expect(expired.locator("#style-status")).to_contain_text("expired")
    expect(expired.locator("#error")).to_be_empty()
    assert ID_KEY not in local_storage(expired)
