"""The vectorisable exp, erf, tanh and log in generated float code, against double-precision libm
(Python's math module) at the accuracy their comments promise."""
import math
import shutil

import pytest

from kilntest import ROOT, run

# gelu and gelu_tanh models, so model.c carries all three functions
MODELS = [("examples/char-gpt-small.kiln", (), "-DWANT_ERF"),
          ("examples/gpt2-small.kiln", ("layers=2", "vocab=1000", "context=64", "dim=96", "heads=4"), "-DWANT_TANH")]


@pytest.fixture(scope="module")
def values(builds, tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler")
    got = {}
    for model, overrides, want in MODELS:
        out = builds.build(model, *overrides)
        exe = tmp_path_factory.mktemp("fastmath") / "fast_math"
        r = run([cc, "-O2", "-std=c11", want, f"-I{out}", f"-I{out}/runtime", ROOT / "tests/python/c/fast_math_main.c",
                 "-o", exe, "-lm"])
        assert r.returncode == 0, r.stderr
        r = run([exe])
        assert r.returncode == 0, r.stderr
        for line in r.stdout.splitlines():
            name, x, y = line.split()
            got.setdefault(name, []).append((float(x), float(y)))
    return got


def test_exp_relative_error(values):
    worst = max(abs(y - math.exp(x)) / math.exp(x) for x, y in values["exp"] if -87 <= x <= 10)
    assert worst <= 2e-7, worst
    # below the clamp it returns about the smallest normal float, never a NaN or negative
    assert all(0 < y < 2e-38 for x, y in values["exp"] if x < -88)


def test_erf_absolute_error(values):
    worst = max(abs(y - math.erf(x)) for x, y in values["erf"])
    assert worst <= 5e-7, worst


def test_log_error(values):
    """Relative to log(x), or absolute where log(x) is small (near 1)."""
    worst = max(abs(y - math.log(x)) / max(1.0, abs(math.log(x))) for x, y in values["log"])
    assert worst <= 2e-7, worst
    assert len(values["log"]) == 2 * 2 * 20001  # both models' builds


def test_tanh_absolute_error(values):
    worst = max(abs(y - math.tanh(x)) for x, y in values["tanh"])
    assert worst <= 3e-7, worst
