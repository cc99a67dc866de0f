"""An independent PyTorch implementation of the transformer variants the
examples use, built from plain torch.nn modules and loaded from the same
safetensors weights by Kiln's documented tensor names (docs/language.md)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def rotate(x, base=10000.0):
    """Rotary positions (Su et al. 2021) as Hugging Face's Llama applies them (rotate_half): x is [B, H, T, d];
    the pair (i, i + d/2) at position t turns by t * base^(-2i/d)."""
    T, d = x.shape[-2], x.shape[-1]
    inv_freq = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angle = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
    cos, sin = torch.cat([angle.cos()] * 2, -1).to(x.dtype), torch.cat([angle.sin()] * 2, -1).to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def alibi_slopes(n):
    """ALiBi's slopes (Press et al. 2022, their get_slopes): a geometric sequence from 2^(-8/n) for n a power of
    2; otherwise those of the power of 2 below n, then every other slope of twice that power."""
    def power_of_2(n):
        start = 2 ** (-2 ** -(math.log2(n) - 3))
        return [start * start ** i for i in range(n)]
    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + alibi_slopes(2 * closest)[0::2][:n - closest]


def t5_buckets(T, S, causal, buckets, max_distance):
    """T5's bucket of each distance s - t, [T, S], by Hugging Face's own function."""
    from transformers.models.t5.modeling_t5 import T5Attention
    rel = torch.arange(S)[None, :] - torch.arange(T)[:, None]
    return T5Attention._relative_position_bucket(rel, bidirectional=not causal, num_buckets=buckets, max_distance=max_distance)


def bigbird_blocks(i, nb, g, r, seed):
    """BigBird's key blocks of query block i among nb (runtime/kernels/bigbird.c's layout, written from its
    description): all for a global block (i < g); otherwise the g global blocks, i-1 .. i+1, and min(r, m) of the
    m other blocks by a partial Fisher-Yates shuffle driven by SplitMix64."""
    if i < g:
        return list(range(nb))
    mask64 = (1 << 64) - 1
    cand = [j for j in range(g, nb) if j < i - 1 or j > i + 1]
    state = (seed ^ ((((nb << 32) | i) * 0x9E3779B97F4A7C15) & mask64)) & mask64

    def splitmix():
        nonlocal state
        state = (state + 0x9E3779B97F4A7C15) & mask64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask64
        return z ^ (z >> 31)

    for j in range(min(r, len(cand))):
        k = j + splitmix() % (len(cand) - j)
        cand[j], cand[k] = cand[k], cand[j]
    chosen = set(cand[:min(r, len(cand))])
    return [j for j in range(nb) if j < g or i - 1 <= j <= i + 1 or j in chosen]


def bigbird_visible(T, block, g, r, seed):
    """[T, T] booleans: query t sees key s under BigBird's layout."""
    nb = -(-T // block)
    seen = torch.zeros(T, T, dtype=torch.bool)
    for i in range(nb):
        for j in bigbird_blocks(i, nb, g, r, seed):
            seen[i * block:(i + 1) * block, j * block:(j + 1) * block] = True
    return seen


class SelfAttention(nn.Module):
    """relative: ("shaw", clip) for Shaw et al. 2018's representations (`relative` [2, 2 clip + 1, hs]: a^K, a^V
    at the clipped distance s - t, shared by the heads); ("t5", buckets, max_distance) for T5's bias
    (`relative_bias` [buckets, heads]). window: local attention, query t sees the keys s with |t - s| < window
    (a mask on the full score matrix, as the papers define it). lowrank (rows, context): Linformer (Wang et al.
    2020), keys and values projected along the sequence by `project_key`, `project_value` [rows, context]
    (their first T columns), padding positions as zeros, every projected row seen."""

    def __init__(self, dim, heads, causal, bias, rotary=False, kv_heads=None, alibi=False, relative=None, window=None,
                 lowrank=None, bigbird=None):
        super().__init__()
        self.lowrank, self.bigbird = lowrank, bigbird  # bigbird: (block, global, random, seed)
        if lowrank:
            self.project_key = nn.Parameter(torch.zeros(*lowrank))
            self.project_value = nn.Parameter(torch.zeros(*lowrank))
        self.heads, self.causal, self.rotary, self.alibi, self.relative_scheme = heads, causal, rotary, alibi, relative
        self.window = window
        self.sink = None  # a list that records each call's attention weights (attention_maps)
        self.kv_heads = kv_heads or heads
        kv_dim = dim // heads * self.kv_heads
        self.query = nn.Linear(dim, dim, bias=bias)
        self.key = nn.Linear(dim, kv_dim, bias=bias)
        self.value = nn.Linear(dim, kv_dim, bias=bias)
        self.output = nn.Linear(dim, dim, bias=bias)
        if relative and relative[0] == "shaw":
            self.relative = nn.Parameter(torch.zeros(2, 2 * relative[1] + 1, dim // heads))
        elif relative:
            self.relative_bias = nn.Parameter(torch.zeros(relative[1], heads))

    def forward(self, x, mask=None):
        """mask [B, T] or None: no query sees a key whose mask is 0 (padding)."""
        B, T, C = x.shape
        H, hs = self.heads, C // self.heads
        q = self.query(x).view(B, T, H, hs).transpose(1, 2)
        # grouped-query attention: key/value head j serves query heads j*g … j*g+g-1 (Hugging Face's repeat_kv)
        g = H // self.kv_heads
        k = self.key(x).view(B, T, self.kv_heads, hs).transpose(1, 2).repeat_interleave(g, dim=1)
        v = self.value(x).view(B, T, self.kv_heads, hs).transpose(1, 2).repeat_interleave(g, dim=1)
        if self.rotary:
            q, k = rotate(q), rotate(k)
        if self.lowrank:
            keep = torch.ones(B, 1, T, 1, dtype=x.dtype) if mask is None else (mask != 0).to(x.dtype)[:, None, :, None]
            k = torch.einsum("kt,bhtd->bhkd", self.project_key[:, :T], k * keep)
            v = torch.einsum("kt,bhtd->bhkd", self.project_value[:, :T], v * keep)
            mask = None
        att = q @ k.transpose(-2, -1)
        shaw = self.relative_scheme and self.relative_scheme[0] == "shaw"
        if shaw:
            clip = self.relative_scheme[1]
            rel = (torch.arange(T)[None, :] - torch.arange(T)[:, None]).clamp(-clip, clip) + clip
            att = att + torch.einsum("bhtd,tsd->bhts", q, self.relative[0][rel])
        att = att / math.sqrt(hs)
        if self.relative_scheme and not shaw:
            _, buckets, max_distance = self.relative_scheme
            att = att + self.relative_bias[t5_buckets(T, T, self.causal, buckets, max_distance)].permute(2, 0, 1)
        if self.alibi:
            pos = torch.arange(T, dtype=att.dtype)
            slopes = torch.tensor(alibi_slopes(H), dtype=att.dtype)[:, None, None]
            att = att - slopes * (pos[:, None] - pos[None, :]).abs()
        if self.causal:
            att = att.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf"))
        if self.window:
            distance = (torch.arange(T)[:, None] - torch.arange(T)[None, :]).abs()
            att = att.masked_fill(distance >= self.window, float("-inf"))
        if self.bigbird:
            att = att.masked_fill(~bigbird_visible(T, *self.bigbird), float("-inf"))
        if mask is not None:
            att = att.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
        p = F.softmax(att, dim=-1)
        if mask is not None:  # a query that sees no key gets zeros
            p = torch.nan_to_num(p, nan=0.0)
        if self.sink is not None:
            self.sink.append(p.detach())
        y = p @ v
        if shaw:
            y = y + torch.einsum("bhts,tsd->bhtd", p, self.relative[1][rel])
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
        self.attention = SelfAttention(d, cfg["heads"], causal=cfg.get("causal", True), bias=True)
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
    head (tied|NAME with bias), eps, norm_names; causal (default true: false is a BERT-style encoder) and
    classes (the head's outputs, default vocab)."""

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
            setattr(self, cfg["head"], nn.Linear(cfg["dim"], cfg.get("classes", cfg["vocab"]), bias=True))

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


class EncoderLayer(nn.Module):
    """A post-norm encoder layer with a padding mask (examples/tiny-encoder.kiln's Layer)."""

    def __init__(self, dim, heads, hidden, eps=1e-5, relative=None, window=None, **attention):
        super().__init__()
        self.heads = heads
        self.attention = SelfAttention(dim, heads, causal=False, bias=True, relative=relative, window=window, **attention)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.ffn = FFN(dim, hidden, "gelu", bias=True)
        self.norm2 = nn.LayerNorm(dim, eps=eps)

    def forward(self, x, mask):
        x = self.norm1(x + self.attention(x, mask))
        return self.norm2(x + self.ffn(x))


class TinyEncoder(nn.Module):
    """examples/tiny-encoder.kiln: embeddings and learned positions, post-norm layers with a padding mask,
    masked mean pooling, a classification head. Returns (embedding, logits)."""

    def __init__(self, vocab=53, context=19, dim=36, heads=6, layers=2, hidden=70, classes=5):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.positions = nn.Embedding(context, dim)
        self.layers = nn.ModuleList([EncoderLayer(dim, heads, hidden) for _ in range(layers)])
        self.classifier = nn.Linear(dim, classes)

    def forward(self, tokens, mask):
        T = tokens.shape[1]
        h = self.embed(tokens) + self.positions.weight[:T]
        for layer in self.layers:
            h = layer(h, mask)
        m = mask[:, :, None].to(h.dtype)
        e = (h * m).sum(1) / m.sum(1)
        return e, self.classifier(e)


class RelativeEncoder(TinyEncoder):
    """tests/models/relative-encoder.kiln: TinyEncoder without a position table, its first layer with T5's
    bidirectional bias (8 buckets up to distance 9), its second with Shaw et al.'s representations (clip 3)."""

    def __init__(self, vocab=53, dim=36, heads=6, hidden=70, classes=5):
        nn.Module.__init__(self)
        self.embed = nn.Embedding(vocab, dim)
        self.first = EncoderLayer(dim, heads, hidden, relative=("t5", 8, 9))
        self.second = EncoderLayer(dim, heads, hidden, relative=("shaw", 3))
        self.layers = [self.first, self.second]
        self.classifier = nn.Linear(dim, classes)

    def forward(self, tokens, mask):
        h = self.embed(tokens)
        for layer in self.layers:
            h = layer(h, mask)
        m = mask[:, :, None].to(h.dtype)
        e = (h * m).sum(1) / m.sum(1)
        return e, self.classifier(e)


class LocalEncoder(RelativeEncoder):
    """tests/models/local-encoder.kiln: RelativeEncoder's model with local attention instead of relative positions:
    its first layer sees the keys within 2 positions either side (window 3), its second within 5 (window 6)."""

    def __init__(self, vocab=53, dim=36, heads=6, hidden=70, classes=5):
        nn.Module.__init__(self)
        self.embed = nn.Embedding(vocab, dim)
        self.first = EncoderLayer(dim, heads, hidden, window=3)
        self.second = EncoderLayer(dim, heads, hidden, window=6)
        self.layers = [self.first, self.second]
        self.classifier = nn.Linear(dim, classes)


class LinformerEncoder(TinyEncoder):
    """tests/models/linformer-encoder.kiln: TinyEncoder with Linformer's attention, its first layer projecting
    keys and values to 5 rows, its second to 7 with 3 key/value heads."""

    def __init__(self, vocab=53, context=19, dim=36, heads=6, hidden=70, classes=5):
        nn.Module.__init__(self)
        self.embed = nn.Embedding(vocab, dim)
        self.positions = nn.Embedding(context, dim)
        self.first = EncoderLayer(dim, heads, hidden, lowrank=(5, context))
        self.second = EncoderLayer(dim, heads, hidden, lowrank=(7, context), kv_heads=3)
        self.layers = [self.first, self.second]
        self.classifier = nn.Linear(dim, classes)


class BigBirdEncoder(TinyEncoder):
    """tests/models/bigbird-encoder.kiln: TinyEncoder with BigBird's attention, its first layer in blocks of 3
    (1 global block, 1 random), its second in blocks of 2 (2 global, 2 random, seed 7, 3 key/value heads)."""

    def __init__(self, vocab=53, context=19, dim=36, heads=6, hidden=70, classes=5):
        nn.Module.__init__(self)
        self.embed = nn.Embedding(vocab, dim)
        self.positions = nn.Embedding(context, dim)
        self.first = EncoderLayer(dim, heads, hidden, bigbird=(3, 1, 1, 0))
        self.second = EncoderLayer(dim, heads, hidden, bigbird=(2, 2, 2, 7), kv_heads=3)
        self.layers = [self.first, self.second]
        self.classifier = nn.Linear(dim, classes)


def load_encoder(weights_path, dtype=torch.float64, model=TinyEncoder, **cfg):
    from safetensors.torch import load_file

    model = model(**cfg).to(dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in load_file(str(weights_path)).items()}, strict=True)
    return model.eval()


class RMSSwiGLULayer(nn.Module):
    """A pre-norm decoder layer with RMSNorm (torch.nn.RMSNorm) and a SwiGLU feed-forward, no biases."""

    def __init__(self, dim, heads, hidden, eps, rotary=False, kv_heads=None, alibi=False, relative=None, window=None):
        super().__init__()
        self.rmsnorm = nn.RMSNorm(dim, eps=eps)
        self.attention = SelfAttention(dim, heads, causal=True, bias=False, rotary=rotary, kv_heads=kv_heads, alibi=alibi,
                                       relative=relative, window=window)
        self.rmsnorm_1 = nn.RMSNorm(dim, eps=eps)
        self.ffn = nn.Module()
        self.ffn.gate = nn.Linear(dim, hidden, bias=False)
        self.ffn.up = nn.Linear(dim, hidden, bias=False)
        self.ffn.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        x = x + self.attention(self.rmsnorm(x))
        h = self.rmsnorm_1(x)
        return x + self.ffn.down(F.silu(self.ffn.gate(h)) * self.ffn.up(h))


class RMSSwiGLU(nn.Module):
    """tests/models/rms-swiglu.kiln."""

    def __init__(self, vocab=41, context=12, dim=30, heads=3, layers=2, hidden=46):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.positions = nn.Embedding(context, dim)
        self.layers = nn.ModuleList([RMSSwiGLULayer(dim, heads, hidden, 1e-5) for _ in range(layers)])
        self.rmsnorm = nn.RMSNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens):
        T = tokens.shape[1]
        x = self.embed(tokens) + self.positions.weight[:T]
        for layer in self.layers:
            x = layer(x)
        return self.head(self.rmsnorm(x))


class RotaryLM(nn.Module):
    """tests/models/rotary.kiln: RMSSwiGLU's layers with rotary positions and no position table; with kv_heads,
    tests/models/gqa.kiln (grouped-query attention: the Llama layer)."""

    def __init__(self, vocab=41, dim=30, heads=3, layers=2, hidden=46, kv_heads=None, position="rotary", window=None):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList([RMSSwiGLULayer(dim, heads, hidden, 1e-5, rotary=position == "rotary", kv_heads=kv_heads,
                                                    alibi=position == "alibi", window=window) for _ in range(layers)])
        self.rmsnorm = nn.RMSNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens):
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.rmsnorm(x))


