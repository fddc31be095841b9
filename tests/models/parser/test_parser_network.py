from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file

from models.detector import Garment
from models.errors import ModelMismatchError, WeightsNotFoundError
from models.onnx_export import export_onnx
from models.parser.detector import ParserDetector
from models.parser.network import ParserConfig, build_network, load_network, read_config, save_weights
from models.parser.taxonomy import GARMENT_CLASSES, PARSER_CLASSES
from models.spec import SHIPPED_PARSER as DEFAULT_WEIGHTS
from tests.helpers import DATA_DIR

REPO_ROOT = Path(__file__).resolve().parents[3]
SMALL = ParserConfig(input_size=(64, 48))


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("parser") / "random.safetensors"
    save_weights(build_network(SMALL), path, SMALL)
    export_onnx(path)  # the release step: the default runtime loads the checked export beside the weights
    return path


def street_photo(tmp_path: Path) -> Image.Image:
    image = Image.new("RGB", (110, 170), (200, 205, 210))
    draw = ImageDraw.Draw(image)
    draw.rectangle((35, 30, 75, 80), fill=(180, 30, 40))
    draw.rectangle((38, 80, 72, 150), fill=(30, 40, 120))
    draw.ellipse((30, 150, 50, 165), fill=(10, 10, 10))
    image.save(tmp_path / "street.jpg")
    return Image.open(tmp_path / "street.jpg")


def test_saved_random_network_loads_through_the_real_path_with_expected_shapes(random_weights: Path) -> None:
    network, config = load_network(random_weights)
    assert config == SMALL and not network.training
    with torch.inference_mode():
        logits = network(torch.randn(2, 3, *config.input_size))
    assert logits.shape == (2, len(PARSER_CLASSES), 64, 48) and logits.dtype == torch.float32
    assert all(
        t.dtype == torch.float16 for t in load_file(str(random_weights)).values() if t.is_floating_point()
    )


def test_missing_weights_name_the_file_and_the_training_command(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "garment-parser-v9.safetensors"
    with pytest.raises(WeightsNotFoundError, match="garment-parser-v9.safetensors") as raised:
        ParserDetector(missing)
    assert "python -m models.parser.train" in str(raised.value)


def _rewrite(source: Path, target: Path, **metadata: str) -> Path:
    tensors = load_file(str(source))
    save_file(tensors, str(target), metadata={**SMALL.to_metadata(), **metadata})
    return target


def test_wrong_classes_or_architecture_is_a_mismatch(random_weights: Path, tmp_path: Path) -> None:
    shuffled = json.dumps(list(reversed(PARSER_CLASSES)))
    with pytest.raises(ModelMismatchError, match="classes"):
        load_network(_rewrite(random_weights, tmp_path / "classes.safetensors", classes=shuffled))
    with pytest.raises(ModelMismatchError, match="architecture"):
        load_network(
            _rewrite(random_weights, tmp_path / "arch.safetensors", architecture="deeplabv3_resnet50")
        )
    save_file({"x": torch.zeros(2)}, str(tmp_path / "bare.safetensors"))
    with pytest.raises(ModelMismatchError, match="metadata"):
        read_config(tmp_path / "bare.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ModelMismatchError):
        read_config(tmp_path / "junk.safetensors")


def _check_garments(garments: list[Garment], image: Image.Image) -> None:
    assert isinstance(garments, list)
    width, height = image.size
    for garment in garments:
        x0, y0, x1, y1 = garment.box
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert garment.category in GARMENT_CLASSES and 0.0 <= garment.score <= 1.0
        assert (
            garment.mask is not None and garment.mask.shape == (height, width) and garment.mask.dtype == bool
        )
        ys, xs = np.nonzero(garment.mask)
        assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
    # Shopper's order (issue 17): area x score, largest and most confident first (scaled masks: ~10 %)
    keys = [float(garment.mask.sum()) * garment.score for garment in garments if garment.mask is not None]
    assert all(first >= 0.9 * second for first, second in zip(keys, keys[1:], strict=False))


def test_random_network_detects_through_the_full_pipeline(random_weights: Path, tmp_path: Path) -> None:
    detector = ParserDetector(random_weights, min_area_frac=0.0)
    assert detector.name == "garment-parser"
    image = street_photo(tmp_path)
    _check_garments(detector.detect(image), image)
    rgba = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    _check_garments(detector.detect(rgba), rgba)


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason=f"shipped weights absent: {DEFAULT_WEIGHTS}")
def test_shipped_weights_load_and_detect(tmp_path: Path) -> None:
    detector = ParserDetector(threads=1)
    assert detector.config.classes == PARSER_CLASSES
    image = street_photo(tmp_path)
    _check_garments(detector.detect(image), image)


@pytest.mark.data
def test_shipped_weights_find_garments_on_a_held_out_photo() -> None:
    from models.parser.data import heldout_ids, photo_path

    photo = photo_path(DATA_DIR / "ccp", heldout_ids()[0])
    if not photo.is_file():
        pytest.skip(f"CCP data not found at {photo} (set FASHION_DATA_DIR)")
    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip(f"shipped weights absent: {DEFAULT_WEIGHTS}")
    with Image.open(photo) as handle:
        image = handle.convert("RGB")
    garments = ParserDetector(threads=1).detect(image)
    _check_garments(garments, image)
    assert len({garment.category for garment in garments}) >= 2
