"""Release step: export each shipped network to ONNX beside its weights and check it against PyTorch.

    python scripts/export_onnx.py [--weights models/weights/NAME.safetensors ...]

Writes models/weights/<name>.onnx (what the default ONNX runtime loads, with no PyTorch) and
<name>.onnx.json (the safetensors SHA-256 it came from, versions, and the max |ONNX - PyTorch| difference
on seeded inputs). Run it after training or replacing any weights file, and commit both files: the service
refuses an export whose recorded SHA-256 is not its weights'. Needs the `train` extra (torch, onnx,
onnxscript): pip install -e '.[train]'.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository root on the path, as `python -m` would
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.errors import FashionSearchError  # noqa: E402
from models.spec import SHIPPED_NETWORKS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--weights",
        type=Path,
        action="append",
        help="a weights file (repeatable; default: every shipped one)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the check's random inputs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        from models.onnx_export import export_onnx
    except ImportError as exc:
        print(f"error: exporting needs {exc.name}: pip install -e '.[train]'", file=sys.stderr)
        return 1
    for weights in args.weights or SHIPPED_NETWORKS:
        started = time.perf_counter()
        try:
            report = export_onnx(weights, seed=args.seed)
        except FashionSearchError as exc:
            print(f"error: {weights}: {exc}", file=sys.stderr)
            return 1
        check = report["check"]
        print(
            f"{Path(weights).with_suffix('.onnx')}: {report['graph']}, input {report['input']['shape']}, "
            f"max |onnx - torch| {check['max_abs_diff']:.3g} (outputs up to {check['max_abs_output']}), "
            f"weights sha256 {report['weights_sha256'][:12]}, {time.perf_counter() - started:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
