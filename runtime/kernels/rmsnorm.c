/*
 * rmsnorm.c - `rmsnorm`, root mean square layer normalisation (Zhang & Sennrich 2019): y = x * r * w with
 * r = 1 / sqrt(mean(x^2) + eps), and its gradients `rmsnorm_grad_input`, `rmsnorm_grad_weight`.
 */
#ifndef KILN_KERNELS_RMSNORM_C
#define KILN_KERNELS_RMSNORM_C

#include "kiln_kernel.h"

/* 1 / sqrt(mean(x^2) + eps) of one row x of length C */
KILN_KERNEL real row_rms_inverse(const real *restrict x, int C, real eps) {
    real ss = 0;
    #pragma omp simd reduction(+:ss)
    for (int c = 0; c < C; c++) ss += x[c] * x[c];
    return 1 / sqrt(ss / (real)C + eps);
}

/* rmsnorm over the last axis: out, inp are (M, C); weight is (C) */
KILN_KERNEL void rmsnorm_forward(real *restrict out, const real *restrict inp, const real *restrict weight, size_t M,
                                 int C, real eps) {
    #pragma omp parallel for schedule(static)
    for (size_t m = 0; m < M; m++) {
        const real *x = inp + m * C;
        real *y = out + m * C;
        const real r = row_rms_inverse(x, C, eps);
        #pragma omp simd
        for (int c = 0; c < C; c++) y[c] = x[c] * r * weight[c];
    }
}

/* rmsnorm backward, input: with g = dout * weight, dinp = acc + r * (g - x * r^2 * mean(g * x)); dinp, dout,
 * inp, acc are (M, C); acc (a gradient summed into this one) may be NULL */
KILN_KERNEL void rmsnorm_backward_input(real *restrict dinp, const real *restrict dout, const real *restrict inp,
                                        const real *restrict weight, const real *restrict acc, size_t M, int C,
                                        real eps) {
    #pragma omp parallel for schedule(static)
    for (size_t m = 0; m < M; m++) {
        const real *x = inp + m * C, *dy = dout + m * C;
        real *dx = dinp + m * C;
        const real r = row_rms_inverse(x, C, eps);
        real gx = 0;
        #pragma omp simd reduction(+:gx)
        for (int c = 0; c < C; c++) gx += dy[c] * weight[c] * x[c];
        const real k = r * r * r * gx / (real)C;
        for (int c = 0; c < C; c++) dx[c] = r * dy[c] * weight[c] - k * x[c];
        if (acc) {
            const real *a = acc + m * C;
            for (int c = 0; c < C; c++) dx[c] = a[c] + dx[c];
        }
    }
}

/* rmsnorm backward, weight: dweight[c] = sum over rows of dout * x * r; dout, inp are (M, C). Columns are split
 * across threads; each thread walks all rows in order. */
KILN_KERNEL void rmsnorm_backward_weight(real *restrict dweight, const real *restrict dout, const real *restrict inp,
                                         size_t M, int C, real eps) {
    #pragma omp parallel
    {
        int c0, c1;
        thread_columns(C, &c0, &c1);
        for (int c = c0; c < c1; c++) dweight[c] = 0;
        for (size_t m = 0; m < M; m++) {
            const real *x = inp + m * C, *dy = dout + m * C;
            const real r = row_rms_inverse(x, C, eps);
            for (int c = c0; c < c1; c++) dweight[c] += dy[c] * x[c] * r;
        }
    }
}

#endif /* KILN_KERNELS_RMSNORM_C */
