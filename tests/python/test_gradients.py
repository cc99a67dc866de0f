"""Gradients of the compiled training graph against PyTorch autograd (float64
reference, same weights and batch), and every VJP rule against finite
differences in a float64 build."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import reference
from kilntest import ROOT, perturbed_weights, run
from test_parity import CHAR, ODD


@pytest.mark.parametrize("spec", [CHAR, ODD], ids=["char", "odd"])
def test_gradients_match_pytorch_autograd(builds, tmp_path, spec):
    out = builds.build(spec["file"], *spec["overrides"])
    w = tmp_path / "w.safetensors"
    perturbed_weights(out / "infer", w, seed=11)
    cfg = spec["cfg"]
    B, T = 2, min(cfg["context"], 32)
    rng = np.random.default_rng(3)
    tokens = rng.integers(0, cfg["vocab"], size=(B, T), dtype=np.int32)
    targets = rng.integers(0, cfg["vocab"], size=(B, T), dtype=np.int32)
    np.save(tmp_path / "tok.npy", tokens)
    np.save(tmp_path / "tgt.npy", targets)
    r = run([out / "gradcheck", "dump", "--weights", w, "--tokens", tmp_path / "tok.npy",
             "--targets", tmp_path / "tgt.npy", "--out", tmp_path / "g.safetensors"])
    assert r.returncode == 0, r.stderr
    ours = load_file(str(tmp_path / "g.safetensors"))
    our_loss = float(r.stdout.split()[1])

    model = reference.load(cfg, w)
    logits = model(torch.from_numpy(tokens).long())
    loss = F.cross_entropy(logits.reshape(-1, cfg["vocab"]), torch.from_numpy(targets).long().reshape(-1))
    loss.backward()
    assert abs(our_loss - loss.item()) < 1e-5
    theirs = dict(model.named_parameters())
    assert set(ours) == set(theirs)
    # A key bias's true gradient is exactly zero (softmax ignores a shift shared by all keys),
    # so relative errors are floored at 1e-3 of the model's largest gradient.
    floor = 1e-3 * max(p.grad.abs().max().item() for p in theirs.values())
    for name, p in theirs.items():
        want = p.grad.numpy()
        got = ours[name].numpy().astype(np.float64)
        diff = np.abs(got - want).max()
        scale = np.abs(want).max()
        assert diff <= 1e-4, f"{name}: max abs diff {diff}"
        assert diff <= 1e-4 * max(scale, floor), f"{name}: max abs diff {diff} vs tensor scale {scale}"


@pytest.mark.parametrize("spec", [CHAR, ODD], ids=["char", "odd"])
def test_fused_and_unfused_training_graphs_agree(builds, kiln, tmp_path, spec):
    """The training graph's fusions (residual adds into the forward GEMMs, gradient sums into the ops that
    produce them: the Q/K/V input gradients, LayerNorm with the residual stream, a tied embedding's rows
    scattered into the head's weight gradient in place) change the code, not the gradients."""
    fused = builds.build(spec["file"], *spec["overrides"])
    unfused = tmp_path / "unfused"
    r = run([kiln, "build", ROOT / spec["file"], "-o", unfused, "--no-fuse"])
    assert r.returncode == 0, r.stderr
    ir = run([kiln, "ir", "--stage", "backward", ROOT / spec["file"]]).stdout
    assert "accumulate: true" in ir and "residual: true" in ir
    if spec["cfg"]["head"] == "tied":
        assert any("embedding_grad(" in line and "accumulate: true" in line for line in ir.splitlines())
    w = tmp_path / "w.safetensors"
    perturbed_weights(fused / "infer", w, seed=5)
    cfg = spec["cfg"]
    rng = np.random.default_rng(4)
    for name in ("tok", "tgt"):
        np.save(tmp_path / f"{name}.npy", rng.integers(0, cfg["vocab"], size=(2, min(cfg["context"], 32)), dtype=np.int32))
    grads = []
    for out in (fused, unfused):
        r = run([out / "gradcheck", "dump", "--weights", w, "--tokens", tmp_path / "tok.npy",
                 "--targets", tmp_path / "tgt.npy", "--out", tmp_path / "g.safetensors"])
        assert r.returncode == 0, r.stderr
        grads.append(load_file(str(tmp_path / "g.safetensors")))
    assert set(grads[0]) == set(grads[1])
    for name, g in grads[1].items():
        diff = (grads[0][name] - g).abs().max().item()
        assert diff <= 1e-6 * max(g.abs().max().item(), 1e-6), f"{name}: fused and unfused differ by {diff}"
    # the fused step has fewer separate adds: two residuals and three gradient sums per layer at least
    step = lambda d: (d / "model.c").read_text().split("kiln_train_step(")[-1]
    assert step(unfused).count("add_forward(") - step(fused).count("add_forward(") >= 5 * cfg["layers"]


@pytest.mark.parametrize("model", ["tests/models/all-ops.kiln", "examples/odd-postnorm.kiln", "tests/models/elementwise.kiln"])
def test_every_vjp_rule_against_finite_differences(kiln, tmp_path, model):
    out = tmp_path / "f64"
    r = run([kiln, "build", ROOT / model, "--dtype", "f64", "-o", out])
    assert r.returncode == 0, r.stderr
    for seed in (1, 2):
        r = run([out / "gradcheck", "fd", "--seed", seed, "--samples", 12])
        assert r.returncode == 0, r.stdout + r.stderr
        assert "worst relative error" in r.stdout and ": ok" in r.stdout


def test_a_wrong_gradient_fails_the_check(kiln, tmp_path):
    """The finite-difference check can fail: corrupt one VJP kernel and see it caught."""
    out = tmp_path / "broken"
    r = run([kiln, "build", ROOT / "tests/models/all-ops.kiln", "--dtype", "f64", "-o", out, "--no-make"])
    assert r.returncode == 0, r.stderr
    table = out / "runtime" / "kernels" / "activations.h"
    src = table.read_text()
    broken = src.replace("kiln_act_relu_grad(real x, real dy) { return x > 0 ? dy : 0; }",
                         "kiln_act_relu_grad(real x, real dy) { return x > 0 ? (real)1.01 * dy : 0; }")
    assert broken != src
    table.write_text(broken)
    r = run(["make", "-C", out, "CC=gcc"])
    assert r.returncode == 0, r.stderr
    r = run([out / "gradcheck", "fd", "--samples", 50])
    assert r.returncode == 1 and "FAILED" in r.stdout
