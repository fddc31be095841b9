"""FashionNet embedder: the real load path with a small random network, errors, and the shipped weights."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from models.errors import ModelMismatchError, WeightsNotFoundError
from models.fashion_net import FashionNet, FashionNetEmbedder, save_weights
from models.fashion_net.data import (
    CCP_TO_LABEL,
    CLOTHING_LABELS,
    COARSE_CATEGORY,
    TRAIN_LABELS,
    ccp_heldout_ids,
    garment_boxes,
)
from models.fashion_net.train import augment
from models.onnx_export import export_onnx
from models.spec import SHIPPED_EMBEDDER
from tests.helpers import DATA_DIR, garment_image

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = FashionNet(dimension=24)
    path = tmp_path_factory.mktemp("weights") / "tiny-fashion.safetensors"
    save_weights(model.eval(), path, labels=list(TRAIN_LABELS), input_size=32)
    export_onnx(path)  # the release step: the default runtime loads the checked export beside the weights
    return path


@pytest.fixture(scope="module")
def embedder(weights_file: Path) -> FashionNetEmbedder:
    return FashionNetEmbedder(weights_file, batch_size=4)


def test_embeddings_are_normalised_float32(embedder: FashionNetEmbedder) -> None:
    vectors = embedder.embed_images([garment_image(i) for i in range(9)])
    assert vectors.dtype == np.float32 and vectors.shape == (9, 24) == (9, embedder.dimension)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert embedder.embed_images([]).shape == (0, 24)


def test_batching_does_not_change_results(embedder: FashionNetEmbedder) -> None:
    images = [garment_image(i) for i in range(6)]
    together = embedder.embed_images(images)
    one_by_one = np.concatenate([embedder.embed_images([image]) for image in images])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_any_image_mode_and_size_is_accepted(embedder: FashionNetEmbedder) -> None:
    images = [
        garment_image(1).convert(mode).resize(size) for mode, size in (("L", (7, 90)), ("RGBA", (300, 40)))
    ]
    assert embedder.embed_images(images).shape == (2, 24)


def test_name_records_the_weights_file_and_digest(embedder: FashionNetEmbedder, weights_file: Path) -> None:
    assert re.fullmatch(r"fashion-net:tiny-fashion#[0-9a-f]{12}", embedder.name)
    assert embedder.input_size == 32 and embedder.labels == list(TRAIN_LABELS)


def test_missing_weights_name_the_file_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "fashion-embedder-v1.safetensors"
    with pytest.raises(WeightsNotFoundError, match="models.fashion_net.train") as info:
        FashionNetEmbedder(missing)
    assert str(missing) in str(info.value)


def _rewrite(source: Path, target: Path, **changes: str) -> Path:
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as handle:
        metadata = dict(handle.metadata())
    save_file(load_file(str(source)), str(target), metadata={**metadata, **changes})
    return target


@pytest.mark.parametrize(
    "changes",
    [
        {"architecture": "resnet50"},
        {"format": "open_clip"},
        {"dimension": "32"},
        {"input_size": "many"},
        {"mean": "[0.5, 0.5]"},
    ],
)
def test_mismatched_metadata_is_refused(weights_file: Path, tmp_path: Path, changes: dict[str, str]) -> None:
    bad = _rewrite(weights_file, tmp_path / "bad.safetensors", **changes)
    with pytest.raises(ModelMismatchError):  # PyTorch loads the tensors into the declared network
        FashionNetEmbedder(bad, runtime="torch")
    # ONNX Runtime: the metadata checks, or (dimension) no export made from these very bytes
    with pytest.raises((ModelMismatchError, WeightsNotFoundError)):
        FashionNetEmbedder(bad)


def test_tensors_from_another_network_are_refused(weights_file: Path, tmp_path: Path) -> None:
    state = load_file(str(weights_file))
    state.pop("project.weight")
    path = tmp_path / "truncated.safetensors"
    save_file(state, str(path), metadata={"format": "fashion-net", "architecture": "fashion-net-mnv3s"})
    with pytest.raises(ModelMismatchError):
        FashionNetEmbedder(path)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelMismatchError):
        FashionNetEmbedder(tmp_path / "junk.safetensors")


@pytest.mark.skipif(not SHIPPED_EMBEDDER.is_file(), reason=f"{SHIPPED_EMBEDDER} not trained yet")
def test_shipped_weights_load_and_embed() -> None:
    assert SHIPPED_EMBEDDER.stat().st_size < 25 * 1024 * 1024
    embedder = FashionNetEmbedder(SHIPPED_EMBEDDER)
    vectors = embedder.embed_images([garment_image(i) for i in range(3)])
    assert vectors.shape == (3, embedder.dimension) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert embedder.name.startswith("fashion-net:fashion-embedder-v1#")
    assert set(CLOTHING_LABELS) <= set(embedder.labels)


def test_garment_boxes_on_a_synthetic_mask() -> None:
    names = ["null", "skirt", "shoes", "skin", "belt"]
    mask = np.zeros((200, 100), dtype=np.uint8)
    mask[50:150, 20:80] = 1  # skirt: large
    mask[190:195, 10:15] = 2  # shoes: too small
    mask[10:40, 10:90] = 3  # skin: not a garment
    boxes = dict(garment_boxes(mask, names, min_pixels=100, min_side=10, margin=0.1))
    assert boxes == {"Skirt": (14, 40, 86, 160)}


def test_taxonomy_tables_agree() -> None:
    assert set(CCP_TO_LABEL.values()) <= set(TRAIN_LABELS)
    assert set(COARSE_CATEGORY) == set(CLOTHING_LABELS)


def test_ccp_heldout_ids_are_the_shared_list() -> None:
    assert ccp_heldout_ids() == set(random.Random(0).sample(range(1, 901), 90))


def test_augmentation_keeps_shape_and_range() -> None:
    pixels = torch.randint(0, 256, (5, 40, 40, 3), dtype=torch.uint8)
    zero, one = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    out = augment(pixels, 32, torch.Generator().manual_seed(0), zero, one)
    assert out.shape == (5, 3, 32, 32) and float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.data
@pytest.mark.skipif(not (DATA_DIR / "clothing" / "images.csv").is_file(), reason=f"no data under {DATA_DIR}")
def test_splits_are_fixed_and_disjoint() -> None:
    from models.fashion_net.data import ccp_samples, clothing_samples, split_clothing

    samples = clothing_samples(DATA_DIR / "clothing")
    train, heldout = split_clothing(samples)
    again = split_clothing(list(reversed(samples)))[1]
    assert [s.path for s in heldout] == [s.path for s in again]
    assert not {s.path for s in train} & {s.path for s in heldout}
    assert {s.label for s in heldout} == set(CLOTHING_LABELS)
    assert 0.13 < len(heldout) / len(samples) < 0.17
    held = {f"{i:04d}.jpg" for i in ccp_heldout_ids()}
    assert not {s.path.name for s in ccp_samples(DATA_DIR / "ccp", heldout=False)} & held
    assert json.loads((DATA_DIR / "ccp" / "labels.json").read_text())[0] == "null"
