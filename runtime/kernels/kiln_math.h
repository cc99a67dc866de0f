/*
 * kiln_math.h - math that vectorises: no libm calls in the loops that use it. Float builds use the
 * approximations below (accuracy measured by tests/python/test_fast_math.py); double builds (gradient
 * checks) use libm. Also the row helpers several kernels share: row_max and row_softmax.
 */
#ifndef KILN_MATH_H
#define KILN_MATH_H

#include "kiln_kernel.h"

/* kiln_exp: Cody-Waite reduction x = n ln2 + r and a degree-6 polynomial (Cephes expf); relative error
 * <= 2e-7 for -87 <= x <= 88; inputs are clamped to [-87.3, 88] (the callers pass x <= 0). */
#if KILN_REAL_IS_DOUBLE
KILN_KERNEL inline real kiln_exp(real x) { return exp(x); }
#else
KILN_KERNEL inline float kiln_exp(float x) {
    x = x < -87.3365f ? -87.3365f : (x > 88.0f ? 88.0f : x);
    const float n = rintf(x * 1.44269504088896341f);  /* rintf (not floorf) so gcc vectorises the loop */
    const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}
#endif

/* kiln_erf: Abramowitz & Stegun 7.1.26 in float builds (absolute error <= 5e-7: 1.5e-7 from the formula, the rest
 * float rounding), libm erf in double builds */
#if KILN_REAL_IS_DOUBLE
KILN_KERNEL inline real kiln_erf(real x) { return erf(x); }
#else
KILN_KERNEL inline float kiln_erf(float x) {
    const float ax = fabsf(x), t = 1.0f / (1.0f + 0.3275911f * ax);
    float y = 1.061405429f;
    y = y * t - 1.453152027f;
    y = y * t + 1.421413741f;
    y = y * t - 0.284496736f;
    y = y * t + 0.254829592f;
    y = 1.0f - y * t * kiln_exp(-ax * ax);
    return x < 0 ? -y : y;
}
#endif

/* kiln_tanh: 1 - 2 / (exp(2x) + 1) with kiln_exp in float builds (absolute error <= 3e-7), libm tanh in double builds */
#if KILN_REAL_IS_DOUBLE
KILN_KERNEL inline real kiln_tanh(real x) { return tanh(x); }
#else
KILN_KERNEL inline float kiln_tanh(float x) { return 1.0f - 2.0f / (kiln_exp(2.0f * x) + 1.0f); }
#endif

/* kiln_log: for positive normal x. Float builds split x = m 2^e with m in [sqrt(1/2), sqrt(2)) by its bits and
 * take log(m) from a degree-9 polynomial in m - 1 (Cephes logf), e ln 2 in two parts; relative error <= 2e-7.
 * libm log in double builds. */
#if KILN_REAL_IS_DOUBLE
KILN_KERNEL inline real kiln_log(real x) { return log(x); }
#else
KILN_KERNEL inline float kiln_log(float x) {
    int32_t bits;
    memcpy(&bits, &x, sizeof bits);
    float e = (float)(((bits >> 23) & 0xff) - 126);
    bits = (bits & 0x007fffff) | 0x3f000000;  /* m in [0.5, 1) */
    float m;
    memcpy(&m, &bits, sizeof m);
    const int low = m < 0.70710678f;
    e = low ? e - 1.0f : e;
    m = low ? m + m - 1.0f : m - 1.0f;
    const float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z - 2.12194440e-4f * e - 0.5f * z;
    return m + y + 0.693359375f * e;
}
#endif

/* the largest of x[0 .. n-1] (-INFINITY when n = 0), kept as 16 running maxima so that the loop
 * vectorises (a maximum does not depend on the order it is taken in) */
KILN_KERNEL inline real row_max(const real *restrict x, int n) {
    real m[16];
    for (int l = 0; l < 16; l++) m[l] = -INFINITY;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        #pragma omp simd
        for (int l = 0; l < 16; l++) m[l] = x[i + l] > m[l] ? x[i + l] : m[l];
    }
    for (; i < n; i++) m[0] = x[i] > m[0] ? x[i] : m[0];
    real r = m[0];
    for (int l = 1; l < 16; l++) r = m[l] > r ? m[l] : r;
    return r;
}

/* y = softmax(x) for one row of length N (max-subtracted, so exp never overflows) */
KILN_KERNEL void row_softmax(const real *restrict x, real *restrict y, int N) {
    const real maxv = row_max(x, N);
    real sum = 0;
    #pragma omp simd reduction(+:sum)
    for (int i = 0; i < N; i++) { y[i] = kiln_exp(x[i] - maxv); sum += y[i]; }
    real inv = 1 / sum;
    #pragma omp simd
    for (int i = 0; i < N; i++) y[i] *= inv;
}

#endif /* KILN_MATH_H */
