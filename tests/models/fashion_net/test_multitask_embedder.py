"""fashion-net-v3 at inference: embeddings and calibrated heads in one pass, the factory that recognises the
format, attributes from the heads, the product gate, and an index built with another model refused."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from indexer.store import IndexStore
from models.attributes.extractor import create_extractor
from models.detector import FullFrameDetector, ProductGate
from models.embedder import create_embedder
from models.embedding import HeadOutput
from models.errors import ConfigError, ModelMismatchError
from models.fashion_net.multitask import HEADS, MultiTaskNet, save_multitask
from models.fashion_net.multitask_embedder import MultiTaskEmbedder
from models.garment import Garment
from models.onnx_export import export_onnx
from models.spec import SHIPPED_MULTITASK, EmbedderSpec
from tests.helpers import garment_image, index_feed, write_catalog


@pytest.fixture(scope="module")
def v3_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded random-init v3 network with non-trivial temperatures, saved like the recipe saves it."""
    torch.manual_seed(0)
    model = MultiTaskNet().eval()
    model.temperatures = {name: 1.0 + 0.25 * i for i, name in enumerate(HEADS)}
    path = tmp_path_factory.mktemp("v3") / "fashion-net-v3-test.safetensors"
    save_multitask(model, path)
    export_onnx(path)  # the release step: the default runtime loads the checked export beside the weights
    return path


@pytest.fixture(scope="module")
def v3(v3_file: Path) -> MultiTaskEmbedder:
    return MultiTaskEmbedder(v3_file, runtime="torch", batch_size=3)


def images(n: int) -> list[Image.Image]:
    return [garment_image(seed) for seed in range(n)]


def test_one_pass_gives_normalised_vectors_and_calibrated_heads(v3: MultiTaskEmbedder) -> None:
    vectors, heads = v3.describe_images(images(5))
    assert vectors.shape == (5, 256) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert heads is not None and len(heads) == 5
    for head in heads:
        assert set(head.probabilities) == set(HEADS)
        for name, probs in head.probabilities.items():
            assert probs.shape == (len(HEADS[name]),)
            assert np.all(probs >= 0) and abs(float(probs.sum()) - 1.0) < 1e-4
        label, probability = head.best("colour")
        assert label in HEADS["colour"] and probability == max(p for _, p in head.ranked("colour"))
    assert np.allclose(v3.embed_images(images(5)), vectors, atol=1e-6)


def test_temperatures_are_applied(v3_file: Path, v3: MultiTaskEmbedder) -> None:
    """The season head's temperature (1 + 0.25 * 5 = 2.25) flattens its softmax against T = 1."""
    from models.fashion_net.multitask import load_multitask

    model = load_multitask(v3_file)
    pixels = torch.randn(1, 3, 112, 112)
    with torch.inference_mode():
        _, logits = model(pixels)
        raw = torch.softmax(logits["season"][0], dim=0).numpy()
        calibrated = model.probabilities(logits)["season"][0].numpy()
    assert model.temperatures["season"] == 2.25
    assert calibrated.max() < raw.max() or np.allclose(raw, calibrated, atol=1e-3)


def test_onnx_runtime_agrees_with_torch(v3_file: Path, v3: MultiTaskEmbedder) -> None:
    onnx = MultiTaskEmbedder(v3_file, runtime="onnx")
    (a, heads_a), (b, heads_b) = v3.describe_images(images(4)), onnx.describe_images(images(4))
    assert np.abs(a - b).max() < 1e-4
    assert heads_a is not None and heads_b is not None
    assert (
        max(
            np.abs(x.probabilities["gate"] - y.probabilities["gate"]).max()
            for x, y in zip(heads_a, heads_b, strict=True)
        )
        < 1e-4
    )


def test_the_factory_recognises_a_v3_file_and_names_it_by_content(v3_file: Path) -> None:
    embedder = create_embedder(EmbedderSpec(pretrained=str(v3_file), runtime="torch"))
    assert isinstance(embedder, MultiTaskEmbedder)
    assert embedder.name.startswith("fashion-net:fashion-net-v3-test#")
    assert set(embedder.head_labels) == set(HEADS)


def head_output(**best: tuple[str, float]) -> HeadOutput:
    """Head outputs where each named head puts `p` on its label and spreads the rest evenly."""
    probabilities = {}
    for name, labels in HEADS.items():
        label, p = best.get(name, (labels[0], 1.0 / len(labels)))
        probs = np.full(len(labels), (1 - p) / max(1, len(labels) - 1), dtype=np.float32)
        probs[labels.index(label)] = p
        probabilities[name] = probs
    return HeadOutput(HEADS, probabilities)


