"""The LSTM (tests/models/lstm.kiln, examples/char-lstm.kiln) against torch.nn.LSTM with the same weights,
loaded by name (Kiln writes nn.LSTM's parameter names): forward logits, the gradients of next-token loss, every
VJP of a float64 build against finite differences, generation that carries the state (prefill, then one
step per token at any position, equal to the full forward), an nn.LSTM state dict run by Kiln unchanged, and
training on tiny Shakespeare."""
import re

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import reference
from kilntest import ROOT, assert_decoding_matches_forward, assert_gradients_match, ctypes_model, run

MODEL = "tests/models/lstm.kiln"
VOCAB, DIM, HIDDEN, LAYERS, T = 37, 24, 32, 2, 16


class TorchLSTM(nn.Module):
    """The model of tests/models/lstm.kiln as PyTorch writes it."""

    def __init__(self, dropout=0.0):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.lstm = nn.LSTM(DIM, HIDDEN, num_layers=LAYERS, batch_first=True, dropout=dropout)
        self.head = nn.Linear(HIDDEN, VOCAB)

    def forward(self, tokens):
        return self.head(self.lstm(self.embed(tokens))[0])


@pytest.fixture(scope="module")
def lstm(builds, tmp_path_factory):
    """The build and weights away from the init (biases too, so that every gate's bias matters)."""
    out = builds.build(MODEL)
    w = tmp_path_factory.mktemp("lstm") / "w.safetensors"
    r = run([out / "infer", "init", "--seed", 3, "--out", w])
    assert r.returncode == 0, r.stderr
    g = torch.Generator().manual_seed(3)
    save_file({k: v + 0.2 * torch.randn(v.shape, generator=g) for k, v in load_file(str(w)).items()}, str(w))
    return out, w


def tokens_of(B, seed, T=T):
    return np.random.default_rng(seed).integers(0, VOCAB, size=(B, T), dtype=np.int32)


def test_the_parameters_are_nn_lstms(lstm):
    _, w = lstm
    ours = {k: tuple(v.shape) for k, v in load_file(str(w)).items()}
    theirs = {k: tuple(v.shape) for k, v in TorchLSTM().state_dict().items()}
    assert ours == theirs


@pytest.mark.parametrize("B,length", [(1, T), (4, T), (3, 5)])
def test_forward_matches_nn_lstm(lstm, tmp_path, B, length):
    out, w = lstm
    tokens = tokens_of(B, seed=B + length, T=length)
    np.save(tmp_path / "tokens.npy", tokens)
    r = run([out / "infer", "run", "--weights", w, "--input", f"tokens={tmp_path / 'tokens.npy'}",
             "--output", f"logits={tmp_path / 'logits.npy'}"])
    assert r.returncode == 0, r.stderr
    model = reference.load_module(TorchLSTM(), w)
    with torch.no_grad():
        want = model(torch.from_numpy(tokens).long()).numpy()
    got = np.load(tmp_path / "logits.npy")
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_gradients_match_autograd(lstm, tmp_path):
    out, w = lstm
    tokens, targets = tokens_of(3, seed=2), tokens_of(3, seed=3)
    np.save(tmp_path / "tok.npy", tokens)
    np.save(tmp_path / "tgt.npy", targets)
    r = run([out / "gradcheck", "dump", "--weights", w, "--tokens", tmp_path / "tok.npy", "--targets",
             tmp_path / "tgt.npy", "--out", tmp_path / "g.safetensors"])
    assert r.returncode == 0, r.stderr
    ours, our_loss = load_file(str(tmp_path / "g.safetensors")), float(r.stdout.split()[1])
    model = reference.load_module(TorchLSTM(), w)
    logits = model(torch.from_numpy(tokens).long())
    loss = F.cross_entropy(logits.reshape(-1, VOCAB), torch.from_numpy(targets).long().reshape(-1))
    loss.backward()
    assert_gradients_match(ours, our_loss, model, loss)


def test_every_vjp_against_finite_differences(kiln, tmp_path):
    out = tmp_path / "f64"
    r = run([kiln, "build", ROOT / MODEL, "--dtype", "f64", "-o", out])
    assert r.returncode == 0, r.stderr
    for seed, batch, seq in [(1, 2, 5), (2, 3, 11)]:
        r = run([out / "gradcheck", "fd", "--seed", seed, "--batch", batch, "--seq", seq, "--samples", 10])
        assert r.returncode == 0, r.stdout + r.stderr
        assert ": ok" in r.stdout


def test_generation_carries_the_state(lstm):
    """prefill, then decode_step one token at a time, two rows at different positions: each step equals the
    last position of the full forward over the prefix, although a step sees only the token and the state."""
    out, w = lstm
    m = ctypes_model(next(out.glob("lib*.so")), str(w))
    assert_decoding_matches_forward(m, tokens_of(2, seed=5))
    m.close()


def test_an_nn_lstm_state_dict_runs_unchanged(lstm, tmp_path):
    """Weights trained by PyTorch load as they are: a fresh nn.LSTM model's state dict, saved with
    safetensors, gives Kiln the logits PyTorch computes."""
    out, _ = lstm
    torch.manual_seed(0)
    model = TorchLSTM().eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "torch.safetensors"))
    tokens = tokens_of(2, seed=9)
    np.save(tmp_path / "tokens.npy", tokens)
    r = run([out / "infer", "run", "--weights", tmp_path / "torch.safetensors", "--input",
             f"tokens={tmp_path / 'tokens.npy'}", "--output", f"logits={tmp_path / 'logits.npy'}"])
    assert r.returncode == 0, r.stderr
    with torch.no_grad():
        want = model(torch.from_numpy(tokens).long()).numpy()
    assert np.abs(np.load(tmp_path / "logits.npy") - want).max() <= 1e-5 * np.abs(want).max()


def test_trains_on_tiny_shakespeare(kiln, tmp_path):
    """A byte-level two-layer LSTM with dropout between its layers learns: its held-out loss falls below the
    unigram plateau (about 3.3 nats, where an LSTM sits for its first hundred steps)."""
    model = tmp_path / "m.kiln"
    model.write_text((ROOT / MODEL).read_text().replace("vocab   = 37", "vocab   = 256").replace("hidden  = 32", "hidden  = 64")
                     .replace("layers: layers,", "layers: layers, dropout: 0.1,").replace("batch = 3", "batch = 8"))
    out = tmp_path / "b"
    r = run([kiln, "build", model, "-o", out])
    assert r.returncode == 0, r.stderr
    train_step = (out / "model.c").read_text().split("/* ---- train_step ---- */")[1].split("/* ---- ")[0]
    assert "dropout_forward" in train_step
    text = (ROOT / "examples/data/tinyshakespeare.txt").read_bytes()[:100_000]
    (tmp_path / "t.txt").write_bytes(text)
    r = run([out / "train", "--data", tmp_path / "t.txt", "--out", tmp_path / "w.safetensors", "--steps", 400,
             "--eval-interval", 100, "--lr", 1e-2, "--seed", 1])
    assert r.returncode == 0, r.stderr
    val = [float(v) for v in re.findall(r"val loss ([\d.]+)", r.stdout)]
    assert len(val) == 4 and val[-1] < val[0] - 0.3 and val[-1] < 3.0, r.stdout
