#!/usr/bin/env bash
# README command 1: set up the environment, generate a demo catalogue, build its index with the CLI,
# start the HTTP service and answer real searches over HTTP. Offline; writes under demo-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m scripts.demo "$@"
