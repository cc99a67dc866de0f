"""The transformer variants papers compare, each against an independent PyTorch model (float64): forward
outputs through `infer run`, gradients under the training objective against autograd, and every VJP of a
float64 build against finite differences.

tests/models/rms-swiglu.kiln: RMSNorm (torch.nn.RMSNorm) and a SwiGLU feed-forward (F.silu(gate) * up).
tests/models/rotary.kiln: the same with rotary positions (Su et al. 2021, Llama's rotate_half) and no table;
its KV-cache decoding is checked against the full forward too (for every variant).
tests/models/rezero.kiln: ReZero gates (Bachlechner et al. 2020) with LayerNorm, RMSNorm and GeGLU.
tests/models/universal.kiln: a Universal Transformer (Dehghani et al. 2019): one block, shared weights, a
timestep signal.
tests/models/gqa.kiln: grouped-query attention (6 query heads on 2 key/value heads) with rotary positions,
RMSNorm and SwiGLU, the Llama layer.
tests/models/shaw.kiln: relative position representations (Shaw et al. 2018) with ReZero and GeGLU.
tests/models/t5-bias.kiln: T5's bucketed relative attention bias (Raffel et al. 2020), the buckets from
Hugging Face's own function.
tests/models/alibi.kiln: ALiBi (Press et al. 2022) with 3 heads (slopes of a head count not a power of 2) and
multi-query attention."""
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import reference
from kilntest import assert_decoding_matches_forward, assert_gradients_match, assert_same_maps, attention_maps, ROOT, ctypes_model, run

VARIANTS = {
    "rms-swiglu": dict(file="tests/models/rms-swiglu.kiln", reference=reference.RMSSwiGLU, vocab=41, context=12),
    "rotary": dict(file="tests/models/rotary.kiln", reference=reference.RotaryLM, vocab=41, context=12),
    "rezero": dict(file="tests/models/rezero.kiln", reference=reference.ReZeroGeGLU, vocab=41, context=12),
    "universal": dict(file="tests/models/universal.kiln", reference=reference.Universal, vocab=41, context=12),
    # the timestep signal scaled (timestep: 0.25)
    "universal-scaled": dict(file="tests/models/universal.kiln", set=["signal=0.25"], reference=lambda: reference.Universal(signal=0.25),
                             vocab=41, context=12),
    "alibi": dict(file="tests/models/alibi.kiln", reference=lambda: reference.RotaryLM(position="alibi", kv_heads=1), vocab=41,
                  context=12),
    # ALiBi with as many key/value heads as queries: self-attention's one-pass backward
    "alibi-mha": dict(file="tests/models/alibi.kiln", set=["kv_heads=3"], reference=lambda: reference.RotaryLM(position="alibi"),
                      vocab=41, context=12),
    "shaw": dict(file="tests/models/shaw.kiln", reference=reference.ShawReZero, vocab=41, context=12),
    # Shaw's representations with multi-query attention: the key/value gradients gather three query heads
    "shaw-mqa": dict(file="tests/models/shaw.kiln", set=["kv_heads=1"], reference=lambda: reference.ShawReZero(kv_heads=1),
                     vocab=41, context=12),
    "t5-bias": dict(file="tests/models/t5-bias.kiln", reference=reference.T5BiasLM, vocab=41, context=12),
    # local (sliding-window) attention, window 5 within a context of 12 (its backward is the row-by-row kernel that
    # grouped-query attention's uses, which "gqa" and "alibi" test with kv_heads < heads)
    "local": dict(file="tests/models/local.kiln", reference=lambda: reference.RotaryLM(window=5), vocab=41, context=12),
    "gqa": dict(file="tests/models/gqa.kiln", reference=lambda: reference.RotaryLM(dim=36, heads=6, kv_heads=2),
                vocab=41, context=12),
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request, builds, tmp_path_factory):
    """The spec, its build directory and weights far from the init (so every path of the model matters)."""
    spec = VARIANTS[request.param]
    out = builds.build(spec["file"], *spec.get("set", []))
    w = tmp_path_factory.mktemp(request.param) / "w.safetensors"
    r = run([out / "infer", "init", "--seed", 3, "--out", w])
    assert r.returncode == 0, r.stderr
    g = torch.Generator().manual_seed(3)
    save_file({k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in load_file(str(w)).items()}, str(w))
    return spec, out, w


