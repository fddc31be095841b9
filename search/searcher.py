"""Query pipeline shared by the HTTP service and the CLI: detect garments -> crop -> embed (one batch)
-> attributes -> filtered vector search -> attribute re-ranking."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from indexer.filters import FilterError, SearchFilters
from indexer.metadata import ItemRecord
from indexer.store import IndexStore, UnknownCategoryError
from models.attributes.extractor import AttributeExtractor, GarmentAttributes
from models.attributes.guess import AttributeGuess
from models.attributes.refinement import Refinement, parse_refinement
from models.embedding import Embedder
from models.errors import listed, shown
from models.garment import Garment, GarmentDetector
from models.images import crop_box
from search.errors import ItemNotFoundError, SearchDeadlineError
from search.ranking import CATEGORY_GROUP, Candidate, Profile, RankedItem, RankingConfig, rank

TEXT_BLEND = 0.5  # weight of the text vector added to a garment's image vector (open_clip only)


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
                f"unknown category {shown(unknown[0])}; the catalogue has: {listed(self.store.categories)}"
            )
        stages = _Stages(request.deadline)
        with stages.timed("detect"):
            garments = [g for g in self.detector.detect(image) if self._wanted(g, request)]
        with stages.timed("embed"):
            vectors, heads = self.embedder.describe_images([crop_box(image, g.box) for g in garments])
        with stages.timed("attributes"):
            attributes = self.extractor.for_garments(image, garments, vectors, heads)
            refinements = [self._refinement(request.text, g.category) for g in garments]
            if request.text and self.embedder.has_text_tower:
                vectors = self._blend_text(vectors, garments, request.text)
        with stages.timed("search"):
            searched = [self._candidates(g, v, request) for g, v in zip(garments, vectors, strict=True)]
        with stages.timed("rank", check=False):
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
        return OutfitResult(results, stages.timings)

    def item(self, item_id: str) -> ItemRecord:
        """The catalogue item with this id; ItemNotFoundError (404) when there is none."""
        record = self.store.item(item_id)
        if record is None:
            raise ItemNotFoundError(f"no catalogue item has id {shown(item_id)}")
        return record

    def _candidates(self, garment: Garment, vector: np.ndarray, request: SearchRequest) -> list[Candidate]:
        wanted = self._candidate_categories(garment, request)
        if wanted == frozenset({""}):
            return []
        filters = dataclasses.replace(request.filters, categories=wanted) if wanted else request.filters
        pool = max(self.pool_size, request.top_k)
        hits = self.store.search(vector[None, :], pool, self.store.rows_for(filters))[0]
        return [Candidate(hit.item, hit.score) for hit in hits]

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
        texts = self.embedder.embed_texts(prompts)
        blended = vectors + TEXT_BLEND * texts
        return (blended / np.linalg.norm(blended, axis=1, keepdims=True)).astype(np.float32)


class _Stages:
    """Times the searcher's stages in ms and stops at a stage boundary once the deadline has passed."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def timed(self, stage: str, check: bool = True) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.timings[stage] = round((time.perf_counter() - started) * 1000, 2)
        if check and self.deadline is not None and time.monotonic() > self.deadline:
            spent = ", ".join(f"{name} {ms:.0f} ms" for name, ms in self.timings.items())
            raise SearchDeadlineError(f"the search ran past its deadline after the {stage} stage ({spent})")
