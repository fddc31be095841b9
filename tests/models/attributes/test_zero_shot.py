from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from models.attributes.taxonomy import load_taxonomy
from models.attributes.zero_shot import ZeroShotScorer
from models.embedder import Embedder


class KeywordEncoder:
    """Text vectors that point along axis 0 when the prompt mentions `word`, else along axis 1."""

    def __init__(self, word: str) -> None:
        self.word = word
        self.calls = 0

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.array([[1.0, 0.0] if self.word in t else [0.0, 1.0] for t in texts], dtype=np.float32)


def test_picks_the_value_whose_prompts_match_and_caches_text() -> None:
    encoder = KeywordEncoder("striped")
    scorer = ZeroShotScorer(encoder, load_taxonomy(), min_confidence=0.5)
    guesses = scorer.predict(np.array([1.0, 0.0], dtype=np.float32), "top")
    assert guesses["pattern"].value == "striped" and guesses["pattern"].source == "predicted"
    assert "colour" not in guesses  # colour comes from pixels
    calls = encoder.calls
    scorer.predict(np.array([1.0, 0.0], dtype=np.float32), "top")
    assert encoder.calls == calls


def test_low_confidence_groups_stay_unknown() -> None:
    scorer = ZeroShotScorer(KeywordEncoder("nothing-matches"), load_taxonomy(), min_confidence=0.5)
    assert scorer.predict(np.array([0.0, 1.0], dtype=np.float32), "top") == {}


def test_dimension_mismatch_is_an_error() -> None:
    scorer = ZeroShotScorer(KeywordEncoder("striped"), load_taxonomy())
    with pytest.raises(ValueError, match="dimension 3"):
        scorer.predict(np.ones(3, dtype=np.float32), "top")


def test_open_clip_text_tower_gives_normalised_vectors_but_random_weights_do_not_guess(
    tiny_embedder: Embedder,
) -> None:
    texts = tiny_embedder.embed_texts(["a red top", "a striped skirt"])  # type: ignore[attr-defined]
    assert texts.shape == (2, tiny_embedder.dimension)
    assert np.allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert tiny_embedder.has_text_tower is False  # type: ignore[attr-defined]