class ReZeroLayer(nn.Module):
    """x + α·attention(LayerNorm(x)), then x + β·GeGLU(RMSNorm(x)), with α, β learned (Bachlechner et al. 2020)."""

    def __init__(self, dim, heads, hidden, relative=None, kv_heads=None):
        super().__init__()
        self.layernorm = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads, causal=True, bias=True, relative=relative, kv_heads=kv_heads)
        self.rezero = nn.Module()
        self.rezero.alpha = nn.Parameter(torch.zeros(1))
        self.rmsnorm = nn.RMSNorm(dim, eps=1e-6)
        self.ffn = nn.Module()
        self.ffn.gate = nn.Linear(dim, hidden)
        self.ffn.up = nn.Linear(dim, hidden)
        self.ffn.down = nn.Linear(hidden, dim)
        self.rezero_1 = nn.Module()
        self.rezero_1.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        x = x + self.rezero.alpha * self.attention(self.layernorm(x))
        h = self.rmsnorm(x)
        return x + self.rezero_1.alpha * self.ffn.down(F.gelu(self.ffn.gate(h)) * self.ffn.up(h))


class ReZeroGeGLU(nn.Module):
    """tests/models/rezero.kiln."""

    def __init__(self, vocab=41, context=12, dim=30, heads=3, layers=2, hidden=46):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.positions = nn.Embedding(context, dim)
        self.layers = nn.ModuleList([ReZeroLayer(dim, heads, hidden) for _ in range(layers)])
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens):
        x = self.embed(tokens) + self.positions.weight[:tokens.shape[1]]
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


