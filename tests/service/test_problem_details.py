"""Every error answers RFC 9457 problem details (application/problem+json) and keeps `code` and `message`;
validation errors list each field at fault in plain words, never a framework's type names."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import FastAPI, File, Form, UploadFile
from fastapi.testclient import TestClient
from httpx import Response
from pydantic import SecretStr

from search.settings import Settings
from service.app import create_app
from service.errors import ERROR_TABLE, PROBLEM_JSON, TITLES, install_error_handlers
from service.field_errors import validation_errors
from tests.helpers import garment_image, jpeg_bytes

SHOP_KEY = "problem-shop-key-0123456789"
SESSION = "A" * 43  # a well-formed id that names no session
PROBLEM_MEMBERS = {"type", "title", "status", "detail", "code", "message"}


def problem(response: Response, status: int, code: str) -> dict:
    """The body, checked against the contract: problem details plus the old code and message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict = response.json()
    assert PROBLEM_MEMBERS <= set(body) <= PROBLEM_MEMBERS | {"errors"}, body
    assert body["type"] == f"/problems/{code}" and body["title"] == TITLES[code]
    assert body["status"] == status and body["code"] == code
    assert body["detail"] == body["message"] and body["message"]
    return body


def search(client: TestClient, data: bytes, media_type: str = "image/jpeg", **form: str) -> Response:
    return client.post("/v1/search", files={"image": ("photo.jpg", data, media_type)}, data=form)


def test_an_oversized_upload_is_a_413_problem(client: TestClient) -> None:
    body = problem(search(client, b"x" * 200_001), 413, "image_too_large")
    assert "200000-byte limit" in body["detail"] and "errors" not in body


def test_a_non_image_is_a_415_problem(client: TestClient) -> None:
    problem(search(client, b"definitely not an image"), 415, "unsupported_media_type")


def test_a_bad_option_is_a_422_problem_naming_its_field(client: TestClient) -> None:
    body = problem(search(client, jpeg_bytes(garment_image(1)), top_k="0"), 422, "invalid_request")
    assert [error["field"] for error in body["errors"]] == ["top_k"]
    assert "top_k" in body["message"]  # the sentence as before, field first


def test_unknown_items_and_routes_are_404_problems(client: TestClient) -> None:
    problem(client.get("/v1/items/no-such-item"), 404, "item_not_found")
    problem(client.get("/no/such/route"), 404, "not_found")
    problem(client.get("/v1/search"), 405, "method_not_allowed")


def test_a_missing_key_is_a_401_problem(settings: Settings) -> None:
    keyed = settings.model_copy(update={"search_keys": [SecretStr(SHOP_KEY)]})
    with TestClient(create_app(keyed)) as client:
        refused = client.get("/v1/items/item-0001")
    problem(refused, 401, "unauthorized")
    assert refused.headers["WWW-Authenticate"] == "X-API-Key"


def test_a_validation_error_lists_every_field_in_plain_words(client: TestClient) -> None:
    response = client.post(
        f"/v1/sessions/{SESSION}/messages", json={"sender": "robot", "text": "  ", "colour": "red"}
    )
    body = problem(response, 422, "invalid_request")
    assert body["errors"] == [
        {"field": "sender", "message": "must be one of 'shopper' or 'assistant'"},
        {"field": "text", "message": "must not be empty"},
        {"field": "colour", "message": "is not an accepted option"},
    ]
    assert body["message"] == (
        "sender must be one of 'shopper' or 'assistant'; text must not be empty; "
        "colour is not an accepted option"
    )
    # The search form is read by service/search_input.py: one domain error, its field named first.
    form = problem(client.post("/v1/search", data={"top_k": "3"}), 422, "invalid_request")
    assert [error["field"] for error in form["errors"]] == ["image"]
    assert form["errors"][0]["message"].startswith("is required")


def test_broken_json_is_a_problem_about_the_body(client: TestClient) -> None:
    response = client.post(
        f"/v1/sessions/{SESSION}/messages", content=b"{bad", headers={"Content-Type": "application/json"}
    )
    (error,) = problem(response, 422, "invalid_request")["errors"]
    assert error["field"] == "body" and error["message"].startswith("is not valid JSON")


def test_an_image_sent_as_text_is_told_in_plain_words(client: TestClient) -> None:
    body = problem(client.post("/v1/search", data={"image": "photo.jpg"}), 422, "invalid_request")
    (error,) = body["errors"]
    assert error["field"] == "image" and error["message"].startswith("must be a file upload")
    for internal in ("UploadFile", "<class", "Value error"):
        assert internal not in repr(body)


def test_fastapis_own_file_check_is_told_in_plain_words() -> None:
    """A route with an UploadFile parameter: FastAPI's error names Python types; the answer does not."""
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/upload")
    def upload(image: Annotated[UploadFile, File()], top_k: Annotated[int, Form()] = 1) -> None:
        return None

    response = TestClient(app).post("/upload", data={"image": "photo.jpg", "top_k": "many"})
    body = problem(response, 422, "invalid_request")
    assert body["errors"] == [
        {"field": "image", "message": "must be a file upload"},
        {"field": "top_k", "message": "must be a whole number"},
    ]
    assert body["message"] == "image must be a file upload; top_k must be a whole number"
    for internal in ("UploadFile", "<class", "Value error", "many"):
        assert internal not in response.text


def test_a_server_error_is_a_generic_500_problem() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret detail at /srv/index/vectors.faiss")

    response = TestClient(app, raise_server_exceptions=False).get("/boom")
    body = problem(response, 500, "internal_error")
    assert body["message"] == "internal server error" and "secret" not in response.text


def test_every_code_has_a_title() -> None:
    assert {code for _, _, code in ERROR_TABLE} <= set(TITLES)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"type": "missing", "loc": ("body", "image")}, {"field": "image", "message": "is required"}),
        (
            {"type": "less_than_equal", "loc": ("body", "items", 0, "price"), "ctx": {"le": 5}},
            {"field": "items.0.price", "message": "must be at most 5"},
        ),
        (
            {"type": "model_attributes_type", "loc": ("body",)},
            {"field": "body", "message": "must be an object"},
        ),
        (
            {
                "type": "value_error",
                "loc": ("body", "text"),
                "ctx": {"error": ValueError("has no visible text")},
            },
            {"field": "text", "message": "has no visible text"},
        ),
        ({"type": "something_new", "loc": ("query", "q")}, {"field": "query.q", "message": "is not valid"}),
    ],
)
def test_pydantic_errors_in_plain_words(error: dict, expected: dict) -> None:
    assert validation_errors([error]) == [expected]


def test_openapi_documents_error_bodies_as_problem_json(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    responses = schema["paths"]["/v1/search"]["post"]["responses"]
    assert set(responses["415"]["content"]) == {PROBLEM_JSON}
    assert responses["422"]["content"][PROBLEM_JSON]["schema"]["$ref"].endswith("/ErrorOut")
    error_out = schema["components"]["schemas"]["ErrorOut"]
    assert {"type", "title", "status", "detail", "code", "message", "errors"} <= set(error_out["properties"])
    assert set(error_out["required"]) == PROBLEM_MEMBERS
    assert "HTTPValidationError" not in schema["components"]["schemas"]  # FastAPI's 422 body, never sent
