"""Cost against sequence length (issue #17): full attention against the variants below O(T²) in the same small
model — 2 layers, dim 128, 4 heads, GELU feed-forward, batch 1 — at T = 256, 512, ..., 8192: forward time
(`infer bench`), training-step time (`train bench`), and the activation memory of each (`kiln stats`: the arena
the generated code allocates, which is its peak besides weights, gradients and optimizer state).

Two families, each built for every T:
  causal         next-token models with rotary positions: full attention, local attention (window W), Reformer's
                 LSH attention (shared query/key, 2 hash rounds, chunks of 64; no rotary positions)
  bidirectional  masked-language models with learned positions: full attention, local attention (W positions
                 either side), Linformer (keys and values projected to K rows), BigBird (blocks of 64: 2 global,
                 a window of 3, 3 random)
Prints a table per family, the length from which each variant stays faster than full attention, and how each
grows per doubling of T; --svg DIR also draws the times on log-log axes (one SVG per family).

    python3 bench/attention_scaling.py [--window 256] [--rows 256] [--block 64] [--buckets 32] [--chunk 64] [--max-len 8192] [--full-train-max-len 4096]
                                       [--family causal|bidirectional|all] [--svg DIR] [--kiln .build/release/kiln]
"""
import argparse
import math
import os
import pathlib
import re
import subprocess
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent

CAUSAL = """model Scaling
config {{ vocab = 256, context = {context}, dim = 128, heads = 4, layers = 2 }}
input tokens: i32[B, T] where T <= context
block Layer(x: f32[B, T, dim]) -> f32[B, T, dim] {{
  x = x + {attention}
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

BIDIRECTIONAL = """model Scaling
config {{ vocab = 256, context = {context}, dim = 128, heads = 4, layers = 2 }}
input tokens: i32[B, T] where T <= context
block Layer(x: f32[B, T, dim]) -> f32[B, T, dim] {{
  x = x + {attention}
  return x + ffn(layernorm(x), hidden: 4 * dim, activation: gelu)
}}
h = repeat(layers, Layer, embed(tokens, vocab, dim) + positions(learned, T, dim))
output logits = linear(layernorm(h), vocab, bias: false, name: head)
train {{
  objective = masked_lm(logits, mask: 0)
  batch = 1
  seq = {context}
}}
"""


def families(window, rows, block, buckets, chunk):
    """Each family's template and its variants: (name, the attention call of a layer)."""
    causal = "attention(layernorm(x), heads: heads, mask: causal, position: rotary{})"
    bidirectional = "attention(layernorm(x), heads: heads{})"
    return {
        "causal": (CAUSAL, [("full", causal.format("")), (f"local (window {window})", causal.format(f", window: {window}")),
                            (f"LSH ({buckets} buckets, 2 hashes, chunks of {chunk})",
                             f"lsh_attention(layernorm(x), heads: heads, buckets: {buckets}, hashes: 2, chunk: {chunk}, mask: causal)")]),
        "bidirectional": (BIDIRECTIONAL, [("full", bidirectional.format("")),
                                          (f"local (window {window})", bidirectional.format(f", window: {window}")),
                                          (f"Linformer (k = {rows})", bidirectional.format(f", lowrank: {rows}")),
                                          (f"BigBird (blocks of {block}, 2 global, 3 random)",
                                           bidirectional.format(f", block: {block}, global: 2, random: 3"))]),
    }


def run(args, **kw):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, **kw).stdout


def median_ms(out):
    return float(re.search(r"median ([\d.]+) ms", out).group(1))


def arenas(kiln, src, T):
    """(forward, training step) activation arena in MiB at batch 1, length T."""
    out = run([kiln, "stats", src, "--batch", 1, "--seq", T])
    sizes = [int(s.replace(",", "")) for s in re.findall(r"activation arena\s+([\d,]+) bytes", out)]
    return sizes[0] / 2**20, sizes[1] / 2**20


def crossover(rows):
    """The shortest length from which the variant stays faster, or None."""
    since = None
    for T, wins in rows:
        since = (since or T) if wins else None
    return since