class ShawReZero(nn.Module):
    """tests/models/shaw.kiln: ReZeroGeGLU's layers with Shaw et al.'s relative positions and no table."""

    def __init__(self, vocab=41, dim=30, heads=3, layers=2, hidden=46, clip=4, kv_heads=None):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList([ReZeroLayer(dim, heads, hidden, relative=("shaw", clip), kv_heads=kv_heads) for _ in range(layers)])
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens):
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


class T5BiasLM(nn.Module):
    """tests/models/t5-bias.kiln: RMSSwiGLU's layers with T5's bucketed bias (8 buckets up to distance 10)."""

    def __init__(self, vocab=41, dim=30, heads=3, layers=2, hidden=46, buckets=8, max_distance=10):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList([RMSSwiGLULayer(dim, heads, hidden, 1e-5, relative=("t5", buckets, max_distance)) for _ in range(layers)])
        self.rmsnorm = nn.RMSNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens):
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.rmsnorm(x))


class Universal(nn.Module):
    """tests/models/universal.kiln: one pre-norm layer applied `steps` times with its weights shared, row s of
    the sinusoidal table added before step s (Dehghani et al. 2019), sinusoidal positions."""

    def __init__(self, vocab=41, dim=30, heads=3, steps=3, hidden=46, signal=1.0):
        super().__init__()
        self.steps, self.signal = steps, signal
        self.embed = nn.Embedding(vocab, dim)
        self.step = Layer(dict(dim=dim, heads=heads, hidden=hidden, norm="pre", activation="relu", eps=1e-5))
        self.layernorm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens):
        T, C = tokens.shape[1], self.embed.weight.shape[1]
        x = self.embed(tokens) + sinusoidal(T, C).to(self.embed.weight.dtype)
        signal = self.signal * sinusoidal(self.steps, C).to(x.dtype)
        for s in range(self.steps):
            x = self.step(x + signal[s])
        return self.head(self.layernorm(x))


