"""Tests of the `train` program (runtime/train_main.c) linked against the fake
model (fake_model.c: a bigram model with a hand-written kiln_train_step).

- loss trajectories against torch.optim.AdamW / SGD + clip_grad_norm_ on the
  same batches (the test reproduces the data loader's RNG in Python);
- exact resume, also across thread counts and after SIGKILL mid-checkpoint;
- refusals, the non-finite guard, data and flag errors, infer on checkpoints.

Run: python3 -m pytest tests/runtime -q
"""

import json
import math
import os
import random
import re
import signal
import struct
import subprocess
import time

import numpy as np
import pytest

from rtkit import CONTEXT, PARAM_SHAPES, VOCAB, expect_error, expect_ok, run
from train_reference import ref_batches, ref_lr

ROLES = {"embed.weight": "embedding", "bias": "bias", "ln.weight": "norm", "pos.weight": "weight"}


# --------------------------------------------------------------------------
# Reference: the fake model in PyTorch (the loader and schedule: tests/train_reference.py)


def torch_train(init, batches_per_step, opt_name, lrs, clip, wd, decay_embeddings, **kw):
    """The fake model trained by torch.optim; returns (losses, norms, params, optimizer)."""
    import torch
    import torch.nn.functional as F

    p = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in init.items()}
    decayed = [p[k] for k in p if ROLES[k] == "weight" or (ROLES[k] == "embedding"
                                                          and decay_embeddings)]
    other = [p[k] for k in p if all(p[k] is not q for q in decayed)]
    groups = [{"params": decayed, "weight_decay": wd}, {"params": other, "weight_decay": 0.0}]
    if opt_name == "adamw":
        opt = torch.optim.AdamW(groups, lr=lrs[0], betas=kw["betas"], eps=kw["eps"],
                                foreach=False)
    else:
        opt = torch.optim.SGD(groups, lr=lrs[0], momentum=kw["momentum"], foreach=False)
    losses, norms = [], []
    for step, micro in enumerate(batches_per_step):
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for tok, tgt in micro:
            tok, tgt = torch.tensor(tok), torch.tensor(tgt)
            h = (p["embed.weight"][tok] + p["bias"]) * p["ln.weight"]
            logits = h + p["pos.weight"][: tok.shape[1]]
            loss = F.cross_entropy(logits.reshape(-1, VOCAB), tgt.reshape(-1))
            loss.backward()
            total += loss.item()
        for q in p.values():
            q.grad /= len(micro)
        losses.append(total / len(micro))
        norms.append(float(torch.nn.utils.clip_grad_norm_(list(p.values()), clip, foreach=False)
                           if clip > 0 else 0.0))
        for g in opt.param_groups:
            g["lr"] = lrs[step]
        opt.step()
    return losses, norms, {k: v.detach().numpy() for k, v in p.items()}, opt, p


# --------------------------------------------------------------------------
# Fixtures and helpers


def make_text(n, seed=0, alphabet=None):
    """Word salad: learnable byte statistics, ASCII only."""
    rng = random.Random(seed)
    words = alphabet or ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "far", "away",
                         "and", "then", "slept", "\n"]
    out = []
    while sum(len(w) + 1 for w in out) < n:
        out.append(rng.choice(words))
    return " ".join(out).encode()[:n]


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "text.txt"
    data = make_text(6000)
    path.write_bytes(data)
    return path, data


def init_weights(seed=5):
    rng = np.random.default_rng(seed)
    return {
        "embed.weight": (0.5 * rng.standard_normal((VOCAB, VOCAB))).astype(np.float32),
        "bias": (0.1 * rng.standard_normal(VOCAB)).astype(np.float32),
        "ln.weight": rng.uniform(0.5, 1.5, VOCAB).astype(np.float32),
        "pos.weight": (0.3 * rng.standard_normal((CONTEXT, VOCAB))).astype(np.float32),
    }


@pytest.fixture(scope="module")
def init_file(tmp_path_factory):
    from safetensors.numpy import save_file

    w = init_weights()
    path = tmp_path_factory.mktemp("init") / "init.safetensors"
    save_file(w, str(path), metadata={"format": "pt"})
    return path, w


def read_log(path):
    steps, evals = [], []
    for line in path.read_text().splitlines():
        obj = json.loads(line)
        (evals if "val_loss" in obj else steps).append(obj)
    return steps, evals


def load_ckpt(path):
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def train_args(data, out, *extra):
    return ["--data", data, "--out", out, *extra]


# --------------------------------------------------------------------------
# Against PyTorch


