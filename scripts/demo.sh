#!/usr/bin/env bash
# The main job: compile the example models to standalone binaries and run them.
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=.build/debug/kiln

# 1. The character GPT of examples/char-gpt.kiln (6 layers, 384 dim): compile, run, time.
$KILN check examples/char-gpt.kiln
$KILN build examples/char-gpt.kiln -o out/char-gpt
out/char-gpt/infer init --seed 1 --out out/char-gpt/random.safetensors
out/char-gpt/infer bench --batch 1 --seq 256 --iters 5

# 2. The small character GPT trained on tiny Shakespeare (weights shipped in examples/weights/):
#    generate text with it.
$KILN build examples/char-gpt-small.kiln -o out/char-gpt-small
out/char-gpt-small/infer generate --weights examples/weights/char-gpt-small.safetensors \
    --prompt "ROMEO:" --tokens 300 --temperature 0.8 --seed 1
echo
