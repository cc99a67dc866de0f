/*
 * rows.c - `pad_rows`, the gradient of `slice_rows` (which itself is a view and needs no kernel):
 * the first rows of a table, zeros after.
 */
#ifndef KILN_KERNELS_ROWS_C
#define KILN_KERNELS_ROWS_C

#include "kiln_kernel.h"

/* pad_rows: out (N, C) holds inp (T, C) in its first T rows and zeros after */
KILN_KERNEL void pad_rows_forward(real *restrict out, const real *restrict inp, size_t T, size_t N, size_t C) {
    memcpy(out, inp, T * C * sizeof(real));
    memset(out + T * C, 0, (N - T) * C * sizeof(real));
}

#endif /* KILN_KERNELS_ROWS_C */
