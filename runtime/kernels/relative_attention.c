/*
 * relative_attention.c - multi-head attention whose scores depend on the distance s - t between key s and
 * query t through a learned table (op `relative_attention`, its gradients `relative_attention_grad`, and
 * `cached_relative_attention` over a KV cache):
 *
 *   Shaw et al. 2018 (clip K > 0): table (2, 2K+1, hs) holds a^K and a^V, shared by the heads; with
 *     r = clip(s - t, -K, K) + K, score = q.(k_s + a^K_r) / sqrt(hs) and out = sum_s p_s (v_s + a^V_r).
 *     Per query row the kernel computes q.a^K_r once per distance (2K+1 dots) and sums the probabilities of
 *     each distance before one pass over a^V.
 *   T5 (Raffel et al. 2020; buckets > 0): table (buckets, NH); head h adds table[bucket(s - t), h] to
 *     q.k / sqrt(hs). The buckets are those of Hugging Face's T5 (_relative_position_bucket), computed in
 *     float as it does, once per distance into the workspace.
 *
 * q, out (B, T, C); k, v (B, S, KVH * hs) (or caches (R, S, KVH * hs) with positions); NH heads of hs = C/NH,
 * head h reading key/value head h / (NH / KVH); causal: query t sees keys 0..t; mask (B, S) or NULL: key s of
 * row b is seen only where mask[b, s] is 1; positions (B, T) or NULL: query (b, t) is at position
 * positions[b, t] and sees positions 0 .. that one of cache row b (decoding). A query that sees no key gets
 * zeros. Rows go one query at a time (no matrix-product tiles): each (batch, head) is one thread's.
 */
#ifndef KILN_KERNELS_RELATIVE_ATTENTION_C
#define KILN_KERNELS_RELATIVE_ATTENTION_C

#include "kiln_math.h"

/* T5's bucket of the distance rel = s - t among n buckets (Hugging Face's _relative_position_bucket): with
 * bidirectional, half the buckets for keys after the query; then exact buckets for distances below half of
 * the rest, logarithmic ones up to max_distance, and the last for all beyond. Float arithmetic as torch's. */
KILN_KERNEL int t5_bucket(int rel, int n, int max_distance, int bidirectional) {
    int bucket = 0;
    if (bidirectional) {
        n /= 2;
        if (rel > 0) bucket = n;
        rel = rel < 0 ? -rel : rel;
    } else {
        rel = rel < 0 ? -rel : 0;
    }
    const int exact = n / 2;
    if (rel < exact) return bucket + rel;
    const float lg = logf((float)rel / (float)exact) / (float)log((double)max_distance / exact) * (float)(n - exact);
    const int large = exact + (int)lg;
    return bucket + (large < n - 1 ? large : n - 1);
}

/* The geometry of one call: sizes, the scheme and where its workspace parts lie. */
typedef struct {
    int B, T, S, C, NH, KVH, hs, Ckv, group, causal;
    int clip, R;          /* Shaw: clip distance K and R = 2K + 1 table rows; 0 for T5 */
    int buckets;          /* T5: buckets; 0 for Shaw */
    int D0;               /* distance s - t is at index s - t + D0 of the bucket array (T5) */
    real scale;
} relative_geometry;

KILN_KERNEL relative_geometry relative_setup(int B, int T, int S, int C, int NH, int KVH, int causal, int clip,
                                             int buckets) {
    relative_geometry g;
    g.B = B; g.T = T; g.S = S; g.C = C; g.NH = NH; g.KVH = KVH; g.causal = causal;
    g.hs = C / NH; g.Ckv = KVH * g.hs; g.group = NH / KVH;
    g.clip = clip; g.R = clip > 0 ? 2 * clip + 1 : 0; g.buckets = buckets;
    g.D0 = (T > S ? T : S) - 1;
    g.scale = 1 / sqrt((real)g.hs);
    return g;
}

/* The T5 buckets of every distance -D0 .. S - 1 (a query's position is below max(T, S)), into ws. */
KILN_KERNEL void relative_buckets(int32_t *restrict bucket, const relative_geometry *g, int max_distance) {
    for (int d = -g->D0; d < g->S; d++) bucket[d + g->D0] = t5_bucket(d, g->buckets, max_distance, !g->causal);
}

/* Shaw: the clipped distance's table row of key s for a query at pos. */
KILN_KERNEL inline int shaw_row(const relative_geometry *g, int s, int pos) {
    const int rel = s - pos;
    return (rel < -g->clip ? -g->clip : rel > g->clip ? g->clip : rel) + g->clip;
}

/* The probabilities p[0 .. n-1] of query row (b, t) of head h, at position pos, over the first n keys of
 * row b (n = pos + 1 when causal, else S), with the Shaw dots rk[r] = q.a^K_r: returns n. */
