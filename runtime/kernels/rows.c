/*
 * rows.c - `pad_rows`, the gradient of `slice_rows` (which itself is a view and needs no kernel): the first
 * rows of a table, zeros after; `take` (one slice of an axis) and its gradient; `shift` along the sequence.
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

/* shift: out (outer, n, inner) = x moved `steps` along the middle axis, out[o, t] = x[o, t - steps], zeros where
 * t - steps is outside 0 .. n-1 (steps may be negative) */
KILN_KERNEL void shift_forward(real *restrict out, const real *restrict x, size_t outer, size_t n, size_t inner,
                               long steps) {
    #pragma omp parallel for schedule(static) if (outer * n * inner >= 32768)
    for (size_t o = 0; o < outer; o++) {
        for (size_t t = 0; t < n; t++) {
            const long from = (long)t - steps;
            real *row = out + (o * n + t) * inner;
            if (from < 0 || from >= (long)n) memset(row, 0, inner * sizeof(real));
            else memcpy(row, x + (o * n + (size_t)from) * inner, inner * sizeof(real));
        }
    }
}

#endif /* KILN_KERNELS_ROWS_C */
