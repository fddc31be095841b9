"""ONNX Runtime inference for the shipped networks, chosen by setting (`runtime="onnx"`; PyTorch stays the
default path and the reference). The network is exported in memory from the loaded PyTorch module when
the model loads (about a second), so the weights file stays the single source of truth and no exported
file can drift from it. ONNX Runtime folds batch norms into convolutions and runs the whole graph
(including softmax and argmax heads) on its own thread pool."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from models.errors import ConfigError

log = logging.getLogger(__name__)
RUNTIMES = ("torch", "onnx")
OPSET = 17


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    return runtime


class OnnxModule:
    """A torch module exported to ONNX and run by ONNX Runtime: numpy arrays in, numpy arrays out.

    `example` fixes the input shape except for the axes named in `dynamic` (input axis index -> name),
    which the exported graph accepts at any size (e.g. the batch axis).
    """

    def __init__(
        self,
        module: nn.Module,
        example: torch.Tensor,
        output_names: Sequence[str],
        threads: int = 0,
        dynamic: dict[int, str] | None = None,
    ) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise ConfigError(
                "runtime 'onnx' needs onnxruntime and onnx (project dependencies): pip install onnxruntime "
                "onnx, or set the runtime to 'torch'"
            ) from exc
        if threads < 0:
            raise ConfigError(f"threads must be >= 0 (0 = one per core), got {threads}")
        self.output_names = tuple(output_names)
        axes = {"pixels": dict(dynamic or {})}
        axes.update({name: {0: axes["pixels"][0]} for name in output_names if 0 in axes["pixels"]})
        buffer = io.BytesIO()
        with warnings.catch_warnings():  # load time only: the TorchScript exporter's deprecation notice
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                (example,),
                buffer,  # type: ignore[arg-type]  # the TorchScript exporter takes file objects
                input_names=["pixels"],
                output_names=list(output_names),
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # No busy-waiting between runs: the service shares its cores with PyTorch, FAISS and other requests.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = onnxruntime.InferenceSession(
            buffer.getvalue(), options, providers=["CPUExecutionProvider"]
        )

    def __call__(self, pixels: np.ndarray) -> list[np.ndarray]:
        outputs = self._session.run(list(self.output_names), {"pixels": np.ascontiguousarray(pixels)})
        return [np.asarray(output) for output in outputs]


def fuse_conv_bn(module: nn.Module) -> nn.Module:
    """An eval-mode copy of `module` with each batch norm folded into the convolution before it (the
    PyTorch path's share of what ONNX Runtime does). Falls back to `module` when it cannot be traced."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(module.eval())
    except Exception as exc:  # noqa: BLE001 - tracing limits vary by model; the unfused module is correct
        log.warning("conv/batch-norm fusion skipped for %s: %s", type(module).__name__, exc)
        return module