KILN_KERNEL int relative_row(real *restrict p, real *restrict rk, const relative_geometry *g, const real *restrict qt,
                             const real *restrict kb, const real *restrict table, const int32_t *restrict bucket,
                             const int32_t *restrict mk, int h, int pos) {
    const int n = g->causal ? pos + 1 : g->S, hs = g->hs;
    if (g->R)
        for (int r = 0; r < g->R; r++) {
            const real *a = table + (size_t)r * hs;
            real dot = 0;
            #pragma omp simd reduction(+:dot)
            for (int d = 0; d < hs; d++) dot += qt[d] * a[d];
            rk[r] = dot;
        }
    real maxv = -INFINITY;
    for (int s = 0; s < n; s++) {
        const real *ks = kb + (size_t)s * g->Ckv;
        real dot = 0;
        #pragma omp simd reduction(+:dot)
        for (int d = 0; d < hs; d++) dot += qt[d] * ks[d];
        if (g->R) {
            p[s] = (dot + rk[shaw_row(g, s, pos)]) * g->scale;
        } else {
            p[s] = dot * g->scale + table[(size_t)bucket[s - pos + g->D0] * g->NH + h];
        }
        if (mk && !mk[s]) p[s] = -INFINITY;  /* a padding key */
        maxv = p[s] > maxv ? p[s] : maxv;
    }
    real sum = 0;
    for (int s = 0; s < n; s++) { p[s] = maxv > -INFINITY && p[s] > -INFINITY ? kiln_exp(p[s] - maxv) : 0; sum += p[s]; }
    const real inv = sum > 0 ? 1 / sum : 0;  /* 0: a query that sees no key */
    for (int s = 0; s < n; s++) p[s] *= inv;
    return n;
}

/* The forward pass, and decoding over a cache with positions. ws: the T5 buckets (max(T, S) + S int32), then
 * per (batch, head) S + 2R elements: a row of probabilities, the Shaw dots q.a^K and sums by distance. */
KILN_KERNEL void relative_attention_forward(real *restrict out, const real *restrict q, const real *restrict k,
                                            const real *restrict v, const real *restrict table,
                                            const int32_t *restrict mask, const int32_t *restrict positions,
                                            real *restrict ws, int B, int T, int S, int C, int NH, int KVH,
                                            int causal, int clip, int buckets, int max_distance) {
    const relative_geometry g = relative_setup(B, T, S, C, NH, KVH, causal || positions, clip, buckets);
    int32_t *bucket = (int32_t *)ws;
    real *rows = ws + (g.D0 + S + 1);
    if (buckets) relative_buckets(bucket, &g, max_distance);
    const int hs = g.hs, R = g.R;
    const real *av = table + (size_t)R * hs;  /* Shaw's a^V */
    #pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            real *p = rows + ((size_t)b * NH + h) * (S + 2 * R), *rk = p + S, *ps = rk + R;
            const size_t kvo = (size_t)(h / g.group) * hs;
            const real *kb = k + (size_t)b * S * g.Ckv + kvo, *vb = v + (size_t)b * S * g.Ckv + kvo;
            const int32_t *mk = mask ? mask + (size_t)b * S : NULL;
            for (int t = 0; t < T; t++) {
                const int pos = positions ? positions[(size_t)b * T + t] : t;
                const real *qt = q + ((size_t)b * T + t) * C + h * hs;
                real *restrict ot = out + ((size_t)b * T + t) * C + h * hs;
                const int n = relative_row(p, rk, &g, qt, kb, table, bucket, mk, h, pos);
                for (int d = 0; d < hs; d++) ot[d] = 0;
                for (int s = 0; s < n; s++) {
                    const real *vs = vb + (size_t)s * g.Ckv, pw = p[s];
                    #pragma omp simd
                    for (int d = 0; d < hs; d++) ot[d] += pw * vs[d];
                }
                if (R) {  /* + sum_r (sum of p over distance r) a^V_r */
                    for (int r = 0; r < R; r++) ps[r] = 0;
                    for (int s = 0; s < n; s++) ps[shaw_row(&g, s, pos)] += p[s];
                    for (int r = 0; r < R; r++) {
                        const real *a = av + (size_t)r * hs, w = ps[r];
                        #pragma omp simd
                        for (int d = 0; d < hs; d++) ot[d] += w * a[d];
                    }
                }
            }
        }
    }
}

/* The weights of relative_attention_forward's heads, for pictures (op relative_attention_probs): out
 * (B, NH, T, S) holds each query row's probabilities (relative_row), 0 for the keys it does not see. ws: the
 * T5 buckets as in the forward pass, then R elements per (batch, head) (the Shaw dots). */