class UniversalACT(nn.Module):
    """tests/models/universal-act.kiln: Universal's step with adaptive computation time, written from the dynamic
    halting listing of Dehghani et al. 2019 (after Graves 2016): returns (logits, mean ponder cost, the ponder
    cost n + R of each position)."""

    def __init__(self, vocab=41, dim=30, heads=3, steps=4, hidden=46, epsilon=0.01):
        super().__init__()
        self.steps, self.threshold = steps, 1 - epsilon
        self.embed = nn.Embedding(vocab, dim)
        self.step = Layer(dict(dim=dim, heads=heads, hidden=hidden, norm="pre", activation="relu", eps=1e-5))
        self.step.halting = nn.Linear(dim, 1)
        self.layernorm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens):
        T, C = tokens.shape[1], self.embed.weight.shape[1]
        state = self.embed(tokens) + sinusoidal(T, C).to(self.embed.weight.dtype)
        signal = sinusoidal(self.steps, C).to(state.dtype)
        halting_probability = torch.zeros(state.shape[:2], dtype=state.dtype)
        remainders, n_updates = torch.zeros_like(halting_probability), torch.zeros_like(halting_probability)
        previous_state = torch.zeros_like(state)
        for s in range(self.steps):
            state = state + signal[s]
            p = torch.sigmoid(self.step.halting(state)).squeeze(-1)
            still_running = (halting_probability < 1.0).to(p.dtype)
            new_halted = (halting_probability + p * still_running > self.threshold).to(p.dtype) * still_running
            still_running = (halting_probability + p * still_running <= self.threshold).to(p.dtype) * still_running
            halting_probability = halting_probability + p * still_running
            remainders = remainders + new_halted * (1 - halting_probability)
            halting_probability = halting_probability + new_halted * remainders
            n_updates = n_updates + still_running + new_halted
            update_weights = (p * still_running + new_halted * remainders).unsqueeze(-1)
            state = self.step(state)
            previous_state = state * update_weights + previous_state * (1 - update_weights)
        ponder = n_updates + remainders
        return self.head(self.layernorm(previous_state)), ponder.mean(), ponder


