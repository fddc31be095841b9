"""The service with its real defaults: the shipped garment parser and fashion embedder on a street scene."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from indexer.build import BuildOptions, build_index
from models.attributes.extractor import create_extractor
from models.attributes.taxonomy import load_taxonomy
from models.embedder import create_embedder
from models.parser.taxonomy import GARMENT_CLASSES
from scripts.demo_catalog import generate_catalog
from search.settings import Settings
from service.app import create_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scene_and_client(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("shipped")
    catalog = generate_catalog(root / "catalog", n_items=28, n_scenes=1, size=128)
    settings = Settings(index_dir=root / "index")
    build_index(
        catalog.feed,
        root / "index",
        create_embedder(settings.embedder.to_spec()),
        BuildOptions(progress=False),
        create_extractor(create_embedder(settings.embedder.to_spec())),
    )
    with TestClient(create_app(settings)) as client:
        yield catalog.scenes[0], client


def test_street_scene_returns_several_garments(scene_and_client: tuple[Path, TestClient]) -> None:
    scene, client = scene_and_client
    response = client.post("/v1/search", files={"image": (scene.name, scene.read_bytes(), "image/jpeg")})
    assert response.status_code == 200, response.text
    body = response.json()
    width, height = body["image_size"]
    garments = body["garments"]
    assert len(garments) >= 2
    for garment in garments:
        x0, y0, x1, y1 = garment["box"]
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert garment["category"] in GARMENT_CLASSES and 0 < garment["score"] <= 1
    categories = {garment["category"] for garment in garments}
    assert categories & {"top", "trousers", "dress", "outerwear", "skirt", "footwear", "bag"}
    for garment in garments:
        if garment["matches"] and garment["category"] in client.get("/readyz").json()["categories"]:
            compatible = load_taxonomy().compatible_categories(garment["category"])
            assert {m["category"] for m in garment["matches"]} <= set(compatible)


def test_manifest_names_the_shipped_embedder(scene_and_client: tuple[Path, TestClient]) -> None:
    _, client = scene_and_client
    assert client.get("/readyz").json()["model"].startswith("fashion-net:fashion-net-v3#")
