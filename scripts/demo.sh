#!/usr/bin/env bash
# The main job: compile examples/char-gpt.kiln to a standalone binary and run it.
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=.build/debug/kiln
$KILN check examples/char-gpt.kiln
$KILN build examples/char-gpt.kiln -o out/char-gpt
WEIGHTS=examples/weights/char-gpt.safetensors
if [ ! -f "$WEIGHTS" ]; then
  # No trained weights shipped yet: use a seeded random initialisation.
  WEIGHTS=out/char-gpt/random.safetensors
  out/char-gpt/infer init --seed 1 --out "$WEIGHTS"
fi
out/char-gpt/infer generate --weights "$WEIGHTS" --prompt "ROMEO:" --tokens 200 --temperature 0.8 --seed 1
echo
out/char-gpt/infer bench --batch 1 --seq 256 --iters 5
