"""Do RMSNorm and SwiGLU cost more per FLOP than LayerNorm and GELU? The small char model
(examples/char-gpt-small.kiln) against the same model with RMSNorm for every LayerNorm and a SwiGLU feed-forward
of 340 (two thirds of 4 * dim, Shazeer 2020) for its GELU one: both built here, timed in alternating rounds
(forward with `infer bench`, a training step with `train bench`), FLOPs from `kiln stats`; prints each one's
median time, GFLOP/s and the variant's time per FLOP over the baseline's.

    python3 bench/variants_speed.py [--rounds 5] [--threads 2] [--kiln .build/release/kiln]
"""
import argparse
import pathlib
import re
import statistics
import subprocess
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
B, T = 12, 64


def run(args):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kiln", default=str(ROOT / ".build/release/kiln"))
    args = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kiln-variants-"))
    base = (ROOT / "examples/char-gpt-small.kiln").read_text()
    variant = base.replace("layernorm(", "rmsnorm(").replace("hidden: 4 * dim, activation: gelu", "hidden: 340, activation: swiglu")
    assert variant.count("rmsnorm(") == 3 and "swiglu" in variant
    models = {"LayerNorm + GELU": base, "RMSNorm + SwiGLU": variant}
    flops, builds = {}, {}
    for name, text in models.items():
        src = tmp / (name.split()[0] + ".kiln")
        src.write_text(text)
        stats = run([args.kiln, "stats", src, "--batch", B, "--seq", T])
        totals = [int(m.replace(",", "")) for m in re.findall(r"total\s+([\d,]+) FLOPs", stats)]
        flops[name] = dict(forward=totals[0], train=totals[1])
        builds[name] = tmp / name.split()[0]
        run([args.kiln, "build", src, "-o", builds[name]])
    times = {(n, k): [] for n in models for k in ("forward", "train")}
    for r in range(args.rounds):
        for name in (list(models) if r % 2 == 0 else list(models)[::-1]):
            out = builds[name]
            f = run([out / "infer", "bench", "--threads", args.threads, "--batch", B, "--seq", T, "--iters", 20])
            times[(name, "forward")].append(float(re.search(r"median ([\d.]+) ms", f).group(1)))
            t = run([out / "train", "bench", "--threads", args.threads, "--batch", B, "--seq", T, "--iters", 5])
            times[(name, "train")].append(float(re.search(r"median ([\d.]+) ms", t).group(1)))
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"CPU: {cpu}; threads {args.threads}; B={B} T={T}; {args.rounds} alternating rounds, medians")
    print("(the ratio is the median over rounds of each round's pair, which a machine whose speed drifts between")
    print("rounds leaves closer to the truth than the ratio of the medians)")
    print("| model | pass | MFLOP | ms | GFLOP/s | time per FLOP vs LayerNorm + GELU |")
    print("|---|---|---|---|---|---|")
    base = "LayerNorm + GELU"
    for kind in ("forward", "train"):
        for name in models:
            ms = statistics.median(times[(name, kind)])
            pairs = [(t / flops[name][kind]) / (b / flops[base][kind]) for t, b in zip(times[(name, kind)], times[(base, kind)])]
            print(f"| {name} | {kind} | {flops[name][kind] / 1e6:.1f} | {ms:.2f} | {flops[name][kind] / ms / 1e6:.1f} | {statistics.median(pairs):.3f} |")


if __name__ == "__main__":
    main()