def tokens_of(spec, B, T, seed):
    return np.random.default_rng(seed).integers(0, spec["vocab"], size=(B, T), dtype=np.int32)


def test_forward_matches_pytorch(variant, tmp_path):
    spec, out, w = variant
    model = reference.load_module(spec["reference"](), w)
    for B, T in [(3, spec["context"]), (1, 5)]:
        tokens = tokens_of(spec, B, T, seed=T)
        np.save(tmp_path / "tokens.npy", tokens)
        r = run([out / "infer", "run", "--weights", w, "--input", f"tokens={tmp_path / 'tokens.npy'}",
                 "--output", f"logits={tmp_path / 'logits.npy'}"])
        assert r.returncode == 0, r.stderr
        got = np.load(tmp_path / "logits.npy")
        with torch.no_grad():
            want = model(torch.from_numpy(tokens).long()).numpy()
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), (np.abs(got - want).max(), np.abs(want).max())


def test_attention_maps_match_pytorch(variant, tmp_path):
    """The attention_maps function: every attention's weights [B, heads, T, T], in the order the model computes
    them, against the reference's softmax."""
    spec, out, w = variant
    tokens = tokens_of(spec, 2, spec["context"], seed=7)
    got = attention_maps(out, w, tmp_path, tokens=tokens)
    model = reference.load_module(spec["reference"](), w)
    assert_same_maps(got, reference.attention_maps(model, lambda: model(torch.from_numpy(tokens).long())))


def test_beyond_the_context_positions_extrapolate_or_refuse(variant, tmp_path):
    """Computed positions (sinusoidal, rotary, ALiBi) run at three times the context, as PyTorch computes them
    there; a learned position table refuses in one line that names it (issue #14)."""
    spec, out, w = variant
    T = 3 * spec["context"]
    tokens = tokens_of(spec, 2, T, seed=7)
    np.save(tmp_path / "tokens.npy", tokens)
    r = run([out / "infer", "run", "--weights", w, "--input", f"tokens={tmp_path / 'tokens.npy'}",
             "--output", f"logits={tmp_path / 'logits.npy'}"])
    learned = "positions(learned" in (ROOT / spec["file"]).read_text()
    if learned:
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
        (tmp_path / "text.bin").write_bytes(bytes(tokens[0].astype(np.uint8)))
        r2 = run([out / "infer", "score", "--weights", w, "--seq", T - 1, tmp_path / "text.bin"])
        assert r2.returncode == 1 and r2.stderr.count("\n") == 1 and "which slice_rows of" in r2.stderr, r2.stderr
        assert re.search(rf"dim T = {T} exceeds its bound {spec['context']}, which slice_rows of '\w+\.weight' "
                         rf"f32\[{spec['context']}, \d+\] needs", r.stderr), r.stderr
        return
    assert r.returncode == 0, r.stderr
    with torch.no_grad():
        want = reference.load_module(spec["reference"](), w)(torch.from_numpy(tokens).long()).numpy()
    got = np.load(tmp_path / "logits.npy")
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), (np.abs(got - want).max(), np.abs(want).max())
    # infer score --seq T: one window of T predictions over those bytes, the loss of PyTorch's logits
    text = np.append(tokens[0], tokens[1][0]).astype(np.uint8)
    (tmp_path / "text.bin").write_bytes(text.tobytes())
    r = run([out / "infer", "score", "--weights", w, "--seq", T, tmp_path / "text.bin"])
    assert r.returncode == 0, r.stderr
    logp = torch.log_softmax(torch.from_numpy(want[0]).double(), -1)
    nll = -logp[torch.arange(T), torch.from_numpy(text[1:]).long()].mean().item()
    assert abs(float(re.search(r"loss ([\d.]+) nats", r.stdout).group(1)) - nll) < 1e-4, (r.stdout, nll)


