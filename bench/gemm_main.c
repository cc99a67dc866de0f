/* GEMM throughput of Kiln's matrix-product engine (runtime/kernels/gemm.h).
 * Built by bench/bench.py as: cc -O3 -march=native -fopenmp -I runtime/kernels bench/gemm_main.c
 * usage: gemm_bench M N K ITERS  -> prints the median GFLOP/s of C (M,N) = A (M,K) · B (K,N),
 * packing B into panels on every call (as a BLAS sgemm call does) */
#define _POSIX_C_SOURCE 200809L
#include "gemm.h"
#include <stdio.h>
#include <stdlib.h>
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
    if (argc != 5) { fprintf(stderr, "usage: gemm_bench M N K ITERS\n"); return 2; }
    size_t M = (size_t)atol(argv[1]);
    int N = atoi(argv[2]), K = atoi(argv[3]), iters = atoi(argv[4]);
    if (M < 1 || N < 1 || K < 1 || iters < 1 || iters > 1000) { fprintf(stderr, "bad arguments\n"); return 2; }
    real *A = malloc(M * K * sizeof(real)), *B = malloc((size_t)K * N * sizeof(real)), *C = malloc(M * N * sizeof(real));
    real *P = malloc((size_t)K * (N + GEMM_NR) * sizeof(real));
    if (!A || !B || !C || !P) { fprintf(stderr, "out of memory\n"); return 1; }
    for (size_t i = 0; i < M * K; i++) A[i] = (real)((int)(i * 7 % 13) - 6) / 13;
    for (size_t i = 0; i < (size_t)K * N; i++) B[i] = (real)((int)(i * 5 % 11) - 5) / 11;
    double t[1000];
    gemm(C, A, B, NULL, P, M, N, K, (size_t)K, 1, N, N);
    for (int i = 0; i < iters; i++) {
        double t0 = now_ms();
        gemm(C, A, B, NULL, P, M, N, K, (size_t)K, 1, N, N);
        t[i] = now_ms() - t0;
    }
    qsort(t, iters, sizeof t[0], cmp);
    printf("%.2f\n", 2.0 * M * N * K / (t[iters / 2] * 1e6));
    fprintf(stderr, "%s kernels\n", gemm_isa());
    free(A); free(B); free(C); free(P);
    return 0;
}
