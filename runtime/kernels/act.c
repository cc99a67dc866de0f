/*
 * act.c - adaptive computation time (Graves 2016) as the Universal Transformer applies it (Dehghani et al.
 * 2019, their dynamic-halting listing): ops `act` (the halting-weighted state), `act_ponder` (the mean ponder
 * cost) and their gradients. p[k] (rows) is step k's halting probability of each position, s[k] (rows, C)
 * its state; N steps; threshold = 1 - epsilon. Positions are independent: one thread per row.
 */
#ifndef KILN_KERNELS_ACT_C
#define KILN_KERNELS_ACT_C

#include "kiln_kernel.h"

/* The halting bookkeeping of one position, in the listing's order: step k's weight w[k], whether the position
 * was still running after the step's test (run[k]) and whether it halted there (halt[k], 1 or 0). Returns
 * the ponder cost n + R (steps taken plus the remainder). */
KILN_KERNEL real act_weights(real *restrict w, real *restrict run, real *restrict halt, const real *const *p,
                             size_t row, int N, real threshold) {
    real h = 0, R = 0, n = 0;
    for (int k = 0; k < N; k++) {
        const real pk = p[k][row];
        real running = h < 1 ? 1 : 0;
        const real halted = h + pk * running > threshold ? running : 0;
        running = h + pk * running <= threshold ? running : 0;
        h += pk * running;
        R += halted * (1 - h);
        h += halted * R;
        n += running + halted;
        w[k] = pk * running + halted * R;
        run[k] = running;
        halt[k] = halted;
    }
    return n + R;
}

/* The gradient of the probabilities dp[k] (k = 0..N-1, stride apart) from those of the weights dw[k] and of
 * the final remainder dR (the ponder cost's), back through the bookkeeping (the tests are constants). */
KILN_KERNEL void act_weights_backward(real *dp, size_t stride, const real *restrict dw, real dR, const real *restrict run,
                                      const real *restrict halt, int N) {
    real dh = 0;
    for (int k = N - 1; k >= 0; k--) {
        const real dRk = dR + (dh + (dw ? dw[k] : 0)) * halt[k];  /* R after step k: in h, in w[k], and onwards */
        const real da = dh - dRk * halt[k];                        /* h + p_k running, before the remainder */
        dp[(size_t)k * stride] = ((dw ? dw[k] : 0) + da) * run[k];
        dh = da;
        dR = dRk;
    }
}

/* act_forward: out (rows, C) = y_N of y_k = w_k s_k + (1 - w_k) y_(k-1), y_0 = 0. ws: rows * 3N. */
KILN_KERNEL void act_forward(real *restrict out, const real *const *p, const real *const *s, real *restrict ws, int N,
                             size_t rows, int C, real threshold) {
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        real *w = ws + r * 3 * N, *run = w + N, *halt = run + N;
        act_weights(w, run, halt, p, r, N, threshold);
        real *restrict y = out + r * C;
        for (int c = 0; c < C; c++) y[c] = 0;
        for (int k = 0; k < N; k++) {
            const real *restrict sk = s[k] + r * C, wk = w[k];
            #pragma omp simd
            for (int c = 0; c < C; c++) y[c] += wk * (sk[c] - y[c]);
        }
    }
}

/* act_backward: wrt_p: out (N, rows) = the gradients of p[k]; else out (N, rows, C) = those of s[k], from dy
 * (rows, C). With d_k = dy.s_k, e_k = dy.y_k = (1 - w_k) e_(k-1) + w_k d_k and P_k = prod_(m>k) (1 - w_m):
 * d s_k = w_k P_k dy, and d w_k = P_k (d_k - e_(k-1)). ws: rows * 5N. */
KILN_KERNEL void act_backward(real *restrict out, const real *restrict dy, const real *const *p, const real *const *s,
                              real *restrict ws, int N, size_t rows, int C, real threshold, int wrt_p) {
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        real *w = ws + r * 5 * N, *run = w + N, *halt = run + N, *dw = halt + N, *ebefore = dw + N;
        act_weights(w, run, halt, p, r, N, threshold);
        const real *restrict g = dy + r * C;
        if (!wrt_p) {
            real P = 1;
            for (int k = N - 1; k >= 0; k--) {
                real *restrict o = out + ((size_t)k * rows + r) * C;
                const real c = w[k] * P;
                #pragma omp simd
                for (int i = 0; i < C; i++) o[i] = c * g[i];
                P *= 1 - w[k];
            }
            continue;
        }
        real e = 0;
        for (int k = 0; k < N; k++) {
            const real *restrict sk = s[k] + r * C;
            real d = 0;
            #pragma omp simd reduction(+:d)
            for (int i = 0; i < C; i++) d += g[i] * sk[i];
            ebefore[k] = e;
            dw[k] = d;  /* d_k for now */
            e = (1 - w[k]) * e + w[k] * d;
        }
        real P = 1;
        for (int k = N - 1; k >= 0; k--) {
            dw[k] = P * (dw[k] - ebefore[k]);
            P *= 1 - w[k];
        }
        act_weights_backward(out + r, rows, dw, 0, run, halt, N);
    }
}

/* act_ponder_forward: out (a scalar) = the mean over rows of n + R, summed in row order. ws: rows * 3N. */
KILN_KERNEL void act_ponder_forward(real *restrict out, const real *const *p, real *restrict ws, int N, size_t rows,
                                    real threshold) {
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        real *w = ws + rows + r * 3 * N;
        ws[r] = act_weights(w, w + N, w + 2 * N, p, r, N, threshold);
    }
    double sum = 0;
    for (size_t r = 0; r < rows; r++) sum += ws[r];
    out[0] = (real)(sum / (double)rows);
}

/* act_ponder_backward: out (N, rows) = the gradients of p[k] from that of the mean ponder cost dy[0]: the
 * remainder's, -dy/rows for each step before the halting one. ws: rows * 3N. */
KILN_KERNEL void act_ponder_backward(real *restrict out, const real *restrict dy, const real *const *p,
                                     real *restrict ws, int N, size_t rows, real threshold) {
    const real dR = dy[0] / (real)rows;
    #pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        real *w = ws + r * 3 * N, *run = w + N, *halt = run + N;
        act_weights(w, run, halt, p, r, N, threshold);
        act_weights_backward(out + r, rows, NULL, dR, run, halt, N);
    }
}

#endif /* KILN_KERNELS_ACT_C */
