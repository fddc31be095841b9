"""/docs is Swagger UI from the service's own files (no CDN), open like /openapi.json: no key, no limit."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from pydantic import SecretStr

from search.settings import Settings
from service.app import create_app

PUBLIC = ("/docs", "/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css", "/openapi.json")


def test_docs_load_only_the_services_own_files(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    linked = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text) + re.findall(
        r"url: ?'([^']+)'", page.text
    )
    assert linked and all(url.startswith("/") and not url.startswith("//") for url in linked), linked
    assert "/docs-assets/swagger-ui-bundle.js" in linked and "/openapi.json" in linked
    assert client.get("/docs/oauth2-redirect").status_code == 200
    assert client.get("/redoc").status_code == 404  # FastAPI's CDN pages are off


def test_docs_need_no_key_and_are_not_rate_limited(settings: Settings) -> None:
    locked = settings.model_copy(
        update={"search_keys": [SecretStr("docs-shop-key-0123456789")], "rate_limit_per_s": 0.01,
                "rate_limit_burst": 1}
    )  # fmt: skip
    with TestClient(create_app(locked)) as client:
        answers = [client.get(path) for path in PUBLIC for _ in range(3)]
        api = client.get("/v1/items/item-0001")
    assert [answer.status_code for answer in answers] == [200] * len(answers)
    assert all("RateLimit" not in answer.headers for answer in answers)
    assert api.status_code == 401  # the API itself is keyed
