"""examples/transformer-base.kiln, the encoder–decoder of Vaswani et al. 2017, at odd sizes against an
independent PyTorch model (reference.Seq2Seq: torch.nn.TransformerEncoderLayer / DecoderLayer, float64): logits
through `infer run` on padded batches whose source and target lengths differ, padding invariance, gradients
under label-smoothed cross-entropy (autograd, and every VJP of a float64 build against finite differences),
and training from .npy arrays."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import reference
from kilntest import assert_same_maps, attention_maps, ROOT, ctypes_model, run

MODEL = "examples/transformer-base.kiln"
# odd sizes: dim 36 (6 heads of 6) is not a multiple of 8; no dropout, so PyTorch sees the same function
SIZES = dict(vocab=53, context=19, dim=36, heads=6, layers=2, hidden=70)
OVERRIDES = [f"{k}={v}" for k, v in SIZES.items()] + ["drop=0"]


@pytest.fixture(scope="module")
def seq2seq(builds, tmp_path_factory):
    """The build directory and weights far from the init (so every path of the model matters)."""
    out = builds.build(MODEL, *OVERRIDES)
    w = tmp_path_factory.mktemp("seq2seq") / "w.safetensors"
    r = run([out / "infer", "init", "--seed", 11, "--out", w])
    assert r.returncode == 0, r.stderr
    g = torch.Generator().manual_seed(11)
    save_file({k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in load_file(str(w)).items()}, str(w))
    return out, w


def reference_model(w):
    return reference.Seq2Seq(SIZES["vocab"], SIZES["dim"], SIZES["heads"], SIZES["layers"], SIZES["hidden"]).load(w)


def batch(source_lengths, target_lengths, S, T, seed=0):
    """Padded sources with their masks, decoder inputs and labels (the padding id 0 where a target ends)."""
    rng = np.random.default_rng(seed)
    vocab = SIZES["vocab"]
    source = rng.integers(1, vocab, size=(len(source_lengths), S), dtype=np.int32)
    mask = (np.arange(S)[None, :] < np.array(source_lengths)[:, None]).astype(np.int32)
    target = rng.integers(1, vocab, size=(len(target_lengths), T), dtype=np.int32)
    tmask = np.arange(T)[None, :] < np.array(target_lengths)[:, None]
    labels = np.where(tmask, rng.integers(1, vocab, size=target.shape), 0).astype(np.int32)
    return np.where(mask == 1, source, 0).astype(np.int32), mask, np.where(tmask, target, 0).astype(np.int32), labels


def infer_run(out, w, tmp, **inputs):
    args = [out / "infer", "run", "--weights", w, "--output", f"logits={tmp / 'logits.npy'}"]
    for name, a in inputs.items():
        np.save(tmp / f"{name}.npy", a)
        args += ["--input", f"{name}={tmp / (name + '.npy')}"]
    r = run(args)
    assert r.returncode == 0, r.stderr
    return np.load(tmp / "logits.npy")


def assert_close(got, want, rel=1e-5):
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= rel * np.abs(want).max(), (np.abs(got - want).max(), np.abs(want).max())


@pytest.mark.parametrize("S, T", [(13, 8), (5, 19), (19, 19)])
def test_logits_match_pytorch_on_padded_batches(seq2seq, tmp_path, S, T):
    out, w = seq2seq
    source, mask, target, _ = batch([S, S - 2, 3, 1], [T, 4, T - 1, 1], S, T, seed=S * T)
    got = infer_run(out, w, tmp_path, source=source, source_mask=mask, target=target)
    with torch.no_grad():
        want = reference_model(w)(*(torch.from_numpy(a).long() for a in (source, mask, target))).numpy()
    assert_close(got, want)


def test_attention_maps_match_pytorch(seq2seq, tmp_path):
    """attention_maps: the encoder's self-attentions, then each decoder layer's self- and cross-attention, against
    torch's MultiheadAttention weights on a padded batch."""
    out, w = seq2seq
    source, mask, target, _ = batch([13, 6, 1], [8, 3, 5], 13, 8, seed=3)
    got = attention_maps(out, w, tmp_path, source=source, source_mask=mask, target=target)
    model = reference_model(w)
    want = reference.attention_maps(model, lambda: model(*(torch.from_numpy(a).long() for a in (source, mask, target))))
    assert [m.shape for m in got] == [(3, SIZES["heads"], 13, 13)] * 2 + [(3, SIZES["heads"], 8, 8), (3, SIZES["heads"], 8, 13)] * 2
    assert_same_maps(got, want)


