import KilnIR

/// Kernels of the training graph: dropout, the loss and the backward ops.
/// Every kernel gives the same bits at any thread count: reductions run in a
/// fixed order inside one thread (rows or columns are split across threads,
/// never a sum).
extension Kernels {
    static func trainingSource(_ kind: OpKind, variant: String?) -> String? {
        let broadcast = variant == "broadcast"
        switch kind {
        case .scalar: return nil
        case .dropout: return """
            /* dropout (Srivastava et al. 2014): out = inp * keep / (1 - p); out, inp are (N).
             * The same (seed, id) gives the same mask, so the backward pass is the same call on the gradient. */
            static void dropout_forward(real *restrict out, const real *restrict inp, size_t N, real p, uint64_t seed, uint64_t id) {
                const real scale = 1 / (1 - p);
                #pragma omp parallel for schedule(static)
                for (size_t i = 0; i < N; i++) out[i] = dropout_keep(seed, id, i, p) ? inp[i] * scale : 0;
            }
            """
        case .crossEntropy: return """
            /* mean cross-entropy: loss = mean over rows m of (logsumexp(logits[m]) - logits[m, targets[m]]);
             * logits is (M, V), targets is (M); row_loss (M) is scratch; the sum runs in row order in double */
            static real cross_entropy_forward(const real *restrict logits, const int32_t *restrict targets,
                                              real *restrict row_loss, size_t M, int V) {
                #pragma omp parallel for schedule(static)
                for (size_t m = 0; m < M; m++) {
                    const real *x = logits + m * V;
                    real maxv = -INFINITY;
                    for (int v = 0; v < V; v++) maxv = x[v] > maxv ? x[v] : maxv;
                    double sum = 0;
                    for (int v = 0; v < V; v++) sum += exp((double)(x[v] - maxv));
                    row_loss[m] = (real)(log(sum) + (double)maxv - (double)x[targets[m]]);
                }
                double total = 0;
                for (size_t m = 0; m < M; m++) total += (double)row_loss[m];
                return (real)(total / (double)M);
            }
            """
        case .crossEntropyGrad: return """
            /* d loss / d logits = (softmax(logits) - onehot(targets)) * dloss / M; out, logits are (M, V) */
            static void cross_entropy_backward(real *restrict out, const real *restrict logits, const int32_t *restrict targets,
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
            """
        case .embeddingGrad: return """
            /* embedding backward: dtable = acc + the rows dout[n, :] added at ids[n]; dtable, acc are (V, C), dout is
             * (N, C). acc may be NULL (zeros) or dtable itself (in place: a tied output head's weight gradient).
             * Columns are split across threads; each column sums over n in order. */
            static void embedding_backward(real *dtable, const real *acc, const real *restrict dout,
                                           const int32_t *restrict ids, size_t N, int V, int C) {
                if (!acc) memset(dtable, 0, (size_t)V * C * sizeof(real));
                else if (acc != dtable) memcpy(dtable, acc, (size_t)V * C * sizeof(real));
                #pragma omp parallel
                {
                    int c0, c1;
                    thread_columns(C, &c0, &c1);
                    for (size_t n = 0; n < N; n++) {
                        real *row = dtable + (size_t)ids[n] * C;
                        const real *d = dout + n * C;
                        for (int c = c0; c < c1; c++) row[c] += d[c];
                    }
                }
            }
            """
        case .padRows: return """
            /* pad_rows: out (N, C) holds inp (T, C) in its first T rows and zeros after */
            static void pad_rows_forward(real *restrict out, const real *restrict inp, size_t T, size_t N, size_t C) {
                memcpy(out, inp, T * C * sizeof(real));
                memset(out + T * C, 0, (N - T) * C * sizeof(real));
            }
            """
        case .linearGradInput: return """
            /* linear backward, input: dinp = dout · weight + acc; dinp, acc are (M, K), dout is (M, N), weight is
             * (N, K); acc (a gradient summed into this one, in the product's epilogue) may be NULL;
             * panels (N, K rounded up to 64) is scratch */
            static void linear_backward_input(real *restrict dinp, const real *restrict dout, const real *restrict weight,
                                              const real *restrict acc, real *restrict panels, size_t M, int K, int N) {
                gemm(dinp, dout, weight, acc, panels, M, K, N, (size_t)N, 1, K, K);
            }
            """
        case .linearGradWeight: return """
            /* linear backward, weight: dweight = doutᵀ · inp summed over all M rows;
             * dweight is (N, K), dout is (M, N), inp is (M, K); panels (M, K rounded up to 64) is scratch */
            static void linear_backward_weight(real *restrict dweight, const real *restrict dout, const real *restrict inp,
                                               real *restrict panels, size_t M, int K, int N) {
                gemm(dweight, dout, inp, NULL, panels, (size_t)N, K, (int)M, 1, (size_t)N, K, K);
            }
            """
        case .sumTo:
            if broadcast { return """
                /* sum_to, general: out[j] = sum of inp over the broadcast dims; `stride` maps each input
                 * index (by dim) to out; single-threaded, in input order */
                static void sum_to_broadcast_forward(real *restrict out, const real *restrict inp, size_t out_n,
                                                     int rank, const size_t *dims, const size_t *stride) {
                    size_t total = 1;
                    for (int d = 0; d < rank; d++) total *= dims[d];
                    memset(out, 0, out_n * sizeof(real));
                    for (size_t i = 0; i < total; i++) {
                        size_t rem = i, oi = 0;
                        for (int d = rank - 1; d >= 0; d--) { oi += (rem % dims[d]) * stride[d]; rem /= dims[d]; }
                        out[oi] += inp[i];
                    }
                }
                """ }
            return """
            /* sum_to: out[j] = sum over r of inp[r, j]; inp is (R, N), out is (N) (a bias or broadcast gradient) */
            static void sum_to_forward(real *restrict out, const real *restrict inp, size_t R, size_t N) {
                /* each thread owns a range of columns and sweeps the rows in order (the same sum at any thread count) */
                #pragma omp parallel
                {
                    int c0, c1;
                    thread_columns((int)N, &c0, &c1);
                    for (int j = c0; j < c1; j++) out[j] = 0;
                    for (size_t r = 0; r < R; r++) {
                        const real *row = inp + r * N;
                        #pragma omp simd
                        for (int j = c0; j < c1; j++) out[j] += row[j];
                    }
                }
            }
            """
        case .layernormGradInput: return """
            /* layernorm backward, input: with x̂ = (x - mean) * rstd and g = dout * weight,
             * dinp = acc + rstd * (g - mean(g) - x̂ * mean(g * x̂)); dinp, dout, inp, acc are (M, C); acc (the
             * gradient of the residual stream this branch rejoins) may be NULL */
            static void layernorm_backward_input(real *restrict dinp, const real *restrict dout, const real *restrict inp,
                                                 const real *restrict weight, const real *restrict acc, size_t M, int C,
                                                 real eps) {
                #pragma omp parallel for schedule(static)
                for (size_t m = 0; m < M; m++) {
                    const real *x = inp + m * C, *dy = dout + m * C;
                    real *dx = dinp + m * C;
                    real mean, rstd;
                    row_moments(x, C, eps, &mean, &rstd);
                    real gsum = 0, gxsum = 0;
                    for (int c = 0; c < C; c++) {
                        real g = dy[c] * weight[c];
                        gsum += g;
                        gxsum += g * (x[c] - mean) * rstd;
                    }
                    gsum /= (real)C;
                    gxsum /= (real)C;
                    for (int c = 0; c < C; c++) {
                        real xhat = (x[c] - mean) * rstd;
                        dx[c] = rstd * (dy[c] * weight[c] - gsum - xhat * gxsum);
                    }
                    if (acc) {
                        const real *a = acc + m * C;
                        for (int c = 0; c < C; c++) dx[c] = a[c] + dx[c];
                    }
                }
            }
            """
        case .layernormGradWeight: return """
            /* layernorm backward, weight: dweight[c] = sum over rows of dout * x̂; dout, inp are (M, C).
             * Columns are split across threads; each thread walks all rows in order. */
            static void layernorm_backward_weight(real *restrict dweight, const real *restrict dout, const real *restrict inp,
                                                  size_t M, int C, real eps) {
                #pragma omp parallel
                {
                    int c0, c1;
                    thread_columns(C, &c0, &c1);
                    for (int c = c0; c < c1; c++) dweight[c] = 0;
                    for (size_t m = 0; m < M; m++) {
                        const real *x = inp + m * C, *dy = dout + m * C;
                        real mean, rstd;
                        row_moments(x, C, eps, &mean, &rstd);
                        for (int c = c0; c < c1; c++) dweight[c] += dy[c] * (x[c] - mean) * rstd;
                    }
                }
            }
            """
        case .attentionGrad where variant == "all": return """
            /* attention backward for self-attention, all three gradients in one pass: out is (3, B, T, C)
             * holding dq, dk, dv; dout, q, k, v are (B, T, C). Per (batch, head), in query order:
             *   P = softmax(q·kᵀ·scale) (masked), dP = dout·vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P))
             *   dq = dS·k·scale, dk = dSᵀ·q·scale, dv = Pᵀ·dout.
             * scratch holds three rows of T per (batch, head). */
            static void attention_backward_all(real *restrict out, const real *restrict dout, const real *restrict q,
                                               const real *restrict k, const real *restrict v, real *restrict scratch,
                                               int B, int T, int C, int NH, int causal) {
                const int hs = C / NH;
                const real scale = 1 / sqrt((real)hs);
                const size_t plane = (size_t)B * T * C;
                real *restrict dq = out, *restrict dk = out + plane, *restrict dv = out + 2 * plane;
                #pragma omp parallel for collapse(2) schedule(static)
                for (int b = 0; b < B; b++) {
                    for (int h = 0; h < NH; h++) {
                        real *p = scratch + ((size_t)b * NH + h) * 3 * T, *dp = p + T;
                        for (int t = 0; t < T; t++) {
                            size_t row = ((size_t)b * T + t) * C + h * hs;
                            for (int d = 0; d < hs; d++) { dk[row + d] = 0; dv[row + d] = 0; }
                        }
                        for (int t = 0; t < T; t++) {
                            const size_t rt = ((size_t)b * T + t) * C + h * hs;
                            const real *qt = q + rt, *dyt = dout + rt;
                            const int len = causal ? t + 1 : T;
                            real maxv = -INFINITY;
                            for (int s = 0; s < len; s++) {
                                const real *ks = k + ((size_t)b * T + s) * C + h * hs;
                                const real *vs = v + ((size_t)b * T + s) * C + h * hs;
                                real score = 0, dot = 0;
                                #pragma omp simd reduction(+:score, dot)
                                for (int d = 0; d < hs; d++) { score += qt[d] * ks[d]; dot += dyt[d] * vs[d]; }
                                p[s] = score * scale;
                                dp[s] = dot;
                                maxv = p[s] > maxv ? p[s] : maxv;
                            }
                            real sum = 0;
                            #pragma omp simd reduction(+:sum)
                            for (int s = 0; s < len; s++) { p[s] = kiln_exp(p[s] - maxv); sum += p[s]; }
                            real inv = 1 / sum, pdp = 0;
                            for (int s = 0; s < len; s++) { p[s] *= inv; pdp += p[s] * dp[s]; }
                            real *dqt = dq + rt;
                            for (int d = 0; d < hs; d++) dqt[d] = 0;
                            for (int s = 0; s < len; s++) {
                                const size_t rs = ((size_t)b * T + s) * C + h * hs;
                                const real ds = p[s] * (dp[s] - pdp) * scale, ps = p[s];
                                const real *ks = k + rs;
                                real *dks = dk + rs, *dvs = dv + rs;
                                #pragma omp simd
                                for (int d = 0; d < hs; d++) {
                                    dqt[d] += ds * ks[d];
                                    dks[d] += ds * qt[d];
                                    dvs[d] += ps * dyt[d];
                                }
                            }
                        }
                    }
                }
            }
            """
        case .attentionGrad: return """
            /* attention backward for one of q, k, v (wrt 0, 1, 2). q, dout are (B, T, C); k, v are (B, S, C);
             * out has the shape of the input it differentiates. Per (batch, head), in query order:
             *   P = softmax(q·kᵀ·scale) (masked), dP = dout·vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P))
             *   dq = dS·k·scale, dk = dSᵀ·q·scale, dv = Pᵀ·dout.
             * scratch holds two rows of S per (batch, head). */
            static void attention_backward(real *restrict out, const real *restrict dout, const real *restrict q,
                                           const real *restrict k, const real *restrict v, real *restrict scratch,
                                           int B, int T, int S, int C, int NH, int causal, int wrt) {
                const int hs = C / NH;
                const real scale = 1 / sqrt((real)hs);
                #pragma omp parallel for collapse(2) schedule(static)
                for (int b = 0; b < B; b++) {
                    for (int h = 0; h < NH; h++) {
                        real *p = scratch + ((size_t)b * NH + h) * 2 * S;
                        real *dp = p + S;
                        int rows = wrt == 0 ? T : S;
                        for (int r = 0; r < rows; r++) {
                            real *o = out + ((size_t)b * rows + r) * C + h * hs;
                            for (int d = 0; d < hs; d++) o[d] = 0;
                        }
                        for (int t = 0; t < T; t++) {
                            const real *qt = q + ((size_t)b * T + t) * C + h * hs;
                            const real *dyt = dout + ((size_t)b * T + t) * C + h * hs;
                            int len = causal ? t + 1 : S;
                            real maxv = -INFINITY;
                            for (int s = 0; s < len; s++) {
                                const real *ks = k + ((size_t)b * S + s) * C + h * hs;
                                real score = 0;
                                for (int d = 0; d < hs; d++) score += qt[d] * ks[d];
                                p[s] = score * scale;
                                maxv = p[s] > maxv ? p[s] : maxv;
                            }
                            real sum = 0;
                            #pragma omp simd reduction(+:sum)
                            for (int s = 0; s < len; s++) { p[s] = kiln_exp(p[s] - maxv); sum += p[s]; }
                            for (int s = 0; s < len; s++) p[s] /= sum;
                            if (wrt == 2) {
                                for (int s = 0; s < len; s++) {
                                    real *dv = out + ((size_t)b * S + s) * C + h * hs;
                                    for (int d = 0; d < hs; d++) dv[d] += p[s] * dyt[d];
                                }
                                continue;
                            }
                            real dot = 0;
                            for (int s = 0; s < len; s++) {
                                const real *vs = v + ((size_t)b * S + s) * C + h * hs;
                                real acc = 0;
                                for (int d = 0; d < hs; d++) acc += dyt[d] * vs[d];
                                dp[s] = acc;
                                dot += acc * p[s];
                            }
                            for (int s = 0; s < len; s++) {
                                real ds = p[s] * (dp[s] - dot) * scale;
                                if (wrt == 0) {
                                    real *dq = out + ((size_t)b * T + t) * C + h * hs;
                                    const real *ks = k + ((size_t)b * S + s) * C + h * hs;
                                    for (int d = 0; d < hs; d++) dq[d] += ds * ks[d];
                                } else {
                                    real *dk = out + ((size_t)b * S + s) * C + h * hs;
                                    for (int d = 0; d < hs; d++) dk[d] += ds * qt[d];
                                }
                            }
                        }
                    }
                }
            }
            """
        case .reluGrad: return """
            /* relu backward: dinp = x > 0 ? dout : 0; all are (N) */
            static void relu_backward(real *restrict dinp, const real *restrict dout, const real *restrict x, size_t N) {
                #pragma omp parallel for simd schedule(static)
                for (size_t i = 0; i < N; i++) dinp[i] = x[i] > 0 ? dout[i] : 0;
            }
            """
        case .geluGrad: return """
            /* gelu backward: d/dx [x Φ(x)] = Φ(x) + x φ(x); all are (N) */
            static void gelu_backward(real *restrict dinp, const real *restrict dout, const real *restrict x, size_t N) {
                #pragma omp parallel for schedule(static)
                for (size_t i = 0; i < N; i++) {
                    real cdf = (real)0.5 * (1 + kiln_erf(x[i] * (real)0.70710678118654752));
                    real pdf = kiln_exp((real)-0.5 * x[i] * x[i]) * (real)0.39894228040143268;
                    dinp[i] = dout[i] * (cdf + x[i] * pdf);
                }
            }
            """
        case .geluTanhGrad: return """
            /* gelu (tanh approximation) backward; all are (N) */
            static void gelu_tanh_backward(real *restrict dinp, const real *restrict dout, const real *restrict x, size_t N) {
                const real s = (real)0.79788456080286536;
                #pragma omp parallel for schedule(static)
                for (size_t i = 0; i < N; i++) {
                    real xi = x[i];
                    real u = s * (xi + (real)0.044715 * xi * xi * xi);
                    real th = kiln_tanh(u);
                    real du = s * (1 + 3 * (real)0.044715 * xi * xi);
                    dinp[i] = dout[i] * ((real)0.5 * (1 + th) + (real)0.5 * xi * (1 - th * th) * du);
                }
            }
            """
        case .softmaxGrad: return """
            /* softmax backward: dinp = y ⊙ (dout − Σ dout ⊙ y) per row; all are (M, N), y the softmax output */
            static void softmax_backward(real *restrict dinp, const real *restrict dout, const real *restrict y, size_t M, int N) {
                #pragma omp parallel for schedule(static)
                for (size_t m = 0; m < M; m++) {
                    const real *d = dout + m * N, *yy = y + m * N;
                    real dot = 0;
                    for (int i = 0; i < N; i++) dot += d[i] * yy[i];
                    for (int i = 0; i < N; i++) dinp[m * N + i] = yy[i] * (d[i] - dot);
                }
            }
            """
        default: return nil
        }
    }
}
