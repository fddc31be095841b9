"""FashionNet: the compact fashion embedder this project trains and ships (models/weights/). The network
itself (`models.fashion_net.network.FashionNet`) needs PyTorch and is imported on first use; the embedder
runs without it."""

from typing import Any

from models.fashion_net.embedder import FashionNetEmbedder, save_weights
from models.fashion_net.metadata import V1_ARCHITECTURE as ARCHITECTURE

__all__ = ["ARCHITECTURE", "FashionNet", "FashionNetEmbedder", "save_weights"]


def __getattr__(name: str) -> Any:
    """`FashionNet` on first use, so that importing the package never imports PyTorch."""
    if name == "FashionNet":
        from models.fashion_net.network import FashionNet

        return FashionNet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
