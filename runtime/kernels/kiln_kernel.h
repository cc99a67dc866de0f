/*
 * kiln_kernel.h - what every kernel file of runtime/kernels/ starts from.
 *
 * The generated model.c includes the kernel files its ops need (`#include "kernels/linear.c"`), so each
 * kernel is compiled inside the model's translation unit: all functions are static (KILN_KERNEL), and a
 * file may define variants the model does not call. Each file also compiles on its own
 * (`cc -c -Wall -Wextra runtime/kernels/linear.c`), which the tests do with gcc and clang, for float and
 * double, with and without OpenMP.
 *
 * Conventions (as llm.c): outputs first, then inputs, then dimensions; a shape comment on every buffer;
 * OpenMP over independent rows or columns. Every output element is computed by one thread with a fixed
 * summation order, so results are the same bits at any thread count.
 */
#ifndef KILN_KERNEL_H
#define KILN_KERNEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* The element type of weights and activations: float, or double for gradient checks
 * (model.c defines KILN_REAL_IS_DOUBLE before including any kernel). */
#ifndef KILN_REAL_IS_DOUBLE
#define KILN_REAL_IS_DOUBLE 0
#endif
#if KILN_REAL_IS_DOUBLE
typedef double real;
#else
typedef float real;
#endif

/* x86 with gcc or clang, in float: kernels may add AVX2 / AVX-512 paths (function target attributes), chosen
 * at run time from the CPU (gemm.h's microkernels, dropout's hash); elsewhere only their portable C exists */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && !KILN_REAL_IS_DOUBLE
#define KILN_X86_DISPATCH 1
#include <immintrin.h>
#else
#define KILN_X86_DISPATCH 0
#endif

/* Every kernel function: internal to the model's translation unit, and no warning when a model does not use it. */
#if defined(__GNUC__) || defined(__clang__)
#define KILN_KERNEL static __attribute__((unused))
#else
#define KILN_KERNEL static
#endif

/* part `id` [*w0, *w1) of 0 .. n-1 cut into `parts` contiguous parts whose sizes differ by at most one (the
 * first n % parts are one longer) */
KILN_KERNEL inline void range_part(size_t n, size_t parts, size_t id, size_t *w0, size_t *w1) {
    *w0 = n / parts * id + (id < n % parts ? id : n % parts);
    *w1 = *w0 + n / parts + (id < n % parts);
}

/* the work items [*w0, *w1) of 0 .. n-1 that this OpenMP thread owns (all of them outside a parallel region) */
KILN_KERNEL inline void thread_range(size_t n, size_t *w0, size_t *w1) {
#ifdef _OPENMP
    range_part(n, (size_t)omp_get_num_threads(), (size_t)omp_get_thread_num(), w0, w1);
#else
    range_part(n, 1, 0, w0, w1);
#endif
}

/* thread_range over int columns: the columns [c0, c1) of 0..C-1 that this OpenMP thread owns */
KILN_KERNEL inline void thread_columns(int C, int *c0, int *c1) {
    size_t w0, w1;
    thread_range((size_t)C, &w0, &w1);
    *c0 = (int)w0;
    *c1 = (int)w1;
}

#endif /* KILN_KERNEL_H */
