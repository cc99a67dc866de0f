/*
 * embedding.c - the `embedding` op (rows of a table for integer ids) and its gradient `embedding_grad`
 * (scatter-add of rows), including the packed table of a tied output head.
 */
#ifndef KILN_KERNELS_EMBEDDING_C
#define KILN_KERNELS_EMBEDDING_C

#include "kiln_kernel.h"

/* embedding: out[n, :] = table[ids[n], :]
 * out is (N, C), table is (V, C), ids is (N) with ids already checked to be in [0, V) */
KILN_KERNEL void embedding_forward(real *restrict out, const real *restrict table,
                                   const int32_t *restrict ids, size_t N, int C) {
    /* a decode step looks up a row or a few: copies that small cost less than waking the threads */
    #pragma omp parallel for schedule(static) if (N * (size_t)C >= 32768)
    for (size_t n = 0; n < N; n++) {
        memcpy(out + n * C, table + (size_t)ids[n] * C, (size_t)C * sizeof(real));
    }
}


/* embedding from a table that is also a linear layer's packed weight (tied output head):
 * out[n, :] = row ids[n] of table (V, C), where rows 64t .. 64t+63 are stored as one panel (C, 64)
 * and the last V % 64 rows as plain rows (see pack_weight_in_place) */
KILN_KERNEL void embedding_packed_forward(real *restrict out, const real *restrict table,
                                          const int32_t *restrict ids, size_t N, int C, int V) {
    const int full = V / 64 * 64;
    #pragma omp parallel for schedule(static) if (N * (size_t)C >= 32768)
    for (size_t n = 0; n < N; n++) {
        const int v = ids[n];
        if (v < full) {
            const real *col = table + (size_t)(v / 64) * C * 64 + v % 64;
            for (int c = 0; c < C; c++) out[n * C + c] = col[(size_t)c * 64];
        } else {
            memcpy(out + n * C, table + (size_t)v * C, (size_t)C * sizeof(real));
        }
    }
}


/* embedding backward: dtable = acc + the rows dout[n, :] added at ids[n]; dtable, acc are (V, C), dout is
 * (N, C). acc may be NULL (zeros) or dtable itself (in place: a tied output head's weight gradient).
 * Columns are split across threads; each column sums over n in order. */
KILN_KERNEL void embedding_backward(real *dtable, const real *acc, const real *restrict dout,
                                    const int32_t *restrict ids, size_t N, int V, int C) {
    if (!acc) memset(dtable, 0, (size_t)V * C * sizeof(real));
    else if (acc != dtable) memcpy(dtable, acc, (size_t)V * C * sizeof(real));
    #pragma omp parallel
    {
        int c0, c1;
        thread_columns(C, &c0, &c1);
        for (size_t n = 0; n < N; n++) {
            real *row = dtable + (size_t)ids[n] * C;
            const real *d = dout + n * C;
            for (int c = c0; c < c1; c++) row[c] += d[c];
        }
    }
}

#endif /* KILN_KERNELS_EMBEDDING_C */
