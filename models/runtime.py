"""The one place that decides how a shipped network runs, and with how many threads:

- "onnx" (the default): ONNX Runtime on the `.onnx` file exported beside the weights by
  `scripts/export_onnx.py` (`models.onnx_runtime`). No PyTorch in the process: a plain `pip install .`.
- "torch": PyTorch on the weights themselves, batch norms folded into the convolutions
  (`models.torch_runtime`; the `train` extra).

Either way a network is a plain function, float32 pixels (n, 3, h, w) in, float32 output out. The parser
and the fashion-net embedders load theirs here; the composition root (`search.runtime`) sets the
process-wide thread counts once per process."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

from models.errors import ConfigError
from models.spec import DEFAULT_RUNTIME

__all__ = [
    "DEFAULT_RUNTIME", "RUNTIMES", "Network", "check_runtime", "load_network", "require_torch",
    "use_torch_threads",
]  # fmt: skip
RUNTIMES = ("torch", "onnx")
Network = Callable[[np.ndarray], np.ndarray]


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    return runtime


def require_torch(purpose: str, extra: str = "train") -> ModuleType:
    """The `torch` module; ConfigError naming the extra to install when this install has no PyTorch."""
    try:
        import torch
        import torchvision  # noqa: F401 - the shipped networks are torchvision models
    except ImportError as exc:
        alternative = "" if extra == "open_clip" else " (or keep the default runtime 'onnx')"
        raise ConfigError(
            f"{purpose} needs PyTorch, which this install does not have: "
            f"pip install 'fashion-search[{extra}]'{alternative}"
        ) from exc
    return torch


def use_torch_threads(threads: int, required: bool = False) -> None:
    """PyTorch's intra-op threads (0 keeps the process default). Only where PyTorch runs: when `required`,
    or when something already imported it; a process on ONNX Runtime alone never imports it for this."""
    if threads < 0:
        raise ConfigError(f"threads must be >= 0 (0 = the process default), got {threads}")
    if threads and (required or "torch" in sys.modules):
        require_torch("setting PyTorch's threads").set_num_threads(threads)


def load_network(
    weights: Path, runtime: str, threads: int, device: str = "cpu", channels_last: bool = False
) -> Network:
    """The network of the weights file `weights` on `runtime`. `threads` is ONNX Runtime's own pool, or
    PyTorch's thread count on the PyTorch runtime (0 = one per core / the default)."""
    check_runtime(runtime)
    if runtime == "onnx":
        if device != "cpu":
            raise ConfigError(f"runtime 'onnx' runs on the CPU; device is {device!r}")
        from models.onnx_runtime import OnnxNetwork

        return OnnxNetwork(Path(weights), threads)
    require_torch("runtime 'torch'")
    from models.torch_runtime import TorchNetwork

    return TorchNetwork(Path(weights), device, threads, channels_last)
