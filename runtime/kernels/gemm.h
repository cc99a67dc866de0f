/*
 * gemm.h - the matrix-product engine behind every linear layer, its gradients and attention.
 * B is packed into panels of GEMM_NR = 64 columns: panel t holds columns 64t .. 64t+63 of B as K rows of
 * 64 contiguous values, zero-padded past N. C is computed in tiles of GEMM_MR = 6 rows x 64 columns, each
 * summed over all of K in order by one thread (the same bits at any thread count). The tile microkernel
 * is chosen once from the CPU at run time: AVX-512F, AVX2 with FMA, or portable C (any compiler, any CPU);
 * KILN_ISA=avx512|avx2|portable in the environment picks one (a missing unit falls back to portable). */
#ifndef KILN_GEMM_H
#define KILN_GEMM_H

#include "activations.h"

enum { GEMM_MR = 6, GEMM_NR = 64 };

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && !KILN_REAL_IS_DOUBLE
#define KILN_X86_DISPATCH 1
#include <immintrin.h>
#else
#define KILN_X86_DISPATCH 0
#endif

/* acc (GEMM_MR, GEMM_NR) = A rows (mb of them; acc's rows past mb are left unspecified) · B (K, GEMM_NR);
 * A is addressed a[i * a_rs + p * a_cs], B's row p is the GEMM_NR values at b + p * ldb
 * (ldb = GEMM_NR for a packed panel) */
typedef void (*gemm_tile_fn)(real *restrict acc, const real *restrict a, size_t a_rs, size_t a_cs, int mb,
                             const real *restrict b, size_t ldb, int K);

KILN_KERNEL void gemm_tile_portable(real *restrict acc, const real *restrict a, size_t a_rs, size_t a_cs, int mb,
                               const real *restrict b, size_t ldb, int K) {
    real c[GEMM_MR][GEMM_NR];
    memset(c, 0, sizeof c);
    size_t ro[GEMM_MR];
    for (int i = 0; i < GEMM_MR; i++) ro[i] = (size_t)(i < mb ? i : mb - 1) * a_rs;
    for (int p = 0; p < K; p++) {
        const real *ap = a + (size_t)p * a_cs, *bp = b + (size_t)p * ldb;
        for (int i = 0; i < mb; i++) {
            const real ai = ap[ro[i]];
            #pragma omp simd
            for (int j = 0; j < GEMM_NR; j++) c[i][j] += ai * bp[j];
        }
    }
    memcpy(acc, c, sizeof c);
}

#if KILN_X86_DISPATCH
/* 6 x 64 in 24 zmm accumulators; per k: 4 panel loads, 6 broadcasts, 24 FMAs. One row alone (decoding a
 * token) takes a 1 x 64 loop instead of computing six copies of it; each value is the same chain of FMAs. */
__attribute__((target("avx512f")))
KILN_KERNEL void gemm_tile_avx512(float *restrict acc, const float *restrict a, size_t a_rs, size_t a_cs, int mb,
                             const float *restrict b, size_t ldb, int K) {
    if (mb == 1) {
        __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
        for (int p = 0; p < K; p++) {
            const float *bp = b + (size_t)p * ldb;
            const __m512 ai = _mm512_set1_ps(a[(size_t)p * a_cs]);
            c0 = _mm512_fmadd_ps(ai, _mm512_loadu_ps(bp), c0);
            c1 = _mm512_fmadd_ps(ai, _mm512_loadu_ps(bp + 16), c1);
            c2 = _mm512_fmadd_ps(ai, _mm512_loadu_ps(bp + 32), c2);
            c3 = _mm512_fmadd_ps(ai, _mm512_loadu_ps(bp + 48), c3);
        }
        _mm512_storeu_ps(acc, c0);
        _mm512_storeu_ps(acc + 16, c1);
        _mm512_storeu_ps(acc + 32, c2);
        _mm512_storeu_ps(acc + 48, c3);
        return;
    }
    size_t ro[GEMM_MR];
    for (int i = 0; i < GEMM_MR; i++) ro[i] = (size_t)(i < mb ? i : mb - 1) * a_rs;
    __m512 c[GEMM_MR][4];
    for (int i = 0; i < GEMM_MR; i++)
        for (int v = 0; v < 4; v++) c[i][v] = _mm512_setzero_ps();
    for (int p = 0; p < K; p++) {
        const float *ap = a + (size_t)p * a_cs, *bp = b + (size_t)p * ldb;
        __m512 bv[4];
        for (int v = 0; v < 4; v++) bv[v] = _mm512_loadu_ps(bp + 16 * v);
        for (int i = 0; i < GEMM_MR; i++) {
            const __m512 ai = _mm512_set1_ps(ap[ro[i]]);
            for (int v = 0; v < 4; v++) c[i][v] = _mm512_fmadd_ps(ai, bv[v], c[i][v]);
        }
    }
    for (int i = 0; i < GEMM_MR; i++)
        for (int v = 0; v < 4; v++) _mm512_storeu_ps(acc + i * GEMM_NR + 16 * v, c[i][v]);
}

