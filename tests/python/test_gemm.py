"""The matrix-product engine (runtime/kernels/gemm.h) on its own, against NumPy in float64: products whose K is
summed in blocks (with tails of every size), the three layouts of a linear layer's products, the epilogue
(bias, activation, residual added or multiplied), each microkernel this CPU has, and one or two threads. The
blocked sums must be the same bits as one pass over K per tile, and as each other at any thread count."""
import os
import platform
import shutil

import numpy as np
import pytest

from kilntest import ROOT, run

# (M, N, K, layout), with K in blocks of about 64 (GEMM_KC): 4 blocks, a one-row tile and a 6-column last panel;
# 9 uneven blocks of a transposed A; 17 row tiles (two groups, of 16 and 1); a tile and a row; one tile alone
# (one pass); K of one pass (at most GEMM_K_ONE_PASS = 160); and B transposed (a weight) with edges past the 8 x 8
# blocks of its packing, and K < 8
SHAPES = [(13, 70, 200, "nn"), (50, 130, 517, "tn"), (100, 64, 1000, "nt"), (7, 33, 385, "nn"), (1, 64, 600, "nn"),
          (40, 20, 90, "nt"), (45, 70, 150, "nn"), (30, 77, 203, "nt"), (9, 70, 7, "nt")]


def isas():
    flags = open("/proc/cpuinfo").read().split() if os.path.exists("/proc/cpuinfo") else []
    have = ["portable"]
    if platform.machine() in ("x86_64", "AMD64"):
        have += [isa for isa, flag in (("avx2", "avx2"), ("avx512", "avx512f")) if flag in flags]
    return have


@pytest.fixture(scope="module")
def exe(tmp_path_factory):
    cc = shutil.which("gcc") or shutil.which("cc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler")
    out = tmp_path_factory.mktemp("gemm") / "gemm_check"
    r = run([cc, "-O2", "-std=c11", "-fopenmp", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'runtime' / 'kernels'}",
             ROOT / "tests/python/c/gemm_check_main.c", "-o", out, "-lm"])
    assert r.returncode == 0, r.stderr
    return out


def product(exe, tmp, M, N, K, layout, isa, threads, bias=None, res=None, act=0):
    rng = np.random.default_rng(M * 7919 + K)
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    (a.T if layout == "tn" else a).tofile(tmp / "a.bin")
    (b.T if layout == "nt" else b).tofile(tmp / "b.bin")
    files = []
    for name, x in (("bias", bias), ("res", res)):
        if x is None:
            files.append("-")
        else:
            x.astype(np.float32).tofile(tmp / f"{name}.bin")
            files.append(tmp / f"{name}.bin")
    env = dict(os.environ, KILN_ISA=isa, OMP_NUM_THREADS=str(threads))
    r = run([exe, M, N, K, layout, tmp / "a.bin", tmp / "b.bin", *files, act, tmp / "c.bin"], env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == isa
    c = np.fromfile(tmp / "c.bin", dtype=np.float32).reshape(2, M, N)
    return a.astype(np.float64) @ b.astype(np.float64), c[0], c[1]


@pytest.mark.parametrize("isa", isas())
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_blocked_product_matches_numpy_and_one_pass(exe, tmp_path, shape, isa):
    M, N, K, layout = shape
    ref, blocked, one_pass = product(exe, tmp_path, M, N, K, layout, isa, 2)
    assert np.abs(blocked - ref).max() <= 1e-5 * np.abs(ref).max() * np.sqrt(K / 16)
    assert np.array_equal(blocked, one_pass)  # the blocks continue each tile's chain of FMAs
    _, blocked1, _ = product(exe, tmp_path, M, N, K, layout, isa, 1)
    assert np.array_equal(blocked, blocked1)


@pytest.mark.parametrize("isa", isas())
def test_blocked_epilogue_adds_bias_activation_and_residual(exe, tmp_path, isa):
    M, N, K = 25, 100, 450
    rng = np.random.default_rng(5)
    bias, res = rng.standard_normal(N), rng.standard_normal((M, N))
    ref, got, one_pass = product(exe, tmp_path, M, N, K, "nt", isa, 2, bias, res, act=1)  # relu
    want = np.maximum(ref + bias.astype(np.float32), 0) + res.astype(np.float32)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max() * np.sqrt(K / 16)
    assert np.array_equal(got, one_pass)
    ref, got, _ = product(exe, tmp_path, M, N, K, "nn", isa, 2, None, res, act=256)  # the residual multiplies
    want = ref * res.astype(np.float32)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max() * np.sqrt(K / 16)
