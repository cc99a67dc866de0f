"""The GPT of the benchmark written as a PyTorch user writes it for speed (nanoGPT's layout): one fused QKV
projection, F.scaled_dot_product_attention, and AdamW with fused=True. The benchmark times this model as
"PyTorch eager" (and compiles it for torch.compile); tests/python/test_parity.py checks that it computes what
the parity reference (tests/python/reference.py) computes from the same weights."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, dim, heads, hidden, activation, eps):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(dim, eps=eps)
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)
        self.ln_2 = nn.LayerNorm(dim, eps=eps)
        self.c_fc = nn.Linear(dim, hidden)
        self.mlp_proj = nn.Linear(hidden, dim)
        self.approximate = "tanh" if activation == "gelu_tanh" else "none"

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate=self.approximate))


class IdiomaticGPT(nn.Module):
    """The pre-norm decoders of bench/bench.py (cfg as reference.GPT's: learned positions, a final LayerNorm and
    the head tied to the embedding)."""

    def __init__(self, cfg):
        super().__init__()
        assert cfg["norm"] == "pre" and cfg["positions"] == "learned" and cfg["final_norm"] and cfg["head"] == "tied"
        self.wte = nn.Embedding(cfg["vocab"], cfg["dim"])
        self.wpe = nn.Embedding(cfg["context"], cfg["dim"])
        self.blocks = nn.ModuleList([Block(cfg["dim"], cfg["heads"], cfg["hidden"], cfg["activation"], cfg["eps"])
                                     for _ in range(cfg["layers"])])
        self.ln_f = nn.LayerNorm(cfg["dim"], eps=cfg["eps"])

    def forward(self, tokens):
        x = self.wte(tokens) + self.wpe.weight[:tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)

    @torch.no_grad()
    def copy_from(self, ref):
        """Takes the weights of a reference.GPT of the same cfg (its Q, K and V projections side by side)."""
        self.wte.weight.copy_(ref.embed.weight)
        self.wpe.weight.copy_(ref.positions.weight)
        self.ln_f.load_state_dict(ref.layernorm.state_dict())
        for b, layer in zip(self.blocks, ref.layers):
            att = layer.attention
            b.c_attn.weight.copy_(torch.cat([att.query.weight, att.key.weight, att.value.weight]))
            b.c_attn.bias.copy_(torch.cat([att.query.bias, att.key.bias, att.value.bias]))
            b.c_proj.load_state_dict(att.output.state_dict())
            b.ln_1.load_state_dict(layer.layernorm.state_dict())
            b.ln_2.load_state_dict(layer.layernorm_1.state_dict())
            b.c_fc.load_state_dict(layer.ffn.up.state_dict())
            b.mlp_proj.load_state_dict(layer.ffn.down.state_dict())
        return self


def adamw(model, lr=1e-4, weight_decay=0.1):
    """AdamW as fast as this PyTorch offers it on the CPU: fused, else foreach."""
    try:
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, foreach=True)
