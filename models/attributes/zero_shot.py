"""Zero-shot attribute scoring with an open_clip text tower: prompt ensembles per value, softmax per group.

Only meaningful when the image vectors come from the same open_clip model as the text tower (the service
wires it so). Colour is not scored here: it comes from the garment's pixels. A group whose best value has
less than `min_confidence` probability is left unknown rather than guessed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from models.attributes.guess import AttributeGuess
from models.attributes.taxonomy import AttributeGroup, Taxonomy

log = logging.getLogger(__name__)

TEMPLATES = (
    "a photo of a {category} that is {prompt}",
    "a {prompt} {category}",
    "a product photo of a {prompt} {category}",
)
PIXEL_GROUPS = frozenset({"colour"})


class TextEncoder(Protocol):
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


class ZeroShotScorer:
    """Thread-safe; text embeddings are computed once per (category, group) and cached."""

    def __init__(
        self,
        encoder: TextEncoder,
        taxonomy: Taxonomy,
        min_confidence: float = 0.4,
        logit_scale: float = 100.0,
    ) -> None:
        if not 0.0 <= min_confidence <= 1.0 or logit_scale <= 0:
            raise ValueError(
                f"min_confidence must be in [0, 1] and logit_scale > 0; got {min_confidence}, {logit_scale}"
            )
        self.encoder = encoder
        self.taxonomy = taxonomy
        self.min_confidence = min_confidence
        self.logit_scale = logit_scale
        self._cache: dict[tuple[str, str], np.ndarray] = {}
        self._lock = threading.Lock()

    def groups(self, category: str | None) -> list[AttributeGroup]:
        return [g for g in self.taxonomy.groups_for(category) if g.name not in PIXEL_GROUPS]

    def predict(self, vector: np.ndarray, category: str | None) -> dict[str, AttributeGuess]:
        """Attribute guesses for one L2-normalised image vector of a garment of `category`."""
        guesses: dict[str, AttributeGuess] = {}
        for group in self.groups(category):
            text = self._group_matrix(category, group)
            if text.shape[1] != vector.shape[-1]:
                raise ValueError(
                    f"image vector has dimension {vector.shape[-1]} but the text tower gives {text.shape[1]}"
                )
            logits = self.logit_scale * (text @ vector.astype(np.float32))
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            best = int(np.argmax(probs))
            if probs[best] >= self.min_confidence:
                guesses[group.name] = AttributeGuess(
                    group.values[best].name, round(float(probs[best]), 4), "predicted"
                )
        return guesses

    def _group_matrix(self, category: str | None, group: AttributeGroup) -> np.ndarray:
        key = (category or "", group.name)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        noun = category or "garment"
        rows = []
        for value in group.values:
            prompts = value.prompts or (value.name,)
            texts = [t.format(category=noun, prompt=p) for p in prompts for t in TEMPLATES]
            mean = self.encoder.embed_texts(texts).mean(axis=0)
            rows.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        matrix = np.stack(rows).astype(np.float32)
        with self._lock:
            self._cache[key] = matrix
        log.debug("zero-shot prompts ready for %s/%s (%d values)", noun, group.name, len(rows))
        return matrix
