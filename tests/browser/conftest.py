"""Real-browser tests: Debian's Chromium (headless, driven by Python playwright) against a real uvicorn
server with the shipped models over a generated demo catalogue. One server and one browser for the whole
browser suite; each test opens its own contexts (shopper, assistant) so no state leaks between tests.

Skipped, with the reason, when playwright or a Chromium binary is missing (.ci/run installs Debian's).
Screenshots go to FASHION_SCREENSHOT_DIR (default build/screenshots)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from scripts.demo_catalog import generate_catalog
from tests.e2e.serving import ROOT, cli, running_server

try:
    from playwright.sync_api import Browser, BrowserContext, Playwright, sync_playwright
except ImportError:  # the tests are skipped below, with the reason
    sync_playwright = None

ADMIN_KEY = "browser-tests-admin-key-0123456789"
MAX_UPLOAD_BYTES = 1024 * 1024
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path() -> str | None:
    """FASHION_CHROMIUM, else Debian's /usr/bin/chromium, else whatever `chromium` is on PATH."""
    for candidate in (os.environ.get("FASHION_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if sync_playwright is None:
        return "playwright is not installed (bash scripts/bootstrap.sh installs the dev extra)"
    if chromium_path() is None:
        return "no Chromium binary: install Debian's (apt-get install chromium) or set FASHION_CHROMIUM"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = missing_browser()
    if reason is not None:
        for item in items:
            if "tests/browser/" in item.nodeid:
                item.add_marker(pytest.mark.skip(reason=reason))


@dataclass(frozen=True)
class Shop:
    base: str
    scenes: tuple[Path, ...]
    admin_headers: dict[str, str]

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.base}/v1/stats", headers=self.admin_headers, timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture(scope="package")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """The service with its default models (garment parser, fashion-net) over 70 generated products."""
    root = tmp_path_factory.mktemp("browser-shop")
    catalogue = generate_catalog(root / "catalogue", n_items=70, n_scenes=2, size=128)
    env = {name: value for name, value in os.environ.items() if not name.startswith("FASHION_")}
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "FASHION_IMAGE_ROOT": str(root / "catalogue"),
            "FASHION_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
            "FASHION_RATE_LIMIT_PER_S": "0",
            "FASHION_ADMIN_KEY": ADMIN_KEY,
            "FASHION_RELOAD_POLL_S": "0",
            "FASHION_PROFILES_ENABLED": "1",  # the quiz stores profiles server-side (browser mode: a route)
            "FASHION_PROFILES_PATH": str(root / "profiles.sqlite"),
        }
    )
    built = cli(
        "index", "build", "--catalog", str(catalogue.feed), "--out", str(root / "index"), "--no-progress",
        env=env,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    with running_server(root / "index", env, log_path=root / "server.log") as base:
        yield Shop(base, catalogue.scenes, {"X-Admin-Key": ADMIN_KEY})


@pytest.fixture(scope="package")
def playwright_driver() -> Iterator[Playwright]:
    # Package scope, not session: the sync driver keeps an asyncio loop running in this thread, which
    # would break every later test that calls asyncio.run().
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    path = chromium_path()
    assert path is not None  # collection skipped the tests otherwise
    launched = playwright_driver.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@contextlib.contextmanager
def browsing(browser: Browser, shop: Shop, **options: Any) -> Iterator[BrowserContext]:
    """A fresh browser context on the shop that fails the test on any uncaught script error."""
    context = browser.new_context(
        base_url=shop.base,
        reduced_motion="reduce",  # scrolls land at once (a screenshot mid-scroll is torn)
        **options,
    )
    context.set_default_timeout(15_000)
    # Product links point at the (imaginary) shop; answer them here instead of leaving the machine.
    context.route("https://shop.example/**", lambda route: route.fulfill(body="product page"))
    errors: list[str] = []
    context.on("page", lambda page: page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}")))
    try:
        yield context
    finally:
        context.close()
    assert not errors, errors


@pytest.fixture
def phone(browser: Browser, shop: Shop) -> Iterator[BrowserContext]:
    """A shopper on a phone-sized, touch-capable viewport."""
    with browsing(
        browser, shop, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
    ) as context:
        yield context


@pytest.fixture
def desktop(browser: Browser, shop: Shop) -> Iterator[BrowserContext]:
    """A sales assistant at a desk."""
    with browsing(browser, shop, viewport={"width": 1280, "height": 900}) as context:
        yield context


@pytest.fixture(scope="session")
def screenshots() -> Path:
    directory = Path(os.environ.get("FASHION_SCREENSHOT_DIR") or ROOT / "build" / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory
