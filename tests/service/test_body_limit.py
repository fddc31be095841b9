"""Body limits on the request stream (service/body_limit.py): chunked bodies (no Content-Length) are counted
as they arrive and refused at the route kind's limit, whatever the app was doing with them; ambiguous
framing is a 400. Over a real server: tests/e2e/test_transport_limits.py."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from search.settings import Settings
from service.app import create_app
from service.body_limit import MULTIPART_OVERHEAD_BYTES
from tests.helpers import garment_image, jpeg_bytes

ADMIN = {"X-Admin-Key": "admin-key-0123456789abcdef"}
JSON_LIMIT = 4096
ADMIN_LIMIT = 100_000


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    limited = settings.model_copy(
        update={
            "max_json_body_bytes": JSON_LIMIT,
            "max_admin_body_bytes": ADMIN_LIMIT,
            "admin_key": SecretStr(ADMIN["X-Admin-Key"]),
        }
    )
    with TestClient(create_app(limited), raise_server_exceptions=False) as test_client:
        yield test_client


def chunks(data: bytes, size: int = 1024) -> Iterator[bytes]:
    """A body without Content-Length: httpx sends an iterator with Transfer-Encoding: chunked."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def multipart(image: bytes, boundary: str = "limit") -> tuple[bytes, dict[str, str]]:
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def session(client: TestClient) -> str:
    created = client.post("/v1/sessions", json={})
    assert created.status_code == 201, created.text
    return str(created.json()["session_id"])


def test_a_chunked_json_body_over_the_limit_is_413(client: TestClient) -> None:
    path = f"/v1/sessions/{session(client)}/messages"
    big = json.dumps({"sender": "shopper", "text": "x" * (2 * JSON_LIMIT)}).encode()
    response = client.post(path, content=chunks(big), headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "request_too_large"
    assert f"{JSON_LIMIT}-byte limit" in response.json()["message"]
    assert response.headers["connection"] == "close"  # the rest of the body is never read
    small = json.dumps({"sender": "shopper", "text": "hello"}).encode()
    assert (
        client.post(path, content=chunks(small, 7), headers={"Content-Type": "application/json"}).status_code
        == 201
    )


def test_a_declared_oversized_json_body_is_413_before_reading(client: TestClient) -> None:
    response = client.post(
        "/v1/sessions", content=b"{}", headers={"Content-Type": "application/json", "Content-Length": "5000"}
    )
    assert response.status_code == 413 and response.json()["code"] == "request_too_large"


def test_a_chunked_upload_over_the_limit_is_413_while_the_form_is_parsed(client: TestClient) -> None:
    limit = client.app.state.settings.max_upload_bytes
    body, headers = multipart(b"x" * (limit + MULTIPART_OVERHEAD_BYTES + 10_000))
    response = client.post("/v1/search", content=chunks(body, 16_384), headers=headers)
    assert response.status_code == 413, response.text
    assert (
        response.json()["code"] == "image_too_large" and f"{limit}-byte limit" in response.json()["message"]
    )
    assert response.headers["connection"] == "close"
    body, headers = multipart(jpeg_bytes(garment_image(2)))
    assert client.post("/v1/search", content=chunks(body), headers=headers).status_code == 200


def test_admin_changes_have_their_own_larger_limit(client: TestClient) -> None:
    row = {"id": "x", "image": "images/x.jpg", "title": "t" * 900, "category": "top"}
    many = json.dumps({"items": [{**row, "id": f"x{n}"} for n in range(20)]}).encode()  # > JSON, < admin
    assert JSON_LIMIT < len(many) < ADMIN_LIMIT
    headers = {**ADMIN, "Content-Type": "application/json"}
    answer = client.post("/v1/admin/items", content=chunks(many), headers=headers)
    assert answer.status_code != 413, answer.text  # it reached the route (which judges the rows)
    too_many = json.dumps({"items": [{**row, "id": f"x{n}"} for n in range(200)]}).encode()
    refused = client.post("/v1/admin/items", content=chunks(too_many), headers=headers)
    assert refused.status_code == 413 and refused.json()["code"] == "request_too_large"
    assert f"{ADMIN_LIMIT}-byte limit" in refused.json()["message"]


def test_content_length_with_chunked_encoding_is_400(client: TestClient) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": "2", "Transfer-Encoding": "chunked"}
    response = client.post("/v1/sessions", content=b"{}", headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "bad_request" and "Transfer-Encoding" in response.json()["message"]