def test_adamw_matches_torch(build, text, init_file, tmp_path):
    pytest.importorskip("torch")
    data_path, data = text
    init_path, w = init_file
    B, T, steps = 4, 16, 10
    hp = dict(lr=0.05, min_lr=0.005, warmup=3, decay=8, clip=0.1, wd=0.1, b1=0.9, b2=0.95,
              eps=1e-8)
    log, out = tmp_path / "log.jsonl", tmp_path / "ck.safetensors"
    expect_ok(run(build["train"], *train_args(data_path, out), "--init-from", init_path,
                  "--steps", steps, "--batch", B, "--seq", T, "--seed", 77, "--lr", hp["lr"],
                  "--min-lr", hp["min_lr"], "--warmup", hp["warmup"], "--decay-steps",
                  hp["decay"], "--clip", hp["clip"], "--weight-decay", hp["wd"], "--beta1",
                  hp["b1"], "--beta2", hp["b2"], "--eps", hp["eps"], "--optimizer", "adamw",
                  "--schedule", "cosine", "--decay-embeddings", 1, "--eval-interval", 4,
                  "--log", log))
    got, evals = read_log(log)
    assert [e["step"] for e in got] == list(range(1, steps + 1))
    lrs = [ref_lr(s, hp["lr"], hp["min_lr"], hp["warmup"], hp["decay"]) for s in range(steps)]
    np.testing.assert_allclose([e["lr"] for e in got], lrs, rtol=1e-12)
    batches = [[b] for b in ref_batches(data, 77, B, T, steps)]
    losses, norms, params, opt, p = torch_train(w, batches, "adamw", lrs, hp["clip"], hp["wd"],
                                                True, betas=(hp["b1"], hp["b2"]),
                                                eps=hp["eps"])
    assert any(n > hp["clip"] for n in norms) and losses[-1] < losses[0] - 0.1
    diff = np.abs(np.array([e["loss"] for e in got]) - losses)
    assert diff.max() < 1e-5, (diff, [e["loss"] for e in got], losses)
    print("adamw: max loss difference to torch", diff.max())
    tensors, meta = load_ckpt(out)
    for k, v in params.items():
        np.testing.assert_allclose(tensors[k], v, rtol=1e-4, atol=1e-5, err_msg=k)
        st = opt.state[p[k]]
        np.testing.assert_allclose(tensors["train.m." + k], st["exp_avg"].numpy(), rtol=1e-3,
                                   atol=1e-7, err_msg=k)
        np.testing.assert_allclose(tensors["train.v." + k], st["exp_avg_sq"].numpy(), rtol=1e-3,
                                   atol=1e-9, err_msg=k)
    assert meta["step"] == str(steps) and meta["optimizer"] == "adamw"
    # evaluations at steps 4, 8 and the end (10), on fixed validation batches
    assert [e["step"] for e in evals] == [4, 8, 10]
    for e in evals:
        assert abs(e["val_perplexity"] - math.exp(e["val_loss"])) < 1e-6 * e["val_perplexity"]
        assert abs(e["val_bits_per_char"] - e["val_loss"] / math.log(2)) < 1e-9


def test_sgd_momentum_with_accumulation_matches_torch(build, text, init_file, tmp_path):
    pytest.importorskip("torch")
    data_path, data = text
    init_path, w = init_file
    B, T, steps, acc = 3, 8, 10, 2
    log, out = tmp_path / "log.jsonl", tmp_path / "ck.safetensors"
    expect_ok(run(build["train"], *train_args(data_path, out), "--init-from", init_path,
                  "--steps", steps, "--batch", B, "--seq", T, "--accumulate", acc, "--seed", 3,
                  "--optimizer", "sgd", "--lr", 0.5, "--schedule", "constant", "--warmup", 0, "--momentum",
                  0.9, "--weight-decay", 0.01, "--decay-embeddings", 0, "--clip", 0.6,
                  "--log", log, "--threads", 2))
    got, _ = read_log(log)
    flat = ref_batches(data, 3, B, T, steps * acc)
    batches = [flat[i * acc:(i + 1) * acc] for i in range(steps)]
    losses, norms, params, opt, p = torch_train(w, batches, "sgd", [0.5] * steps, 0.6, 0.01,
                                                False, momentum=0.9)
    assert any(n > 0.6 for n in norms) and any(n < 0.6 for n in norms), norms
    diff = np.abs(np.array([e["loss"] for e in got]) - losses)
    assert diff.max() < 1e-5, (diff, [e["loss"] for e in got], losses)
    print("sgd: max loss difference to torch", diff.max())
    tensors, meta = load_ckpt(out)
    for k, v in params.items():
        np.testing.assert_allclose(tensors[k], v, rtol=1e-4, atol=1e-5, err_msg=k)
        np.testing.assert_allclose(tensors["train.momentum." + k],
                                   opt.state[p[k]]["momentum_buffer"].numpy(), rtol=1e-3,
                                   atol=1e-6, err_msg=k)
    assert not any(k.startswith("train.m.") or k.startswith("train.v.") for k in tensors)
    assert meta["optimizer"] == "sgd" and meta["accumulate"] == "2"


