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
