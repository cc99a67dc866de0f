"""Tests of the Kiln C runtime (runtime/kiln_rt.c, kiln_model_rt.c, infer_main.c)
without the Swift compiler: the real infer_main.c is linked against a hand-written
fake model (fake_model.c + model.h in this directory) and checked against numpy.
The binaries are built by the `build` fixture in conftest.py; test_train.py
tests the `train` program.

Run: python3 -m pytest tests/runtime -q
"""

import json
import math
import os
import re
import struct
import subprocess

import numpy as np
import pytest

from rtkit import (CONTEXT, HERE, PARAM_SHAPES, RT, VOCAB, expect_error, expect_ok, find_clang,
                   run)
from train_reference import Xoshiro


# --------------------------------------------------------------------------
# Reference model and fixtures


def random_weights(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "embed.weight": rng.standard_normal((VOCAB, VOCAB)).astype(np.float32),
        "bias": (0.1 * rng.standard_normal(VOCAB)).astype(np.float32),
        "ln.weight": rng.uniform(0.5, 1.5, VOCAB).astype(np.float32),
        "pos.weight": rng.standard_normal((CONTEXT, VOCAB)).astype(np.float32),
    }


def ref_logits(w, tokens):
    """Same float32 operations as fake_model.c; tokens [B, T]."""
    h = (w["embed.weight"][tokens] + w["bias"]) * w["ln.weight"]
    return h + w["pos.weight"][: tokens.shape[1]]


def ref_score(w, data):
    toks = np.frombuffer(data, np.uint8).astype(np.int64)
    preds = len(toks) - 1
    nll = 0.0
    for start in range(0, preds, CONTEXT):
        t = min(CONTEXT, preds - start)
        lg = ref_logits(w, toks[None, start:start + t])[0].astype(np.float64)
        y = toks[start + 1:start + t + 1]
        m = lg.max(axis=1)
        lse = m + np.log(np.exp(lg - m[:, None]).sum(axis=1))
        nll -= float((lg[np.arange(t), y] - lse).sum())
    loss = nll / preds
    return preds, loss, math.exp(loss), loss / math.log(2)


def ref_generate_greedy(w, prompt, n):
    window, out = list(prompt), bytearray(prompt)
    for _ in range(n):
        tok = int(np.argmax(ref_logits(w, np.array([window]))[0, -1]))
        out.append(tok)
        window = (window + [tok])[-CONTEXT:]
    return bytes(out)


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    """Random weights written by the Python safetensors library; returns (path, dict)."""
    from safetensors.numpy import save_file

    w = random_weights()
    path = tmp_path_factory.mktemp("w") / "w.safetensors"
    save_file(w, str(path), metadata={"format": "pt"})
    return path, w


@pytest.fixture(scope="session")
def good_tokens(tmp_path_factory):
    path = tmp_path_factory.mktemp("t") / "tokens.npy"
    np.save(path, np.arange(2 * 5, dtype=np.int32).reshape(2, 5))
    return path


# --------------------------------------------------------------------------
# Happy paths


def test_init_loads_in_python(build, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    out = tmp_path / "init.safetensors"
    expect_ok(run(build["infer"], "init", "--seed", 7, "--out", out))
    d = load_file(str(out))
    assert {k: v.shape for k, v in d.items()} == PARAM_SHAPES
    assert all(v.dtype == np.float32 for v in d.values())
    assert np.all(d["bias"] == 0) and np.all(d["ln.weight"] == 1)
    assert abs(d["embed.weight"].std() - 0.02) < 0.002 and abs(d["embed.weight"].mean()) < 0.001
    assert abs(d["pos.weight"].std() - 0.01) < 0.001
    with safe_open(str(out), "np") as f:
        assert f.metadata() == {"format": "pt", "kiln_model": "FakeBigram"}
    raw = out.read_bytes()
    assert (8 + struct.unpack("<Q", raw[:8])[0]) % 8 == 0
    # deterministic for a seed, independent of the thread count; no temp files left
    out2 = tmp_path / "init2.safetensors"
    expect_ok(run(build["infer"], "--threads", 1, "init", "--seed", 7, "--out", out2))
    assert out2.read_bytes() == raw
    out3 = tmp_path / "init3.safetensors"
    expect_ok(run(build["infer"], "init", "--seed", 8, "--out", out3, "--threads", 2))
    assert out3.read_bytes() != raw
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "init.safetensors", "init2.safetensors", "init3.safetensors"]


def test_init_loads_with_torch(build, tmp_path):
    torch_st = pytest.importorskip("safetensors.torch")
    out = tmp_path / "w.safetensors"
    expect_ok(run(build["infer"], "init", "--out", out))
    d = torch_st.load_file(str(out))
    assert {k: tuple(v.shape) for k, v in d.items()} == PARAM_SHAPES


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_forward_matches_numpy(build, weights, tmp_path, dtype):
    path, w = weights
    rng = np.random.default_rng(1)
    for b, t in [(3, CONTEXT), (1, 1), (2, 7)]:
        toks = rng.integers(0, VOCAB, (b, t)).astype(dtype)
        np.save(tmp_path / "in.npy", toks)
        expect_ok(run(build["infer"], "forward", "--weights", path, "--tokens",
                      tmp_path / "in.npy", "--out", tmp_path / "out.npy"))
        got = np.load(tmp_path / "out.npy")
        assert got.dtype == np.float32 and got.shape == (b, t, VOCAB)
        np.testing.assert_allclose(got, ref_logits(w, toks), rtol=1e-6, atol=1e-6)


