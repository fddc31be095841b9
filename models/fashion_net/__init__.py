"""FashionNet: the compact fashion embedder this project trains and ships (models/weights/)."""

from models.fashion_net.embedder import FashionNetEmbedder, save_weights
from models.fashion_net.network import ARCHITECTURE, FashionNet

__all__ = ["ARCHITECTURE", "FashionNet", "FashionNetEmbedder", "save_weights"]
