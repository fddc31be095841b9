"""The frozen description of which embedder to build and how to run it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.errors import ConfigError

RANDOM_INIT = "random"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED_EMBEDDER = WEIGHTS_DIR / "fashion-embedder-v1.safetensors"
SHIPPED_PARSER = WEIGHTS_DIR / "garment-parser-v3.safetensors"
# How the shipped parser runs unless told otherwise (settings, constructors and benchmarks alike), measured on
# the 90 held-out CCP photos (models/weights/garment-parser-v3.md): v3 at 448 x 320 without the mirror
# average costs what v2 at 320 x 224 with it cost, and at min score 0.5 beats v2 at 0.45 on recall (macro
# and class-agnostic) and precision together.
SHIPPED_PARSER_FLIP = False
SHIPPED_PARSER_MIN_SCORE = 0.5
SHIPPED_MULTITASK = WEIGHTS_DIR / "fashion-net-v3.safetensors"  # embedding + attribute heads + product gate
SHIPPED_PARSER_V2 = (
    WEIGHTS_DIR / "garment-parser-v2.safetensors"
)  # v3's predecessor, still loadable by setting
# Every weights file that ships with an ONNX export beside it (scripts/export_onnx.py writes them all).
SHIPPED_NETWORKS = (SHIPPED_MULTITASK, SHIPPED_EMBEDDER, SHIPPED_PARSER, SHIPPED_PARSER_V2)
# The fashion-net weights used when none are named: v3 (v1 stays for comparison and as v3's starting point).
DEFAULT_FASHION_NET = SHIPPED_MULTITASK
EMBEDDER_KINDS = ("fashion-net", "open_clip")
# How the shipped networks run unless told otherwise: settings and constructors alike.
DEFAULT_RUNTIME = "onnx"
# P(product) at which the v3 product gate treats a photo as one product. Measured on held-out data with the
# shipped weights: 99.6% of product photos are at or above 0.9, no CCP street photo above 0.32; a generated
# demo scene reached 0.72. An ambiguous photo goes to the parser (the shopper can still draw a region).
PRODUCT_GATE_THRESHOLD = 0.9
MULTITASK_FORMAT = "fashion-net-multitask"  # a fashion-net weights file with attribute heads (v3)


@dataclass(frozen=True)
class EmbedderSpec:
    """Names an embedder.

    kind: "fashion-net" (default: the compact embedder this project trains and ships; `pretrained` is its
        weights file, empty = the shipped models/weights/fashion-net-v3.safetensors; a v1 file works too)
        or "open_clip".
    model_name (open_clip): an open_clip architecture ("ViT-B-32"), or a schema id: "hf-hub:org/name"
        (default: Marqo-FashionSigLIP, the recommended production model) or "local-dir:/path/to/folder"
        (config + weights inside).
    pretrained: for a plain architecture, where the weights come from: an open_clip tag
        ("laion2b_s34b_b79k"), a local checkpoint file (.safetensors/.bin/.pt), or "random" for a seeded
        random init (tests and the weight-free demo only; recorded as such in the manifest).
    """

    kind: str = "fashion-net"
    model_name: str = "hf-hub:Marqo/marqo-fashionSigLIP"
    pretrained: str | None = None
    device: str = "cpu"
    threads: int = 0
    batch_size: int = 32
    allow_download: bool = False
    cache_dir: str | None = None
    seed: int = 0
    runtime: str = DEFAULT_RUNTIME  # fashion-net: "torch" or "onnx" (ONNX Runtime); open_clip: torch

    def __post_init__(self) -> None:
        if self.kind not in EMBEDDER_KINDS:
            raise ConfigError(f"embedder kind must be one of {', '.join(EMBEDDER_KINDS)}, got {self.kind!r}")
        if not self.model_name.strip():
            raise ConfigError("embedder model_name is empty")
        if self.batch_size < 1:
            raise ConfigError(f"embedder batch_size must be >= 1, got {self.batch_size}")
        if self.threads < 0:
            raise ConfigError(f"embedder threads must be >= 0 (0 = torch default), got {self.threads}")
        if self.runtime not in ("torch", "onnx"):
            raise ConfigError(f"embedder runtime must be torch or onnx, got {self.runtime!r}")
        if not self.device.startswith(("cpu", "cuda", "mps")):
            raise ConfigError(f"embedder device must be cpu, cuda[:N] or mps, got {self.device!r}")

    @property
    def has_schema(self) -> bool:
        return self.model_name.startswith(("hf-hub:", "local-dir:"))