def test_gradients_match_pytorch_autograd(variant, tmp_path):
    spec, out, w = variant
    B, T = 2, spec["context"]
    tokens, targets = tokens_of(spec, B, T, seed=1), tokens_of(spec, B, T, seed=2)
    np.save(tmp_path / "tok.npy", tokens)
    np.save(tmp_path / "tgt.npy", targets)
    r = run([out / "gradcheck", "dump", "--weights", w, "--tokens", tmp_path / "tok.npy", "--targets",
             tmp_path / "tgt.npy", "--out", tmp_path / "g.safetensors"])
    assert r.returncode == 0, r.stderr
    ours, our_loss = load_file(str(tmp_path / "g.safetensors")), float(r.stdout.split()[1])
    model = reference.load_module(spec["reference"](), w)
    logits = model(torch.from_numpy(tokens).long())
    loss = F.cross_entropy(logits.reshape(-1, spec["vocab"]), torch.from_numpy(targets).long().reshape(-1))
    loss.backward()
    assert_gradients_match(ours, our_loss, model, loss)


def test_every_vjp_against_finite_differences(variant, kiln, tmp_path):
    spec, _, _ = variant
    out = tmp_path / "f64"
    r = run([kiln, "build", ROOT / spec["file"], "--dtype", "f64", "-o", out] + [a for o in spec.get("set", []) for a in ("--set", o)])
    assert r.returncode == 0, r.stderr
    for seed, batch, seq in [(1, 2, 5), (2, 3, 9)]:
        r = run([out / "gradcheck", "fd", "--seed", seed, "--batch", batch, "--seq", seq, "--samples", 10])
        assert r.returncode == 0, r.stdout + r.stderr
        assert ": ok" in r.stdout


def test_kv_cache_decoding_gives_the_full_forward(variant):
    """prefill then decode_step, two rows a position apart, against the forward of each prefix."""
    spec, out, w = variant
    m = ctypes_model(next(out.glob("lib*.so")), str(w))
    T = spec["context"]
    tokens = tokens_of(spec, 2, T, seed=5)
    assert_decoding_matches_forward(m, tokens)
    m.close()


def test_t5_buckets_are_hugging_face_buckets(tmp_path):
    """The kernel's T5 bucket of every distance in [-1500, 1500], causal and bidirectional, for the usual
    configurations, equals Hugging Face's _relative_position_bucket (float rounding included)."""
    from transformers.models.t5.modeling_t5 import T5Attention
    import subprocess
    configs = [(32, 128), (8, 10), (8, 9), (64, 256), (16, 50), (32, 100)]
    (tmp_path / "b.c").write_text(
        '#include "relative_attention.c"\n#include <stdio.h>\nint main(void) {\n'
        + "".join(f"    for (int r = -1500; r <= 1500; r++) printf(\"%d \", t5_bucket(r, {n}, {m}, {bi}));\n    printf(\"\\n\");\n"
                  for n, m in configs for bi in (0, 1))
        + "    return 0;\n}\n")
    exe = tmp_path / "b"
    subprocess.run(["gcc", "-O2", "-I", ROOT / "runtime/kernels", tmp_path / "b.c", "-o", exe, "-lm"], check=True)
    lines = subprocess.run([exe], capture_output=True, text=True, check=True).stdout.splitlines()
    k = 0
    for n, m in configs:
        for bi in (0, 1):
            want = T5Attention._relative_position_bucket(torch.arange(-1500, 1501), bidirectional=bool(bi), num_buckets=n,
                                                         max_distance=m)
            assert [int(x) for x in lines[k].split()] == want.tolist(), (n, m, bi)
            k += 1


