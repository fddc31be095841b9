"""Query pipeline shared by the HTTP service and the CLI: detect garments -> crop -> embed -> search."""

from __future__ import annotations

import time
from dataclasses import dataclass

from PIL import Image

from indexer.store import Hit, IndexStore, UnknownCategoryError
from models.detector import Garment, GarmentDetector
from models.embedder import Embedder
from models.images import crop_box


@dataclass(frozen=True)
class GarmentMatches:
    garment: Garment
    matches: list[Hit]


@dataclass(frozen=True)
class OutfitResult:
    garments: list[GarmentMatches]
    timings_ms: dict[str, float]


class OutfitSearcher:
    """Holds the loaded detector, embedder and index; `search` is safe to call from worker threads."""

    def __init__(self, detector: GarmentDetector, embedder: Embedder, store: IndexStore) -> None:
        store.check_model(embedder.name, embedder.dimension)
        self.detector = detector
        self.embedder = embedder
        self.store = store

    def search(self, image: Image.Image, top_k: int, category: str | None = None) -> OutfitResult:
        """Matches per detected garment. `category` limits matches to that catalogue category and drops
        garments the detector placed in another category; otherwise a garment's detected category filters
        its matches, and a category the catalogue does not sell gets no matches."""
        if category is not None and category not in self.store.categories:
            raise UnknownCategoryError(
                f"unknown category {category!r}; the catalogue has: {', '.join(self.store.categories)}"
            )
        timings: dict[str, float] = {}
        started = time.perf_counter()
        garments = self.detector.detect(image)
        if category is not None:
            garments = [g for g in garments if g.category in (None, category)]
        timings["detect"] = _ms_since(started)

        started = time.perf_counter()
        vectors = self.embedder.embed_images([crop_box(image, g.box) for g in garments])
        timings["embed"] = _ms_since(started)

        started = time.perf_counter()
        results = []
        for garment, vector in zip(garments, vectors, strict=True):
            wanted = category or garment.category
            if wanted is not None and wanted not in self.store.categories:
                # A detected hat in a catalogue without hats: no match beats an unrelated product.
                results.append(GarmentMatches(garment, []))
                continue
            hits = self.store.search(vector[None, :], top_k, wanted)[0]
            results.append(GarmentMatches(garment, hits))
        timings["search"] = _ms_since(started)
        return OutfitResult(results, timings)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
