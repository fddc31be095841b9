"""Query pipeline shared by the HTTP service and the CLI: detect garments (or take the shopper's region)
-> crop -> embed (one batch) -> attributes -> filtered vector search -> attribute re-ranking."""

from __future__ import annotations

import contextlib
import dataclasses
import math
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
from models.detector import head_category
from models.embedding import Embedder
from models.errors import listed, shown
from models.garment import Garment, GarmentDetector
from models.images import crop_box
from search.errors import InvalidRequestError, ItemNotFoundError, SearchDeadlineError
from search.profile import StyleProfile
from search.ranking import CATEGORY_GROUP, Candidate, RankedItem, RankedPool, RankingConfig

TEXT_BLEND = 0.5  # weight of the text vector added to a garment's image vector (open_clip only)
MIN_REGION_PX = 8  # the shortest side of a searched region, after clipping to the image
MIN_REGION_INSIDE = 0.5  # share of a region's area that must lie on the image (the rest is clipped off)
Region = tuple[float, float, float, float]  # [x0, y0, x1, y1] in pixels of the upright upload


@dataclass(frozen=True)
class SearchRequest:
    top_k: int = 10
    filters: SearchFilters = field(default_factory=SearchFilters)
    text: str | None = None
    profile: StyleProfile | None = None
    ranking: RankingConfig | None = None  # None: the searcher's configured ranking
    region: Region | None = None  # search this box as one garment instead of detecting garments
    min_score: float | None = None  # matches scoring under this are dropped
    collapse_variants: bool = True  # one match per product group (item_group_id), at its best variant
    deadline: float | None = None  # time.monotonic() after which the search gives up between stages


@dataclass(frozen=True)
class GarmentMatches:
    garment: Garment
    attributes: GarmentAttributes
    refinement: Refinement | None
    matches: list[RankedItem]  # the first page: pool.page(0, top_k)
    pool: RankedPool | None = None  # every candidate at or above min_score, ranked (later pages)
    best_score: float | None = None  # the best candidate's score, min_score or not


