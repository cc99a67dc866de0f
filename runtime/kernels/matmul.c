/*
 * matmul.c - the primitive tier's batched matrix product (`matmul`) on the matrix-product engine (gemm.h), and
 * `transpose` of the last two axes.
 */
#ifndef KILN_KERNELS_MATMUL_C
#define KILN_KERNELS_MATMUL_C

#include "kiln_kernel.h"
#include "gemm.h"

/* c (batch, M, N) = a (batch, M, K) · b (batch, K, N), or b (K, N) for every batch when shared;
 * panels: K x N rounded up to 64 */
KILN_KERNEL void matmul_forward(real *restrict c, const real *restrict a, const real *restrict b, real *restrict panels,
                                size_t batch, int M, int N, int K, int shared) {
    const real *tail = panels + (size_t)(N / GEMM_NR) * K * GEMM_NR;
    for (size_t i = 0; i < batch; i++) {
        if (!shared || i == 0) gemm_pack(panels, b + (shared ? 0 : i * (size_t)K * N), (size_t)N, 1, K, N);
        gemm_panels(c + i * (size_t)M * N, (size_t)N, a + i * (size_t)M * K, (size_t)K, 1, panels, tail, (size_t)M, N, K,
                    NULL, 0, NULL);
    }
}

/* out (batch, N, M) = x (batch, M, N) with the last two axes swapped, in blocks of 16 x 16 */
KILN_KERNEL void transpose_forward(real *restrict out, const real *restrict x, size_t batch, int M, int N) {
    const size_t mb = (size_t)(M + 15) / 16, nb = (size_t)(N + 15) / 16;
    #pragma omp parallel for schedule(static)
    for (size_t w = 0; w < batch * mb * nb; w++) {
        const size_t b = w / (mb * nb), i0 = (w / nb % mb) * 16, j0 = w % nb * 16;
        const real *restrict src = x + b * (size_t)M * N;
        real *restrict dst = out + b * (size_t)M * N;
        for (size_t i = i0; i < i0 + 16 && i < (size_t)M; i++)
            for (size_t j = j0; j < j0 + 16 && j < (size_t)N; j++) dst[j * M + i] = src[i * N + j];
    }
}

#endif /* KILN_KERNELS_MATMUL_C */
