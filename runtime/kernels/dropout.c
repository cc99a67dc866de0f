/*
 * dropout.c - `dropout` (Srivastava et al. 2014). The mask is a hash of the step's seed, the op's id and
 * the element index, so the backward pass is the same call on the gradient.
 */
#ifndef KILN_KERNELS_DROPOUT_C
#define KILN_KERNELS_DROPOUT_C

#include "kiln_kernel.h"

/* whether dropout keeps element i of the dropout op `id` in the step with this seed:
 * a counter-based hash (SplitMix64 finaliser), so forward and backward agree without a stored mask */
KILN_KERNEL inline int dropout_keep(uint64_t seed, uint64_t id, uint64_t i, real p) {
    uint64_t z = seed ^ (id * 0x9E3779B97F4A7C15ULL) ^ (i * 0xD1B54A32D192ED03ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53 >= (double)p;
}


/* dropout (Srivastava et al. 2014): out = inp * keep / (1 - p); out, inp are (N).
 * The same (seed, id) gives the same mask, so the backward pass is the same call on the gradient. */
KILN_KERNEL void dropout_forward(real *restrict out, const real *restrict inp, size_t N, real p, uint64_t seed, uint64_t id) {
    const real scale = 1 / (1 - p);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < N; i++) out[i] = dropout_keep(seed, id, i, p) ? inp[i] * scale : 0;
}

#endif /* KILN_KERNELS_DROPOUT_C */
