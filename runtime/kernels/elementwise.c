/*
 * elementwise.c - the binary ops `add`, `sub`, `mul`, `div` and the comparisons `lt`, `le`, `gt`, `ge`, `eq`, `ne`
 * (1 where they hold, else 0) with NumPy broadcasting, `scale`, and `sum_to`, the gradient of a broadcast (it sums
 * the broadcast dims back out).
 */
#ifndef KILN_KERNELS_ELEMENTWISE_C
#define KILN_KERNELS_ELEMENTWISE_C

#include "kiln_kernel.h"

/* Two kernels per binary op NAME (add +, sub -, mul *, div /, lt <, le <=, gt >, ge >=, eq ==, ne !=):
 *
 * NAME_forward: out = a OP b, where a or b may repeat along rows (a suffix broadcast):
 *   out is (R, N); a is (R, N), or (N) when a_row is 0; likewise b.
 *
 * NAME_broadcast_forward: the same with general broadcasting: out has `rank` dims; a_stride and b_stride
 *   give each operand's stride per output dim (0 where it is broadcast). */
#define KILN_BINARY_KERNELS(name, op)                                                                        \
    KILN_KERNEL void name##_forward(real *restrict out, const real *restrict a, const real *restrict b, size_t R, \
                                    size_t N, int a_row, int b_row) {                                         \
        if (a_row && b_row) { /* no broadcast: one flat loop (R is often 1: a whole tensor as one row) */      \
            const size_t n = R * N;                                                                            \
            _Pragma("omp parallel for simd schedule(static)")                                                  \
            for (size_t i = 0; i < n; i++) out[i] = a[i] op b[i];                                              \
            return;                                                                                            \
        }                                                                                                      \
        _Pragma("omp parallel for schedule(static)")                                                           \
        for (size_t r = 0; r < R; r++) {                                                                       \
            const real *ar = a + (a_row ? r * N : 0);                                                          \
            const real *br = b + (b_row ? r * N : 0);                                                          \
            _Pragma("omp simd")                                                                                \
            for (size_t i = 0; i < N; i++) out[r * N + i] = ar[i] op br[i];                                    \
        }                                                                                                      \
    }                                                                                                          \
    KILN_KERNEL void name##_broadcast_forward(real *restrict out, const real *restrict a, const real *restrict b, \
                                              int rank, const size_t *dims, const size_t *a_stride,           \
                                              const size_t *b_stride) {                                       \
        if (rank == 0) { out[0] = a[0] op b[0]; return; }                                                      \
        size_t outer = 1;                                                                                      \
        for (int d = 0; d < rank - 1; d++) outer *= dims[d];                                                   \
        const size_t inner = dims[rank - 1], as = a_stride[rank - 1], bs = b_stride[rank - 1];                 \
        _Pragma("omp parallel for schedule(static)")                                                           \
        for (size_t o = 0; o < outer; o++) { /* one run of the last dim: offsets once, then a plain loop */    \
            size_t rem = o, ai = 0, bi = 0;                                                                    \
            for (int d = rank - 2; d >= 0; d--) {                                                              \
                const size_t idx = rem % dims[d];                                                              \
                rem /= dims[d];                                                                                \
                ai += idx * a_stride[d];                                                                       \
                bi += idx * b_stride[d];                                                                       \
            }                                                                                                  \
            real *restrict po = out + o * inner;                                                               \
            const real *restrict pa = a + ai, *restrict pb = b + bi;                                           \
            if (as == 1 && bs == 1) {                                                                          \
                _Pragma("omp simd")                                                                            \
                for (size_t i = 0; i < inner; i++) po[i] = pa[i] op pb[i];                                     \
            } else if (as == 1 && bs == 0) {                                                                   \
                const real v = pb[0];                                                                          \
                _Pragma("omp simd")                                                                            \
                for (size_t i = 0; i < inner; i++) po[i] = pa[i] op v;                                         \
            } else if (as == 0 && bs == 1) {                                                                   \
                const real v = pa[0];                                                                          \
                _Pragma("omp simd")                                                                            \
                for (size_t i = 0; i < inner; i++) po[i] = v op pb[i];                                         \
            } else {                                                                                           \
                for (size_t i = 0; i < inner; i++) po[i] = pa[i * as] op pb[i * bs];                           \
            }                                                                                                  \
        }                                                                                                      \
    }

KILN_BINARY_KERNELS(add, +)
KILN_BINARY_KERNELS(sub, -)
KILN_BINARY_KERNELS(mul, *)
KILN_BINARY_KERNELS(div, /)
KILN_BINARY_KERNELS(lt, <)
KILN_BINARY_KERNELS(le, <=)
KILN_BINARY_KERNELS(gt, >)
KILN_BINARY_KERNELS(ge, >=)
KILN_BINARY_KERNELS(eq, ==)
KILN_BINARY_KERNELS(ne, !=)
#undef KILN_BINARY_KERNELS

/* scale: out = inp * factor; out, inp are (N) */
KILN_KERNEL void scale_forward(real *restrict out, const real *restrict inp, size_t N, real factor) {
    #pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < N; i++) out[i] = inp[i] * factor;
}

/* sum_to: out[j] = sum over r of inp[r, j]; inp is (R, N), out is (N) (a bias or broadcast gradient) */
KILN_KERNEL void sum_to_forward(real *restrict out, const real *restrict inp, size_t R, size_t N) {
    /* each thread owns a range of columns and sweeps the rows in order (the same sum at any thread count) */
    #pragma omp parallel
    {
        int c0, c1;
        thread_columns((int)N, &c0, &c1);
        for (int j = c0; j < c1; j++) out[j] = 0;
        for (size_t r = 0; r < R; r++) {
            const real *row = inp + r * N;
            #pragma omp simd
            for (int j = c0; j < c1; j++) out[j] += row[j];
        }
    }
}

/* sum_to, general: out[j] = sum of inp over the broadcast dims; `stride` maps each input index (by dim) to out.
 * When only the last dim is summed (a row reduction: each run of it goes to its own output) the rows run in
 * parallel; otherwise one thread, in input order, a run of the last dim at a time. Either way each output's
 * terms are added in input order. */
KILN_KERNEL void sum_to_broadcast_forward(real *restrict out, const real *restrict inp, size_t out_n,
                                          int rank, const size_t *dims, const size_t *stride) {
    if (rank == 0) { out[0] = inp[0]; return; }
    size_t outer = 1;
    for (int d = 0; d < rank - 1; d++) outer *= dims[d];
    const size_t inner = dims[rank - 1], s = stride[rank - 1];
    if (s == 0 && out_n == outer) {
        #pragma omp parallel for schedule(static)
        for (size_t o = 0; o < outer; o++) {
            size_t rem = o, oi = 0;
            for (int d = rank - 2; d >= 0; d--) { oi += (rem % dims[d]) * stride[d]; rem /= dims[d]; }
            const real *restrict row = inp + o * inner;
            real acc = 0;
            for (size_t i = 0; i < inner; i++) acc += row[i];
            out[oi] = acc;
        }
        return;
    }
    memset(out, 0, out_n * sizeof(real));
    for (size_t o = 0; o < outer; o++) {
        size_t rem = o, oi = 0;
        for (int d = rank - 2; d >= 0; d--) { oi += (rem % dims[d]) * stride[d]; rem /= dims[d]; }
        const real *restrict row = inp + o * inner;
        for (size_t i = 0; i < inner; i++) out[oi + i * s] += row[i];
    }
}

#endif /* KILN_KERNELS_ELEMENTWISE_C */
