"""Export a weights file's graph (`models.graphs`) to `<name>.onnx` beside it, and check it: ONNX Runtime's
outputs against PyTorch's on seeded inputs. The release step behind `scripts/export_onnx.py`; needs the
`train` extra (torch, onnx, onnxscript). The export records the SHA-256 of its weights inside the ONNX
model (checked at every load by `models.onnx_runtime`) and in a report, `<name>.onnx.json`:

    {"weights": ..., "weights_sha256": ..., "onnx_sha256": ..., "input": ..., "output": ...,
     "check": {"max_abs_diff": ..., "max_abs_output": ..., ...}, "versions": {...}}
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from models.errors import ModelMismatchError
from models.files import file_digest
from models.graphs import graph_for
from models.onnx_runtime import WEIGHTS_SHA256, OnnxNetwork, onnx_path, report_path

log = logging.getLogger(__name__)
OPSET = 18
CHECK_BATCHES = (1, 3)  # the batch axis is dynamic: check more than the exported example's size
RELATIVE_TOLERANCE = 1e-4  # of the largest output magnitude


def export_onnx(weights: Path, seed: int = 0) -> dict[str, Any]:
    """Write and check `<weights stem>.onnx` and its `.onnx.json` report; returns the report.
    ModelMismatchError (and no export left behind) when ONNX Runtime and PyTorch disagree."""
    weights = Path(weights)
    graph = graph_for(weights)
    example = torch.zeros(2, *graph.input_shape)
    program = torch.onnx.export(
        graph.module,
        (example,),
        input_names=["pixels"],
        output_names=[graph.output_name],
        dynamic_shapes=({0: torch.export.Dim("n")},),
        opset_version=OPSET,
        dynamo=True,
        optimize=False,  # keep the weights as saved (fp16-exact); ONNX Runtime fuses at load
        verbose=False,
    )
    assert program is not None  # dynamo=True returns the ONNX program
    model = program.model_proto
    halved = halve_exact_initializers(model)
    for node in model.graph.node:  # the exporter's per-node source locations: this machine's paths
        node.ClearField("metadata_props")
        node.doc_string = ""
    digest = file_digest(weights)
    helper.set_model_props(
        model, {WEIGHTS_SHA256: digest, "weights": weights.name, "torch": torch.__version__}
    )
    onnx.checker.check_model(model)
    path = onnx_path(weights)
    temporary = path.with_suffix(".onnx.tmp")
    onnx.save_model(model, str(temporary))
    os.replace(temporary, path)
    try:
        check = compare(graph.module, OnnxNetwork(weights, threads=1), graph.input_shape, seed)
    except ModelMismatchError:
        path.unlink()
        raise
    import onnxruntime
    import onnxscript

    report = {
        "onnx": path.name,
        "onnx_sha256": file_digest(path),
        "weights": weights.name,
        "weights_sha256": digest,
        "graph": graph.kind,
        "input": {"name": "pixels", "shape": ["n", *graph.input_shape], "dtype": "float32"},
        "output": graph.output_name,
        "opset": OPSET,
        "fp16_initializers": halved,
        "exporter": "torch.onnx.export(dynamo=True, optimize=False)",
        "versions": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxscript": onnxscript.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        "check": check,
    }
    report_path(weights).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def compare(
    module: torch.nn.Module, network: OnnxNetwork, input_shape: tuple[int, int, int], seed: int
) -> dict[str, Any]:
    """Max |ONNX Runtime - PyTorch| over seeded N(0, 1) pixels at each of CHECK_BATCHES."""
    generator = np.random.default_rng(seed)
    diff = scale = 0.0
    for batch in CHECK_BATCHES:
        pixels = generator.standard_normal((batch, *input_shape), dtype=np.float32)
        with torch.inference_mode():
            expected = module.eval()(torch.from_numpy(pixels)).float().numpy()
        found = network(pixels)
        if found.shape != expected.shape:
            raise ModelMismatchError(f"ONNX output shape {found.shape} != PyTorch's {expected.shape}")
        diff = max(diff, float(np.abs(found - expected).max()))
        scale = max(scale, float(np.abs(expected).max()))
    tolerance = RELATIVE_TOLERANCE * max(scale, 1.0)
    if not diff <= tolerance:
        raise ModelMismatchError(f"ONNX and PyTorch outputs differ by {diff:.3g} (tolerance {tolerance:.3g})")
    return {
        "inputs": f"seeded N(0, 1) pixels (seed {seed}), batches of {', '.join(map(str, CHECK_BATCHES))}",
        "max_abs_diff": float(f"{diff:.3g}"),
        "max_abs_output": round(scale, 4),
        "tolerance": float(f"{tolerance:.3g}"),
    }


def halve_exact_initializers(model: onnx.ModelProto, min_size: int = 16) -> int:
    """Store each float32 initializer whose values are all exact in float16 (the parser's weights are saved
    so) as float16 plus a Cast back: half the file, the very same numbers (ONNX Runtime folds the casts
    when it loads the model). Returns how many were halved."""
    graph = model.graph
    kept, casts = [], []
    for tensor in graph.initializer:
        if tensor.data_type != onnx.TensorProto.FLOAT:
            kept.append(tensor)
            continue
        values = numpy_helper.to_array(tensor)
        half = values.astype(np.float16)
        if values.size < min_size or not np.array_equal(half.astype(np.float32), values):
            kept.append(tensor)
            continue
        kept.append(numpy_helper.from_array(half, f"{tensor.name}.fp16"))
        casts.append(
            helper.make_node("Cast", [f"{tensor.name}.fp16"], [tensor.name], to=onnx.TensorProto.FLOAT)
        )
    nodes = casts + list(graph.node)
    del graph.initializer[:], graph.node[:]
    graph.initializer.extend(kept)
    graph.node.extend(nodes)
    return len(casts)
