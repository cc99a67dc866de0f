"""Every activation of the table and every gated linear unit of `ffn`, against PyTorch (float64): each one in an
`ffn` (the GEMM epilogue in inference, a separate op in training) and, for the elementwise ones, also as a
built-in inside an elementwise tree (the fused kernels); the table's elementwise math (exp, log, sqrt, rsqrt,
tanh, the primitive tier's) inside a tree, on the outputs of a sigmoid (their domain). Outputs through `infer run`, gradients under the
next-token loss against autograd, and every VJP of a float64 build against finite differences."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from kilntest import assert_finite_differences, dump_gradients, run

VOCAB, CONTEXT, DIM, HIDDEN = 23, 7, 12, 18
ELEMENTWISE = {
    "relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "silu": F.silu,
    "sigmoid": torch.sigmoid, "elu": F.elu, "selu": F.selu, "softplus": F.softplus,
}
# the elementwise math of the primitive tier: not ffn activations; tested on sigmoid's outputs, in (0, 1)
MATH = {"exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt, "rsqrt": torch.rsqrt, "tanh": torch.tanh}
# Shazeer 2020's table (and Dauphin et al. 2017's GLU): the gate's activation; LiGLU has none
GATED = {"glu": torch.sigmoid, "reglu": F.relu, "geglu": F.gelu, "swiglu": F.silu, "liglu": lambda x: x}


def model_text(act):
    tree = f"h = h + 0.5 * {act}(h * 3.0) * h\n" if act in ELEMENTWISE else ""
    if act in MATH:
        tree = f"h = h + 0.5 * {act}(sigmoid(h * 3.0)) * h\n"
    return f"""model Act
config {{ vocab = {VOCAB}, context = {CONTEXT}, dim = {DIM}, hidden = {HIDDEN} }}
input tokens: i32[B, T] where T <= context
h = embed(tokens, vocab, dim) + positions(learned, T, dim)
h = h + ffn(h, hidden: hidden, activation: {"gelu" if act in MATH else act})
{tree}output logits = linear(h, vocab, name: head)
train {{
  objective = next_token(logits)
  batch = 2
  seq = {CONTEXT}
}}
"""


class Reference(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.act = act
        self.embed = nn.Embedding(VOCAB, DIM)
        self.positions = nn.Embedding(CONTEXT, DIM)
        self.ffn = nn.Module()
        if act in GATED:
            self.ffn.gate = nn.Linear(DIM, HIDDEN)
        self.ffn.up = nn.Linear(DIM, HIDDEN)
        self.ffn.down = nn.Linear(HIDDEN, DIM)
        self.head = nn.Linear(DIM, VOCAB)

    def forward(self, tokens):
        h = self.embed(tokens) + self.positions.weight[:tokens.shape[1]]
        if self.act in GATED:
            h = h + self.ffn.down(GATED[self.act](self.ffn.gate(h)) * self.ffn.up(h))
        elif self.act in MATH:
            h = h + self.ffn.down(F.gelu(self.ffn.up(h)))
            h = h + 0.5 * MATH[self.act](torch.sigmoid(h * 3.0)) * h
        else:
            f = ELEMENTWISE[self.act]
            h = h + self.ffn.down(f(self.ffn.up(h)))
            h = h + 0.5 * f(h * 3.0) * h
        return self.head(h)


@pytest.fixture(scope="module", params=sorted(ELEMENTWISE) + sorted(GATED) + sorted(MATH))
def act_model(request, kiln, tmp_path_factory):
    act = request.param
    tmp = tmp_path_factory.mktemp(act)
    (tmp / "act.kiln").write_text(model_text(act))
    r = run([kiln, "build", tmp / "act.kiln", "-o", tmp / "out"])
    assert r.returncode == 0, r.stderr
    w = tmp / "w.safetensors"
    r = run([tmp / "out/infer", "init", "--seed", 4, "--out", w])
    assert r.returncode == 0, r.stderr
    g = torch.Generator().manual_seed(4)
    save_file({k: v + 0.3 * torch.randn(v.shape, generator=g) for k, v in load_file(str(w)).items()}, str(w))
    ref = Reference(act).double()
    ref.load_state_dict({k: v.double() for k, v in load_file(str(w)).items()}, strict=True)
    return act, tmp, w, ref


def test_forward_matches_pytorch(act_model):
    act, tmp, w, ref = act_model
    tokens = np.random.default_rng(1).integers(0, VOCAB, size=(3, CONTEXT), dtype=np.int32)
    np.save(tmp / "tokens.npy", tokens)
    r = run([tmp / "out/infer", "run", "--weights", w, "--input", f"tokens={tmp / 'tokens.npy'}", "--output",
             f"logits={tmp / 'logits.npy'}"])
    assert r.returncode == 0, r.stderr
    got = np.load(tmp / "logits.npy")
    with torch.no_grad():
        want = ref(torch.from_numpy(tokens).long()).numpy()
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), (act, np.abs(got - want).max(), np.abs(want).max())


def test_gradients_match_autograd_and_finite_differences(act_model, kiln):
    act, tmp, w, ref = act_model
    rng = np.random.default_rng(2)
    tokens, targets = (rng.integers(0, VOCAB, size=(2, CONTEXT), dtype=np.int32) for _ in range(2))
    ours, our_loss = dump_gradients(tmp / "out", w, tokens, targets, tmp)
    ref.zero_grad()
    loss = F.cross_entropy(ref(torch.from_numpy(tokens).long()).reshape(-1, VOCAB), torch.from_numpy(targets).long().reshape(-1))
    loss.backward()
    assert abs(our_loss - loss.item()) <= 1e-5 * max(1.0, abs(loss.item()))
    theirs = dict(ref.named_parameters())
    floor = 1e-3 * max(p.grad.abs().max().item() for p in theirs.values())
    for name, p in theirs.items():
        want, got = p.grad.numpy(), ours[name].numpy().astype(np.float64)
        assert np.abs(got - want).max() <= 1e-4 * max(np.abs(want).max(), floor), (act, name)
    assert_finite_differences(kiln, tmp / "act.kiln", tmp / "f64")


def test_the_elementwise_math_is_not_an_ffn_activation(kiln, tmp_path):
    (tmp_path / "m.kiln").write_text(model_text("relu").replace("activation: relu", "activation: log"))
    r = run([kiln, "check", tmp_path / "m.kiln"])
    assert r.returncode != 0 and "activation must be one of" in r.stderr and "log" not in r.stderr.split("got")[0]
