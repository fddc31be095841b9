from __future__ import annotations

from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from models.embedder import Embedder, create_embedder
from models.errors import ModelMismatchError, WeightsNotFoundError
from models.openclip_loader import save_checkpoint
from models.spec import EmbedderSpec
from tests.helpers import OTHER_TINY_MODEL, TINY_MODEL, garment_image


@pytest.fixture(autouse=True)
def _empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may find weights in a real cache or reach the network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def test_embeddings_are_normalised_float32(tiny_embedder: Embedder) -> None:
    vectors = tiny_embedder.embed_images([garment_image(i) for i in range(11)])
    assert vectors.dtype == np.float32 and vectors.shape == (11, tiny_embedder.dimension)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert tiny_embedder.embed_images([]).shape == (0, tiny_embedder.dimension)


def test_batching_does_not_change_results(tiny_embedder: Embedder) -> None:
    images = [garment_image(i) for i in range(10)]
    together = tiny_embedder.embed_images(images)
    one_by_one = np.concatenate([tiny_embedder.embed_images([image]) for image in images])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_different_images_embed_differently(tiny_embedder: Embedder) -> None:
    vectors = tiny_embedder.embed_images([garment_image(1), garment_image(2)])
    assert float(vectors[0] @ vectors[1]) < 0.9999


def test_random_init_is_named_as_such(tiny_embedder: Embedder) -> None:
    assert tiny_embedder.name == f"open_clip:{TINY_MODEL}/random:seed=0"
    assert tiny_embedder.dimension == 32


def test_local_checkpoint_round_trip(
    tmp_path: Path, tiny_spec: EmbedderSpec, tiny_embedder: Embedder
) -> None:
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_MODEL, pretrained=None)
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(model, path, TINY_MODEL)
    loaded = create_embedder(EmbedderSpec(kind="open_clip", model_name=TINY_MODEL, pretrained=str(path)))
    assert loaded.name.startswith(f"open_clip:{TINY_MODEL}/file:tiny.safetensors#")
    images = [garment_image(i) for i in range(3)]
    np.testing.assert_allclose(loaded.embed_images(images), tiny_embedder.embed_images(images), atol=1e-5)


def test_local_dir_schema_loads_config_and_weights(tmp_path: Path, tiny_embedder: Embedder) -> None:
    import json

    from tests.helpers import TINY_CONFIG

    torch.manual_seed(0)
    model = open_clip.create_model(TINY_MODEL, pretrained=None)
    save_checkpoint(model, tmp_path / "open_clip_model.safetensors", TINY_MODEL)
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CONFIG}))
    loaded = create_embedder(
        EmbedderSpec(kind="open_clip", model_name=f"local-dir:{tmp_path}", pretrained=None)
    )
    images = [garment_image(7)]
    np.testing.assert_allclose(loaded.embed_images(images), tiny_embedder.embed_images(images), atol=1e-5)


def test_missing_weights_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "weights.safetensors"
    with pytest.raises(WeightsNotFoundError, match="nowhere/weights.safetensors"):
        create_embedder(EmbedderSpec(kind="open_clip", model_name=TINY_MODEL, pretrained=str(missing)))


def test_no_weights_configured_is_an_error_not_random() -> None:
    with pytest.raises(WeightsNotFoundError, match="no weights configured"):
        create_embedder(EmbedderSpec(kind="open_clip", model_name=TINY_MODEL, pretrained=None))


def test_uncached_tag_gives_offline_fix_without_network() -> None:
    with pytest.raises(WeightsNotFoundError, match="not cached locally.*huggingface-cli download laion/"):
        create_embedder(EmbedderSpec(kind="open_clip", model_name="ViT-B-32", pretrained="laion2b_s34b_b79k"))


def test_uncached_hub_model_gives_offline_fix() -> None:
    with pytest.raises(WeightsNotFoundError, match="Marqo/marqo-fashionSigLIP.*local-dir"):
        create_embedder(
            EmbedderSpec(kind="open_clip", model_name="hf-hub:Marqo/marqo-fashionSigLIP", pretrained=None)
        )


def test_local_dir_without_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "open_clip_config.json").write_text("{}")
    with pytest.raises(WeightsNotFoundError, match="no checkpoint file"):
        create_embedder(EmbedderSpec(kind="open_clip", model_name=f"local-dir:{tmp_path}", pretrained=None))


def test_quick_gelu_mismatch_is_refused() -> None:
    # open_clip issue #771: the OpenAI weights need QuickGELU; plain ViT-B-32 would embed silently wrong.
    with pytest.raises(ModelMismatchError, match="quickgelu"):
        create_embedder(EmbedderSpec(kind="open_clip", model_name="ViT-B-32", pretrained="openai"))


def test_checkpoint_recorded_for_other_architecture_is_refused(tmp_path: Path) -> None:
    model = open_clip.create_model(OTHER_TINY_MODEL, pretrained=None)
    path = tmp_path / "other.safetensors"
    save_checkpoint(model, path, OTHER_TINY_MODEL)
    with pytest.raises(ModelMismatchError, match="saved for architecture"):
        create_embedder(EmbedderSpec(kind="open_clip", model_name=TINY_MODEL, pretrained=str(path)))


def test_checkpoint_with_wrong_shapes_is_refused(tmp_path: Path) -> None:
    model = open_clip.create_model(OTHER_TINY_MODEL, pretrained=None)
    path = tmp_path / "other.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(ModelMismatchError, match="does not fit architecture"):
        create_embedder(EmbedderSpec(kind="open_clip", model_name=TINY_MODEL, pretrained=str(path)))


def test_unknown_architecture_lists_known_ones() -> None:
    with pytest.raises(ModelMismatchError, match="unknown open_clip architecture 'no-such-net'"):
        create_embedder(EmbedderSpec(kind="open_clip", model_name="no-such-net", pretrained="random"))


def test_extreme_aspect_ratio_is_cropped_before_resizing(tiny_embedder, monkeypatch) -> None:
    """open_clip resizes the shortest side first: a 65535x1 upload would become a 32 x 2M intermediate
    (224 x 14.7M for a real model: 87 s and 14 GB). The square crop is taken first; the result is the same."""
    from PIL import Image

    from tests.helpers import garment_image

    wide = Image.new("RGB", (300, 60), (240, 240, 240))
    wide.paste(garment_image(4, 60), (120, 0))
    direct = tiny_embedder._model.encode_image(tiny_embedder._preprocess(wide)[None])  # the old path
    direct = (direct / direct.norm(dim=-1, keepdim=True)).detach().numpy()
    assert np.allclose(tiny_embedder.embed_images([wide]), direct, atol=0.05)
    seen = []
    preprocess = tiny_embedder._preprocess
    monkeypatch.setattr(
        tiny_embedder, "_preprocess", lambda image: seen.append(image.size) or preprocess(image)
    )
    vectors = tiny_embedder.embed_images([Image.new("RGB", (65535, 1)), Image.new("RGB", (1, 65535))])
    assert vectors.shape == (2, tiny_embedder.dimension) and seen == [(1, 1), (1, 1)]
