"""The masked-language-model objective (issue #19) on examples/bert-char.kiln, shrunk with --set: its loss and
gradients on a fixed batch and mask against an independent PyTorch model (reference.GPT as a bidirectional
post-norm encoder, float64, F.cross_entropy with ignore_index) and against float64 finite differences; training
from a text file, whose windows the runtime corrupts by seed and step, resumes exactly. The corruption's
fractions are checked in tests/runtime/test_runtime.py (rt_tool mlm)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import reference
from kilntest import assert_gradients_match, ROOT, run

MODEL = "examples/bert-char.kiln"
SMALL = ("context=16", "dim=24", "heads=2", "layers=2", "hidden=40")
CFG = dict(vocab=257, classes=256, context=16, dim=24, heads=2, layers=2, hidden=40, norm="post", activation="gelu",
           positions="learned", final_norm=False, head="head", eps=1e-5, causal=False)


@pytest.fixture(scope="module")
def small(builds, tmp_path_factory):
    out = builds.build(MODEL, *SMALL)
    w = tmp_path_factory.mktemp("mlm") / "w.safetensors"
    r = run([out / "infer", "init", "--seed", 5, "--out", w])
    assert r.returncode == 0, r.stderr
    g = torch.Generator().manual_seed(5)
    save_file({k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in load_file(str(w)).items()}, str(w))
    return out, w


def corrupted_batch(B=3, T=16, seed=0, rate=0.3):
    """Bytes, 30% of positions chosen (so that every row has some), corrupted as BERT's recipe says, written in
    numpy: the fixed batch and mask both sides see."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(32, 127, size=(B, T)).astype(np.int32)
    chosen = rng.random((B, T)) < rate
    u = rng.random((B, T))
    inputs = np.where(chosen & (u < 0.8), 256, np.where(chosen & (u < 0.9), rng.integers(0, 256, (B, T)), tokens))
    targets = np.where(chosen, tokens, -1)
    assert chosen.sum(1).min() > 0
    return inputs.astype(np.int32), targets.astype(np.int32)


def test_loss_and_gradients_match_pytorch_on_a_fixed_batch_and_mask(small, tmp_path):
    out, w = small
    inputs, targets = corrupted_batch()
    np.save(tmp_path / "tokens.npy", inputs)
    np.save(tmp_path / "targets.npy", targets)
    r = run([out / "gradcheck", "dump", "--weights", w, "--out", tmp_path / "g.safetensors", "--input",
             f"tokens={tmp_path / 'tokens.npy'}", "--input", f"targets={tmp_path / 'targets.npy'}"])
    assert r.returncode == 0, r.stderr
    ours, our_loss = load_file(str(tmp_path / "g.safetensors")), float(r.stdout.split()[1])
    model = reference.load(CFG, w)
    logits = model(torch.from_numpy(inputs).long())
    loss = F.cross_entropy(logits.reshape(-1, 256), torch.from_numpy(targets).long().reshape(-1), ignore_index=-1)
    loss.backward()
    assert_gradients_match(ours, our_loss, model, loss)


def test_every_vjp_against_finite_differences(kiln, tmp_path):
    out = tmp_path / "f64"
    r = run([kiln, "build", ROOT / MODEL, "--dtype", "f64", "-o", out] + [a for s in SMALL for a in ("--set", s)])
    assert r.returncode == 0, r.stderr
    r = run([out / "gradcheck", "fd", "--seed", 3, "--batch", 2, "--seq", 7, "--samples", 10])
    assert r.returncode == 0, r.stdout + r.stderr
    assert ": ok" in r.stdout


def losses(stdout):
    return [float(line.split("loss")[1].split()[0]) for line in stdout.splitlines() if line.startswith("step ")]