class MixtureOfExperts(nn.Module):
    """A mixture-of-experts feed-forward layer written from the papers' equations, computing every expert on
    every token (dense) and combining with GShard's dispatch masks (Lepikhin et al. 2021, Algorithm 1):
    p = softmax(x Wᵣᵀ); each token's top k experts by p; its weights p (k = 1, Switch) or the k probabilities
    renormalised (k ≥ 2, Shazeer et al. 2017); each expert takes at most ⌈capacity · k · N / E⌉ tokens, first
    choices of all tokens before second ones, in token order (GShard's cumsum positions); a token past that gets
    weight 0. Experts: act(x · upᵀ) · down with up, down [E, H, C]. Records the logits and the combine weights
    (`self.logits`, `self.combine`) for the auxiliary losses."""

    def __init__(self, dim, experts, hidden, top, capacity, activation="gelu"):
        super().__init__()
        self.top, self.capacity = top, capacity
        self.router = nn.Linear(dim, experts, bias=False)
        self.up = nn.Module()
        self.up.weight = nn.Parameter(torch.randn(experts, hidden, dim) * 0.02)
        self.down = nn.Module()
        self.down.weight = nn.Parameter(torch.randn(experts, hidden, dim) * 0.02)
        self.act = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu}[activation]

    def forward(self, x):
        shape, E = x.shape, self.up.weight.shape[0]
        x = x.reshape(-1, shape[-1])
        N, k = x.shape[0], self.top
        logits = self.router(x)
        p = torch.softmax(logits, dim=-1)
        top_p, top_e = torch.topk(p, k, dim=-1)
        weights = top_p if k == 1 else top_p / top_p.sum(-1, keepdim=True)
        cap = math.ceil(self.capacity * k * N / E) if self.capacity > 0 else N * k
        taken = torch.zeros(E, dtype=torch.long)
        combine = torch.zeros(N, E, dtype=x.dtype)
        for j in range(k):
            mask = F.one_hot(top_e[:, j], E)                       # [N, E]
            position = torch.cumsum(mask, dim=0) - 1 + taken         # each token's place in its expert's queue
            mask = mask * (position < cap)
            taken = taken + mask.sum(0)
            combine = combine + mask.to(x.dtype) * weights[:, j:j + 1]
        experts = torch.einsum("nc,ehc->neh", x, self.up.weight)
        experts = torch.einsum("neh,ehc->nec", self.act(experts), self.down.weight)
        self.logits, self.combine = logits, combine
        return torch.einsum("ne,nec->nc", combine, experts).reshape(shape)


