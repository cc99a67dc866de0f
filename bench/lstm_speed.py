"""The LSTM's speed (issue #17): examples/char-lstm.kiln against the same model in PyTorch (nn.Embedding,
nn.LSTM, nn.Linear; eager, AdamW), and its generation against the transformer of the same size.

1. Training step, B=12 T=64 (the example's recipe): Kiln's `train bench` against PyTorch eager timing the same
   step (forward, cross-entropy, backward, clipping, AdamW), alternating rounds; prints medians and the ratio.
2. Generation: milliseconds per token of `decode_step` at growing prefix lengths, for char-lstm and
   char-gpt-small, both built with `--set context=2048` (the LSTM needs no bound, the transformer's KV cache
   holds 2048 positions), through the C library (examples/c-api/kiln_ctypes.py): prefill p tokens, then 32 steps.
   The LSTM's time per token should not grow with p; attention's grows with the keys it reads.

    python3 bench/lstm_speed.py [--rounds 5] [--threads 2] [--kiln .build/release/kiln]
"""
import argparse
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
B, T, VOCAB = 12, 64, 256


def run(args, env=None):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, env=env).stdout


def torch_step_ms(threads, iters):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    class CharLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, 128)
            self.lstm = nn.LSTM(128, 224, num_layers=2, batch_first=True)
            self.head = nn.Linear(224, VOCAB)

        def forward(self, x):
            return self.head(self.lstm(self.embed(x))[0])

    model = CharLSTM()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    x = torch.randint(0, VOCAB, (B, T))
    y = torch.randint(0, VOCAB, (B, T))
    times = []
    for i in range(iters + 2):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i >= 2:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def kiln_step_ms(build, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = run([build / "train", "bench"], env=env)
    return float(re.search(r"median ([\d.]+) ms", out).group(1))


def generation_ms(library, positions, steps=32):
    sys.path.insert(0, str(ROOT / "examples/c-api"))
    import numpy as np
    from kiln_ctypes import Model
    m = Model(library)
    rng = np.random.default_rng(0)
    result = {}
    for p in positions:
        tokens = rng.integers(0, VOCAB, size=(1, p + steps), dtype=np.int32)
        m.reset_state(1)
        m.run("prefill", tokens=tokens[:, :p])
        t0 = time.perf_counter()
        for k in range(steps):
            m.run("decode_step", tokens=tokens[:, p + k:p + k + 1], positions=np.array([[p + k]], np.int32))
        result[p] = (time.perf_counter() - t0) * 1e3 / steps
    m.close()
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kiln", default=str(ROOT / ".build/release/kiln"))
    args = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kiln-lstm-"))
    lstm = tmp / "lstm"
    run([args.kiln, "build", ROOT / "examples/char-lstm.kiln", "-o", lstm])

    print(f"training step B={B} T={T}, {args.threads} threads, {args.rounds} rounds")
    ours, theirs = [], []
    for _ in range(args.rounds):
        ours.append(kiln_step_ms(lstm, args.threads))
        theirs.append(torch_step_ms(args.threads, 10))
    k, t = statistics.median(ours), statistics.median(theirs)
    print(f"| char-lstm train step | {k:.1f} ms | PyTorch eager {t:.1f} ms | Kiln/PyTorch {k / t:.2f} |")

    print(f"generation, ms per token of decode_step (1 row, {args.threads} threads)")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    positions = [16, 128, 512, 1024, 1984]
    rows = {}
    for name, src in [("char-lstm", "examples/char-lstm.kiln"), ("char-gpt-small", "examples/char-gpt-small.kiln")]:
        out = tmp / (name + "-2048")
        run([args.kiln, "build", ROOT / src, "--set", "context=2048", "-o", out])
        rows[name] = generation_ms(next(out.glob("lib*.so")), positions)
    print("| model | " + " | ".join(f"p={p}" for p in positions) + " |")
    print("|---|" + "---|" * len(positions))
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(f"{r[p]:.3f}" for p in positions) + " |")


if __name__ == "__main__":
    main()