KILN_KERNEL void relative_attention_probs_forward(real *restrict out, const real *restrict q, const real *restrict k,
                                                  const real *restrict table, const int32_t *restrict mask,
                                                  real *restrict ws, int B, int T, int S, int C, int NH, int KVH,
                                                  int causal, int clip, int buckets, int max_distance) {
    const relative_geometry g = relative_setup(B, T, S, C, NH, KVH, causal, clip, buckets);
    int32_t *bucket = (int32_t *)ws;
    real *dots = ws + (g.D0 + S + 1);
    if (buckets) relative_buckets(bucket, &g, max_distance);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            real *rk = dots + ((size_t)b * NH + h) * (g.R + 1);
            const real *kb = k + (size_t)b * S * g.Ckv + (size_t)(h / g.group) * g.hs;
            const int32_t *mk = mask ? mask + (size_t)b * S : NULL;
            for (int t = 0; t < T; t++) {
                real *restrict p = out + (((size_t)b * NH + h) * T + t) * S;
                const int n = relative_row(p, rk, &g, q + ((size_t)b * T + t) * C + h * g.hs, kb, table, bucket, mk, h, t);
                for (int s = n; s < S; s++) p[s] = 0;
            }
        }
    }
}

/* The gradient with respect to q (wrt 0), k (1), v (2) or the table (3), recomputing each row's probabilities.
 * ws: the buckets as in the forward pass, then per (batch, head) 2S + 3R elements (p, dp, q.a^K, dy.a^V, sums
 * by distance); for the table also per (batch, head) and query row the sums by distance of ds and of p (Shaw,
 * 2R each) or per (batch, head) the sums of ds by distance (T5, max(T, S) + S), reduced afterwards in a fixed
 * order, one table entry per thread. */