def switch_balance_loss(logits):
    """Switch's load-balancing loss (Fedus et al. 2021, eq. 4): E · Σ_e f_e · P_e, f_e the fraction of tokens
    whose first choice is e, P_e the mean router probability of e."""
    E = logits.shape[-1]
    p = torch.softmax(logits, dim=-1)
    f = F.one_hot(p.argmax(-1), E).to(p.dtype).mean(0)
    return E * (f * p.mean(0)).sum()


def router_z_loss(logits):
    """ST-MoE's router z-loss (Zoph et al. 2022, eq. 5): the mean over tokens of logsumexp(logits)²."""
    return (torch.logsumexp(logits, dim=-1) ** 2).mean()


class MoEGPT(nn.Module):
    """tests/models/moe-gpt.kiln: a pre-norm decoder with learned positions, a tied head, and a mixture of
    experts for each feed-forward. Returns (logits, mean balance loss, mean z-loss, each layer's load [L, E])."""

    def __init__(self, vocab=41, context=12, dim=30, heads=3, layers=2, experts=5, hidden=22, top=1, capacity=1.0):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.positions = nn.Embedding(context, dim)
        self.layers = nn.ModuleList()
        for _ in range(layers):
            layer = nn.Module()
            layer.layernorm, layer.layernorm_1 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            layer.attention = SelfAttention(dim, heads, causal=True, bias=True)
            layer.moe = MixtureOfExperts(dim, experts, hidden, top, capacity)
            self.layers.append(layer)
        self.layernorm = nn.LayerNorm(dim)

    def forward(self, tokens):
        T = tokens.shape[1]
        x = self.embed(tokens) + self.positions.weight[:T]
        for layer in self.layers:
            x = x + layer.attention(layer.layernorm(x))
            x = x + layer.moe(layer.layernorm_1(x))
        logits = self.layernorm(x) @ self.embed.weight.T
        routers = [layer.moe for layer in self.layers]
        balance = sum(switch_balance_loss(m.logits) for m in routers) / len(routers)
        z = sum(router_z_loss(m.logits) for m in routers) / len(routers)
        load = torch.stack([(m.combine != 0).to(x.dtype).mean(0) for m in routers])
        return logits, balance, z, load


