#!/usr/bin/env bash
# Create .venv (Python 3.11) and install the project with its dev tools ('.[dev]', which includes the `train`
# and `open_clip` extras: PyTorch, for the tests of every runtime). Idempotent: it reinstalls only
# when pyproject.toml changes. Offline-friendly: torch/torchvision come from the machine's local wheels
# where pip is configured for them; everything else from the package index.
set -euo pipefail
cd "$(dirname "$0")/.."

python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python_bin="$candidate"; break; fi
  done
fi
if [ -z "$python_bin" ] || ! "$python_bin" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "error: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $python_bin" >&2
  "$python_bin" -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  # torch's x86_64 wheel alone unpacks to ~5.5 GB: say so plainly instead of failing half-way with ENOSPC.
  need_kb=$((8 * 1024 * 1024))
  free_kb=$(df -Pk . | awk 'NR == 2 {print $4}')
  if [ -n "$free_kb" ] && [ "$free_kb" -lt "$need_kb" ]; then
    echo "error: installing needs about 8 GB free beside the project; $((free_kb / 1024)) MB free here" >&2
    exit 1
  fi
  echo "bootstrap: installing the project and its dependencies (first run takes a few minutes)" >&2
  # swagger-ui-bundle (Swagger UI 4) was replaced by swagger-ui-bundle-v2, which installs into the same folder.
  .venv/bin/python -m pip uninstall --quiet --yes swagger-ui-bundle >/dev/null 2>&1 || true
  # No pip cache: the wheels would be kept twice (cache and venv) on a disk that CI shares.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-cache-dir -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