def test_random_init_is_infer_init(build, text, tmp_path):
    """Without --init-from, train starts from `infer init --seed S` (same function)."""
    data_path, _ = text
    expect_ok(run(build["infer_clang"], "init", "--seed", 9, "--out", tmp_path / "w.st"))
    logs = []
    for extra in (["--seed", 9], ["--seed", 9, "--init-from", tmp_path / "w.st"]):
        log = tmp_path / "l.jsonl"
        expect_ok(run(build["train"], *train_args(data_path, tmp_path / "c.st"), "--steps", 3,
                      "--log", log, *extra))
        logs.append(read_log(log)[0])
    assert [e["loss"] for e in logs[0]] == [e["loss"] for e in logs[1]]


# --------------------------------------------------------------------------
# Checkpoints and exact resume


@pytest.mark.parametrize("opt", ["adamw", "sgd"])
def test_resume_is_exact(build, text, tmp_path, opt):
    """N steps straight == k steps + --resume + N-k steps (also with other thread
    counts): identical per-step losses, evals and a byte-identical checkpoint.
    The binary uses dropout, so the per-step seeds must come from the step."""
    data_path, _ = text
    common = ["--optimizer", opt, "--eval-interval", 3, "--checkpoint-interval", 4,
              "--accumulate", 2 if opt == "sgd" else 1, "--seed", 11]
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    expect_ok(run(build["train_drop"], *train_args(data_path, a / "ck"), "--steps", 9,
                  "--log", a / "log", "--threads", 1, *common))
    expect_ok(run(build["train_drop"], *train_args(data_path, b / "ck"), "--steps", 5,
                  "--log", b / "log", "--threads", 2, *common))
    _, meta5 = load_ckpt(b / "ck")
    assert meta5["step"] == "5"
    out = expect_ok(run(build["train_drop"], "--data", data_path, "--out", b / "ck", "--resume",
                        b / "ck", "--steps", 9, "--log", b / "log", "--threads", 2))
    assert "resumed from" in out and "at step 5" in out
    assert out.count("\nstep ") == 4
    la, lb = (a / "log").read_text().splitlines(), (b / "log").read_text().splitlines()
    strip = lambda lines: [re.sub(r',"tokens_per_s".*', "", l) for l in lines]
    # b has one extra eval (the end of its first run, step 5)
    assert strip(la) == [l for l in strip(lb) if not l.startswith('{"step":5,"val_loss"')]
    assert (a / "ck").read_bytes() == (b / "ck").read_bytes()
    # a resumed run with nothing left to do changes nothing
    before = (b / "ck").read_bytes()
    out = expect_ok(run(build["train_drop"], "--data", data_path, "--out", b / "ck", "--resume",
                        b / "ck"))
    assert "nothing to do" in out and (b / "ck").read_bytes() == before
    # different seeds give different dropout masks and batches
    expect_ok(run(build["train_drop"], *train_args(data_path, b / "ck2"), "--steps", 9,
                  "--log", b / "log2", *common[:-1], 12))
    assert (b / "ck2").read_bytes() != (a / "ck").read_bytes()


