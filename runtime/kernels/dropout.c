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

#if KILN_X86_DISPATCH
/* z * c mod 2^64 in each 64-bit lane (AVX2 has no 64-bit multiply): lo·lo + (hi·lo + lo·hi) << 32 */
__attribute__((target("avx2"), always_inline))
KILN_KERNEL inline __m256i dropout_mul64_avx2(__m256i z, uint64_t c) {
    const __m256i lo = _mm256_set1_epi64x((long long)(c & 0xffffffffu)), hi = _mm256_set1_epi64x((long long)(c >> 32));
    const __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(z, 32), lo), _mm256_mul_epu32(z, hi));
    return _mm256_add_epi64(_mm256_mul_epu32(z, lo), _mm256_slli_epi64(cross, 32));
}
/* dropout_bits of 4 consecutive elements, given seed ^ id·C1 and (i·C2 for the 4 of them) */
__attribute__((target("avx2"), always_inline))
KILN_KERNEL inline __m256i dropout_bits_avx2(__m256i base, __m256i ic) {
    __m256i z = _mm256_xor_si256(base, ic);
    z = dropout_mul64_avx2(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), 0xBF58476D1CE4E5B9ULL);
    z = dropout_mul64_avx2(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), 0x94D049BB133111EBULL);
    return _mm256_srli_epi64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 31)), 11);
}
/* elements [i0, i1) of dropout_forward, 8 at a time from i0 (the rest by the scalar rule): the same integer
 * hash in 64-bit lanes, so the same mask, and the same product inp · scale where kept */
__attribute__((target("avx2")))
KILN_KERNEL void dropout_range_avx2(float *restrict out, const float *restrict inp, size_t i0, size_t i1, float scale,
                                    uint64_t seed, uint64_t id, uint64_t threshold) {
    const uint64_t c2 = 0xD1B54A32D192ED03ULL, ic0 = (uint64_t)i0 * c2;
    const __m256i base = _mm256_set1_epi64x((long long)(seed ^ (id * 0x9E3779B97F4A7C15ULL)));
    const __m256i thr = _mm256_set1_epi64x((long long)threshold), step = _mm256_set1_epi64x((long long)(8 * c2));
    __m256i ia = _mm256_set_epi64x((long long)(ic0 + 3 * c2), (long long)(ic0 + 2 * c2), (long long)(ic0 + c2), (long long)ic0);
    __m256i ib = _mm256_add_epi64(ia, _mm256_set1_epi64x((long long)(4 * c2)));
    const __m256 sc = _mm256_set1_ps(scale);
    size_t i = i0;
    for (; i + 8 <= i1; i += 8) {
        /* both draws are below 2^53, so the signed comparison is the unsigned one: drop where threshold > u */
        const __m256i da = _mm256_cmpgt_epi64(thr, dropout_bits_avx2(base, ia));
        const __m256i db = _mm256_cmpgt_epi64(thr, dropout_bits_avx2(base, ib));
        /* the low halves of the 64-bit lanes, in element order: a0 a1 b0 b1 | a2 a3 b2 b3, then a0..a3 b0..b3 */
        const __m256 drop = _mm256_castsi256_ps(_mm256_permute4x64_epi64(
            _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(da), _mm256_castsi256_ps(db), 0x88)), 0xD8));
        _mm256_storeu_ps(out + i, _mm256_andnot_ps(drop, _mm256_mul_ps(_mm256_loadu_ps(inp + i), sc)));
        ia = _mm256_add_epi64(ia, step);
        ib = _mm256_add_epi64(ib, step);
    }
    for (; i < i1; i++) out[i] = dropout_bits(seed, id, i) >= threshold ? inp[i] * scale : 0;
}
#endif

/* dropout (Srivastava et al. 2014): out = inp * keep / (1 - p); out, inp are (N).
 * The same (seed, id) gives the same mask, so the backward pass is the same call on the gradient.
 * On x86 with AVX2 the hash runs in 64-bit vector lanes (the same integers, so the same mask and values). */
KILN_KERNEL void dropout_forward(real *restrict out, const real *restrict inp, size_t N, real p, uint64_t seed, uint64_t id) {
    const real scale = 1 / (1 - p);
    const uint64_t threshold = dropout_threshold(p);
#if KILN_X86_DISPATCH
    if (__builtin_cpu_supports("avx2")) {
        #pragma omp parallel
        {
            size_t b0, b1;  /* blocks of 8 elements; the last thread also takes the tail */
            thread_range((N + 7) / 8, &b0, &b1);
            dropout_range_avx2(out, inp, 8 * b0, 8 * b1 < N ? 8 * b1 : N, scale, seed, id, threshold);
        }
        return;
    }
#endif
    #pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < N; i++) out[i] = dropout_bits(seed, id, i) >= threshold ? inp[i] * scale : 0;
}

#endif /* KILN_KERNELS_DROPOUT_C */