KILN_KERNEL void relative_attention_backward(real *restrict out, const real *restrict dout, const real *restrict q,
                                             const real *restrict k, const real *restrict v,
                                             const real *restrict table, const int32_t *restrict mask,
                                             real *restrict ws, int B, int T, int S, int C, int NH, int KVH,
                                             int causal, int clip, int buckets, int max_distance, int wrt) {
    const relative_geometry g = relative_setup(B, T, S, C, NH, KVH, causal, clip, buckets);
    int32_t *bucket = (int32_t *)ws;
    const int hs = g.hs, R = g.R, Ckv = g.Ckv, group = g.group, D = g.D0 + S;
    real *rows = ws + (D + 1);
    const size_t per_head = 2 * (size_t)S + 3 * R;
    real *sums = rows + (size_t)B * NH * per_head;  /* the table's partial sums */
    const size_t sums_per_head = R ? (size_t)T * 2 * R : (size_t)D;
    if (buckets) relative_buckets(bucket, &g, max_distance);
    const real *ak = table, *av = table + (size_t)R * hs;
    /* the units of work: query heads for dq and the table, key/value heads (with their query heads) for dk, dv */
    const int units = wrt == 1 || wrt == 2 ? KVH : NH, per_unit = wrt == 1 || wrt == 2 ? group : 1;
    #pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++) {
        for (int u = 0; u < units; u++) {
            if (wrt != 3) {
                const int rows_out = wrt == 0 ? T : S, width = wrt == 0 ? C : Ckv;
                for (int r = 0; r < rows_out; r++) {
                    real *o = out + ((size_t)b * rows_out + r) * width + u * hs;
                    for (int d = 0; d < hs; d++) o[d] = 0;
                }
            }
            for (int h = u * per_unit; h < (u + 1) * per_unit; h++) {
                real *p = rows + ((size_t)b * NH + h) * per_head, *dp = p + S, *rk = dp + S, *dyav = rk + R, *acc = dyav + R;
                real *part = sums + ((size_t)b * NH + h) * sums_per_head;
                if (wrt == 3 && !R) for (int d = 0; d < D; d++) part[d] = 0;
                const size_t kvo = (size_t)(h / group) * hs;
                const real *kb = k + (size_t)b * S * Ckv + kvo, *vb = v + (size_t)b * S * Ckv + kvo;
                const int32_t *mk = mask ? mask + (size_t)b * S : NULL;
                for (int t = 0; t < T; t++) {
                    const real *qt = q + ((size_t)b * T + t) * C + h * hs;
                    const real *dyt = dout + ((size_t)b * T + t) * C + h * hs;
                    const int n = relative_row(p, rk, &g, qt, kb, table, bucket, mk, h, t);
                    if (wrt == 2) {  /* dv_s += p_s dy_t */
                        for (int s = 0; s < n; s++) {
                            real *dv = out + ((size_t)b * S + s) * Ckv + kvo;
                            const real ps = p[s];
                            #pragma omp simd
                            for (int d = 0; d < hs; d++) dv[d] += ps * dyt[d];
                        }
                        continue;
                    }
                    for (int r = 0; r < R; r++) {
                        const real *a = av + (size_t)r * hs;
                        real dot = 0;
                        #pragma omp simd reduction(+:dot)
                        for (int d = 0; d < hs; d++) dot += dyt[d] * a[d];
                        dyav[r] = dot;
                    }
                    real dot = 0;  /* dp_s = dy.(v_s + a^V_r) and sum_s p_s dp_s */
                    for (int s = 0; s < n; s++) {
                        const real *vs = vb + (size_t)s * Ckv;
                        real acc_ = 0;
                        #pragma omp simd reduction(+:acc_)
                        for (int d = 0; d < hs; d++) acc_ += dyt[d] * vs[d];
                        dp[s] = R ? acc_ + dyav[shaw_row(&g, s, t)] : acc_;
                        dot += p[s] * dp[s];
                    }
                    for (int s = 0; s < n; s++) dp[s] = p[s] * (dp[s] - dot);  /* ds: the score's gradient */
                    if (wrt == 3) {
                        if (!R) {
                            for (int s = 0; s < n; s++) part[s - t + g.D0] += dp[s];
                        } else {  /* sums by distance of ds (a^K) and of p (a^V) for this row */
                            real *dsr = part + (size_t)t * 2 * R, *psr = dsr + R;
                            for (int r = 0; r < 2 * R; r++) dsr[r] = 0;
                            for (int s = 0; s < n; s++) { const int r = shaw_row(&g, s, t); dsr[r] += dp[s]; psr[r] += p[s]; }
                        }
                        continue;
                    }
                    if (wrt == 0) {  /* dq_t = scale (sum_s ds_s k_s + sum_r (sum of ds over r) a^K_r) */
                        real *dq = out + ((size_t)b * T + t) * C + h * hs;
                        for (int s = 0; s < n; s++) {
                            const real *ks = kb + (size_t)s * Ckv, c = dp[s] * g.scale;
                            #pragma omp simd
                            for (int d = 0; d < hs; d++) dq[d] += c * ks[d];
                        }
                        if (R) {
                            for (int r = 0; r < R; r++) acc[r] = 0;
                            for (int s = 0; s < n; s++) acc[shaw_row(&g, s, t)] += dp[s];
                            for (int r = 0; r < R; r++) {
                                const real *a = ak + (size_t)r * hs, c = acc[r] * g.scale;
                                #pragma omp simd
                                for (int d = 0; d < hs; d++) dq[d] += c * a[d];
                            }
                        }
                    } else {  /* dk_s += scale ds_s q_t */
                        for (int s = 0; s < n; s++) {
                            real *dk = out + ((size_t)b * S + s) * Ckv + kvo;
                            const real c = dp[s] * g.scale;
                            #pragma omp simd
                            for (int d = 0; d < hs; d++) dk[d] += c * qt[d];
                        }
                    }
                }
            }
        }
    }
    if (wrt != 3) return;
    if (!R) {  /* d table[bucket, h] = sum over batches and distances in that bucket */
        #pragma omp parallel for schedule(static)
        for (int h = 0; h < NH; h++) {
            for (int n = 0; n < buckets; n++) out[(size_t)n * NH + h] = 0;
            for (int b = 0; b < B; b++) {
                const real *part = sums + ((size_t)b * NH + h) * sums_per_head;
                for (int d = 0; d < D; d++) out[(size_t)bucket[d] * NH + h] += part[d];
            }
        }
        return;
    }
    /* d a^K_r = scale sum_(b,h,t) (ds sums)_r q_(b,t,h); d a^V_r = sum_(b,h,t) (p sums)_r dy_(b,t,h) */
    #pragma omp parallel for schedule(static)
    for (int r = 0; r < 2 * R; r++) {
        const int which = r / R, rr = r % R;  /* 0: a^K, 1: a^V */
        real *restrict o = out + (size_t)r * hs;
        for (int d = 0; d < hs; d++) o[d] = 0;
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int t = 0; t < T; t++) {
                    const real w = sums[((size_t)b * NH + h) * sums_per_head + (size_t)t * 2 * R + which * R + rr];
                    if (w == 0) continue;
                    const real *x = (which ? dout : q) + ((size_t)b * T + t) * C + h * hs;
                    const real c = which ? w : w * g.scale;
                    #pragma omp simd
                    for (int d = 0; d < hs; d++) o[d] += c * x[d];
                }
    }
}

#endif /* KILN_KERNELS_RELATIVE_ATTENTION_C */