def test_checkpoint_format(build, text, tmp_path):
    torch_st = pytest.importorskip("safetensors.torch")
    data_path, data = text
    out = tmp_path / "ck.safetensors"
    expect_ok(run(build["train"], *train_args(data_path, out), "--steps", 3, "--lr", "2e-3",
                  "--val-fraction", "0.25"))
    tensors, meta = load_ckpt(out)
    names = set(PARAM_SHAPES)
    assert set(tensors) == names | {f"train.{w}.{n}" for w in "mv" for n in names}
    for k, v in tensors.items():
        assert v.dtype == np.float32 and v.shape == PARAM_SHAPES[k.split(".", 2)[-1]
                                                                if k.startswith("train.") else k]
    assert set(torch_st.load_file(str(out))) == set(tensors)
    assert meta["format"] == "pt" and meta["kiln_model"] == "FakeBigram"
    assert meta["kiln_checkpoint"] == "1" and meta["step"] == "3"
    assert re.fullmatch(r"[0-9a-f]{16}", meta["model_fingerprint"])
    assert re.fullmatch(r"[0-9a-f]{16}", meta["data_fingerprint"])
    assert re.fullmatch(r"[0-9a-f]{64}", meta["data_rng"])
    assert meta["train_seed"] == "1234" and meta["lr"] == "0.002"
    assert meta["val_fraction"] == "0.25" and meta["data_bytes"] == str(len(data))
    for key in ("min_lr", "warmup", "decay_steps", "schedule", "optimizer", "beta1", "beta2",
                "eps", "weight_decay", "decay_embeddings", "momentum", "clip", "batch", "seq",
                "accumulate", "eval_interval", "eval_iters", "checkpoint_interval", "steps"):
        assert key in meta, key
    raw = out.read_bytes()
    assert (8 + struct.unpack("<Q", raw[:8])[0]) % 8 == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.safetensors"]


def test_infer_reads_checkpoints(build, text, tmp_path):
    from safetensors.numpy import save_file

    data_path, _ = text
    ck = tmp_path / "ck.safetensors"
    expect_ok(run(build["train"], *train_args(data_path, ck), "--steps", 2))
    tensors, meta = load_ckpt(ck)
    save_file({k: v for k, v in tensors.items() if not k.startswith("train.")},
              str(tmp_path / "plain.safetensors"))
    np.save(tmp_path / "t.npy", np.arange(12, dtype=np.int32).reshape(2, 6))
    outs = []
    for infer in ("infer", "infer_clang", "asan"):
        for w in (ck, tmp_path / "plain.safetensors"):
            o = tmp_path / f"o_{infer}_{w.stem}.npy"
            expect_ok(run(build[infer], "forward", "--weights", w, "--tokens", tmp_path / "t.npy",
                          "--out", o))
            outs.append(np.load(o))
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    expect_ok(run(build["infer"], "score", "--weights", ck, data_path))
    # train.* tensors are only ignored in files marked as checkpoints
    unmarked = {k: v for k, v in meta.items() if k != "kiln_checkpoint"}
    save_file(tensors, str(tmp_path / "unmarked.safetensors"), metadata=unmarked)
    p = run(build["asan"], "forward", "--weights", tmp_path / "unmarked.safetensors", "--tokens",
            tmp_path / "t.npy", "--out", tmp_path / "x.npy")
    expect_error(p, "unexpected tensor 'train.")
    # a marked checkpoint still needs every model tensor, and nothing else outside train.*
    for drop, extra, msg in [("pos.weight", None, "missing tensor 'pos.weight'"),
                             (None, "trainx", "unexpected tensor 'trainx'")]:
        t = {k: v for k, v in tensors.items() if k != drop}
        if extra:
            t[extra] = np.zeros(2, np.float32)
        save_file(t, str(tmp_path / "bad.safetensors"), metadata=meta)
        p = run(build["asan"], "forward", "--weights", tmp_path / "bad.safetensors", "--tokens",
                tmp_path / "t.npy", "--out", tmp_path / "x.npy")
        expect_error(p, msg)
    # --init-from accepts a checkpoint (its parameters only)
    expect_ok(run(build["train"], *train_args(data_path, tmp_path / "c2"), "--steps", 1,
                  "--init-from", ck))


def test_sigkill_during_checkpoints(build, text, tmp_path):
    """kill -9 at random moments of a run that checkpoints every step: the file
    at CKPT is always a complete, valid checkpoint, and resuming from it gives
    exactly the uninterrupted result."""
    data_path, _ = text
    steps = 60
    args = ["--steps", steps, "--checkpoint-interval", 1, "--eval-interval", 0, "--seed", 4]
    ref = tmp_path / "ref"
    t0 = time.monotonic()
    expect_ok(run(build["train"], *train_args(data_path, ref), *args))
    duration = time.monotonic() - t0
    final = ref.read_bytes()
    rng = random.Random(1)
    mid = 0
    for trial in range(5):
        d = tmp_path / f"t{trial}"
        d.mkdir()
        ck = d / "ck"
        p = subprocess.Popen([str(build["train"]), *map(str, train_args(data_path, ck)),
                              *map(str, args)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.8) * duration)
        p.send_signal(signal.SIGKILL)
        p.wait()
        if not ck.exists():
            continue
        assert all(f.name == "ck" or f.name.startswith("ck.tmp.") for f in d.iterdir())
        tensors, meta = load_ckpt(ck)  # complete and parseable
        k = int(meta["step"])
        assert 1 <= k <= steps and len(tensors) == 12
        assert all(np.isfinite(v).all() for v in tensors.values())
        mid += k < steps
        out = expect_ok(run(build["train"], "--data", data_path, "--out", ck, "--resume", ck))
        assert f"at step {k}" in out
        assert ck.read_bytes() == final
    assert mid >= 2, "the kills should land in the middle of the run"


