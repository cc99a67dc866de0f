"""The kiln CLI and the inference binary as a user runs them."""
import hashlib
import re
import os
import pathlib
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from kilntest import ROOT, assert_same_logits, forward_logits, run

EXAMPLES = ["examples/char-gpt.kiln", "examples/gpt2-small.kiln", "examples/odd-postnorm.kiln"]
ODD = "examples/odd-postnorm.kiln"


@pytest.mark.parametrize("path", EXAMPLES)
def test_check_accepts_examples(kiln, path):
    r = run([kiln, "check", ROOT / path])
    assert r.returncode == 0, r.stderr
    assert ": ok: model " in r.stdout


def test_gpt2_small_has_gpt2s_parameter_count(kiln):
    r = run([kiln, "check", ROOT / "examples/gpt2-small.kiln"])
    assert "196 parameter tensors, 124439808 parameters" in r.stdout


def test_check_reports_errors_with_caret(kiln, tmp_path):
    f = tmp_path / "bad.kiln"
    f.write_text("model M\ninput t: i32[B, T] where T <= 8\n"
                 "h = embed(t, 10, 16) + embed(t, 10, 32)\noutput y = frob(h)\n")
    r = run([kiln, "check", f])
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert lines[0] == f"{f}:3:5: error: shapes [B, T, 16] and [B, T, 32] do not match: dim 16 vs 32"
    assert lines[1] == "h = embed(t, 10, 16) + embed(t, 10, 32)"
    assert lines[2].startswith("    ^~~~")
    assert f"{f}:4:12: error: unknown function 'frob'" in r.stderr
    assert lines[-1] == "2 errors generated."


@pytest.mark.parametrize("call,expected", [
    ("attention(x, heads: 2, mask: causal, window: 0)", "window must be positive, got 0"),
    ("attention(x, heads: 2, mask: causal, position: t5, window: 4)", "window: works with position: none, rotary or alibi, not t5"),
    ("attention(x, heads: 2, lowrank: 0)", "lowrank must be positive, got 0"),
    ("attention(x, heads: 2, mask: causal, lowrank: 4)", "lowrank: projects keys and values along the whole sequence, so it is bidirectional"),
    ("attention(x, heads: 2, position: rotary, lowrank: 4)", "lowrank: takes no relative positions (position: rotary)"),
    ("attention(x, heads: 2, window: 3, lowrank: 4)", "lowrank: is Linformer's self-attention; it takes neither window: nor memory:"),
    ("attention(x, heads: 2, block: 0)", "block must be positive, got 0"),
    ("attention(x, heads: 2, mask: causal, block: 4)", "block: is BigBird's bidirectional attention; it takes no mask: causal"),
    ("attention(x, heads: 2, block: 4, random: 65)", "random must be a number of blocks from 0 to 64"),
    ("attention(x, heads: 2, block: 4, seed: -1)", "seed must be a number from 0 to 4294967295"),
    ("attention(x, heads: 2, random: 2)", "random: belongs to BigBird's attention: write block: N"),
    ("lstm(x, hidden: 0)", "hidden must be positive, got 0"),
    ("lstm(x, hidden: 8, layers: 100)", "layers 100 is too many (limit 64)"),
    ("lstm(x, hidden: 8, dropout: 1.5)", "the dropout probability must be in [0, 1), got 1.5"),
])
def test_local_attention_and_lstm_arguments_are_checked(kiln, tmp_path, call, expected):
    """A bad window or LSTM argument is a located error on its line, not a crash."""
    f = tmp_path / "bad.kiln"
    f.write_text(f"model M\ninput t: i32[B, T] where T <= 8\nx = embed(t, 10, 16)\noutput y = {call}\n")
    r = run([kiln, "check", f])
    assert r.returncode == 1 and r.stderr.startswith(f"{f}:4:"), r.stderr
    assert expected in r.stderr.splitlines()[0], r.stderr


@pytest.mark.parametrize("content,expected", [
    (None, "no such file"),
    (b"\xff\xfe\x00garbage", "error: "),
    (b"", "a model file starts with 'model NAME'"),
])
def test_check_bad_files(kiln, tmp_path, content, expected):
    f = tmp_path / "m.kiln"
    if content is not None:
        f.write_bytes(content)
    r = run([kiln, "check", f])
    assert r.returncode != 0
    assert expected in r.stderr


def test_check_directory_is_an_error(kiln, tmp_path):
    r = run([kiln, "check", tmp_path])
    assert r.returncode != 0 and "is a directory" in r.stderr


