"""All settings in one place: FASHION_* environment variables, nested with "__"
(e.g. FASHION_EMBEDDER__MODEL_NAME). Read when a command or app starts, never at import time. Settings are
data: `search.runtime` (the composition root) turns them into models, store, searcher and thread counts."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.spec import (
    PRODUCT_GATE_THRESHOLD,
    RANDOM_INIT,
    SHIPPED_PARSER_FLIP,
    SHIPPED_PARSER_MIN_SCORE,
    EmbedderSpec,
)
from search.ranking import RankingConfig


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
        description="fashion-net: weights file (empty = the shipped fashion-net-v3; v1 works too); "
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
        SHIPPED_PARSER_MIN_SCORE,
        ge=0,
        le=1,
        description="drop parser garments whose mean class probability is lower",
    )
    detector_flip: bool = Field(
        SHIPPED_PARSER_FLIP,
        description="average the parser over the photo and its mirror (see README for the cost and gain)",
    )
    detector_runtime: Literal["torch", "onnx"] = Field(
        "onnx", description="parser inference: onnx (ONNX Runtime, exported at load) or torch"
    )
    product_gate: bool = Field(
        True,
        description="with a fashion-net-v3 embedder: a photo its gate head calls a product shot is one "
        "garment (the whole frame, its category from the category head); street photos go to the parser",
    )
    product_gate_threshold: float = Field(
        PRODUCT_GATE_THRESHOLD, gt=0, le=1, description="P(product) at which the gate opens (README)"
    )
    head_min_confidence: float = Field(
        0.5, ge=0, le=1, description="attribute-head values below this calibrated probability stay unknown"
    )
    colour_source: Literal["auto", "blend", "model", "pixels"] = Field(
        "auto",
        description="a garment's colour from its pixels, the colour head (v3), a blend of both, or auto: the "
        "head for a product photo, the blend for a street garment (README)",
    )
    ranking: RankingConfig = RankingConfig()
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
    max_json_body_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="largest body of a storefront JSON route (sessions, messages, pushes, events); counted "
        "as it arrives, chunked or not; larger is 413",
    )
    max_admin_body_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="largest body of an admin catalogue change (/v1/admin/items: up to 1,000 rows per "
        "call); larger is 413",
    )
    max_batch_body_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        description="largest body of POST /v1/search/batch (up to 16 searches; base64 images count 4/3 of "
        "their bytes, URLs almost nothing); larger is 413",
    )
    url_fetch_allow_private: bool = Field(
        False,
        description="let image URLs reach loopback, private, link-local and metadata addresses (intranets, "
        "tests); off, such a URL is 422 url_not_allowed",
    )
    url_fetch_timeout_s: float = Field(
        5.0, gt=0, le=60, description="connect and read timeout of one image URL fetch (each redirect too)"
    )
    query_cache_ttl_s: float = Field(
        600.0, ge=60, description="how long a search's ranked matches are kept for paging by query_id"
    )
    query_cache_entries: int = Field(
        2000,
        ge=1,
        description="searches kept for paging (least recently used dropped first; each holds at most "
        "candidate_pool matches per garment, a few KB)",
    )
    confident_score: float = Field(
        0.73,
        ge=-1,
        le=2,
        description="a garment of a street photo (or a region) is `confident` when its best match scores at "
        "least this (calibrated on validation photos: benchmarks/confidence.py)",
    )
    confident_score_product: float = Field(
        0.85,
        ge=-1,
        le=2,
        description="the same for a product photo (the product gate's one garment) and a search by item_id, "
        "whose scores run higher (benchmarks/confidence.py)",
    )
    max_image_pixels: int = Field(40_000_000, ge=64 * 64)
    default_top_k: int = Field(10, ge=1)
    max_top_k: int = Field(100, ge=1, le=1000)
    max_concurrent_searches: int = Field(4, ge=1, description="searches running at once; more wait")
    queue_timeout_s: float = Field(2.0, ge=0, description="how long a search waits for a slot before 503")
    request_timeout_s: float = Field(
        10.0, gt=0, description="deadline for one search, queue wait included; past it the search stops (503)"
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
    rate_limit_key_multiple: float = Field(
        20.0,
        ge=0,
        description="a valid key's own bucket (all its shoppers together) has this many times the "
        "per-address rate and burst; every client address also has its own bucket; 0 = no key-level cap",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="proxy IPs or CIDRs (JSON list) whose X-Forwarded-For is honoured: the client is the "
        "right-most entry that is not itself a trusted proxy; empty = the TCP peer is the client",
    )
    max_sessions_per_client: int = Field(
        20, ge=1, description="live co-viewing sessions one client address may hold; one more is 429"
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="storefront origins allowed by CORS, a JSON list; empty = none"
    )
    session_ttl_s: int = Field(
        1800, ge=1, description="a co-viewing session expires after this long without activity"
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
        None, description="catalogue images served at /v1/items/{id}/image; unset = image serving off"
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
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="a connection is closed when its request head (request line and headers) is not "
        "complete this long after it opened or after its previous response",
    )
    keep_alive_timeout_s: int = Field(
        5, ge=1, description="an idle keep-alive connection is closed after this long without a request"
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="open connections (or requests in progress) at which a new request is answered 503 "
        "at once (uvicorn's limit_concurrency)",
    )
    listen_backlog: int = Field(
        1024, ge=1, description="connections the kernel queues while the server has not accepted them yet"
    )
    max_header_bytes: int = Field(
        16 * 1024, ge=1024, description="largest request head (request line and headers); larger is 400"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field(
        "text",
        description="service logs as text lines, or as one JSON object a line (with the request id on "
        "every line of a request) for a log collector",
    )
    redis_url: SecretStr | None = Field(
        None,
        description="redis://[:password@]host:6379/0 shared by every replica: co-viewing sessions and their "
        "events, rate-limit buckets, shopper statistics and the paging cache; unset = kept in this process "
        "(one replica)",
    )
    redis_prefix: str = Field(
        "fashion",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="namespace of this service's Redis keys (several shops may share one Redis)",
    )
    redis_timeout_s: float = Field(
        0.5,
        gt=0,
        le=30,
        description="connect and command timeout of Redis calls; past it a shared-state route answers 503",
    )

    profiles_enabled: bool = Field(
        False,
        description="keep shoppers' style profiles on the server (POST /v1/profiles, `profile_id` on a "
        "search, learning from clicks): in the Redis of FASHION_REDIS_URL when it is set, else in the SQLite "
        "file FASHION_PROFILES_PATH; off: profiles stay in the shopper's browser and the /v1/profiles routes "
        "answer 403 profiles_disabled",
    )
    profiles_path: Path = Field(
        Path("var/profiles.sqlite"), description="the style profiles' SQLite file (one machine, no Redis)"
    )
    max_profiles: int = Field(
        1_000_000, ge=1, description="stored style profiles at once; one more is 503 profiles_full"
    )
    profile_ttl_s: int = Field(
        90 * 86400,
        ge=60,
        description="a stored style profile is deleted this long after it was last saved or used",
    )

    @field_validator("search_keys")
    @classmethod
    def _long_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for position, key in enumerate(keys):
            if len(key.get_secret_value()) < 16:
                raise ValueError(f"search key #{position + 1} is shorter than 16 characters")
        return keys

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"trusted proxy {entry!r} is not an IP address or CIDR network") from None
        return entries
