#!/usr/bin/env bash
# Runs the whole test suite: Swift unit tests (frontend, IR, passes, fuzzing),
# then the Python tests (PyTorch parity, the C runtime, the CLIs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build --build-tests 2>&1 | tail -n 1
swift test --skip-build
python3 -m pytest tests -q --durations=25
