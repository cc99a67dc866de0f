"""Logits of the compiled inference binary against an independent PyTorch
model (float64) with the same safetensors weights."""
import re

import numpy as np
import pytest
import torch

from kilntest import ROOT, assert_same_logits, forward_logits, perturbed_weights, run
import reference

CHAR = dict(file="examples/char-gpt.kiln", overrides=(), cfg=dict(
    vocab=256, context=256, dim=384, heads=6, layers=6, hidden=1536, norm="pre",
    activation="gelu", positions="learned", final_norm=True, head="tied", eps=1e-5))

ODD = dict(file="examples/odd-postnorm.kiln", overrides=(), cfg=dict(
    vocab=97, context=24, dim=60, heads=3, layers=2, hidden=100, norm="post",
    activation="relu", positions="sinusoidal", final_norm=False, head="head", eps=1e-5,
    embed_scale=2.0, norm_names=("norm1", "norm2")))

# GPT-2's layout (tanh GELU) at a size a test can afford.
GPT2_SMALLER = dict(file="examples/gpt2-small.kiln",
                    overrides=("layers=2", "vocab=1000", "context=64", "dim=96", "heads=4"),
                    cfg=dict(vocab=1000, context=64, dim=96, heads=4, layers=2, hidden=384, norm="pre",
                             activation="gelu_tanh", positions="learned", final_norm=True, head="tied", eps=1e-5))

MODELS = {"char": CHAR, "odd": ODD, "gpt2-smaller": GPT2_SMALLER}


def compare(builds, tmp_path, spec, B, T, seed, env=None):
    out = builds.build(spec["file"], *spec["overrides"])
    w = tmp_path / "w.safetensors"
    perturbed_weights(out / "infer", w, seed)

    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, spec["cfg"]["vocab"], size=(B, T), dtype=np.int32)
    np.save(tmp_path / "tokens.npy", tokens)
    r = run([out / "infer", "forward", "--weights", w, "--tokens", tmp_path / "tokens.npy",
             "--out", tmp_path / "logits.npy"], env=env)
    assert r.returncode == 0, r.stderr
    got = np.load(tmp_path / "logits.npy")
    assert got.shape == (B, T, spec["cfg"]["vocab"]) and got.dtype == np.float32

    model = reference.load(spec["cfg"], w)
    with torch.no_grad():
        want = model(torch.from_numpy(tokens).long()).numpy()
    diff = np.abs(got.astype(np.float64) - want).max()
    scale = np.abs(want).max()
    assert diff <= 1e-4, f"max abs diff {diff}"
    assert diff <= 1e-5 * scale, f"max abs diff {diff} vs logits scale {scale}"
    return diff, scale


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("T", ["one", "context"])
def test_logits_match_pytorch(builds, tmp_path, name, T):
    spec = MODELS[name]
    t = 1 if T == "one" else spec["cfg"]["context"]
    B = 2 if t > 1 else 3
    compare(builds, tmp_path, spec, B, t, seed=7)


def test_mid_length_batch(builds, tmp_path):
    compare(builds, tmp_path, ODD, 4, 13, seed=3)


def cpu_flags():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@pytest.mark.parametrize("isa", ["avx512", "avx2", "portable"])
@pytest.mark.parametrize("name", ["odd", "gpt2-smaller"])
def test_every_gemm_microkernel_matches_pytorch(builds, tmp_path, name, isa):
    """KILN_ISA forces each matrix-product microkernel in turn (the binary picks one from cpuid by default);
    the odd model's heads (vocab 97) and GPT-2's tied head (vocab 1000) leave a partial 64-column panel;
    batches of 1 and 7 rows take the microkernels' one-row path."""
    import os
    import platform
    flags = cpu_flags()
    if isa != "portable" and (platform.machine() not in ("x86_64", "AMD64") or
                              {"avx512": "avx512f", "avx2": "avx2"}[isa] not in flags):
        pytest.skip(f"this CPU has no {isa}")
    env = dict(os.environ, KILN_ISA=isa)
    out = builds.build(MODELS[name]["file"], *MODELS[name]["overrides"])
    r = run([out / "infer", "bench", "--batch", "1", "--seq", "4", "--iters", "1", "--warmup", "0"], env=env)
    assert r.returncode == 0, r.stderr
    assert f"{isa} kernels" in r.stdout, r.stdout
    compare(builds, tmp_path, MODELS[name], 3, MODELS[name]["cfg"]["context"], seed=11, env=env)
    # one row (a tile's one-row path, as in decoding) and 7 rows (a full tile, then a one-row tail)
    compare(builds, tmp_path, MODELS[name], 1, 1, seed=12, env=env)
    compare(builds, tmp_path, MODELS[name], 1, 7, seed=13, env=env)


