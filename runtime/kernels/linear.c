/*
 * linear.c - `linear` (x·Wᵀ + b, with the epilogue fusions: an activation and a residual), `linear_stack`
 * (several linears of one input as one product) and the gradients `linear_grad_input`, `linear_grad_weight`,
 * all on the matrix-product engine of gemm.h.
 */
#ifndef KILN_KERNELS_LINEAR_C
#define KILN_KERNELS_LINEAR_C

#include "gemm.h"

/* linear with a packed weight: out = act(inp · weightᵀ + bias) + residual
 * out, residual are (M, N), inp is (M, K), weight is (N, K) rearranged by pack_weight_in_place (its first
 * N / 64 * 64 rows as panels, the rest as rows), bias is (N); bias and residual may be NULL; act: 0 none,
 * 1 relu, 2 gelu, 3 gelu_tanh (fused by the fuse-epilogue pass); tail (K, 64) is scratch for the last rows */
KILN_KERNEL void linear_packed_forward(real *restrict out, const real *restrict inp,
                                       const real *restrict weight, const real *restrict bias, int act,
                                       const real *restrict residual, real *restrict tail, size_t M, int K, int N) {
    const int full = N / GEMM_NR * GEMM_NR;
    if (full < N) gemm_pack(tail, weight + (size_t)full * K, 1, (size_t)K, K, N - full);
    gemm_panels(out, (size_t)N, inp, (size_t)K, 1, weight, tail, M, N, K, bias, act, residual);
}


/* linear: out = act(inp · weightᵀ + bias) + residual
 * out, residual are (M, N), inp is (M, K), weight is (N, K), bias is (N); bias and residual may be NULL;
 * act as in gemm_epilogue; panels (K, N rounded up to 64) is scratch for the packed weight */
KILN_KERNEL void linear_forward(real *restrict out, const real *restrict inp,
                                const real *restrict weight, const real *restrict bias, int act,
                                const real *restrict residual, real *restrict panels, size_t M, int K, int N) {
    gemm_pack(panels, weight, 1, (size_t)K, K, N);
    gemm_panels(out, (size_t)N, inp, (size_t)K, 1, panels, panels + (size_t)(N / GEMM_NR) * K * GEMM_NR,
                M, N, K, bias, act, residual);
}


/* one run of linear_stack_packed_forward: the row tiles tb .. te-1 of panel u (panel t of product g) */
typedef struct { real *out; const real *inp; const real *const *w, *const *b; const real *tails; size_t M; int K, N; } linear_stack_args;
KILN_KERNEL void linear_stack_run(const void *ctx, size_t u, size_t tb, size_t te) {
    const linear_stack_args *s = ctx;
    const int ntiles = (s->N + GEMM_NR - 1) / GEMM_NR, full = s->N / GEMM_NR * GEMM_NR;
    const int g = (int)(u / (size_t)ntiles), t = (int)(u % (size_t)ntiles);
    const int n0 = t * GEMM_NR, nb = s->N - n0 < GEMM_NR ? s->N - n0 : GEMM_NR;
    const real *panel = n0 < full ? s->w[g] + (size_t)t * s->K * GEMM_NR : s->tails + (size_t)g * s->K * GEMM_NR;
    gemm_panel_rows(s->out + (size_t)g * s->M * s->N, (size_t)s->N, s->inp, (size_t)s->K, 1, panel, s->M, tb, te, n0, nb,
                    s->K, s->b[g], 0, NULL);
}

/* count linear layers of one input as one product (the merged Q, K, V projections):
 * out[g] = inp · w[g]ᵀ + b[g] for g < count. out is (count, M, N), inp is (M, K); each w[g] (N, K) is in
 * the panel layout of pack_weight_in_place; b[g] (N) may be NULL; tails: count panels (K, 64) of scratch
 * for the last N % 64 rows of each weight (NULL when N is a multiple of 64). One parallel loop over the
 * tiles of all the products (gemm_share); each tile is summed over K in order by one thread. */
KILN_KERNEL void linear_stack_packed_forward(real *restrict out, const real *restrict inp, int count,
                                             const real *const *w, const real *const *b, real *restrict tails,
                                             size_t M, int K, int N) {
    gemm_tile();
    const int full = N / GEMM_NR * GEMM_NR, ntiles = (N + GEMM_NR - 1) / GEMM_NR;
    if (full < N)
        for (int g = 0; g < count; g++)
            gemm_pack(tails + (size_t)g * K * GEMM_NR, w[g] + (size_t)full * K, 1, (size_t)K, K, N - full);
    const linear_stack_args s = {out, inp, w, b, tails, M, K, N};
    gemm_share((M + GEMM_MR - 1) / GEMM_MR, (size_t)count * ntiles, linear_stack_run, &s);
}


/* linear backward, input: dinp = dout · weight + acc; dinp, acc are (M, K), dout is (M, N), weight is
 * (N, K); acc (a gradient summed into this one, in the product's epilogue) may be NULL;
 * panels (N, K rounded up to 64) is scratch */
KILN_KERNEL void linear_backward_input(real *restrict dinp, const real *restrict dout, const real *restrict weight,
                                       const real *restrict acc, real *restrict panels, size_t M, int K, int N) {
    gemm(dinp, dout, weight, acc, panels, M, K, N, (size_t)N, 1, K, K);
}


/* linear backward, weight: dweight = doutᵀ · inp summed over all M rows;
 * dweight is (N, K), dout is (M, N), inp is (M, K); panels (M, K rounded up to 64) is scratch */
KILN_KERNEL void linear_backward_weight(real *restrict dweight, const real *restrict dout, const real *restrict inp,
                                        real *restrict panels, size_t M, int K, int N) {
    gemm(dweight, dout, inp, NULL, panels, (size_t)N, K, (int)M, 1, (size_t)N, K, K);
}

#endif /* KILN_KERNELS_LINEAR_C */
