"""examples/tiny-encoder.kiln, a BERT-style encoder with a padding mask, against an independent PyTorch model
(reference.TinyEncoder, float64; and its variant with relative positions, reference.RelativeEncoder): its outputs through `infer run`, padding invariance, its gradients under its
training objective (autograd, and every VJP against finite differences), training from .npy arrays, and the
validation of every input of a call."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import reference
from kilntest import assert_gradients_match, assert_same_maps, attention_maps, ROOT, run

ENCODER = "examples/tiny-encoder.kiln"
VOCAB, CONTEXT, DIM, CLASSES = 53, 19, 36, 5


# The numerics tests run on all three: tests/models/relative-encoder.kiln has relative positions (T5's
# bidirectional buckets, Shaw et al.'s clipped distances) under the same padding mask, tests/models/local-encoder.kiln
# local attention (windows of 3 and 6) under it, tests/models/linformer-encoder.kiln Linformer's projected keys and
# values (5 and 7 rows) with padding counted as zeros, tests/models/bigbird-encoder.kiln BigBird's blocks (global,
# window, random) under it.
MODELS = {"tiny": (ENCODER, reference.TinyEncoder), "relative": ("tests/models/relative-encoder.kiln", reference.RelativeEncoder),
          "local": ("tests/models/local-encoder.kiln", reference.LocalEncoder),
          "linformer": ("tests/models/linformer-encoder.kiln", reference.LinformerEncoder),
          "bigbird": ("tests/models/bigbird-encoder.kiln", reference.BigBirdEncoder)}


def build_far_from_init(builds, tmp_path_factory, file):
    """The build directory and weights far from the init (so every path of the model matters)."""
    out = builds.build(file)
    w = tmp_path_factory.mktemp("encoder") / "w.safetensors"
    r = run([out / "infer", "init", "--seed", 7, "--out", w])
    assert r.returncode == 0, r.stderr
    g = torch.Generator().manual_seed(7)
    save_file({k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in load_file(str(w)).items()}, str(w))
    return out, w


@pytest.fixture(scope="module")
def encoder(builds, tmp_path_factory):
    return build_far_from_init(builds, tmp_path_factory, ENCODER)


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request, builds, tmp_path_factory):
    """(build directory, weights, reference class) of each encoder."""
    file, cls = MODELS[request.param]
    return build_far_from_init(builds, tmp_path_factory, file) + (cls,)


def padded_batch(lengths, T=CONTEXT, seed=0):
    """Token ids of the given lengths, padded with id 0 to T, and their masks."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCAB, size=(len(lengths), T), dtype=np.int32)
    mask = (np.arange(T)[None, :] < np.array(lengths)[:, None]).astype(np.int32)
    return np.where(mask == 1, tokens, 0).astype(np.int32), mask


def infer_run(out, w, tmp, tokens, mask):
    np.save(tmp / "tokens.npy", tokens)
    np.save(tmp / "mask.npy", mask)
    r = run([out / "infer", "run", "--weights", w, "--input", f"tokens={tmp / 'tokens.npy'}", "--input",
             f"mask={tmp / 'mask.npy'}", "--output", f"embedding={tmp / 'e.npy'}", "--output", f"logits={tmp / 'l.npy'}"])
    assert r.returncode == 0, r.stderr
    return np.load(tmp / "e.npy"), np.load(tmp / "l.npy")


def reference_outputs(w, tokens, mask, cls=reference.TinyEncoder):
    model = reference.load_encoder(w, model=cls)
    with torch.no_grad():
        e, logits = model(torch.from_numpy(tokens).long(), torch.from_numpy(mask).long())
    return e.numpy(), logits.numpy()


def assert_close(got, want, rel=1e-5):
    assert np.abs(got - want).max() <= rel * np.abs(want).max(), (np.abs(got - want).max(), np.abs(want).max())


def test_outputs_match_pytorch_on_rows_with_different_padding(model, tmp_path):
    out, w, cls = model
    tokens, mask = padded_batch([19, 11, 5, 1])
    e, logits = infer_run(out, w, tmp_path, tokens, mask)
    assert e.shape == (4, DIM) and logits.shape == (4, CLASSES)
    want_e, want_logits = reference_outputs(w, tokens, mask, cls)
    assert_close(e, want_e)
    assert_close(logits, want_logits)


def test_attention_maps_match_pytorch_with_padding(model, tmp_path):
    """Each layer's weights on rows with different padding: padding keys get exactly 0, rows sum to 1, and every
    attention matches the reference's softmax."""
    out, w, cls = model
    lengths = [19, 11, 5, 1]
    tokens, mask = padded_batch(lengths, seed=9)
    got = attention_maps(out, w, tmp_path, tokens=tokens, mask=mask)
    torch_model = reference.load_encoder(w, model=cls)
    assert_same_maps(got, reference.attention_maps(torch_model, lambda: torch_model(torch.from_numpy(tokens).long(), torch.from_numpy(mask).long())))
    for p in got:
        if p.shape[-1] != CONTEXT:  # Linformer's keys are projections, not positions: every one is seen
            assert (np.abs(p.sum(-1) - 1) <= 1e-5).all()
            continue
        for b, n in enumerate(lengths):
            assert (p[b, :, :, n:] == 0).all()
            rows = p[b].sum(-1)  # 1, or 0 for a query that sees no key (local attention far from the tokens)
            assert ((np.abs(rows - 1) <= 1e-5) | (rows == 0)).all()


