/* GEMM throughput of Kiln's matrix-product engine (runtime/kernels/gemm.h).
 * Built by bench/bench.py as: cc -O3 -march=native -fopenmp -I runtime/kernels bench/gemm_main.c
 * usage: gemm_bench M N K ITERS [nn|nt|tn]  -> prints the median GFLOP/s of C (M,N) = A (M,K) · B (K,N),
 * packing B into panels on every call (as a BLAS sgemm call does). The layouts of a linear layer's products:
 * nn, both row-major (its input gradient, dY · W); nt, B given as W (N,K) (its forward, X · Wᵀ); tn, A given
 * as (K,M) (its weight gradient, dYᵀ · X). */
#define _POSIX_C_SOURCE 200809L
#include "gemm.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) { fprintf(stderr, "usage: gemm_bench M N K ITERS [nn|nt|tn]\n"); return 2; }
    const char *layout = argc == 6 ? argv[5] : "nn";
    const int nt = strcmp(layout, "nt") == 0, tn = strcmp(layout, "tn") == 0;
    if (!nt && !tn && strcmp(layout, "nn") != 0) { fprintf(stderr, "layout must be nn, nt or tn\n"); return 2; }
    size_t M = (size_t)atol(argv[1]);
    int N = atoi(argv[2]), K = atoi(argv[3]), iters = atoi(argv[4]);
    if (M < 1 || N < 1 || K < 1 || iters < 1 || iters > 1000) { fprintf(stderr, "bad arguments\n"); return 2; }
    real *A = malloc(M * K * sizeof(real)), *B = malloc((size_t)K * N * sizeof(real)), *C = malloc(M * N * sizeof(real));
    real *P = malloc((size_t)K * (N + GEMM_NR) * sizeof(real));
    if (!A || !B || !C || !P) { fprintf(stderr, "out of memory\n"); return 1; }
    for (size_t i = 0; i < M * K; i++) A[i] = (real)((int)(i * 7 % 13) - 6) / 13;
    for (size_t i = 0; i < (size_t)K * N; i++) B[i] = (real)((int)(i * 5 % 11) - 5) / 11;
    double t[1000];
    /* A (M,K) is A[i*K + p], or A[p*M + i] for tn; B (K,N) is B[p*N + j], or B[j*K + p] for nt */
    const size_t a_rs = tn ? 1 : (size_t)K, a_cs = tn ? M : 1;
    for (int i = 0; i <= iters; i++) {
        double t0 = now_ms();
        gemm_pack(P, B, nt ? 1 : (size_t)N, nt ? (size_t)K : 1, K, N);
        gemm_panels(C, (size_t)N, A, a_rs, a_cs, P, P + (size_t)(N / GEMM_NR) * K * GEMM_NR, M, N, K, NULL, 0, NULL);
        if (i > 0) t[i - 1] = now_ms() - t0;  /* the first call is a warm-up */
    }
    qsort(t, iters, sizeof t[0], cmp);
    printf("%.2f\n", 2.0 * M * N * K / (t[iters / 2] * 1e6));
    fprintf(stderr, "%s kernels\n", gemm_isa());
    free(A); free(B); free(C); free(P);
    return 0;
}
