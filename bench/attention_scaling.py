"""Cost against sequence length (issue #17): full causal attention against local attention (window 256) in
the same small model — 2 layers, dim 128, 4 heads, rotary positions (so any length runs), GELU feed-forward —
at T = 256, 512, ..., 8192, batch 1: forward time (`infer bench`), training-step time (`train bench`), and the
activation memory of each (`kiln stats`: the arena the generated code allocates, which is its peak). Prints a
table and the length from which local attention is faster.

    python3 bench/attention_scaling.py [--window 256] [--max-len 8192] [--train-max-len 4096] [--kiln .build/release/kiln]
"""
import argparse
import os
import pathlib
import re
import subprocess
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent

MODEL = """model Scaling
config {{ vocab = 256, context = {context}, dim = 128, heads = 4, layers = 2 }}
input tokens: i32[B, T] where T <= context
block Layer(x: f32[B, T, dim]) -> f32[B, T, dim] {{
  x = x + attention(layernorm(x), heads: heads, mask: causal, position: rotary{window})
  return x + ffn(layernorm(x), hidden: 4 * dim, activation: gelu)
}}
h = repeat(layers, Layer, embed(tokens, vocab, dim))
output logits = linear(layernorm(h), vocab, bias: false, name: head)
train {{
  objective = next_token(logits)
  batch = 1
  seq = {context}
}}
"""


def run(args, **kw):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, **kw).stdout


def median_ms(out):
    return float(re.search(r"median ([\d.]+) ms", out).group(1))


def arenas(kiln, src, T):
    """(forward, training step) activation arena in MiB at batch 1, length T."""
    out = run([kiln, "stats", src, "--batch", 1, "--seq", T])
    sizes = [int(s.replace(",", "")) for s in re.findall(r"activation arena\s+([\d,]+) bytes", out)]
    return sizes[0] / 2**20, sizes[1] / 2**20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--max-len", type=int, default=8192)
    ap.add_argument("--train-max-len", type=int, default=4096)
    ap.add_argument("--kiln", default=str(ROOT / ".build/release/kiln"))
    args = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kiln-scaling-"))
    lengths = []
    T = 256
    while T <= args.max_len:
        lengths.append(T)
        T *= 2
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"CPU {cpu}, {os.environ.get('OMP_NUM_THREADS', 'all')} threads; batch 1, 2 layers, dim 128, 4 heads")
    print("| T | full fwd ms | local fwd ms | full step ms | local step ms | full fwd/step MiB | local fwd/step MiB |")
    print("|---|---|---|---|---|---|---|")
    faster = {"forward": [], "training step": []}
    for T in lengths:
        row = {}
        for name, window in [("full", ""), ("local", f", window: {args.window}")]:
            src = tmp / f"{name}-{T}.kiln"
            src.write_text(MODEL.format(context=T, window=window))
            out = tmp / f"{name}-{T}"
            run([args.kiln, "build", src, "-o", out])
            iters = ["--iters", 5 if T <= 2048 else 3, "--warmup", 1]
            fwd = median_ms(run([out / "infer", "bench", "--batch", 1, "--seq", T] + iters))
            step = median_ms(run([out / "train", "bench"] + iters)) if T <= args.train_max_len else None
            row[name] = (fwd, step) + arenas(args.kiln, src, T)
        f, l = row["full"], row["local"]
        fmt = lambda v: "–" if v is None else f"{v:.1f}"
        print(f"| {T} | {f[0]:.1f} | {l[0]:.1f} | {fmt(f[1])} | {fmt(l[1])} | {f[2]:.1f} / {f[3]:.1f} | {l[2]:.1f} / {l[3]:.1f} |",
              flush=True)
        faster["forward"].append((T, l[0] < f[0]))
        if f[1] is not None:
            faster["training step"].append((T, l[1] < f[1]))
    for what, rows in faster.items():
        # the crossover: the shortest length from which local attention stays faster
        since = None
        for T, wins in rows:
            since = (since or T) if wins else None
        if since:
            print(f"local attention (window {args.window}) is faster from T = {since} on ({what})")


if __name__ == "__main__":
    main()
