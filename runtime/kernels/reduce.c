/*
 * reduce.c - the primitive tier's reductions over the last axis (`reduce {op}`), kept as a dim of 1, and their
 * gradients. op: 0 sum, 1 mean, 2 max, 3 logsumexp. Each row is summed in order by one thread.
 */
#ifndef KILN_KERNELS_REDUCE_C
#define KILN_KERNELS_REDUCE_C

#include "kiln_kernel.h"

/* the maximum of a row and the index of its first occurrence */
KILN_KERNEL inline real reduce_row_max(const real *restrict x, int C, int *at) {
    real m = x[0];
    int k = 0;
    for (int c = 1; c < C; c++)
        if (x[c] > m) { m = x[c]; k = c; }
    *at = k;
    return m;
}

/* log Σ e^x of a row, from its maximum (-inf for a row of -inf, as PyTorch) */
KILN_KERNEL inline real reduce_row_logsumexp(const real *restrict x, int C) {
    int at;
    const real m = reduce_row_max(x, C, &at);
    if (isinf(m)) return m;
    real s = 0;
    for (int c = 0; c < C; c++) s += exp(x[c] - m);
    return m + log(s);
}

/* out (R, 1) = the reduction of each row of x (R, C) */
KILN_KERNEL void reduce_forward(real *restrict out, const real *restrict x, size_t R, int C, int op) {
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < R; r++) {
        const real *restrict row = x + r * C;
        int at;
        if (op == 2) out[r] = reduce_row_max(row, C, &at);
        else if (op == 3) out[r] = reduce_row_logsumexp(row, C);
        else {
            real s = 0;
            for (int c = 0; c < C; c++) s += row[c];
            out[r] = op == 1 ? s / (real)C : s;
        }
    }
}

/* dx (R, C) from dy (R, 1) and x (R, C): sum dy; mean dy / C; max dy at the row's first maximum, 0 elsewhere;
 * logsumexp dy · e^(x - logsumexp) (the softmax) */
KILN_KERNEL void reduce_backward(real *restrict dx, const real *restrict dy, const real *restrict x, size_t R, int C,
                                 int op) {
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < R; r++) {
        const real *restrict row = x + r * C;
        real *restrict d = dx + r * C;
        const real g = dy[r];
        if (op == 2) {
            int at;
            reduce_row_max(row, C, &at);
            for (int c = 0; c < C; c++) d[c] = c == at ? g : 0;
        } else if (op == 3) {
            const real lse = reduce_row_logsumexp(row, C);
            for (int c = 0; c < C; c++) d[c] = g * exp(row[c] - lse);
        } else {
            const real v = op == 1 ? g / (real)C : g;
            for (int c = 0; c < C; c++) d[c] = v;
        }
    }
}

#endif /* KILN_KERNELS_REDUCE_C */
