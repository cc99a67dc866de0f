/*
 * einsum.c - `einsum` of two operands as one batched matrix product: each operand permuted (when its axes are
 * not already in order) to (batch, M, K) and (batch, K, N), matmul.c's product, and the product (batch, M, N)
 * permuted to the output's order.
 */
#ifndef KILN_KERNELS_EINSUM_C
#define KILN_KERNELS_EINSUM_C

#include "kiln_kernel.h"
#include "matmul.c"

/* out = x with its axes permuted: x has `rank` (1..8) dims `dims`; out's axis j is x's axis perm[j]. Runs of out's
 * last axis in parallel: a copy when that axis is x's last too, a strided gather otherwise. */
KILN_KERNEL void permute_forward(real *restrict out, const real *restrict x, int rank, const size_t *dims, const int *perm) {
    size_t xs[8], od[8], ost[8], s = 1;
    for (int d = rank - 1; d >= 0; d--) { xs[d] = s; s *= dims[d]; }
    for (int j = 0; j < rank; j++) { od[j] = dims[perm[j]]; ost[j] = xs[perm[j]]; }
    const size_t inner = od[rank - 1], is = ost[rank - 1], outer = inner ? s / inner : 0;
    #pragma omp parallel for schedule(static)
    for (size_t o = 0; o < outer; o++) {
        size_t rem = o, off = 0;
        for (int d = rank - 2; d >= 0; d--) { off += (rem % od[d]) * ost[d]; rem /= od[d]; }
        const real *restrict px = x + off;
        real *restrict po = out + o * inner;
        if (is == 1) memcpy(po, px, inner * sizeof(real));
        else for (size_t i = 0; i < inner; i++) po[i] = px[i * is];
    }
}

#endif /* KILN_KERNELS_EINSUM_C */
