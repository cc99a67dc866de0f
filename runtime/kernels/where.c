/*
 * where.c - the primitive tier's selection and constants: `where` (a where c != 0, else b, broadcast) and its
 * gradient, `pow` of a constant exponent, and `range` (0, 1, ..., n - 1).
 */
#ifndef KILN_KERNELS_WHERE_C
#define KILN_KERNELS_WHERE_C

#include "kiln_kernel.h"

/* The offset of run `o` (an index over all dims but the last) in an operand with per-dim strides `stride`. */
static inline size_t where_run_offset(size_t o, int rank, const size_t *dims, const size_t *stride) {
    size_t off = 0;
    for (int d = rank - 2; d >= 0; d--) {
        off += (o % dims[d]) * stride[d];
        o /= dims[d];
    }
    return off;
}

/* out = c != 0 ? a : b: out has `rank` (>= 1) dims `dims`; each operand's stride per output dim is 0 where it is
 * broadcast. One run of the last dim at a time. */
KILN_KERNEL void where_forward(real *restrict out, const real *restrict c, const real *restrict a, const real *restrict b,
                               int rank, const size_t *dims, const size_t *c_stride, const size_t *a_stride,
                               const size_t *b_stride) {
    size_t outer = 1;
    for (int d = 0; d < rank - 1; d++) outer *= dims[d];
    const size_t inner = dims[rank - 1], cs = c_stride[rank - 1], as = a_stride[rank - 1], bs = b_stride[rank - 1];
    #pragma omp parallel for schedule(static)
    for (size_t o = 0; o < outer; o++) {
        const real *restrict pc = c + where_run_offset(o, rank, dims, c_stride);
        const real *restrict pa = a + where_run_offset(o, rank, dims, a_stride);
        const real *restrict pb = b + where_run_offset(o, rank, dims, b_stride);
        real *restrict po = out + o * inner;
        if (cs == 1 && as == 1 && bs == 0) { /* masking with a constant: where(mask, scores, -1e9) */
            const real v = pb[0];
            #pragma omp simd
            for (size_t i = 0; i < inner; i++) po[i] = pc[i] != 0 ? pa[i] : v;
        } else {
            for (size_t i = 0; i < inner; i++) po[i] = pc[i * cs] != 0 ? pa[i * as] : pb[i * bs];
        }
    }
}

/* out = dy where (c != 0) == keep, else 0: the gradient of `where` for a (keep 1) or b (keep 0). dy and out have
 * the `rank` dims `dims`; c's strides per dim are 0 where it is broadcast. */
KILN_KERNEL void where_backward(real *restrict out, const real *restrict dy, const real *restrict c, int keep, int rank,
                                const size_t *dims, const size_t *c_stride) {
    size_t outer = 1;
    for (int d = 0; d < rank - 1; d++) outer *= dims[d];
    const size_t inner = dims[rank - 1], cs = c_stride[rank - 1];
    #pragma omp parallel for schedule(static)
    for (size_t o = 0; o < outer; o++) {
        const real *restrict pc = c + where_run_offset(o, rank, dims, c_stride);
        const real *restrict pd = dy + o * inner;
        real *restrict po = out + o * inner;
        if (cs == 1) {
            #pragma omp simd
            for (size_t i = 0; i < inner; i++) po[i] = (pc[i] != 0) == keep ? pd[i] : 0;
        } else {
            for (size_t i = 0; i < inner; i++) po[i] = (pc[i * cs] != 0) == keep ? pd[i] : 0;
        }
    }
}

/* out = x^p, elementwise; out, x are (N) */
KILN_KERNEL void pow_forward(real *restrict out, const real *restrict x, size_t N, real p) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < N; i++) out[i] = (real)pow(x[i], p);  /* libm: as PyTorch, NaN for a negative x and a fractional p */
}

/* out = 0, 1, ..., N - 1 */
KILN_KERNEL void range_forward(real *restrict out, size_t N) {
    for (size_t i = 0; i < N; i++) out[i] = (real)i;
}

#endif /* KILN_KERNELS_WHERE_C */
