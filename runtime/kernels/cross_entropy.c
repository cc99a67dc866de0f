/*
 * cross_entropy.c - the loss `cross_entropy` and its gradient `cross_entropy_grad`.
 */
#ifndef KILN_KERNELS_CROSS_ENTROPY_C
#define KILN_KERNELS_CROSS_ENTROPY_C

#include "kiln_math.h"

/* mean cross-entropy: loss = mean over rows m of (logsumexp(logits[m]) - logits[m, targets[m]]);
 * logits is (M, V), targets is (M); row_loss (M) is scratch; the sum runs in row order in double */
KILN_KERNEL real cross_entropy_forward(const real *restrict logits, const int32_t *restrict targets,
                                       real *restrict row_loss, size_t M, int V) {
    #pragma omp parallel for schedule(static)
    for (size_t m = 0; m < M; m++) {
        const real *x = logits + m * V;
        const real maxv = row_max(x, V);
        double sum = 0;  /* kiln_exp of arguments <= 0, summed in double */
        #pragma omp simd reduction(+:sum)
        for (int v = 0; v < V; v++) sum += (double)kiln_exp(x[v] - maxv);
        row_loss[m] = (real)(log(sum) + (double)maxv - (double)x[targets[m]]);
    }
    double total = 0;
    for (size_t m = 0; m < M; m++) total += (double)row_loss[m];
    return (real)(total / (double)M);
}


/* d loss / d logits = (softmax(logits) - onehot(targets)) * dloss / M; out, logits are (M, V) */
KILN_KERNEL void cross_entropy_backward(real *restrict out, const real *restrict logits, const int32_t *restrict targets,
                                        const real *restrict dloss, size_t M, int V) {
    const real scale = dloss[0] / (real)M;
    #pragma omp parallel for schedule(static)
    for (size_t m = 0; m < M; m++) {
        real *d = out + m * V;
        row_softmax(logits + m * V, d, V);
        for (int v = 0; v < V; v++) d[v] *= scale;
        d[targets[m]] -= scale;
    }
}

#endif /* KILN_KERNELS_CROSS_ENTROPY_C */
