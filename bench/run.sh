#!/usr/bin/env bash
# Benchmarks Kiln against PyTorch eager and ONNX Runtime on this machine, side
# by side in one run, and prints medians and Kiln/reference ratios.
#   bash bench/run.sh            # everything (about 10-15 minutes on 2 cores)
#   bash bench/run.sh --quick    # the char model only
# The references are installed into bench/.venv (PyTorch's CPU wheel, onnx, onnxruntime).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x bench/.venv/bin/python ]; then
  python3 -m venv bench/.venv
  wheel=$(ls ${PIP_FIND_LINKS:-/opt/wheels}/torch-*+cpu-*.whl 2>/dev/null | sort -V | tail -n 1 || true)
  bench/.venv/bin/pip install -q numpy safetensors onnx onnxruntime ${wheel:-torch}
fi
swift build 2>&1 | tail -n 1
exec bench/.venv/bin/python bench/bench.py "$@"
