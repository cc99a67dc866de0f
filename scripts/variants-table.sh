#!/usr/bin/env bash
# Writes docs/variants.md: every variant of docs/language.md written into the small character model
# (examples/char-gpt-small.kiln: vocab 256, context 64, dim 128, 4 heads, 4 layers), with its parameters and
# FLOPs from `kiln stats` (batch 12, sequence 64, the model's training shape).
#   bash scripts/variants-table.sh            (uses .build/release/kiln, or KILN=path; OUT=path writes elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN:-.build/release/kiln}
OUT=${OUT:-docs/variants.md}
[ -x "$KILN" ] || { echo "variants-table: $KILN is not built (swift build -c release)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# variant NAME PAPER EMBED LAYER FINAL [REPEAT_OPTIONS]: EMBED is the embedded input, LAYER the block's body
# (x in, two statements), FINAL the output head's input norm.
rows=()
variant() {
  local name=$1 paper=$2 embed=$3 body=$4 final=$5 repeat=${6:-}
  cat > "$tmp/m.kiln" <<KILN
model Variant
config { vocab = 256, context = 64, dim = 128, heads = 4, layers = 4 }
input tokens: i32[B, T] where T <= context
block Layer(x: f32[B, T, dim]) -> f32[B, T, dim] {
$body
}
h = repeat(layers, Layer, $embed$repeat)
output logits = linear($final, vocab, bias: false, name: head)
train {
  objective = next_token(logits)
  batch = 12
  seq = 64
}
KILN
  local stats params fwd train
  stats=$("$KILN" stats "$tmp/m.kiln" --batch 12 --seq 64)
  params=$(awk '/^parameters/ {print $2}' <<<"$stats")
  fwd=$(awk '/total/ {print $2; exit}' <<<"$stats")
  train=$(awk '/total/ {n++; if (n == 2) print $2}' <<<"$stats")
  rows+=("| $name | $paper | $params | $fwd | $train |")
}

# bidirectional NAME PAPER ATTENTION_ARGUMENTS: a bidirectional masked-language model of the same sizes (learned
# positions, pre-norm, GELU) whose attention takes these further arguments
birows=()
bidirectional() {
  local name=$1 paper=$2 args=$3
  cat > "$tmp/b.kiln" <<KILN
model Bidirectional
config { vocab = 256, context = 64, dim = 128, heads = 4, layers = 4 }
input tokens: i32[B, T] where T <= context
block Layer(x: f32[B, T, dim]) -> f32[B, T, dim] {
  x = x + attention(layernorm(x), heads: heads$args)
  return x + ffn(layernorm(x), hidden: 4 * dim, activation: gelu)
}
h = repeat(layers, Layer, embed(tokens, vocab, dim) + positions(learned, T, dim))
output logits = linear(layernorm(h), vocab, bias: false, name: head)
train {
  objective = masked_lm(logits, mask: 0)
  batch = 12
  seq = 64
}
KILN
  local stats
  stats=$("$KILN" stats "$tmp/b.kiln" --batch 12 --seq 64)
  birows+=("| $name | $paper | $(awk '/^parameters/ {print $2}' <<<"$stats") | $(awk '/total/ {print $2; exit}' <<<"$stats") | $(awk '/total/ {n++; if (n == 2) print $2}' <<<"$stats") |")
}

# model_row NAME PAPER FILE: a whole model file of examples/ (the same vocabulary, training shape and about the
# parameters) for what is not a layer of the transformer
model_row() {
  local stats
  stats=$("$KILN" stats "$3" --batch 12 --seq 64)
  rows+=("| $1 | $2 | $(awk '/^parameters/ {print $2}' <<<"$stats") | $(awk '/total/ {print $2; exit}' <<<"$stats") | $(awk '/total/ {n++; if (n == 2) print $2}' <<<"$stats") |")
}

pre="  x = x + attention(layernorm(x), heads: heads, mask: causal)
  return x + ffn(layernorm(x), hidden: 4 * dim, activation: gelu)"
learned="embed(tokens, vocab, dim) + positions(learned, T, dim)"
variant "baseline: pre-norm, learned positions, GELU" "Radford et al. 2019" "$learned" "$pre" "layernorm(h)"
variant "sinusoidal positions" "Vaswani et al. 2017" "embed(tokens, vocab, dim) + positions(sinusoidal, T, dim)" "$pre" "layernorm(h)"
variant "no positions" "Haviv et al. 2022" "embed(tokens, vocab, dim)" "$pre" "layernorm(h)"
variant "rotary positions" "Su et al. 2021" "embed(tokens, vocab, dim)" "  x = x + attention(layernorm(x), heads: heads, mask: causal, position: rotary)
  return x + ffn(layernorm(x), hidden: 4 * dim, activation: gelu)" "layernorm(h)"
variant "ALiBi" "Press et al. 2022" "embed(tokens, vocab, dim)" "  x = x + attention(layernorm(x), heads: heads, mask: causal, position: alibi)
  return x + ffn(layernorm(x), hidden: 4 * dim, activation: gelu)" "layernorm(h)"
variant "relative positions (clip 16)" "Shaw et al. 2018" "embed(tokens, vocab, dim)" "  x = x + attention(layernorm(x), heads: heads, mask: causal, position: relative, clip: 16)
  return x + ffn(layernorm(x), hidden: 4 * dim, activation: gelu)" "layernorm(h)"
variant "T5 relative bias (32 buckets)" "Raffel et al. 2020" "embed(tokens, vocab, dim)" "  x = x + attention(layernorm(x), heads: heads, mask: causal, position: t5)
  return x + ffn(layernorm(x), hidden: 4 * dim, activation: gelu)" "layernorm(h)"
variant "post-norm" "Vaswani et al. 2017" "$learned" "  x = layernorm(x + attention(x, heads: heads, mask: causal))
  return layernorm(x + ffn(x, hidden: 4 * dim, activation: gelu))" "h"
variant "RMSNorm" "Zhang & Sennrich 2019" "$learned" "  x = x + attention(rmsnorm(x), heads: heads, mask: causal)
  return x + ffn(rmsnorm(x), hidden: 4 * dim, activation: gelu)" "rmsnorm(h)"
variant "ReZero, no norm" "Bachlechner et al. 2020" "$learned" "  x = x + rezero(attention(x, heads: heads, mask: causal))
  return x + rezero(ffn(x, hidden: 4 * dim, activation: gelu))" "h"
variant "ReZero with LayerNorm" "Bachlechner et al. 2020" "$learned" "  x = x + rezero(attention(layernorm(x), heads: heads, mask: causal))
  return x + rezero(ffn(layernorm(x), hidden: 4 * dim, activation: gelu))" "layernorm(h)"
for act in relu gelu_tanh silu sigmoid elu selu softplus; do
  variant "activation $act" "Narang et al. 2021, table 1" "$learned" "  x = x + attention(layernorm(x), heads: heads, mask: causal)
  return x + ffn(layernorm(x), hidden: 4 * dim, activation: $act)" "layernorm(h)"
done
# gated units at 2/3 of the width, so that they have about the parameters of the plain feed-forward (Shazeer 2020)
for glu in glu reglu geglu swiglu liglu; do
  variant "$glu, hidden 340" "Shazeer 2020" "$learned" "  x = x + attention(layernorm(x), heads: heads, mask: causal)
  return x + ffn(layernorm(x), hidden: 340, activation: $glu)" "layernorm(h)"
done
variant "multi-query attention (1 key/value head)" "Shazeer 2019" "$learned" "  x = x + attention(layernorm(x), heads: heads, kv_heads: 1, mask: causal)
  return x + ffn(layernorm(x), hidden: 4 * dim, activation: gelu)" "layernorm(h)"
variant "grouped-query attention (2 key/value heads)" "Ainslie et al. 2023" "$learned" "  x = x + attention(layernorm(x), heads: heads, kv_heads: 2, mask: causal)
  return x + ffn(layernorm(x), hidden: 4 * dim, activation: gelu)" "layernorm(h)"
variant "local attention (window 16)" "Beltagy et al. 2020" "$learned" "  x = x + attention(layernorm(x), heads: heads, mask: causal, window: 16)
  return x + ffn(layernorm(x), hidden: 4 * dim, activation: gelu)" "layernorm(h)"
variant "Reformer LSH attention (8 buckets, 2 hashes, chunks of 16)" "Kitaev et al. 2020" "$learned" "  x = x + lsh_attention(layernorm(x), heads: heads, buckets: 8, hashes: 2, chunk: 16, mask: causal)
  return x + ffn(layernorm(x), hidden: 4 * dim, activation: gelu)" "layernorm(h)"
variant "mixture of experts: Switch, 8 experts, top 1" "Fedus et al. 2021" "$learned" "  x = x + attention(layernorm(x), heads: heads, mask: causal)
  return x + moe(layernorm(x), experts: 8, hidden: 4 * dim, top: 1)" "layernorm(h)"
variant "mixture of experts: 8 experts, top 2" "Shazeer et al. 2017" "$learned" "  x = x + attention(layernorm(x), heads: heads, mask: causal)
  return x + moe(layernorm(x), experts: 8, hidden: 4 * dim, top: 2)" "layernorm(h)"
variant "shared layers" "Lan et al. 2020" "$learned" "$pre" "layernorm(h)" ", shared: true"
variant "Universal Transformer (no ACT)" "Dehghani et al. 2019" "embed(tokens, vocab, dim) + positions(sinusoidal, T, dim)" "$pre" "layernorm(h)" ", shared: true, timestep: true"
variant "Universal Transformer with ACT (4 steps)" "Dehghani et al. 2019" "embed(tokens, vocab, dim) + positions(sinusoidal, T, dim)" "$pre" "layernorm(h)" ", shared: true, timestep: true, halting: 0.01"
variant "factorized embeddings (E = 32)" "Lan et al. 2020" "linear(embed(tokens, vocab, 32), dim, bias: false) + positions(learned, T, dim)" "$pre" "layernorm(h)"
variant "Llama layout (RMSNorm, rotary, GQA 4/2, SwiGLU 340, no biases)" "Touvron et al. 2023" "embed(tokens, vocab, dim)" "  x = x + attention(rmsnorm(x), heads: heads, kv_heads: 2, mask: causal, bias: false, position: rotary)
  return x + ffn(rmsnorm(x), hidden: 340, activation: swiglu, bias: false)" "rmsnorm(h)"
model_row "LSTM, 2 layers of 224 (examples/char-lstm.kiln)" "Hochreiter & Schmidhuber 1997" examples/char-lstm.kiln

bidirectional "bidirectional baseline: full attention" "Devlin et al. 2019" ""
bidirectional "local attention (16 either side)" "Beltagy et al. 2020" ", window: 17"
bidirectional "Linformer (k = 16)" "Wang et al. 2020" ", lowrank: 16"
bidirectional "BigBird (blocks of 8, 1 global, 1 random)" "Zaheer et al. 2020" ", block: 8, global: 1, random: 1"

{
  echo "# Variants"
  echo
  echo "Generated by \`bash scripts/variants-table.sh\` (do not edit): each variant of docs/language.md written into the"
  echo "small character model (vocab 256, context 64, dim 128, 4 heads, 4 layers, an untied output head), with"
  echo "\`kiln stats --batch 12 --seq 64\`: its parameters, the FLOPs of a forward pass and of a training step"
  echo "(forward, loss and backward) at that shape; the last row is a whole model of about the same parameters."
  echo "A mixture of experts counts all its experts' parameters and the FLOPs of the k a token uses (\`kiln stats\`"
  echo "prints its active parameters). Every variant is tested against PyTorch (tests/python/test_variants.py,"
  echo "tests/python/test_activations.py, tests/python/test_lstm.py, tests/python/test_moe.py, tests/python/test_lsh.py)."
  echo
  echo "| variant | paper | parameters | forward FLOPs | training-step FLOPs |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Bidirectional attention, in the same model with full (not causal) attention and the masked-language-model"
  echo "objective (tests/python/test_encoder.py checks each against PyTorch):"
  echo
  echo "| variant | paper | parameters | forward FLOPs | training-step FLOPs |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${birows[@]}"
} > "$OUT"
echo "wrote $OUT (${#rows[@]} + ${#birows[@]} variants)"
