#!/usr/bin/env bash
# README command 2 (and CI): set up the environment, lint, run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy models indexer service benchmarks scripts
exec .venv/bin/python -m pytest -q "$@"
