"""Image embedders: L2-normalised float32 vectors of shape (n, d), batched. `create_embedder` builds the one
a spec names: the shipped fashion-net (numpy + ONNX Runtime by default; no PyTorch) or an open_clip model
(`models.openclip_embedder`, the `open_clip` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.embedding import Embedder
from models.errors import ConfigError
from models.files import read_weights_metadata
from models.runtime import require_torch
from models.spec import DEFAULT_FASHION_NET, MULTITASK_FORMAT, EmbedderSpec

if TYPE_CHECKING:
    from models.openclip_embedder import OpenClipEmbedder

__all__ = ["Embedder", "OpenClipEmbedder", "create_embedder"]


def __getattr__(name: str) -> Any:
    """`OpenClipEmbedder` on first use, so that importing this module never imports PyTorch."""
    if name == "OpenClipEmbedder":
        from models.openclip_embedder import OpenClipEmbedder

        return OpenClipEmbedder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create_embedder(spec: EmbedderSpec) -> Embedder:
    if spec.kind == "fashion-net":
        from models.fashion_net import FashionNetEmbedder

        weights = Path(spec.pretrained) if spec.pretrained else DEFAULT_FASHION_NET
        if weights.is_file() and read_weights_metadata(weights).get("format") == MULTITASK_FORMAT:
            from models.fashion_net.multitask_embedder import MultiTaskEmbedder

            return MultiTaskEmbedder(weights, spec.device, spec.threads, spec.batch_size, spec.runtime)
        return FashionNetEmbedder(weights, spec.device, spec.threads, spec.batch_size, spec.runtime)
    require_torch("an open_clip embedder (FASHION_EMBEDDER__KIND=open_clip)", extra="open_clip")
    try:
        import open_clip  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "an open_clip embedder needs open_clip, which this install does not have: "
            "pip install 'fashion-search[open_clip]'"
        ) from exc
    from models.openclip_embedder import OpenClipEmbedder

    return OpenClipEmbedder(spec)
