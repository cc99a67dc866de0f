/*
 * layernorm.c - `layernorm` (Ba et al. 2016, biased variance) and its gradients `layernorm_grad_input`,
 * `layernorm_grad_weight`.
 */
#ifndef KILN_KERNELS_LAYERNORM_C
#define KILN_KERNELS_LAYERNORM_C

#include "kiln_kernel.h"

/* mean and 1/sqrt(variance + eps) of one row x of length C (biased variance, two passes) */
KILN_KERNEL void row_moments(const real *restrict x, int C, real eps, real *mean_out, real *rstd_out) {
    real mean = 0;
    #pragma omp simd reduction(+:mean)
    for (int c = 0; c < C; c++) mean += x[c];
    mean /= (real)C;
    real var = 0;
    #pragma omp simd reduction(+:var)
    for (int c = 0; c < C; c++) { real d = x[c] - mean; var += d * d; }
    var /= (real)C;
    *mean_out = mean;
    *rstd_out = 1 / sqrt(var + eps);
}


/* layernorm over the last axis (Ba et al. 2016), biased variance:
 * out, inp are (M, C); weight, bias are (C) */
KILN_KERNEL void layernorm_forward(real *restrict out, const real *restrict inp,
                                   const real *restrict weight, const real *restrict bias,
                                   size_t M, int C, real eps) {
    #pragma omp parallel for schedule(static)
    for (size_t m = 0; m < M; m++) {
        const real *x = inp + m * C;
        real *y = out + m * C;
        real mean, rstd;
        row_moments(x, C, eps, &mean, &rstd);
        #pragma omp simd
        for (int c = 0; c < C; c++) y[c] = (x[c] - mean) * rstd * weight[c] + bias[c];
    }
}


/* layernorm backward, input: with x̂ = (x - mean) * rstd and g = dout * weight,
 * dinp = acc + rstd * (g - mean(g) - x̂ * mean(g * x̂)); dinp, dout, inp, acc are (M, C); acc (the
 * gradient of the residual stream this branch rejoins) may be NULL */
KILN_KERNEL void layernorm_backward_input(real *restrict dinp, const real *restrict dout, const real *restrict inp,
                                          const real *restrict weight, const real *restrict acc, size_t M, int C,
                                          real eps) {
    #pragma omp parallel for schedule(static)
    for (size_t m = 0; m < M; m++) {
        const real *x = inp + m * C, *dy = dout + m * C;
        real *dx = dinp + m * C;
        real mean, rstd;
        row_moments(x, C, eps, &mean, &rstd);
        real gsum = 0, gxsum = 0;
        #pragma omp simd reduction(+:gsum, gxsum)
        for (int c = 0; c < C; c++) {
            real g = dy[c] * weight[c];
            gsum += g;
            gxsum += g * (x[c] - mean) * rstd;
        }
        gsum /= (real)C;
        gxsum /= (real)C;
        #pragma omp simd
        for (int c = 0; c < C; c++) {
            real xhat = (x[c] - mean) * rstd;
            dx[c] = rstd * (dy[c] * weight[c] - gsum - xhat * gxsum);
        }
        if (acc) {
            const real *a = acc + m * C;
            #pragma omp simd
            for (int c = 0; c < C; c++) dx[c] = a[c] + dx[c];
        }
    }
}


/* layernorm backward, weight: dweight[c] = sum over rows of dout * x̂; dout, inp are (M, C).
 * Columns are split across threads; each thread walks all rows in order. */
KILN_KERNEL void layernorm_backward_weight(real *restrict dweight, const real *restrict dout, const real *restrict inp,
                                           size_t M, int C, real eps) {
    #pragma omp parallel
    {
        int c0, c1;
        thread_columns(C, &c0, &c1);
        for (int c = c0; c < c1; c++) dweight[c] = 0;
        for (size_t m = 0; m < M; m++) {
            const real *x = inp + m * C, *dy = dout + m * C;
            real mean, rstd;
            row_moments(x, C, eps, &mean, &rstd);
            for (int c = c0; c < c1; c++) dweight[c] += dy[c] * (x[c] - mean) * rstd;
        }
    }
}

#endif /* KILN_KERNELS_LAYERNORM_C */