def test_forward_accepts_npy_v2(build, weights, tmp_path):
    path, w = weights
    toks = np.array([[5, 6, 7]], dtype="<i8")
    header = b"{'descr': '<i8', 'fortran_order': False, 'shape': (1, 3), }"
    header += b" " * ((-(12 + len(header) + 1)) % 64) + b"\n"
    (tmp_path / "v2.npy").write_bytes(b"\x93NUMPY\x02\x00" + struct.pack("<I", len(header))
                                      + header + toks.tobytes())
    expect_ok(run(build["infer"], "forward", "--weights", path, "--tokens", tmp_path / "v2.npy",
                  "--out", tmp_path / "o.npy"))
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), ref_logits(w, toks), rtol=1e-6)


def parse_score(text):
    m = re.fullmatch(r"tokens (\d+)  loss (\S+) nats  perplexity (\S+)  bits/char (\S+)\n", text)
    assert m, text
    return int(m[1]), float(m[2]), float(m[3]), float(m[4])


@pytest.mark.parametrize("n", [2, 33, 34, 300, 2000])
def test_score_matches_numpy(build, weights, tmp_path, n):
    # 33 bytes = exactly one full window; 2000 = several batches of 8 windows + a tail
    path, w = weights
    data = np.random.default_rng(n).integers(0, VOCAB, n).astype(np.uint8).tobytes()
    (tmp_path / "f.bin").write_bytes(data)
    got = parse_score(expect_ok(run(build["infer"], "score", "--weights", path, tmp_path / "f.bin")))
    want = ref_score(w, data)
    assert got[0] == want[0] == n - 1
    for g, r in zip(got[1:], want[1:]):
        assert abs(g - r) <= 6e-5 + 1e-6 * abs(r), (got, want)


def test_generate_greedy_matches_numpy(build, weights):
    path, w = weights
    prompt = b"The quick brown fox"
    n = 3 * CONTEXT  # far past the context: exercises the sliding window
    outs = [run(build["infer"], "generate", "--weights", path, "--prompt", prompt, "--tokens", n,
                "--temperature", 0, "--threads", th).stdout for th in (1, 2)]
    assert outs[0] == outs[1] == ref_generate_greedy(w, prompt, n)
    # top-k 1 is greedy too, whatever the temperature
    p = run(build["infer"], "generate", "--weights", path, "--prompt", prompt, "--tokens", n,
            "--top-k", 1, "--seed", 5)
    assert expect_ok(p) and p.stdout == outs[0]


def test_generate_sampling_deterministic(build, weights):
    path, _ = weights
    def gen(*extra):
        p = run(build["infer"], "generate", "--weights", path, "--prompt", "ab", "--tokens", 80,
                "--temperature", "1.5", "--top-p", "0.95", "--top-k", 100, *extra)
        expect_ok(p)
        return p.stdout
    a = gen("--seed", 1, "--threads", 1)
    assert len(a) == 82 and a.startswith(b"ab")
    assert gen("--seed", 1, "--threads", 2) == a
    assert gen("--seed", 2) != a
    p = run(build["infer"], "generate", "--weights", path, "--prompt", "ab", "--tokens", 0)
    assert expect_ok(p) == "ab"


def test_bench_output(build, weights):
    out = expect_ok(run(build["infer"], "bench", "--batch", 2, "--seq", 16, "--iters", 3,
                        "--warmup", 1, "--threads", 2))
    assert re.fullmatch(r"forward B=2 T=16 threads=2: median \d+\.\d{3} ms  min \d+\.\d{3} ms  "
                        r"\(3 iters, (portable|avx2|avx512) kernels\)\n", out), out
    out = expect_ok(run(build["infer"], "bench", "--weights", weights[0], "--iters", 1))
    assert out.startswith(f"forward B=1 T={CONTEXT} ")


def test_help(build):
    out = expect_ok(run(build["infer"], "--help"))
    for cmd in ("init", "forward", "generate", "score", "bench", "--threads"):
        assert cmd in out
    flags = {
        "init": ["--out", "--seed"],
        "forward": ["--weights", "--tokens", "--out"],
        "generate": ["--weights", "--prompt", "--tokens", "--temperature", "--top-k", "--top-p",
                     "--seed"],
        "score": ["--weights", "FILE"],
        "bench": ["--batch", "--seq", "--iters", "--warmup", "--weights", "--seed"],
    }
    for cmd, names in flags.items():
        out = expect_ok(run(build["infer"], cmd, "--help"))
        for name in names + ["--threads"]:
            assert name in out, (cmd, name)


def test_sanitized_happy_paths(build, weights, good_tokens, tmp_path):
    path, w = weights
    asan = build["asan"]
    expect_ok(run(asan, "init", "--out", tmp_path / "i.safetensors"))
    expect_ok(run(asan, "forward", "--weights", path, "--tokens", good_tokens, "--out",
                  tmp_path / "o.npy"))
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"),
                               ref_logits(w, np.load(good_tokens)), rtol=1e-6, atol=1e-6)
    (tmp_path / "f.txt").write_bytes(bytes(range(256)) * 3)
    expect_ok(run(asan, "score", "--weights", path, tmp_path / "f.txt"))
    expect_ok(run(asan, "generate", "--weights", path, "--prompt", "x" * CONTEXT, "--tokens", 40,
                  "--top-p", "0.5"))
    expect_ok(run(asan, "bench", "--iters", 2))


# --------------------------------------------------------------------------
# Generic runtime pieces via rt_tool


