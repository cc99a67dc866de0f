"""Python references for the runtime's training loop, shared by tests/python and tests/runtime: the
RNG (kiln_rng), the data loader's batches and the learning-rate schedule, as runtime/train_main.c
documents them."""
import math

import numpy as np

MASK = (1 << 64) - 1
DATA_RNG_TAG = 0x6B696C6E64617461  # "kilndata": the data sampler's seed tag (runtime/train_main.c)


class Xoshiro:
    """kiln_rng: splitmix64-seeded xoshiro256**, and kiln_rng_below."""

    def __init__(self, seed):
        self.s, x = [], seed
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & MASK
            z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
            self.s.append(z ^ (z >> 31))

    def next(self):
        s = self.s
        rotl = lambda x, k: ((x << k) | (x >> (64 - k))) & MASK
        out = (rotl((s[1] * 5) & MASK, 7) * 9) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t
        s[3] = rotl(s[3], 45)
        return out

    def below(self, n):
        threshold = ((1 << 64) - n) % n
        while True:
            x = self.next()
            if x >= threshold:
                return x % n


def split(data, val_fraction):
    """The training and validation parts of a data file's bytes."""
    n_val = math.floor(len(data) * val_fraction)
    return data[:len(data) - n_val], data[len(data) - n_val:]


def ref_batches(data, seed, B, T, count, val_fraction=0.1):
    """The first `count` micro-batches of the training loader: (tokens, targets) int64 arrays (B, T)."""
    train, _ = split(data, val_fraction)
    rng = Xoshiro(seed ^ DATA_RNG_TAG)
    arr = np.frombuffer(train, np.uint8).astype(np.int64)
    out = []
    for _ in range(count):
        offs = [rng.below(len(train) - T) for _ in range(B)]
        win = np.stack([arr[o:o + T + 1] for o in offs])
        out.append((win[:, :-1], win[:, 1:]))
    return out


def ref_lr(step, lr, min_lr, warmup, decay, schedule="cosine"):
    """The learning rate at a 0-based step: linear warm-up, then cosine decay to min_lr (or constant)."""
    if schedule == "constant":
        return lr
    if step < warmup:
        return lr * (step + 1) / warmup
    if step >= decay:
        return min_lr
    ratio = (step - warmup) / (decay - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * ratio))