def test_heads_give_model_attributes_only_where_they_apply_and_are_confident(v3: MultiTaskEmbedder) -> None:
    extractor = create_extractor(None, heads=v3, min_head_confidence=0.5, colour_source="model")
    assert {"pattern", "sleeve_length", "footwear_type", "style", "gender", "season"} <= set(
        extractor.predicted_groups
    )
    image = garment_image(3)
    confident = head_output(pattern=("striped", 0.9), sleeve_length=("long", 0.8), colour=("navy", 0.7),
                            gender=("women", 0.3))  # fmt: skip
    top = extractor.for_product(image, "top", None, confident).values
    assert top["pattern"].value == "striped" and top["pattern"].source == "model"
    assert top["pattern"].confidence == pytest.approx(0.9, abs=1e-4)
    assert top["sleeve_length"].value == "long"
    assert top["colour"].value == "navy" and top["colour"].source == "model"
    assert "gender" not in top  # 0.3 < 0.5: unknown, never a guess
    shoe = extractor.for_product(image, "footwear", None, confident).values
    assert "sleeve_length" not in shoe  # sleeves do not apply to footwear


def test_colour_blend_keeps_pixel_evidence(v3: MultiTaskEmbedder) -> None:
    from models.attributes.colour import ColourShare
    from models.attributes.heads import blend_colour

    shares = [ColourShare("red", 0.9), ColourShare("white", 0.1)]
    unsure = head_output(colour=("blue", 0.4))
    assert blend_colour(shares, unsure, "pixels").value == "red"  # type: ignore[union-attr]
    assert blend_colour(shares, unsure, "model").value == "blue"  # type: ignore[union-attr]
    assert blend_colour(shares, unsure, "blend").value == "red"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="colour source"):
        blend_colour(shares, unsure, "vibes")


class _Heads:
    """An embedder stub whose heads say what the test wants."""

    name, dimension, has_text_tower = "stub-v3", 256, False
    head_labels = HEADS

    def __init__(self, product: float, category: str) -> None:
        self.output = head_output(gate=("product", product), category=(category, 0.9))

    def describe_images(self, images: list[Image.Image]) -> tuple[np.ndarray, list[HeadOutput]]:
        return np.zeros((len(images), 256), np.float32), [self.output] * len(images)


class _Street:
    name = "street"

    def detect(self, image: Image.Image) -> list[Garment]:
        return [Garment((1, 1, 5, 5), "top", 0.8), Garment((5, 5, 9, 9), "hat", 0.6)]


def test_the_gate_makes_a_product_photo_one_whole_garment_and_leaves_street_photos_to_the_parser() -> None:
    image = Image.new("RGB", (60, 80), "white")
    product = ProductGate(_Street(), _Heads(0.93, "trousers")).detect(image)  # type: ignore[arg-type]
    assert product == [Garment((0, 0, 60, 80), "trousers", 0.93, product_shot=True)]
    watch = ProductGate(_Street(), _Heads(0.95, "other")).detect(image)  # type: ignore[arg-type]
    assert watch[0].category is None  # not a garment category: matched by look alone
    street = ProductGate(_Street(), _Heads(0.2, "top")).detect(image)  # type: ignore[arg-type]
    assert [g.category for g in street] == ["top", "hat"]
    assert not any(g.product_shot for g in street)
    without_heads = _Heads(0.95, "top")
    without_heads.head_labels = {}  # type: ignore[assignment]  # what a v1 embedder reports
    with pytest.raises(ConfigError, match="no product gate head"):
        ProductGate(_Street(), without_heads)  # type: ignore[arg-type]


def test_an_index_built_with_another_model_is_refused_with_rebuild_it(
    tmp_path: Path, tiny_embedder: object, v3: MultiTaskEmbedder
) -> None:
    from search.searcher import OutfitSearcher

    out = tmp_path / "index"
    index_feed(write_catalog(tmp_path / "feed", 4), out, tiny_embedder)
    store = IndexStore.open(out)
    try:
        with pytest.raises(ModelMismatchError, match="rebuild the index"):
            OutfitSearcher(FullFrameDetector(), v3, store, create_extractor(None, heads=v3))
    finally:
        store.close()


