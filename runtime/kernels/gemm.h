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

/* acc (GEMM_MR, GEMM_NR) = A rows (mb of them; acc's rows past mb are left unspecified) · B (K, GEMM_NR);
 * A is addressed a[i * a_rs + p * a_cs], B's row p is the GEMM_NR values at b + p * ldb
 * (ldb = GEMM_NR for a packed panel) */
typedef void (*gemm_tile_fn)(real *restrict acc, const real *restrict a, size_t a_rs, size_t a_cs, int mb,
                             const real *restrict b, size_t ldb, int K);

/* The tile kernels come in two kinds of one body: from zero, and `_acc`, which continues the sums already in
 * acc (a product summed over K in blocks: the same chain of operations as one pass over all of K). */
#define KILN_GEMM_TILE_PAIR(name, attr)                                                                       \
    attr KILN_KERNEL void name(real *restrict acc, const real *restrict a, size_t a_rs, size_t a_cs, int mb,      \
                              const real *restrict b, size_t ldb, int K) {                                      \
        name##_body(acc, a, a_rs, a_cs, mb, b, ldb, K, 0);                                                    \
    }                                                                                                         \
    attr KILN_KERNEL void name##_acc(real *restrict acc, const real *restrict a, size_t a_rs, size_t a_cs,        \
                                    int mb, const real *restrict b, size_t ldb, int K) {                        \
        name##_body(acc, a, a_rs, a_cs, mb, b, ldb, K, 1);                                                    \
    }

