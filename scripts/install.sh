#!/usr/bin/env bash
# Install Pairwise into .venv (idempotent). torch is pinned here to the CPU build that CI
# and laptops use; pyproject states the range a user may bring (e.g. a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.pairwise-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  python -m pip install -q --upgrade pip
  python -m pip install -q "torch==${PAIRWISE_TORCH_VERSION:-2.13.0}"
  python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
