/*
 * pool.c - `mean_pool` (the mean over the sequence of the positions whose mask is 1) and its gradient.
 */
#ifndef KILN_KERNELS_POOL_C
#define KILN_KERNELS_POOL_C

#include "kiln_kernel.h"

/* mean pooling: out (B, C) = the mean of x (B, T, C) over the positions t with mask[b, t] = 1 (mask (B, T),
 * or NULL: all of them), summed in position order; zeros for a row with no such position */
KILN_KERNEL void mean_pool_forward(real *restrict out, const real *restrict x, const int32_t *restrict mask, int B,
                                   int T, int C) {
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        real *o = out + (size_t)b * C;
        for (int c = 0; c < C; c++) o[c] = 0;
        int count = 0;
        for (int t = 0; t < T; t++) {
            if (mask && !mask[(size_t)b * T + t]) continue;
            const real *row = x + ((size_t)b * T + t) * C;
            #pragma omp simd
            for (int c = 0; c < C; c++) o[c] += row[c];
            count++;
        }
        const real inv = count ? 1 / (real)count : 0;
        #pragma omp simd
        for (int c = 0; c < C; c++) o[c] *= inv;
    }
}

/* its gradient: dx (B, T, C) = dout (B, C) / count at the counted positions, zeros elsewhere */
KILN_KERNEL void mean_pool_backward(real *restrict dx, const real *restrict dout, const int32_t *restrict mask, int B,
                                    int T, int C) {
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        int count = 0;
        for (int t = 0; t < T; t++) count += !mask || mask[(size_t)b * T + t];
        const real inv = count ? 1 / (real)count : 0;
        for (int t = 0; t < T; t++) {
            real *d = dx + ((size_t)b * T + t) * C;
            const int on = !mask || mask[(size_t)b * T + t];
            #pragma omp simd
            for (int c = 0; c < C; c++) d[c] = on ? dout[(size_t)b * C + c] * inv : 0;
        }
    }
}

#endif /* KILN_KERNELS_POOL_C */
