/*
 * activation.c - the elementwise activations of the IR (`relu`, `gelu`, `gelu_tanh`, … : every row of the
 * table in activations.h) and their gradients (`relu_grad`, …), one loop each over the whole tensor.
 */
#ifndef KILN_KERNELS_ACTIVATION_C
#define KILN_KERNELS_ACTIVATION_C

#include "activations.h"

/* out = act(inp) for an activation code KILN_ACT_NAME of activations.h; out, inp are (N) */
KILN_KERNEL void activation_forward(real *restrict out, const real *restrict inp, size_t N, int act) {
    switch (act) {
#define KILN_ACTIVATION_FORWARD(name, id)                                      \
    case id:                                                                    \
        _Pragma("omp parallel for simd schedule(static)")                       \
        for (size_t i = 0; i < N; i++) out[i] = kiln_act_##name(inp[i]);       \
        break;
    KILN_ACTIVATIONS(KILN_ACTIVATION_FORWARD)
#undef KILN_ACTIVATION_FORWARD
#define KILN_MATH_FORWARD(name, id)                                             \
    case id:                                                                    \
        _Pragma("omp parallel for schedule(static)")                            \
        for (size_t i = 0; i < N; i++) out[i] = kiln_act_##name(inp[i]);       \
        break;
    KILN_MATH_FUNCTIONS(KILN_MATH_FORWARD)
#undef KILN_MATH_FORWARD
    default: memmove(out, inp, N * sizeof(real)); break;
    }
}

/* dinp = dout · act'(x) for an activation code; all are (N) */
KILN_KERNEL void activation_backward(real *restrict dinp, const real *restrict dout, const real *restrict x, size_t N,
                                     int act) {
    switch (act) {
#define KILN_ACTIVATION_BACKWARD(name, id)                                     \
    case id:                                                                    \
        _Pragma("omp parallel for simd schedule(static)")                       \
        for (size_t i = 0; i < N; i++) dinp[i] = kiln_act_##name##_grad(x[i], dout[i]); \
        break;
    KILN_ACTIVATIONS(KILN_ACTIVATION_BACKWARD)
#undef KILN_ACTIVATION_BACKWARD
#define KILN_MATH_BACKWARD(name, id)                                           \
    case id:                                                                    \
        _Pragma("omp parallel for schedule(static)")                            \
        for (size_t i = 0; i < N; i++) dinp[i] = kiln_act_##name##_grad(x[i], dout[i]); \
        break;
    KILN_MATH_FUNCTIONS(KILN_MATH_BACKWARD)
#undef KILN_MATH_BACKWARD
    default: memmove(dinp, dout, N * sizeof(real)); break;
    }
}

#endif /* KILN_KERNELS_ACTIVATION_C */
