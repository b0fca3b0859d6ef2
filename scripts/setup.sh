#!/usr/bin/env bash
# Set medsft up from nothing: a virtual environment in .venv with torch (installed first, pinned: an unpinned torch
# pulls gigabytes of CUDA packages) and medsft with its dev extras. Used by `make quickstart`, `make setup` and
# .ci/run. On a GPU machine, set MEDSFT_TORCH to the torch build for your driver (e.g. MEDSFT_TORCH=torch).
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH="${MEDSFT_TORCH:-torch==2.13.0}"
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "$TORCH"
python -m pip install --quiet -e ".[dev]"
python -m pip list 2>/dev/null | grep -iE "^(torch|transformers|trl|peft|bitsandbytes|accelerate|datasets|tensorboard) "
