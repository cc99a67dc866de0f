/*
 * rotary.c - the `rotary` op: rotary position embeddings (Su et al. 2021) in Llama's rotate_half layout.
 */
#ifndef KILN_KERNELS_ROTARY_C
#define KILN_KERNELS_ROTARY_C

#include "kiln_kernel.h"

/* out, x are (B, T, C) with NH heads of d = C / NH; positions (B, T) or NULL (token t is at position t).
 * In every head, the pair (i, i + d/2) of the token at position p turns by the angle p * base^(-2i/d)
 * (by its opposite with inverse, the transpose: the backward pass). The angles' sines and cosines are
 * computed in double, once per (token, i), for all heads. out may be x. */
KILN_KERNEL void rotary_forward(real *out, const real *x, const int32_t *restrict positions, int B, int T, int C,
                                int NH, double base, int inverse) {
    const int d = C / NH, half = d / 2;
    const double sign = inverse ? -1.0 : 1.0;
    double inv_freq[half > 0 ? half : 1];  /* base^(-2i/d), once per call rather than per token */
    for (int i = 0; i < half; i++) inv_freq[i] = pow(base, -2.0 * i / d);
    #pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * T * C >= 32768)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const size_t row = ((size_t)b * T + t) * C;
            const double p = positions ? (double)positions[(size_t)b * T + t] : (double)t;
            for (int i = 0; i < half; i++) {
                const double angle = p * inv_freq[i];
                const real c = (real)cos(angle), s = (real)(sign * sin(angle));
                for (int h = 0; h < NH; h++) {
                    const size_t k = row + (size_t)h * d + i;
                    const real x1 = x[k], x2 = x[k + half];
                    out[k] = x1 * c - x2 * s;
                    out[k + half] = x2 * c + x1 * s;
                }
            }
        }
    }
}

#endif /* KILN_KERNELS_ROTARY_C */
