"""fashion-net-v3: heads, calibrated probabilities, the weights file contract, label mappings and splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from models.errors import ModelMismatchError, WeightsNotFoundError
from models.fashion_net.data import TRAIN_LABELS, Sample, ccp_heldout_ids, ccp_samples
from models.fashion_net.fpi import (
    ARTICLE_CATEGORY,
    CCP_FOOTWEAR,
    COLOUR_MAP,
    FOOTWEAR_TYPE,
    GENDER_MAP,
    SEASON_MAP,
    USAGE_STYLE,
    FpiProduct,
    calibration_keys,
    ccp_crops,
    ccp_scenes,
    clothing_labels,
    fpi_validation_ids,
    product_labels,
    read_fpi,
    split_fpi,
    title_pattern,
)
from models.fashion_net.multitask import (
    ARTICLE_LABELS,
    CATEGORY_LABELS,
    CLOTHING_ARTICLE,
    COLOUR_LABELS,
    DIMENSION,
    FPI_ARTICLES,
    HEAD_SOURCES,
    HEADS,
    IGNORE_INDEX,
    INPUT_SIZE,
    MultiTaskNet,
    Part,
    fit_temperatures,
    init_from_v1,
    load_multitask,
    read_multitask_metadata,
    save_multitask,
)
from models.fashion_net.train import augment
from models.spec import SHIPPED_EMBEDDER, SHIPPED_MULTITASK
from tests.helpers import DATA_DIR

REPO_ROOT = Path(__file__).resolve().parents[3]
TAXONOMY = json.loads((REPO_ROOT / "models" / "attributes" / "taxonomy.json").read_text())
TAXONOMY_VALUES = {group["name"]: [v["name"] for v in group["values"]] for group in TAXONOMY["groups"]}

needs_fpi = pytest.mark.skipif(
    not (DATA_DIR / "fpi-train" / "styles.csv").is_file(), reason=f"no {DATA_DIR}/fpi-train"
)
needs_ccp = pytest.mark.skipif(not (DATA_DIR / "ccp" / "labels.json").is_file(), reason=f"no {DATA_DIR}/ccp")


@pytest.fixture(scope="module")
def model() -> MultiTaskNet:
    torch.manual_seed(0)
    net = MultiTaskNet().eval()
    net.temperatures = {name: 0.5 + i * 0.3 for i, name in enumerate(HEADS)}
    return net


@pytest.fixture(scope="module")
def weights_file(model: MultiTaskNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("v3") / "tiny-v3.safetensors"
    save_multitask(model, path, training={"note": "test"})
    return path


def pixels(n: int = 3, size: int = 64) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


# --- network ----------------------------------------------------------------------------------------


def test_forward_gives_a_normalised_embedding_and_logits_for_every_head(model: MultiTaskNet) -> None:
    with torch.inference_mode():
        embedding, logits = model(pixels())
    assert embedding.shape == (3, DIMENSION) and embedding.dtype == torch.float32
    assert torch.allclose(embedding.norm(dim=1), torch.ones(3), atol=1e-5)
    assert list(logits) == list(HEADS)
    for name, labels in HEADS.items():
        assert logits[name].shape == (3, len(labels)), name
        assert logits[name].dtype == torch.float32


def test_probabilities_apply_the_temperature_and_sum_to_one(model: MultiTaskNet) -> None:
    with torch.inference_mode():
        _, logits = model(pixels())
        probabilities = model.probabilities(logits)
    for name, value in probabilities.items():
        assert value.min() >= 0 and value.max() <= 1
        assert torch.allclose(value.sum(dim=1), torch.ones(3), atol=1e-5), name
        expected = torch.softmax(logits[name] / model.temperatures[name], dim=1)
        assert torch.allclose(value, expected)


def test_every_head_names_its_sources_and_labels_are_unique() -> None:
    assert set(HEAD_SOURCES) == set(HEADS)
    for name, labels in HEADS.items():
        assert len(set(labels)) == len(labels) >= 2, name
        assert HEAD_SOURCES[name] and set(HEAD_SOURCES[name]) <= {"fpi", "clothing", "ccp", "scene"}


def test_init_from_v1_copies_the_trunk_and_embedding_path() -> None:
    if not SHIPPED_EMBEDDER.is_file():
        pytest.skip(f"{SHIPPED_EMBEDDER} is not in this checkout")
    net = MultiTaskNet()
    init_from_v1(net, SHIPPED_EMBEDDER)
    v1 = load_file(str(SHIPPED_EMBEDDER))
    state = net.state_dict()
    assert all(torch.equal(state[key], value) for key, value in v1.items())


def test_init_from_v1_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="absent.safetensors"):
        init_from_v1(MultiTaskNet(), tmp_path / "absent.safetensors")


# --- weights file -----------------------------------------------------------------------------------


def test_save_load_roundtrip_keeps_outputs_labels_and_temperatures(
    model: MultiTaskNet, weights_file: Path
) -> None:
    loaded = load_multitask(weights_file)
    assert not loaded.training
    assert loaded.temperatures == pytest.approx(model.temperatures)
    assert loaded.head_labels == HEADS
    metadata = read_multitask_metadata(weights_file)
    assert metadata["heads"] == HEADS
    assert metadata["head_sources"] == HEAD_SOURCES
    assert (metadata["dimension"], metadata["input_size"]) == (DIMENSION, INPUT_SIZE)
    assert metadata["training"] == {"note": "test"}
    with torch.inference_mode():
        expected, expected_logits = model(pixels())
        actual, actual_logits = loaded(pixels())
    assert torch.allclose(expected, actual, atol=1e-6)
    assert all(torch.allclose(expected_logits[k], actual_logits[k], atol=1e-5) for k in HEADS)


def test_weights_file_is_small(weights_file: Path) -> None:
    assert weights_file.stat().st_size < 50 * 2**20


def _rewrite(source: Path, target: Path, **changes: str) -> Path:
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
    metadata.update(changes)
    save_file(load_file(str(source)), str(target), metadata=metadata)
    return target


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"architecture": "fashion-net-mnv3s"}, "architecture"),
        ({"dimension": "128"}, "dimension"),
        ({"heads": json.dumps({k: list(v) for k, v in HEADS.items() if k != "gate"})}, "heads"),
        ({"heads": json.dumps({k: list(v)[::-1] for k, v in HEADS.items()})}, "head 'category'"),
        ({"temperatures": json.dumps(dict.fromkeys(HEADS, 0.0))}, "temperatures"),
        ({"temperatures": "not json"}, "malformed"),
    ],
)
def test_metadata_mismatch_raises(
    weights_file: Path, tmp_path: Path, change: dict[str, str], message: str
) -> None:
    bad = _rewrite(weights_file, tmp_path / "bad.safetensors", **change)
    with pytest.raises(ModelMismatchError, match=message):
        load_multitask(bad)


def test_tensors_that_do_not_fit_raise(weights_file: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(weights_file), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
    state = load_file(str(weights_file))
    state["heads.colour.weight"] = state["heads.colour.weight"][:-1]
    save_file(state, str(tmp_path / "short.safetensors"), metadata=metadata)
    with pytest.raises(ModelMismatchError, match="does not fit"):
        load_multitask(tmp_path / "short.safetensors")


def test_a_non_safetensors_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelMismatchError, match="not a readable safetensors"):
        load_multitask(path)


def test_missing_weights_name_the_path_and_the_training_command(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "fashion-net-v3.safetensors"
    with pytest.raises(WeightsNotFoundError) as raised:
        load_multitask(path)
    assert str(path) in str(raised.value)
    assert "python -m models.fashion_net.train_v3" in str(raised.value)


def test_the_shipped_v3_weights_load_if_present() -> None:
    if not SHIPPED_MULTITASK.is_file():
        pytest.skip(f"{SHIPPED_MULTITASK} has not been trained yet")
    net = load_multitask(SHIPPED_MULTITASK)
    assert read_multitask_metadata(SHIPPED_MULTITASK)["training"]["epochs"] >= 1
    assert SHIPPED_MULTITASK.stat().st_size < 50 * 2**20
    with torch.inference_mode():
        embedding, logits = net(pixels(2, INPUT_SIZE))
    assert embedding.shape == (2, DIMENSION) and set(logits) == set(HEADS)


# --- label mappings ---------------------------------------------------------------------------------


def test_head_values_are_taxonomy_values() -> None:
    assert set(CATEGORY_LABELS) - {"other"} == set(TAXONOMY["categories"])
    for head, group in [
        ("colour", "colour"),
        ("style", "style"),
        ("pattern", "pattern"),
        ("footwear_type", "footwear_type"),
        ("sleeve_length", "sleeve_length"),
        ("gender", "gender"),
    ]:
        assert set(HEADS[head]) <= set(TAXONOMY_VALUES[group]), head


def test_colour_map_covers_every_fpi_colour_name() -> None:
    readme_names = {"Black", "White", "Blue", "Brown", "Pink", "Red", "Multi"}
    assert readme_names <= set(COLOUR_MAP)
    assert len(COLOUR_MAP) == 46
    assert COLOUR_MAP["Multi"] is None
    assert {value for value in COLOUR_MAP.values() if value} == set(COLOUR_LABELS)
    assert COLOUR_MAP["Navy Blue"] == "navy" and COLOUR_MAP["Maroon"] == "burgundy"


def test_usage_gender_season_maps_cover_the_readme_values() -> None:
    assert {"Casual", "Ethnic", "Sports", "Formal"} <= set(USAGE_STYLE)
    assert {v for v in USAGE_STYLE.values() if v} <= set(HEADS["style"])
    assert USAGE_STYLE["Ethnic"] is None
    assert set(GENDER_MAP) == {"Women", "Men", "Unisex", "Boys", "Girls"}
    assert set(GENDER_MAP.values()) == set(HEADS["gender"])
    assert set(SEASON_MAP.values()) == set(HEADS["season"])


def test_article_mappings_cover_the_readme_article_types_and_every_class() -> None:
    readme = {
        "Watches",
        "Tshirts",
        "Casual Shoes",
        "Handbags",
        "Heels",
        "Kurtas",
        "Tops",
        "Shirts",
        "Dresses",
    }
    assert readme | {"Jeans"} <= set(FPI_ARTICLES)
    assert all(article in ARTICLE_CATEGORY for article in FPI_ARTICLES)
    assert set(ARTICLE_CATEGORY.values()) <= set(CATEGORY_LABELS)
    assert ARTICLE_CATEGORY["Watches"] == "other" and ARTICLE_CATEGORY["Casual Shoes"] == "footwear"
    assert set(FOOTWEAR_TYPE.values()) <= set(HEADS["footwear_type"])
    assert set(CCP_FOOTWEAR.values()) <= set(HEADS["footwear_type"])
    assert all(ARTICLE_CATEGORY[article] == "footwear" for article in FOOTWEAR_TYPE)
    assert set(CLOTHING_ARTICLE.values()) <= set(FPI_ARTICLES)
    for label in TRAIN_LABELS:  # every v1 training label has an article / embedding class
        assert CLOTHING_ARTICLE.get(label, label) in ARTICLE_LABELS, label
        assert clothing_labels(label)["category"] in CATEGORY_LABELS, label


@pytest.mark.parametrize(
    ("title", "pattern"),
    [
        ("Roadster Men Navy Blue Printed T-shirt", "graphic"),
        ("Nike Women Floral Print Top", "floral"),
        ("Arrow Men Checked Shirt", "checked"),
        ("Puma Men Striped Polo", "striped"),
        ("Vero Moda Women Polka Dot Dress", "dotted"),
        ("Basics Men Solid Trousers", "solid"),
        ("Basics Men Navy Trousers", None),  # no pattern word: ignored, not "solid"
        ("Checkmate Women Bag", None),
    ],
)
def test_title_patterns(title: str, pattern: str | None) -> None:
    assert title_pattern(title) == pattern


def _product(item_id: str, article: str = "Tshirts", title: str = "X Men Blue Tshirt") -> FpiProduct:
    return FpiProduct(item_id, Path(f"{item_id}.jpg"), "Men", "Apparel", "Topwear", article, "Navy Blue",
                      "Summer", "Ethnic", title)  # fmt: skip


def test_product_labels_and_targets_ignore_what_is_missing() -> None:
    labels = product_labels(_product("1", "Camisoles", "X Women Sleeveless Camisole"))
    assert labels["colour"] == "navy" and labels["style"] is None and labels["pattern"] is None
    assert labels["sleeve_length"] == "sleeveless" and labels["footwear_type"] is None
    part = Part("fpi")
    part.add(_sample("1"), "1", labels)
    part.add(_sample("2"), "2", {"colour": "light blue", "gate": "product"})  # not a head value: ignored
    targets = part.targets()
    names = list(HEADS)
    assert targets[0, names.index("colour")] == COLOUR_LABELS.index("navy")
    assert targets[0, names.index("style")] == IGNORE_INDEX
    assert targets[1, names.index("colour")] == IGNORE_INDEX
    assert targets[1, names.index("gate")] == HEADS["gate"].index("product")
    scene = Part("scene")
    scene.add(_sample("3"), "3", {"gate": "scene", "colour": "black"})  # colour is not a scene head
    assert scene.targets()[0, names.index("colour")] == IGNORE_INDEX


def _sample(key: str) -> Sample:
    return Sample(Path(f"{key}.jpg"), "x", "fpi")


# --- splits -----------------------------------------------------------------------------------------


def test_fpi_split_is_deterministic_disjoint_and_order_independent() -> None:
    ids = [str(i) for i in range(34762, 36762)]
    held = fpi_validation_ids(ids)
    assert held == fpi_validation_ids(list(reversed(ids))) == fpi_validation_ids(set(ids))
    assert len(held) == 200 and held <= set(ids)
    assert held != fpi_validation_ids(ids, seed=1)
    products = [_product(i) for i in ids]
    train, validation = split_fpi(products)
    assert {p.item_id for p in validation} == held
    assert not {p.item_id for p in train} & held
    assert len(train) + len(validation) == len(products)


def test_calibration_keys_are_a_seeded_slice() -> None:
    keys = [str(i) for i in range(1000)]
    picked = calibration_keys(keys, seed=0)
    assert picked == calibration_keys(list(reversed(keys)), seed=0) and len(picked) == 50


def test_augment_keeps_shape_and_is_seeded() -> None:
    raw = torch.randint(0, 256, (4, 40, 40, 3), dtype=torch.uint8)
    mean, std = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    area = torch.tensor([0.2, 0.45, 0.45, 1.0])
    first = augment(raw, 32, torch.Generator().manual_seed(0), mean, std, min_area=area)
    second = augment(raw, 32, torch.Generator().manual_seed(0), mean, std, min_area=area)
    assert first.shape == (4, 3, 32, 32) and torch.equal(first, second)
    assert 0.0 <= float(first.min()) and float(first.max()) <= 1.0


# --- real data --------------------------------------------------------------------------------------


@pytest.mark.data
@needs_fpi
def test_real_fpi_split_and_mappings() -> None:
    products = read_fpi(DATA_DIR / "fpi-train")
    assert products and not any(p.master_category in {"Personal Care", "Home"} for p in products)
    train, validation = split_fpi(products)
    assert not {p.item_id for p in train} & {p.item_id for p in validation}
    assert len(validation) == round(0.1 * len(products))
    assert {p.base_colour for p in products} <= set(COLOUR_MAP)
    assert {p.article_type for p in products} <= set(ARTICLE_CATEGORY)
    assert {p.usage for p in products} <= set(USAGE_STYLE)


@pytest.mark.data
@needs_ccp
def test_real_ccp_crops_match_v1_and_never_use_held_out_photos() -> None:
    crops = ccp_crops(DATA_DIR / "ccp", heldout=False)
    v1 = ccp_samples(DATA_DIR / "ccp", heldout=False)
    assert [(s.path, s.label, s.box) for s in crops.samples] == [(s.path, s.label, s.box) for s in v1]
    held = {str(i) for i in ccp_heldout_ids()}
    scenes = ccp_scenes(DATA_DIR / "ccp", heldout=False)
    assert not (set(crops.keys) | set(scenes.keys)) & held
    assert set(ccp_scenes(DATA_DIR / "ccp", heldout=True).keys) == held
    assert np.all(scenes.targets()[:, list(HEADS).index("gate")] == HEADS["gate"].index("scene"))


def test_fit_temperatures_stays_in_range_and_skips_heads_without_labels() -> None:
    torch.manual_seed(0)
    net = MultiTaskNet().eval()
    raw = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    targets = np.full((12, len(HEADS)), IGNORE_INDEX, dtype=np.int64)
    targets[:, list(HEADS).index("gate")] = np.arange(12) % 2
    mean, std = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    temperatures = fit_temperatures(net, raw, targets, 32, mean, std)
    assert set(temperatures) == set(HEADS)
    assert 0.25 <= temperatures["gate"] <= 8.0
    assert all(value == 1.0 for name, value in temperatures.items() if name != "gate")
