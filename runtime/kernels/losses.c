/*
 * losses.c - the losses of training objectives and their gradients: `cross_entropy` (with an ignored target
 * id and label smoothing) and `mse`. Sums over rows run in row order in double.
 */
#ifndef KILN_KERNELS_LOSSES_C
#define KILN_KERNELS_LOSSES_C

#include "kiln_math.h"

/* mean cross-entropy over the counted rows m (those whose target is not `ignore`, when has_ignore):
 * logsumexp(logits[m]) - logits[m, targets[m]], or with label smoothing eps
 * (1 - eps) * that + eps * (logsumexp(logits[m]) - mean(logits[m])) (PyTorch's label_smoothing);
 * logits is (M, V), targets is (M); row_loss (M) is scratch; 0 when no row counts */
KILN_KERNEL real cross_entropy_forward(const real *restrict logits, const int32_t *restrict targets,
                                       real *restrict row_loss, size_t M, int V, int has_ignore, int64_t ignore,
                                       real eps) {
    #pragma omp parallel for schedule(static)
    for (size_t m = 0; m < M; m++) {
        if (has_ignore && targets[m] == ignore) {
            row_loss[m] = 0;
            continue;
        }
        const real *x = logits + m * V;
        const real maxv = row_max(x, V);
        double sum = 0, mean = 0;  /* kiln_exp of arguments <= 0, and the logits, summed in double (in lanes) */
        if (eps == 0) {
            #pragma omp simd reduction(+:sum)
            for (int v = 0; v < V; v++) sum += (double)kiln_exp(x[v] - maxv);
            row_loss[m] = (real)(log(sum) + (double)maxv - (double)x[targets[m]]);
        } else {
            #pragma omp simd reduction(+:sum, mean)
            for (int v = 0; v < V; v++) {
                sum += (double)kiln_exp(x[v] - maxv);
                mean += (double)x[v];
            }
            mean /= (double)V;
            const double lse = log(sum) + (double)maxv;
            row_loss[m] = (real)((1 - (double)eps) * (lse - (double)x[targets[m]]) + (double)eps * (lse - mean));
        }
    }
    double total = 0;
    size_t count = 0;
    for (size_t m = 0; m < M; m++) {
        total += (double)row_loss[m];
        count += !(has_ignore && targets[m] == ignore);
    }
    return count ? (real)(total / (double)count) : 0;
}

/* d loss / d logits = (softmax(logits) - (1 - eps) * onehot(targets) - eps / V) * dloss / N over the N counted
 * rows, zeros at the ignored ones; out, logits are (M, V) */
KILN_KERNEL void cross_entropy_backward(real *restrict out, const real *restrict logits, const int32_t *restrict targets,
                                        const real *restrict dloss, size_t M, int V, int has_ignore, int64_t ignore,
                                        real eps) {
    size_t count = 0;
    for (size_t m = 0; m < M; m++) count += !(has_ignore && targets[m] == ignore);
    const real scale = count ? dloss[0] / (real)count : 0;
    #pragma omp parallel for schedule(static)
    for (size_t m = 0; m < M; m++) {
        real *d = out + m * V;
        if (has_ignore && targets[m] == ignore) {
            memset(d, 0, (size_t)V * sizeof(real));
            continue;
        }
        row_softmax(logits + m * V, d, V);
        for (int v = 0; v < V; v++) d[v] *= scale;
        if (eps == 0) {
            d[targets[m]] -= scale;
        } else {
            const real spread = eps / (real)V * scale;
            for (int v = 0; v < V; v++) d[v] -= spread;
            d[targets[m]] -= (1 - eps) * scale;
        }
    }
}

/* mean squared error: the mean over the N elements of (p - t)^2, summed in order in double */
KILN_KERNEL real mse_forward(const real *restrict p, const real *restrict t, size_t N) {
    double total = 0;
    for (size_t i = 0; i < N; i++) {
        const double d = (double)p[i] - (double)t[i];
        total += d * d;
    }
    return N ? (real)(total / (double)N) : 0;
}

/* its gradient: dp = 2 (p - t) * dloss / N */
KILN_KERNEL void mse_backward(real *restrict dp, const real *restrict p, const real *restrict t,
                              const real *restrict dloss, size_t N) {
    const real scale = 2 * dloss[0] / (real)N;
    #pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < N; i++) dp[i] = (p[i] - t[i]) * scale;
}

#endif /* KILN_KERNELS_LOSSES_C */
