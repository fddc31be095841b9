"""All settings in one place: FASHION_* environment variables, nested with "__"
(e.g. FASHION_EMBEDDER__MODEL_NAME). Read when a command or app starts, never at import time."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from indexer.ranking import CATEGORY_GROUP, RankingConfig
from indexer.search import OutfitSearcher
from indexer.store import IndexStore
from models.attributes.extractor import AttributeExtractor
from models.attributes.taxonomy import load_taxonomy
from models.detector import GarmentDetector, create_detector
from models.embedder import Embedder
from models.spec import RANDOM_INIT, EmbedderSpec


class EmbedderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["fashion-net", "open_clip"] = Field(
        "fashion-net", description="fashion-net: the shipped trained embedder; open_clip: model_name below"
    )
    model_name: str = Field(
        "hf-hub:Marqo/marqo-fashionSigLIP",
        description="open_clip architecture, hf-hub:org/name or local-dir:/path",
    )
    pretrained: str | None = Field(
        None,
        description="fashion-net: weights file (empty = shipped); "
        f"open_clip: tag, checkpoint file or '{RANDOM_INIT}'",
    )
    device: str = "cpu"
    threads: int = Field(
        1, ge=0, description="embedder threads per call (ONNX Runtime or torch); 0 = all cores (see README)"
    )
    batch_size: int = Field(32, ge=1, le=1024)
    allow_download: bool = Field(False, description="allow fetching weights from the hub (off: offline)")
    cache_dir: str | None = None
    runtime: Literal["torch", "onnx"] = Field(
        "onnx", description="fashion-net inference: onnx (ONNX Runtime, exported at load) or torch"
    )

    def to_spec(self) -> EmbedderSpec:
        return EmbedderSpec(**self.model_dump())


DEFAULT_GROUP_WEIGHTS = {
    "category": 1.0,
    "colour": 2.0,
    "pattern": 1.5,
    "sleeve_length": 1.0,
    "neckline": 0.75,
    "length": 1.0,
    "fit": 0.5,
    "material": 0.75,
    "footwear_type": 1.5,
}


def check_group_weights(weights: dict[str, float]) -> dict[str, float]:
    """Weights must name taxonomy groups (or "category") and lie in [0, 10]."""
    known = [CATEGORY_GROUP, *load_taxonomy().groups]
    for group, weight in weights.items():
        if group not in known:
            raise ValueError(f"unknown attribute group {group!r} in weights; known: {', '.join(known)}")
        if not 0 <= weight <= 10:
            raise ValueError(f"weight for {group!r} must be between 0 and 10, got {weight}")
    return weights


class RankingSettings(BaseModel):
    """The re-ranking formula's knobs (see indexer/ranking.py); a request may override them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attribute_weight: float = Field(
        0.3, ge=0, le=1, description="share of the attribute score in the final score (0 = visual only)"
    )
    group_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_GROUP_WEIGHTS),
        description="weight per attribute group; groups not listed get default_group_weight",
    )
    default_group_weight: float = Field(0.5, ge=0, le=10)
    prior: float = Field(1.0, gt=0, description="pseudo-evidence pulling the attribute score towards 0.5")
    text_weight: float = Field(3.0, ge=0, le=100, description="multiplier for groups named in `text`")
    profile_max_boost: float = Field(0.05, ge=0, le=0.5, description="most a shopper profile can add")

    @field_validator("group_weights")
    @classmethod
    def _known_groups(cls, weights: dict[str, float]) -> dict[str, float]:
        return check_group_weights(weights)

    def to_config(self, overrides: dict[str, float] | None = None) -> RankingConfig:
        weights = {**self.group_weights, **(overrides or {})}
        return RankingConfig(
            attribute_weight=self.attribute_weight,
            group_weights=weights,
            default_group_weight=self.default_group_weight,
            prior=self.prior,
            text_weight=self.text_weight,
            profile_max_boost=self.profile_max_boost,
        )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FASHION_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    index_dir: Path = Field(Path("var/index"), description="the index link written by `index build --out`")
    embedder: EmbedderSettings = EmbedderSettings()
    detector: Literal["garment-parser", "full-frame"] = Field(
        "garment-parser", description="garment-parser: every garment in a street photo; full-frame: one box"
    )
    detector_weights: Path | None = Field(None, description="parser weights file (empty = shipped)")
    detector_threads: int = Field(
        1,
        ge=0,
        description="parser threads per search (ONNX Runtime or torch): 1 = one core per search, so that "
        "concurrent searches use the others; 0 = all cores (lower latency alone, less throughput; README)",
    )
    detector_min_score: float = Field(
        0.45, ge=0, le=1, description="drop parser garments whose mean class probability is lower"
    )
    detector_flip: bool = Field(
        True,
        description="average the parser over the photo and its mirror (see README for the cost and gain)",
    )
    detector_runtime: Literal["torch", "onnx"] = Field(
        "onnx", description="parser inference: onnx (ONNX Runtime, exported at load) or torch"
    )
    ranking: RankingSettings = RankingSettings()
    candidate_pool: int = Field(
        100, ge=1, le=10_000, description="vector-search candidates per garment before attribute re-ranking"
    )
    zero_shot: bool = Field(
        True, description="predict non-colour attributes with the open_clip text tower when one is loaded"
    )
    zero_shot_min_confidence: float = Field(
        0.4, ge=0, le=1, description="open_clip zero-shot attributes below this probability stay unknown"
    )
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(40_000_000, ge=64 * 64)
    default_top_k: int = Field(10, ge=1)
    max_top_k: int = Field(100, ge=1, le=1000)
    max_concurrent_searches: int = Field(4, ge=1, description="searches running at once; more wait")
    queue_timeout_s: float = Field(2.0, ge=0, description="how long a search waits for a slot before 503")
    request_timeout_s: float = Field(
        10.0, gt=0, description="deadline for one search, queue wait included; past it the search stops (504)"
    )
    shutdown_timeout_s: float = Field(
        30.0, ge=0, description="on SIGTERM, how long in-flight requests may take to finish"
    )
    admin_key: SecretStr | None = Field(
        None, min_length=16, description="key for /v1/admin/* (header X-Admin-Key); unset = admin API off"
    )
    search_keys: list[SecretStr] = Field(
        default_factory=list,
        description="storefront keys for search (header X-API-Key), a JSON list; empty = search is open",
    )
    rate_limit_per_s: float = Field(
        5.0, ge=0, description="sustained requests per second per key (or client address); 0 = no limit"
    )
    rate_limit_burst: int = Field(20, ge=1, description="requests a key may make at once before 429")
    cors_origins: list[str] = Field(
        default_factory=list, description="storefront origins allowed by CORS, a JSON list; empty = none"
    )
    session_ttl_s: int = Field(
        1800,
        ge=1,
        description="a co-viewing session expires after this long without activity",
    )
    session_max_age_s: int = Field(
        14400, ge=1, description="a co-viewing session expires this long after it was created, however active"
    )
    max_sessions: int = Field(
        1000, ge=1, description="co-viewing sessions held in memory at once; one more is 503 sessions_full"
    )
    stream_ping_s: float = Field(
        15.0,
        gt=0,
        le=300,
        description="how often an idle session event stream sends ': ping' (proxies)",
    )
    image_root: Path | None = Field(
        None, description="catalogue images served at /v1/images/...; unset = image serving off"
    )
    vector_store: Literal["faiss", "milvus"] = Field(
        "faiss", description="where `index build` puts the vectors: FAISS files, or a Milvus collection"
    )
    milvus_uri: str | None = Field(
        None,
        description="Milvus server URI (http://user:pw@host:19530); unset = Milvus Lite inside the build",
    )
    index_factory: str | None = Field(
        None, description='FAISS factory for `index build`, e.g. "HNSW32,Flat"; unset = chosen by size'
    )
    reload_poll_s: float = Field(
        2.0, ge=0, description="how often the service checks the index link for a new build; 0 = never"
    )
    faiss_threads: int = Field(1, ge=1, description="FAISS OpenMP threads (searches run in parallel)")
    torch_threads: int = Field(
        0,
        ge=0,
        description="PyTorch intra-op threads; 0 = automatic: 1 when the parser and the fashion-net "
        "embedder both run on ONNX Runtime (PyTorch then does only light array work, where its OpenMP "
        "barriers cost more than they save on a busy machine), else PyTorch's default",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("search_keys")
    @classmethod
    def _long_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for position, key in enumerate(keys):
            if len(key.get_secret_value()) < 16:
                raise ValueError(f"search key #{position + 1} is shorter than 16 characters")
        return keys

    def build_searcher(self, store: IndexStore) -> OutfitSearcher:
        """Load the embedder, detector and attribute extractor and check them against the opened index."""
        from models.embedder import create_embedder

        embedder = create_embedder(self.embedder.to_spec())
        return OutfitSearcher(
            self.build_detector(),
            embedder,
            store,
            self.build_extractor(embedder),
            self.ranking.to_config(),
            self.candidate_pool,
        )

    def build_extractor(self, embedder: Embedder) -> AttributeExtractor:
        """Colour from pixels; zero-shot groups when enabled and the embedder has a trained text tower.
        The index build and the service must use the same settings so both sides predict alike."""
        from models.attributes.extractor import create_extractor

        return create_extractor(
            embedder if self.zero_shot else None, zero_shot_min_confidence=self.zero_shot_min_confidence
        )

    def apply_threads(self) -> None:
        """Set the process-wide PyTorch and FAISS thread counts (see `torch_threads`, `faiss_threads`)."""
        import faiss
        import torch

        faiss.omp_set_num_threads(self.faiss_threads)
        threads = self.torch_threads
        if threads == 0 and self.detector_runtime == "onnx" and self.embedder.runtime == "onnx":
            threads = 1
        if threads:
            torch.set_num_threads(threads)

    def build_detector(self) -> GarmentDetector:
        return create_detector(
            self.detector,
            self.detector_weights,
            self.detector_threads,
            self.detector_min_score,
            self.detector_flip,
            self.detector_runtime,
        )
