/*
 * activations.h - the activation table: every elementwise activation of the IR, with its formula and its
 * derivative, in one place. The plain kernels (activation.c), the fused elementwise kernels that kiln writes
 * per expression, and the epilogue of the matrix-product engine (gemm.h) all call these functions, so the
 * three paths compute the same floats.
 *
 * A row of KILN_ACTIVATIONS (or of KILN_MATH_FUNCTIONS) is X(NAME, ID); NAME is the op's name in the IR and
 * ID its code in the kernels' `act` arguments (KILN_ACT_NAME; 0 is no activation). Each activation defines
 *   kiln_act_NAME(x)          its value,
 *   kiln_act_NAME_grad(x, dy) dy times its derivative at x.
 * Adding one: a row here, its two functions below, and its row in Sources/KilnIR/Ops/Activation.swift.
 */
#ifndef KILN_ACTIVATIONS_H
#define KILN_ACTIVATIONS_H

#include "kiln_math.h"

#define KILN_ACTIVATIONS(X) \
    X(relu, 1)              \
    X(gelu, 2)              \
    X(gelu_tanh, 3)         \
    X(silu, 4)              \
    X(sigmoid, 5)           \
    X(elu, 6)               \
    X(selu, 7)              \
    X(softplus, 8)

/* The elementwise math of the primitive tier: libm's functions, which compilers do not vectorise, so loops over
 * them carry no simd pragma (clang warns about a simd loop it cannot vectorise). */
#define KILN_MATH_FUNCTIONS(X) \
    X(exp, 9)                  \
    X(log, 10)                 \
    X(sqrt, 11)                \
    X(rsqrt, 12)               \
    X(tanh, 13)

/* every row of the table */
#define KILN_ELEMENTWISE(X) KILN_ACTIVATIONS(X) KILN_MATH_FUNCTIONS(X)

enum {
    KILN_ACT_none = 0,
#define KILN_ACT_ENUM(name, id) KILN_ACT_##name = id,
    KILN_ELEMENTWISE(KILN_ACT_ENUM)
#undef KILN_ACT_ENUM
};

/* ReLU: max(x, 0) */
KILN_KERNEL inline real kiln_act_relu(real x) { return x > 0 ? x : 0; }
KILN_KERNEL inline real kiln_act_relu_grad(real x, real dy) { return x > 0 ? dy : 0; }

/* GELU (Hendrycks & Gimpel 2016), exact: x · Φ(x) = x/2 · (1 + erf(x/√2)); derivative Φ(x) + x φ(x) */
KILN_KERNEL inline real kiln_act_gelu(real x) { return (real)0.5 * x * (1 + kiln_erf(x * (real)0.70710678118654752)); }
KILN_KERNEL inline real kiln_act_gelu_grad(real x, real dy) {
    real cdf = (real)0.5 * (1 + kiln_erf(x * (real)0.70710678118654752));
    real pdf = kiln_exp((real)-0.5 * x * x) * (real)0.39894228040143268;
    return dy * (cdf + x * pdf);
}

/* GELU, tanh approximation (as in GPT-2): x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³))) */
KILN_KERNEL inline real kiln_act_gelu_tanh(real x) {
    const real u = (real)0.79788456080286536 * (x + (real)0.044715 * x * x * x);
    return (real)0.5 * x * (1 + kiln_tanh(u));
}
KILN_KERNEL inline real kiln_act_gelu_tanh_grad(real x, real dy) {
    const real s = (real)0.79788456080286536;
    real u = s * (x + (real)0.044715 * x * x * x);
    real th = kiln_tanh(u);
    real du = s * (1 + 3 * (real)0.044715 * x * x);
    return dy * ((real)0.5 * (1 + th) + (real)0.5 * x * (1 - th * th) * du);
}

/* SiLU or Swish (Elfwing et al. 2018; Ramachandran et al. 2017): x * sigmoid(x); derivative
 * sigmoid(x) * (1 + x * (1 - sigmoid(x))) */
KILN_KERNEL inline real kiln_act_silu(real x) { return x / (1 + kiln_exp(-x)); }
KILN_KERNEL inline real kiln_act_silu_grad(real x, real dy) {
    const real s = 1 / (1 + kiln_exp(-x));
    return dy * s * (1 + x * (1 - s));
}

/* The logistic sigmoid: 1 / (1 + e^-x); derivative s (1 - s) */
KILN_KERNEL inline real kiln_act_sigmoid(real x) { return 1 / (1 + kiln_exp(-x)); }
KILN_KERNEL inline real kiln_act_sigmoid_grad(real x, real dy) {
    const real s = 1 / (1 + kiln_exp(-x));
    return dy * s * (1 - s);
}

/* ELU (Clevert et al. 2016), alpha 1: x if x > 0, else e^x - 1 */
KILN_KERNEL inline real kiln_act_elu(real x) { return x > 0 ? x : kiln_exp(x) - 1; }
KILN_KERNEL inline real kiln_act_elu_grad(real x, real dy) { return x > 0 ? dy : dy * kiln_exp(x); }

/* SELU (Klambauer et al. 2017): lambda (x if x > 0, else alpha (e^x - 1)), with their constants */
#define KILN_SELU_LAMBDA ((real)1.0507009873554804934)
#define KILN_SELU_ALPHA ((real)1.6732632423543772848)
KILN_KERNEL inline real kiln_act_selu(real x) { return KILN_SELU_LAMBDA * (x > 0 ? x : KILN_SELU_ALPHA * (kiln_exp(x) - 1)); }
KILN_KERNEL inline real kiln_act_selu_grad(real x, real dy) {
    return dy * KILN_SELU_LAMBDA * (x > 0 ? 1 : KILN_SELU_ALPHA * kiln_exp(x));
}

/* softplus (Dugas et al. 2001): log(1 + e^x), as max(x, 0) + log(1 + e^-|x|) so that no e^x overflows (the
 * log's argument lies in (1, 2]); derivative sigmoid(x) */
KILN_KERNEL inline real kiln_act_softplus(real x) { return (x > 0 ? x : 0) + kiln_log(1 + kiln_exp(x > 0 ? -x : x)); }
KILN_KERNEL inline real kiln_act_softplus_grad(real x, real dy) { return dy / (1 + kiln_exp(-x)); }

/* The elementwise math of the primitive tier (the model language's exp, log, sqrt, rsqrt, tanh): libm's
 * functions, so values outside the usual ranges come out as PyTorch's do (exp overflows to inf, log(0) is -inf,
 * log and sqrt of a negative number are NaN). */
KILN_KERNEL inline real kiln_act_exp(real x) { return exp(x); }
KILN_KERNEL inline real kiln_act_exp_grad(real x, real dy) { return dy * exp(x); }
KILN_KERNEL inline real kiln_act_log(real x) { return log(x); }
KILN_KERNEL inline real kiln_act_log_grad(real x, real dy) { return dy / x; }
KILN_KERNEL inline real kiln_act_sqrt(real x) { return sqrt(x); }
KILN_KERNEL inline real kiln_act_sqrt_grad(real x, real dy) { return dy / (2 * sqrt(x)); }
KILN_KERNEL inline real kiln_act_rsqrt(real x) { return 1 / sqrt(x); }
KILN_KERNEL inline real kiln_act_rsqrt_grad(real x, real dy) { return (real)-0.5 * dy / (x * sqrt(x)); }
KILN_KERNEL inline real kiln_act_tanh(real x) { return tanh(x); }
KILN_KERNEL inline real kiln_act_tanh_grad(real x, real dy) {
    const real t = tanh(x);
    return dy * (1 - t * t);
}

#endif /* KILN_ACTIVATIONS_H */
