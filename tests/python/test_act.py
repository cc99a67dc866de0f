"""Adaptive computation time in the Universal Transformer (tests/models/universal-act.kiln) against
reference.UniversalACT, a PyTorch transcription of the dynamic-halting listing of Dehghani et al. 2019 (float64):
on a fixed batch whose positions halt at different steps (and some not at all), the logits, the mean ponder
cost, and the gradients of next-token loss + 0.01 · ponder cost; every VJP of a float64 build against finite
differences; and training on tiny Shakespeare."""
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import reference
from kilntest import assert_decoding_matches_forward, assert_gradients_match, ROOT, ctypes_model, run

MODEL = "tests/models/universal-act.kiln"
VOCAB, T = 41, 12


@pytest.fixture(scope="module")
def act(builds, tmp_path_factory):
    """The build and weights far from the init whose halting unit spreads the probabilities (bias 0.6, a larger
    weight), so that positions halt after 2, 3 or 4 steps or run out of steps."""
    out = builds.build(MODEL)
    w = tmp_path_factory.mktemp("act") / "w.safetensors"
    r = run([out / "infer", "init", "--seed", 5, "--out", w])
    assert r.returncode == 0, r.stderr
    g = torch.Generator().manual_seed(5)
    weights = {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in load_file(str(w)).items()}
    weights["step.halting.weight"] = 0.5 * torch.randn(weights["step.halting.weight"].shape, generator=g)
    weights["step.halting.bias"] = torch.tensor([0.6])
    save_file(weights, str(w))
    return out, w


def tokens_of(B, seed):
    return np.random.default_rng(seed).integers(0, VOCAB, size=(B, T), dtype=np.int32)


def test_forward_and_ponder_cost_match_the_papers_equations(act, tmp_path):
    out, w = act
    tokens = tokens_of(4, seed=1)
    np.save(tmp_path / "tokens.npy", tokens)
    r = run([out / "infer", "run", "--weights", w, "--input", f"tokens={tmp_path / 'tokens.npy'}",
             "--output", f"logits={tmp_path / 'logits.npy'}", "--output", f"ponder={tmp_path / 'ponder.npy'}"])
    assert r.returncode == 0, r.stderr
    model = reference.load_module(reference.UniversalACT(), w)
    with torch.no_grad():
        logits, ponder, per_position = model(torch.from_numpy(tokens).long())
    # the batch exercises every case of the bookkeeping: halting at different steps, and not halting at all
    steps_taken = set(np.floor(per_position.numpy()).astype(int).ravel().tolist())
    assert steps_taken == {2, 3, 4} and ((per_position == 4).any() and (per_position > 4).any()), per_position
    got = np.load(tmp_path / "logits.npy")
    assert np.abs(got - logits.numpy()).max() <= 1e-5 * np.abs(logits.numpy()).max()
    assert abs(float(np.load(tmp_path / "ponder.npy")) - ponder.item()) <= 1e-5 * ponder.item()


def test_gradients_of_loss_plus_ponder_cost_match_autograd(act, tmp_path):
    out, w = act
    tokens, targets = tokens_of(3, seed=2), tokens_of(3, seed=3)
    np.save(tmp_path / "tok.npy", tokens)
    np.save(tmp_path / "tgt.npy", targets)
    r = run([out / "gradcheck", "dump", "--weights", w, "--tokens", tmp_path / "tok.npy", "--targets",
             tmp_path / "tgt.npy", "--out", tmp_path / "g.safetensors"])
    assert r.returncode == 0, r.stderr
    ours, our_loss = load_file(str(tmp_path / "g.safetensors")), float(r.stdout.split()[1])
    model = reference.load_module(reference.UniversalACT(), w)
    logits, ponder, _ = model(torch.from_numpy(tokens).long())
    loss = F.cross_entropy(logits.reshape(-1, VOCAB), torch.from_numpy(targets).long().reshape(-1)) + 0.01 * ponder
    loss.backward()
    assert model.step.halting.weight.grad.abs().max() > 0
    assert_gradients_match(ours, our_loss, model, loss)


def test_every_vjp_against_finite_differences(kiln, tmp_path):
    out = tmp_path / "f64"
    r = run([kiln, "build", ROOT / MODEL, "--dtype", "f64", "-o", out])
    assert r.returncode == 0, r.stderr
    for seed, batch, seq in [(1, 2, 5), (2, 3, 9)]:
        r = run([out / "gradcheck", "fd", "--seed", seed, "--batch", batch, "--seq", seq, "--samples", 10])
        assert r.returncode == 0, r.stdout + r.stderr
        assert ": ok" in r.stdout


def test_trains_on_tiny_shakespeare(kiln, tmp_path):
    """A byte-level Universal Transformer with adaptive computation time learns: its held-out loss falls."""
    model = tmp_path / "m.kiln"
    model.write_text((ROOT / MODEL).read_text().replace("vocab   = 41", "vocab   = 256").replace("context = 12", "context = 32")
                     .replace("batch = 2", "batch = 8").replace("seq = 12", "seq = 32"))
    out = tmp_path / "b"
    assert run([kiln, "build", model, "-o", out]).returncode == 0
    text = (ROOT / "examples/data/tinyshakespeare.txt").read_bytes()[:100_000]
    (tmp_path / "t.txt").write_bytes(text)
    r = run([out / "train", "--data", tmp_path / "t.txt", "--out", tmp_path / "w.safetensors", "--steps", 150,
             "--eval-interval", 75, "--lr", 3e-3, "--seed", 1])
    assert r.returncode == 0, r.stderr
    val = [float(v) for v in re.findall(r"val loss ([\d.]+)", r.stdout)]
    assert len(val) >= 2 and val[-1] < val[0] - 0.3 and val[-1] < 3.5, r.stdout


def test_kv_cache_decoding_gives_the_full_forward(act):
    """Halting is per position, so the model decodes with a KV cache: prefill, then decode_step, two rows a
    position apart, against the forward of each prefix."""
    out, w = act
    m = ctypes_model(next(out.glob("lib*.so")), str(w))
    tokens = tokens_of(2, seed=5)
    assert_decoding_matches_forward(m, tokens)
    m.close()
