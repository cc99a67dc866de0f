import KilnIR

/// Kernels of the training graph: dropout, the loss and the backward ops.
/// Every kernel gives the same bits at any thread count: reductions run in a
/// fixed order inside one thread (rows or columns are split across threads,
/// never a sum).
extension Kernels {
    /// (batch, head) pairs the all-gradients attention backward keeps in its workspace at once.
    static let attentionGradGroup = 16

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
            /* attention backward for self-attention, all three gradients, on the GEMM engine's tiles: out is
             * (3, B, T, C) holding dq, dk, dv; dout, q, k, v are (B, T, C). Per (batch, head):
             *   P = softmax(q·kᵀ·scale) (masked), dP = dout·vᵀ  (tiles of 6 queries x 64 keys),
             *   dS = P ⊙ (dP − rowsum(dP ⊙ P))·scale  (row by row, zero where masked),
             *   dq = dS·k, dk = dSᵀ·q, dv = Pᵀ·dout  (tiles of 6 rows x 64 of the head's columns).
             * Each output element is one tile's sum, in order, by one thread (the same bits at any thread count).
             * ws: ATT_BWD_GROUP (batch, head) pairs at a time, each 2·hs·T + 2·T·T64 + 3·T·hs64 elements (T64,
             * hs64: T and hs rounded up to 64): kᵀ and vᵀ (hs, T), P and dS (T, T64), then q, k, dout (T, hs64)
             * zero-padded past hs. A key block reads 64 columns of kᵀ or vᵀ; past T they run into the next
             * array, and those scores are masked. */
            enum { ATT_BWD_GROUP = \(attentionGradGroup) };
            static void attention_backward_all(real *restrict out, const real *restrict dout, const real *restrict q,
                                               const real *restrict k, const real *restrict v, real *restrict ws,
                                               int B, int T, int C, int NH, int causal) {
                const gemm_tile_fn tile = gemm_tile();
                const int hs = C / NH, hs64 = (hs + GEMM_NR - 1) / GEMM_NR * GEMM_NR;
                const int T64 = (T + GEMM_NR - 1) / GEMM_NR * GEMM_NR;
                const real scale = 1 / sqrt((real)hs);
                const size_t plane = (size_t)B * T * C;
                const size_t per = 2 * (size_t)hs * T + 2 * (size_t)T * T64 + 3 * (size_t)T * hs64;
                real *restrict dq = out, *restrict dk = out + plane, *restrict dv = out + 2 * plane;
                for (int g0 = 0; g0 < B * NH; g0 += ATT_BWD_GROUP) {
                    const int gn = B * NH - g0 < ATT_BWD_GROUP ? B * NH - g0 : ATT_BWD_GROUP;
                    #pragma omp parallel for schedule(static)
                    for (int gi = 0; gi < gn; gi++) {
                        const int b = (g0 + gi) / NH, h = (g0 + gi) % NH;
                        const size_t base = (size_t)b * T * C + (size_t)h * hs;
                        real *kt = ws + (size_t)gi * per, *vt = kt + (size_t)hs * T;
                        real *P = vt + (size_t)hs * T, *dS = P + (size_t)T * T64;
                        real *qp = dS + (size_t)T * T64, *kp = qp + (size_t)T * hs64, *dyp = kp + (size_t)T * hs64;
                        for (int s0 = 0; s0 < T; s0 += 16) {  /* K^T and V^T in blocks of 16 keys: contiguous stores */
                            const int sb = T - s0 < 16 ? T - s0 : 16;
                            const size_t r = base + (size_t)s0 * C;
                            for (int d = 0; d < hs; d++)
                                for (int j = 0; j < sb; j++) {
                                    kt[(size_t)d * T + s0 + j] = k[r + (size_t)j * C + d];
                                    vt[(size_t)d * T + s0 + j] = v[r + (size_t)j * C + d];
                                }
                        }
                        for (int s = 0; s < T; s++) {
                            const size_t r = base + (size_t)s * C;
                            for (int d = 0; d < hs64; d++) {
                                qp[(size_t)s * hs64 + d] = d < hs ? q[r + d] : 0;
                                kp[(size_t)s * hs64 + d] = d < hs ? k[r + d] : 0;
                                dyp[(size_t)s * hs64 + d] = d < hs ? dout[r + d] : 0;
                            }
                        }
                        /* P and dS, 6 query rows at a time, over the key blocks any of them sees */
                        for (int t0 = 0; t0 < T; t0 += GEMM_MR) {
                            const int mb = T - t0 < GEMM_MR ? T - t0 : GEMM_MR, len = causal ? t0 + mb : T;
                            for (int s0 = 0; s0 < len; s0 += GEMM_NR) {
                                _Alignas(64) real sc[GEMM_MR * GEMM_NR], dp[GEMM_MR * GEMM_NR];
                                tile(sc, q + base + (size_t)t0 * C, (size_t)C, 1, mb, kt + s0, (size_t)T, hs);
                                tile(dp, dout + base + (size_t)t0 * C, (size_t)C, 1, mb, vt + s0, (size_t)T, hs);
                                for (int i = 0; i < mb; i++) {
                                    memcpy(P + (size_t)(t0 + i) * T64 + s0, sc + i * GEMM_NR, GEMM_NR * sizeof(real));
                                    memcpy(dS + (size_t)(t0 + i) * T64 + s0, dp + i * GEMM_NR, GEMM_NR * sizeof(real));
                                }
                            }
                            for (int i = 0; i < mb; i++) {
                                const int n = causal ? t0 + i + 1 : T;
                                real *p = P + (size_t)(t0 + i) * T64, *ds = dS + (size_t)(t0 + i) * T64;
                                const real maxv = row_max(p, n) * scale;  /* of the raw scores (scale > 0) */
                                real sum = 0;
                                #pragma omp simd reduction(+:sum)
                                for (int s = 0; s < n; s++) { p[s] = kiln_exp(p[s] * scale - maxv); sum += p[s]; }
                                const real inv = 1 / sum;
                                real pdp = 0;
                                #pragma omp simd reduction(+:pdp)
                                for (int s = 0; s < n; s++) { p[s] *= inv; pdp += p[s] * ds[s]; }
                                #pragma omp simd
                                for (int s = 0; s < n; s++) ds[s] = p[s] * (ds[s] - pdp) * scale;
                                for (int s = n; s < T64; s++) p[s] = ds[s] = 0;
                            }
                        }
                        /* dq = dS·k: 6 queries at a time, over the keys they see */
                        for (int t0 = 0; t0 < T; t0 += GEMM_MR) {
                            const int mb = T - t0 < GEMM_MR ? T - t0 : GEMM_MR, len = causal ? t0 + mb : T;
                            for (int c0 = 0; c0 < hs; c0 += GEMM_NR) {
                                const int nb = hs - c0 < GEMM_NR ? hs - c0 : GEMM_NR;
                                _Alignas(64) real acc[GEMM_MR * GEMM_NR];
                                tile(acc, dS + (size_t)t0 * T64, (size_t)T64, 1, mb, kp + c0, (size_t)hs64, len);
                                for (int i = 0; i < mb; i++)
                                    memcpy(dq + base + (size_t)(t0 + i) * C + c0, acc + i * GEMM_NR, (size_t)nb * sizeof(real));
                            }
                        }
                        /* dk = dSᵀ·q and dv = Pᵀ·dout: 6 keys at a time, over the queries that see them */
                        for (int s0 = 0; s0 < T; s0 += GEMM_MR) {
                            const int mb = T - s0 < GEMM_MR ? T - s0 : GEMM_MR, from = causal ? s0 : 0;
                            for (int c0 = 0; c0 < hs; c0 += GEMM_NR) {
                                const int nb = hs - c0 < GEMM_NR ? hs - c0 : GEMM_NR;
                                _Alignas(64) real acc[GEMM_MR * GEMM_NR];
                                tile(acc, dS + (size_t)from * T64 + s0, 1, (size_t)T64, mb, qp + (size_t)from * hs64 + c0,
                                     (size_t)hs64, T - from);
                                for (int i = 0; i < mb; i++)
                                    memcpy(dk + base + (size_t)(s0 + i) * C + c0, acc + i * GEMM_NR, (size_t)nb * sizeof(real));
                                tile(acc, P + (size_t)from * T64 + s0, 1, (size_t)T64, mb, dyp + (size_t)from * hs64 + c0,
                                     (size_t)hs64, T - from);
                                for (int i = 0; i < mb; i++)
                                    memcpy(dv + base + (size_t)(s0 + i) * C + c0, acc + i * GEMM_NR, (size_t)nb * sizeof(real));
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
