"""Command-line arguments shared by the benchmark scripts."""

from __future__ import annotations

import argparse
from pathlib import Path


def argument_parser(doc: str | None, out: str, threads: int | None = 1) -> argparse.ArgumentParser:
    """A parser that shows the script's docstring as written, with `--out` (default `out`, a path under
    benchmarks/results) and, unless `threads` is None, `--threads`."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(out), help="where the JSON result goes")
    if threads is not None:
        parser.add_argument("--threads", type=int, default=threads, help="PyTorch threads")
    return parser


def add_held_out_data(parser: argparse.ArgumentParser) -> None:
    """--clothing and --ccp: the data sets whose seeded held-out parts the script measures."""
    parser.add_argument("--clothing", type=Path, required=True, help="e.g. ../shared/data/clothing")
    parser.add_argument("--ccp", type=Path, required=True, help="e.g. ../shared/data/ccp")
