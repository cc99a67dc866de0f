/* This CPU's limits, for the benchmark's roofline (bench/bench.py): the FMA peak and the memory bandwidth.
 * Built by bench/bench.py as: cc -O2 -march=native -fopenmp bench/roofline_main.c
 * usage: roofline peak    -> GFLOP/s of independent fused multiply-adds on OMP_NUM_THREADS threads, with the
 *                            widest vectors the compiler targets (AVX-512: 16 floats; AVX2: 8), 2 FLOPs each
 *        roofline stream  -> GB/s of the STREAM triad a[i] = b[i] + s * c[i] over three 64 MiB arrays
 *                            (12 bytes per element: two reads and a write), the best of 7 passes */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* a vector of the widest width, and one fused multiply-add of it (the intrinsic, so that no compiler setting
 * such as -std=c11's -ffp-contract=off splits it into a multiply and an add) */
#if defined(__AVX512F__)
#include <immintrin.h>
enum { LANES = 16 };
typedef __m512 vec;
#define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#elif defined(__FMA__)
#include <immintrin.h>
enum { LANES = 8 };
typedef __m256 vec;
#define FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#else
enum { LANES = 4 };
typedef float vec __attribute__((vector_size(LANES * sizeof(float))));
#define FMA(a, b, c) ((a) * (b) + (c))
#endif
enum { CHAINS = 12 };  /* independent accumulators: enough to cover the FMA latency on every core seen */

static double peak(long iters) {
    double total = 0;
    const double t0 = now_s();
    #pragma omp parallel reduction(+:total)
    {
        float lanes[LANES], ones[LANES];
        for (int l = 0; l < LANES; l++) { lanes[l] = 1.0f + 1e-7f * (float)l; ones[l] = 1e-7f; }
        vec acc[CHAINS], x, y;
        memcpy(&x, lanes, sizeof x);
        memcpy(&y, ones, sizeof y);
        for (int c = 0; c < CHAINS; c++) acc[c] = y;
        for (long i = 0; i < iters; i++) {
            /* unrolled, so that the accumulators stay in registers */
            #pragma GCC unroll 12
            for (int c = 0; c < CHAINS; c++) acc[c] = FMA(acc[c], x, y);
        }
        float s = 0;
        for (int c = 0; c < CHAINS; c++) {
            float out[LANES];
            memcpy(out, &acc[c], sizeof out);
            for (int l = 0; l < LANES; l++) s += out[l];
        }
        total += s;  /* keeps the loop alive */
    }
    const double dt = now_s() - t0;
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    if (total == 12345.678) puts("");
    return 2.0 * LANES * CHAINS * (double)iters * threads / dt / 1e9;
}

static double stream(void) {
    const size_t n = (size_t)64 << 20 >> 2;  /* 64 MiB of floats per array */
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float)), *c = malloc(n * sizeof(float));
    if (!a || !b || !c) { fprintf(stderr, "roofline: out of memory\n"); exit(1); }
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) { a[i] = 0; b[i] = 1; c[i] = 2; }  /* first touch by the threads that use them */
    double best = 0;
    for (int pass = 0; pass < 7; pass++) {
        const double t0 = now_s();
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) a[i] = b[i] + 3.0f * c[i];
        const double dt = now_s() - t0, rate = 12.0 * (double)n / dt / 1e9;
        if (rate > best) best = rate;
    }
    if (a[n / 2] != 7.0f) fprintf(stderr, "roofline: wrong triad result\n");
    free(a); free(b); free(c);
    return best;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "peak") == 0) {
        double best = 0;
        for (int k = 0; k < 5; k++) { double r = peak(20000000); if (r > best) best = r; }
        printf("%.1f\n", best);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "stream") == 0) {
        printf("%.2f\n", stream());
        return 0;
    }
    fprintf(stderr, "usage: roofline peak|stream\n");
    return 2;
}