def test_resume_refusals(build, text, tmp_path):
    from safetensors.numpy import save_file

    data_path, data = text
    ck = tmp_path / "ck"
    expect_ok(run(build["train"], *train_args(data_path, ck), "--steps", 2))
    tensors, meta = load_ckpt(ck)
    tr = build["train_asan"]

    def resume(path, *extra, data=data_path):
        return run(tr, "--data", data, "--out", tmp_path / "new", "--resume", path, *extra)

    # other data, or the same data split differently
    other = tmp_path / "other.txt"
    other.write_bytes(data[:-1] + b"x")
    expect_error(resume(ck, data=other), f"checkpoint '{ck}' was written for different data")
    expect_error(resume(ck, "--val-fraction", "0.2"), "was written for different data")
    # another model: same names, other shapes
    ascii_ck = tmp_path / "ck128"
    expect_ok(run(build["train128"], *train_args(data_path, ascii_ck), "--steps", 1))
    expect_error(run(build["train"], "--data", data_path, "--out", tmp_path / "n", "--resume",
                     ascii_ck), f"checkpoint '{ascii_ck}' was written for a different model "
                                "(fingerprint ")
    # the optimizer cannot change
    expect_error(resume(ck, "--optimizer", "sgd"),
                 "was written with --optimizer adamw; a resumed run cannot switch to sgd")

    def variant(name, meta_change=None, drop_meta=None, drop=None, tensor_change=None):
        m = dict(meta)
        if meta_change:
            m.update(meta_change)
        if drop_meta:
            m.pop(drop_meta)
        t = {k: v for k, v in tensors.items() if not (drop and k.startswith(drop))}
        if tensor_change:
            t.update(tensor_change)
        path = tmp_path / name
        save_file(t, str(path), metadata=m)
        return path

    cases = [
        (variant("nomark", drop_meta="kiln_checkpoint"),
         "is not a training checkpoint (no 'kiln_checkpoint' metadata)"),
        (variant("v2", {"kiln_checkpoint": "2"}), "has kiln_checkpoint version '2'"),
        (variant("fp", {"model_fingerprint": "0123456789abcdef"}),
         "was written for a different model (fingerprint 0123456789abcdef"),
        (variant("fpbad", {"model_fingerprint": "xyz"}),
         "metadata 'model_fingerprint' is 'xyz', expected 16 lowercase hex digits"),
        (variant("dfp", {"data_fingerprint": "0000000000000000"}), "for different data"),
        (variant("step", {"step": "two"}), "metadata 'step': 'two' is not an integer"),
        (variant("stepneg", {"step": "-1"}), "metadata 'step': -1 is out of range"),
        (variant("nostep", drop_meta="step"), "has no 'step' metadata"),
        (variant("nolr", drop_meta="lr"), "has no 'lr' metadata"),
        (variant("lr", {"lr": "0x10"}), "metadata 'lr': '0x10' is not a number"),
        (variant("beta", {"beta1": "1"}), "metadata 'beta1': 1 is out of range [0, 1)"),
        (variant("seq", {"seq": "33"}), "metadata 'seq': 33 is out of range [1, 32]"),
        (variant("opt", {"optimizer": "adam"}), "metadata 'optimizer': 'adam' is not one of"),
        (variant("rng", {"data_rng": "00" * 32}), "metadata 'data_rng' is '000"),
        (variant("rngshort", {"data_rng": "abc"}), "expected 64 lowercase hex digits"),
        (variant("seed", {"train_seed": "-5"}), "metadata 'train_seed': '-5' is not"),
        (variant("nostate", drop="train."),
         "has no optimizer state for adamw (missing tensor 'train.m.embed.weight')"),
        (variant("nov", drop="train.v."), "missing tensor 'train.v."),
        (variant("sgdstate", {"optimizer": "sgd"}),
         "has no optimizer state for sgd (missing tensor 'train.momentum.embed.weight')"),
        (variant("extra", tensor_change={"train.x": np.zeros(1, np.float32)}),
         "unexpected tensor 'train.x'"),
        (variant("shape", tensor_change={"train.m.bias": np.zeros(3, np.float32)}),
         "tensor 'train.m.bias' has shape [3], expected [256]"),
        (variant("nan", tensor_change={"bias": np.full(VOCAB, np.nan, np.float32)}),
         "tensor 'bias' holds non-finite values"),
        (variant("inf", tensor_change={"train.v.bias": np.full(VOCAB, np.inf, np.float32)}),
         "tensor 'train.v.bias' holds non-finite values"),
        (variant("negv", tensor_change={"train.v.bias": np.full(VOCAB, -1, np.float32)}),
         "second moments (train.v.*) must not be negative"),
        (tmp_path / "missing", "no such file"),
    ]
    for path, msg in cases:
        expect_error(resume(path), msg)
    assert not (tmp_path / "new").exists()
    (tmp_path / "trunc").write_bytes(ck.read_bytes()[:-10])
    expect_error(resume(tmp_path / "trunc"), "data_offsets")


