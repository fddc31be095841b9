"""Every hostile corpus file (tests/models/test_hostile_images.py) posted to POST /v1/search: never a
500, always 200 or the mapped 413/415/422 with a {"code", "message"} body. The bytes decide the
format, whatever the declared content type or file name says."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from search.settings import Settings
from tests.helpers import garment_image
from tests.models.test_hostile_images import (
    DECODE,
    LARGE,
    LIMIT,
    OK,
    UNSUPPORTED,
    encode,
    heic,
    heic_encoder_available,
    hostile_corpus,
)

STATUS = {OK: 200, DECODE: 422, LARGE: 413, UNSUPPORTED: 415}
CODES = {413: "image_too_large", 415: "unsupported_media_type", 422: "undecodable_image"}
PROBLEM_MEMBERS = {"type", "title", "status", "detail", "code", "message"}  # RFC 9457 and the old two


def post(client: TestClient, data: bytes, filename: str, media_type: str):
    return client.post("/v1/search", files={"image": (filename, data, media_type)}, data={"top_k": "2"})


def test_corpus_fits_the_service_limits(settings: Settings) -> None:
    """Same pixel limit as the decoder tests, and no file trips the byte limit instead."""
    assert settings.max_image_pixels == LIMIT
    assert max(len(case.data) for case in hostile_corpus()) <= settings.max_upload_bytes


@pytest.mark.slow
def test_every_hostile_upload_gets_its_mapped_status(client: TestClient) -> None:
    wrong = []
    for case in hostile_corpus():
        response = post(client, case.data, "upload.bin", "application/octet-stream")
        status = response.status_code
        if status not in {STATUS[outcome] for outcome in case.allowed}:
            wrong.append(f"{case.name}: {status} {response.text[:200]}")
        elif status != 200:
            body = response.json()
            members = set(body) - {"errors"}
            if members != PROBLEM_MEMBERS or body["code"] != CODES[status] or not body["message"]:
                wrong.append(f"{case.name}: {status} with body {body}")
    assert not wrong, f"{len(wrong)} of {len(hostile_corpus())} uploads answered wrongly:\n" + "\n".join(
        wrong
    )


def lying_uploads() -> list[tuple[str, bytes, str, str, int]]:
    photo = garment_image(7)
    cases = [
        ("png-declared-text", encode(photo, "PNG"), "notes.txt", "text/plain", 200),
        ("jpeg-declared-png", encode(photo, "JPEG"), "photo.png", "image/png", 200),
        ("webp-declared-pdf", encode(photo, "WEBP"), "scan.pdf", "application/pdf", 200),
        ("text-declared-jpeg", b"just some text, honest", "photo.jpg", "image/jpeg", 415),
        ("svg-declared-png", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "logo.png", "image/png", 415),
        ("tiff-declared-jpeg", encode(photo, "TIFF"), "photo.jpg", "image/jpeg", 415),
        ("html-declared-gif", b"<html><script>alert(1)</script></html>", "a.gif", "image/gif", 415),
    ]
    if heic_encoder_available():
        cases.append(("heic-declared-jpeg", heic(photo), "IMG_0001.jpg", "image/jpeg", 200))
        cases.append(
            ("heic-declared-octet", heic(Image.new("RGB", (40, 30))), "x", "application/octet-stream", 200)
        )
    return cases


@pytest.mark.parametrize(
    ("data", "filename", "media_type", "status"),
    [case[1:] for case in lying_uploads()],
    ids=[case[0] for case in lying_uploads()],
)
def test_declared_type_and_name_are_ignored(
    client: TestClient, data: bytes, filename: str, media_type: str, status: int
) -> None:
    response = post(client, data, filename, media_type)
    assert response.status_code == status, response.text
    if status != 200:
        assert response.json()["code"] == CODES[status]
