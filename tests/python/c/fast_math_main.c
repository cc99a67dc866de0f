/* Prints kiln_exp, kiln_erf, kiln_tanh and kiln_log (the float approximations in generated code) on a grid, for
 * tests/python/test_fast_math.py to compare with double-precision libm in Python.
 * Built as: cc -O2 -I BUILD -DWANT_ERF (a model with gelu) or -DWANT_TANH (gelu_tanh) fast_math_main.c -lm;
 * it includes that build's generated model.c. */
#include "model.c"
#include <stdio.h>

int main(void) {
    for (int i = 0; i <= 20000; i++) {
        const float x = -90.0f + 100.0f * (float)i / 20000.0f; /* exp on [-90, 10] */
        printf("exp %.9g %.9g\n", (double)x, (double)kiln_exp(x));
    }
    for (int i = 0; i <= 20000; i++) {
        const float x = -10.0f + 20.0f * (float)i / 20000.0f; /* erf and tanh on [-10, 10] */
#ifdef WANT_ERF
        printf("erf %.9g %.9g\n", (double)x, (double)kiln_erf(x));
#endif
#ifdef WANT_TANH
        printf("tanh %.9g %.9g\n", (double)x, (double)kiln_tanh(x));
#endif
    }
    for (int i = 0; i <= 20000; i++) {
        const float x = powf(10.0f, -30.0f + 60.0f * (float)i / 20000.0f); /* log on [1e-30, 1e30] */
        const float y = 1.0f + (float)i / 20000.0f;                        /* and densely on [1, 2] (softplus) */
        printf("log %.9g %.9g\nlog %.9g %.9g\n", (double)x, (double)kiln_log(x), (double)y, (double)kiln_log(y));
    }
    return 0;
}
