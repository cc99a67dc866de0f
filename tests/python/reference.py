"""An independent PyTorch implementation of the transformer variants the
examples use, built from plain torch.nn modules and loaded from the same
safetensors weights by Kiln's documented tensor names (docs/language.md)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class SelfAttention(nn.Module):
    def __init__(self, dim, heads, causal, bias):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.query = nn.Linear(dim, dim, bias=bias)
        self.key = nn.Linear(dim, dim, bias=bias)
        self.value = nn.Linear(dim, dim, bias=bias)
        self.output = nn.Linear(dim, dim, bias=bias)

    def forward(self, x):
        B, T, C = x.shape
        H, hs = self.heads, C // self.heads
        q = self.query(x).view(B, T, H, hs).transpose(1, 2)
        k = self.key(x).view(B, T, H, hs).transpose(1, 2)
        v = self.value(x).view(B, T, H, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        if self.causal:
            mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
            att = att.masked_fill(~mask, float("-inf"))
        y = F.softmax(att, dim=-1) @ v
        return self.output(y.transpose(1, 2).reshape(B, T, C))


class FFN(nn.Module):
    def __init__(self, dim, hidden, activation, bias):
        super().__init__()
        self.up = nn.Linear(dim, hidden, bias=bias)
        self.down = nn.Linear(hidden, dim, bias=bias)
        self.act = {"relu": nn.ReLU(), "gelu": nn.GELU(), "gelu_tanh": nn.GELU(approximate="tanh")}[activation]

    def forward(self, x):
        return self.down(self.act(self.up(x)))


class Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.post_norm = cfg["norm"] == "post"
        d = cfg["dim"]
        names = cfg.get("norm_names", ("layernorm", "layernorm_1"))
        self.norm_names = names
        setattr(self, names[0], nn.LayerNorm(d, eps=cfg["eps"]))
        setattr(self, names[1], nn.LayerNorm(d, eps=cfg["eps"]))
        self.attention = SelfAttention(d, cfg["heads"], causal=True, bias=True)
        self.ffn = FFN(d, cfg["hidden"], cfg["activation"], bias=True)

    def forward(self, x):
        n1, n2 = getattr(self, self.norm_names[0]), getattr(self, self.norm_names[1])
        if self.post_norm:
            x = n1(x + self.attention(x))
            return n2(x + self.ffn(x))
        x = x + self.attention(n1(x))
        return x + self.ffn(n2(x))


def sinusoidal(T, C):
    pos = torch.arange(T, dtype=torch.float64)[:, None]
    i = torch.arange(C)
    freq = torch.exp(-math.log(10000.0) * (2 * (i // 2)).double() / C)
    ang = pos * freq[None, :]
    return torch.where(i % 2 == 0, torch.sin(ang), torch.cos(ang))


class GPT(nn.Module):
    """cfg keys: vocab, context, dim, heads, layers, hidden, norm (pre|post),
    activation, positions (learned|sinusoidal), embed_scale, final_norm,
    head (tied|NAME with bias), eps, norm_names."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg["vocab"], cfg["dim"])
        if cfg["positions"] == "learned":
            self.positions = nn.Embedding(cfg["context"], cfg["dim"])
        self.layers = nn.ModuleList([Layer(cfg) for _ in range(cfg["layers"])])
        if cfg["final_norm"]:
            self.layernorm = nn.LayerNorm(cfg["dim"], eps=cfg["eps"])
        if cfg["head"] != "tied":
            setattr(self, cfg["head"], nn.Linear(cfg["dim"], cfg["vocab"], bias=True))

    def forward(self, tokens):
        B, T = tokens.shape
        x = self.embed(tokens) * self.cfg.get("embed_scale", 1.0)
        if self.cfg["positions"] == "learned":
            x = x + self.positions.weight[:T]
        else:
            x = x + sinusoidal(T, self.cfg["dim"]).to(x.dtype)
        for layer in self.layers:
            x = layer(x)
        if self.cfg["final_norm"]:
            x = self.layernorm(x)
        if self.cfg["head"] == "tied":
            return x @ self.embed.weight.T
        return getattr(self, self.cfg["head"])(x)


def load(cfg, weights_path, dtype=torch.float64):
    """Builds the reference model and loads Kiln's safetensors file by name (strict)."""
    from safetensors.torch import load_file

    model = GPT(cfg).to(dtype)
    state = {k: v.to(dtype) for k, v in load_file(str(weights_path)).items()}
    model.load_state_dict(state, strict=True)
    return model.eval()