@dataclass(frozen=True)
class OutfitResult:
    garments: list[GarmentMatches]
    timings_ms: dict[str, float]
    query_item: str | None = None  # a search by catalogue item ("more like this"): no image, no boxes


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
        garment the catalogue does not sell (a hat in a shop without hats) gets no matches.

        With `request.region` the detector does not run: the region (see `region_box`) is the one garment,
        named by the embedder's category head from the same pass that embeds it (no category without one),
        and a category filter restricts its matches instead of dropping it."""
        unknown = sorted(request.filters.categories - set(self.store.categories))
        if unknown:
            raise UnknownCategoryError(
                f"unknown category {shown(unknown[0])}; the catalogue has: {listed(self.store.categories)}"
            )
        stages = _Stages(request.deadline)
        with stages.timed("detect"):
            if request.region is not None:
                garments = [Garment(region_box(request.region, image.size), category=None, score=1.0)]
            else:
                garments = [g for g in self.detector.detect(image) if self._wanted(g, request)]
        with stages.timed("embed"):
            vectors, heads = self.embedder.describe_images([crop_box(image, g.box) for g in garments])
            if request.region is not None:
                category = head_category(heads[0] if heads else None)
                garments = [dataclasses.replace(garments[0], category=category)]
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
                results.append(self._matches(garment, extracted, refinement, found, values, config, request))
        return OutfitResult(results, stages.timings)

    def search_item(self, item_id: str, request: SearchRequest) -> OutfitResult:
        """More like this: the item's stored vector and attributes as the one garment (no image, no model),
        matched within its own category unless a category filter says otherwise; the item itself is never
        among its matches. ItemNotFoundError (404) for an unknown id."""
        stages = _Stages(request.deadline)
        with stages.timed("lookup"):
            record = self.item(item_id)
            vector = self.store.vector(record.row)
        with stages.timed("search"):
            categories = request.filters.categories or frozenset({record.category})
            filters = dataclasses.replace(request.filters, categories=categories)
            pool = max(self.pool_size, request.top_k) + 1
            hits = self.store.search(vector[None, :], pool, self.store.rows_for(filters), filters=filters)[0]
            found = [
                Candidate(hit.item, hit.score, hit.image)
                for hit in hits
                if hit.item.item_id != record.item_id
                and (not record.group_id or hit.item.group_id != record.group_id)
            ]  # never the item itself, nor (more like this) its own colours and sizes
        with stages.timed("rank", check=False):
            values = dict(record.attributes)
            values.setdefault(CATEGORY_GROUP, AttributeGuess(record.category, 1.0, "feed"))
            garment = Garment(box=(0, 0, 0, 0), category=record.category, score=1.0)
            attributes = GarmentAttributes(dict(record.attributes), [], ())
            config = request.ranking or self.ranking
            matches = self._matches(garment, attributes, None, found, values, config, request)
        return OutfitResult([matches], stages.timings, query_item=record.item_id)

    def _matches(
        self,
        garment: Garment,
        attributes: GarmentAttributes,
        refinement: Refinement | None,
        found: list[Candidate],
        values: dict[str, AttributeGuess],
        config: RankingConfig,
        request: SearchRequest,
    ) -> GarmentMatches:
        ranked = RankedPool.of(found, values, config, refinement, request.profile)
        if request.collapse_variants:
            ranked = ranked.collapsed(self.store.variants)
        pool = ranked.at_least(request.min_score)
        return GarmentMatches(
            garment, attributes, refinement, pool.page(0, request.top_k), pool, ranked.best_score
        )

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
        hits = self.store.search(vector[None, :], pool, self.store.rows_for(filters), filters=filters)[0]
        return [Candidate(hit.item, hit.score, hit.image) for hit in hits]

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


def checked_region(values: tuple[float, ...] | list[float]) -> Region:
    """Four finite numbers, x0 < x1 and y0 < y1: a region whatever the image; else InvalidRequestError."""
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InvalidRequestError(f"region must be 4 finite numbers [x0, y0, x1, y1], got {shown(values)}")
    x0, y0, x1, y1 = (float(v) for v in values)
    if x1 <= x0 or y1 <= y0:
        raise InvalidRequestError(
            f"{_named(values)} is empty: x1 must be greater than x0 and y1 greater than y0"
        )
    return x0, y0, x1, y1


def _named(values: tuple[float, ...] | list[float]) -> str:
    return f"region [{', '.join(f'{v:g}' for v in values)}]"


def region_box(region: Region, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The shopper's region as a garment box on this image, in whole pixels (outwards: the start rounded
    down, the end up). A region partly off the image is clipped to it when at least MIN_REGION_INSIDE of
    its area lies on the image; what is searched must be at least MIN_REGION_PX on each side. Otherwise
    InvalidRequestError (422), naming the region and the image's size."""
    x0, y0, x1, y1 = checked_region(region)
    width, height = size
    named = _named(region)
    image = f"the {width}x{height} image"
    upright = "(pixels of the photo after EXIF orientation)"
    left, top, right, bottom = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
    if right <= left or bottom <= top:
        raise InvalidRequestError(f"{named} lies outside {image} {upright}")
    inside = (right - left) * (bottom - top) / ((x1 - x0) * (y1 - y0))
    if inside < MIN_REGION_INSIDE:
        raise InvalidRequestError(
            f"{named} lies mostly outside {image}: {inside:.0%} of it is on the image, "
            f"at least {MIN_REGION_INSIDE:.0%} must be {upright}"
        )
    box = (math.floor(left), math.floor(top), math.ceil(right), math.ceil(bottom))
    box_width, box_height = box[2] - box[0], box[3] - box[1]
    if box_width < MIN_REGION_PX or box_height < MIN_REGION_PX:
        raise InvalidRequestError(
            f"{named} is {box_width}x{box_height} pixels on {image}; "
            f"the smallest region is {MIN_REGION_PX}x{MIN_REGION_PX}"
        )
    return box


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
