"""ONNX Runtime inference of a shipped network from the `.onnx` file beside its weights, without PyTorch.

`scripts/export_onnx.py` (models.onnx_export) writes `<name>.onnx` next to `<name>.safetensors` and records
in it the SHA-256 of the weights it came from; loading refuses an export that is missing or stale (the
weights changed since), saying how to make it again. ONNX Runtime folds batch norms into convolutions and
runs the graph on its own thread pool."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from models.errors import ConfigError, ModelMismatchError, WeightsNotFoundError
from models.files import file_digest

log = logging.getLogger(__name__)
WEIGHTS_SHA256 = "weights_sha256"  # the ONNX model's metadata key: digest of the weights it was exported from
EXPORT_COMMAND = "python scripts/export_onnx.py --weights {weights}"
HOW_TO_EXPORT = (
    "run `{command}` (needs PyTorch: pip install 'fashion-search[train]'), or set the runtime to 'torch'"
)


def onnx_path(weights: Path) -> Path:
    """Where the ONNX export of a weights file lives: beside it, `<name>.onnx`."""
    return Path(weights).with_suffix(".onnx")


def report_path(weights: Path) -> Path:
    """The export's report (digests, versions, ONNX vs PyTorch difference): `<name>.onnx.json`."""
    return Path(weights).with_suffix(".onnx.json")


def how_to_export(weights: Path) -> str:
    return HOW_TO_EXPORT.format(command=EXPORT_COMMAND.format(weights=weights))


class OnnxNetwork:
    """The exported network of `weights`: float32 pixels in, its one output out (numpy arrays)."""

    def __init__(self, weights: Path, threads: int = 0) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise ConfigError(
                "runtime 'onnx' needs onnxruntime (a project dependency): pip install onnxruntime, "
                "or set the runtime to 'torch'"
            ) from exc
        if threads < 0:
            raise ConfigError(f"threads must be >= 0 (0 = one per core), got {threads}")
        path = onnx_path(weights)
        if not path.is_file():
            raise WeightsNotFoundError(
                f"{path}, the ONNX export of {weights}, does not exist: {how_to_export(weights)}"
            )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # No busy-waiting between runs: the service shares its cores with FAISS and other requests.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only, not notes on nodes the optimiser leaves as they are
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own untyped errors for bad files
            raise ModelMismatchError(
                f"{path} is not a loadable ONNX model ({exc}): {how_to_export(weights)}"
            ) from exc
        recorded = self._session.get_modelmeta().custom_metadata_map.get(WEIGHTS_SHA256, "")
        actual = file_digest(Path(weights))
        if recorded != actual:
            raise ModelMismatchError(
                f"{path} is stale: it was exported from weights with SHA-256 {recorded[:12] or '(none)'}..., "
                f"but {weights} has {actual[:12]}...; {how_to_export(weights)}"
            )
        self.input_name = self._session.get_inputs()[0].name
        self.output_name = self._session.get_outputs()[0].name
        log.debug("ONNX network %s loaded (%d threads)", path, threads)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        feed = {self.input_name: np.ascontiguousarray(pixels, dtype=np.float32)}
        return np.asarray(self._session.run([self.output_name], feed)[0])
