/*
 * rows.c - `pad_rows`, the gradient of `slice_rows` (which itself is a view and needs no kernel): the first
 * rows of a table, zeros after; `take` (one slice of an axis) and its gradient.
 */
#ifndef KILN_KERNELS_ROWS_C
#define KILN_KERNELS_ROWS_C

#include "kiln_kernel.h"

/* pad_rows: out (N, C) holds inp (T, C) in its first T rows and zeros after */
KILN_KERNEL void pad_rows_forward(real *restrict out, const real *restrict inp, size_t T, size_t N, size_t C) {
    memcpy(out, inp, T * C * sizeof(real));
    memset(out + T * C, 0, (N - T) * C * sizeof(real));
}

/* take: out (outer, inner) = the slice at `index` of the middle axis of x (outer, n, inner) */
KILN_KERNEL void take_forward(real *restrict out, const real *restrict x, size_t outer, size_t n, size_t inner,
                              size_t index) {
    #pragma omp parallel for schedule(static)
    for (size_t o = 0; o < outer; o++) memcpy(out + o * inner, x + (o * n + index) * inner, inner * sizeof(real));
}

/* take backward: dx (outer, n, inner) holds dout (outer, inner) at `index` of the middle axis, zeros elsewhere */
KILN_KERNEL void take_backward(real *restrict dx, const real *restrict dout, size_t outer, size_t n, size_t inner,
                               size_t index) {
    #pragma omp parallel for schedule(static)
    for (size_t o = 0; o < outer; o++) {
        memset(dx + o * n * inner, 0, n * inner * sizeof(real));
        memcpy(dx + (o * n + index) * inner, dout + o * inner, inner * sizeof(real));
    }
}

#endif /* KILN_KERNELS_ROWS_C */
