/*
 * slice.c - `slice` (positions start ..< start + size of one axis), its gradient, `concat` (two tensors joined
 * along an axis), and `gather` (entries at given positions of an axis) with its gradient. Every tensor is seen as (P, N, Q) around the axis: P the product of the dims before it, Q after.
 */
#ifndef KILN_KERNELS_SLICE_C
#define KILN_KERNELS_SLICE_C

#include "kiln_kernel.h"

/* out (P, size, Q) = x (P, N, Q) at positions start ..< start + size of the middle axis */
KILN_KERNEL void slice_forward(real *restrict out, const real *restrict x, size_t P, size_t N, size_t Q, size_t start, size_t size) {
    #pragma omp parallel for schedule(static)
    for (size_t p = 0; p < P; p++) memcpy(out + p * size * Q, x + (p * N + start) * Q, size * Q * sizeof(real));
}

/* out (P, N, Q) = dy (P, size, Q) at positions start ..< start + size of the middle axis, zeros elsewhere */
KILN_KERNEL void slice_backward(real *restrict out, const real *restrict dy, size_t P, size_t N, size_t Q, size_t start, size_t size) {
    #pragma omp parallel for schedule(static)
    for (size_t p = 0; p < P; p++) {
        real *restrict o = out + p * N * Q;
        memset(o, 0, start * Q * sizeof(real));
        memcpy(o + start * Q, dy + p * size * Q, size * Q * sizeof(real));
        memset(o + (start + size) * Q, 0, (N - start - size) * Q * sizeof(real));
    }
}

/* out (P, NA + NB, Q) = a (P, NA, Q) then b (P, NB, Q) along the middle axis */
KILN_KERNEL void concat_forward(real *restrict out, const real *restrict a, const real *restrict b, size_t P, size_t NA, size_t NB, size_t Q) {
    #pragma omp parallel for schedule(static)
    for (size_t p = 0; p < P; p++) {
        memcpy(out + p * (NA + NB) * Q, a + p * NA * Q, NA * Q * sizeof(real));
        memcpy(out + (p * (NA + NB) + NA) * Q, b + p * NB * Q, NB * Q * sizeof(real));
    }
}

/* out (P, M, Q) = x (P, N, Q) at the positions index (P, M, Q) gives along the middle axis (each in [0, N): the
 * runtime checks an input's positions before the call) */
KILN_KERNEL void gather_forward(real *restrict out, const real *restrict x, const int32_t *restrict index, size_t P, size_t N,
                                size_t M, size_t Q) {
    #pragma omp parallel for schedule(static)
    for (size_t p = 0; p < P; p++)
        for (size_t m = 0; m < M; m++)
            for (size_t q = 0; q < Q; q++) {
                const size_t o = (p * M + m) * Q + q;
                out[o] = x[(p * N + (size_t)index[o]) * Q + q];
            }
}

/* out (P, N, Q) = zeros, with dy (P, M, Q) added at the positions index gives: a thread per p, the m in order (the
 * same sums at any thread count) */
KILN_KERNEL void gather_backward(real *restrict out, const real *restrict dy, const int32_t *restrict index, size_t P, size_t N,
                                 size_t M, size_t Q) {
    #pragma omp parallel for schedule(static)
    for (size_t p = 0; p < P; p++) {
        memset(out + p * N * Q, 0, N * Q * sizeof(real));
        for (size_t m = 0; m < M; m++)
            for (size_t q = 0; q < Q; q++) {
                const size_t o = (p * M + m) * Q + q;
                out[(p * N + (size_t)index[o]) * Q + q] += dy[o];
            }
    }
}

#endif /* KILN_KERNELS_SLICE_C */
