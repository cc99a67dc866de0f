import KilnIR

/// The C kernels, one named function per op, written like llm.c: outputs
/// first, then inputs, then dimensions; a shape comment on every buffer;
/// OpenMP over independent rows. Each kernel computes every output element
/// in one thread with a fixed summation order, so results are the same
/// bits at any thread count.
enum Kernels {
    /// Shared helper functions, emitted once before the kernels that use them.
    static let helpers: [String: String] = [
        "gemm_engine": GemmKernels.engine,
        "gemm": GemmKernels.gemm,
        "row_moments": """
            /* mean and 1/sqrt(variance + eps) of one row x of length C (biased variance, two passes) */
            static void row_moments(const real *restrict x, int C, real eps, real *mean_out, real *rstd_out) {
                real mean = 0;
                #pragma omp simd reduction(+:mean)
                for (int c = 0; c < C; c++) mean += x[c];
                mean /= (real)C;
                real var = 0;
                #pragma omp simd reduction(+:var)
                for (int c = 0; c < C; c++) { real d = x[c] - mean; var += d * d; }
                var /= (real)C;
                *mean_out = mean;
                *rstd_out = 1 / sqrt(var + eps);
            }
            """,
        "thread_columns": """
            /* the columns [c0, c1) of 0..C-1 that this OpenMP thread owns (all of them outside a parallel region) */
            static inline void thread_columns(int C, int *c0, int *c1) {
            #ifdef _OPENMP
                int nt = omp_get_num_threads(), id = omp_get_thread_num();
            #else
                int nt = 1, id = 0;
            #endif
                *c0 = (int)((long long)C * id / nt);
                *c1 = (int)((long long)C * (id + 1) / nt);
            }
            """,
        "fast_exp": """
            /* Math that vectorises (no libm calls in the loops that use it). Float builds use the approximations
             * below (accuracy measured by tests/python/test_fast_math.py); double builds (gradient checks) use libm.
             * kiln_exp: Cody-Waite reduction x = n ln2 + r and a degree-6 polynomial (Cephes expf); relative error
             * <= 2e-7 for -87 <= x <= 88; inputs are clamped to [-87.3, 88] (the callers pass x <= 0). */
            #if KILN_REAL_IS_DOUBLE
            static inline real kiln_exp(real x) { return exp(x); }
            #else
            static inline float kiln_exp(float x) {
                x = x < -87.3365f ? -87.3365f : (x > 88.0f ? 88.0f : x);
                const float n = rintf(x * 1.44269504088896341f);  /* rintf (not floorf) so gcc vectorises the loop */
                const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
                float p = 1.9875691500e-4f;
                p = p * r + 1.3981999507e-3f;
                p = p * r + 8.3334519073e-3f;
                p = p * r + 4.1665795894e-2f;
                p = p * r + 1.6666665459e-1f;
                p = p * r + 5.0000001201e-1f;
                p = p * r * r + r + 1.0f;
                const int32_t bits = ((int32_t)n + 127) << 23;
                float scale;
                memcpy(&scale, &bits, sizeof scale);
                return p * scale;
            }
            #endif
            """,
        "fast_erf": """
            /* kiln_erf: Abramowitz & Stegun 7.1.26 in float builds (absolute error <= 5e-7: 1.5e-7 from the formula, the rest
             * float rounding), libm erf in double builds */
            #if KILN_REAL_IS_DOUBLE
            static inline real kiln_erf(real x) { return erf(x); }
            #else
            static inline float kiln_erf(float x) {
                const float ax = fabsf(x), t = 1.0f / (1.0f + 0.3275911f * ax);
                float y = 1.061405429f;
                y = y * t - 1.453152027f;
                y = y * t + 1.421413741f;
                y = y * t - 0.284496736f;
                y = y * t + 0.254829592f;
                y = 1.0f - y * t * kiln_exp(-ax * ax);
                return x < 0 ? -y : y;
            }
            #endif
            """,
        "fast_tanh": """
            /* kiln_tanh: 1 - 2 / (exp(2x) + 1) with kiln_exp in float builds (absolute error <= 3e-7), libm tanh in double builds */
            #if KILN_REAL_IS_DOUBLE
            static inline real kiln_tanh(real x) { return tanh(x); }
            #else
            static inline float kiln_tanh(float x) { return 1.0f - 2.0f / (kiln_exp(2.0f * x) + 1.0f); }
            #endif
            """,
        "attention_rows": """
            /* the same attention one query row at a time (generation: T = 1 against the KV cache, no scratch);
             * keys in blocks of 64: scores, one rescale per new maximum, exp, weighted sum of values */
            static void attention_rows_forward(real *restrict out, const real *restrict q,
                                               const real *restrict k, const real *restrict v,
                                               int B, int T, int S, int C, int NH, int causal) {
                const int hs = C / NH;
                const real scale = 1 / sqrt((real)hs);
                #pragma omp parallel for collapse(3) schedule(static)
                for (int b = 0; b < B; b++) {
                    for (int h = 0; h < NH; h++) {
                        for (int t = 0; t < T; t++) {
                            const real *qt = q + ((size_t)b * T + t) * C + h * hs;
                            real *ot = out + ((size_t)b * T + t) * C + h * hs;
                            for (int d = 0; d < hs; d++) ot[d] = 0;
                            real maxv = -INFINITY, sum = 0;
                            const int len = causal ? t + 1 : S;
                            for (int s0 = 0; s0 < len; s0 += 64) {
                                const int nb = len - s0 < 64 ? len - s0 : 64;
                                real score[64];
                                real bmax = -INFINITY;
                                for (int j = 0; j < nb; j++) {
                                    const real *ks = k + ((size_t)b * S + s0 + j) * C + h * hs;
                                    real dot = 0;
                                    #pragma omp simd reduction(+:dot)
                                    for (int d = 0; d < hs; d++) dot += qt[d] * ks[d];
                                    score[j] = dot * scale;
                                    bmax = score[j] > bmax ? score[j] : bmax;
                                }
                                if (bmax > maxv) {
                                    /* a new maximum: rescale what has been accumulated */
                                    const real correction = sum > 0 ? kiln_exp(maxv - bmax) : 0;
                                    sum *= correction;
                                    #pragma omp simd
                                    for (int d = 0; d < hs; d++) ot[d] *= correction;
                                    maxv = bmax;
                                }
                                #pragma omp simd reduction(+:sum)
                                for (int j = 0; j < nb; j++) { score[j] = kiln_exp(score[j] - maxv); sum += score[j]; }
                                for (int j = 0; j < nb; j++) {
                                    const real *vs = v + ((size_t)b * S + s0 + j) * C + h * hs;
                                    const real pj = score[j];
                                    #pragma omp simd
                                    for (int d = 0; d < hs; d++) ot[d] += pj * vs[d];
                                }
                            }
                            const real inv = 1 / sum;
                            #pragma omp simd
                            for (int d = 0; d < hs; d++) ot[d] *= inv;
                        }
                    }
                }
            }
            """,
        "row_max": """
            /* the largest of x[0 .. n-1] (-INFINITY when n = 0), kept as 16 running maxima so that the loop
             * vectorises (a maximum does not depend on the order it is taken in) */
            static inline real row_max(const real *restrict x, int n) {
                real m[16];
                for (int l = 0; l < 16; l++) m[l] = -INFINITY;
                int i = 0;
                for (; i + 16 <= n; i += 16) {
                    #pragma omp simd
                    for (int l = 0; l < 16; l++) m[l] = x[i + l] > m[l] ? x[i + l] : m[l];
                }
                for (; i < n; i++) m[0] = x[i] > m[0] ? x[i] : m[0];
                real r = m[0];
                for (int l = 1; l < 16; l++) r = m[l] > r ? m[l] : r;
                return r;
            }
            """,
        "row_softmax": """
            /* y = softmax(x) for one row of length N (max-subtracted, so exp never overflows) */
            static void row_softmax(const real *restrict x, real *restrict y, int N) {
                const real maxv = row_max(x, N);
                real sum = 0;
                #pragma omp simd reduction(+:sum)
                for (int i = 0; i < N; i++) { y[i] = kiln_exp(x[i] - maxv); sum += y[i]; }
                real inv = 1 / sum;
                #pragma omp simd
                for (int i = 0; i < N; i++) y[i] *= inv;
            }
            """,
        "dropout_keep": """
            /* whether dropout keeps element i of the dropout op `id` in the step with this seed:
             * a counter-based hash (SplitMix64 finaliser), so forward and backward agree without a stored mask */
            static inline int dropout_keep(uint64_t seed, uint64_t id, uint64_t i, real p) {
                uint64_t z = seed ^ (id * 0x9E3779B97F4A7C15ULL) ^ (i * 0xD1B54A32D192ED03ULL);
                z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
                z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
                z ^= z >> 31;
                return (double)(z >> 11) * 0x1.0p-53 >= (double)p;
            }
            """,
    ]