def attention_maps(model, compute):
    """The attention weights [B, heads, T, S] of every attention of model, in the order compute() runs them:
    SelfAttention's softmax, and the per-head weights of torch's MultiheadAttention (asked for with
    need_weights)."""
    maps, patched = [], []
    for m in model.modules():
        if isinstance(m, SelfAttention):
            m.sink = maps
        elif isinstance(m, nn.MultiheadAttention):
            def forward(*args, _forward=m.forward, **kw):
                kw.update(need_weights=True, average_attn_weights=False)
                y, w = _forward(*args, **kw)
                maps.append(w.detach())
                return y, w
            m.forward = forward
            patched.append(m)
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the encoder layers' fast path calls no MultiheadAttention
    try:
        with torch.no_grad():
            compute()
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
        for m in model.modules():
            if isinstance(m, SelfAttention):
                m.sink = None
        for m in patched:
            del m.forward
    return [a.numpy() for a in maps]


def load_module(model, weights_path, dtype=torch.float64):
    """Loads Kiln's safetensors file into a reference module by name (strict)."""
    from safetensors.torch import load_file

    model = model.to(dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in load_file(str(weights_path)).items()}, strict=True)
    return model.eval()


class Seq2Seq(nn.Module):
    """The encoder–decoder of Vaswani et al. 2017 as examples/transformer-base.kiln writes it, from
    torch.nn.TransformerEncoderLayer / TransformerDecoderLayer (post-norm, ReLU, no final norms), with shared
    embeddings scaled by sqrt(dim), sinusoidal positions and a tied output projection. `load` maps Kiln's
    tensor names onto the torch modules (q, k, v stacked into in_proj)."""

    def __init__(self, vocab, dim, heads, layers, hidden, drop=0.0):
        super().__init__()
        self.dim = dim
        self.embed = nn.Embedding(vocab, dim)
        opts = dict(d_model=dim, nhead=heads, dim_feedforward=hidden, dropout=drop, activation="relu",
                    batch_first=True, norm_first=False)
        self.encoder = nn.ModuleList(nn.TransformerEncoderLayer(**opts) for _ in range(layers))
        self.decoder = nn.ModuleList(nn.TransformerDecoderLayer(**opts) for _ in range(layers))
        # dropout where the Kiln model has it (on each sub-layer's output and on the embedded inputs), not inside
        # the feed-forward or on the attention weights, where torch's layers also put it
        self.drop = nn.Dropout(drop)
        for layer in [*self.encoder, *self.decoder]:
            layer.dropout.p = 0.0
            for attention in (layer.self_attn, getattr(layer, "multihead_attn", None)):
                if attention is not None:
                    attention.dropout = 0.0

    def encode(self, source, source_mask):
        S = source.shape[1]
        pos = sinusoidal(S, self.dim).to(self.embed.weight.dtype)
        x = self.drop(self.embed(source) * math.sqrt(self.dim) + pos)
        for layer in self.encoder:
            x = layer(x, src_key_padding_mask=source_mask == 0)
        return x

    def decode(self, memory, source_mask, target):
        T = target.shape[1]
        pos = sinusoidal(T, self.dim).to(self.embed.weight.dtype)
        causal = torch.triu(torch.full((T, T), float("-inf"), dtype=memory.dtype), diagonal=1)
        y = self.drop(self.embed(target) * math.sqrt(self.dim) + pos)
        for layer in self.decoder:
            y = layer(y, memory, tgt_mask=causal, memory_key_padding_mask=source_mask == 0)
        return y @ self.embed.weight.T

    def forward(self, source, source_mask, target):
        return self.decode(self.encode(source, source_mask), source_mask, target)

    def tensors(self):
        """(Kiln's name, the torch parameter, the rows of it that name holds, or None for all) for every
        parameter: q, k and v are thirds of a MultiheadAttention's in_proj."""
        out = [("embed.weight", self.embed.weight, None)]

        def attention(mha, prefix):
            C = mha.embed_dim
            for j, p in enumerate(("query", "key", "value")):
                rows = slice(j * C, (j + 1) * C)
                out.extend([(f"{prefix}.{p}.weight", mha.in_proj_weight, rows), (f"{prefix}.{p}.bias", mha.in_proj_bias, rows)])
            out.extend([(f"{prefix}.output.weight", mha.out_proj.weight, None), (f"{prefix}.output.bias", mha.out_proj.bias, None)])

        def rest(layer, prefix, norms):
            for name, linear in (("ffn.up", layer.linear1), ("ffn.down", layer.linear2)):
                out.extend([(f"{prefix}.{name}.weight", linear.weight, None), (f"{prefix}.{name}.bias", linear.bias, None)])
            for norm, name in zip(norms, ["layernorm", "layernorm_1", "layernorm_2"]):
                out.extend([(f"{prefix}.{name}.weight", norm.weight, None), (f"{prefix}.{name}.bias", norm.bias, None)])

        for i, layer in enumerate(self.encoder):
            attention(layer.self_attn, f"encoder.{i}.attention")
            rest(layer, f"encoder.{i}", [layer.norm1, layer.norm2])
        for i, layer in enumerate(self.decoder):
            attention(layer.self_attn, f"decoder.{i}.attention")
            attention(layer.multihead_attn, f"decoder.{i}.cross")
            rest(layer, f"decoder.{i}", [layer.norm1, layer.norm2, layer.norm3])
        return out

    def load(self, weights_path, dtype=torch.float64):
        from safetensors.torch import load_file

        w = {k: v.to(dtype) for k, v in load_file(str(weights_path)).items() if not k.startswith("train.")}
        self.to(dtype)
        names = set()
        with torch.no_grad():
            for name, param, rows in self.tensors():
                (param if rows is None else param[rows]).copy_(w[name])
                names.add(name)
        assert names == set(w), sorted(set(w) ^ names)
        return self.eval()

    def kiln_gradients(self):
        """The gradient of every parameter under Kiln's tensor names."""
        return {name: param.grad if rows is None else param.grad[rows] for name, param, rows in self.tensors()}
