"""The generated C and the runtime on a second architecture: a `kiln build --portable` directory is built
for 64-bit ARM with the Debian cross gcc (warning-free under -Wall -Wextra) and run under qemu-user. There the
matrix products take the portable microkernel (no x86 dispatch is compiled in), and the logits and gradients
are checked against PyTorch with the same tolerances as on x86.

Needs gcc-aarch64-linux-gnu and qemu-user (.ci/run installs them); without them the tests skip, except in CI."""
import os
import shutil

import pytest

from kilntest import ROOT, run
from test_gradients import test_gradients_match_pytorch_autograd as check_gradients
from test_parity import GPT2_SMALLER, ODD, compare
from test_training import adamw_run_matches_torch

CROSS_CC = "aarch64-linux-gnu-gcc"
QEMU = "qemu-aarch64"
SYSROOT = "/usr/aarch64-linux-gnu"
PROGRAMS = ("infer", "train", "gradcheck")


def need_cross_tools():
    missing = [t for t in (CROSS_CC, QEMU) if not shutil.which(t)]
    if not missing and os.path.isdir(SYSROOT):
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must install the ARM cross toolchain (missing: {missing or [SYSROOT]})")
    pytest.skip(f"no ARM cross toolchain ({', '.join(missing or [SYSROOT])}); apt install gcc-aarch64-linux-gnu qemu-user")


class ArmBuilds:
    """Like kilntest.Builds, but each model is compiled for aarch64; the returned directory holds wrapper
    scripts named like the programs that run them under qemu."""

    def __init__(self, kiln, tmp):
        self.kiln, self.tmp, self.cache = kiln, tmp, {}

    def build(self, model, *overrides, dtype="f32"):
        key = (model, overrides, dtype)
        if key in self.cache:
            return self.cache[key]
        src = self.tmp / f"src{len(self.cache)}"
        args = [self.kiln, "build", ROOT / model, "-o", src, "--portable", "--no-make", "--dtype", dtype]
        for o in overrides:
            args += ["--set", o]
        r = run(args)
        assert r.returncode == 0, r.stderr
        programs = PROGRAMS if dtype == "f32" else ("gradcheck",)
        r = run(["make", "-C", src, f"CC={CROSS_CC}", *programs])
        assert r.returncode == 0, r.stdout + r.stderr
        assert "warning" not in r.stdout + r.stderr, r.stdout + r.stderr
        assert open(src / programs[0], "rb").read(20)[18] == 183  # ELF e_machine EM_AARCH64
        wrap = self.tmp / f"arm{len(self.cache)}"
        wrap.mkdir()
        for p in programs:
            w = wrap / p
            w.write_text(f'#!/bin/sh\nexec {QEMU} -L {SYSROOT} "{src / p}" "$@"\n')
            w.chmod(0o755)
        self.cache[key] = wrap
        return wrap


@pytest.fixture(scope="module")
def arm(kiln, tmp_path_factory):
    need_cross_tools()
    return ArmBuilds(kiln, tmp_path_factory.mktemp("arm"))


@pytest.mark.parametrize("spec", [GPT2_SMALLER, ODD], ids=["gpt2-smaller", "odd"])
def test_arm_logits_match_pytorch(arm, tmp_path, spec):
    """Both heads (tied, vocab 1000; separate, vocab 97) leave a partial 64-column panel."""
    out = arm.build(spec["file"], *spec["overrides"])
    r = run([out / "infer", "bench", "--batch", "1", "--seq", "4", "--iters", "1", "--warmup", "0"])
    assert r.returncode == 0, r.stderr
    assert "portable kernels" in r.stdout, r.stdout
    compare(arm, tmp_path, spec, 2, spec["cfg"]["context"], seed=5)


def test_arm_gradients_match_pytorch_autograd(arm, tmp_path):
    check_gradients(arm, tmp_path, ODD)


def test_arm_adamw_steps_match_torch(arm, tmp_path):
    """The training binary on ARM (data loader, AdamW with warmup, clipping and decay, the checkpoint that
    infer then scores): every step's loss is PyTorch's."""
    out = arm.build(ODD["file"], *ODD["overrides"])
    src = bytes(i * 7 % ODD["cfg"]["vocab"] for i in range(2000))  # a learnable sequence of valid tokens
    adamw_run_matches_torch(out, tmp_path, ODD["cfg"], src, B=4, T=16, steps=6)


def test_arm_every_vjp_rule_against_finite_differences(arm):
    """Every op's backward kernel, built for ARM in float64, against central differences."""
    out = arm.build("tests/models/all-ops.kiln", dtype="f64")
    r = run([out / "gradcheck", "fd", "--seed", 1, "--samples", 12])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "worst relative error" in r.stdout and ": ok" in r.stdout
