/*
 * matmul.c - the primitive tier's batched matrix product (`matmul`) on the matrix-product engine (gemm.h), and
 * `transpose` of the last two axes.
 */
#ifndef KILN_KERNELS_MATMUL_C
#define KILN_KERNELS_MATMUL_C

#include "kiln_kernel.h"
#include "gemm.h"

/* one run of matmul_forward's unshared products: the row tiles tb .. te-1 of panel u (panel t of batch i) */
typedef struct { real *c; const real *a, *panels; size_t psize; int M, N, K; } matmul_args;
KILN_KERNEL void matmul_run(const void *ctx, size_t u, size_t tb, size_t te) {
    const matmul_args *m = ctx;
    const size_t ntiles = (size_t)(m->N + GEMM_NR - 1) / GEMM_NR, i = u / ntiles, t = u % ntiles;
    const int n0 = (int)t * GEMM_NR, nb = m->N - n0 < GEMM_NR ? m->N - n0 : GEMM_NR;
    gemm_panel_rows(m->c + i * (size_t)m->M * m->N, (size_t)m->N, m->a + i * (size_t)m->M * m->K, (size_t)m->K, 1,
                    m->panels + i * m->psize + t * (size_t)m->K * GEMM_NR, (size_t)m->M, tb, te, n0, nb, m->K, NULL, 0, NULL);
}

/* c (batch, M, N) = a (batch, M, K) · b (batch, K, N), or b (K, N) for every batch when shared. A shared b is
 * one product of all the batch's rows; otherwise every batch's b is packed (one batch per thread) and the tiles
 * of all the products run in one parallel loop. panels: batch (1 when shared) x K x N rounded up to 64 */
KILN_KERNEL void matmul_forward(real *restrict c, const real *restrict a, const real *restrict b, real *restrict panels,
                                size_t batch, int M, int N, int K, int shared) {
    const size_t psize = (size_t)K * ((size_t)(N + GEMM_NR - 1) / GEMM_NR * GEMM_NR);
    if (shared || batch == 1) {
        gemm_pack(panels, b, (size_t)N, 1, K, N);
        gemm_panels(c, (size_t)N, a, (size_t)K, 1, panels, panels + (size_t)(N / GEMM_NR) * K * GEMM_NR, batch * (size_t)M,
                    N, K, NULL, 0, NULL);
        return;
    }
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < batch; i++) gemm_pack(panels + i * psize, b + i * (size_t)K * N, (size_t)N, 1, K, N);
    gemm_tile();
    const matmul_args m = {c, a, panels, psize, M, N, K};
    gemm_share(((size_t)M + GEMM_MR - 1) / GEMM_MR, batch * (size_t)((N + GEMM_NR - 1) / GEMM_NR), matmul_run, &m);
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

/* out (P, B, M, A, Q) = x (P, A, M, B, Q) with axes A and B swapped: runs of Q contiguous values */
KILN_KERNEL void transpose_axes(real *restrict out, const real *restrict x, size_t P, size_t A, size_t M, size_t B, size_t Q) {
    #pragma omp parallel for schedule(static)
    for (size_t w = 0; w < P * A; w++) {
        const size_t p = w / A, a = w % A;
        for (size_t m = 0; m < M; m++)
            for (size_t b = 0; b < B; b++)
                memcpy(out + (((p * B + b) * M + m) * A + a) * Q, x + (((p * A + a) * M + m) * B + b) * Q, Q * sizeof(real));
    }
}

#endif /* KILN_KERNELS_MATMUL_C */