def test_match_explanations_include_model_predicted_attributes(tmp_path: Path, v3: MultiTaskEmbedder) -> None:
    """Catalogue items get head attributes at index time (source "model"); a search's matches explain
    themselves with them."""
    from indexer.build import BuildOptions, build_index
    from search.ranking import RankingConfig
    from search.responses import search_response
    from search.searcher import OutfitSearcher, SearchRequest

    out = tmp_path / "index"
    extractor = create_extractor(None, heads=v3, min_head_confidence=0.0)  # random weights: never confident
    build_index(write_catalog(tmp_path / "feed", 6), out, v3, BuildOptions(progress=False), extractor)
    store = IndexStore.open(out)
    try:
        searcher = OutfitSearcher(FullFrameDetector(), v3, store, extractor, RankingConfig())
        result = searcher.search(garment_image(2), SearchRequest(top_k=3))
    finally:
        store.close()
    response = search_response(result, (64, 64), result.timings_ms)
    garment = response.garments[0]
    assert garment.attributes["style"].source == "model"
    explained = [a for m in garment.matches for a in (*m.matched, *m.mismatched) if a.source == "model"]
    assert explained, "no match explanation names a model-predicted attribute"


def test_the_shipped_gate_separates_generated_product_shots_from_street_scenes(tmp_path: Path) -> None:
    if not SHIPPED_MULTITASK.is_file():
        pytest.skip(f"{SHIPPED_MULTITASK} is not trained yet")
    from scripts.demo_catalog import generate_catalog

    catalog = generate_catalog(tmp_path / "catalog", n_items=12, n_scenes=4)
    gate = ProductGate(FullFrameDetector(), MultiTaskEmbedder(SHIPPED_MULTITASK))
    shots = sorted((tmp_path / "catalog" / "images").glob("*.jpg"))
    products = [gate.product_probability(Image.open(path).convert("RGB"))[0] for path in shots]
    scenes = [gate.product_probability(Image.open(path).convert("RGB"))[0] for path in catalog.scenes]
    opened = sum(p >= gate.threshold for p in products)
    assert opened >= 0.9 * len(products) and max(scenes) < gate.threshold, (products, scenes)


class _SureItIsADress(MultiTaskEmbedder):
    """The random v3 network, with a category head that is sure every product is a dress."""

    def describe_images(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, list[HeadOutput] | None]:
        vectors, _ = super().describe_images(images)
        return vectors, [head_output(category=("dress", 0.8))] * len(images)


def test_an_unknown_feed_category_is_named_by_the_category_head(tmp_path: Path, v3_file: Path) -> None:
    import json

    from indexer.build import BuildOptions, build_index

    embedder = _SureItIsADress(v3_file, runtime="torch")
    feed = write_catalog(tmp_path / "feed", 2)
    rows = [json.loads(line) for line in feed.read_text().splitlines()]
    rows[0]["category"] = "mystery garment"
    feed.write_text("".join(json.dumps(row) + "\n" for row in rows))
    extractor = create_extractor(None, heads=embedder)
    build_index(feed, tmp_path / "index", embedder, BuildOptions(progress=False), extractor)
    store = IndexStore.open(tmp_path / "index")
    try:
        guessed, given = store.item(rows[0]["id"]), store.item(rows[1]["id"])
    finally:
        store.close()
    assert guessed is not None and given is not None
    assert guessed.category == "dress"
    assert guessed.attributes["category"].source == "predicted"
    assert guessed.attributes["category"].confidence == pytest.approx(0.8, abs=1e-4)
    assert guessed.extra_attributes["feed_category"] == "mystery garment"
    assert given.category == rows[1]["category"] and "category" not in given.attributes


def test_auto_colour_takes_the_head_for_products_and_the_blend_for_masked_street_garments(
    v3: MultiTaskEmbedder,
) -> None:
    extractor = create_extractor(None, heads=v3)  # colour_source "auto" by default
    red = Image.new("RGB", (64, 64), (200, 20, 30))
    head = head_output(colour=("navy", 0.7))
    assert extractor.for_product(red, "top", None, head).values["colour"].value == "navy"
    mask = np.zeros((64, 64), dtype=bool)
    mask[8:56, 8:56] = True
    street = Garment((8, 8, 56, 56), "top", 0.9, mask)
    (found,) = extractor.for_garments(red, [street], None, [head])
    assert found.values["colour"].value == "red"  # 0.5 x pixel share 1.0 beats 0.5 x head 0.7
    with pytest.raises(ValueError, match="colour source"):
        create_extractor(None, heads=v3, colour_source="vibes")