def test_non_finite_guard(build, text, tmp_path):
    """A diverging run stops with one line and leaves the last checkpoint as it was."""
    data_path, _ = text
    ck = tmp_path / "ck"
    expect_ok(run(build["train"], *train_args(data_path, ck), "--steps", 2, "--optimizer",
                  "sgd", "--log", tmp_path / "log"))
    before = ck.read_bytes()
    for interval in (100, 1):
        p = run(build["train_asan"], "--data", data_path, "--out", ck, "--resume", ck, "--lr",
                "1e30", "--clip", 0, "--steps", 20, "--checkpoint-interval", interval)
        expect_error(p, "non-finite loss at step ")
        err = p.stderr.decode()
        m = re.search(r"non-finite loss at step (\d+) \((nan|inf)\); the last checkpoint "
                      + re.escape(f"'{ck}' is untouched"), err)
        assert m, err
        if interval == 100:
            assert ck.read_bytes() == before
        else:  # checkpoints up to the step before the failure, all finite
            tensors, meta = load_ckpt(ck)
            assert int(meta["step"]) == int(m[1]) - 1 > 2
            assert all(np.isfinite(v).all() for v in tensors.values())
    assert sorted(f.name for f in tmp_path.iterdir()) == ["ck", "log"]
    # before any checkpoint exists
    p = run(build["train"], *train_args(data_path, tmp_path / "none"), "--lr", "1e30", "--clip",
            0, "--optimizer", "sgd", "--steps", 20)
    expect_error(p, "; no checkpoint was written to '")
    assert not (tmp_path / "none").exists()


def test_log_and_progress(build, text, tmp_path):
    data_path, _ = text
    log = tmp_path / "log.jsonl"
    out = expect_ok(run(build["train"], *train_args(data_path, tmp_path / "ck"), "--steps", 7,
                        "--eval-interval", 3, "--checkpoint-interval", 0, "--log", log))
    step_re = r"step (\d+)/7  loss \d+\.\d{4}  lr \d\.\d\de[-+]\d\d  \d+ tok/s  ETA \S+"
    eval_re = r"eval step (\d+): val loss \d+\.\d{4}  perplexity \d+\.\d\d  bits/char \d+\.\d{4}"
    lines = out.splitlines()
    assert [int(re.fullmatch(step_re, l)[1]) for l in lines if l.startswith("step ")] == \
        list(range(1, 8))
    assert [int(re.fullmatch(eval_re, l)[1]) for l in lines if l.startswith("eval ")] == [3, 6, 7]
    assert [l for l in lines if l.startswith("checkpoint ")] == [
        f"checkpoint step 7: wrote {tmp_path / 'ck'}"]
    steps, evals = read_log(log)
    assert [s["step"] for s in steps] == list(range(1, 8))
    for s in steps:
        assert set(s) == {"step", "loss", "lr", "tokens_per_s", "time_s"}
        assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in s.values())
    assert [e["step"] for e in evals] == [3, 6, 7]
    for e in evals:
        assert set(e) == {"step", "val_loss", "val_perplexity", "val_bits_per_char"}
    # same validation batches every time: an untrained model (lr 0) gives equal evals
    expect_ok(run(build["train"], *train_args(data_path, tmp_path / "ck0"), "--steps", 4,
                  "--eval-interval", 2, "--lr", 0, "--log", log))
    evals = read_log(log)[1]
    assert len(evals) == 2 and evals[0]["val_loss"] == evals[1]["val_loss"]


