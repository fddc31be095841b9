"""ONNX Runtime path and conv/batch-norm fusion: same outputs as the PyTorch reference, clear errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from models.errors import ConfigError
from models.fashion_net import FashionNetEmbedder
from models.onnx_runtime import OnnxModule, check_runtime, fuse_conv_bn
from models.parser.detector import ParserDetector
from models.spec import SHIPPED_EMBEDDER, SHIPPED_PARSER, EmbedderSpec
from scripts.demo_catalog import street_scene
from tests.helpers import garment_image


def _conv_bn() -> nn.Module:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))
    with torch.no_grad():  # non-trivial running statistics, so that folding them matters
        module[1].running_mean.uniform_(-1, 1)
        module[1].running_var.uniform_(0.5, 2)
    return module.eval()


def test_fused_module_matches_and_has_no_batch_norm() -> None:
    module, pixels = _conv_bn(), torch.randn(2, 3, 16, 16)
    fused = fuse_conv_bn(module)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    with torch.inference_mode():
        assert torch.allclose(fused(pixels), module(pixels), atol=1e-5)


def test_onnx_module_matches_torch_with_a_dynamic_batch() -> None:
    module = _conv_bn()
    onnx = OnnxModule(module, torch.zeros(1, 3, 16, 16), ("out",), threads=1, dynamic={0: "n"})
    pixels = torch.randn(5, 3, 16, 16)
    with torch.inference_mode():
        expected = module(pixels).numpy()
    (found,) = onnx(pixels.numpy())
    assert found.shape == (5, 4, 16, 16)
    np.testing.assert_allclose(found, expected, atol=1e-5)


def test_unknown_runtime_and_missing_onnxruntime_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_runtime("onnx") == "onnx"
    with pytest.raises(ConfigError, match="runtime must be one of torch, onnx, got 'tensorrt'"):
        check_runtime("tensorrt")
    with pytest.raises(ConfigError, match="embedder runtime must be torch or onnx"):
        EmbedderSpec(runtime="tvm")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(ConfigError, match="pip install onnxruntime onnx, or set the runtime to 'torch'"):
        OnnxModule(_conv_bn(), torch.zeros(1, 3, 8, 8), ("out",))


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
