"""All settings in one place: FASHION_* environment variables, nested with "__"
(e.g. FASHION_EMBEDDER__MODEL_NAME). Read when a command or app starts, never at import time."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.detector import GarmentDetector, create_detector
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
    threads: int = Field(0, ge=0, description="torch intra-op threads; 0 keeps torch's default")
    batch_size: int = Field(32, ge=1, le=1024)
    allow_download: bool = Field(False, description="allow fetching weights from the hub (off: offline)")
    cache_dir: str | None = None

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
    detector_threads: int = Field(0, ge=0, description="torch threads for the parser; 0 = torch default")
    detector_min_score: float = Field(
        0.45, ge=0, le=1, description="drop parser garments whose mean class probability is lower"
    )
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(40_000_000, ge=64 * 64)
    default_top_k: int = Field(10, ge=1)
    max_top_k: int = Field(100, ge=1, le=1000)
    max_concurrent_searches: int = Field(4, ge=1, description="searches running at once; more wait")
    queue_timeout_s: float = Field(2.0, ge=0, description="how long a search waits for a slot before 503")
    faiss_threads: int = Field(1, ge=1)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def build_detector(self) -> GarmentDetector:
        return create_detector(
            self.detector, self.detector_weights, self.detector_threads, self.detector_min_score
        )