@pytest.mark.parametrize("name", ["char", "odd", "gpt2-smaller"])
def test_fused_and_unfused_builds_agree(builds, kiln, tmp_path, name):
    """The fusion passes change the generated code, not the numbers: logits of a default build and a
    --no-fuse build of the same model and weights agree, and both match PyTorch (compare)."""
    spec = MODELS[name]
    ir = run([kiln, "ir", "--stage", "optimized", ROOT / spec["file"]] + [a for o in spec["overrides"] for a in ("--set", o)])
    assert ir.returncode == 0, ir.stderr
    assert "activation:" in ir.stdout and "residual: true" in ir.stdout
    unfused = tmp_path / "unfused"
    args = [kiln, "build", ROOT / spec["file"], "-o", unfused, "--no-fuse"]
    r = run(args + [a for o in spec["overrides"] for a in ("--set", o)])
    assert r.returncode == 0, r.stderr
    fused = builds.build(spec["file"], *spec["overrides"])
    w = tmp_path / "w.safetensors"
    perturbed_weights(fused / "infer", w, 9)
    tokens = np.random.default_rng(9).integers(0, spec["cfg"]["vocab"], size=(2, spec["cfg"]["context"]), dtype=np.int32)
    assert_same_logits(forward_logits(fused / "infer", w, tokens, tmp_path),
                       forward_logits(unfused / "infer", w, tokens, tmp_path))
    # the unfused code calls separate activation and residual-add kernels; the fused one folds them into the GEMMs,
    # and other adds into elementwise trees (the odd model's 2 * embedding + positions)
    fwd = lambda d: (d / "model.c").read_text().split("static void fn_forward(const kiln_call *call) {")[1].split("\n}\n")[0]
    adds = lambda d: len(re.findall(r"\badd_forward\(", fwd(d)))
    fused_adds = len(re.findall(r"\bfused_\w*add\w*_forward\(", fwd(fused)))
    assert fused_adds == (1 if name == "odd" else 0)
    assert adds(fused) + fused_adds + 2 * spec["cfg"]["layers"] == adds(unfused)
    act = f", KILN_ACT_{spec['cfg']['activation']});"
    assert fwd(unfused).count("activation_forward(") == fwd(unfused).count(act) == spec["cfg"]["layers"]
    assert "activation_forward(" not in fwd(fused)


def elementwise_reference(w, tokens):
    """tests/models/elementwise.kiln in PyTorch, float64."""
    from safetensors.torch import load_file
    p = {k: v.double() for k, v in load_file(str(w)).items()}
    T, C = tokens.shape[1], p["embed.weight"].shape[1]
    e = p["embed.weight"][torch.from_numpy(tokens).long()]
    pos = p["positions.weight"][:T]
    t = torch.arange(T, dtype=torch.float64)[:, None]
    freq = torch.exp(-np.log(10000.0) * torch.arange(0, C, 2, dtype=torch.float64) / C)
    s = torch.zeros(T, C, dtype=torch.float64)
    s[:, 0::2], s[:, 1::2] = torch.sin(t * freq), torch.cos(t * freq)
    lin = lambda x, n: x @ p[n + ".weight"].T + p[n + ".bias"]
    F = torch.nn.functional
    h = (F.gelu(lin(e, "a")) * F.relu(lin(e, "b")) + (e + pos) / (torch.softmax(s, -1) + torch.softmax(pos, -1))
         - 0.5 * F.gelu(e, approximate="tanh"))
    return lin(h, "head").numpy()


