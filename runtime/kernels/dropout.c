/*
 * dropout.c - `dropout` (Srivastava et al. 2014). The mask is a hash of the step's seed, the op's id and
 * the element index, so the backward pass is the same call on the gradient.
 */
#ifndef KILN_KERNELS_DROPOUT_C
#define KILN_KERNELS_DROPOUT_C

#include "kiln_kernel.h"

/* the hash of element i of the dropout op `id` in the step with this seed: a counter-based hash (SplitMix64
 * finaliser), so forward and backward agree without a stored mask; its top 53 bits are the uniform draw */
KILN_KERNEL inline uint64_t dropout_bits(uint64_t seed, uint64_t id, uint64_t i) {
    uint64_t z = seed ^ (id * 0x9E3779B97F4A7C15ULL) ^ (i * 0xD1B54A32D192ED03ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return z >> 11;
}

/* the draw u (53 bits) keeps its element when u · 2^-53 >= p, that is when u >= ceil(p · 2^53): exact, since
 * scaling by a power of 2 is, so the integer comparison keeps the same elements as the floating-point one */
KILN_KERNEL inline uint64_t dropout_threshold(real p) { return (uint64_t)ceil((double)p * 0x1p53); }

/* whether dropout keeps element i of the dropout op `id` in the step with this seed */
KILN_KERNEL inline int dropout_keep(uint64_t seed, uint64_t id, uint64_t i, real p) {
    return dropout_bits(seed, id, i) >= dropout_threshold(p);
}

/* dropout (Srivastava et al. 2014): out = inp * keep / (1 - p); out, inp are (N).
 * The same (seed, id) gives the same mask, so the backward pass is the same call on the gradient. */
KILN_KERNEL void dropout_forward(real *restrict out, const real *restrict inp, size_t N, real p, uint64_t seed, uint64_t id) {
    const real scale = 1 / (1 - p);
    const uint64_t threshold = dropout_threshold(p);
    #pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < N; i++) out[i] = dropout_bits(seed, id, i) >= threshold ? inp[i] * scale : 0;
}

#endif /* KILN_KERNELS_DROPOUT_C */