def test_writer_roundtrip(build, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    out = tmp_path / "mixed.safetensors"
    expect_ok(run(build["rt_tool"], "st-write", out))
    d = load_file(str(out))
    np.testing.assert_array_equal(d['f32 "quoted"\\'],
                                  np.array([[1.5, -2, 3.25], [0, 1e-3, 7]], np.float32))
    np.testing.assert_array_equal(d["i32"], np.array([-1, 2, 2**31 - 1, -2**31], np.int32))
    np.testing.assert_array_equal(d["i64"], np.array([-2**63, 0, 2**63 - 1], np.int64))
    np.testing.assert_array_equal(d["u8.é"], np.array([0, 1, 127, 128, 255], np.uint8))
    assert d["empty"].shape == (0, 7) and d["scalar"].shape == () and d["scalar"] == 42
    with safe_open(str(out), "np") as f:
        assert f.metadata() == {"format": "pt", "note": "tab\there, newline\nand 😀"}
    torch_st = pytest.importorskip("safetensors.torch")
    assert set(torch_st.load_file(str(out))) == set(d)
    # our own reader agrees (tensors are laid out in the given order)
    dump = expect_ok(run(build["rt_tool"], "st-dump", out)).splitlines()
    note = "tab\there, newline\nand 😀".encode().hex()
    assert f"meta {b'note'.hex()} {note}" in dump
    assert f"tensor {b'i64'.hex()} I64 [3] 40 24" in dump
    assert f"tensor {b'empty'.hex()} F32 [0, 7] 69 0" in dump
    assert f"tensor {b'scalar'.hex()} F32 [] 69 4" in dump


def test_reader_accepts_python_files_and_escapes(build, tmp_path):
    from safetensors.numpy import save_file

    tensors = {"a": np.zeros((2, 3), np.float16), "b": np.zeros(0, np.float32),
               "c": np.arange(5, dtype=np.int8), "d": np.ones((1, 1, 1, 1, 1), np.float64),
               "e": np.array(True)}
    save_file(tensors, str(tmp_path / "py.safetensors"), metadata={"k": "v"})
    dump = expect_ok(run(build["rt_tool"], "st-dump", tmp_path / "py.safetensors"))
    for name, dt, shape in [("a", "F16", "[2, 3]"), ("b", "F32", "[0]"), ("c", "I8", "[5]"),
                            ("d", "F64", "[1, 1, 1, 1, 1]"), ("e", "BOOL", "[]")]:
        assert f"tensor {name.encode().hex()} {dt} {shape} " in dump
    # JSON escapes, surrogate pairs, odd (misaligned) offsets, zero-size tensors anywhere
    header = ('{"__metadata__":{"\\u00e9\\ud83d\\ude00\\n":"\\"\\\\\\/\\b\\f\\r\\t"},'
              '"x":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},'
              '"z":{"dtype":"F32","shape":[0,4],"data_offsets":[3,3]},'
              '"y":{"dtype":"F32","shape":[1],"data_offsets":[3,7]}}  ')
    (tmp_path / "esc.safetensors").write_bytes(raw_st(header, bytes(7)))
    dump = expect_ok(run(build["rt_tool"], "st-dump", tmp_path / "esc.safetensors"))
    key, value = "é😀\n".encode().hex(), '"\\/\b\f\r\t'.encode().hex()
    assert f"meta {key} {value}" in dump
    assert f"tensor {b'y'.hex()} F32 [1] 3 4" in dump


def test_npy_writer(build, tmp_path):
    expect_ok(run(build["rt_tool"], "npy-write", tmp_path / "a_"))
    f = np.arange(24, dtype=np.float32) * 0.5 - 3
    assert np.load(tmp_path / "a_0d.npy").shape == () and np.load(tmp_path / "a_0d.npy") == -3
    np.testing.assert_array_equal(np.load(tmp_path / "a_1d.npy"), f[:5])
    np.testing.assert_array_equal(np.load(tmp_path / "a_3d.npy"), f.reshape(2, 3, 4))
    np.testing.assert_array_equal(np.load(tmp_path / "a_i32.npy"),
                                  np.array([1, -2, 3, -4, 2**31 - 1], np.int32))
    for name in ("a_0d.npy", "a_3d.npy"):
        raw = (tmp_path / name).read_bytes()
        assert raw[6:8] == b"\x01\x00" and (10 + struct.unpack("<H", raw[8:10])[0]) % 64 == 0


def test_npy_reader(build, tmp_path):
    np.save(tmp_path / "a.npy", np.array([[1, -2], [3, 2**40]], np.int64))
    out = expect_ok(run(build["rt_tool"], "npy-dump", tmp_path / "a.npy"))
    assert out == f"shape [2, 2]\nvalues 1 -2 3 {2**40}\n"
    np.save(tmp_path / "b.npy", np.array([7, 8, 9], np.int32))
    assert expect_ok(run(build["rt_tool"], "npy-dump", tmp_path / "b.npy")) == \
        "shape [3]\nvalues 7 8 9\n"


def test_rng_deterministic(build):
    n = 2000
    a = expect_ok(run(build["rt_tool"], "rng", 42, n)).split()
    assert a == expect_ok(run(build["rt_tool"], "rng", 42, n)).split()
    assert a != expect_ok(run(build["rt_tool"], "rng", 43, n)).split()
    rng = Xoshiro(42)
    ref = [rng.next() for _ in range(3 * n)]
    assert [int(v) for v in a[:n]] == ref[:n]
    u = np.array(a[n:2 * n], float)
    assert list(u) == [(v >> 11) * 2.0**-53 for v in ref[n:2 * n]]
    # Box-Muller on the next uniforms: pairs (cos, sin) from (1 - u1, u2)
    r = [(v >> 11) * 2.0**-53 for v in ref[2 * n:]]
    z_ref = []
    for u1, u2 in zip(r[0::2], r[1::2]):
        rad = math.sqrt(-2 * math.log(1 - u1))
        z_ref += [rad * math.cos(2 * math.pi * u2), rad * math.sin(2 * math.pi * u2)]
    z = np.array(a[2 * n:], float)
    np.testing.assert_allclose(z, z_ref[:n], rtol=1e-12, atol=1e-12)
    assert abs(z.mean()) < 0.08 and abs(z.std() - 1) < 0.06


def test_masked_lm_corruption_fractions_and_determinism(build):
    """kiln_mlm_mask, the masked-language-model recipe of Devlin et al. 2019: over 10^6 positions the chosen
    fraction is within 1% of 15%, and of the chosen ones the masked, random and kept fractions within 1% of
    80%, 10% and 10% (a random replacement that draws the token itself shows as kept: 10% * 255/256 and
    10% + 10% / 256); no position breaks the rules; a seed gives the same corruption every time."""
    n = 1_000_000
    chosen, masked, random, kept, bad, h = expect_ok(run(build["rt_tool"], "mlm", 7, n, 0.15)).split()
    chosen, masked, random, kept = int(chosen), int(masked), int(random), int(kept)
    assert int(bad) == 0 and chosen == masked + random + kept
    assert abs(chosen / n - 0.15) < 0.01
    assert abs(masked / chosen - 0.8) < 0.01
    assert abs(random / chosen - 0.1 * 255 / 256) < 0.01
    assert abs(kept / chosen - (0.1 + 0.1 / 256)) < 0.01
    assert expect_ok(run(build["rt_tool"], "mlm", 7, n, 0.15)).split()[-1] == h
    assert expect_ok(run(build["rt_tool"], "mlm", 8, n, 0.15)).split()[-1] != h
    other = expect_ok(run(build["rt_tool"], "mlm", 7, n, 0.3)).split()
    assert abs(int(other[0]) / n - 0.3) < 0.01


@pytest.mark.parametrize("w, h", [(1, 1), (37, 23), (300, 200)])
def test_png_encoder_round_trips_through_zlib(build, tmp_path, w, h):
    """kiln_png_encode (runtime/kiln_plot.c): its chunks' CRCs, its zlib stream (fixed-Huffman deflate with runs)
    as zlib decodes it, and after undoing the row filters exactly the picture it was given: flat blocks,
    gradients and noise, so that runs, repeated rows and literals all occur."""
    import zlib
    path = tmp_path / "t.png"
    expect_ok(run(build["rt_tool"], "png", w, h, 5, path))
    png = path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, i = [], 8
    while i < len(png):
        n, kind = struct.unpack(">I", png[i:i + 4])[0], png[i + 4:i + 8]
        body = png[i + 8:i + 8 + n]
        assert zlib.crc32(kind + body) == struct.unpack(">I", png[i + 8 + n:i + 12 + n])[0]
        chunks.append((kind, body))
        i += 12 + n
    assert [k for k, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    assert struct.unpack(">IIBBBBB", chunks[0][1]) == (w, h, 8, 2, 0, 0, 0)
    raw, stride = zlib.decompress(chunks[1][1]), 3 * w
    assert len(raw) == h * (stride + 1)
    prev = bytearray(stride)
    for y in range(h):
        kind, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if kind == 1:
            for x in range(3, stride):
                row[x] = (row[x] + row[x - 3]) & 255
        elif kind == 2:
            row = bytearray((a + b) & 255 for a, b in zip(row, prev))
        else:
            assert kind == 0
        for x in range(w):
            kind = (x // 16 + y // 16) % 3
            c = 0x336699 if kind == 0 else ((x * 3 + y) & 255) * 0x010101 if kind == 1 else \
                ((x * 73856093) ^ (y * 19349663) ^ (5 * 83492791)) & 0xFFFFFF
            assert tuple(row[3 * x:3 * x + 3]) == (c >> 16, (c >> 8) & 255, c & 255), (x, y)
        prev = row


def test_an_svg_of_too_many_cells_is_refused_in_one_line(build, tmp_path):
    expect_ok(run(build["rt_tool"], "svg-cells", 1000, tmp_path / "ok.svg"))
    assert (tmp_path / "ok.svg").read_text().count("<rect ") == 1001  # the ground and the cells
    expect_error(run(build["rt_tool"], "svg-cells", 200001, tmp_path / "big.svg"), "too many for an SVG")
    assert not (tmp_path / "big.svg").exists()


def sample_counts(build, t, k, p, logits, n=20000):
    out = expect_ok(run(build["rt_tool"], "sample", t, k, p, n, *logits))
    return np.array(out.split(), int)


def test_sampler(build):
    logits = [2.0, 1.0, 0.5, 0.0, -1.0]
    probs = np.exp(logits) / np.exp(logits).sum()
    c = sample_counts(build, 1, 0, 1, logits)
    assert np.all(np.abs(c / c.sum() - probs) < 0.015), c
    assert list(sample_counts(build, 0, 0, 1, logits, 50)) == [50, 0, 0, 0, 0]  # greedy
    c = sample_counts(build, 1, 2, 1, logits)  # top-k 2
    assert c[2:].sum() == 0 and abs(c[0] / c.sum() - probs[0] / probs[:2].sum()) < 0.015
    c = sample_counts(build, 1, 0, 0.7, logits)  # top-p: p0=0.55 < 0.7 <= p0+p1
    assert c[2:].sum() == 0 and c[1] > 0
    c = sample_counts(build, 0.01, 0, 1, logits, 100)  # low temperature -> argmax
    assert c[0] == 100
    c = sample_counts(build, 1000, 0, 1, logits)  # high temperature -> ~uniform
    assert np.all(np.abs(c / c.sum() - 0.2) < 0.02)


# --------------------------------------------------------------------------
# Malformed safetensors files: every one must fail cleanly with one line


def raw_st(header, data=b"", length=None):
    """Builds safetensors bytes from a header (dict, str or bytes) and data."""
    if isinstance(header, dict):
        header = json.dumps(header)
    if isinstance(header, str):
        header = header.encode()
    return struct.pack("<Q", len(header) if length is None else length) + header + data


def model_entries():
    """A valid header (dict) and data for the fake model's four F32 tensors."""
    entries, off = {}, 0
    for name, shape in PARAM_SHAPES.items():
        n = 4 * math.prod(shape)
        entries[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    return entries, bytes(off)


def small(extra=None, data=bytes(16)):
    """A header with one 4-float tensor 'a' (plus extra entries)."""
    h = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    h.update(extra or {})
    return h, data


def case_model_variant(mutate):
    h, data = model_entries()
    mutate(h)
    return raw_st(h, data)


def _wrong_shape(h):
    h["embed.weight"] = {"dtype": "F32", "shape": [VOCAB, VOCAB], "data_offsets": [0, 100]}


MALFORMED = {
    "empty": (b"", "too short to be safetensors (0 bytes"),
    "truncated": (b"\x05\x00\x00\x00\x00", "too short to be safetensors (5 bytes"),
    "huge_header_len": (struct.pack("<Q", 2**32) + b" " * 1016,
                        "header length 4294967296 exceeds file size 1024"),
    "max_u64_header_len": (b"\xff" * 8 + b"{}", "header length 18446744073709551615 exceeds"),
    "header_past_eof": (raw_st(b"{}      ", length=9), "header length 9 exceeds file size 16"),
    "bad_utf8": (raw_st(b'{"a\xff":1}'), "header is not valid UTF-8 (byte 0xff"),
    "overlong_utf8": (raw_st(b'{"\xc0\xaf":1}'), "not valid UTF-8"),
    "bad_json": (raw_st('{"a":}'), "header is not valid JSON: unexpected character '}'"),
    "truncated_json": (raw_st('{"a": {"dtype": "F32"'), "not valid JSON: unexpected end"),
    "trailing_comma": (raw_st('{"a":1,}'), "not valid JSON"),
    "leading_zero": (raw_st('{"a":[01]}'), "not valid JSON"),
    "single_quotes": (raw_st("{'a':1}"), "not valid JSON"),
    "empty_header": (raw_st(""), "not valid JSON: unexpected end of input"),
    "control_char": (raw_st('{"a\x01":1}'), "unescaped control character 0x01"),
    "lone_surrogate": (raw_st('{"\\ud800":1}'), "unpaired high surrogate"),
    "low_surrogate": (raw_st('{"\\udc00x":1}'), "unpaired low surrogate"),
    "nul_escape": (raw_st('{"a\\u0000":1}'), "\\u0000 (NUL)"),
    "bad_escape": (raw_st('{"a\\q":1}'), "invalid escape"),
    "deep_nesting": (raw_st("[" * 100 + "]" * 100), "nesting deeper than 64"),
    "not_object": (raw_st("[1, 2]"), "header is not a JSON object"),
    "trailing_garbage": (raw_st(b'{}  x', b""), "unexpected trailing data after the header JSON"),
    "trailing_newline": (raw_st(b"{}\n"), "only space padding"),
    "duplicate_key": (raw_st(b'{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},'
                             b'"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}'),
                      "duplicate key 'a'"),
    "metadata_not_object": (raw_st({"__metadata__": ["x"]}), "__metadata__ must be an object"),
    "metadata_value_int": (raw_st({"__metadata__": {"format": 1}}),
                           "__metadata__ value for key 'format' must be a string"),
    "entry_not_object": (raw_st({"a": [1]}), "tensor 'a': entry must be a JSON object"),
    "missing_dtype": (raw_st({"a": {"shape": [0], "data_offsets": [0, 0]}}),
                      "tensor 'a': missing field 'dtype'"),
    "missing_offsets": (raw_st({"a": {"dtype": "F32", "shape": [0]}}),
                        "missing field 'data_offsets'"),
    "extra_field": (raw_st({"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0],
                                  "foo": 1}}), "tensor 'a': unexpected field 'foo'"),
    "unknown_dtype": (raw_st({"a": {"dtype": "F8", "shape": [0], "data_offsets": [0, 0]}}),
                      "tensor 'a': unknown dtype 'F8'"),
    "dtype_not_string": (raw_st({"a": {"dtype": 4, "shape": [0], "data_offsets": [0, 0]}}),
                         "dtype must be a string"),
    "rank_9": (raw_st({"a": {"dtype": "U8", "shape": [1] * 9, "data_offsets": [0, 1]}}, b"\0"),
               "rank 9 exceeds the maximum of 8"),
    "negative_dim": (raw_st({"a": {"dtype": "F32", "shape": [2, -3], "data_offsets": [0, 0]}}),
                     "shape dimension 1 is -3, not a non-negative integer"),
    "fractional_dim": (raw_st('{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,0]}}'),
                       "shape dimension 0 is 1.5, not a non-negative integer"),
    "huge_dim": (raw_st('{"a":{"dtype":"F32","shape":[99999999999999999999],'
                        '"data_offsets":[0,0]}}'), "shape dimension 0 is 1e+20"),
    "string_dim": (raw_st({"a": {"dtype": "F32", "shape": ["4"], "data_offsets": [0, 16]}}),
                   "shape dimension 0 is a string"),
    "shape_overflow": (raw_st({"a": {"dtype": "F32", "shape": [2**42 + 1, 2**22],
                                     "data_offsets": [0, 0]}}),
                       "shape [4398046511105, 4194304] overflows the element count"),
    "bytes_overflow": (raw_st({"a": {"dtype": "F32", "shape": [2**62],
                                     "data_offsets": [0, 0]}}), "overflows the byte count"),
    "big_dim_mismatch": (raw_st({"a": {"dtype": "F32", "shape": [2**42 + 1],
                                       "data_offsets": [0, 16]}}, bytes(16)),
                         "do not match shape [4398046511105] of F32 (17592186044420 bytes)"),
    "offsets_one_int": (raw_st({"a": {"dtype": "F32", "shape": [0], "data_offsets": [0]}}),
                        "data_offsets must be an array of two non-negative integers"),
    "offsets_negative": (raw_st({"a": {"dtype": "F32", "shape": [0], "data_offsets": [-1, 0]}}),
                         "data_offsets must be an array of two non-negative integers"),
    "offsets_reversed": (raw_st({"a": {"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}},
                                bytes(16)), "data_offsets [16, 0] are reversed"),
    "offsets_out_of_bounds": (raw_st({"a": {"dtype": "U8", "shape": [2000],
                                            "data_offsets": [0, 2000]}}, bytes(1000)),
                              "data_offsets [0, 2000] are outside the data section (1000 bytes)"),
    "size_mismatch": (case_model_variant(_wrong_shape),
                      "tensor 'embed.weight': data_offsets [0, 100] do not match shape "
                      "[256, 256] of F32 (262144 bytes)"),
    "overlap": (raw_st(*small({"b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})),
                "tensors 'a' [0, 16] and 'b' [8, 16] overlap"),
    "gap": (raw_st(*small({"b": {"dtype": "F32", "shape": [1], "data_offsets": [20, 24]}},
                          bytes(24))),
            "gap in the data section: bytes [16, 20) before tensor 'b'"),
    "trailing_bytes": (raw_st(*small(data=bytes(20))), "4 trailing bytes after the last tensor"),
    "data_without_tensors": (raw_st(b"{}      ", b"x"), "1 trailing bytes after the last tensor"),
}


def model_file(mutate_dict=None, dtype_of=None):
    """A complete weights file written by Python safetensors, optionally altered."""
    from safetensors.numpy import save

    w = random_weights(3)
    if mutate_dict:
        mutate_dict(w)
    if dtype_of:
        w[dtype_of] = w[dtype_of].astype(np.float16)
    return save(w)


MODEL_MISMATCH = {
    "wrong_shape_vs_model": (lambda: model_file(lambda w: w.__setitem__(
        "embed.weight", np.zeros((VOCAB, VOCAB - 1), np.float32))),
        "tensor 'embed.weight' has shape [256, 255], expected [256, 256]"),
    "wrong_rank_vs_model": (lambda: model_file(lambda w: w.__setitem__(
        "bias", np.zeros((1, VOCAB), np.float32))),
        "tensor 'bias' has shape [1, 256], expected [256]"),
    "missing_tensor": (lambda: model_file(lambda w: w.pop("pos.weight")),
                       "missing tensor 'pos.weight'"),
    "extra_tensor": (lambda: model_file(lambda w: w.__setitem__("foo", np.zeros(3, np.float32))),
                     "unexpected tensor 'foo'"),
    "wrong_dtype": (lambda: model_file(dtype_of="embed.weight"),
                    "tensor 'embed.weight' has dtype F16, expected F32"),
}


@pytest.fixture(scope="session")
def malformed_dir(tmp_path_factory):
    """Writes every malformed weights file; returns the directory."""
    d = tmp_path_factory.mktemp("malformed")
    for name, (content, _) in MALFORMED.items():
        (d / f"{name}.safetensors").write_bytes(content)
    for name, (make, _) in MODEL_MISMATCH.items():
        (d / f"{name}.safetensors").write_bytes(make())
    # header length above the 100 MB limit in a (sparse) file big enough to hold it
    with open(d / "header_over_limit.safetensors", "wb") as f:
        f.write(struct.pack("<Q", 150_000_000))
        f.truncate(200_000_000)
    return d


ALL_WEIGHT_CASES = {name: msg for name, (_, msg) in {**MALFORMED, **MODEL_MISMATCH}.items()}
ALL_WEIGHT_CASES["header_over_limit"] = "header length 150000000 exceeds the limit of 100000000"


@pytest.mark.parametrize("binary", ["infer", "asan"])
@pytest.mark.parametrize("case", sorted(ALL_WEIGHT_CASES))
def test_malformed_weights(build, malformed_dir, good_tokens, tmp_path, binary, case):
    path = malformed_dir / f"{case}.safetensors"
    out = tmp_path / "out.npy"
    p = run(build[binary], "forward", "--weights", path, "--tokens", good_tokens, "--out", out)
    expect_error(p, ALL_WEIGHT_CASES[case])
    assert str(path) in p.stderr.decode(errors="replace")
    assert not out.exists()


def test_at_least_twelve_malformed_classes():
    assert len(ALL_WEIGHT_CASES) >= 12


def test_missing_and_directory_weights(build, good_tokens, tmp_path):
    p = run(build["infer"], "forward", "--weights", tmp_path / "nope.safetensors", "--tokens",
            good_tokens, "--out", tmp_path / "o.npy")
    expect_error(p, f"no such file '{tmp_path / 'nope.safetensors'}'")
    p = run(build["infer"], "forward", "--weights", tmp_path, "--tokens", good_tokens, "--out",
            tmp_path / "o.npy")
    expect_error(p, "is a directory")


# --------------------------------------------------------------------------
# Malformed .npy token files and bad token ids


def npy_raw(header, data=b"", version=(1, 0), length=None):
    header = header.encode() if isinstance(header, str) else header
    if version[0] == 1:
        size = struct.pack("<H", len(header) if length is None else length)
    else:
        size = struct.pack("<I", len(header) if length is None else length)
    return b"\x93NUMPY" + bytes(version) + size + header + data


def npy_hdr(descr="<i4", fortran="False", shape="(1, 2)"):
    return f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}\n"


BAD_NPY = {
    "bad_magic": (b"\x93NUMPX\x01\x00" + bytes(60), "not a .npy file"),
    "tiny": (b"\x93NUM", "not a .npy file"),
    "version_3": (npy_raw(npy_hdr(), bytes(8), version=(3, 0)),
                  "unsupported .npy format version 3.0"),
    "header_past_eof": (npy_raw(npy_hdr(), length=5000), ".npy header length 5000 exceeds"),
    "float_dtype": (npy_raw(npy_hdr(descr="<f4"), bytes(8)), "unsupported .npy dtype '<f4'"),
    "big_endian": (npy_raw(npy_hdr(descr=">i4"), bytes(8)), "unsupported .npy dtype '>i4'"),
    "fortran": (npy_raw(npy_hdr(fortran="True"), bytes(8)), "Fortran-order"),
    "garbage_dict": (npy_raw("{'descr': <i4}\n", bytes(8)), "malformed .npy header"),
    "missing_shape": (npy_raw("{'descr': '<i4', 'fortran_order': False}\n", bytes(8)),
                      "missing 'shape'"),
    "unknown_key": (npy_raw("{'descr': '<i4', 'x': 1}\n"), "unexpected or repeated key 'x'"),
    "shape_overflow": (npy_raw(npy_hdr(shape="(1099511627776, 1099511627776)")), "is too large"),
    "truncated_data": (npy_raw(npy_hdr(shape="(2, 3)"), bytes(20)),
                       "data is truncated (shape [2, 3] needs 24 bytes, found 20)"),
    "trailing_data": (npy_raw(npy_hdr(), bytes(12)), "4 unexpected trailing bytes"),
    "rank_1": (npy_raw(npy_hdr(shape="(5,)"), bytes(20)),
               "expected token ids of shape [B, T], got a 1-D array of shape (5,)"),
    "rank_3": (npy_raw(npy_hdr(shape="(1, 2, 3)"), bytes(24)), "got a 3-D array"),
    "batch_0": (npy_raw(npy_hdr(shape="(0, 5)")), "batch size must be at least 1"),
    "seq_0": (npy_raw(npy_hdr(shape="(2, 0)")), "sequence length must be at least 1"),
    "seq_too_long": (npy_raw(npy_hdr(shape=f"(1, {CONTEXT + 1})"), bytes(4 * (CONTEXT + 1))),
                     f"sequence length {CONTEXT + 1} exceeds the model context {CONTEXT}"),
    "id_too_big": (npy_raw(npy_hdr(shape="(2, 3)"),
                           np.array([0, 1, 2, 3, 4, 256], "<i4").tobytes()),
                   "token id 256 at [1, 2] is outside the vocabulary [0, 256)"),
    "id_negative": (npy_raw(npy_hdr(shape="(1, 2)"), np.array([-1, 0], "<i4").tobytes()),
                    "token id -1 at [0, 0] is outside the vocabulary"),
    "id_int64_huge": (npy_raw(npy_hdr(descr="<i8", shape="(1, 2)"),
                              np.array([0, 2**40], "<i8").tobytes()),
                      "token id 1099511627776 at [0, 1]"),
}


@pytest.mark.parametrize("binary", ["infer", "asan"])
@pytest.mark.parametrize("case", sorted(BAD_NPY))
def test_bad_tokens(build, weights, tmp_path, binary, case):
    content, msg = BAD_NPY[case]
    path = tmp_path / f"{case}.npy"
    path.write_bytes(content)
    p = run(build[binary], "forward", "--weights", weights[0], "--tokens", path, "--out",
            tmp_path / "o.npy")
    expect_error(p, msg)
    assert not (tmp_path / "o.npy").exists()


# --------------------------------------------------------------------------
# Command-line errors


USAGE_ERRORS = [
    ([], "missing command"),
    (["frobnicate"], "unknown command 'frobnicate'"),
    (["--bogus", "init"], "unknown flag '--bogus'"),
    (["init", "--out"], "flag '--out' needs a value"),
    (["init"], "'init' needs --out"),
    (["init", "--out", "a", "--out", "b"], "flag '--out' is given more than once"),
    (["init", "--out", "a", "--seed", "-1"], "--seed: '-1' is not a non-negative integer"),
    (["init", "--out", "a", "--seed", "18446744073709551616"], "--seed: 18446744073709551616 is out"),
    (["forward", "--weights", "w", "--tokens", "t", "--out", "o", "--foo", "1"],
     "unknown flag '--foo' for 'forward'"),
    (["forward", "--weights", "w", "--tokens", "t", "--out", "o", "extra"],
     "unexpected argument 'extra'"),
    (["--threads", "0", "bench"], "--threads: 0 is out of range [1, 4096]"),
    (["bench", "--threads", "abc"], "--threads: 'abc' is not an integer"),
    (["bench", "--threads=2x"], "--threads: '2x' is not an integer"),
    (["bench", "--seq", str(CONTEXT + 1)], f"--seq: {CONTEXT + 1} is out of range [1, {CONTEXT}]"),
    (["bench", "--batch", " 1"], "--batch: ' 1' is not an integer"),
    (["bench", "--iters", "0"], "--iters: 0 is out of range"),
    (["generate", "--weights", "w", "--prompt", "x", "--tokens", "12abc"],
     "--tokens: '12abc' is not an integer"),
    (["generate", "--weights", "w", "--prompt", "x"], "'generate' needs --tokens"),
    (["generate", "--weights", "w", "--prompt", "x", "--tokens", "1", "--temperature", "-1"],
     "--temperature: -1 is out of range"),
    (["generate", "--weights", "w", "--prompt", "x", "--tokens", "1", "--temperature", "nan"],
     "--temperature: 'nan' is not a number"),
    (["generate", "--weights", "w", "--prompt", "x", "--tokens", "1", "--top-p", "0"],
     "--top-p: must be greater than 0"),
    (["generate", "--weights", "w", "--prompt", "x", "--tokens", "1", "--top-p", "1.5"],
     "--top-p: 1.5 is out of range [0, 1]"),
    (["generate", "--weights", "w", "--prompt", "x", "--tokens", "1", "--top-k", "-1"],
     "--top-k: -1 is out of range"),
    (["score", "--weights", "w"], "'score' needs a FILE argument"),
    (["score", "--weights", "w", "a", "b"], "unexpected argument 'b'"),
]


@pytest.mark.parametrize("args,msg", USAGE_ERRORS, ids=[" ".join(a) or "none" for a, _ in USAGE_ERRORS])
def test_usage_errors(build, args, msg):
    expect_error(run(build["asan"], *args), msg, code=2)


def test_runtime_cli_errors(build, weights, tmp_path):
    w = weights[0]
    infer = build["asan"]
    expect_error(run(infer, "generate", "--weights", w, "--prompt", "", "--tokens", 3),
                 "the prompt is empty")
    expect_error(run(infer, "generate", "--weights", w, "--prompt", "x" * (CONTEXT + 1),
                     "--tokens", 3), f"the prompt is {CONTEXT + 1} bytes, longer than the model "
                                     f"context {CONTEXT}")
    expect_error(run(infer, "generate", "--weights", tmp_path / "missing", "--prompt", "x",
                     "--tokens", 3), "no such file")
    (tmp_path / "one.txt").write_bytes(b"a")
    expect_error(run(infer, "score", "--weights", w, tmp_path / "one.txt"),
                 "need at least 2 bytes to score, got 1")
    (tmp_path / "empty.txt").write_bytes(b"")
    expect_error(run(infer, "score", "--weights", w, tmp_path / "empty.txt"),
                 "need at least 2 bytes to score, got 0")
    expect_error(run(infer, "score", "--weights", w, tmp_path / "nope.txt"),
                 f"no such file '{tmp_path / 'nope.txt'}'")
    expect_error(run(infer, "score", "--weights", w, tmp_path), "is a directory")
    expect_error(run(infer, "init", "--out", tmp_path / "no" / "dir" / "w.safetensors"),
                 "cannot create a temporary file")
    (tmp_path / "t.npy").write_bytes(npy_raw(npy_hdr(), bytes(8)))
    expect_error(run(infer, "forward", "--weights", w, "--tokens", tmp_path / "t.npy", "--out",
                     tmp_path / "no" / "o.npy"), "cannot create a temporary file")
    expect_error(run(infer, "forward", "--weights", w, "--tokens", tmp_path / "t.npy", "--out",
                     tmp_path), "cannot write")
    # failed writes leave no temporary files behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt", "one.txt", "t.npy"]


def test_small_vocab_byte_checks(build, tmp_path):
    infer = build["infer128"]
    w = tmp_path / "w.safetensors"
    expect_ok(run(infer, "init", "--out", w))
    expect_error(run(infer, "generate", "--weights", w, "--prompt", b"a\xc8b", "--tokens", 1),
                 "prompt byte 200 at offset 1 is outside the vocabulary [0, 128)")
    (tmp_path / "f.txt").write_bytes(b"abc\xc8def")
    expect_error(run(infer, "score", "--weights", w, tmp_path / "f.txt"),
                 "byte 200 at offset 3 is outside the vocabulary [0, 128)")
    out = expect_ok(run(infer, "generate", "--weights", w, "--prompt", "hi", "--tokens", 50))
    assert all(b < 128 for b in out.encode())
    # weights of the 256-vocab model do not fit this one
    big = tmp_path / "big.safetensors"
    expect_ok(run(build["infer"], "init", "--out", big))
    expect_error(run(infer, "score", "--weights", big, tmp_path / "f.txt"), "byte 200")
    (tmp_path / "g.txt").write_bytes(b"abcdef")
    expect_error(run(infer, "score", "--weights", big, tmp_path / "g.txt"),
                 "tensor 'embed.weight' has shape [256, 256], expected [128, 128]")


# --------------------------------------------------------------------------
# Fuzzing (clang with libFuzzer only)


def fuzz_available():
    clang = find_clang()
    if not clang:
        return None
    probe = subprocess.run([clang, "-print-file-name=libclang_rt.fuzzer-x86_64.a"],
                           capture_output=True, text=True)
    path = probe.stdout.strip()
    return clang if probe.returncode == 0 and os.path.isabs(path) and os.path.exists(path) else None


@pytest.mark.skipif(fuzz_available() is None, reason="clang with libFuzzer not available")
def test_fuzz_safetensors(tmp_path, build):
    clang = fuzz_available()
    exe = tmp_path / "fuzz_safetensors"
    p = subprocess.run([clang, "-g", "-O1", "-fsanitize=fuzzer,address,undefined",
                        "-I", str(RT), str(HERE / "fuzz_safetensors.c"), str(RT / "kiln_rt.c"),
                        "-lm", "-o", str(exe)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "valid").write_bytes(raw_st(*small({"b": {"dtype": "F32", "shape": [2, 2],
                                                         "data_offsets": [16, 32]},
                                                   "__metadata__": {"format": "pt"}},
                                                  bytes(32))))
    (corpus / "npy").write_bytes(npy_raw(npy_hdr(), bytes(8)))
    for i, (content, _) in enumerate(MALFORMED.values()):
        if len(content) < 4096:
            (corpus / f"bad{i}").write_bytes(content)
    p = subprocess.run([str(exe), "-max_total_time=20", "-max_len=4096", "-timeout=10",
                        "-rss_limit_mb=2048", f"-artifact_prefix={tmp_path}/", str(corpus)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-4000:]
    assert "Done" in p.stderr
