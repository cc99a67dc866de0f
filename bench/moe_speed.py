"""What does a mixture of experts cost per training step, in Kiln and in PyTorch? examples/char-moe.kiln (8 experts
per layer, Switch routing with capacity 1.25, or top-2) and the dense examples/char-gpt-small.kiln, each against
a PyTorch model of the same shape, timed side by side in alternating rounds at B=12 T=64: a training step (forward,
next-token loss + 0.01 * balance + 0.001 * z-loss, backward, AdamW). The PyTorch MoE dispatches as Hugging Face's
Switch and Mixtral code does (per expert: the indices of its tokens, index_select, two matmuls, index_add of the
gated result); its dense model is reference.GPT's layers. Prints each median and Kiln's time over PyTorch's.

    python3 bench/moe_speed.py [--rounds 5] [--threads 2] [--kiln .build/release/kiln]
"""
import argparse
import math
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests/python"))
import reference  # noqa: E402

B, T, VOCAB, DIM, HEADS, LAYERS, EXPERTS = 12, 64, 256, 128, 4, 4, 8


class SparseMoE(nn.Module):
    """A mixture of experts as PyTorch users write it: per expert, gather its tokens, run it, scatter back."""

    def __init__(self, top, capacity):
        super().__init__()
        self.top, self.capacity = top, capacity
        self.router = nn.Linear(DIM, EXPERTS, bias=False)
        self.up = nn.Parameter(torch.randn(EXPERTS, 4 * DIM, DIM) * 0.02)
        self.down = nn.Parameter(torch.randn(EXPERTS, 4 * DIM, DIM) * 0.02)

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, DIM)
        n, k = x.shape[0], self.top
        logits = self.router(x)
        p = torch.softmax(logits, -1)
        top_p, top_e = torch.topk(p, k, -1)
        w = top_p if k == 1 else top_p / top_p.sum(-1, keepdim=True)
        cap = math.ceil(self.capacity * k * n / EXPERTS)
        y = torch.zeros_like(x)
        taken = torch.zeros(EXPERTS, dtype=torch.long)
        keep = torch.zeros(n, k, dtype=torch.bool)
        for j in range(k):  # first choices before second ones, in token order (GShard)
            onehot = F.one_hot(top_e[:, j], EXPERTS)
            position = (torch.cumsum(onehot, 0) - 1 + taken).gather(1, top_e[:, j:j + 1]).squeeze(1)
            keep[:, j] = position < cap
            taken = taken + (onehot * keep[:, j:j + 1]).sum(0)
        for e in range(EXPERTS):
            token, slot = torch.where((top_e == e) & keep)
            if token.numel() == 0:
                continue
            h = F.gelu(x.index_select(0, token) @ self.up[e].T) @ self.down[e]
            y.index_add_(0, token, h * w[token, slot, None])
        self.logits = logits
        return y.reshape(shape)


class Model(nn.Module):
    def __init__(self, moe, top=1, capacity=1.25):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.positions = nn.Embedding(T, DIM)
        self.layers = nn.ModuleList()
        for _ in range(LAYERS):
            layer = nn.Module()
            layer.n1, layer.n2 = nn.LayerNorm(DIM), nn.LayerNorm(DIM)
            layer.attention = reference.SelfAttention(DIM, HEADS, causal=True, bias=True)
            layer.ffn = SparseMoE(top, capacity) if moe else reference.FFN(DIM, 4 * DIM, "gelu", bias=True)
            self.layers.append(layer)
        self.norm = nn.LayerNorm(DIM)
        self.moe = moe

    def loss(self, tokens, targets):
        x = self.embed(tokens) + self.positions.weight[:tokens.shape[1]]
        for layer in self.layers:
            x = x + layer.attention(layer.n1(x))
            x = x + layer.ffn(layer.n2(x))
        logits = self.norm(x) @ self.embed.weight.T
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
        if self.moe:
            routers = [layer.ffn.logits for layer in self.layers]
            loss = loss + 0.01 * sum(reference.switch_balance_loss(r) for r in routers) / LAYERS
            loss = loss + 0.001 * sum(reference.router_z_loss(r) for r in routers) / LAYERS
        return loss


def check_against_reference(top, capacity):
    """The timed PyTorch MoE computes what the parity reference (reference.MixtureOfExperts) computes."""
    ours, ref = SparseMoE(top, capacity).double(), reference.MixtureOfExperts(DIM, EXPERTS, 4 * DIM, top, capacity).double()
    ref.router.weight.data.copy_(ours.router.weight.data)
    ref.up.weight.data.copy_(ours.up.data)
    ref.down.weight.data.copy_(ours.down.data)
    x = torch.randn(B, T, DIM, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-12), "the benchmark's MoE differs from the reference"


def pytorch_step_ms(model, iters=5):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, VOCAB, (B, T), generator=g)
    targets = torch.randint(0, VOCAB, (B, T), generator=g)
    times = []
    for i in range(iters + 2):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model.loss(tokens, targets).backward()
        opt.step()
        if i >= 2:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def run(args):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kiln", default=str(ROOT / ".build/release/kiln"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for top in (1, 2):
        check_against_reference(top, 1.25)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kiln-moe-"))
    cases = {"dense": ("char-gpt-small.kiln", [], Model(False)),
             "Switch (top 1)": ("char-moe.kiln", [], Model(True, 1)),
             "top 2": ("char-moe.kiln", ["--set", "top=2"], Model(True, 2))}
    builds = {}
    for name, (src, sets, _) in cases.items():
        builds[name] = tmp / re.sub(r"\W", "", name)
        run([args.kiln, "build", ROOT / "examples" / src, "-o", builds[name]] + sets)
    kiln_ms = {n: [] for n in cases}
    torch_ms = {n: [] for n in cases}
    for r in range(args.rounds):
        for name in (list(cases) if r % 2 == 0 else list(cases)[::-1]):
            out = run([builds[name] / "train", "bench", "--threads", args.threads, "--batch", B, "--seq", T, "--iters", 5])
            kiln_ms[name].append(float(re.search(r"median ([\d.]+) ms", out).group(1)))
            torch_ms[name].append(pytorch_step_ms(cases[name][2]))
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"CPU: {cpu}; threads {args.threads}; B={B} T={T}; training step with AdamW; {args.rounds} alternating rounds, medians")
    print("| model | Kiln ms | PyTorch ms | Kiln / PyTorch |")
    print("|---|---|---|---|")
    for name in cases:
        k, p = statistics.median(kiln_ms[name]), statistics.median(torch_ms[name])
        print(f"| {name} | {k:.1f} | {p:.1f} | {k / p:.2f} |")


if __name__ == "__main__":
    main()
