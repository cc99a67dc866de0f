"""Reformer's LSH attention (Kitaev et al. 2020; `lsh_attention`, tests/models/lsh.kiln) against a PyTorch
transcription (float64): the rotations from the same documented generator (splitmix64 and Box-Muller), the buckets
as the argmax of [xR, -xR], the stable sort by bucket and position, chunks that see their own and the previous
chunk, the causal mask, the own key at -1e5, and one softmax over every (round, key) pair. The forward pass, the
gradients against autograd, every VJP of a float64 build against finite differences, and the one-line errors."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from kilntest import ROOT, assert_finite_differences, assert_gradients_match, dump_gradients, perturbed_weights, run

MODEL = "tests/models/lsh.kiln"
VOCAB, CONTEXT, DIM, HEADS, BUCKETS, HASHES, CHUNK, SEED = 29, 24, 16, 2, 4, 2, 4, 1
M64 = (1 << 64) - 1


def mix(x):
    z = (x + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def rotations(seed, hashes, d, buckets):
    """[hashes, D, buckets / 2]: entry i is sqrt(-2 ln u1) cos(2 pi u2) of the uniforms of keys 2k, 2k + 1,
    k = seed * 2^32 + i, rounded to float32 as the float build's."""
    n = hashes * d * (buckets // 2)
    out = np.empty(n)
    for i in range(n):
        k = ((seed << 32) + i) & M64
        u1 = ((mix((2 * k) & M64) >> 11) + 1) * 2.0 ** -53
        u2 = (mix((2 * k + 1) & M64) >> 11) * 2.0 ** -53
        out[i] = math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2)
    return out.astype(np.float32).reshape(hashes, d, buckets // 2)


def lsh_attention(qk, v, heads, hashes, buckets, chunk, seed, causal):
    """The op's definition in PyTorch; also the smallest margin of any hash decision (so that a test can check
    that float32 and float64 hash alike)."""
    B, T, C = qk.shape
    D = C // heads
    R = torch.from_numpy(rotations(seed, hashes, D, buckets)).to(qk.dtype)
    x = qk.view(B, T, heads, D).transpose(1, 2)
    vv = v.view(B, T, heads, D).transpose(1, 2)
    k = x / torch.sqrt((x * x).sum(-1, keepdim=True) + 1e-12)
    s = x @ k.transpose(-1, -2) / math.sqrt(D)
    counts = torch.zeros(B, heads, T, T, dtype=qk.dtype)
    margin = math.inf
    with torch.no_grad():
        for r in range(hashes):
            y = x @ R[r]
            z = torch.cat([y, -y], -1)
            top = z.topk(2, -1).values
            margin = min(margin, (top[..., 0] - top[..., 1]).min().item())
            bucket = z.argmax(-1)
            for b in range(B):
                for h in range(heads):
                    order = sorted(range(T), key=lambda t: (bucket[b, h, t].item(), t))
                    slot = {t: i for i, t in enumerate(order)}
                    for i in range(T):
                        c0 = slot[i] // chunk * chunk
                        for sl in range(c0 - chunk if c0 >= chunk else 0, min(c0 + chunk, T)):
                            j = order[sl]
                            if not (causal and j > i):
                                counts[b, h, i, j] += 1
    s = torch.where(torch.eye(T, dtype=torch.bool), torch.full_like(s, -1e5), s)
    p = torch.softmax(s + torch.log(counts), -1)
    return (p @ vv).transpose(1, 2).reshape(B, T, C), margin


class LSHLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.positions = nn.Embedding(CONTEXT, DIM)
        self.layernorm = nn.LayerNorm(DIM)
        self.attention = nn.ModuleDict({n: nn.Linear(DIM, DIM) for n in ("query_key", "value", "output")})
        self.layernorm_1 = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, VOCAB)

    def forward(self, tokens):
        h = self.embed(tokens) + self.positions.weight[:tokens.shape[1]]
        a = self.layernorm(h)
        o, self.margin = lsh_attention(self.attention["query_key"](a), self.attention["value"](a), HEADS, HASHES, BUCKETS, CHUNK, SEED, True)
        return self.head(self.layernorm_1(h + self.attention["output"](o)))


@pytest.fixture(scope="module")
def lsh(kiln, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lsh")
    r = run([kiln, "build", ROOT / MODEL, "-o", tmp / "out"])
    assert r.returncode == 0, r.stderr
    w = tmp / "w.safetensors"
    perturbed_weights(tmp / "out/infer", w, 2, scale=0.2)
    ref = LSHLM().double()
    ref.load_state_dict({k: v.double() for k, v in load_file(str(w)).items()}, strict=True)
    return tmp, w, ref


def test_forward_matches_pytorch(lsh):
    tmp, w, ref = lsh
    tokens = np.random.default_rng(1).integers(0, VOCAB, size=(3, 21), dtype=np.int32)
    np.save(tmp / "tokens.npy", tokens)
    r = run([tmp / "out/infer", "run", "--weights", w, "--input", f"tokens={tmp / 'tokens.npy'}", "--output", f"logits={tmp / 'logits.npy'}"])
    assert r.returncode == 0, r.stderr
    with torch.no_grad():
        want = ref(torch.from_numpy(tokens).long()).numpy()
    assert ref.margin > 1e-4  # no hash decision that float32 could take the other way
    got = np.load(tmp / "logits.npy")
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_gradients_match_autograd_and_finite_differences(lsh, kiln):
    tmp, w, ref = lsh
    rng = np.random.default_rng(3)
    tokens, targets = (rng.integers(0, VOCAB, size=(2, CONTEXT), dtype=np.int32) for _ in range(2))
    ours, our_loss = dump_gradients(tmp / "out", w, tokens, targets, tmp)
    ref.zero_grad()
    loss = F.cross_entropy(ref(torch.from_numpy(tokens).long()).reshape(-1, VOCAB), torch.from_numpy(targets).long().reshape(-1))
    loss.backward()
    assert ref.margin > 1e-4
    assert_gradients_match(ours, our_loss, ref, loss)
    assert_finite_differences(kiln, ROOT / MODEL, tmp / "f64", seeds=(1, 2), seq=19)


BAD = [
    ("buckets: 5", "lsh_attention: buckets must be even, in 2 ... 1024, got 5"),
    ("buckets: 4, hashes: 17", "lsh_attention: hashes must be in 1 ... 16, got 17"),
    ("buckets: 4, chunk: 0", "chunk must be positive"),
    ("buckets: 4, mask: diagonal", "mask must be one of none, causal"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_arguments_get_one_line_errors(kiln, tmp_path, args, message):
    (tmp_path / "m.kiln").write_text("model M\ninput tokens: i32[B, T] where T <= 8\nh = embed(tokens, 16, 8)\n"
                                     f"output y = lsh_attention(h, heads: 2, {args})\n")
    r = run([kiln, "check", tmp_path / "m.kiln"])
    assert r.returncode != 0 and "m.kiln:4:" in r.stderr and message in r.stderr, r.stderr
