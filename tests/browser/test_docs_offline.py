"""/docs on an air-gapped install: headless Chromium loads Swagger UI with every request that would leave
the machine refused, and the page still renders the API's operations from the service's own files."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
from playwright.sync_api import Browser, Route, expect  # noqa: E402

from tests.browser.conftest import Shop, browsing  # noqa: E402

pytestmark = pytest.mark.slow
LOCAL_HOSTS = {"127.0.0.1"}


def test_docs_render_with_no_network_beyond_the_service(browser: Browser, shop: Shop) -> None:
    sent: list[str] = []
    refused: list[str] = []

    def only_local(route: Route) -> None:
        url = route.request.url
        sent.append(url)
        if urlsplit(url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            refused.append(url)
            route.abort("internetdisconnected")

    with browsing(browser, shop, viewport={"width": 1280, "height": 900}) as context:
        context.route("**/*", only_local)  # added last, so it sees every request first
        page = context.new_page()
        page.goto("/docs")
        operations = page.locator(".opblock")
        expect(operations.filter(has_text="/v1/search").first).to_be_visible(timeout=30_000)
        expect(operations.filter(has_text="/v1/items/{item_id}").first).to_be_visible()
        assert "Unable to render this definition" not in page.inner_text("body")
    assert not refused, f"/docs asked for files from elsewhere: {refused}"
    assert any(url.endswith("/docs-assets/swagger-ui-bundle.js") for url in sent), sent
    assert any(url.endswith("/openapi.json") for url in sent), sent