    /// The matrix-product engine and the math its epilogue calls, in the order they are emitted.
    static let gemmEngine = ["fast_exp", "fast_erf", "fast_tanh", "gemm_engine"]

    /// The helpers an op's kernel calls.
    static func helpersUsed(_ kind: OpKind) -> [String] {
        switch kind {
        case .layernorm, .layernormGradInput: ["row_moments"]
        case .dropout: ["dropout_keep"]
        case .softmax, .crossEntropyGrad: ["fast_exp", "row_max", "row_softmax"]
        case .crossEntropy: ["fast_exp", "row_max"]
        case .attention: gemmEngine + ["row_max"]
        case .attentionGrad: gemmEngine + ["row_max"]  // the all-gradients kernel runs on the tiles
        case .gelu, .geluGrad: ["fast_exp", "fast_erf"]
        case .geluTanh, .geluTanhGrad: ["fast_exp", "fast_tanh"]
        case .embeddingGrad, .sumTo: ["thread_columns"]
        case .layernormGradWeight: ["row_moments", "thread_columns"]
        case .linear, .linearStack: gemmEngine
        case .linearGradInput, .linearGradWeight: gemmEngine + ["gemm"]
        default: []
        }
    }

    /// The C source of the kernel(s) an op kind needs, or nil for ops with no kernel.
    /// `variant` selects a second kernel of the same op: "broadcast" (general strided
    /// broadcasting of binary ops and sum_to) or "all" (attention_grad of q, k and v at once).
    static func source(_ kind: OpKind, variant: String? = nil) -> String? {
        let broadcast = variant == "broadcast"
        switch kind {
        case .input, .param, .sliceRows, .select: return nil
        case .fused: return nil  // one kernel per expression: FusedKernels
        case .dropout, .scalar, .crossEntropy, .crossEntropyGrad, .embeddingGrad, .padRows, .linearGradInput, .linearGradWeight,
             .sumTo, .layernormGradInput, .layernormGradWeight, .attentionGrad, .reluGrad, .geluGrad, .geluTanhGrad, .softmaxGrad:
            return trainingSource(kind, variant: variant)
        case .embedding where variant == "packed": return """
            /* embedding from a table that is also a linear layer's packed weight (tied output head):
             * out[n, :] = row ids[n] of table (V, C), where rows 64t .. 64t+63 are stored as one panel (C, 64)
             * and the last V % 64 rows as plain rows (see pack_weight_in_place) */
            static void embedding_packed_forward(real *restrict out, const real *restrict table,
                                                 const int32_t *restrict ids, size_t N, int C, int V) {
                const int full = V / 64 * 64;
                #pragma omp parallel for schedule(static)
                for (size_t n = 0; n < N; n++) {
                    const int v = ids[n];
                    if (v < full) {
                        const real *col = table + (size_t)(v / 64) * C * 64 + v % 64;
                        for (int c = 0; c < C; c++) out[n * C + c] = col[(size_t)c * 64];
                    } else {
                        memcpy(out + n * C, table + (size_t)v * C, (size_t)C * sizeof(real));
                    }
                }
            }
            """
        case .embedding: return """
            /* embedding: out[n, :] = table[ids[n], :]
             * out is (N, C), table is (V, C), ids is (N) with ids already checked to be in [0, V) */
            static void embedding_forward(real *restrict out, const real *restrict table,
                                          const int32_t *restrict ids, size_t N, int C) {
                #pragma omp parallel for schedule(static)
                for (size_t n = 0; n < N; n++) {
                    memcpy(out + n * C, table + (size_t)ids[n] * C, (size_t)C * sizeof(real));
                }
            }
            """
        case .sinusoidal: return """
            /* sinusoidal positions (Vaswani et al. 2017): out is (T, C), rows t0 .. t0+T-1 of the table;
             * column 2i holds sin(t / 10000^(2i/C)), column 2i+1 holds cos of the same angle */
            static void sinusoidal_forward(real *restrict out, int t0, int T, int C) {
                #pragma omp parallel for schedule(static)
                for (int t = 0; t < T; t++) {
                    for (int c = 0; c < C; c++) {
                        double freq = exp(-log(10000.0) * (double)(2 * (c / 2)) / (double)C);
                        double angle = (double)(t0 + t) * freq;
                        out[(size_t)t * C + c] = (real)((c % 2 == 0) ? sin(angle) : cos(angle));
                    }
                }
            }
            """
        case .linear where variant == "packed": return """
            /* linear with a packed weight: out = act(inp · weightᵀ + bias) + residual
             * out, residual are (M, N), inp is (M, K), weight is (N, K) rearranged by pack_weight_in_place (its first
             * N / 64 * 64 rows as panels, the rest as rows), bias is (N); bias and residual may be NULL; act: 0 none,
             * 1 relu, 2 gelu, 3 gelu_tanh (fused by the fuse-epilogue pass); tail (K, 64) is scratch for the last rows */
            static void linear_packed_forward(real *restrict out, const real *restrict inp,
                                              const real *restrict weight, const real *restrict bias, int act,
                                              const real *restrict residual, real *restrict tail, size_t M, int K, int N) {
                const int full = N / GEMM_NR * GEMM_NR;
                if (full < N) gemm_pack(tail, weight + (size_t)full * K, 1, (size_t)K, K, N - full);
                gemm_panels(out, (size_t)N, inp, (size_t)K, 1, weight, tail, M, N, K, bias, act, residual);
            }
            """
        case .linear: return """
            /* linear: out = act(inp · weightᵀ + bias) + residual
             * out, residual are (M, N), inp is (M, K), weight is (N, K), bias is (N); bias and residual may be NULL;
             * act as in gemm_epilogue; panels (K, N rounded up to 64) is scratch for the packed weight */
            static void linear_forward(real *restrict out, const real *restrict inp,
                                       const real *restrict weight, const real *restrict bias, int act,
                                       const real *restrict residual, real *restrict panels, size_t M, int K, int N) {
                gemm_pack(panels, weight, 1, (size_t)K, K, N);
                gemm_panels(out, (size_t)N, inp, (size_t)K, 1, panels, panels + (size_t)(N / GEMM_NR) * K * GEMM_NR,
                            M, N, K, bias, act, residual);
            }
            """
        case .linearStack: return """
            /* count linear layers of one input as one product (the merged Q, K, V projections):
             * out[g] = inp · w[g]ᵀ + b[g] for g < count. out is (count, M, N), inp is (M, K); each w[g] (N, K) is in
             * the panel layout of pack_weight_in_place; b[g] (N) may be NULL; tails: count panels (K, 64) of scratch
             * for the last N % 64 rows of each weight (NULL when N is a multiple of 64). One parallel loop over the
             * tiles of all the products; each tile is summed over K in order by one thread. */
            static void linear_stack_packed_forward(real *restrict out, const real *restrict inp, int count,
                                                    const real *const *w, const real *const *b, real *restrict tails,
                                                    size_t M, int K, int N) {
                const gemm_tile_fn tile = gemm_tile();
                const int full = N / GEMM_NR * GEMM_NR, ntiles = (N + GEMM_NR - 1) / GEMM_NR;
                const size_t mtiles = (M + GEMM_MR - 1) / GEMM_MR;
                if (full < N)
                    for (int g = 0; g < count; g++)
                        gemm_pack(tails + (size_t)g * K * GEMM_NR, w[g] + (size_t)full * K, 1, (size_t)K, K, N - full);
                #pragma omp parallel for schedule(static)
                for (size_t it = 0; it < (size_t)count * ntiles * mtiles; it++) {
                    const int g = (int)(it / ((size_t)ntiles * mtiles)), t = (int)(it / mtiles % ntiles);
                    const size_t m0 = it % mtiles * GEMM_MR;
                    const int n0 = t * GEMM_NR, nb = N - n0 < GEMM_NR ? N - n0 : GEMM_NR;
                    const int mb = M - m0 < GEMM_MR ? (int)(M - m0) : GEMM_MR;
                    const real *panel = n0 < full ? w[g] + (size_t)t * K * GEMM_NR : tails + (size_t)g * K * GEMM_NR;
                    gemm_panel_tile(tile, out + (size_t)g * M * N, (size_t)N, inp, (size_t)K, 1, panel, m0, mb, n0, nb, K,
                                    b[g], 0, NULL);
                }
            }
            """
        case .layernorm: return """
            /* layernorm over the last axis (Ba et al. 2016), biased variance:
             * out, inp are (M, C); weight, bias are (C) */
            static void layernorm_forward(real *restrict out, const real *restrict inp,
                                          const real *restrict weight, const real *restrict bias,
                                          size_t M, int C, real eps) {
                #pragma omp parallel for schedule(static)
                for (size_t m = 0; m < M; m++) {
                    const real *x = inp + m * C;
                    real *y = out + m * C;
                    real mean, rstd;
                    row_moments(x, C, eps, &mean, &rstd);
                    #pragma omp simd
                    for (int c = 0; c < C; c++) y[c] = (x[c] - mean) * rstd * weight[c] + bias[c];
                }
            }
            """
        case .attention: return """
            /* multi-head scaled dot-product attention (Vaswani et al. 2017) on the GEMM engine's tiles, with an
             * online softmax (Milakov & Gimelshein 2018; the FlashAttention loop): per (batch, head) and tile of
             * GEMM_MR queries, each block of 64 keys gives a (GEMM_MR, 64) tile of scores Q K^T; its rows update the
             * running maxima and sums, and the tile P V is added to the rescaled output rows. No (T, S) buffer.
             * out, q are (B, T, C); k, v are (B, S, C); NH heads of size hs = C/NH; causal: query t sees keys 0..t.
             * ws: B*NH*S*(hs + hs64) elements (hs64 = hs rounded up to 64): per (batch, head), K^T as (hs, S) and then
             * V as (S, hs64), zero past column hs. A key block reads 64 columns of K^T; past S they run into the next
             * row (or into V), values that are masked out, never used. */
            static void attention_forward(real *restrict out, const real *restrict q, const real *restrict k,
                                          const real *restrict v, real *restrict ws,
                                          int B, int T, int S, int C, int NH, int causal) {
                const int hs = C / NH, hs64 = (hs + GEMM_NR - 1) / GEMM_NR * GEMM_NR;
                const size_t per_head = (size_t)S * (hs + hs64);
                const real scale = 1 / sqrt((real)hs);
                const gemm_tile_fn tile = gemm_tile();
                #pragma omp parallel for collapse(2) schedule(static)
                for (int b = 0; b < B; b++) {
                    for (int h = 0; h < NH; h++) {
                        real *restrict kt = ws + ((size_t)b * NH + h) * per_head;
                        real *restrict vh = kt + (size_t)hs * S;
                        for (int s0 = 0; s0 < S; s0 += 16) {  /* K^T in blocks of 16 keys: contiguous stores */
                            const int sb = S - s0 < 16 ? S - s0 : 16;
                            const real *ks = k + ((size_t)b * S + s0) * C + h * hs;
                            for (int d = 0; d < hs; d++)
                                for (int j = 0; j < sb; j++) kt[(size_t)d * S + s0 + j] = ks[(size_t)j * C + d];
                        }
                        for (int s = 0; s < S; s++) {
                            const real *vs = v + ((size_t)b * S + s) * C + h * hs;
                            for (int d = 0; d < hs64; d++) vh[(size_t)s * hs64 + d] = d < hs ? vs[d] : 0;
                        }
                    }
                }
                const int tiles = (T + GEMM_MR - 1) / GEMM_MR;
                #pragma omp parallel for collapse(3) schedule(dynamic)
                for (int b = 0; b < B; b++) {
                    for (int h = 0; h < NH; h++) {
                        for (int tt = 0; tt < tiles; tt++) {
                            const real *kt = ws + ((size_t)b * NH + h) * per_head, *vh = kt + (size_t)hs * S;
                            const int t0 = tt * GEMM_MR, mb = T - t0 < GEMM_MR ? T - t0 : GEMM_MR;
                            const real *qt = q + ((size_t)b * T + t0) * C + h * hs;
                            real *ot = out + ((size_t)b * T + t0) * C + h * hs;
                            real p[GEMM_MR * GEMM_NR], pv[GEMM_MR * GEMM_NR];
                            real maxv[GEMM_MR], sum[GEMM_MR], corr[GEMM_MR];
                            for (int i = 0; i < mb; i++) {
                                maxv[i] = -INFINITY;
                                sum[i] = 0;
                                for (int d = 0; d < hs; d++) ot[(size_t)i * C + d] = 0;
                            }
                            const int keys = causal && t0 + mb < S ? t0 + mb : S;  /* keys any row of the tile sees */
                            for (int s0 = 0; s0 < keys; s0 += GEMM_NR) {
                                const int nb = keys - s0 < GEMM_NR ? keys - s0 : GEMM_NR;
                                tile(p, qt, C, 1, mb, kt + s0, S, hs);  /* p (mb, 64) = Q K^T of this block */
                                for (int i = 0; i < mb; i++) {
                                    real *pi = p + i * GEMM_NR;
                                    const int seen = causal ? t0 + i - s0 + 1 : nb;  /* keys of row i in the block */
                                    const int lim = seen < nb ? (seen > 0 ? seen : 0) : nb;
                                    const real bmax = row_max(pi, lim) * scale;  /* of the raw scores (scale > 0) */
                                    corr[i] = 1;
                                    if (bmax > maxv[i]) {
                                        /* a new maximum: what has been accumulated is rescaled below */
                                        corr[i] = sum[i] > 0 ? kiln_exp(maxv[i] - bmax) : 0;
                                        sum[i] *= corr[i];
                                        maxv[i] = bmax;
                                    }
                                    const real m = maxv[i];
                                    real rs = 0;
                                    #pragma omp simd reduction(+:rs)
                                    for (int j = 0; j < lim; j++) { pi[j] = kiln_exp(pi[j] * scale - m); rs += pi[j]; }
                                    for (int j = lim; j < nb; j++) pi[j] = 0;
                                    sum[i] += rs;
                                }
                                for (int u = 0; u < hs; u += GEMM_NR) {
                                    /* pv (mb, 64) = P V over this block, for output columns u .. u+63 */
                                    tile(pv, p, GEMM_NR, 1, mb, vh + (size_t)s0 * hs64 + u, hs64, nb);
                                    const int w = hs - u < GEMM_NR ? hs - u : GEMM_NR;
                                    for (int i = 0; i < mb; i++) {
                                        real *restrict o = ot + (size_t)i * C + u;
                                        const real *r = pv + i * GEMM_NR, c = corr[i];
                                        #pragma omp simd
                                        for (int d = 0; d < w; d++) o[d] = o[d] * c + r[d];
                                    }
                                }
                            }
                            for (int i = 0; i < mb; i++) {
                                const real inv = 1 / sum[i];
                                #pragma omp simd
                                for (int d = 0; d < hs; d++) ot[(size_t)i * C + d] *= inv;
                            }
                        }
                    }
                }
            }
            """
        case .add, .sub, .mul, .div:
            let name = kind.rawValue, op = ["add": "+", "sub": "-", "mul": "*", "div": "/"][name]!
            if broadcast { return """
            /* \(name) with general broadcasting: out has `rank` dims; a_stride and
             * b_stride give each operand's stride per output dim (0 where it is broadcast) */
            static void \(name)_broadcast_forward(real *restrict out, const real *restrict a, const real *restrict b,
                                             int rank, const size_t *dims, const size_t *a_stride, const size_t *b_stride) {
                size_t total = 1;
                for (int d = 0; d < rank; d++) total *= dims[d];
                #pragma omp parallel for schedule(static)
                for (size_t i = 0; i < total; i++) {
                    size_t rem = i, ai = 0, bi = 0;
                    for (int d = rank - 1; d >= 0; d--) {
                        size_t idx = rem % dims[d];
                        rem /= dims[d];
                        ai += idx * a_stride[d];
                        bi += idx * b_stride[d];
                    }
                    out[i] = a[ai] \(op) b[bi];
                }
            }
            """ }
            return """
            /* \(name): out = a \(op) b, where a or b may repeat along rows (a suffix broadcast):
             * out is (R, N); a is (R, N), or (N) when a_row is 0; likewise b */
            static void \(name)_forward(real *restrict out, const real *restrict a, const real *restrict b,
                                   size_t R, size_t N, int a_row, int b_row) {
                #pragma omp parallel for schedule(static)
                for (size_t r = 0; r < R; r++) {
                    const real *ar = a + (a_row ? r * N : 0);
                    const real *br = b + (b_row ? r * N : 0);
                    #pragma omp simd
                    for (size_t i = 0; i < N; i++) out[r * N + i] = ar[i] \(op) br[i];
                }
            }
            """
        case .scale: return """
            /* scale: out = inp * factor; out, inp are (N) */
            static void scale_forward(real *restrict out, const real *restrict inp, size_t N, real factor) {
                #pragma omp parallel for simd schedule(static)
                for (size_t i = 0; i < N; i++) out[i] = inp[i] * factor;
            }
            """
        case .relu: return """
            /* relu: out = max(inp, 0); out, inp are (N) */
            static void relu_forward(real *restrict out, const real *restrict inp, size_t N) {
                #pragma omp parallel for simd schedule(static)
                for (size_t i = 0; i < N; i++) out[i] = inp[i] > 0 ? inp[i] : 0;
            }
            """
        case .gelu: return """
            /* gelu (Hendrycks & Gimpel 2016), exact: out = x · Φ(x) = x/2 · (1 + erf(x/√2)); out, inp are (N) */
            static void gelu_forward(real *restrict out, const real *restrict inp, size_t N) {
                #pragma omp parallel for schedule(static)
                for (size_t i = 0; i < N; i++) {
                    real x = inp[i];
                    out[i] = (real)0.5 * x * (1 + kiln_erf(x * (real)0.70710678118654752));
                }
            }
            """
        case .geluTanh: return """
            /* gelu, tanh approximation (as in GPT-2):
             * out = x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³))); out, inp are (N) */
            static void gelu_tanh_forward(real *restrict out, const real *restrict inp, size_t N) {
                #pragma omp parallel for schedule(static)
                for (size_t i = 0; i < N; i++) {
                    real x = inp[i];
                    real u = (real)0.79788456080286536 * (x + (real)0.044715 * x * x * x);
                    out[i] = (real)0.5 * x * (1 + kiln_tanh(u));
                }
            }
            """
        case .softmax: return """
            /* softmax over the last axis: out, inp are (M, N) */
            static void softmax_forward(real *restrict out, const real *restrict inp, size_t M, int N) {
                #pragma omp parallel for schedule(static)
                for (size_t m = 0; m < M; m++) row_softmax(inp + m * N, out + m * N, N);
            }
            """
        }
    }
}