POSITION_SCHEMES = {
    "sinusoidal": ("embed(tokens, vocab, dim) + positions(sinusoidal, T, dim)", ""),
    "relative": ("embed(tokens, vocab, dim)", ", position: relative, clip: 16"),
    "t5": ("embed(tokens, vocab, dim)", ", position: t5"),
    "rotary": ("embed(tokens, vocab, dim)", ", position: rotary"),
    "alibi": ("embed(tokens, vocab, dim)", ", position: alibi"),
}


@pytest.mark.parametrize("scheme", sorted(POSITION_SCHEMES))
def test_trained_at_64_scores_at_256_and_512(kiln, tmp_path, scheme):
    """Issue #14: a small character model trained at T=64 with each computed or relative position scheme scores
    held-out text at T=256 and T=512, and what it learnt carries over: the loss at each length is below that of
    the untrained model (uniform over the bytes, ln 256)."""
    embed, position = POSITION_SCHEMES[scheme]
    model = tmp_path / "m.kiln"
    model.write_text(f"""model Positions
config {{ vocab = 256, context = 64, dim = 32, heads = 2, layers = 2 }}
input tokens: i32[B, T] where T <= context
block Layer(x: f32[B, T, dim]) -> f32[B, T, dim] {{
  x = x + attention(layernorm(x), heads: heads, mask: causal{position})
  return x + ffn(layernorm(x), hidden: 4 * dim)
}}
output logits = linear(layernorm(repeat(layers, Layer, {embed})), vocab, bias: false)
train {{
  objective = next_token(logits)
  optimizer = adamw(lr: 3e-3)
  batch = 8
  seq = 64
}}
""")
    out = tmp_path / "b"
    r = run([kiln, "build", model, "-o", out])
    assert r.returncode == 0, r.stderr
    text = (ROOT / "examples/data/tinyshakespeare.txt").read_bytes()
    (tmp_path / "train.txt").write_bytes(text[:200_000])
    (tmp_path / "held-out.txt").write_bytes(text[-3_000:])
    r = run([out / "train", "--data", tmp_path / "train.txt", "--out", tmp_path / "w.safetensors", "--steps", 120,
             "--eval-interval", 120, "--seed", 1])
    assert r.returncode == 0, r.stderr
    for seq in (64, 256, 512):
        r = run([out / "infer", "score", "--weights", tmp_path / "w.safetensors", "--seq", seq, tmp_path / "held-out.txt"])
        assert r.returncode == 0, r.stderr
        loss = float(re.search(r"loss ([\d.]+) nats", r.stdout).group(1))
        assert loss < 0.85 * np.log(256), (seq, r.stdout)


@pytest.mark.parametrize("window", [40, 100])
def test_local_attention_across_key_blocks(builds, tmp_path, window):
    """Local attention at T = 300: query tiles whose window starts inside one block of 64 keys and ends in another,
    against PyTorch's masked attention (rotary positions extrapolate, so the model runs past its context)."""
    out = builds.build("tests/models/local.kiln", f"window={window}")
    w = tmp_path / "w.safetensors"
    assert run([out / "infer", "init", "--seed", 4, "--out", w]).returncode == 0
    g = torch.Generator().manual_seed(4)
    save_file({k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in load_file(str(w)).items()}, str(w))
    tokens = np.random.default_rng(window).integers(0, 41, size=(2, 300), dtype=np.int32)
    np.save(tmp_path / "tokens.npy", tokens)
    r = run([out / "infer", "run", "--weights", w, "--input", f"tokens={tmp_path / 'tokens.npy'}",
             "--output", f"logits={tmp_path / 'logits.npy'}"])
    assert r.returncode == 0, r.stderr
    with torch.no_grad():
        want = reference.load_module(reference.RotaryLM(window=window), w)(torch.from_numpy(tokens).long()).numpy()
    got = np.load(tmp_path / "logits.npy")
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    # and the window matters: full attention gives other logits
    with torch.no_grad():
        full = reference.load_module(reference.RotaryLM(), w)(torch.from_numpy(tokens).long()).numpy()
    assert np.abs(full - want).max() > 1e-2 * np.abs(want).max()
