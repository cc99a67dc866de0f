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


def compile_and_run(source, tmp_path, cc="gcc", threads=(None,)):
    """Compiles a C program over runtime/kernels with OpenMP and runs it once per OMP_NUM_THREADS value in
    `threads` (None: the default); the standard outputs."""
    src, exe = tmp_path / "check.c", tmp_path / "check"
    src.write_text(source)
    r = subprocess.run([cc, "-O2", "-fopenmp", "-I", str(RT / "kernels"), str(src), "-o", str(exe), "-lm"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return [subprocess.run([str(exe)], capture_output=True, text=True, check=True,
                           env=None if t is None else {"OMP_NUM_THREADS": str(t), "PATH": "/usr/bin:/bin"}).stdout
            for t in threads]


DROPOUT_LANES = r"""
#include "dropout.c"
#include <stdio.h>
/* dropout_forward (AVX2 lanes where the CPU has them) against the scalar rule, bit for bit */
int main(void) {
    const size_t most = 1000;
    float *x = malloc(most * sizeof *x), *y = malloc(most * sizeof *y);
    for (size_t i = 0; i < most; i++) x[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    long bad = 0, kept = 0;
    const float ps[] = {0.1f, 0.5f, 0.9f};
    for (size_t n = 0; n < most; n += n < 40 ? 1 : 97)
        for (int k = 0; k < 3; k++) {
            dropout_forward(y, x, n, ps[k], 1234 + n, 7 + k);
            const float scale = 1 / (1 - ps[k]);
            for (size_t i = 0; i < n; i++) {
                const float want = dropout_keep(1234 + n, 7 + k, i, ps[k]) ? x[i] * scale : 0;
                bad += memcmp(&want, &y[i], sizeof want) != 0;
                kept += y[i] != 0;
            }
        }
    printf("%ld %ld\n", bad, kept);
    return 0;
}
"""


@pytest.mark.parametrize("cc", compilers())
def test_dropout_in_vector_lanes_keeps_and_scales_the_same_elements(cc, tmp_path):
    """The AVX2 path of dropout_forward (64-bit hash lanes, 8 elements at a time, the tail by the scalar
    rule) gives the scalar rule's values bit for bit, at every length up to 40 and more beyond, on 1 and 2
    threads."""
    for out in compile_and_run(DROPOUT_LANES, tmp_path, cc, threads=(1, 2)):
        bad, kept = map(int, out.split())
        assert bad == 0 and kept > 0


GEMM_SHARE = r"""
#define _POSIX_C_SOURCE 200809L
#include "gemm.h"
#include <stdio.h>
#include <time.h>
/* gemm_share with thread 0 slowed down: every tile is run exactly once, runs stay within one panel, and the
 * other threads take some of thread 0's tiles */
static int seen[4000], stolen;
static size_t mt;
static void run(const void *ctx, size_t panel, size_t tb, size_t te) {
    (void)ctx;
    const int id = omp_get_thread_num();
    if (te <= tb || te > mt) __atomic_add_fetch(&stolen, 1000000, __ATOMIC_RELAXED);  /* a malformed run */
    for (size_t t = tb; t < te; t++) {
        __atomic_add_fetch(&seen[panel * mt + t], 1, __ATOMIC_RELAXED);
        if (panel * mt + t < 1000 / (size_t)omp_get_num_threads() && id != 0)
            __atomic_add_fetch(&stolen, 1, __ATOMIC_RELAXED);  /* one of thread 0's own tiles */
    }
    if (id == 0) { struct timespec d = {0, 200000}; nanosleep(&d, NULL); }
}
int main(void) {
    long bad = 0;
    const size_t shapes[][2] = {{50, 20}, {1, 7}, {13, 1}, {3, 3}, {200, 3}, {9, 1}};
    for (int s = 0; s < 6; s++) {
        mt = shapes[s][0];
        memset(seen, 0, sizeof seen);
        if (s > 0) stolen = 0;
        gemm_share(mt, shapes[s][1], run, NULL);
        for (size_t i = 0; i < mt * shapes[s][1]; i++) bad += seen[i] != 1;
        if (s == 0) printf("%d ", stolen);
    }
    printf("%ld\n", bad);
    return 0;
}
"""


def test_gemm_share_runs_every_tile_once_and_lets_idle_threads_take_a_slow_threads_tiles(tmp_path):
    """The GEMM's work sharing (gemm_share in gemm.h), with its first thread slowed down by a sleep in every
    run: on 2 and 4 threads each tile of a 50 x 20 grid and of smaller and taller ones runs exactly once, in
    runs within one panel, and the other threads take over some of the slow thread's tiles."""
    for out in compile_and_run(GEMM_SHARE, tmp_path, threads=(2, 4)):
        stolen, bad = map(int, out.split())
        assert bad == 0 and 0 < stolen < 1000000, out


NARROW_TILES = r"""
#include "gemm.h"
#include <stdio.h>
/* for each microkernel family this CPU has: the tile gemm_tile_for(nb) picks gives the full tile's first nb
 * columns bit for bit, at every nb of 1..64 and row count 1..6, and gemm_tile_width(nb) covers nb */
int main(void) {
    const char *isas[] = {"portable", "avx2", "avx512"};
    float a[6 * 70], b[70 * 64], full[6 * 64], part[6 * 64];
    for (int i = 0; i < 6 * 70; i++) a[i] = (float)((i * 37) % 101) / 101 - 0.5f;
    for (int i = 0; i < 70 * 64; i++) b[i] = (float)((i * 53) % 97) / 97 - 0.5f;
    long bad = 0, families = 0;
    for (int f = 0; f < 3; f++) {
        setenv("KILN_ISA", isas[f], 1);
        gemm_tile_chosen = NULL;
        gemm_tile();
        if (strcmp(gemm_isa(), isas[f]) != 0) continue;
        families++;
        for (int K = 1; K <= 70; K += 23)
            for (int mb = 1; mb <= 6; mb++) {
                gemm_tile_chosen(full, a, 70, 1, mb, b, 64, K);
                for (int nb = 1; nb <= 64; nb++) {
                    bad += gemm_tile_width(nb) < nb;
                    gemm_tile_for(nb)(part, a, 70, 1, mb, b, 64, K);
                    for (int i = 0; i < mb; i++) bad += memcmp(full + i * 64, part + i * 64, (size_t)nb * sizeof(float)) != 0;
                }
            }
    }
    printf("%ld %ld\n", families, bad);
    return 0;
}
"""


def test_narrower_tiles_give_the_full_tiles_first_columns_bit_for_bit(tmp_path):
    """gemm_tile_for(nb) (the quarter tile of 16 columns for AVX2, the half tile of 32, or the full tile) gives
    the same bits as the full tile's first nb columns for every nb and row count, in each microkernel family this
    CPU runs (portable C always), and gemm_tile_width(nb), which attention uses to read heads in place, covers nb."""
    families, bad = map(int, compile_and_run(NARROW_TILES, tmp_path)[0].split())
    assert families >= 1 and bad == 0