def test_bigbird_maps_have_the_papers_blocks(builds, tmp_path_factory, tmp_path):
    """The weights Kiln computes are non-zero exactly on BigBird's blocks: a global query block sees every key;
    another sees the global blocks, its three-block window and `random` blocks more, no two runs of blocks alike
    (the random ones differ between query blocks), and none else."""
    out, w = build_far_from_init(builds, tmp_path_factory, MODELS["bigbird"][0])
    tokens, mask = padded_batch([19])
    for layer, (block, g, r) in enumerate([(3, 1, 1), (2, 2, 2)]):
        p = attention_maps(out, w, tmp_path, tokens=tokens, mask=mask)[layer][0]
        nb = -(-CONTEXT // block)
        patterns = set()
        for i in range(nb):
            rows = p[:, i * block:(i + 1) * block]
            seen = [j for j in range(nb) if (rows[..., j * block:(j + 1) * block] != 0).any()]
            if i < g:
                assert seen == list(range(nb))
                continue
            fixed = set(range(g)) | {j for j in (i - 1, i, i + 1) if 0 <= j < nb}
            assert fixed <= set(seen) and len(seen) == min(nb, len(fixed) + r), (i, seen)
            patterns.add(tuple(sorted(set(seen) - fixed)))
        assert len(patterns) > 1  # the random blocks are drawn for each query block


def test_a_padded_row_equals_the_row_unpadded(model, tmp_path):
    out, w, cls = model
    if cls is reference.BigBirdEncoder:
        pytest.skip("BigBird's blocks and random draws are those of the padded length (as in Hugging Face's)")
    lengths = [19, 11, 5, 1]
    tokens, mask = padded_batch(lengths, seed=4)
    e, logits = infer_run(out, w, tmp_path, tokens, mask)
    for b, n in enumerate(lengths):
        e1, l1 = infer_run(out, w, tmp_path, tokens[b:b + 1, :n].copy(), np.ones((1, n), np.int32))
        assert np.abs(e[b] - e1[0]).max() <= 1e-6
        assert np.abs(logits[b] - l1[0]).max() <= 1e-6


def test_gradients_match_pytorch_autograd(model, tmp_path):
    out, w, cls = model
    tokens, mask = padded_batch([19, 14, 7, 3, 1], seed=2)
    label = np.random.default_rng(2).integers(0, CLASSES, size=5).astype(np.int32)
    for name, a in [("tokens", tokens), ("mask", mask), ("label", label)]:
        np.save(tmp_path / f"{name}.npy", a)
    r = run([out / "gradcheck", "dump", "--weights", w, "--out", tmp_path / "g.safetensors"]
            + [a for n in ("tokens", "mask", "label") for a in ("--input", f"{n}={tmp_path / (n + '.npy')}")])
    assert r.returncode == 0, r.stderr
    ours, our_loss = load_file(str(tmp_path / "g.safetensors")), float(r.stdout.split()[1])

    torch_model = reference.load_encoder(w, model=cls)
    _, logits = torch_model(torch.from_numpy(tokens).long(), torch.from_numpy(mask).long())
    loss = F.cross_entropy(logits, torch.from_numpy(label).long())
    loss.backward()
    assert_gradients_match(ours, our_loss, torch_model, loss)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_vjp_against_finite_differences(kiln, tmp_path, name):
    out = tmp_path / "f64"
    r = run([kiln, "build", ROOT / MODELS[name][0], "--dtype", "f64", "-o", out])
    assert r.returncode == 0, r.stderr
    for seed, batch, seq in [(1, 2, 5), (2, 3, 9)]:
        r = run([out / "gradcheck", "fd", "--seed", seed, "--batch", batch, "--seq", seq, "--samples", 10])
        assert r.returncode == 0, r.stdout + r.stderr
        assert ": ok" in r.stdout


def synthetic_task(tmp, n=300, seed=0):
    """A classification of padded sequences: the label is the share of ids below 26, in 5 buckets."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, CONTEXT + 1, n)
    tokens, mask = padded_batch(list(lengths), seed=seed)
    share = ((tokens < 26) & (mask == 1)).sum(1) / lengths
    label = np.minimum((share * CLASSES).astype(np.int32), CLASSES - 1)
    data = tmp / "data"
    data.mkdir()
    np.save(data / "tokens.npy", tokens)
    np.save(data / "mask.npy", mask)
    np.save(data / "label.npy", label.astype(np.int64))  # int64 files are accepted for int32 inputs
    return data


def losses(stdout):
    return [float(line.split("loss")[1].split()[0]) for line in stdout.splitlines() if line.startswith("step ")]


def test_trains_from_npy_arrays_and_resumes_exactly(encoder, tmp_path):
    out, _ = encoder
    data = synthetic_task(tmp_path)
    straight = run([out / "train", "--data", data, "--out", tmp_path / "a.safetensors", "--steps", 40,
                    "--eval-interval", 20, "--batch", 8])
    assert straight.returncode == 0, straight.stderr
    first = losses(straight.stdout)
    assert len(first) == 40 and np.mean(first[-10:]) < np.mean(first[:10]) - 0.2
    assert "eval step 40: val loss" in straight.stdout and "300 examples (train 270, val 30)" in straight.stdout
    part = run([out / "train", "--data", data, "--out", tmp_path / "b.safetensors", "--steps", 25,
                "--eval-interval", 20, "--batch", 8])
    assert part.returncode == 0, part.stderr
    rest = run([out / "train", "--data", data, "--out", tmp_path / "b.safetensors", "--resume", tmp_path / "b.safetensors",
                "--steps", 40])
    assert rest.returncode == 0, rest.stderr
    assert losses(part.stdout) + losses(rest.stdout) == first
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_data_is_validated(encoder, tmp_path):
    out, _ = encoder
    data = synthetic_task(tmp_path)
    mask = np.load(data / "mask.npy")
    mask[3, 2] = 2
    np.save(data / "mask.npy", mask)
    r = run([out / "train", "--data", data, "--out", tmp_path / "c.safetensors", "--steps", 2])
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "not a valid mask value" in r.stderr, r.stderr
    mask[3, 2] = 1
    np.save(data / "mask.npy", mask)
    (data / "label.npy").unlink()
    r = run([out / "train", "--data", data, "--out", tmp_path / "c.safetensors", "--steps", 2])
    assert r.returncode == 1 and "label.npy" in r.stderr, r.stderr
    r = run([out / "train", "--data", ROOT / "examples/data/tinyshakespeare.txt", "--out", tmp_path / "c.safetensors"])
    assert r.returncode == 1 and "trains on .npy arrays" in r.stderr, r.stderr


@pytest.mark.parametrize("inputs, expected", [
    ({"tokens": np.zeros((2, 5), np.float32), "mask": np.ones((2, 5), np.int32)}, "input 'tokens' is i32, but the file holds floating-point numbers"),
    ({"tokens": np.zeros((2, 5, 1), np.int32), "mask": np.ones((2, 5), np.int32)}, "input 'tokens' must have rank 2"),
    ({"tokens": np.zeros((2, 20), np.int32), "mask": np.ones((2, 20), np.int32)}, "dim T = 20 exceeds its bound 19"),
    ({"tokens": np.full((2, 5), 53, np.int32), "mask": np.ones((2, 5), np.int32)}, "input 'tokens' holds 53 at [0, 0], outside [0, 53) (the vocabulary)"),
    ({"tokens": np.zeros((2, 5), np.int32), "mask": np.full((2, 5), 3, np.int32)}, "input 'mask' is a mask, but holds 3 at [0, 0]"),
    ({"tokens": np.zeros((2, 5), np.int32), "mask": np.ones((2, 6), np.int32)}, "input 'mask' has shape [2, 6], expected [2, 5]"),
    ({"tokens": np.zeros((2, 5), np.int32)}, "needs --input mask=FILE.npy"),
    ({"tokens": np.zeros((2, 5), np.int32), "mask": np.ones((2, 5), np.int32), "colour": np.ones(2, np.int32)}, "has no input 'colour'"),
])
def test_infer_run_validates_every_input(encoder, tmp_path, inputs, expected):
    out, w = encoder
    args = [out / "infer", "run", "--weights", w]
    for name, a in inputs.items():
        np.save(tmp_path / f"{name}.npy", a)
        args += ["--input", f"{name}={tmp_path / (name + '.npy')}"]
    r = run(args)
    assert r.returncode in (1, 2) and r.stderr.count("\n") == 1 and expected in r.stderr, r.stderr


def test_local_encoder_across_key_blocks(builds, tmp_path_factory, tmp_path):
    """The bidirectional windows (3 and 6) at T = 200, past the context (no position table) and across blocks
    of 64 keys, with padding: the outputs of reference.LocalEncoder."""
    out, w = build_far_from_init(builds, tmp_path_factory, MODELS["local"][0])
    tokens, mask = padded_batch([200, 131, 64], T=200, seed=3)
    e, logits = infer_run(out, w, tmp_path, tokens, mask)
    want_e, want_logits = reference_outputs(w, tokens, mask, cls=reference.LocalEncoder)
    assert_close(e, want_e)
    assert_close(logits, want_logits)