def test_padding_changes_nothing_and_the_decoder_is_causal(seq2seq, tmp_path):
    out, w = seq2seq
    lengths = [13, 9, 4, 1]
    source, mask, target, _ = batch(lengths, [8] * 4, 13, 8, seed=5)
    full = infer_run(out, w, tmp_path, source=source, source_mask=mask, target=target)
    for b, n in enumerate(lengths):
        alone = infer_run(out, w, tmp_path, source=source[b:b + 1, :n].copy(), source_mask=np.ones((1, n), np.int32),
                          target=target[b:b + 1, :5].copy())
        assert np.abs(full[b, :5] - alone[0]).max() <= 1e-5 * np.abs(full).max()


def test_gradients_match_pytorch_autograd(seq2seq, tmp_path):
    out, w = seq2seq
    source, mask, target, labels = batch([11, 7, 2], [9, 5, 1], 11, 9, seed=3)
    inputs = dict(source=source, source_mask=mask, target=target, labels=labels)
    args = [out / "gradcheck", "dump", "--weights", w, "--out", tmp_path / "g.safetensors"]
    for name, a in inputs.items():
        np.save(tmp_path / f"{name}.npy", a)
        args += ["--input", f"{name}={tmp_path / (name + '.npy')}"]
    r = run(args)
    assert r.returncode == 0, r.stderr
    ours, our_loss = load_file(str(tmp_path / "g.safetensors")), float(r.stdout.split()[1])

    model = reference_model(w)
    logits = model(*(torch.from_numpy(a).long() for a in (source, mask, target)))
    loss = F.cross_entropy(logits.reshape(-1, SIZES["vocab"]), torch.from_numpy(labels).long().reshape(-1),
                           ignore_index=0, label_smoothing=0.1)
    loss.backward()
    assert abs(our_loss - loss.item()) <= 1e-5 * max(1.0, abs(loss.item()))
    theirs = model.kiln_gradients()
    assert set(ours) == set(theirs)
    floor = 1e-3 * max(g.abs().max().item() for g in theirs.values())
    for name, g in theirs.items():
        want, got = g.numpy(), ours[name].numpy().astype(np.float64)
        assert np.abs(got - want).max() <= 1e-4 * max(np.abs(want).max(), floor), name


def test_every_vjp_against_finite_differences(kiln, tmp_path):
    out = tmp_path / "f64"
    args = [kiln, "build", ROOT / MODEL, "--dtype", "f64", "-o", out]
    for o in OVERRIDES:
        args += ["--set", o]
    r = run(args)
    assert r.returncode == 0, r.stderr
    for seed, batch_size, S, T in [(1, 2, 7, 4), (2, 3, 3, 9)]:
        r = run([out / "gradcheck", "fd", "--seed", seed, "--batch", batch_size, "--seq", T, "--dim", f"S={S}",
                 "--samples", 8])
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"input source [{batch_size}, {S}]" in r.stdout and f"input target [{batch_size}, {T}]" in r.stdout
        assert ": ok" in r.stdout


