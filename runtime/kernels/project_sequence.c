/*
 * project_sequence.c - Linformer's projection along the sequence (Wang et al. 2020) and its gradients:
 * y[b] = E[:, :T] · x[b], K learned mixtures of the T positions, so that attention to them costs O(T · K).
 * E (K, N) covers the longest sequence N; a shorter one uses its first T columns. Positions whose mask is 0
 * (padding) count as zeros. Every product runs on the matrix-product engine (gemm.h), one sequence at a time.
 */
#ifndef KILN_KERNELS_PROJECT_SEQUENCE_C
#define KILN_KERNELS_PROJECT_SEQUENCE_C

#include "kiln_kernel.h"
#include "gemm.h"

/* zeros row t of packed panels (K rows per panel, N columns) for each masked position t, mask (T) */
KILN_KERNEL void project_sequence_mask_rows(real *restrict panels, const int32_t *restrict mask, int T, int N) {
    const int ntiles = (N + GEMM_NR - 1) / GEMM_NR;
    for (int t = 0; t < T; t++)
        if (!mask[t])
            for (int p = 0; p < ntiles; p++) memset(panels + ((size_t)p * T + t) * GEMM_NR, 0, GEMM_NR * sizeof(real));
}

/* y (B, K, C) = E[:, :T] (K, T) · x[b] (T, C) with masked rows of x as zeros; e (K, N), mask (B, T) or NULL;
 * work: T x C rounded up to 64 */
KILN_KERNEL void project_sequence_forward(real *restrict y, const real *restrict x, const real *restrict e,
                                          const int32_t *restrict mask, real *restrict work, int B, int T, int C,
                                          int K, int N) {
    const real *tail = work + (size_t)(C / GEMM_NR) * T * GEMM_NR;
    for (int b = 0; b < B; b++) {
        gemm_pack(work, x + (size_t)b * T * C, (size_t)C, 1, T, C);
        if (mask) project_sequence_mask_rows(work, mask + (size_t)b * T, T, C);
        gemm_panels(y + (size_t)b * K * C, (size_t)C, e, (size_t)N, 1, work, tail, (size_t)K, C, T, NULL, 0, NULL);
    }
}

/* dx (B, T, C) = E[:, :T]ᵀ (T, K) · dy[b] (K, C), zeros at masked positions; dy (B, K, C); work: K x C
 * rounded up to 64 */
KILN_KERNEL void project_sequence_backward_input(real *restrict dx, const real *restrict dy, const real *restrict e,
                                                 const int32_t *restrict mask, real *restrict work, int B, int T,
                                                 int C, int K, int N) {
    const real *tail = work + (size_t)(C / GEMM_NR) * K * GEMM_NR;
    for (int b = 0; b < B; b++) {
        real *d = dx + (size_t)b * T * C;
        gemm_pack(work, dy + (size_t)b * K * C, (size_t)C, 1, K, C);
        gemm_panels(d, (size_t)C, e, 1, (size_t)N, work, tail, (size_t)T, C, K, NULL, 0, NULL);
        if (mask)
            for (int t = 0; t < T; t++)
                if (!mask[(size_t)b * T + t]) memset(d + (size_t)t * C, 0, (size_t)C * sizeof(real));
    }
}

/* dE (K, N) = Σ_b dy[b] (K, C) · x[b]ᵀ (C, T) in columns 0 .. T-1 (masked positions' columns get nothing),
 * zeros past T; work: C x T rounded up to 64, then one sequence's term (K x T) */
KILN_KERNEL void project_sequence_backward_projection(real *restrict de, const real *restrict dy,
                                                      const real *restrict x, const int32_t *restrict mask,
                                                      real *restrict work, int B, int T, int C, int K, int N) {
    const int width = (T + GEMM_NR - 1) / GEMM_NR * GEMM_NR;
    real *restrict panels = work, *restrict term = work + (size_t)C * width;
    const real *tail = panels + (size_t)(T / GEMM_NR) * C * GEMM_NR;
    memset(de, 0, (size_t)K * N * sizeof(real));
    for (int b = 0; b < B; b++) {
        /* x[b]ᵀ: row p of B is channel p, column t position t */
        gemm_pack(panels, x + (size_t)b * T * C, 1, (size_t)C, C, T);
        if (mask)
            for (int t = 0; t < T; t++)
                if (!mask[(size_t)b * T + t]) {
                    real *col = panels + (size_t)(t / GEMM_NR) * C * GEMM_NR + t % GEMM_NR;
                    for (int p = 0; p < C; p++) col[(size_t)p * GEMM_NR] = 0;
                }
        gemm_panels(term, (size_t)T, dy + (size_t)b * K * C, (size_t)C, 1, panels, tail, (size_t)K, T, C, NULL, 0, NULL);
        #pragma omp parallel for schedule(static)
        for (int k = 0; k < K; k++) {
            real *restrict row = de + (size_t)k * N;
            const real *restrict add = term + (size_t)k * T;
            #pragma omp simd
            for (int t = 0; t < T; t++) row[t] += add[t];
        }
    }
}

#endif /* KILN_KERNELS_PROJECT_SEQUENCE_C */