def test_fused_elementwise_tree_matches_pytorch(builds, kiln, tmp_path):
    """fuse-elementwise computes the model's expression (operands repeating along the batch, one read three
    times) in one kernel, after fuse-epilogue has moved the activations and the product gelu(a) * relu(b) into
    the linears' epilogues; its logits match PyTorch's, and equal a --no-fuse build's, which runs each op alone."""
    model = "tests/models/elementwise.kiln"
    ir = run([kiln, "ir", ROOT / model]).stdout
    assert ir.count(" = fused(") == 1 and not re.search(r" = (mul|div|sub|scale|gelu_tanh)\(", ir), ir
    assert "{activation: relu, residual: true, combine: mul}" in ir
    fused = builds.build(model)
    assert re.search(r"\n    fused_sub_add_div_add_[0-9a-f]{8}_forward\(", (fused / "model.c").read_text())
    unfused = tmp_path / "unfused"
    r = run([kiln, "build", ROOT / model, "-o", unfused, "--no-fuse"])
    assert r.returncode == 0, r.stderr
    assert "fused_" not in (unfused / "model.c").read_text()
    w = tmp_path / "w.safetensors"
    perturbed_weights(fused / "infer", w, 5)
    for shape in [(2, 8), (3, 5), (1, 1)]:
        tokens = np.random.default_rng(shape[1]).integers(0, 13, size=shape, dtype=np.int32)
        got = forward_logits(fused / "infer", w, tokens, tmp_path)
        want = elementwise_reference(w, tokens)
        diff, scale = np.abs(got.astype(np.float64) - want).max(), np.abs(want).max()
        assert diff <= 1e-5 * scale, f"{shape}: max abs diff {diff} vs logits scale {scale}"
        # the fused kernel uses the separate kernels' formulas, one op per statement: the same floats
        assert np.array_equal(got, forward_logits(unfused / "infer", w, tokens, tmp_path))


