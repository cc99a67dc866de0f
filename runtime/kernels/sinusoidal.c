/*
 * sinusoidal.c - the `sinusoidal` op: the fixed position table of Vaswani et al. 2017, its first rows or the
 * rows of given positions.
 */
#ifndef KILN_KERNELS_SINUSOIDAL_C
#define KILN_KERNELS_SINUSOIDAL_C

#include "kiln_kernel.h"

/* sinusoidal positions (Vaswani et al. 2017): out is (T, C), rows t0 .. t0+T-1 of the table; the angle
 * t / 10000^(2i/C) gives column 2i its sine and column 2i+1 its cosine, or with halves (Marian, fairseq)
 * column i its sine and column C/2 + i its cosine */
KILN_KERNEL void sinusoidal_forward(real *restrict out, int t0, int T, int C, int halves) {
    #pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        for (int c = 0; c < C; c++) {
            const int i = halves ? c % (C / 2) : c / 2;          /* the frequency's index */
            const int is_cos = halves ? c >= C / 2 : c % 2;
            double freq = exp(-log(10000.0) * (double)(2 * i) / (double)C);
            double angle = (double)(t0 + t) * freq;
            out[(size_t)t * C + c] = (real)(is_cos ? cos(angle) : sin(angle));
        }
    }
}

/* the rows of the table at the given positions (decoding): out is (N, C), positions (N) */
KILN_KERNEL void sinusoidal_at_forward(real *restrict out, const int32_t *restrict positions, size_t N, int C, int halves) {
    #pragma omp parallel for schedule(static)
    for (size_t n = 0; n < N; n++) sinusoidal_forward(out + n * C, positions[n], 1, C, halves);
}

#endif /* KILN_KERNELS_SINUSOIDAL_C */