def test_set_overrides(kiln):
    r = run([kiln, "check", ROOT / ODD, "--set", "layers=1"])
    assert r.returncode == 0 and "model OddPostNorm" in r.stdout
    r = run([kiln, "check", ROOT / ODD, "--set", "nope=1"])
    assert r.returncode != 0
    assert r.stderr.strip().startswith("kiln: error: --set nope: no config entry named 'nope'")
    assert len(r.stderr.strip().splitlines()) == 1
    r = run([kiln, "check", ROOT / ODD, "--set", "layers"])
    assert r.returncode != 0 and "name=value" in r.stderr


def test_ir_print_after_all(kiln):
    r = run([kiln, "ir", ROOT / ODD, "--print-after", "all"])
    assert r.returncode == 0, r.stderr
    assert "// IR after frontend" in r.stdout
    assert "// IR after pass 1: strip-dropout (no change)" in r.stdout
    assert "// IR after pass 2: simplify (no change)" in r.stdout
    assert "// IR after pass 3: cse" in r.stdout
    assert "// IR after pass 4: dce" in r.stdout
    assert "// IR after pass 5: fuse-epilogue" in r.stdout
    assert "// IR after pass 6: merge-linears" in r.stdout and "linear_stack(" in r.stdout
    r = run([kiln, "ir", ROOT / ODD, "--print-after", "bogus"])
    assert r.returncode != 0 and "unknown pass 'bogus'" in r.stderr


def test_ir_stages(kiln):
    r = run([kiln, "ir", ROOT / ODD, "--stage", "frontend"])
    assert r.returncode == 0 and r.stdout.startswith("graph OddPostNorm {")
    assert "%layers.1.norm2.weight = param {init: ones} : f32[60]" in r.stdout


# the examples, two test models with bidirectional attention (no KV-cache functions), one with no attention at all
# and fused elementwise kernels, the variants, the Llama layout, the encoder–decoder, a mixture of experts and the
# primitive tier (with einsum, where, slice and param), and Reformer's LSH attention
WARNING_MODELS = EXAMPLES + ["tests/models/all-ops.kiln", "tests/models/attention-shapes.kiln", "tests/models/elementwise.kiln",
                             "tests/models/rms-swiglu.kiln", "tests/models/rezero.kiln", "tests/models/universal.kiln",
                             "examples/llama-tiny.kiln", "examples/transformer-base.kiln", "tests/models/moe-gpt.kiln",
                             "tests/models/primitives.kiln", "examples/einsum-attention.kiln", "examples/linformer-by-hand.kiln",
                             "tests/models/lsh.kiln"]