def svg_chart(path, title, lengths, series):
    """A log-log line chart: series = [(label, colour, dashed, [value or None per length])]."""
    W, H, left, right, top, bottom = 640, 400, 64, 190, 40, 48
    values = [v for _, _, _, vs in series for v in vs if v]
    lo, hi = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    x = lambda T: left + (W - left - right) * math.log2(T / lengths[0]) / max(1, math.log2(lengths[-1] / lengths[0]))
    y = lambda v: H - bottom - (H - top - bottom) * (math.log10(v) - lo) / max(1, hi - lo)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="14">{title}</text>']
    for e in range(lo, hi + 1):
        out.append(f'<line x1="{left}" x2="{W - right}" y1="{y(10**e):.1f}" y2="{y(10**e):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y(10**e) + 4:.1f}" text-anchor="end">{10**e:g} ms</text>')
    for T in lengths:
        out.append(f'<line x1="{x(T):.1f}" x2="{x(T):.1f}" y1="{top}" y2="{H - bottom}" stroke="#eee"/>')
        out.append(f'<text x="{x(T):.1f}" y="{H - bottom + 16}" text-anchor="middle">{T}</text>')
    out.append(f'<text x="{(left + W - right) / 2:.0f}" y="{H - 10}" text-anchor="middle">sequence length T</text>')
    for k, (label, colour, dashed, vs) in enumerate(series):
        pts = [(x(T), y(v)) for T, v in zip(lengths, vs) if v]
        dash = ' stroke-dasharray="5,3"' if dashed else ""
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="'
                   + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
        out += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="{colour}"/>' for a, b in pts]
        ly = top + 14 + 18 * k
        out.append(f'<line x1="{W - right + 12}" x2="{W - right + 36}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{W - right + 42}" y="{ly}">{label}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--rows", type=int, default=256, help="Linformer's projected rows k")
    ap.add_argument("--block", type=int, default=64, help="BigBird's block size")
    ap.add_argument("--buckets", type=int, default=32, help="LSH attention's buckets")
    ap.add_argument("--chunk", type=int, default=64, help="LSH attention's chunk length")
    ap.add_argument("--max-len", type=int, default=8192)
    ap.add_argument("--full-train-max-len", type=int, default=4096,
                    help="the longest full-attention training step (its T x T buffers: 8.5 GiB at 8192)")
    ap.add_argument("--family", choices=["causal", "bidirectional", "all"], default="all")
    ap.add_argument("--svg", help="directory for one log-log chart per family")
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
    colours = ["#1f4e99", "#c0392b", "#1e8449", "#8e44ad"]
    for family, (template, variants) in families(args.window, args.rows, args.block, args.buckets, args.chunk).items():
        if args.family not in ("all", family):
            continue
        print(f"\n{family}: forward ms / training-step ms / forward MiB / step MiB")
        print("| T | " + " | ".join(name for name, _ in variants) + " |")
        print("|---|" + "---|" * len(variants))
        results = {name: [] for name, _ in variants}
        for T in lengths:
            cells = []
            for name, variant in variants:
                src = tmp / f"{family}-{len(results[name])}-{T}-{variants.index((name, variant))}.kiln"
                src.write_text(template.format(context=T, attention=variant))
                out = src.with_suffix("")
                run([args.kiln, "build", src, "-o", out])
                iters = ["--iters", 5 if T <= 2048 else 3, "--warmup", 1]
                fwd = median_ms(run([out / "infer", "bench", "--batch", 1, "--seq", T] + iters))
                trains = name != "full" or T <= args.full_train_max_len
                step = median_ms(run([out / "train", "bench"] + iters)) if trains else None
                mf, ms = arenas(args.kiln, src, T)
                results[name].append((T, fwd, step, mf, ms))
                cells.append(f"{fwd:.1f} / {'–' if step is None else f'{step:.1f}'} / {mf:.1f} / {ms:.1f}")
            print(f"| {T} | " + " | ".join(cells) + " |", flush=True)
        full = results["full"]
        for name, _ in variants[1:]:
            rows = results[name]
            for k, what in [(1, "forward"), (2, "training step")]:
                since = crossover([(r[0], f[k] is None or r[k] < f[k]) for r, f in zip(rows, full) if r[k] is not None])
                growth = [f"{b[k] / a[k]:.2f}" for a, b in zip(rows, rows[1:]) if a[k] and b[k]]
                print(f"{name}: {what} faster than full from T = {since} on; x per doubling of T: {', '.join(growth)}"
                      if since else f"{name}: {what} never faster than full; x per doubling of T: {', '.join(growth)}")
        growth = [f"{b[1] / a[1]:.2f}" for a, b in zip(full, full[1:])]
        print(f"full: forward x per doubling of T: {', '.join(growth)}")
        if args.svg:
            d = pathlib.Path(args.svg)
            d.mkdir(parents=True, exist_ok=True)
            series = []
            for (name, _), colour in zip(variants, colours):
                series.append((f"{name}, forward", colour, True, [r[1] for r in results[name]]))
                series.append((f"{name}, step", colour, False, [r[2] for r in results[name]]))
            svg_chart(d / f"attention-scaling-{family}.svg", f"{family} attention: time against length ({cpu}, batch 1)",
                      lengths, series)


if __name__ == "__main__":
    main()
