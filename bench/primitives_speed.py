"""Attention written from the primitive tier against the built-in: the multi-head bidirectional attention of
tests/python/test_primitives.py (heads split off with split_last and transpose, scores from matmul, scaled, a
softmax by hand from exp and the reductions, weighted values, heads merged back) and `attention(x, heads: H)`,
in the same one-layer model at dim 128, B=8 T=256,
built here and timed in alternating rounds (`train bench`); prints each median and the speed of the hand-written
one as a fraction of the built-in's (the issue's target: at least 50%).

    python3 bench/primitives_speed.py [--heads 4] [--rounds 5] [--threads 2] [--kiln .build/release/kiln]
"""
import argparse
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests/python"))
import test_primitives as t  # noqa: E402

B, T, DIM = 8, 256, 128


def run(args):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kiln", default=str(ROOT / ".build/release/kiln"))
    ap.add_argument("--heads", type=int, default=4)
    args = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kiln-primitives-"))
    builds = {}
    for name, body in [("built-in attention", t.BUILTIN), ("from primitives", t.BY_HAND)]:
        text = (t.ATTENTION.replace("BODY", body).replace("EXTRA", "")
                .replace(f"vocab = {t.VOCAB}", "vocab = 256").replace(f"context = {t.CONTEXT}", f"context = {T}")
                .replace(f"dim = {t.DIM}", f"dim = {DIM}").replace("heads = 1", f"heads = {args.heads}"))
        src = tmp / f"{len(builds)}.kiln"
        src.write_text(text)
        builds[name] = tmp / f"b{len(builds)}"
        run([args.kiln, "build", src, "-o", builds[name]])
    ms = {n: [] for n in builds}
    for r in range(args.rounds):
        for name in (list(builds) if r % 2 == 0 else list(builds)[::-1]):
            out = run([builds[name] / "train", "bench", "--threads", args.threads, "--batch", B, "--seq", T, "--iters", 10])
            ms[name].append(float(re.search(r"median ([\d.]+) ms", out).group(1)))
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"CPU: {cpu}; threads {args.threads}; one layer, dim {DIM}, {args.heads} heads, B={B} T={T}; training step; {args.rounds} alternating rounds, medians")
    print("| attention | train step ms | speed vs built-in |")
    print("|---|---|---|")
    base = statistics.median(ms["built-in attention"])
    for name in builds:
        m = statistics.median(ms[name])
        print(f"| {name} | {m:.1f} | {base / m:.2f} |")


if __name__ == "__main__":
    main()
