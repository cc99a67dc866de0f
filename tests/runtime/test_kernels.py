"""Every kernel file of runtime/kernels/ is real C: each one compiles on its own with gcc and clang, for float
and double, with OpenMP and with only its simd pragmas, and warnings are errors."""
import concurrent.futures
import subprocess

import pytest

from rtkit import RT, find_clang

KERNELS = sorted(p for p in (RT / "kernels").iterdir() if p.suffix in (".c", ".h"))


def compilers():
    out = ["gcc"]
    clang = find_clang()
    if clang:
        out.append(clang)
    return out


def test_every_op_family_has_a_kernel_file():
    names = {p.name for p in KERNELS}
    assert {"kiln_kernel.h", "gemm.h", "activations.h", "linear.c", "attention.c", "layernorm.c"} <= names


@pytest.mark.parametrize("cc", compilers())
def test_each_kernel_file_compiles_alone_without_warnings(cc, tmp_path):
    jobs = []
    for path in KERNELS:
        for real in ("0", "1"):
            for omp in ("-fopenmp", "-fopenmp-simd"):
                cmd = [cc, "-std=c11", "-O1", "-Wall", "-Wextra", "-Wpedantic", "-Werror", omp,
                       f"-DKILN_REAL_IS_DOUBLE={real}", "-x", "c", "-c", str(path), "-o", "/dev/null"]
                jobs.append((f"{path.name} real={real} {omp}", cmd))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda j: (j[0], subprocess.run(j[1], capture_output=True, text=True)), jobs))
    failures = [f"{name}:\n{r.stderr}" for name, r in results if r.returncode != 0 or r.stderr]
    assert not failures, "\n".join(failures)


DROPOUT_CHECK = r"""
#include "dropout.c"
#include <stdio.h>
/* the documented draw: element i is kept when (hash >> 11) * 2^-53 >= p, compared in double */
static int keep_by_float(uint64_t seed, uint64_t id, uint64_t i, real p) {
    return (double)dropout_bits(seed, id, i) * 0x1.0p-53 >= (double)p;
}
int main(void) {
    const real ps[] = {0.1f, 0.5f, 0.3f, 1e-7f, 0.999f, 0.2f, 0.0f};
    long bad = 0, kept = 0;
    for (int k = 0; k < 7; k++)
        for (uint64_t i = 0; i < 2000000; i++) {
            bad += keep_by_float(77, 3, i, ps[k]) != dropout_keep(77, 3, i, ps[k]);
            kept += k == 0 && dropout_keep(77, 3, i, ps[k]);
        }
    for (int k = 0; k < 7; k++) { /* draws at the threshold and just below it */
        const uint64_t t = dropout_threshold(ps[k]);
        for (uint64_t u = t ? t - 1 : 0; u <= t; u++) bad += ((double)u * 0x1.0p-53 >= (double)ps[k]) != (u >= t);
    }
    printf("%ld %ld\n", bad, kept);
    return 0;
}
"""


def test_dropout_keeps_by_an_integer_threshold_the_elements_its_draw_keeps(tmp_path):
    """dropout_forward compares the hash's 53 bits with ceil(p · 2^53) as integers: the same elements as the
    draw u · 2^-53 >= p in double, for 2·10^6 elements at each of 7 rates and at the thresholds themselves."""
    src = tmp_path / "check.c"
    src.write_text(DROPOUT_CHECK)
    exe = tmp_path / "check"
    r = subprocess.run(["gcc", "-O2", "-I", str(RT / "kernels"), str(src), "-o", str(exe), "-lm"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    bad, kept = map(int, subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split())
    assert bad == 0 and abs(kept / 2e6 - 0.9) < 0.002