@pytest.mark.parametrize("isa", ["native", "portable"])
def test_attention_shapes_match_pytorch(builds, tmp_path, isa):
    """Attention runs as GEMM tiles of 6 queries x 64 keys: bidirectional and causal masks, head sizes 24, 72
    and 128, lengths that end inside a tile or a key block and lengths over several key blocks, against
    PyTorch's attention (float64) with the same weights."""
    import os
    from safetensors.torch import load_file
    env = dict(os.environ, KILN_ISA="portable") if isa == "portable" else None
    out = builds.build("tests/models/attention-shapes.kiln")
    w = tmp_path / "w.safetensors"
    perturbed_weights(out / "infer", w, 5)
    state = {k: v.double() for k, v in load_file(str(w)).items()}

    def attention(prefix, dim, heads, causal):
        m = reference.SelfAttention(dim, heads, causal=causal, bias=True).double()
        m.load_state_dict({k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")})
        return m

    def linear(x, name):
        return x @ state[name + ".weight"].T + state[name + ".bias"]

    a, c, d = attention("attention", 72, 3, False), attention("single", 72, 1, False), attention("wide", 128, 1, True)
    rng = np.random.default_rng(5)
    for B, T in [(1, 1), (2, 7), (1, 64), (2, 65), (1, 160)]:
        tokens = rng.integers(0, 50, size=(B, T), dtype=np.int32)
        np.save(tmp_path / "tokens.npy", tokens)
        r = run([out / "infer", "forward", "--weights", w, "--tokens", tmp_path / "tokens.npy",
                 "--out", tmp_path / "logits.npy"], env=env)
        assert r.returncode == 0, r.stderr
        got = np.load(tmp_path / "logits.npy").astype(np.float64)
        with torch.no_grad():
            h = state["embed.weight"][torch.from_numpy(tokens).long()]
            want = linear(a(h) + c(h) + linear(d(linear(h, "widen")), "narrow"), "head").numpy()
        diff, scale = np.abs(got - want).max(), np.abs(want).max()
        assert diff <= 1e-5 * scale, f"B={B} T={T}: max abs diff {diff} vs logits scale {scale}"


@pytest.mark.parametrize("isa", ["native", "portable"])
def test_attention_shapes_gradients_match_pytorch(builds, tmp_path, isa):
    """The training graph's attention backward runs on GEMM tiles (6 rows x 64 keys or columns): every
    parameter's gradient of the attention-shapes model (head sizes 24, 72, 128; both masks; lengths inside a
    tile, past one key block, over several) against PyTorch autograd in float64."""
    import os
    import torch.nn.functional as F
    from safetensors.torch import load_file
    env = dict(os.environ, KILN_ISA="portable") if isa == "portable" else None
    out = builds.build("tests/models/attention-shapes.kiln")
    w = tmp_path / "w.safetensors"
    perturbed_weights(out / "infer", w, 6)
    rng = np.random.default_rng(6)
    for B, T in [(2, 7), (1, 65), (1, 160)]:
        state = {k: v.double().requires_grad_() for k, v in load_file(str(w)).items()}
        mods = {}
        for prefix, heads, causal in [("attention", 3, False), ("single", 1, False), ("wide", 1, True)]:
            dim = state[prefix + ".query.weight"].shape[1]
            m = reference.SelfAttention(dim, heads, causal=causal, bias=True).double()
            m.load_state_dict({k[len(prefix) + 1:]: v.detach() for k, v in state.items() if k.startswith(prefix + ".")})
            mods[prefix] = m
        linear = lambda x, name: x @ state[name + ".weight"].T + state[name + ".bias"]
        tokens = rng.integers(0, 50, size=(B, T), dtype=np.int32)
        targets = rng.integers(0, 50, size=(B, T), dtype=np.int32)
        np.save(tmp_path / "tok.npy", tokens)
        np.save(tmp_path / "tgt.npy", targets)
        r = run([out / "gradcheck", "dump", "--weights", w, "--tokens", tmp_path / "tok.npy", "--targets",
                 tmp_path / "tgt.npy", "--out", tmp_path / "g.safetensors"], env=env)
        assert r.returncode == 0, r.stderr
        ours = load_file(str(tmp_path / "g.safetensors"))
        h = state["embed.weight"][torch.from_numpy(tokens).long()]
        logits = linear(mods["attention"](h) + mods["single"](h) + linear(mods["wide"](linear(h, "widen")), "narrow"), "head")
        F.cross_entropy(logits.reshape(-1, 50), torch.from_numpy(targets).long().reshape(-1)).backward()
        theirs = {k: v.grad for k, v in state.items() if not any(k.startswith(p + ".") for p in mods)}
        for prefix, m in mods.items():
            theirs.update({f"{prefix}.{n}": p.grad for n, p in m.named_parameters()})
        assert set(ours) == set(theirs)
        floor = 1e-3 * max(g.abs().max().item() for g in theirs.values())
        for name, g in theirs.items():
            diff = np.abs(ours[name].numpy().astype(np.float64) - g.numpy()).max()
            assert diff <= 1e-4 * max(g.abs().max().item(), floor), f"B={B} T={T} {name}: max abs diff {diff}"


def test_generate_token_ids_greedy_matches_pytorch(builds, tmp_path):
    """`infer generate --prompt-ids` on a model whose vocabulary is not bytes (GPT-2's layout, vocab 1000):
    greedy decoding with the KV cache (prompt in one pass, then decode steps), and with a full forward per
    token, gives PyTorch's greedy tokens (argmax of the float64 reference's last position, recomputed for
    every token)."""
    spec = GPT2_SMALLER
    out = builds.build(spec["file"], *spec["overrides"])
    w = tmp_path / "w.safetensors"
    perturbed_weights(out / "infer", w, 21)
    prompt = [17, 999, 0, 512, 3]
    new = 40  # prompt + new tokens stay within the context of 64
    runs = {}
    for mode in ("cache", "no-cache"):
        args = [out / "infer", "generate", "--weights", w, "--prompt-ids", ",".join(map(str, prompt)),
                "--tokens", new, "--temperature", 0, "--timing"]
        r = run(args + (["--no-cache"] if mode == "no-cache" else []))
        assert r.returncode == 0, r.stderr
        runs[mode] = [int(t) for t in r.stdout.split()]
        assert f"({'KV cache' if mode == 'cache' else 'no cache'})" in r.stderr and "tokens/s" in r.stderr
    assert runs["cache"] == runs["no-cache"]
    ids = runs["cache"]
    assert ids[:len(prompt)] == prompt and len(ids) == len(prompt) + new

    model = reference.load(spec["cfg"], w)
    want = list(prompt)
    with torch.no_grad():
        for _ in range(new):
            logits = model(torch.tensor([want]))[0, -1]
            top2 = torch.topk(logits, 2).values
            assert top2[0] - top2[1] > 1e-6, "a near tie: pick another seed"
            want.append(int(logits.argmax()))
    assert ids == want
    assert len(set(want[len(prompt):])) > 3  # not one token repeated

    # A long prompt (encoded in one forward pass, kiln_prefill) and past the context of 64: the cache keeps the
    # newest half of the window and re-encodes it in one pass.
    long_prompt = [(7 * i + 3) % 1000 for i in range(50)]
    r = run([out / "infer", "generate", "--weights", w, "--prompt-ids", ",".join(map(str, long_prompt)),
             "--tokens", 30, "--temperature", 0])
    assert r.returncode == 0, r.stderr
    window, want = list(long_prompt), list(long_prompt)
    with torch.no_grad():
        for _ in range(30):
            tok = int(model(torch.tensor([window]))[0, -1].argmax())
            if len(window) == 64:
                window = window[32:]
            window.append(tok)
            want.append(tok)
    assert [int(t) for t in r.stdout.split()] == want


def test_generate_rejects_bad_prompt_ids(builds, tmp_path):
    out = builds.build(GPT2_SMALLER["file"], *GPT2_SMALLER["overrides"])
    w = tmp_path / "w.safetensors"
    assert run([out / "infer", "init", "--out", w]).returncode == 0
    gen = lambda *a: run([out / "infer", "generate", "--weights", w, "--tokens", 2, *a])
    for ids, message in [("1,1000", "id 1000 is outside the vocabulary [0, 1000)"),
                         ("1,,2", "expected a comma-separated list of token ids"), ("-1", "expected a comma"),
                         ("", "expected a comma"), ("99999999999999999999", "outside the vocabulary"),
                         (",".join(["5"] * 65), "more than the model context of 64 ids")]:
        r = gen("--prompt-ids", ids)
        assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1, (ids, r.stderr)
    r = gen("--prompt", "hi")
    assert r.returncode == 1 and "use --tokenizer or --prompt-ids" in r.stderr
    for both in ([], ["--prompt", "a", "--prompt-ids", "1"]):
        r = gen(*both)
        assert r.returncode == 2 and "exactly one of --prompt and --prompt-ids" in r.stderr
    # a tokenizer cuts --prompt text: with ids it has nothing to do, and says so before reading it
    r = gen("--prompt-ids", "1,2", "--tokenizer", tmp_path / "absent.tiktoken")
    assert r.returncode == 2 and "--tokenizer goes with --prompt" in r.stderr and r.stderr.count("\n") == 1


def test_generate_memory_is_weights_plus_used_cache(builds, tmp_path):
    """With the KV cache, generate allocates the cache for the whole context but touches only the positions it
    reaches, reads the weights file without keeping a second copy, and holds one row of logits: with a
    context of 8192 (a 12.6 MB cache, 33 MB of full-window logits) a short generation stays within a few MB
    of the weights (GNU time's peak RSS)."""
    import os
    if not os.access("/usr/bin/time", os.X_OK):
        if os.environ.get("CI"):
            pytest.fail("CI installs GNU time (.ci/run)")
        pytest.skip("no /usr/bin/time")
    out = builds.build(GPT2_SMALLER["file"], *GPT2_SMALLER["overrides"], "context=8192")
    w = tmp_path / "w.safetensors"
    assert run([out / "infer", "init", "--out", w]).returncode == 0
    r = run(["/usr/bin/time", "-f", "%M", out / "infer", "generate", "--weights", w, "--prompt-ids", "1,2,3",
             "--tokens", 20, "--threads", 1])
    assert r.returncode == 0, r.stderr
    peak_kib, weights_kib = int(r.stderr.split()[-1]), w.stat().st_size / 1024
    # the program and its libraries take 3-6 MB of their own (here: 10.5 MB in all on 4.2 MB of weights); the
    # 12.6 MB cache, or a second copy of the weights, would exceed this
    assert peak_kib < weights_kib + 10 * 1024, (peak_kib, weights_kib)


def test_bidirectional_model_generates_without_a_cache(builds, tmp_path):
    """A KV cache would let a position see only those before it; with bidirectional attention the binary has
    no cache, and generate runs the full forward pass per token (the same tokens as --no-cache)."""
    out = builds.build("tests/models/attention-shapes.kiln")
    w = tmp_path / "w.safetensors"
    perturbed_weights(out / "infer", w, 4)
    args = [out / "infer", "generate", "--weights", w, "--prompt-ids", "1,2,3,4,5", "--tokens", 12,
            "--temperature", 0, "--timing"]
    default, full = run(args), run(args + ["--no-cache"])
    assert default.returncode == 0 and full.returncode == 0, default.stderr + full.stderr
    assert "(no cache)" in default.stderr
    assert default.stdout == full.stdout and len(default.stdout.split()) == 17
    assert "kiln_decode_step" not in (out / "model.c").read_text()


def test_the_benchmarks_idiomatic_pytorch_computes_the_reference():
    """bench/idiomatic.py (what bench/run.sh times as PyTorch: fused QKV, scaled_dot_product_attention) gives the
    parity reference's logits and gradients from the same weights, for both of the benchmark's activations."""
    import sys
    import torch
    import reference
    sys.path.insert(0, str(ROOT / "bench"))
    import idiomatic
    for activation in ("gelu", "gelu_tanh"):
        cfg = dict(vocab=97, context=32, dim=48, heads=4, layers=2, hidden=100, norm="pre", activation=activation,
                   positions="learned", final_norm=True, head="tied", eps=1e-5)
        torch.manual_seed(1)
        ref = reference.GPT(cfg).double()
        with torch.no_grad():
            for p in ref.parameters():
                p.add_(0.1 * torch.randn_like(p))
        fast = idiomatic.IdiomaticGPT(cfg).double().copy_from(ref)
        x = torch.randint(0, 97, (3, 20))
        a, b = ref(x), fast(x)
        assert (a - b).abs().max() <= 1e-12 * a.abs().max()
        a.square().mean().backward()
        b.square().mean().backward()
        att = ref.layers[1].attention
        qkv = torch.cat([att.query.weight.grad, att.key.weight.grad, att.value.weight.grad])
        assert torch.allclose(fast.blocks[1].c_attn.weight.grad, qkv, rtol=1e-10, atol=1e-14)
        assert torch.allclose(fast.wte.weight.grad, ref.embed.weight.grad, rtol=1e-10, atol=1e-14)
        assert torch.allclose(fast.blocks[0].mlp_proj.weight.grad, ref.layers[0].ffn.down.weight.grad, rtol=1e-10,
                              atol=1e-14)
