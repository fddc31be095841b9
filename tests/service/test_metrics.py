from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.helpers import garment_image
from tests.service.test_api import jpeg_bytes, upload


def sample(text: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if match and ",".join(sorted((match.group(1) or "").split(","))) == wanted:
            return float(match.group(2))
    return None


def test_metrics_count_requests_stages_and_index(client: TestClient) -> None:
    assert upload(client, jpeg_bytes(garment_image(2))).status_code == 200
    assert client.get("/v1/items/nope").status_code == 404
    text = client.get("/metrics").text
    assert sample(text, "fashion_requests_total", code="200", route="/v1/search") == 1.0
    assert sample(text, "fashion_requests_total", code="404", route="/v1/items/{item_id}") == 1.0
    for stage in ("decode", "detect", "embed", "attributes", "search", "rank", "total"):
        assert sample(text, "fashion_search_stage_seconds_count", stage=stage) == 1.0
    assert sample(text, "fashion_index_items") == 40.0
    assert (
        sample(text, "fashion_searches_waiting") == 0.0 and sample(text, "fashion_searches_in_flight") == 0.0
    )
    assert 'fashion_index_info{build="' in text


def test_request_id_is_echoed_when_sane_and_replaced_otherwise(client: TestClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    replaced = client.get("/healthz", headers={"X-Request-ID": "bad id;" * 20}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", replaced)
