"""The composition root: the only place that turns settings into models, store, searcher and build
options, and that sets the process-wide thread counts. Used by the service lifespan, every CLI command,
the Ray workers (through the picklable `ModelFactory`) and the benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from indexer.build import BuildOptions
from indexer.store import IndexStore
from models.attributes.extractor import AttributeExtractor, create_extractor
from models.detector import GarmentDetector, create_detector
from models.embedder import Embedder, create_embedder
from search.searcher import OutfitSearcher
from search.settings import Settings


def apply_threads(settings: Settings) -> None:
    """Set the process-wide FAISS and PyTorch thread counts (see `torch_threads`, `faiss_threads`). PyTorch's
    only where it runs: a network on the torch runtime or an open_clip embedder (the ONNX Runtime path of
    the shipped networks never imports it)."""
    import faiss

    from models.runtime import use_torch_threads

    faiss.omp_set_num_threads(settings.faiss_threads)
    threads = settings.torch_threads
    if threads == 0 and settings.detector_runtime == "onnx" and settings.embedder.runtime == "onnx":
        threads = 1
    parser_on_torch = settings.detector == "garment-parser" and settings.detector_runtime == "torch"
    embedder_on_torch = settings.embedder.kind == "open_clip" or settings.embedder.runtime == "torch"
    use_torch_threads(threads, required=parser_on_torch or embedder_on_torch)


def build_embedder(settings: Settings) -> Embedder:
    return create_embedder(settings.embedder.to_spec())


def build_detector(settings: Settings, embedder: Embedder | None = None) -> GarmentDetector:
    """The detector; behind the product gate when the embedder has one (fashion-net-v3) and it is on."""
    gate = (
        embedder
        if embedder is not None and "gate" in embedder.head_labels and settings.product_gate
        else None
    )
    return create_detector(
        settings.detector,
        settings.detector_weights,
        settings.detector_threads,
        settings.detector_min_score,
        settings.detector_flip,
        settings.detector_runtime,
        gate,
        settings.product_gate_threshold,
    )


def build_extractor(settings: Settings, embedder: Embedder) -> AttributeExtractor:
    """Colour from pixels (and the colour head); the groups of the embedder's attribute heads; zero-shot
    groups when enabled and the embedder has a trained text tower. The index build and the service both
    come here, so both sides predict alike."""
    return create_extractor(
        embedder if settings.zero_shot else None,
        zero_shot_min_confidence=settings.zero_shot_min_confidence,
        heads=embedder,
        min_head_confidence=settings.head_min_confidence,
        colour_source=settings.colour_source,
    )


def build_searcher(settings: Settings, store: IndexStore, embedder: Embedder | None = None) -> OutfitSearcher:
    """Load the detector (and the embedder unless given) and check them against the opened index."""
    embedder = embedder or build_embedder(settings)
    return OutfitSearcher(
        build_detector(settings, embedder),
        embedder,
        store,
        build_extractor(settings, embedder),
        settings.ranking,
        settings.candidate_pool,
    )


def build_options(settings: Settings, **overrides: Any) -> BuildOptions:
    """Build/update options from settings; `overrides` are the command's own flags (None = the setting)."""
    given = {name: value for name, value in overrides.items() if value is not None}
    return BuildOptions(
        **{
            "max_image_pixels": settings.max_image_pixels,
            "index_factory": settings.index_factory,
            "vector_store": settings.vector_store,
            "milvus_uri": settings.milvus_uri,
            **given,
        }
    )


@dataclass(frozen=True)
class ModelFactory:
    """A picklable `make_models` for the Ray workers: each builds its embedder and extractor from the same
    settings as the driver, through the same functions."""

    settings: Settings

    def __call__(self) -> tuple[Embedder, AttributeExtractor]:
        embedder = build_embedder(self.settings)
        return embedder, build_extractor(self.settings, embedder)
