"""The primitive tier against PyTorch (float64): the elementwise math (exp, log, sqrt, rsqrt, tanh, pow), the
reductions over the last axis (sum, mean, max, logsumexp, kept as a dim of 1 so that they broadcast back), einsum,
range, unsqueeze/squeeze, the comparisons and where, param, slice and concat, in a model that writes LayerNorm, a softmax and causal
attention by hand. Forward through `infer run`, gradients against autograd, every
VJP of a float64 build against finite differences, and the softmax written from primitives against the built-in."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from kilntest import ROOT, assert_finite_differences, assert_gradients_match, dump_gradients, perturbed_weights, run

VOCAB, CONTEXT, DIM = 23, 7, 12
MODEL = (ROOT / "tests/models/primitives.kiln").read_text()


class Reference(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.positions = nn.Embedding(CONTEXT, DIM)
        self.mix = nn.Linear(DIM, DIM)
        self.q = nn.Linear(DIM, DIM)
        self.more = nn.Embedding(CONTEXT, DIM)
        self.table = nn.Parameter(torch.zeros(4, CONTEXT))
        self.head = nn.Linear(DIM, VOCAB)

    def forward(self, tokens):
        h = self.embed(tokens) + self.positions.weight[:tokens.shape[1]]
        c = h - h.mean(-1, keepdim=True)
        h = c * torch.rsqrt((c * c).mean(-1, keepdim=True))
        h = h + torch.tanh(self.mix(h)) * torch.sqrt(torch.sigmoid(h))
        T = tokens.shape[1]
        q = self.q(h).unflatten(-1, (3, DIM // 3))
        s = torch.einsum("bthd,bshd->bhts", q, q) * 0.5
        i = torch.arange(T, dtype=h.dtype)
        s = torch.where(i[:, None] >= i, s, torch.tensor(-1e9, dtype=h.dtype))
        h = h + torch.einsum("bhts,bshd->bthd", torch.softmax(s, -1), q).flatten(-2)
        k = sum(m.to(h.dtype) for m in (h > 0.5, h < -0.5, h >= 1, h <= -1, h == 0, h != 0))
        h = h + 0.1 * k * h
        h = h * (torch.sigmoid(h) ** 3 + 1 - 0.5 / (2 + h * h))
        w = self.more.weight[:T]
        h = h + 0.1 * torch.einsum("bts,sc->btc", torch.einsum("btc,sc->bts", h, w), w)
        u = self.table[:, :T]
        h = h + 0.1 * torch.einsum("rt,brc->btc", u, torch.einsum("rt,btc->brc", u, h))
        h = torch.cat([h[..., :4] * 0.5, h[..., 4:]], -1)
        l = self.head(h)
        z = torch.exp(l - l.amax(-1, keepdim=True))
        return torch.log(z / z.sum(-1, keepdim=True)) + 0.5 * torch.logsumexp(l, -1, keepdim=True)


@pytest.fixture(scope="module")
def prims(kiln, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prims")
    (tmp / "p.kiln").write_text(MODEL)
    r = run([kiln, "build", tmp / "p.kiln", "-o", tmp / "out"])
    assert r.returncode == 0, r.stderr
    w = tmp / "w.safetensors"
    perturbed_weights(tmp / "out/infer", w, 4, scale=0.3)
    ref = Reference().double()
    ref.load_state_dict({k: v.double() for k, v in load_file(str(w)).items()}, strict=True)
    return tmp, w, ref


def test_forward_matches_pytorch(prims):
    tmp, w, ref = prims
    tokens = np.random.default_rng(1).integers(0, VOCAB, size=(3, CONTEXT), dtype=np.int32)
    np.save(tmp / "tokens.npy", tokens)
    r = run([tmp / "out/infer", "run", "--weights", w, "--input", f"tokens={tmp / 'tokens.npy'}", "--output",
             f"logits={tmp / 'logits.npy'}", "--output", f"probs={tmp / 'probs.npy'}"])
    assert r.returncode == 0, r.stderr
    with torch.no_grad():
        want = ref(torch.from_numpy(tokens).long()).numpy()
    got = np.load(tmp / "logits.npy")
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    assert np.abs(np.load(tmp / "probs.npy")).max() <= 1e-6  # the softmax by hand is the built-in's


def test_gradients_match_autograd_and_finite_differences(prims, kiln):
    tmp, w, ref = prims
    rng = np.random.default_rng(2)
    tokens, targets = (rng.integers(0, VOCAB, size=(2, CONTEXT), dtype=np.int32) for _ in range(2))
    ours, our_loss = dump_gradients(tmp / "out", w, tokens, targets, tmp)
    ref.zero_grad()
    loss = F.cross_entropy(ref(torch.from_numpy(tokens).long()).reshape(-1, VOCAB), torch.from_numpy(targets).long().reshape(-1))
    loss.backward()
    assert_gradients_match(ours, our_loss, ref, loss)
    assert_finite_differences(kiln, tmp / "p.kiln", tmp / "f64", seeds=(3, 4))


BAD = [
    ("output y = h - max(3)", "the argument of max must be a tensor"),
    ("output y = transpose(h, 0, 5)", "transpose: axes 0 and 5 are not two axes of a rank-3 tensor"),
    ("output y = split_last(h, 3)", "split_last: the last axis of [B, T, 8] does not split into 3 parts"),
    ("output y = matmul(h, h)", "matmul: [B, T, 8] times [B, T, 8]: inner dims 8 vs T differ"),
    ("output y = merge_last(h)", "merge_last needs its last two axes constant, got [B, T, 8]"),
    ('output y = einsum("btc,btd", h, h)', "write the output after '->'"),
    ('output y = einsum("btc,btd->bt", h, h)', "index c is only in the first operand (sum it first)"),
    ('output y = einsum("bt,btc->btc", h, h)', "the first operand has 2 indices, its type f32[B, T, 8] 3"),
    ('output y = einsum("btc,bTc->btT", h, h)', "indices must be letters a-z"),
    ("output y = einsum(h, h, h)", "einsum's equation must be a quoted text"),
    ("output y = squeeze(h, 1)", "squeeze: axis 1 of [B, T, 8] is not of size 1"),
    ("output y = unsqueeze(h, 5)", "unsqueeze: 5 is not an axis position of a rank-3 tensor"),
    ("output y = where(h > 0, h)", "missing argument 'b' in call to 'where'"),
    ("output y = where(h > 0, h, split_last(h, 2))", "shapes [B, T, 8] and [B, T, 2, 4] do not match"),
    ("output y = h < h < h", "comparisons do not chain"),
    ("output y = h < embed", "'<' cannot compare"),
    ("output y = pow(h, h)", "pow's exponent must be a number"),
    ("output y = range(0)", "range's length must be positive"),
    ("output y = slice(h, 2, 6, 3)", "slice: positions 6 ..< 6 + 3 (up to 9) do not fit axis 2 of [B, T, 8]"),
    ("output y = slice(h, 1, 1, 2)", "slice: axis 1 of [B, T, 8] is symbolic; slice a constant axis"),
    ("output y = concat(h, split_last(h, 2), -1)", "concat: f32[B, T, 8] and f32[B, T, 2, 4] differ in dtype or rank"),
    ("output y = concat(h, h, 1)", "concat: axis 1 of [B, T, 8] and [B, T, 8] must be constant"),
    ("output y = h + param(3, 0)", "a parameter's dimension must be positive"),
    ("output y = h + param(8, init: uniform)", "init must be one of normal, zeros, ones"),
    ("output y = gather(h, tokens, 1)", "gather: the axis 1 of f32[B, T, 8] must exist and be constant"),
    ("output y = gather(h, tokens, -1)", "input 'tokens' is used as positions here but as tokens before"),
    ("output y = gather(h, h, -1)", "gather's index must be an integer input"),
]


@pytest.mark.parametrize("line,message", BAD)
def test_bad_primitive_calls_get_one_line_errors(kiln, tmp_path, line, message):
    (tmp_path / "m.kiln").write_text("model M\ninput tokens: i32[B, T] where T <= 8\nh = embed(tokens, 16, 8)\n" + line + "\n")
    r = run([kiln, "check", tmp_path / "m.kiln"])
    assert r.returncode != 0 and "m.kiln:4:" in r.stderr and message in r.stderr, r.stderr


ATTENTION = f"""model Attention
config {{ vocab = {VOCAB}, context = {CONTEXT}, dim = {DIM}, heads = 1, scale = 1 / sqrt(dim / heads) }}
input tokens: i32[B, T] where T <= context
block Attn(x: f32[B, T, dim]) -> f32[B, T, dim] {{
BODY
}}
h = embed(tokens, vocab, dim) + positions(learned, T, dim)
h = h + Attn(h)
EXTRA
output logits = linear(h, vocab, name: head)
train {{
  objective = next_token(logits)
  batch = 2
  seq = {CONTEXT}
}}
"""
BUILTIN = "  return attention(x, heads: heads)"
# multi-head attention as a research function writes it: heads split off the channels and moved before the
# positions, scores, scale, a softmax by hand, weighted values, heads merged back
BY_HAND = """  q = transpose(split_last(linear(x, dim, name: query), heads), 1, 2)
  k = transpose(split_last(linear(x, dim, name: key), heads), 1, 2)
  v = transpose(split_last(linear(x, dim, name: value), heads), 1, 2)
  s = matmul(q, transpose(k)) * scale
  z = exp(s - max(s))
  return linear(merge_last(transpose(matmul(z / sum(z), v), 1, 2)), dim, name: out)"""

def rename(k):
    """The built-in's parameter name in the block (attn.attention.query.weight) as the hand-written one
    (attn.query.weight; its output projection is attn.out: `output` is a keyword)."""
    return k.replace("attn.attention.", "attn.").replace("attn.output.", "attn.out.")


@pytest.mark.parametrize("heads", [1, 3])
def test_attention_from_primitives_equals_the_builtin(kiln, tmp_path, heads):
    """Bidirectional multi-head attention from split_last, transpose, matmul, exp and the reductions gives the
    built-in attention's logits and gradients (the same parameters under the hand-written names), and every VJP
    of a float64 build (a product shared by the batch among them) passes finite differences."""
    outs = {}
    for name, body, extra in [("builtin", BUILTIN, ""), ("hand", BY_HAND, ""),
                              ("shared", BY_HAND, "h = h + 0.1 * matmul(h, matmul(transpose(h), positions(learned, T, dim, name: more)))")]:
        (tmp_path / f"{name}.kiln").write_text(ATTENTION.replace("BODY", body).replace("EXTRA", extra).replace("heads = 1", f"heads = {heads}"))
        r = run([kiln, "build", tmp_path / f"{name}.kiln", "-o", tmp_path / name])
        assert r.returncode == 0, r.stderr
        outs[name] = tmp_path / name
    w = tmp_path / "w.safetensors"
    weights = perturbed_weights(outs["builtin"] / "infer", w, 2, scale=0.3)
    save_file({rename(k): v for k, v in weights.items()}, str(tmp_path / "w-hand.safetensors"))
    tokens = np.random.default_rng(1).integers(0, VOCAB, size=(3, CONTEXT), dtype=np.int32)
    targets = np.random.default_rng(2).integers(0, VOCAB, size=(3, CONTEXT), dtype=np.int32)
    np.save(tmp_path / "tok.npy", tokens)
    np.save(tmp_path / "tgt.npy", targets)
    got = {}
    for name in ("builtin", "hand"):
        wn = w if name == "builtin" else tmp_path / "w-hand.safetensors"
        r = run([outs[name] / "infer", "run", "--weights", wn, "--input", f"tokens={tmp_path / 'tok.npy'}", "--output",
                 f"logits={tmp_path / name}.npy"])
        assert r.returncode == 0, r.stderr
        got[name] = (np.load(tmp_path / f"{name}.npy"), dump_gradients(outs[name], wn, tokens, targets, tmp_path, tag=name)[0])
    (a, ga), (b, gb) = got["builtin"], got["hand"]
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()
    assert {rename(k) for k in ga} == set(gb)
    floor = 1e-3 * max(v.abs().max().item() for v in ga.values())  # the key bias's gradient is 0 up to rounding
    for k in ga:
        assert (ga[k] - gb[rename(k)]).abs().max() <= 1e-4 * max(ga[k].abs().max().item(), floor), k
    assert_finite_differences(kiln, tmp_path / "shared.kiln", tmp_path / "f64")


# examples written from primitives, and the same model with the built-in attention: (example, its built-in twin)
BY_HAND_EXAMPLES = [
    ("einsum-attention", lambda text: (ROOT / "examples/char-gpt-small.kiln").read_text()),
    ("alibi-by-hand", lambda text: text.replace("x = x + ALiBiAttention(layernorm(x), name: attention)",
                                                "x = x + attention(layernorm(x), heads: heads, mask: causal, position: alibi)")),
    ("linformer-by-hand", lambda text: text.replace("x = x + LinformerAttention(layernorm(x), name: attention)",
                                                    "x = x + attention(layernorm(x), heads: heads, lowrank: rows)")),
]


@pytest.mark.parametrize("example,builtin", BY_HAND_EXAMPLES, ids=[e for e, _ in BY_HAND_EXAMPLES])
def test_examples_from_primitives_equal_the_builtins(kiln, tmp_path, example, builtin):
    """examples/einsum-attention.kiln (causal attention from einsum, range, a comparison, where and softmax),
    examples/alibi-by-hand.kiln (ALiBi's slopes and distances from range, exp and broadcasting) and
    examples/linformer-by-hand.kiln (Linformer's projections from param, slice and einsum) give the logits and
    gradients of the same models with the built-in attention (examples/char-gpt-small.kiln; position: alibi;
    lowrank:) for the same weights, which load as they are."""
    text = (ROOT / f"examples/{example}.kiln").read_text()
    (tmp_path / "builtin.kiln").write_text(builtin(text))
    assert builtin(text) != text
    got = {}
    w = tmp_path / "w.safetensors"
    rng = np.random.default_rng(5)
    tokens, targets = (rng.integers(0, 256, size=(2, 37), dtype=np.int32) for _ in range(2))
    np.save(tmp_path / "tok.npy", tokens)
    for name, src in (("builtin", tmp_path / "builtin.kiln"), ("by-hand", ROOT / f"examples/{example}.kiln")):
        r = run([kiln, "build", src, "-o", tmp_path / name])
        assert r.returncode == 0, r.stderr
        if not w.exists():
            perturbed_weights(tmp_path / name / "infer", w, 6)
        r = run([tmp_path / name / "infer", "run", "--weights", w, "--input", f"tokens={tmp_path / 'tok.npy'}",
                 "--output", f"logits={tmp_path / name}.npy"])
        assert r.returncode == 0, r.stderr
        got[name] = (np.load(tmp_path / f"{name}.npy"), *dump_gradients(tmp_path / name, w, tokens, targets, tmp_path, tag=name))
    (a, ga, la), (b, gb, lb) = got["builtin"], got["by-hand"]
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()
    assert abs(la - lb) <= 1e-5 * abs(la) and set(ga) == set(gb)
    floor = 1e-3 * max(v.abs().max().item() for v in ga.values())  # the key biases' gradients are 0 up to rounding
    for k in ga:
        assert (ga[k] - gb[k]).abs().max() <= 1e-4 * max(ga[k].abs().max().item(), floor), k


GATHER = """model Gather
config { vocab = 23, context = 7, dim = 12 }
input tokens: i32[B, T] where T <= context
input picks: i32[B, T, 5]
h = embed(tokens, vocab, dim) + positions(learned, T, dim)
g = gather(tanh(linear(h, dim, name: mix)), picks, -1)
output logits = linear(concat(h, g, -1), vocab, name: head)
train {
  objective = next_token(logits)
  batch = 2
  seq = 7
}
"""


def test_gather_matches_pytorch(kiln, tmp_path):
    """gather along the last axis (PyTorch's torch.gather; repeated picks add their gradients) and concat: the
    forward and the gradients against autograd, finite differences of a float64 build (random picks within the
    axis), and the run-time check of the index."""
    (tmp_path / "g.kiln").write_text(GATHER)
    r = run([kiln, "build", tmp_path / "g.kiln", "-o", tmp_path / "out"])
    assert r.returncode == 0, r.stderr
    w = tmp_path / "w.safetensors"
    weights = {k: v.double() for k, v in perturbed_weights(tmp_path / "out/infer", w, 3, scale=0.3).items()}
    rng = np.random.default_rng(4)
    tokens, targets = (rng.integers(0, VOCAB, size=(2, 6), dtype=np.int32) for _ in range(2))
    picks = rng.integers(0, DIM, size=(2, 6, 5), dtype=np.int32)
    picks[0, 0] = [3, 3, 3, 0, 11]  # repeats: their gradients add up
    for name, a in [("tok", tokens), ("tgt", targets), ("picks", picks)]:
        np.save(tmp_path / f"{name}.npy", a)
    r = run([tmp_path / "out/infer", "run", "--weights", w, "--input", f"tokens={tmp_path / 'tok.npy'}", "--input",
             f"picks={tmp_path / 'picks.npy'}", "--output", f"logits={tmp_path / 'logits.npy'}"])
    assert r.returncode == 0, r.stderr
    params = {k: v.clone().requires_grad_() for k, v in weights.items()}
    t = torch.from_numpy(tokens).long()
    h = params["embed.weight"][t] + params["positions.weight"][:6]
    gathered = torch.gather(torch.tanh(h @ params["mix.weight"].T + params["mix.bias"]), -1, torch.from_numpy(picks).long())
    want = torch.cat([h, gathered], -1) @ params["head.weight"].T + params["head.bias"]
    got = np.load(tmp_path / "logits.npy")
    assert np.abs(got - want.detach().numpy()).max() <= 1e-5 * want.abs().max().item()
    loss = F.cross_entropy(want.reshape(-1, VOCAB), torch.from_numpy(targets).long().reshape(-1))
    loss.backward()
    r = run([tmp_path / "out/gradcheck", "dump", "--weights", w, "--tokens", tmp_path / "tok.npy", "--targets",
             tmp_path / "tgt.npy", "--input", f"picks={tmp_path / 'picks.npy'}", "--out", tmp_path / "g.safetensors"])
    assert r.returncode == 0, r.stderr
    ours = load_file(str(tmp_path / "g.safetensors"))
    assert abs(float(r.stdout.split()[1]) - loss.item()) <= 1e-5 * loss.item() and set(ours) == set(params)
    for k, p in params.items():
        assert (ours[k].double() - p.grad).abs().max() <= 1e-4 * p.grad.abs().max(), k
    assert_finite_differences(kiln, tmp_path / "g.kiln", tmp_path / "f64")
    picks[1, 2, 4] = DIM  # outside the axis: refused before the call
    np.save(tmp_path / "picks.npy", picks)
    r = run([tmp_path / "out/infer", "run", "--weights", w, "--input", f"tokens={tmp_path / 'tok.npy'}", "--input",
             f"picks={tmp_path / 'picks.npy'}", "--output", f"logits={tmp_path / 'logits.npy'}"])
    assert r.returncode != 0 and "picks" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