KILN_KERNEL inline void gemm_tile_portable_body(real *restrict acc, const real *restrict a, size_t a_rs, size_t a_cs,
                                                int mb, const real *restrict b, size_t ldb, int K, int load) {
    real c[GEMM_MR][GEMM_NR];
    if (load) memcpy(c, acc, sizeof c);
    else memset(c, 0, sizeof c);
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
KILN_GEMM_TILE_PAIR(gemm_tile_portable, )

#if KILN_X86_DISPATCH
/* 6 x 64 in 24 zmm accumulators; per k: 4 panel loads, 6 broadcasts, 24 FMAs. One row alone (decoding a
 * token) takes a 1 x 64 loop instead of computing six copies of it; each value is the same chain of FMAs. */
__attribute__((target("avx512f"), always_inline))
KILN_KERNEL inline void gemm_tile_avx512_body(float *restrict acc, const float *restrict a, size_t a_rs, size_t a_cs,
                                              int mb, const float *restrict b, size_t ldb, int K, int load) {
    if (mb == 1) {
        __m512 c[4];
        for (int v = 0; v < 4; v++) c[v] = load ? _mm512_loadu_ps(acc + 16 * v) : _mm512_setzero_ps();
        for (int p = 0; p < K; p++) {
            const float *bp = b + (size_t)p * ldb;
            const __m512 ai = _mm512_set1_ps(a[(size_t)p * a_cs]);
            for (int v = 0; v < 4; v++) c[v] = _mm512_fmadd_ps(ai, _mm512_loadu_ps(bp + 16 * v), c[v]);
        }
        for (int v = 0; v < 4; v++) _mm512_storeu_ps(acc + 16 * v, c[v]);
        return;
    }
    size_t ro[GEMM_MR];
    for (int i = 0; i < GEMM_MR; i++) ro[i] = (size_t)(i < mb ? i : mb - 1) * a_rs;
    __m512 c[GEMM_MR][4];
    for (int i = 0; i < GEMM_MR; i++)
        for (int v = 0; v < 4; v++) c[i][v] = load ? _mm512_loadu_ps(acc + i * GEMM_NR + 16 * v) : _mm512_setzero_ps();
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
KILN_GEMM_TILE_PAIR(gemm_tile_avx512, __attribute__((target("avx512f"))))

/* The first 32 columns only (6 x 32 in 12 zmm accumulators): the last panel of a product whose width leaves
 * 32 columns or fewer there (a SwiGLU width of 340 leaves 20), half the work of the full tile; the columns it
 * computes are the same FMA chains. acc's columns 32 .. 63 are left unspecified. */
__attribute__((target("avx512f"), always_inline))
KILN_KERNEL inline void gemm_tile_avx512_half_body(float *restrict acc, const float *restrict a, size_t a_rs,
                                                   size_t a_cs, int mb, const float *restrict b, size_t ldb, int K,
                                                   int load) {
    size_t ro[GEMM_MR];
    for (int i = 0; i < GEMM_MR; i++) ro[i] = (size_t)(i < mb ? i : mb - 1) * a_rs;
    __m512 c[GEMM_MR][2];
    for (int i = 0; i < GEMM_MR; i++)
        for (int v = 0; v < 2; v++) c[i][v] = load ? _mm512_loadu_ps(acc + i * GEMM_NR + 16 * v) : _mm512_setzero_ps();
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
KILN_GEMM_TILE_PAIR(gemm_tile_avx512_half, __attribute__((target("avx512f"))))

/* 16 columns at a time (6 x 16 in 12 ymm accumulators), `passes` passes over the panel: four, or two for the
 * _half variant (the first 32 columns) */
__attribute__((target("avx2,fma"), always_inline))
KILN_KERNEL inline void gemm_tile_avx2_passes(float *restrict acc, const float *restrict a, size_t a_rs,
                                             size_t a_cs, int mb, const float *restrict b, size_t ldb, int K,
                                             int passes, int load) {
    size_t ro[GEMM_MR];
    for (int i = 0; i < GEMM_MR; i++) ro[i] = (size_t)(i < mb ? i : mb - 1) * a_rs;
    if (mb == 1) { /* one row (decoding): 1 x 16·passes in up to 8 ymm accumulators, the same FMA chains */
        __m256 c[8];
        for (int v = 0; v < 2 * passes; v++) c[v] = load ? _mm256_loadu_ps(acc + 8 * v) : _mm256_setzero_ps();
        for (int p = 0; p < K; p++) {
            const float *bp = b + (size_t)p * ldb;
            const __m256 ai = _mm256_set1_ps(a[(size_t)p * a_cs]);
            for (int v = 0; v < 2 * passes; v++) c[v] = _mm256_fmadd_ps(ai, _mm256_loadu_ps(bp + 8 * v), c[v]);
        }
        for (int v = 0; v < 2 * passes; v++) _mm256_storeu_ps(acc + 8 * v, c[v]);
        return;
    }
    for (int q = 0; q < passes; q++) {
        __m256 c[GEMM_MR][2];
        for (int i = 0; i < GEMM_MR; i++)
            for (int v = 0; v < 2; v++)
                c[i][v] = load ? _mm256_loadu_ps(acc + i * GEMM_NR + 16 * q + 8 * v) : _mm256_setzero_ps();
        for (int p = 0; p < K; p++) {
            const float *ap = a + (size_t)p * a_cs, *bp = b + (size_t)p * ldb + 16 * q;
            _mm_prefetch((const char *)(bp + 4 * ldb), _MM_HINT_T0); /* this pass's columns 4 rows on */
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
__attribute__((target("avx2,fma"), always_inline))
KILN_KERNEL inline void gemm_tile_avx2_body(float *restrict acc, const float *restrict a, size_t a_rs, size_t a_cs,
                                            int mb, const float *restrict b, size_t ldb, int K, int load) {
    gemm_tile_avx2_passes(acc, a, a_rs, a_cs, mb, b, ldb, K, GEMM_NR / 16, load);
}
__attribute__((target("avx2,fma"), always_inline))
KILN_KERNEL inline void gemm_tile_avx2_half_body(float *restrict acc, const float *restrict a, size_t a_rs,
                                                 size_t a_cs, int mb, const float *restrict b, size_t ldb, int K,
                                                 int load) {
    gemm_tile_avx2_passes(acc, a, a_rs, a_cs, mb, b, ldb, K, GEMM_NR / 32, load);
}
KILN_GEMM_TILE_PAIR(gemm_tile_avx2, __attribute__((target("avx2,fma"))))
KILN_GEMM_TILE_PAIR(gemm_tile_avx2_half, __attribute__((target("avx2,fma"))))
/* the first 16 columns only (one pass): attention's blocks of 16 keys or fewer (short sentences) and heads of 16 */
__attribute__((target("avx2,fma")))
KILN_KERNEL void gemm_tile_avx2_quarter(float *restrict acc, const float *restrict a, size_t a_rs, size_t a_cs, int mb,
                                        const float *restrict b, size_t ldb, int K) {
    gemm_tile_avx2_passes(acc, a, a_rs, a_cs, mb, b, ldb, K, 1, 0);
}
#endif

KILN_KERNEL gemm_tile_fn gemm_tile_chosen;  /* NULL until gemm_tile() first runs */
/* the chosen family: [1] the first 32 columns only, [2] and [3] the _acc kinds of [0] and [1]; [4] the
 * narrowest tile (from zero) of the family, gemm_tile_narrowest columns wide (16 for AVX2; 32, the half tile,
 * for AVX-512; 64 for portable C) */
KILN_KERNEL gemm_tile_fn gemm_tiles_chosen[5];
static int gemm_tile_narrowest = GEMM_NR;
static const char *gemm_isa_chosen = "portable";

/* picks the microkernel once (call outside parallel regions) */
KILN_KERNEL gemm_tile_fn gemm_tile(void) {
    if (gemm_tile_chosen) return gemm_tile_chosen;
    gemm_tile_fn f[5] = {gemm_tile_portable, gemm_tile_portable, gemm_tile_portable_acc, gemm_tile_portable_acc,
                         gemm_tile_portable};
    int narrowest = GEMM_NR;
    const char *isa = "portable";
#if KILN_X86_DISPATCH
    const char *want = getenv("KILN_ISA");
    __builtin_cpu_init();
    const int has512 = __builtin_cpu_supports("avx512f");
    const int has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (want && strcmp(want, "portable") == 0) {
    } else if (has512 && (!want || strcmp(want, "avx512") == 0)) {
        f[0] = gemm_tile_avx512, f[1] = gemm_tile_avx512_half, f[2] = gemm_tile_avx512_acc, f[3] = gemm_tile_avx512_half_acc;
        f[4] = gemm_tile_avx512_half, narrowest = GEMM_NR / 2;
        isa = "avx512";
    } else if (has2 && (!want || strcmp(want, "avx2") == 0 || strcmp(want, "avx512") == 0)) {
        f[0] = gemm_tile_avx2, f[1] = gemm_tile_avx2_half, f[2] = gemm_tile_avx2_acc, f[3] = gemm_tile_avx2_half_acc;
        f[4] = gemm_tile_avx2_quarter, narrowest = GEMM_NR / 4;
        isa = "avx2";
    }
#endif
    gemm_isa_chosen = isa;
    gemm_tile_narrowest = narrowest;
    memcpy(gemm_tiles_chosen, f, sizeof f);
    gemm_tile_chosen = f[0];
    return f[0];
}

/* the chosen tile (from zero) for a product whose columns past nb are not wanted: the narrowest tile when nb
 * fits it, else the half tile when nb <= 32, else the full one (a narrower tile's columns are the same bits as
 * the full tile's first ones). Call gemm_tile() once before. */
KILN_KERNEL inline gemm_tile_fn gemm_tile_for(int nb) {
    return nb <= gemm_tile_narrowest ? gemm_tiles_chosen[4] : gemm_tiles_chosen[nb <= GEMM_NR / 2];
}

/* how many columns of B (and of acc) the tile gemm_tile_for(nb) reads: nb rounded up to its width */
KILN_KERNEL inline int gemm_tile_width(int nb) {
    return nb <= gemm_tile_narrowest ? gemm_tile_narrowest : nb <= GEMM_NR / 2 ? GEMM_NR / 2 : GEMM_NR;
}

/* the microkernel this CPU runs: "avx512", "avx2" or "portable" */
KILN_KERNEL const char *gemm_isa(void) { gemm_tile(); return gemm_isa_chosen; }

#if KILN_X86_DISPATCH
/* the first K / 8 * 8 rows of a panel's first nb / 8 * 8 columns <- the transpose of w's rows (of stride ldw):
 * panel[p * 64 + j] = w[j * ldw + p], in blocks of 8 x 8 transposed in registers (a weight's packing: the
 * scalar copy of the same values ran at about 8 GB/s against 27-33 for a plain copy on a Zen 3 core) */
__attribute__((target("avx2")))
KILN_KERNEL void gemm_pack_transposed_avx2(float *restrict panel, const float *restrict w, size_t ldw, int K, int nb) {
    for (int p = 0; p + 8 <= K; p += 8)
        for (int j = 0; j + 8 <= nb; j += 8) {
            __m256 r[8], u[8], v[8];
            for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(w + (size_t)(j + i) * ldw + p);
            for (int i = 0; i < 8; i += 2) {  /* pairs of rows interleaved */
                u[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
                u[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
            }
            for (int i = 0; i < 8; i += 4) {  /* then quadruples */
                v[i] = _mm256_shuffle_ps(u[i], u[i + 2], 0x44);
                v[i + 1] = _mm256_shuffle_ps(u[i], u[i + 2], 0xEE);
                v[i + 2] = _mm256_shuffle_ps(u[i + 1], u[i + 3], 0x44);
                v[i + 3] = _mm256_shuffle_ps(u[i + 1], u[i + 3], 0xEE);
            }
            for (int i = 0; i < 4; i++) {  /* then the 128-bit halves: panel row p + i and p + i + 4 */
                _mm256_storeu_ps(panel + (size_t)(p + i) * GEMM_NR + j, _mm256_permute2f128_ps(v[i], v[i + 4], 0x20));
                _mm256_storeu_ps(panel + (size_t)(p + i + 4) * GEMM_NR + j, _mm256_permute2f128_ps(v[i], v[i + 4], 0x31));
            }
        }
}
#endif

/* panels (K, N rounded up to GEMM_NR) <- B (K, N) with B[p][j] = src[p * b_rs + j * b_cs]:
 * b_cs = 1 for a row-major B, b_rs = 1 and b_cs = K for the transpose of a weight W (N, K) */
KILN_KERNEL void gemm_pack(real *restrict panels, const real *restrict src, size_t b_rs, size_t b_cs, int K, int N) {
    const int ntiles = (N + GEMM_NR - 1) / GEMM_NR;
#if KILN_X86_DISPATCH
    /* a copy: the same values whichever path (and safe to decide inside another parallel region) */
    const int transpose8 = b_rs == 1 && b_cs != 1 && __builtin_cpu_supports("avx2");
#endif
    #pragma omp parallel for schedule(static)
    for (int t = 0; t < ntiles; t++) {
        real *restrict panel = panels + (size_t)t * K * GEMM_NR;
        const int n0 = t * GEMM_NR, nb = N - n0 < GEMM_NR ? N - n0 : GEMM_NR;
#if KILN_X86_DISPATCH
        if (transpose8 && K >= 8 && nb >= 8) {  /* blocks of 8 x 8 in registers, the edges as below */
            gemm_pack_transposed_avx2(panel, src + (size_t)n0 * b_cs, b_cs, K, nb);
            const int k8 = K / 8 * 8, j8 = nb / 8 * 8;
            for (int p = 0; p < K; p++)
                for (int j = p < k8 ? j8 : 0; j < GEMM_NR; j++)
                    panel[(size_t)p * GEMM_NR + j] = j < nb ? src[(size_t)(n0 + j) * b_cs + p] : 0;
            continue;
        }
#endif
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
    if (tile == gemm_tile_chosen) tile = gemm_tile_for(nb);
    tile(acc, A + m0 * a_rs, a_rs, a_cs, mb, panel, GEMM_NR, K);
    for (int i = 0; i < mb; i++)
        gemm_epilogue(C + (m0 + i) * ldc + n0, acc + i * GEMM_NR, bias ? bias + n0 : NULL, act,
                      residual ? residual + (m0 + i) * ldc + n0 : NULL, nb);
}

/* K is summed in blocks of about GEMM_KC, for GEMM_MC tiles of rows at a time, whose sums wait in acc between
 * the blocks: the panel's block (GEMM_KC x 64, 16 KB) stays in L1 while the tiles pass over it. Each sum is
 * still one chain over all of K in order: the same bits as one tile call. (A panel of K = 3072 is 768 KB, more
 * than a Zen 3 core's L2: without the blocks it streamed from L3 for every tile. On that core, blocks of 64
 * measured a few per cent faster than 128 and 256 on the training products; docs/benchmarks.md.) A K of at most
 * GEMM_K_ONE_PASS runs in one pass instead: a panel of K = 128 (32 KB) is read from L1 and L2 as fast as in
 * blocks, and the tiles skip the second pass over their sums (the 768 x 128 x 128 products of the translation
 * model's step: 145 -> 154 GFLOP/s on 2 Zen 3 threads). */
enum { GEMM_KC = 64, GEMM_MC = 16, GEMM_K_ONE_PASS = 160 };

/* the row tiles tb .. te-1 of C's columns n0 .. n0+nb-1: the epilogue of A's rows (addressed as in
 * gemm_panels) times one packed panel (K x 64); bias, act and residual as in gemm_panels. Call gemm_tile()
 * once before, outside any parallel region. */
KILN_KERNEL void gemm_panel_rows(real *restrict C, size_t ldc, const real *restrict A, size_t a_rs, size_t a_cs,
                                 const real *restrict panel, size_t M, size_t tb, size_t te, int n0, int nb, int K,
                                 const real *restrict bias, int act, const real *restrict residual) {
    if (K <= GEMM_K_ONE_PASS || te - tb < 2) { /* one pass, or one tile (nothing shares a block) */
        for (size_t t = tb; t < te; t++) {
            const size_t m0 = t * GEMM_MR;
            const int mb = M - m0 < GEMM_MR ? (int)(M - m0) : GEMM_MR;
            gemm_panel_tile(gemm_tile_chosen, C, ldc, A, a_rs, a_cs, panel, m0, mb, n0, nb, K, bias, act, residual);
        }
        return;
    }
    _Alignas(64) real acc[GEMM_MC][GEMM_MR * GEMM_NR];
    const int half = nb <= GEMM_NR / 2, blocks = (K + GEMM_KC - 1) / GEMM_KC, kc = (K + blocks - 1) / blocks;
    for (size_t t0 = tb; t0 < te; t0 += GEMM_MC) {
        const size_t t1 = te - t0 < GEMM_MC ? te : t0 + GEMM_MC;
        for (int k0 = 0; k0 < K; k0 += kc) {
            const int kb = K - k0 < kc ? K - k0 : kc;
            const gemm_tile_fn tile = gemm_tiles_chosen[half + (k0 > 0 ? 2 : 0)];
            for (size_t t = t0; t < t1; t++) {
                const size_t m0 = t * GEMM_MR;
                const int mb = M - m0 < GEMM_MR ? (int)(M - m0) : GEMM_MR;
                tile(acc[t - t0], A + m0 * a_rs + (size_t)k0 * a_cs, a_rs, a_cs, mb, panel + (size_t)k0 * GEMM_NR,
                     GEMM_NR, kb);
            }
        }
        for (size_t t = t0; t < t1; t++) {
            const size_t m0 = t * GEMM_MR;
            const int mb = M - m0 < GEMM_MR ? (int)(M - m0) : GEMM_MR;
            for (int i = 0; i < mb; i++)
                gemm_epilogue(C + (m0 + i) * ldc + n0, acc[t - t0] + i * GEMM_NR, bias ? bias + n0 : NULL, act,
                              residual ? residual + (m0 + i) * ldc + n0 : NULL, nb);
        }
    }
}

/* The tiles of a product, numbered panel by panel (mtiles row tiles each, down the rows), shared out among the
 * threads: each starts with its thread_range of them and works through it from the front, in runs of at most
 * GEMM_MC row tiles of one panel (`run(ctx, panel, tb, te)`: row tiles tb .. te-1 of that panel); a thread
 * that has finished takes GEMM_STEAL tiles at a time from the back of another's. So a thread slowed down (by
 * another process on its core, or by a cache) no longer holds the others at the end of the parallel region.
 * Which thread computes a tile never changes its bits: each tile is summed over all of K by one thread. A
 * thread's share is two 32-bit counters in one word (front, back), claimed by compare-and-swap. */
enum { GEMM_STEAL = 4 };
typedef void (*gemm_run_fn)(const void *ctx, size_t panel, size_t tb, size_t te);
/* a thread's share: the tiles base + front .. base + back - 1, fb holding front (low half) and back */
typedef struct { _Alignas(64) uint64_t fb; size_t base; } gemm_share_slot;

/* claims a run of at most `most` row tiles of one panel from slot s's share, from the front or from the back;
 * 0 when the share is empty */
KILN_KERNEL inline int gemm_claim(gemm_share_slot *s, size_t mtiles, int from_back, size_t most, size_t *panel,
                                  size_t *tb, size_t *te) {
    uint64_t cur = __atomic_load_n(&s->fb, __ATOMIC_ACQUIRE);
    for (;;) {
        const uint64_t f = cur & 0xffffffffu, b = cur >> 32;
        if (f >= b) return 0;
        const size_t w = s->base + (from_back ? b - 1 : f), row = w % mtiles;
        size_t n = from_back ? row + 1 : mtiles - row; /* within one panel */
        if (n > b - f) n = b - f;
        if (n > most) n = most;
        const uint64_t next = from_back ? (b - n) << 32 | f : b << 32 | (f + n);
        if (__atomic_compare_exchange_n(&s->fb, &cur, next, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            *panel = w / mtiles;
            *tb = from_back ? row + 1 - n : row;
            *te = *tb + n;
            return 1;
        }
    }
}

KILN_KERNEL void gemm_share(size_t mtiles, size_t panels, gemm_run_fn run, const void *ctx) {
    const size_t total = mtiles * panels;
#ifdef _OPENMP
    const int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    const int nt = 1;
#endif
    /* one thread (or shares past the 32-bit counters: more tiles than any memory holds): panel by panel */
    if (nt == 1 || total / (size_t)nt >= 0xffffffffu) {
        for (size_t panel = 0; panel < panels; panel++) run(ctx, panel, 0, mtiles);
        return;
    }
#ifdef _OPENMP
    gemm_share_slot slot[nt];
    for (int i = 0; i < nt; i++) {
        size_t w0, w1;
        range_part(total, (size_t)nt, (size_t)i, &w0, &w1);
        slot[i].base = w0;
        slot[i].fb = (uint64_t)(w1 - w0) << 32;
    }
    #pragma omp parallel num_threads(nt)
    {
        const int id = omp_get_thread_num();
        size_t panel, tb, te;
        while (gemm_claim(&slot[id], mtiles, 0, GEMM_MC, &panel, &tb, &te)) run(ctx, panel, tb, te);
        for (int k = 1; k < nt; k++) {  /* then the others' tiles, from the back */
            const int v = (id + k) % nt;
            while (gemm_claim(&slot[v], mtiles, 1, GEMM_STEAL, &panel, &tb, &te)) run(ctx, panel, tb, te);
        }
    }
#endif
}

/* one run of gemm_panels: the row tiles tb .. te-1 of panel t */
typedef struct {
    real *C; size_t ldc; const real *A; size_t a_rs, a_cs; const real *panels, *tail; size_t M; int N, K;
    const real *bias; int act; const real *residual;
} gemm_panels_args;
KILN_KERNEL void gemm_panels_run(const void *ctx, size_t t, size_t tb, size_t te) {
    const gemm_panels_args *g = ctx;
    const int n0 = (int)t * GEMM_NR, nb = g->N - n0 < GEMM_NR ? g->N - n0 : GEMM_NR;
    const real *panel = (int)t < g->N / GEMM_NR ? g->panels + t * g->K * GEMM_NR : g->tail;
    gemm_panel_rows(g->C, g->ldc, g->A, g->a_rs, g->a_cs, panel, g->M, tb, te, n0, nb, g->K, g->bias, g->act, g->residual);
}

/* C (M, N) = act(A (M, K) · B (K, N) + bias) + residual, B given as packed panels: panel t at
 * panels + t * K * GEMM_NR for the N / GEMM_NR full ones, the last partial one (if any) at tail.
 * A is addressed A[i * a_rs + p * a_cs]; C and residual have rows of stride ldc; bias (N) and residual
 * may be NULL; act as in gemm_epilogue. The tiles are shared out by gemm_share: each thread sweeps its
 * panels down the rows of A. */
KILN_KERNEL void gemm_panels(real *restrict C, size_t ldc, const real *restrict A, size_t a_rs, size_t a_cs,
                        const real *restrict panels, const real *restrict tail, size_t M, int N, int K,
                        const real *restrict bias, int act, const real *restrict residual) {
    gemm_tile();
    const gemm_panels_args g = {C, ldc, A, a_rs, a_cs, panels, tail, M, N, K, bias, act, residual};
    gemm_share((M + GEMM_MR - 1) / GEMM_MR, (size_t)(N + GEMM_NR - 1) / GEMM_NR, gemm_panels_run, &g);
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