def on_two_cores(f, items):
    """f of every item, two at a time (the machines have two cores); the results in order."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(f, items))


@pytest.fixture(scope="module")
def generated(kiln, tmp_path_factory):
    """The C of every model of WARNING_MODELS, generated once (`kiln build --no-make`)."""
    tmp = tmp_path_factory.mktemp("generated")
    models = list(dict.fromkeys(WARNING_MODELS))
    outs = [tmp / m.split("/")[-1] for m in models]
    results = on_two_cores(lambda k: run([kiln, "build", ROOT / models[k], "-o", outs[k], "--no-make"]), range(len(models)))
    for m, r in zip(models, results):
        assert r.returncode == 0, m + ": " + r.stderr
    return outs


@pytest.mark.parametrize("cc", ["gcc", "/usr/bin/clang"])
@pytest.mark.parametrize("openmp", [True, False])
def test_generated_c_has_no_warnings(generated, cc, openmp):
    if not shutil.which(cc):
        pytest.skip(f"{cc} not installed")
    if openmp and run([cc, "-fopenmp", "-x", "c", "-fsyntax-only", "/dev/null"]).returncode != 0:
        pytest.skip(f"{cc} has no OpenMP")
    # clang at -O2, where it reports simd loops it cannot vectorise
    def compile(out):
        obj = out / f"model-{pathlib.Path(cc).name}-{int(openmp)}.o"
        return run([cc, "-std=c11", "-O2" if "clang" in cc else "-O1", "-Wall", "-Wextra", "-Werror", "-I", out, "-I",
                    out / "runtime", "-c", out / "model.c", "-o", obj] + (["-fopenmp"] if openmp else ["-fopenmp-simd"]))
    for out, r in zip(generated, on_two_cores(compile, generated)):
        assert r.returncode == 0, f"{out.name}: {r.stderr}"


def test_build_directory_rebuilds_with_make_elsewhere(builds, tmp_path):
    out = builds.build(ODD)
    copy = tmp_path / "copied"
    shutil.copytree(out, copy)
    (copy / "infer").unlink()
    r = run(["make", "-C", copy, "CC=gcc"])
    assert r.returncode == 0, r.stderr + r.stdout
    assert (copy / "infer").exists()
    r = run([copy / "infer", "--help"])
    assert r.returncode == 0 and "OddPostNorm" in r.stdout


@pytest.fixture
def odd(builds, tmp_path):
    out = builds.build(ODD)
    w = tmp_path / "w.safetensors"
    r = run([out / "infer", "init", "--seed", 5, "--out", w])
    assert r.returncode == 0, r.stderr
    return out / "infer", w


def test_same_bits_at_any_thread_count(odd, tmp_path):
    infer, w = odd
    tokens = np.random.default_rng(0).integers(0, 97, size=(3, 24), dtype=np.int32)
    np.save(tmp_path / "t.npy", tokens)
    hashes = set()
    for n in (1, 2, 3, 4):
        r = run([infer, "--threads", n, "forward", "--weights", w, "--tokens", tmp_path / "t.npy",
                 "--out", tmp_path / f"l{n}.npy"])
        assert r.returncode == 0, r.stderr
        hashes.add(hashlib.sha256((tmp_path / f"l{n}.npy").read_bytes()).hexdigest())
    assert len(hashes) == 1


def test_generate_and_score(odd, tmp_path):
    infer, w = odd
    r = run([infer, "generate", "--weights", w, "--prompt", "AB", "--tokens", 30, "--temperature", 0, "--seed", 1])
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.encode("latin-1", "replace")) >= 2
    again = run([infer, "generate", "--weights", w, "--prompt", "AB", "--tokens", 30, "--temperature", 0])
    assert again.stdout == r.stdout  # greedy is deterministic
    r = run([infer, "generate", "--weights", w, "--prompt", "x" * 25, "--tokens", 3])
    assert r.returncode != 0 and "longer than the model context 24" in r.stderr
    r = run([infer, "generate", "--weights", w, "--prompt", "zzz", "--tokens", 3])  # 'z' = 122 >= vocab 97
    assert r.returncode != 0 and "outside the vocabulary [0, 97)" in r.stderr
    text = tmp_path / "t.txt"
    text.write_bytes(bytes(range(32, 96)) * 3)
    r = run([infer, "score", "--weights", w, text])
    assert r.returncode == 0, r.stderr
    assert "perplexity" in r.stdout and "bits/char" in r.stdout


def test_forward_rejects_bad_tokens(odd, tmp_path):
    infer, w = odd
    np.save(tmp_path / "t.npy", np.array([[1, 2, 97]], dtype=np.int32))
    r = run([infer, "forward", "--weights", w, "--tokens", tmp_path / "t.npy", "--out", tmp_path / "o.npy"])
    assert r.returncode != 0
    assert "token id 97 at [0, 2] is outside the vocabulary [0, 97)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    np.save(tmp_path / "t.npy", np.zeros((1, 25), dtype=np.int32))
    r = run([infer, "forward", "--weights", w, "--tokens", tmp_path / "t.npy", "--out", tmp_path / "o.npy"])
    assert r.returncode != 0 and "sequence length 25 exceeds the model context 24" in r.stderr


def _mutated(w, tmp_path, fn):
    state = load_file(str(w))
    fn(state)
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad))
    return bad


@pytest.mark.parametrize("mutate,expected", [
    (lambda s: s.pop("layers.1.ffn.up.bias"), "missing tensor 'layers.1.ffn.up.bias'"),
    (lambda s: s.update({"extra.weight": np.zeros(3, np.float32)}), "unexpected tensor 'extra.weight'"),
    (lambda s: s.update({"head.weight": np.zeros((97, 61), np.float32)}), "tensor 'head.weight' has shape [97, 61], expected [97, 60]"),
    (lambda s: s.update({"embed.weight": s["embed.weight"].astype(np.float16)}), "tensor 'embed.weight' has dtype F16, expected F32"),
])
def test_weights_that_do_not_fit_the_model(odd, tmp_path, mutate, expected):
    infer, w = odd
    bad = _mutated(w, tmp_path, mutate)
    text = tmp_path / "t.txt"
    text.write_text("ABCDEFG")
    r = run([infer, "score", "--weights", bad, text])
    assert r.returncode != 0
    assert expected in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_stats_counts_exactly(kiln):
    r = run([kiln, "stats", ROOT / "examples/char-gpt-small.kiln", "--batch", 12, "--seq", 64])
    assert r.returncode == 0, r.stderr
    M, C, V, L = 12 * 64, 128, 256, 4
    weights = L * (4 * C * C + 2 * 4 * C * C) + V * C          # attention q,k,v,o + ffn up, down + tied head
    biases = L * (4 * C + 4 * C + C)                           # linear biases only (the head has none)
    linear = 2 * M * weights + M * biases + 2 * L * M * C      # + the two residual adds per layer in the epilogue
    assert f" {linear:,} FLOPs" in r.stdout.split("training step")[1].split("\n  linear ")[1].split("\n")[0]
    assert "parameters        834,304 in 68 tensors" in r.stdout
    assert "optimiser state   6,674,432 bytes (AdamW m and v)" in r.stdout
    # fusion moves arithmetic into other kernels but never drops it: the totals match a --no-fuse build's
    plain = run([kiln, "stats", ROOT / "examples/char-gpt-small.kiln", "--batch", 12, "--seq", 64, "--no-fuse"])
    assert plain.returncode == 0, plain.stderr
    totals = lambda text: [line.split()[1] for line in text.splitlines() if line.strip().startswith("total")]
    assert len(totals(r.stdout)) == 2 and totals(r.stdout) == totals(plain.stdout)
    # a fused elementwise op counts each op of its expression (a gelu_tanh as 10, as its own kernel does); the
    # product gelu(a) * relu(b) is b's epilogue (B·T·dim = 256 FLOPs counted with the linears)
    ew = [run([kiln, "stats", ROOT / "tests/models/elementwise.kiln", "--batch", 2, "--seq", 8] + flag).stdout
          for flag in ([], ["--no-fuse"])]
    assert "  fused                    3,840 FLOPs" in ew[0] and "fused" not in ew[1]
    # in training, gelu(a) and relu(b) are each read by the product and by the product's gradient: fuse-elementwise
    # computes them again inside each instead of storing them, 10 + 1 FLOPs per element more (B·T·dim = 256)
    assert len(totals(ew[0])) == 2 and totals(ew[0])[0] == totals(ew[1])[0]
    assert int(totals(ew[0])[1].replace(",", "")) == int(totals(ew[1])[1].replace(",", "")) + 11 * 256
    r = run([kiln, "stats", ROOT / "examples/gpt2-small.kiln", "--seq", 2000])
    assert r.returncode != 0 and "exceeds the context 1024" in r.stderr


def test_stats_counts_rotary_positions_exactly(kiln):
    """Rotary positions turn q and k of every layer: 4 products and 2 sums per pair of channels (3 per element),
    once forward and once backward (the rotation by the opposite angle)."""
    r = run([kiln, "stats", ROOT / "tests/models/rotary.kiln", "--batch", 2, "--seq", 12])
    assert r.returncode == 0, r.stderr
    B, T, C, L = 2, 12, 30, 2
    forward = 2 * L * 3 * B * T * C
    assert f"  rotary                     {forward:,} FLOPs" in r.stdout.split("training step")[0]
    assert f"  rotary                           {2 * forward:,} FLOPs" in r.stdout.split("training step")[1]

    # ALiBi: 2 FLOPs (slope times distance, subtracted) per causal (query, key) pair and head
    a = run([kiln, "stats", ROOT / "tests/models/alibi.kiln", "--batch", 2, "--seq", 12])
    assert a.returncode == 0, a.stderr
    attention = lambda text: int(text.split("  attention ")[1].split("FLOPs")[0].replace(",", ""))
    heads, pairs = 3, B * T * (T + 1) // 2
    assert attention(a.stdout) - attention(r.stdout) == 2 * pairs * heads * L


def test_stats_counts_relative_positions_exactly(kiln):
    """Shaw et al.'s representations and T5's bias counted by hand (docs of relative_attention and its gradient):
    per causal (query, key) pair and channel 4 forward and 6 + 6 + 4 + 4 backward (the gradients of q, k, v and
    the table each recompute the scores); Shaw per query row, distance (2·clip + 1) and channel 4 forward and
    6 + 4 + 2 + 8 backward, per pair and head 2 forward and 3 + 2 + 1 + 4 backward; T5 per pair and head 1
    forward and 1 + 1 + 1 + 2 backward."""
    B, T, C, H, L = 2, 12, 30, 3, 2
    pairs, rows = B * T * (T + 1) // 2, B * T

    def counts(model):
        r = run([kiln, "stats", ROOT / model, "--batch", B, "--seq", T])
        assert r.returncode == 0, r.stderr
        forward, step = r.stdout.split("training step")
        flops = lambda text, op: int(re.search(rf"  {op} +([\d,]+) FLOPs", text).group(1).replace(",", ""))
        return flops(forward, "relative_attention"), flops(step, "relative_attention_grad")

    R = 2 * 4 + 1  # tests/models/shaw.kiln: clip 4
    assert counts("tests/models/shaw.kiln") == (L * (4 * pairs * C + 4 * rows * R * C + 2 * pairs * H),
                                                L * (20 * pairs * C + 20 * rows * R * C + 10 * pairs * H))
    assert counts("tests/models/t5-bias.kiln") == (L * (4 * pairs * C + pairs * H), L * (20 * pairs * C + 5 * pairs * H))


def test_stats_counts_local_attention_by_its_window(kiln):
    """tests/models/local.kiln (window 5, causal) and tests/models/local-encoder.kiln (windows 3 and 6, both
    sides): attention counts 4 FLOPs per (query, key) pair within the window and channel, its gradient 10."""
    B, T = 2, 12

    def flops(model, op, part):
        r = run([kiln, "stats", ROOT / model, "--batch", B, "--seq", T])
        assert r.returncode == 0, r.stderr
        text = r.stdout.split("training step")[part]
        return int(re.search(rf"  {op} +([\d,]+) FLOPs", text).group(1).replace(",", ""))

    causal = B * sum(min(t + 1, 5) for t in range(T))  # 1 + 2 + 3 + 4 + 5 · 8 keys
    assert flops("tests/models/local.kiln", "attention", 0) == 2 * 4 * causal * 30
    assert flops("tests/models/local.kiln", "attention_grad", 1) == 2 * 10 * causal * 30
    both = lambda w: B * sum(min(T, t + w) - max(0, t - w + 1) for t in range(T))
    assert flops("tests/models/local-encoder.kiln", "attention", 0) == 4 * (both(3) + both(6)) * 36


def test_stats_counts_adaptive_computation_time_exactly(kiln):
    """tests/models/universal-act.kiln (4 steps) by hand, from the docs of act and its ops: per position and step
    10 for the halting bookkeeping, per element and step 3 for the weighted state; the ponder cost 10 per
    position and step and 1 per position for the mean; backward the gradient of p 20 per position and step and
    2 per element and step, that of s 10 and 1, that of the ponder cost 20 per position and step."""
    B, T, C, N = 2, 12, 30, 4
    P, E = B * T, B * T * C
    r = run([kiln, "stats", ROOT / "tests/models/universal-act.kiln", "--batch", B, "--seq", T])
    assert r.returncode == 0, r.stderr
    forward, step = r.stdout.split("training step")
    flops = lambda text, op: int(re.search(rf"  {op} +([\d,]+) FLOPs", text).group(1).replace(",", ""))
    assert flops(forward, "act") == N * (10 * P + 3 * E)
    assert flops(forward, "act_ponder") == 10 * N * P + P
    assert flops(step, "act_grad") == N * (20 * P + 2 * E) + N * (10 * P + E)
    assert flops(step, "act_ponder_grad") == 20 * N * P


@pytest.mark.parametrize("model,prompt,n", [(ODD, "AB", 20), ("examples/char-gpt-small.kiln", "ROMEO:", 50)])
def test_kv_cache_generation_matches_full_forward(builds, tmp_path, model, prompt, n):
    """Within the context, generating with the KV cache (one decode step per token) gives the
    same text as a full forward pass over the window for every token."""
    out = builds.build(model)
    w = tmp_path / "w.safetensors"
    assert run([out / "infer", "init", "--seed", 2, "--out", w]).returncode == 0
    for extra in (["--temperature", 0], ["--temperature", 1, "--seed", 5]):
        args = [out / "infer", "generate", "--weights", w, "--prompt", prompt, "--tokens", n, *extra]
        cached, full = run(args, text=False), run(args + ["--no-cache"], text=False)
        assert cached.returncode == 0 and full.returncode == 0, cached.stderr + full.stderr
        assert cached.stdout == full.stdout
    # Beyond the context it keeps going (the window is re-encoded).
    r = run([out / "infer", "generate", "--weights", w, "--prompt", prompt, "--tokens", 100, "--temperature", 0], text=False)
    assert r.returncode == 0 and len(r.stdout) == len(prompt) + 100


def test_portable_build_uses_wide_units_only_in_dispatched_kernels(kiln, tmp_path):
    """kiln build --portable targets the compiler's baseline CPU: outside the microkernels that cpuid picks,
    the binary has no AVX instructions (so it runs on an older x86), and its logits match the native build."""
    import platform
    if platform.machine() != "x86_64" or not shutil.which("objdump"):
        pytest.skip("x86-64 with objdump only")
    out = tmp_path / "portable"
    r = run([kiln, "build", ROOT / ODD, "-o", out, "--portable"])
    assert r.returncode == 0, r.stderr
    assert "ARCH ?=\n" in (out / "Makefile").read_text()
    dis = run(["objdump", "-d", "--no-show-raw-insn", out / "infer"]).stdout
    wide = set()
    fn = None
    for line in dis.splitlines():
        if line.endswith(">:"):
            fn = line.split("<", 1)[1][:-2]
        elif "%ymm" in line or "%zmm" in line:
            wide.add(fn)
    # libc's own string functions dispatch on the CPU too; everything compiled from model.c must not use AVX
    ours = {f for f in wide if f and not f.startswith(("__", "_dl", "str", "mem", "wcs", "wmem"))}
    # the microkernels cpuid picks: the full, half and quarter tiles of each unit, their _acc kinds (and the parts a
    # compiler splits off them), the transposing copy of packing, and dropout's hash in 64-bit lanes
    assert all(re.fullmatch(r"gemm_tile_(avx512|avx2)(_half|_quarter)?(_acc)?(\.part\.\d+)?|gemm_pack_transposed_avx2"
                            r"|dropout_range_avx2(\.part\.\d+)?", f)
               for f in ours), sorted(ours)
    assert {"gemm_tile_avx512", "gemm_tile_avx2"} <= wide

    native = tmp_path / "native"
    assert run([kiln, "build", ROOT / ODD, "-o", native]).returncode == 0
    w = tmp_path / "w.safetensors"
    assert run([native / "infer", "init", "--seed", 3, "--out", w]).returncode == 0
    tokens = np.random.default_rng(0).integers(0, 97, size=(2, 24), dtype=np.int32)
    assert_same_logits(forward_logits(out / "infer", w, tokens, tmp_path),
                       forward_logits(native / "infer", w, tokens, tmp_path))


def test_gemm_benchmark_builds_against_the_engine(tmp_path):
    """bench/gemm_main.c calls the GEMM engine of runtime/kernels/gemm.h directly; it must keep compiling
    (warnings are errors) and compute a positive rate."""
    exe = tmp_path / "gemm_bench"
    r = run(["gcc", "-O2", "-fopenmp", "-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'runtime' / 'kernels'}",
             ROOT / "bench" / "gemm_main.c", "-o", exe, "-lm"])
    assert r.returncode == 0, r.stderr
    r = run([exe, 70, 130, 50, 2])
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) > 0

def test_roofline_benchmark_measures_peak_and_bandwidth(tmp_path):
    """bench/roofline_main.c (the benchmark's roofline: FMA peak and STREAM triad) compiles without warnings and
    prints positive rates; the triad checks its own result."""
    exe = tmp_path / "roofline"
    r = run(["gcc", "-O2", "-march=native", "-fopenmp", "-std=c11", "-Wall", "-Wextra", "-Werror", ROOT / "bench" / "roofline_main.c",
             "-o", exe])
    assert r.returncode == 0, r.stderr
    for what in ("peak", "stream"):
        r = run([exe, what], env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert r.returncode == 0 and r.stderr == "" and float(r.stdout) > 0, (what, r.stdout, r.stderr)
    assert run([exe, "bogus"]).returncode == 2


def test_the_variant_table_is_the_commands_output(kiln, tmp_path):
    """docs/variants.md is generated (parameters and FLOPs of every variant): a change to the counts or the
    variants must regenerate it with `bash scripts/variants-table.sh`."""
    r = run(["bash", ROOT / "scripts/variants-table.sh"], env={**os.environ, "KILN": str(kiln), "OUT": str(tmp_path / "v.md")})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "v.md").read_text() == (ROOT / "docs/variants.md").read_text()
