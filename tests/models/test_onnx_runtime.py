"""The shipped ONNX exports (the default runtime, no PyTorch) against the PyTorch reference, the numpy
preprocessing against the torch one it replaced, and clear errors for missing or stale exports."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.errors import ConfigError, ModelMismatchError, WeightsNotFoundError
from models.fashion_net import FashionNetEmbedder
from models.files import file_digest
from models.onnx_runtime import OnnxNetwork, report_path
from models.parser.detector import ParserDetector
from models.runtime import check_runtime, load_network
from models.spec import SHIPPED_EMBEDDER, SHIPPED_MULTITASK, SHIPPED_NETWORKS, SHIPPED_PARSER, EmbedderSpec
from scripts.demo_catalog import street_scene
from tests.helpers import garment_image

torch = pytest.importorskip("torch")
nn = torch.nn


def _conv_bn() -> nn.Module:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))
    with torch.no_grad():  # non-trivial running statistics, so that folding them matters
        module[1].running_mean.uniform_(-1, 1)
        module[1].running_var.uniform_(0.5, 2)
    return module.eval()


def test_fused_module_matches_and_has_no_batch_norm() -> None:
    from models.torch_runtime import fuse_conv_bn

    module, pixels = _conv_bn(), torch.randn(2, 3, 16, 16)
    fused = fuse_conv_bn(module)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    with torch.inference_mode():
        assert torch.allclose(fused(pixels), module(pixels), atol=1e-5)


@pytest.mark.parametrize("weights", SHIPPED_NETWORKS, ids=lambda path: path.stem)
def test_every_shipped_export_is_current_and_checked(weights: Path) -> None:
    report = json.loads(report_path(weights).read_text(encoding="utf-8"))
    assert report["weights_sha256"] == file_digest(weights)
    assert report["onnx_sha256"] == file_digest(weights.with_suffix(".onnx"))
    assert report["check"]["max_abs_diff"] <= report["check"]["tolerance"]


def test_onnx_export_matches_torch_with_a_dynamic_batch() -> None:
    onnx, reference = load_network(SHIPPED_MULTITASK, "onnx", 1), load_network(SHIPPED_MULTITASK, "torch", 1)
    shape = json.loads(report_path(SHIPPED_MULTITASK).read_text(encoding="utf-8"))["input"]["shape"][1:]
    pixels = np.random.default_rng(0).standard_normal((5, *shape), dtype=np.float32)
    found, expected = onnx(pixels), reference(pixels)
    assert found.dtype == np.float32 and found.shape == expected.shape and found.shape[0] == 5
    np.testing.assert_allclose(found, expected, atol=1e-4)


def test_unknown_runtime_and_missing_onnxruntime_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_runtime("onnx") == "onnx"
    with pytest.raises(ConfigError, match="runtime must be one of torch, onnx, got 'tensorrt'"):
        check_runtime("tensorrt")
    with pytest.raises(ConfigError, match="embedder runtime must be torch or onnx"):
        EmbedderSpec(runtime="tvm")
    with pytest.raises(ConfigError, match="runtime 'onnx' runs on the CPU"):
        load_network(SHIPPED_EMBEDDER, "onnx", 1, device="cuda")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(ConfigError, match="pip install onnxruntime, or set the runtime to 'torch'"):
        OnnxNetwork(SHIPPED_EMBEDDER)


def test_missing_and_stale_exports_say_how_to_export(tmp_path: Path) -> None:
    weights = tmp_path / "net.safetensors"
    shutil.copyfile(SHIPPED_EMBEDDER, weights)
    with pytest.raises(WeightsNotFoundError, match=r"net\.onnx.*does not exist.*scripts/export_onnx\.py"):
        OnnxNetwork(weights)
    shutil.copyfile(SHIPPED_MULTITASK.with_suffix(".onnx"), weights.with_suffix(".onnx"))  # another's export
    with pytest.raises(ModelMismatchError, match=r"is stale.*scripts/export_onnx\.py --weights"):
        OnnxNetwork(weights)
    weights.with_suffix(".onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelMismatchError, match="not a loadable ONNX model"):
        OnnxNetwork(weights)


def _torch_embedder_pixels(image: Image.Image, size: int, mean: list[float], std: list[float]) -> np.ndarray:
    """The torch preprocessing the numpy one replaced (fashion-net: squash, [0, 1], normalise)."""
    resized = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    pixels = torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    return ((pixels[None] - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)).numpy()


@pytest.mark.parametrize("weights", [SHIPPED_MULTITASK, SHIPPED_EMBEDDER], ids=lambda path: path.stem)
def test_numpy_preprocessing_equals_the_torch_one(weights: Path) -> None:
    embedder = FashionNetEmbedder(weights) if weights == SHIPPED_EMBEDDER else None
    if embedder is None:
        from models.fashion_net.multitask_embedder import MultiTaskEmbedder

        embedder = MultiTaskEmbedder(weights)
    images = [garment_image(seed) for seed in range(3)] + [Image.new("RGBA", (40, 90), (200, 30, 30, 128))]
    mean, std = embedder._mean.ravel().tolist(), embedder._std.ravel().tolist()
    found = embedder.pixels(images)
    assert found.dtype == np.float32
    for row, image in enumerate(images):
        expected = _torch_embedder_pixels(image, embedder.input_size, mean, std)
        np.testing.assert_allclose(found[row : row + 1], expected, atol=1e-5)


def test_parser_numpy_preprocessing_equals_the_torch_one() -> None:
    parser = ParserDetector(SHIPPED_PARSER)
    scene = street_scene(0, seed=3)
    height, width = parser.config.input_size
    rgb = scene.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    mean = torch.tensor(parser.config.mean).view(1, 3, 1, 1)
    std = torch.tensor(parser.config.std).view(1, 3, 1, 1)
    found = parser._pixels(scene)
    assert found.dtype == np.float32
    np.testing.assert_allclose(found, ((pixels - mean) / std).numpy(), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("flip", [True, False])
def test_parser_runtimes_find_the_same_garments(flip: bool) -> None:
    scene = street_scene(0, seed=3)
    torch_parser = ParserDetector(SHIPPED_PARSER, flip=flip, runtime="torch")
    onnx_parser = ParserDetector(SHIPPED_PARSER, flip=flip, runtime="onnx")
    reference, found = torch_parser.parse(scene), onnx_parser.parse(scene)
    assert np.mean(reference.class_map == found.class_map) > 0.9999
    np.testing.assert_allclose(found.confidence, reference.confidence, atol=1e-4)
    expected = [(g.box, g.category) for g in torch_parser.detect(scene)]
    assert expected and [(g.box, g.category) for g in onnx_parser.detect(scene)] == expected


def test_garment_masks_are_the_nearest_upsampled_component() -> None:
    parser = ParserDetector(SHIPPED_PARSER)
    scene = street_scene(1, seed=5)
    parse = parser.parse(scene)
    width, height = scene.size
    for garment in parser.detect(scene):
        assert garment.mask is not None and garment.mask.shape == (height, width)
        map_h, map_w = parse.class_map.shape
        rows = np.minimum((np.arange(height) + 0.5) * map_h / height, map_h - 1).astype(int)
        cols = np.minimum((np.arange(width) + 0.5) * map_w / width, map_w - 1).astype(int)
        upsampled = parse.class_map[rows[:, None], cols[None, :]]
        assert garment.category is not None
        # every mask pixel carries the garment's class; nothing outside its box is set
        assert np.all(upsampled[garment.mask] == parser.config.classes.index(garment.category))
        x0, y0, x1, y1 = garment.box
        outside = garment.mask.copy()
        outside[y0:y1, x0:x1] = False
        assert garment.mask.any() and not outside.any()


def test_embedder_runtimes_agree() -> None:
    images = [garment_image(seed) for seed in range(5)] + [Image.new("RGB", (40, 90), (200, 30, 30))]
    reference = FashionNetEmbedder(SHIPPED_EMBEDDER, runtime="torch").embed_images(images)
    found = FashionNetEmbedder(SHIPPED_EMBEDDER, runtime="onnx", batch_size=4).embed_images(images)
    assert found.dtype == np.float32 and found.shape == reference.shape
    np.testing.assert_allclose(found, reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(found, axis=1), 1.0, atol=1e-5)