def reversal_task(tmp, n=400, S=10, seed=0):
    """Copy a sequence backwards: source ids in [3, 53) of length 2..S; the decoder reads <bos>=1 then the
    reversed source, and predicts the reversed source then <eos>=2 (0 pads)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, S + 1, n)
    source = np.zeros((n, S), np.int32)
    target = np.zeros((n, S + 1), np.int32)
    labels = np.zeros((n, S + 1), np.int32)
    for i, m in enumerate(lengths):
        s = rng.integers(3, SIZES["vocab"], m)
        source[i, :m] = s
        target[i, 0], target[i, 1:m + 1] = 1, s[::-1]
        labels[i, :m], labels[i, m] = s[::-1], 2
    data = tmp / "data"
    data.mkdir()
    for name, a in dict(source=source, source_mask=(source > 0).astype(np.int32), target=target, labels=labels).items():
        np.save(data / f"{name}.npy", a)
    return data


def losses(stdout):
    return [float(line.split("loss")[1].split()[0]) for line in stdout.splitlines() if line.startswith("step ")]


def test_trains_on_reversal_from_npy_arrays_and_resumes_exactly(seq2seq, tmp_path):
    out, _ = seq2seq
    data = reversal_task(tmp_path)
    common = ["--data", data, "--batch", 16, "--lr", 3e-3, "--schedule", "inverse_sqrt", "--warmup", 30,
              "--eval-interval", 60, "--eval-iters", 4]
    r = run([out / "train", *common, "--out", tmp_path / "a.safetensors", "--steps", 120])
    assert r.returncode == 0, r.stderr
    straight = losses(r.stdout)
    # (PyTorch's nn.Transformer of this size learns this task about as slowly: 4.0 to 3.5 in 150 steps)
    assert len(straight) == 120 and np.mean(straight[-10:]) < np.mean(straight[:10]) - 0.25, (straight[:10], straight[-10:])
    assert "eval step 120: val loss" in r.stdout and "400 examples (train 360, val 40)" in r.stdout
    part = run([out / "train", *common, "--out", tmp_path / "b.safetensors", "--steps", 70])
    assert part.returncode == 0, part.stderr
    rest = run([out / "train", "--data", data, "--out", tmp_path / "b.safetensors", "--resume", tmp_path / "b.safetensors",
                "--steps", 120])
    assert rest.returncode == 0, rest.stderr
    assert losses(part.stdout) + losses(rest.stdout) == straight
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_encode_once_then_decode_gives_the_forward_logits(seq2seq):
    """encode stores each source's memory; prefill and decode_step run the decoder against it, a batch of rows
    at different positions, and a row copied to another (a beam) continues from the copy."""
    out, w = seq2seq
    m = ctypes_model(out / "libtransformer_base.so", str(w))
    assert set(m.functions) >= {"forward", "encode", "prefill", "decode_step"}
    assert [p.name for p in m.functions["encode"].inputs] == ["source", "source_mask"]
    assert {p.name for p in m.functions["decode_step"].inputs} == {"target", "positions"}
    source, mask, target, _ = batch([13, 6, 2], [12, 12, 12], 13, 12, seed=9)

    def full(b, upto, src=None):
        """The forward's logits at position upto - 1 of row b's first upto target tokens."""
        src = b if src is None else src
        n = int(mask[src].sum())
        return m.run("forward", source=source[src:src + 1, :n], source_mask=mask[src:src + 1, :n],
                     target=target[b:b + 1, :upto])["logits"][0, -1]

    def close(got, want):
        return np.abs(got - want).max() <= 1e-5 * np.abs(want).max()

    m.reset_state(4)
    m.run("encode", source=source, source_mask=mask)
    # a prompt of 3 tokens per row, at once
    logits = m.run("prefill", target=target[:, :3])["logits"]
    for b in range(3):
        assert close(logits[b], full(b, 3)), b
    positions = np.array([3, 3, 3])
    for step in range(8):
        if step == 4:  # a beam: row 1 continues from row 0 (memory and cache), at row 0's position
            m.copy_state_row(0, 1)
            positions[1] = positions[0]
        rows = [0, 0 if step >= 4 else 1, 2]
        tokens = np.array([[target[rows[b], positions[b]]] for b in range(3)], np.int32)
        logits = m.run("decode_step", target=tokens, positions=positions[:, None].astype(np.int32))["logits"]
        for b in range(3):
            assert close(logits[b, 0], full(rows[b], positions[b] + 1)), (step, b)
        positions += 1
    # encode a short source into row 0 after a longer one: nothing of the old memory shows through
    m.run("encode", source=source[1:2, :6], source_mask=mask[1:2, :6])
    m.run("encode", source=source[2:3, :2], source_mask=mask[2:3, :2])
    logits = m.run("prefill", target=target[2:3, :4])["logits"]
    assert close(logits[0], full(2, 4))
    m.close()


def python_beam_search(model, source, K, alpha, max_len, bos, eos):
    """The search of docs/translation.md over the reference model's float64 log-probabilities: candidates best
    first (ties: earlier hypothesis, smaller id); eos among the K best finishes one (score / ((5 + n) / 6)^alpha),
    further down it is dropped; the others continue until K do; stop when K have finished or after max_len
    tokens."""
    src = torch.tensor([source])
    mask = torch.ones_like(src)
    live, done, t = [([], 0.0)], [], 0
    while t < max_len and live and len(done) < K:
        cands = []
        for i, (toks, score) in enumerate(live):
            with torch.no_grad():
                logits = model(src, mask, torch.tensor([[bos] + toks]))[0, -1]
            for v, lp in enumerate(torch.log_softmax(logits, -1).tolist()):
                cands.append((score + lp, i, v))
        cands.sort(key=lambda c: (-c[0], c[1], c[2]))
        nxt = []
        for rank, (score, i, v) in enumerate(cands):
            if len(nxt) == K or len(done) == K:
                break
            if v == eos:
                if rank < K:
                    done.append((live[i][0] + [eos], score, True))
            else:
                nxt.append((live[i][0] + [v], score))
        live, t = nxt, t + 1
    if t == max_len:
        done += [(toks, score, False) for toks, score in live[:K - len(done)]]
    best = max(enumerate(done), key=lambda e: (e[1][1] / ((5 + len(e[1][0])) / 6) ** alpha, -e[0]))[1]
    toks, score, finished = best
    return (toks[:-1] if finished else toks), score, score / ((5 + len(toks)) / 6) ** alpha


@pytest.fixture(scope="module")
def reversal_model(seq2seq, tmp_path_factory):
    """Weights trained a little on the reversal task, so that translations differ in content and length."""
    out, _ = seq2seq
    tmp = tmp_path_factory.mktemp("reversal")
    r = run([out / "train", "--data", reversal_task(tmp), "--out", tmp / "r.safetensors", "--steps", 300, "--batch", 16,
             "--lr", 3e-3, "--schedule", "inverse_sqrt", "--warmup", 30, "--eval-interval", 300, "--eval-iters", 1])
    assert r.returncode == 0, r.stderr
    return tmp / "r.safetensors"


def test_beam_search_matches_a_python_beam_search_over_pytorch(seq2seq, reversal_model, tmp_path):
    out, _ = seq2seq
    model = reference_model(reversal_model)
    rng = np.random.default_rng(21)
    sources = [rng.integers(3, SIZES["vocab"], int(n)).tolist() for n in rng.integers(2, 11, 20)]
    bos, eos, max_len, alpha = 1, 2, 12, 0.6
    (tmp_path / "src.txt").write_text("".join(" ".join(map(str, s)) + "\n" for s in sources))
    got = {}
    for K in (1, 4, 5):
        r = run([out / "infer", "translate", "--weights", reversal_model, "--ids-file", tmp_path / "src.txt", "--bos", bos,
                 "--eos", eos, "--beam", K, "--length-penalty", alpha, "--max-len", max_len, "--scores"])
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert len(lines) == len(sources)
        got[K] = []
        for s, line in zip(sources, lines):
            scores, ids = line.split("\t")
            score, normalized = map(float, scores.split())
            want, want_score, want_normalized = python_beam_search(model, s, K, alpha, max_len, bos, eos)
            got[K].append([int(x) for x in ids.split()])
            assert got[K][-1] == want, (K, s)
            assert abs(score - want_score) <= 1e-4 * max(1, abs(want_score))
            assert abs(normalized - want_normalized) <= 1e-4 * max(1, abs(want_normalized))
    # the cases that matter occur: translations ended by eos at several lengths, beams that beat greedy
    assert len({len(t) for t in got[1] + got[4] if len(t) < max_len}) >= 3
    assert sum(a != b for a, b in zip(got[1], got[4])) >= 3


@pytest.mark.parametrize("args, expected", [
    (["--beam", 0], "--beam"),
    (["--ids", "3 99"], "--ids: id 99 is outside the vocabulary [0, 53)"),
    (["--ids", "3 x"], "--ids: expected token ids separated by spaces or commas"),
    (["--ids", " ".join(["3"] * 20)], "--ids: more than the 19 source ids the model takes"),
    (["--ids", " , "], "--ids: an empty source"),
    (["--max-len", 20], "--max-len"),
])
def test_translate_rejects_bad_input_in_one_line(seq2seq, args, expected):
    out, w = seq2seq
    base = [out / "infer", "translate", "--weights", w, "--bos", 1, "--eos", 2]
    r = run(base + (args if "--ids" in args else ["--ids", "3 4 5"] + args))
    assert r.returncode in (1, 2) and r.stderr.count("\n") == 1 and expected in r.stderr, r.stderr


def test_translate_names_the_bad_line_of_a_file(seq2seq, tmp_path):
    out, w = seq2seq
    (tmp_path / "in.txt").write_text("3 4 5\n7 99 8\n")
    r = run([out / "infer", "translate", "--weights", w, "--bos", 1, "--eos", 2, "--beam", 2, "--ids-file", tmp_path / "in.txt"])
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "in.txt:2: id 99 is outside the vocabulary" in r.stderr
    assert len(r.stdout.splitlines()) == 1  # the first line's translation came out before the error
    r = run([out / "infer", "translate", "--weights", w, "--bos", 1, "--eos", 2, "--ids", "3 4"])
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1
