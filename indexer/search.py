"""Query pipeline shared by the HTTP service and the CLI: detect garments -> crop -> embed (one batch)
-> attributes -> filtered vector search -> attribute re-ranking."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from indexer.filters import FilterError, SearchFilters
from indexer.ranking import CATEGORY_GROUP, Candidate, Profile, RankedItem, RankingConfig, rank
from indexer.store import IndexStore, UnknownCategoryError
from models.attributes.extractor import AttributeExtractor, GarmentAttributes
from models.attributes.guess import AttributeGuess
from models.attributes.refinement import Refinement, parse_refinement
from models.detector import Garment, GarmentDetector
from models.embedder import Embedder
from models.errors import FashionSearchError
from models.images import crop_box

TEXT_BLEND = 0.5  # weight of the text vector added to a garment's image vector (open_clip only)


class SearchDeadlineError(FashionSearchError):
    """The search ran past its deadline; it stopped at the next stage boundary."""


@dataclass(frozen=True)
class SearchRequest:
    top_k: int = 10
    filters: SearchFilters = field(default_factory=SearchFilters)
    text: str | None = None
    profile: Profile | None = None
    ranking: RankingConfig | None = None  # None: the searcher's configured ranking
    deadline: float | None = None  # time.monotonic() after which the search gives up between stages


@dataclass(frozen=True)
class GarmentMatches:
    garment: Garment
    attributes: GarmentAttributes
    refinement: Refinement | None
    matches: list[RankedItem]


@dataclass(frozen=True)
class OutfitResult:
    garments: list[GarmentMatches]
    timings_ms: dict[str, float]


class OutfitSearcher:
    """Holds the loaded detector, embedder, extractor and index; `search` is safe from worker threads."""

    def __init__(
        self,
        detector: GarmentDetector,
        embedder: Embedder,
        store: IndexStore,
        extractor: AttributeExtractor,
        ranking: RankingConfig | None = None,
        pool_size: int = 100,
    ) -> None:
        store.check_model(embedder.name, embedder.dimension)
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        self.detector = detector
        self.embedder = embedder
        self.store = store
        self.extractor = extractor
        self.ranking = ranking or RankingConfig()
        self.pool_size = pool_size

    def with_store(self, store: IndexStore) -> OutfitSearcher:
        """The same loaded models over another index (a reload); refuses an index built with another model."""
        return OutfitSearcher(
            self.detector, self.embedder, store, self.extractor, self.ranking, self.pool_size
        )

    def search(self, image: Image.Image, request: SearchRequest) -> OutfitResult:
        """Matches per detected garment, re-ranked by attributes.

        A category filter keeps only garments whose detected category is compatible with it. Otherwise a
        garment's matches come from the catalogue categories compatible with its detected category, and a
        garment the catalogue does not sell (a hat in a shop without hats) gets no matches."""
        unknown = sorted(request.filters.categories - set(self.store.categories))
        if unknown:
            raise UnknownCategoryError(
                f"unknown category {unknown[0]!r}; the catalogue has: {', '.join(self.store.categories)}"
            )
        timings: dict[str, float] = {}
        started = time.perf_counter()
        garments = [g for g in self.detector.detect(image) if self._wanted(g, request)]
        timings["detect"] = _ms_since(started)
        _check_deadline(request.deadline, "detect", timings)

        started = time.perf_counter()
        vectors = self.embedder.embed_images([crop_box(image, g.box) for g in garments])
        timings["embed"] = _ms_since(started)
        _check_deadline(request.deadline, "embed", timings)

        started = time.perf_counter()
        attributes = self.extractor.for_garments(image, garments, vectors)
        refinements = [self._refinement(request.text, g.category) for g in garments]
        if request.text and getattr(self.embedder, "has_text_tower", False):
            vectors = self._blend_text(vectors, garments, request.text)
        timings["attributes"] = _ms_since(started)
        _check_deadline(request.deadline, "attributes", timings)

        searched: list[list[Candidate]] = []
        started = time.perf_counter()
        for garment, vector in zip(garments, vectors, strict=True):
            wanted = self._candidate_categories(garment, request)
            if wanted == frozenset({""}):
                searched.append([])
                continue
            filters = dataclasses.replace(request.filters, categories=wanted) if wanted else request.filters
            pool = max(self.pool_size, request.top_k)
            hits = self.store.search(vector[None, :], pool, self.store.rows_for(filters))[0]
            searched.append([Candidate(hit.item, hit.score) for hit in hits])
        timings["search"] = _ms_since(started)
        _check_deadline(request.deadline, "search", timings)

        started = time.perf_counter()
        config = request.ranking or self.ranking
        results = []
        for garment, found, extracted, refinement in zip(
            garments, searched, attributes, refinements, strict=True
        ):
            values = dict(extracted.values)
            if garment.category is not None:
                values[CATEGORY_GROUP] = AttributeGuess(garment.category, 1.0, "predicted")
            ranked = rank(found, values, config, refinement, request.profile, request.top_k)
            results.append(GarmentMatches(garment, extracted, refinement, ranked))
        timings["rank"] = _ms_since(started)
        return OutfitResult(results, timings)

    def _wanted(self, garment: Garment, request: SearchRequest) -> bool:
        """False for a garment that a category filter rules out (a shoe when the shopper asked for bags)."""
        if not request.filters.categories or garment.category is None:
            return True
        return bool(self._candidate_categories(garment, request))

    def _candidate_categories(self, garment: Garment, request: SearchRequest) -> frozenset[str]:
        """Catalogue categories this garment may match; empty = any; {""} = none (catalogue lacks them)."""
        if garment.category is None:
            return request.filters.categories
        compatible = set(self.extractor.taxonomy.compatible_categories(garment.category))
        compatible &= set(self.store.categories)
        if request.filters.categories:
            compatible &= request.filters.categories
            return frozenset(compatible)  # empty: the garment is dropped by the caller
        return frozenset(compatible) if compatible else frozenset({""})

    def _refinement(self, text: str | None, category: str | None) -> Refinement | None:
        if not text or not text.strip():
            return None
        try:
            return parse_refinement(text, self.extractor.taxonomy, category)
        except ValueError as exc:
            raise FilterError(str(exc)) from exc

    def _blend_text(self, vectors: np.ndarray, garments: list[Garment], text: str) -> np.ndarray:
        prompts = [f"a photo of a {g.category or 'garment'} {text.strip()}" for g in garments]
        texts = self.embedder.embed_texts(prompts)  # type: ignore[attr-defined]
        blended = vectors + TEXT_BLEND * texts
        return (blended / np.linalg.norm(blended, axis=1, keepdims=True)).astype(np.float32)


def _check_deadline(deadline: float | None, stage: str, timings: dict[str, float]) -> None:
    if deadline is not None and time.monotonic() > deadline:
        spent = ", ".join(f"{name} {ms:.0f} ms" for name, ms in timings.items())
        raise SearchDeadlineError(f"the search ran past its deadline after the {stage} stage ({spent})")


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
