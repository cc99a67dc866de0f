/*
 * softmax.c - `softmax` over the last axis and its gradient `softmax_grad`.
 */
#ifndef KILN_KERNELS_SOFTMAX_C
#define KILN_KERNELS_SOFTMAX_C

#include "kiln_math.h"

/* softmax over the last axis: out, inp are (M, N) */
KILN_KERNEL void softmax_forward(real *restrict out, const real *restrict inp, size_t M, int N) {
    #pragma omp parallel for schedule(static)
    for (size_t m = 0; m < M; m++) row_softmax(inp + m * N, out + m * N, N);
}


/* softmax backward: dinp = y ⊙ (dout − Σ dout ⊙ y) per row; all are (M, N), y the softmax output */
KILN_KERNEL void softmax_backward(real *restrict dinp, const real *restrict dout, const real *restrict y, size_t M, int N) {
    #pragma omp parallel for schedule(static)
    for (size_t m = 0; m < M; m++) {
        const real *d = dout + m * N, *yy = y + m * N;
        real dot = 0;
        for (int i = 0; i < N; i++) dot += d[i] * yy[i];
        for (int i = 0; i < N; i++) dinp[m * N + i] = yy[i] * (d[i] - dot);
    }
}

#endif /* KILN_KERNELS_SOFTMAX_C */
