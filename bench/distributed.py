"""Data-parallel training over MPI (issue #18, docs/distributed.md): measured on this machine, then projected.

1. One machine, same global batch: 1 rank x 2 OpenMP threads (`train bench --batch 8 --threads 2`) against
   2 ranks x 1 thread (`mpirun -np 2 train-mpi bench --batch 4`, each rank bound to a core), alternating
   rounds, for examples/char-gpt.kiln (10.8M parameters) at T=256. Prints the medians, the ratio, and the time the two
   ranks spent exchanging gradients (shared memory here).
2. With --gpt2: the same for examples/gpt2-small.kiln (124M parameters) at B=1 per rank, T=1024, and the
   projection of steps per second on 2-64 machines at 10, 25 and 100 Gbit/s from the measured compute time of
   one 2-core machine and the gradient bytes: per step each machine sends and receives 2(N-1)/N of the
   gradients (the ordered reduce-scatter and the all-gather), so the exchange takes
   2(N-1)*alpha + 2(N-1)/N * bytes / bandwidth, alpha = 30 us per message round.

    python3 bench/distributed.py [--rounds 3] [--gpt2] [--kiln .build/release/kiln]
"""
import argparse
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
ALPHA_S = 30e-6


def run(args, env=None):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, env=env or ENV).stdout


def median_ms(out):
    return float(re.search(r"median ([0-9.]+) ms", out).group(1))


def compare(build, B, T, rounds, iters, warmup):
    """Medians over rounds of: 1 rank x 2 threads at B; 2 ranks x 1 thread at B/2 each; the exchange."""
    one, two, exch = [], [], []
    for _ in range(rounds):
        out = run([build / "train", "bench", "--batch", B, "--seq", T, "--threads", 2, "--iters", iters, "--warmup", warmup])
        one.append(median_ms(out))
        out = run(["mpirun", "-np", 2, "--bind-to", "core", build / "train-mpi", "bench", "--batch", B // 2, "--seq", T,
                   "--iters", iters, "--warmup", warmup], env=dict(ENV, OMP_NUM_THREADS="1"))
        two.append(median_ms(out))
        exch.append(float(re.search(r"gradient exchange median ([0-9.]+) ms", out).group(1)))
        grad_bytes = int(re.search(r"\((\d+) bytes of gradients\)", out).group(1))
    return statistics.median(one), statistics.median(two), statistics.median(exch), grad_bytes


def projection(step_s, grad_bytes, B, T):
    """Weak scaling: every machine computes a micro-batch of B x T per step (measured: step_s on one 2-core
    machine) and the exchange is added; then the break-even: the compute per machine per step at which the
    exchange takes as long (below it, half or more of each step is communication)."""
    print(f"\nprojected, each machine a micro-batch of {B}x{T} per step in {step_s:.2f} s (measured), "
          f"{grad_bytes / 1e6:.1f} MB of gradients, alpha {ALPHA_S * 1e6:.0f} us:")
    speeds = (10, 25, 100)
    print("| machines | " + " | ".join(f"{g} Gbit/s: exchange, tokens/s, efficiency" for g in speeds) + " |")
    print("|---:|" + "---|" * len(speeds))
    for n in (1, 2, 4, 8, 16, 32, 64):
        cells = []
        for g in speeds:
            comm = 0.0 if n == 1 else 2 * (n - 1) * ALPHA_S + 2 * (n - 1) / n * grad_bytes / (g * 1e9 / 8)
            t = step_s + comm
            cells.append(f"{comm:.2f} s, {n * B * T / t:,.0f}, {step_s / t:.1%}")
        print(f"| {n} | " + " | ".join(cells) + " |")
    per_token = step_s / (B * T)
    for g in (1, 10, 25, 100):
        limit = 2 * grad_bytes / (g * 1e9 / 8)
        print(f"break-even at {g} Gbit/s: the exchange approaches {limit:.2f} s per step, the compute of "
              f"{limit / per_token:,.0f} tokens per machine here")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gpt2", action="store_true", help="also GPT-2 124M and the projection")
    ap.add_argument("--kiln", default=str(ROOT / ".build/release/kiln"))
    a = ap.parse_args()
    if not (shutil.which("mpirun") and shutil.which("mpicc")):
        sys.exit("bench/distributed.py needs Open MPI: apt-get install openmpi-bin libopenmpi-dev")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"CPU: {cpu}, {os.cpu_count()} cores; {run(['mpirun', '--version']).splitlines()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        cases = [("char-gpt", 8, 256, 5, 1)]
        if a.gpt2:
            cases.append(("gpt2-small", 2, 1024, 2, 1))
        for name, B, T, iters, warmup in cases:
            build = tmp / name
            run([a.kiln, "build", ROOT / "examples" / f"{name}.kiln", "-o", build])
            one, two, exch, grad_bytes = compare(build, B, T, a.rounds, iters, warmup)
            print(f"\n{name}, global batch {B}x{T}, medians of {a.rounds} rounds:")
            print(f"  1 rank x 2 threads (B={B}):          {one:9.1f} ms")
            print(f"  2 ranks x 1 thread (B={B // 2} per rank): {two:9.1f} ms  ({two / one:.2f}x the time), "
                  f"of which the gradient exchange {exch:.1f} ms ({grad_bytes / 1e6:.1f} MB)")
            if name == "gpt2-small":
                # one machine of this kind (2 cores) computes a micro-batch of B/2 sequences per rank... use the
                # measured 1 rank x 2 threads step at B as one machine's compute
                projection(one / 1e3, grad_bytes, B, T)


if __name__ == "__main__":
    main()
