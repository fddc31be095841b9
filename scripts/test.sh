#!/usr/bin/env bash
# README command 2 (and CI): set up the environment, lint, run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy models indexer search service benchmarks scripts
if [ -z "${FASHION_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  echo "test: no chromium on PATH: the browser tests (tests/browser) will be skipped (apt-get install chromium)" >&2
fi
exec .venv/bin/python -m pytest -q "$@"
