/* The matrix-product engine (runtime/kernels/gemm.h) on one product, for tests/python/test_gemm.py.
 * usage: gemm_check M N K LAYOUT A.bin B.bin BIAS.bin|- RES.bin|- ACT OUT.bin
 * A (M,K) is stored as (M,K), or as (K,M) for LAYOUT tn; B (K,N) as (K,N), or as (N,K) for nt; float32 raw.
 * Writes two results one after the other: gemm_panels' (K summed in blocks over tiles of rows) and one
 * gemm_panel_tile call per tile (one pass over all of K), for the test to compare bit for bit. */
#include "gemm.h"
#include <stdio.h>

static float *load(const char *path, size_t n) {
    if (path[0] == '-') return NULL;
    FILE *f = fopen(path, "rb");
    float *x = malloc(n * sizeof(float));
    if (!f || !x || fread(x, sizeof(float), n, f) != n) { fprintf(stderr, "cannot read %s\n", path); exit(1); }
    fclose(f);
    return x;
}

int main(int argc, char **argv) {
    if (argc != 11) { fprintf(stderr, "usage: gemm_check M N K LAYOUT A B BIAS RES ACT OUT\n"); return 2; }
    const size_t M = (size_t)atol(argv[1]);
    const int N = atoi(argv[2]), K = atoi(argv[3]), act = atoi(argv[9]);
    const int nt = strcmp(argv[4], "nt") == 0, tn = strcmp(argv[4], "tn") == 0;
    float *A = load(argv[5], M * K), *B = load(argv[6], (size_t)K * N), *bias = load(argv[7], (size_t)N);
    float *res = load(argv[8], M * N);
    float *P = malloc((size_t)K * (N + GEMM_NR) * sizeof(float)), *C = malloc(2 * M * N * sizeof(float));
    if (!P || !C) return 1;
    const size_t a_rs = tn ? 1 : (size_t)K, a_cs = tn ? M : 1;
    const float *tail = P + (size_t)(N / GEMM_NR) * K * GEMM_NR;
    gemm_pack(P, B, nt ? 1 : (size_t)N, nt ? (size_t)K : 1, K, N);
    gemm_panels(C, (size_t)N, A, a_rs, a_cs, P, tail, M, N, K, bias, act, res);
    const gemm_tile_fn tile = gemm_tile();
    for (int t = 0; t * GEMM_NR < N; t++)
        for (size_t m0 = 0; m0 < M; m0 += GEMM_MR) {
            const int n0 = t * GEMM_NR, nb = N - n0 < GEMM_NR ? N - n0 : GEMM_NR;
            const int mb = M - m0 < GEMM_MR ? (int)(M - m0) : GEMM_MR;
            gemm_panel_tile(tile, C + M * N, (size_t)N, A, a_rs, a_cs, t < N / GEMM_NR ? P + (size_t)t * K * GEMM_NR : tail,
                            m0, mb, n0, nb, K, bias, act, res);
        }
    FILE *f = fopen(argv[10], "wb");
    if (!f || fwrite(C, sizeof(float), 2 * M * N, f) != 2 * M * N) return 1;
    fclose(f);
    printf("%s\n", gemm_isa());
    return 0;
}