def test_trains_on_text_and_resumes_exactly(small, tmp_path):
    out, _ = small
    text = (ROOT / "examples" / "data" / "tinyshakespeare.txt").read_bytes()[:40000]
    (tmp_path / "t.txt").write_bytes(text)
    args = ["--data", tmp_path / "t.txt", "--batch", 8, "--eval-interval", 20, "--eval-iters", 4, "--warmup", 10, "--lr", 3e-3]
    straight = run([out / "train", *args, "--out", tmp_path / "a.safetensors", "--steps", 60])
    assert straight.returncode == 0, straight.stderr
    first = losses(straight.stdout)
    assert len(first) == 60 and np.mean(first[-10:]) < np.mean(first[:10]) - 0.5, first
    assert "eval step 60: val loss" in straight.stdout
    part = run([out / "train", *args, "--out", tmp_path / "b.safetensors", "--steps", 35])
    assert part.returncode == 0, part.stderr
    rest = run([out / "train", *args, "--out", tmp_path / "b.safetensors", "--resume", tmp_path / "b.safetensors",
                "--steps", 60])
    assert rest.returncode == 0, rest.stderr
    assert losses(part.stdout) + losses(rest.stdout) == first
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_score_reports_the_masked_loss_of_windows_as_training_corrupts_them(small, tmp_path):
    """`infer score` of a masked_lm model: windows of --seq bytes, corrupted by kiln_mlm_mask from --seed (its
    rng mirrored by train_reference.Xoshiro), scored over the chosen positions; against the PyTorch model."""
    from train_reference import Xoshiro
    out, w = small
    text = (ROOT / "examples" / "data" / "tinyshakespeare.txt").read_bytes()[:300]
    (tmp_path / "t.txt").write_bytes(text)
    r = run([out / "infer", "score", "--weights", w, "--seq", 16, "--seed", 9, tmp_path / "t.txt"])
    assert r.returncode == 0, r.stderr
    rng = Xoshiro(9)
    inputs, targets = np.frombuffer(text, np.uint8).astype(np.int64), np.full(len(text), -1)
    for i in range(len(text)):  # windows of 16 in order; one draw per position, more per chosen one
        if (rng.next() >> 11) * 2.0 ** -53 >= 0.15:
            continue
        targets[i] = inputs[i]
        u = (rng.next() >> 11) * 2.0 ** -53
        inputs[i] = 256 if u < 0.8 else rng.below(256) if u < 0.9 else inputs[i]
    model = reference.load(CFG, w)
    with torch.no_grad():  # full windows of 16, then the last 12 bytes
        logits = torch.cat([model(torch.from_numpy(inputs[:288].reshape(18, 16))).reshape(-1, 256),
                            model(torch.from_numpy(inputs[288:][None])).reshape(-1, 256)])
    want = F.cross_entropy(logits, torch.from_numpy(targets), ignore_index=-1).item()
    chosen, n = int(r.stdout.split()[1]), int(r.stdout.split()[3])
    assert (chosen, n) == ((targets >= 0).sum(), 300)
    got = float(r.stdout.split("loss ")[1].split()[0])
    assert abs(got - want) <= 1e-4, (got, want)
    # another seed chooses other positions; a next-token model has no --seed
    other = run([out / "infer", "score", "--weights", w, "--seq", 16, "--seed", 10, tmp_path / "t.txt"])
    assert other.returncode == 0 and other.stdout != r.stdout


def test_the_shipped_small_model_predicts_masked_bytes(builds, tmp_path):
    """examples/weights/char-mlm-small.safetensors scores what docs/training.md says on the held-out tenth of
    tiny Shakespeare (the part training validates on), far below the unigram plateau of about 3.1 nats."""
    out = builds.build("examples/char-mlm-small.kiln")
    text = (ROOT / "examples" / "data" / "tinyshakespeare.txt").read_bytes()
    (tmp_path / "val.txt").write_bytes(text[-111539:])
    r = run([out / "infer", "score", "--weights", ROOT / "examples" / "weights" / "char-mlm-small.safetensors",
             tmp_path / "val.txt"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("masked 16637 of 111539 tokens")
    assert abs(float(r.stdout.split("loss ")[1].split()[0]) - 1.6879) <= 0.003, r.stdout