def test_bench(build):
    out = expect_ok(run(build["train"], "bench", "--batch", 2, "--seq", 8, "--iters", 3,
                        "--warmup", 1, "--threads", 2))
    assert re.fullmatch(r"train step B=2 T=8 threads=2: median \d+\.\d{3} ms  min \d+\.\d{3} ms"
                        r"  \(3 iters\)\n", out), out
    out = expect_ok(run(build["train_asan"], "bench", "--iters", 1, "--warmup", 0))
    assert out.startswith("train step B=4 T=16 ")


def test_help(build):
    out = expect_ok(run(build["train"], "--help"))
    for flag in ("--data", "--out", "--steps", "--val-fraction", "--init-from", "--resume",
                 "--seed", "--threads", "--log", "--lr", "--min-lr", "--warmup", "--decay-steps",
                 "--schedule", "--optimizer", "--beta1", "--beta2", "--eps", "--weight-decay",
                 "--decay-embeddings", "--momentum", "--clip", "--batch", "--seq",
                 "--accumulate", "--eval-interval", "--eval-iters", "--checkpoint-interval",
                 "bench", "FakeBigram", "last val-fraction"):
        assert flag in out, flag
    assert "--lr LR" in out and "(default 0.01)" in out and "(default adamw)" in out
    out = expect_ok(run(build["train"], "bench", "--help"))
    for flag in ("--batch", "--seq", "--iters", "--warmup", "--seed", "--threads"):
        assert flag in out, flag


# --------------------------------------------------------------------------
# Errors


def test_data_errors(build, tmp_path):
    tr = build["train_asan"]
    out = tmp_path / "ck"

    def train_on(content, *extra, binary=tr):
        (tmp_path / "d.txt").write_bytes(content)
        return run(binary, "--data", tmp_path / "d.txt", "--out", out, *extra)

    # 100 bytes, val 10%: the validation part has 10 < 17 bytes
    expect_error(train_on(b"a" * 100), "the validation part has 10 bytes (100 bytes, "
                                       "--val-fraction 0.1), but --seq 16 needs at least 17")
    expect_error(train_on(b"a" * 100, "--val-fraction", "0.9"),
                 "the training part has 10 bytes")
    expect_ok(train_on(b"ab" * 85, "--steps", 1))  # 170 bytes: 153 train, 17 val
    os.remove(out)
    expect_error(train_on(b"", "--seq", 1), "the training part has 0 bytes")
    expect_error(train_on(b"abc\xc8" + b"a" * 300, binary=build["train128"]),
                 "d.txt: byte 200 at offset 3 is outside the vocabulary [0, 128)")
    expect_error(run(tr, "--data", tmp_path / "nope", "--out", out), "no such file")
    expect_error(run(tr, "--data", tmp_path, "--out", out), "is a directory")
    with open(tmp_path / "big", "wb") as f:
        f.truncate((1 << 30) + 1)
    expect_error(run(tr, "--data", tmp_path / "big", "--out", out), "is too large (1073741825 "
                                                                     "bytes; the limit is")
    (tmp_path / "ok.txt").write_bytes(make_text(3000))
    p = run(tr, "--data", tmp_path / "ok.txt", "--out", tmp_path / "no" / "dir" / "ck")
    expect_error(p, "cannot create a temporary file")
    assert b"step 1/" not in p.stdout  # checked before training
    expect_error(run(tr, "--data", tmp_path / "ok.txt", "--out", tmp_path), "is a directory",
                 code=2)
    expect_error(run(tr, "--data", tmp_path / "ok.txt", "--out", out, "--log",
                     tmp_path / "no" / "log"), "cannot open the log")
    expect_error(run(tr, "--data", tmp_path / "ok.txt", "--out", tmp_path / "ok.txt"),
                 f"--out '{tmp_path / 'ok.txt'}' is the data file", code=2)
    expect_error(run(tr, "--data", tmp_path / "ok.txt", "--out", out, "--init-from",
                     tmp_path / "ok.txt"), "ok.txt: ")
    assert not out.exists()