/* The first 32 columns only (6 x 32 in 12 zmm accumulators): the last panel of a product whose width leaves
 * 32 columns or fewer there (a SwiGLU width of 340 leaves 20), half the work of the full tile; the columns it
 * computes are the same FMA chains. acc's columns 32 .. 63 are left unspecified. */
__attribute__((target("avx512f")))
KILN_KERNEL void gemm_tile_avx512_half(float *restrict acc, const float *restrict a, size_t a_rs, size_t a_cs, int mb,
                                  const float *restrict b, size_t ldb, int K) {
    size_t ro[GEMM_MR];
    for (int i = 0; i < GEMM_MR; i++) ro[i] = (size_t)(i < mb ? i : mb - 1) * a_rs;
    __m512 c[GEMM_MR][2];
    for (int i = 0; i < GEMM_MR; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
    for (int p = 0; p < K; p++) {
        const float *ap = a + (size_t)p * a_cs, *bp = b + (size_t)p * ldb;
        const __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
        for (int i = 0; i < GEMM_MR; i++) {
            const __m512 ai = _mm512_set1_ps(ap[ro[i]]);
            c[i][0] = _mm512_fmadd_ps(ai, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(ai, b1, c[i][1]);
        }
    }
    for (int i = 0; i < GEMM_MR; i++) {
        _mm512_storeu_ps(acc + i * GEMM_NR, c[i][0]);
        _mm512_storeu_ps(acc + i * GEMM_NR + 16, c[i][1]);
    }
}

/* 16 columns at a time (6 x 16 in 12 ymm accumulators), four passes over the panel (two: the _half variant,
 * the first 32 columns) */
KILN_KERNEL inline void gemm_tile_avx2_passes(float *restrict acc, const float *restrict a, size_t a_rs,
                                             size_t a_cs, int mb, const float *restrict b, size_t ldb, int K,
                                             int passes);
__attribute__((target("avx2,fma")))
KILN_KERNEL void gemm_tile_avx2(float *restrict acc, const float *restrict a, size_t a_rs, size_t a_cs, int mb,
                           const float *restrict b, size_t ldb, int K) {
    gemm_tile_avx2_passes(acc, a, a_rs, a_cs, mb, b, ldb, K, GEMM_NR / 16);
}
__attribute__((target("avx2,fma")))
KILN_KERNEL void gemm_tile_avx2_half(float *restrict acc, const float *restrict a, size_t a_rs, size_t a_cs, int mb,
                                const float *restrict b, size_t ldb, int K) {
    gemm_tile_avx2_passes(acc, a, a_rs, a_cs, mb, b, ldb, K, GEMM_NR / 32);
}
__attribute__((target("avx2,fma"), always_inline))
KILN_KERNEL inline void gemm_tile_avx2_passes(float *restrict acc, const float *restrict a, size_t a_rs,
                                             size_t a_cs, int mb, const float *restrict b, size_t ldb, int K,
                                             int passes) {
    size_t ro[GEMM_MR];
    for (int i = 0; i < GEMM_MR; i++) ro[i] = (size_t)(i < mb ? i : mb - 1) * a_rs;
    if (mb == 1) { /* one row (decoding): 1 x 64 in 8 ymm accumulators, the same FMA chains */
        __m256 c[8];
        for (int v = 0; v < 8; v++) c[v] = _mm256_setzero_ps();
        for (int p = 0; p < K; p++) {
            const float *bp = b + (size_t)p * ldb;
            const __m256 ai = _mm256_set1_ps(a[(size_t)p * a_cs]);
            for (int v = 0; v < 8; v++) c[v] = _mm256_fmadd_ps(ai, _mm256_loadu_ps(bp + 8 * v), c[v]);
        }
        for (int v = 0; v < 8; v++) _mm256_storeu_ps(acc + 8 * v, c[v]);
        return;
    }
    for (int q = 0; q < passes; q++) {
        __m256 c[GEMM_MR][2];
        for (int i = 0; i < GEMM_MR; i++) c[i][0] = c[i][1] = _mm256_setzero_ps();
        for (int p = 0; p < K; p++) {
            const float *ap = a + (size_t)p * a_cs, *bp = b + (size_t)p * ldb + 16 * q;
            const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
            for (int i = 0; i < GEMM_MR; i++) {
                const __m256 ai = _mm256_set1_ps(ap[ro[i]]);
                c[i][0] = _mm256_fmadd_ps(ai, b0, c[i][0]);
                c[i][1] = _mm256_fmadd_ps(ai, b1, c[i][1]);
            }
        }
        for (int i = 0; i < GEMM_MR; i++) {
            _mm256_storeu_ps(acc + i * GEMM_NR + 16 * q, c[i][0]);
            _mm256_storeu_ps(acc + i * GEMM_NR + 16 * q + 8, c[i][1]);
        }
    }
}
#endif

KILN_KERNEL gemm_tile_fn gemm_tile_chosen;  /* NULL until gemm_tile() first runs */
KILN_KERNEL gemm_tile_fn gemm_tile_half_chosen;  /* its variant for the first 32 columns */
static const char *gemm_isa_chosen = "portable";

/* picks the microkernel once (call outside parallel regions) */
KILN_KERNEL gemm_tile_fn gemm_tile(void) {
    if (gemm_tile_chosen) return gemm_tile_chosen;
    gemm_tile_fn f = gemm_tile_portable, half = gemm_tile_portable;
    const char *isa = "portable";
#if KILN_X86_DISPATCH
    const char *want = getenv("KILN_ISA");
    __builtin_cpu_init();
    const int has512 = __builtin_cpu_supports("avx512f");
    const int has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (want && strcmp(want, "portable") == 0) {
    } else if (has512 && (!want || strcmp(want, "avx512") == 0)) {
        f = gemm_tile_avx512; half = gemm_tile_avx512_half; isa = "avx512";
    } else if (has2 && (!want || strcmp(want, "avx2") == 0 || strcmp(want, "avx512") == 0)) {
        f = gemm_tile_avx2; half = gemm_tile_avx2_half; isa = "avx2";
    }
#endif
    gemm_isa_chosen = isa;
    gemm_tile_half_chosen = half;
    gemm_tile_chosen = f;
    return f;
}

/* the microkernel this CPU runs: "avx512", "avx2" or "portable" */
KILN_KERNEL const char *gemm_isa(void) { gemm_tile(); return gemm_isa_chosen; }

/* panels (K, N rounded up to GEMM_NR) <- B (K, N) with B[p][j] = src[p * b_rs + j * b_cs]:
 * b_cs = 1 for a row-major B, b_rs = 1 and b_cs = K for the transpose of a weight W (N, K) */
KILN_KERNEL void gemm_pack(real *restrict panels, const real *restrict src, size_t b_rs, size_t b_cs, int K, int N) {
    const int ntiles = (N + GEMM_NR - 1) / GEMM_NR;
    #pragma omp parallel for schedule(static)
    for (int t = 0; t < ntiles; t++) {
        real *restrict panel = panels + (size_t)t * K * GEMM_NR;
        const int n0 = t * GEMM_NR, nb = N - n0 < GEMM_NR ? N - n0 : GEMM_NR;
        if (b_cs == 1) { /* rows of B: a copy of 64 values per row (an inline loop, not a memcpy call) */
            for (int p = 0; p < K; p++) {
                real *restrict dst = panel + (size_t)p * GEMM_NR;
                const real *restrict row = src + (size_t)p * b_rs + n0;
                if (nb == GEMM_NR) {
                    #pragma omp simd
                    for (int j = 0; j < GEMM_NR; j++) dst[j] = row[j];
                } else {
                    for (int j = 0; j < GEMM_NR; j++) dst[j] = j < nb ? row[j] : 0;
                }
            }
        } else { /* columns of B (rows of a weight): 16 rows of the panel at a time, so that the strided
                  * stores of one column stay within 16 cache lines while the next columns fill them */
            for (int p0 = 0; p0 < K; p0 += 16) {
                const int pb = K - p0 < 16 ? K - p0 : 16;
                for (int j = 0; j < GEMM_NR; j++) {
                    const real *col = src + (size_t)(n0 + j) * b_cs + (size_t)p0 * b_rs;
                    real *dst = panel + (size_t)p0 * GEMM_NR + j;
                    if (j < nb) for (int p = 0; p < pb; p++) dst[(size_t)p * GEMM_NR] = col[(size_t)p * b_rs];
                    else for (int p = 0; p < pb; p++) dst[(size_t)p * GEMM_NR] = 0;
                }
            }
        }
    }
}

/* act | GEMM_RESIDUAL_MULTIPLIES: the residual multiplies the result instead of being added (a gated linear
 * unit's up projection times its activated gate) */
enum { GEMM_RESIDUAL_MULTIPLIES = 256 };

/* the epilogue of one row of a tile: c[j] = act(r[j] + bias[j]) + res[j] for j < n (bias, res may be NULL),
 * or times res[j] with GEMM_RESIDUAL_MULTIPLIES; act: KILN_ACT_none (0) or a code of activations.h, whose
 * formulas the separate kernels use too */
KILN_KERNEL void gemm_epilogue(real *restrict c, const real *restrict r, const real *restrict bias, int act,
                          const real *restrict res, int n) {
    if (act & GEMM_RESIDUAL_MULTIPLIES) {
        act &= ~GEMM_RESIDUAL_MULTIPLIES;
        if (act == 0 && res) {
            if (bias) {
                #pragma omp simd
                for (int j = 0; j < n; j++) c[j] = (r[j] + bias[j]) * res[j];
            } else {
                #pragma omp simd
                for (int j = 0; j < n; j++) c[j] = r[j] * res[j];
            }
            return;
        }
        gemm_epilogue(c, r, bias, act, NULL, n);
        if (res) {
            #pragma omp simd
            for (int j = 0; j < n; j++) c[j] *= res[j];
        }
        return;
    }
    if (act == 0) { /* the common case, one pass with no staging copy */
        if (bias && res) {
            #pragma omp simd
            for (int j = 0; j < n; j++) c[j] = r[j] + bias[j] + res[j];
        } else if (bias) {
            #pragma omp simd
            for (int j = 0; j < n; j++) c[j] = r[j] + bias[j];
        } else if (res) {
            #pragma omp simd
            for (int j = 0; j < n; j++) c[j] = r[j] + res[j];
        } else {
            #pragma omp simd
            for (int j = 0; j < n; j++) c[j] = r[j];
        }
        return;
    }
    real v[GEMM_NR];
    if (bias) {
        #pragma omp simd
        for (int j = 0; j < n; j++) v[j] = r[j] + bias[j];
    } else {
        memcpy(v, r, (size_t)n * sizeof(real));
    }
    switch (act) {
#define KILN_EPILOGUE_ACT(name, id)                                  \
    case id:                                                         \
        _Pragma("omp simd")                                          \
        for (int j = 0; j < n; j++) v[j] = kiln_act_##name(v[j]);   \
        break;
    KILN_ACTIVATIONS(KILN_EPILOGUE_ACT)
#undef KILN_EPILOGUE_ACT
#define KILN_EPILOGUE_MATH(name, id)                                 \
    case id:                                                         \
        for (int j = 0; j < n; j++) v[j] = kiln_act_##name(v[j]);   \
        break;
    KILN_MATH_FUNCTIONS(KILN_EPILOGUE_MATH)
#undef KILN_EPILOGUE_MATH
    default: break;
    }
    if (res) {
        #pragma omp simd
        for (int j = 0; j < n; j++) c[j] = v[j] + res[j];
    } else {
        memcpy(c, v, (size_t)n * sizeof(real));
    }
}

/* one tile of C: rows m0 .. m0+mb-1 and columns n0 .. n0+nb-1 = the epilogue of A's rows (addressed as
 * in gemm_panels) times one packed panel; bias (from column n0) and residual (rows of stride ldc) may be NULL */
KILN_KERNEL void gemm_panel_tile(gemm_tile_fn tile, real *restrict C, size_t ldc, const real *restrict A, size_t a_rs,
                            size_t a_cs, const real *restrict panel, size_t m0, int mb, int n0, int nb, int K,
                            const real *restrict bias, int act, const real *restrict residual) {
    _Alignas(64) real acc[GEMM_MR * GEMM_NR];
    /* a last panel of 32 columns or fewer takes the half tile of the same microkernel family */
    if (nb <= GEMM_NR / 2 && tile == gemm_tile_chosen) tile = gemm_tile_half_chosen;
    tile(acc, A + m0 * a_rs, a_rs, a_cs, mb, panel, GEMM_NR, K);
    for (int i = 0; i < mb; i++)
        gemm_epilogue(C + (m0 + i) * ldc + n0, acc + i * GEMM_NR, bias ? bias + n0 : NULL, act,
                      residual ? residual + (m0 + i) * ldc + n0 : NULL, nb);
}

/* C (M, N) = act(A (M, K) · B (K, N) + bias) + residual, B given as packed panels: panel t at
 * panels + t * K * GEMM_NR for the N / GEMM_NR full ones, the last partial one (if any) at tail.
 * A is addressed A[i * a_rs + p * a_cs]; C and residual have rows of stride ldc; bias (N) and residual
 * may be NULL; act as in gemm_epilogue. Tiles go to threads in column-major order, so each thread
 * sweeps its panels down the rows of A. */
KILN_KERNEL void gemm_panels(real *restrict C, size_t ldc, const real *restrict A, size_t a_rs, size_t a_cs,
                        const real *restrict panels, const real *restrict tail, size_t M, int N, int K,
                        const real *restrict bias, int act, const real *restrict residual) {
    const gemm_tile_fn tile = gemm_tile();
    const size_t mtiles = (M + GEMM_MR - 1) / GEMM_MR, ntiles = (size_t)(N + GEMM_NR - 1) / GEMM_NR;
    const int nfull = N / GEMM_NR;
    #pragma omp parallel for schedule(static)
    for (size_t w = 0; w < mtiles * ntiles; w++) {
        const int t = (int)(w / mtiles);
        const size_t m0 = (w % mtiles) * GEMM_MR;
        const int n0 = t * GEMM_NR, nb = N - n0 < GEMM_NR ? N - n0 : GEMM_NR;
        const int mb = M - m0 < GEMM_MR ? (int)(M - m0) : GEMM_MR;
        const real *panel = t < nfull ? panels + (size_t)t * K * GEMM_NR : tail;
        gemm_panel_tile(tile, C, ldc, A, a_rs, a_cs, panel, m0, mb, n0, nb, K, bias, act, residual);
    }
}

/* C (M, N) = A (M, K) · B (K, N) + acc with B rows of stride ldb, packing B into panels (K x N rounded up to
 * 64) first; acc (rows of stride ldc, added in the epilogue) may be NULL */
KILN_KERNEL void gemm(real *restrict C, const real *restrict A, const real *restrict B, const real *restrict acc,
                 real *restrict panels, size_t M, int N, int K, size_t a_rs, size_t a_cs, int ldb, int ldc) {
    gemm_pack(panels, B, (size_t)ldb, 1, K, N);
    gemm_panels(C, (size_t)ldc, A, a_rs, a_cs, panels, panels + (size_t)(N / GEMM_NR) * K * GEMM_NR, M, N, K, NULL, 0, acc);
}

/* A linear layer's weight W (N, K) rearranged in place for gemm_panels: each block of 64 rows becomes one
 * panel of Wᵀ (K x 64), the last N % 64 rows stay as they are; tmp holds 64 x K values. */
KILN_KERNEL void pack_weight_in_place(real *restrict w, int N, int K, real *restrict tmp) {
    for (int t = 0; t < N / GEMM_NR; t++) {
        real *blk = w + (size_t)t * GEMM_NR * K;
        memcpy(tmp, blk, (size_t)GEMM_NR * K * sizeof(real));
        gemm_pack(blk, tmp, 1, (size_t)K, K, GEMM_NR);
    }
}

/* The inverse of pack_weight_in_place: each panel (K x 64) back to its 64 rows of W (64 x K). */
KILN_KERNEL void unpack_weight_in_place(real *restrict w, int N, int K, real *restrict tmp) {
    for (int t = 0; t < N / GEMM_NR; t++) {
        real *blk = w + (size_t)t * GEMM_NR * K;
        memcpy(tmp, blk, (size_t)GEMM_NR * K * sizeof(real));
        #pragma omp parallel for schedule(static)
        for (int j = 0; j < GEMM_NR; j++)
            for (int p = 0; p < K; p++) blk[(size_t)j * K + p] = tmp[(size_t)p * GEMM_NR + j];
    }
}

#endif /* KILN_GEMM_H */