TRAIN_USAGE = [
    ([], "needs --data and --out"),
    (["--data", "d"], "needs --out"),
    (["--out", "o"], "needs --data"),
    (["--bogus", "1"], "unknown flag '--bogus'"),
    (["bench", "--data", "d"], "unknown flag '--data' for 'bench'"),
    (["--data", "d", "--out", "o", "extra"], "unexpected argument 'extra'"),
    (["--data", "d", "--out", "o", "--lr"], "flag '--lr' needs a value"),
    (["--data", "d", "--out", "o", "--lr", "1", "--lr", "2"], "flag '--lr' is given more than once"),
    (["--data", "d", "--out", "o", "--lr", "fast"], "--lr: 'fast' is not a number"),
    (["--data", "d", "--out", "o", "--lr", "-1"], "--lr: -1 is out of range"),
    (["--data", "d", "--out", "o", "--resume", "nope", "--lr", "x"], "--lr: 'x' is not a number"),
    (["--data", "d", "--out", "o", "--lr", "nan"], "--lr: 'nan' is not a number"),
    (["--data", "d", "--out", "o", "--steps", "0"], "--steps: 0 is out of range"),
    (["--data", "d", "--out", "o", "--steps", "1.5"], "--steps: '1.5' is not an integer"),
    (["--data", "d", "--out", "o", "--seq", "33"], "--seq: 33 is out of range [1, 32]"),
    (["--data", "d", "--out", "o", "--batch", "0"], "--batch: 0 is out of range"),
    (["--data", "d", "--out", "o", "--accumulate", "0"], "--accumulate: 0 is out of range"),
    (["--data", "d", "--out", "o", "--val-fraction", "0"], "--val-fraction: 0 is out of range (0, 1)"),
    (["--data", "d", "--out", "o", "--val-fraction", "1"], "--val-fraction: 1 is out of range (0, 1)"),
    (["--data", "d", "--out", "o", "--beta2", "1"], "--beta2: 1 is out of range [0, 1)"),
    (["--data", "d", "--out", "o", "--optimizer", "adam"],
     "--optimizer: 'adam' is not one of adamw|sgd"),
    (["--data", "d", "--out", "o", "--schedule", "linear"],
     "--schedule: 'linear' is not one of constant|cosine"),
    (["--data", "d", "--out", "o", "--decay-embeddings", "2"], "--decay-embeddings: 2 is out of range"),
    (["--data", "d", "--out", "o", "--seed", "-1"], "--seed: '-1' is not a non-negative integer"),
    (["--data", "d", "--out", "o", "--threads", "0"], "--threads: 0 is out of range"),
    (["--data", "d", "--out", "o", "--resume", "a", "--init-from", "b"],
     "--resume and --init-from cannot be combined"),
    (["bench", "--seq", "0"], "--seq: 0 is out of range [1, 32]"),
    (["bench", "--iters", "x"], "--iters: 'x' is not an integer"),
    (["bench", "extra"], "unexpected argument 'extra' for 'bench'"),
]


@pytest.mark.parametrize("args,msg", TRAIN_USAGE, ids=[" ".join(a) or "none" for a, _ in TRAIN_USAGE])
def test_usage_errors(build, args, msg):
    expect_error(run(build["train_asan"], *args), msg, code=2)


def test_sanitized_happy_path(build, text, tmp_path):
    """Train, evaluate, checkpoint and resume under ASan + UBSan."""
    data_path, _ = text
    ck = tmp_path / "ck"
    common = ["--eval-interval", 2, "--checkpoint-interval", 2, "--accumulate", 2, "--threads", 2]
    expect_ok(run(build["train_asan"], *train_args(data_path, ck), "--steps", 3, *common))
    expect_ok(run(build["train_asan"], *train_args(data_path, ck), "--resume", ck, "--steps", 5,
                  "--log", tmp_path / "log", *common))
    assert load_ckpt(ck)[1]["step"] == "5"
    expect_ok(run(build["train_asan"], *train_args(data_path, tmp_path / "s"), "--steps", 2,
                  "--optimizer", "sgd", "--schedule", "constant", "--clip", 0))
    expect_ok(run(build["train_clang"], *train_args(data_path, tmp_path / "c"), "--steps", 2))


@pytest.mark.parametrize("schedule, want", [
    # linear warmup over 3 steps, then: lr * sqrt(warmup / (s + 1)) (Vaswani et al. 2017) or lr
    ("inverse_sqrt", lambda s: 0.1 * (s + 1) / 3 if s < 3 else 0.1 * math.sqrt(3 / (s + 1))),
    ("constant", lambda s: 0.1 * (s + 1) / 3 if s < 3 else 0.1),
])
def test_schedules_warm_up_then_follow_their_rule(build, text, tmp_path, schedule, want):
    data_path, _ = text
    log = tmp_path / "log.jsonl"
    expect_ok(run(build["train"], *train_args(data_path, tmp_path / "ck.safetensors"), "--steps", 8, "--batch", 2,
                  "--seq", 8, "--lr", 0.1, "--schedule", schedule, "--warmup", 3, "--log", log))
    got, _ = read_log(log)
    assert [round(e["lr"], 9) for e in got] == [round(want(s), 9) for s in range(8)]
