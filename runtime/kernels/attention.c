/*
 * attention.c - multi-head scaled dot-product attention (Vaswani et al. 2017): the forward pass on the
 * matrix-product engine's tiles, the KV cache's write and the row-at-a-time attention that decoding runs over
 * it (ops `cache_write`, `cached_attention`), and the gradients `attention_grad` on tiles (all three at once for
 * self-attention, or q, or k and v together; local attention over its band only).
 */
#ifndef KILN_KERNELS_ATTENTION_C
#define KILN_KERNELS_ATTENTION_C

#include "gemm.h"

/* ALiBi (Press et al. 2022): head h of NH adds -slope_h * |t - s| to the score of query t and key s, with the
 * paper's slopes: for NH a power of 2, 2^(-8 (h+1) / NH); otherwise those of the power of 2 below NH, then
 * every other slope of twice that power. */
KILN_KERNEL double alibi_slope(int h, int NH) {
    int p = 1;
    while (2 * p <= NH) p *= 2;
    if (h < p) return pow(2.0, -8.0 * (h + 1) / p);
    return pow(2.0, -8.0 * (2 * (h - p) + 1) / (2 * p));
}

/* Adds ALiBi's bias to n raw scores x[j] = q·k (keys s0 + j) of the query at position t, divided by the
 * score scale that the caller applies next: x[j] · scale is then q·k · scale − slope · |t − s|. (The loops
 * that scale the scores stay as they are without ALiBi.) */
KILN_KERNEL inline void alibi_scores(real *restrict x, int n, double slope_over_scale, int t, int s0) {
    for (int j = 0; j < n; j++) {
        const int dist = t - (s0 + j);
        x[j] -= (real)(slope_over_scale * (dist < 0 ? -dist : dist));
    }
}

/* One block of keys in the FlashAttention loop, for one query row: row[0 .. n) holds raw scores q·k (−∞ for a
 * key the query does not see) and becomes exp(score·scale − m), m the running maximum of the scaled scores
 * including this block (all 0 while no key has been seen). *maxv and *sum (the running sum) are updated, and
 * *corr is the factor by which what was accumulated before must be rescaled. scale > 0. */
KILN_KERNEL inline void online_softmax_block(real *restrict row, int n, real scale, real *maxv, real *sum,
                                             real *corr) {
    const real bmax = n > 0 ? row_max(row, n) * scale : -INFINITY;
    *corr = 1;
    if (bmax > *maxv) {  /* a new maximum: what has been accumulated is rescaled */
        *corr = *sum > 0 ? kiln_exp(*maxv - bmax) : 0;
        *sum *= *corr;
        *maxv = bmax;
    }
    const real m = *maxv;
    real rs = 0;
    if (m == -INFINITY) {  /* no key seen yet: nothing to add */
        for (int j = 0; j < n; j++) row[j] = 0;
    } else {
        #pragma omp simd reduction(+:rs)
        for (int j = 0; j < n; j++) { row[j] = row[j] > -INFINITY ? kiln_exp(row[j] * scale - m) : 0; rs += row[j]; }
    }
    *sum += rs;
}

/* The output rows of a tile of mb queries (rows ot + i·C, hs channels): each rescaled by corr[i] for a new
 * maximum, plus P V of one block of nk keys (p (mb, 64) of weights, v rows of stride ldv: the head's values,
 * readable up to the tile width past hs, attention_in_place) */
KILN_KERNEL inline void attention_tile_pv(real *restrict ot, size_t C, const real *restrict p,
                                          const real *restrict v, size_t ldv, int nk, int mb, int hs,
                                          const real *restrict corr) {
    real pv[GEMM_MR * GEMM_NR];
    for (int u = 0; u < hs; u += GEMM_NR) {
        const int w = hs - u < GEMM_NR ? hs - u : GEMM_NR;
        gemm_tile_for(w)(pv, p, GEMM_NR, 1, mb, v + u, ldv, nk);  /* pv (mb, 64) = P V, columns u .. u+63 */
        for (int i = 0; i < mb; i++) {
            real *restrict o = ot + (size_t)i * C + u;
            const real *r = pv + i * GEMM_NR, c = corr[i];
            #pragma omp simd
            for (int d = 0; d < w; d++) o[d] = o[d] * c + r[d];
        }
    }
}

/* The tile's output rows divided by their softmax sums (0 for a query that saw no key) */
KILN_KERNEL inline void attention_tile_normalize(real *restrict ot, size_t C, const real *restrict sum, int mb, int hs) {
    for (int i = 0; i < mb; i++) {
        const real inv = sum[i] > 0 ? 1 / sum[i] : 0;
        #pragma omp simd
        for (int d = 0; d < hs; d++) ot[(size_t)i * C + d] *= inv;
    }
}

/* Whether the tiles over a head's hs columns (blocks of 64, the last one hs % 64 wide) read no column past the
 * head's own: then q, k, v and dout are read where they are (rows of stride C or KVH·hs) instead of copied
 * into buffers of hs64 columns zero-padded past hs (the same values, so the same bits). True when hs is a
 * multiple of 64, or its last block is a multiple of the narrowest tile that covers it (16 with AVX2: heads of
 * 16, 32, 48, 80, ...; 32 with AVX-512). Call gemm_tile() once before. */
KILN_KERNEL inline int attention_in_place(int hs) {
    const int last = hs % GEMM_NR ? hs % GEMM_NR : GEMM_NR;
    return gemm_tile_width(last) == last;
}

/* multi-head scaled dot-product attention (Vaswani et al. 2017) on the GEMM engine's tiles, with an
 * online softmax (Milakov & Gimelshein 2018; the FlashAttention loop): per (batch, head) and tile of
 * GEMM_MR queries, each block of 64 keys gives a (GEMM_MR, 64) tile of scores Q K^T; its rows update the
 * running maxima and sums, and the tile P V is added to the rescaled output rows. No (T, S) buffer.
 * out, q are (B, T, C); k, v are (B, S, KVH * hs); NH heads of size hs = C/NH, head h reading key/value head
 * h / (NH/KVH) (grouped-query attention; KVH = NH is multi-head attention); causal: query t sees keys 0..t;
 * mask (B, S), or NULL: key s of row b is seen only where mask[b, s] is 1 (padding). A query that sees no key
 * gets zeros. alibi: each head adds ALiBi's bias (alibi_slope). window > 0: query t sees only the keys s with
 * |t − s| < window (local attention; with causal the window keys t − window + 1 .. t), and the tile's key
 * blocks start at its first query's window, so the cost is O(T · window). ws: B*NH*S*(hs + hs64) elements (hs64 = hs rounded up to 64): per (batch, head), K^T as (hs, S) and then
 * V as (S, hs64), zero past column hs (unless attention_in_place: V is read where it is). A key block reads 64
 * columns of K^T; past S they run into the next row (or into V), values that are masked out, never used. */
KILN_KERNEL void attention_forward(real *restrict out, const real *restrict q, const real *restrict k,
                                   const real *restrict v, const int32_t *restrict mask, real *restrict ws,
                                   int B, int T, int S, int C, int NH, int KVH, int causal, int alibi, int window) {
    const int hs = C / NH, hs64 = (hs + GEMM_NR - 1) / GEMM_NR * GEMM_NR, Ckv = KVH * hs, group = NH / KVH;
    const size_t per_head = (size_t)S * (hs + hs64);
    const real scale = 1 / sqrt((real)hs);
    gemm_tile();
    const int direct = attention_in_place(hs);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            real *restrict kt = ws + ((size_t)b * NH + h) * per_head;
            real *restrict vh = kt + (size_t)hs * S;
            for (int s0 = 0; s0 < S; s0 += 16) {  /* K^T in blocks of 16 keys: contiguous stores */
                const int sb = S - s0 < 16 ? S - s0 : 16;
                const real *ks = k + ((size_t)b * S + s0) * Ckv + h / group * hs;
                for (int d = 0; d < hs; d++)
                    for (int j = 0; j < sb; j++) kt[(size_t)d * S + s0 + j] = ks[(size_t)j * Ckv + d];
            }
            for (int s = 0; s < S && !direct; s++) {
                const real *vs = v + ((size_t)b * S + s) * Ckv + h / group * hs;
                for (int d = 0; d < hs64; d++) vh[(size_t)s * hs64 + d] = d < hs ? vs[d] : 0;
            }
        }
    }
    const int tiles = (T + GEMM_MR - 1) / GEMM_MR;
    #pragma omp parallel for collapse(3) schedule(dynamic)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int tt = 0; tt < tiles; tt++) {
                const real *kt = ws + ((size_t)b * NH + h) * per_head;
                /* the head's values: where they are, or their zero-padded copy */
                const real *vb = direct ? v + (size_t)b * S * Ckv + h / group * hs : kt + (size_t)hs * S;
                const size_t ldv = direct ? (size_t)Ckv : (size_t)hs64;
                const int t0 = tt * GEMM_MR, mb = T - t0 < GEMM_MR ? T - t0 : GEMM_MR;
                const double slope = alibi ? alibi_slope(h, NH) / scale : 0;
                const real *qt = q + ((size_t)b * T + t0) * C + h * hs;
                real *ot = out + ((size_t)b * T + t0) * C + h * hs;
                real p[GEMM_MR * GEMM_NR];
                real maxv[GEMM_MR], sum[GEMM_MR], corr[GEMM_MR];
                for (int i = 0; i < mb; i++) {
                    maxv[i] = -INFINITY;
                    sum[i] = 0;
                    for (int d = 0; d < hs; d++) ot[(size_t)i * C + d] = 0;
                }
                /* the keys any row of the tile sees: first .. keys-1 */
                int keys = causal && t0 + mb < S ? t0 + mb : S;
                if (window > 0 && !causal && t0 + mb - 1 + window < keys) keys = t0 + mb - 1 + window;
                const int first = window > 0 && t0 - window + 1 > 0 ? t0 - window + 1 : 0;
                for (int s0 = first; s0 < keys; s0 += GEMM_NR) {
                    const int nb = keys - s0 < GEMM_NR ? keys - s0 : GEMM_NR;
                    gemm_tile_for(nb)(p, qt, C, 1, mb, kt + s0, S, hs);  /* p (mb, 64) = Q K^T of this block */
                    for (int i = 0; i < mb; i++) {
                        real *row = p + i * GEMM_NR;
                        /* row i sees keys from .. lim-1 of the block */
                        int hi = causal ? t0 + i + 1 : S, lo = 0;
                        if (window > 0) {
                            lo = t0 + i - window + 1;
                            if (!causal && t0 + i + window < hi) hi = t0 + i + window;
                        }
                        const int lim = hi - s0 < nb ? (hi - s0 > 0 ? hi - s0 : 0) : nb;
                        const int from = lo - s0 > 0 ? (lo - s0 < lim ? lo - s0 : lim) : 0;
                        for (int j = 0; j < from; j++) row[j] = 0;
                        real *pi = row + from;
                        const int n = lim - from;
                        const int32_t *mk = mask ? mask + (size_t)b * S + s0 + from : NULL;
                        if (alibi) alibi_scores(pi, n, slope, t0 + i, s0 + from);
                        if (mk)  /* padding keys take no part */
                            for (int j = 0; j < n; j++) pi[j] = mk[j] ? pi[j] : -INFINITY;
                        online_softmax_block(pi, n, scale, &maxv[i], &sum[i], &corr[i]);
                        for (int j = lim; j < nb; j++) row[j] = 0;
                    }
                    attention_tile_pv(ot, (size_t)C, p, vb + (size_t)s0 * ldv, ldv, nb, mb, hs, corr);
                }
                attention_tile_normalize(ot, (size_t)C, sum, mb, hs);
            }
        }
    }
}


/* Decoding against a KV cache. The caches kc, vc are (R, S, C): row b holds positions 0 .. S-1 of the keys
 * (values) of sequence b.
 *
 * cache_write_forward: cache row b gets x (B, T, C) at positions positions[b, t] (positions (B, T) may be
 * NULL: positions 0 .. T-1). */
KILN_KERNEL void cache_write_forward(real *cache, const real *restrict x, const int32_t *restrict positions,
                                     int B, int T, int S, int C) {
    /* a decode step writes a row or a few: copies that small cost less than waking the threads */
    #pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * T * C >= 32768)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const int p = positions ? positions[(size_t)b * T + t] : t;
            memcpy(cache + ((size_t)b * S + p) * C, x + ((size_t)b * T + t) * C, (size_t)C * sizeof(real));
        }
    }
}

/* attention_cached_forward: query t of row b (q, out are (B, T, C); caches (R, S, KVH * hs)) attends over positions
 * 0 .. positions[b, t] of cache row b (the last `window` of them when window > 0), one query row at a time with no scratch; keys in blocks of 64:
 * scores, one rescale per new maximum, exp, weighted sum of values. */
KILN_KERNEL void attention_cached_forward(real *restrict out, const real *restrict q, const real *restrict kc,
                                          const real *restrict vc, const int32_t *restrict positions, int B, int T,
                                          int S, int C, int NH, int KVH, int alibi, int window) {
    const int hs = C / NH, Ckv = KVH * hs, group = NH / KVH;
    const real scale = 1 / sqrt((real)hs);
    #pragma omp parallel for collapse(3) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                const real *qt = q + ((size_t)b * T + t) * C + h * hs;
                real *ot = out + ((size_t)b * T + t) * C + h * hs;
                const real *kb = kc + (size_t)b * S * Ckv + (size_t)(h / group) * hs;  /* its key/value head */
                const real *vb = vc + (size_t)b * S * Ckv + (size_t)(h / group) * hs;
                for (int d = 0; d < hs; d++) ot[d] = 0;
                real maxv = -INFINITY, sum = 0;
                const int len = positions[(size_t)b * T + t] + 1;
                const double slope = alibi ? alibi_slope(h, NH) : 0;
                for (int s0 = window > 0 && len > window ? len - window : 0; s0 < len; s0 += 64) {
                    const int nb = len - s0 < 64 ? len - s0 : 64;
                    real score[64];
                    real bmax = -INFINITY;
                    for (int j = 0; j < nb; j++) {
                        const real *ks = kb + (size_t)(s0 + j) * Ckv;
                        real dot = 0;
                        #pragma omp simd reduction(+:dot)
                        for (int d = 0; d < hs; d++) dot += qt[d] * ks[d];
                        score[j] = dot * scale;
                        bmax = score[j] > bmax ? score[j] : bmax;
                    }
                    if (alibi) {  /* the query is at position len - 1 */
                        bmax = -INFINITY;
                        for (int j = 0; j < nb; j++) {
                            score[j] -= (real)(slope * (len - 1 - (s0 + j)));
                            bmax = score[j] > bmax ? score[j] : bmax;
                        }
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
                        const real *vs = vb + (size_t)(s0 + j) * Ckv;
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

/* The memory of an encoder–decoder model, which encode stores once per source: keys and values (R, S, C) as
 * in a KV cache, and a mask (R, S) of the positions that hold a source token.
 *
 * cache_write_mask_forward: row b of the mask (R, S) gets mask[b, l] ((B, L), or NULL: 1) for l < L and 0
 * from L on. */
KILN_KERNEL void cache_write_mask_forward(real *state, const int32_t *restrict mask, int B, int L, int S) {
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++) state[(size_t)b * S + s] = s < L ? (mask ? (real)(mask[(size_t)b * L + s] != 0) : 1) : 0;
}

/* attention_memory_forward: query t of row b (q, out are (B, T, C)) attends over the positions of memory row
 * b whose mask is not 0, one query row at a time: keys in blocks of 64, scores (masked ones take no part),
 * one rescale per new maximum, exp, weighted sum of values. A query that sees no position gets zeros.
 * (attention_cached_forward's loop with a mask; kept apart so that decoding a language model pays for no
 * mask.) */
KILN_KERNEL void attention_memory_forward(real *restrict out, const real *restrict q, const real *restrict km,
                                          const real *restrict vm, const real *restrict mask, int B, int T, int S,
                                          int C, int NH, int KVH) {
    const int hs = C / NH, Ckv = KVH * hs, group = NH / KVH;
    const real scale = 1 / sqrt((real)hs);
    #pragma omp parallel for collapse(3) schedule(static) if ((size_t)B * T * S * C >= 32768)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                const real *qt = q + ((size_t)b * T + t) * C + h * hs;
                const real *seen = mask + (size_t)b * S;
                const real *kb = km + (size_t)b * S * Ckv + (size_t)(h / group) * hs;  /* its key/value head */
                const real *vb = vm + (size_t)b * S * Ckv + (size_t)(h / group) * hs;
                real *ot = out + ((size_t)b * T + t) * C + h * hs;
                for (int d = 0; d < hs; d++) ot[d] = 0;
                real maxv = -INFINITY, sum = 0;
                for (int s0 = 0; s0 < S; s0 += 64) {
                    const int nb = S - s0 < 64 ? S - s0 : 64;
                    real score[64];
                    real bmax = -INFINITY;
                    for (int j = 0; j < nb; j++) {
                        if (seen[s0 + j] == 0) { score[j] = -INFINITY; continue; }
                        const real *ks = kb + (size_t)(s0 + j) * Ckv;
                        real dot = 0;
                        #pragma omp simd reduction(+:dot)
                        for (int d = 0; d < hs; d++) dot += qt[d] * ks[d];
                        score[j] = dot * scale;
                        bmax = score[j] > bmax ? score[j] : bmax;
                    }
                    if (bmax == -INFINITY) continue;  /* no position of this block is seen */
                    if (bmax > maxv) {
                        const real correction = sum > 0 ? kiln_exp(maxv - bmax) : 0;
                        sum *= correction;
                        #pragma omp simd
                        for (int d = 0; d < hs; d++) ot[d] *= correction;
                        maxv = bmax;
                    }
                    for (int j = 0; j < nb; j++) {
                        score[j] = seen[s0 + j] != 0 ? kiln_exp(score[j] - maxv) : 0;
                        sum += score[j];
                    }
                    for (int j = 0; j < nb; j++) {
                        if (score[j] == 0) continue;
                        const real *vs = vb + (size_t)(s0 + j) * Ckv;
                        const real pj = score[j];
                        #pragma omp simd
                        for (int d = 0; d < hs; d++) ot[d] += pj * vs[d];
                    }
                }
                if (sum > 0) {
                    const real inv = 1 / sum;
                    #pragma omp simd
                    for (int d = 0; d < hs; d++) ot[d] *= inv;
                }
            }
        }
    }
}

/* The keys lo .. len-1 that query t sees among S (causal: up to t; window: |t - s| < window). */
KILN_KERNEL inline void attention_span(int t, int S, int causal, int window, int *lo, int *len) {
    *lo = 0;
    *len = causal ? t + 1 : S;
    if (window > 0) {
        *lo = t - window + 1 > 0 ? t - window + 1 : 0;
        if (!causal && t + window < *len) *len = t + window;
    }
}

/* The rows of P and dS that attention_backward_tiled keeps: entry (t, s) at t·R + s + O, in a slot of W
 * values per row (row t's slot covers the keys t·(W − R) − O .. that + W − 1, zeros outside its span).
 * Full: R = W = S64, O = 0 (row t holds keys 0 .. S64 − 1). Local attention (window w) with 2w + 11 < S64:
 * the band, W = 2w + 11, R = W − 1, O = w + 5 (row t holds the keys t − w − 5 .. t + w + 5: its window and the
 * 5 more either side that a tile of 6 rows or keys reads), so the memory is O(T · w) and a tile reads the
 * band with constant strides along both queries (R) and keys (1). */
typedef struct { int R, O, W; } attention_band;
KILN_KERNEL inline attention_band attention_band_of(int S, int window) {
    const int S64 = (S + GEMM_NR - 1) / GEMM_NR * GEMM_NR;
    if (window > 0 && 2 * window + 11 < S64) return (attention_band){2 * window + 10, window + 5, 2 * window + 11};
    return (attention_band){S64, 0, S64};
}

/* attention backward on the GEMM engine's tiles, any of the three gradients: dq (B, T, C), dk and dv
 * (B, S, KVH * hs), each NULL when not wanted; dout, q are (B, T, C), k, v (B, S, KVH * hs) with query head h
 * reading key/value head h / (NH/KVH); mask (B, S) of the keys, or NULL; causal needs S = T; window > 0:
 * query t sees the keys with |t − s| < window (local attention), and only those are computed. Per (batch,
 * key/value head), for each query head h of its group in order:
 *   P = softmax(q·kᵀ·scale) (masked), dP = dout·vᵀ  (tiles of 6 queries x 64 keys),
 *   dS = P ⊙ (dP − rowsum(dP ⊙ P))·scale  (row by row, zero where masked),
 *   dq = dS·k (tiles of 6 queries x 64 of the head's columns), and dk += dSᵀ·q, dv += Pᵀ·dout (tiles of 6
 *   keys), summed over the group's query heads by the one thread that owns the key/value head.
 * Each output element is a fixed sequence of tile sums by one thread (the same bits at any thread count).
 * `pairs` (batch, key/value head) pairs at a time (one parallel loop each, shared out dynamically), each with
 * ws_t: 2·T·W + 2·T·hs64 elements (W of attention_band_of, hs64: hs rounded up to 64): P and dS (T rows of W),
 * then q and dout (T, hs64) zero-padded past hs; and ws_s: 2·hs·S + S·hs64: kᵀ and vᵀ (hs, S), then k (S, hs64)
 * (when attention_in_place, q, dout and k are read where they are instead). A key block reads 64 columns of kᵀ or
 * vᵀ; past S they run into the next array, and those scores are never used. */
KILN_KERNEL void attention_backward_tiled(real *restrict dq, real *restrict dk, real *restrict dv,
                                          const real *restrict dout, const real *restrict q, const real *restrict k,
                                          const real *restrict v, const int32_t *restrict mask, real *restrict ws_t,
                                          real *restrict ws_s, int B, int T, int S, int C, int NH, int KVH,
                                          int causal, int alibi, int window, int pairs) {
    gemm_tile();
    const int hs = C / NH, hs64 = (hs + GEMM_NR - 1) / GEMM_NR * GEMM_NR, group = NH / KVH, Ckv = KVH * hs;
    const attention_band band = attention_band_of(S, window);
    const int R = band.R, O = band.O, W = band.W;
    const real scale = 1 / sqrt((real)hs);
    const size_t per_t = 2 * (size_t)T * W + 2 * (size_t)T * hs64, per_s = 2 * (size_t)hs * S + (size_t)S * hs64;
    const int units = B * KVH, kv_wanted = dk || dv, direct = attention_in_place(hs);
    for (int g0 = 0; g0 < units; g0 += pairs) {
        const int gn = units - g0 < pairs ? units - g0 : pairs;
        #pragma omp parallel for schedule(dynamic)
        for (int gi = 0; gi < gn; gi++) {
            const int b = (g0 + gi) / KVH, g = (g0 + gi) % KVH;
            const size_t kvbase = (size_t)b * S * Ckv + (size_t)g * hs;
            real *P = ws_t + (size_t)gi * per_t, *dS = P + (size_t)T * W;
            real *qp = dS + (size_t)T * W, *dyp = qp + (size_t)T * hs64;
            real *kt = ws_s + (size_t)gi * per_s, *vt = kt + (size_t)hs * S, *kp = vt + (size_t)hs * S;
            /* k, q and dout as the tiles read them: where they are, or their zero-padded copies (rows of hs64) */
            const real *kb = direct ? k + kvbase : kp;
            const size_t ldk = direct ? (size_t)Ckv : (size_t)hs64, ldq = direct ? (size_t)C : (size_t)hs64;
            const int32_t *mk = mask ? mask + (size_t)b * S : NULL;
            for (int s0 = 0; s0 < S; s0 += 16) {  /* K^T and V^T in blocks of 16 keys: contiguous stores */
                const int sb = S - s0 < 16 ? S - s0 : 16;
                const size_t r = kvbase + (size_t)s0 * Ckv;
                for (int d = 0; d < hs; d++)
                    for (int j = 0; j < sb; j++) {
                        kt[(size_t)d * S + s0 + j] = k[r + (size_t)j * Ckv + d];
                        vt[(size_t)d * S + s0 + j] = v[r + (size_t)j * Ckv + d];
                    }
            }
            if (dq && !direct)
                for (int s = 0; s < S; s++)
                    for (int d = 0; d < hs64; d++) kp[(size_t)s * hs64 + d] = d < hs ? k[kvbase + (size_t)s * Ckv + d] : 0;
            for (int h = g * group; h < (g + 1) * group; h++) {
                const size_t base = (size_t)b * T * C + (size_t)h * hs;
                const real *qb = direct ? q + base : qp, *dyb = direct ? dout + base : dyp;
                const double slope = alibi ? alibi_slope(h, NH) / scale : 0;
                const int first = h == g * group;
                if (kv_wanted && !direct)
                    for (int t = 0; t < T; t++) {
                        const size_t r = base + (size_t)t * C;
                        for (int d = 0; d < hs64; d++) {
                            qp[(size_t)t * hs64 + d] = d < hs ? q[r + d] : 0;
                            dyp[(size_t)t * hs64 + d] = d < hs ? dout[r + d] : 0;
                        }
                    }
                /* P and dS, 6 query rows at a time, over the key blocks any of them sees */
                for (int t0 = 0; t0 < T; t0 += GEMM_MR) {
                    const int mb = T - t0 < GEMM_MR ? T - t0 : GEMM_MR;
                    int s_lo, s_hi, unused;
                    attention_span(t0, S, causal, window, &s_lo, &unused);
                    attention_span(t0 + mb - 1, S, causal, window, &unused, &s_hi);
                    for (int sb0 = s_lo; sb0 < s_hi; sb0 += GEMM_NR) {
                        _Alignas(64) real sc[GEMM_MR * GEMM_NR], dp[GEMM_MR * GEMM_NR];
                        const gemm_tile_fn block = gemm_tile_for(s_hi - sb0);  /* a narrower tile for <= 32 keys */
                        block(sc, q + base + (size_t)t0 * C, (size_t)C, 1, mb, kt + sb0, (size_t)S, hs);
                        block(dp, dout + base + (size_t)t0 * C, (size_t)C, 1, mb, vt + sb0, (size_t)S, hs);
                        for (int i = 0; i < mb; i++) {
                            int lo, len;
                            attention_span(t0 + i, S, causal, window, &lo, &len);
                            const int from = lo > sb0 ? lo : sb0, to = len < sb0 + GEMM_NR ? len : sb0 + GEMM_NR;
                            real *p = P + (size_t)(t0 + i) * R + O, *ds = dS + (size_t)(t0 + i) * R + O;
                            for (int s = from; s < to; s++) { p[s] = sc[i * GEMM_NR + s - sb0]; ds[s] = dp[i * GEMM_NR + s - sb0]; }
                        }
                    }
                    for (int i = 0; i < mb; i++) {
                        const int t = t0 + i;
                        int lo, len;
                        attention_span(t, S, causal, window, &lo, &len);
                        real *p = P + (size_t)t * R + O, *ds = dS + (size_t)t * R + O;
                        const int n = len - lo;
                        if (alibi) alibi_scores(p + lo, n, slope, t, lo);
                        if (mk)  /* padding keys take no part */
                            for (int s = lo; s < len; s++) p[s] = mk[s] ? p[s] : -INFINITY;
                        const real maxv = n > 0 ? row_max(p + lo, n) * scale : 0;  /* of the raw scores (scale > 0) */
                        real sum = 0;
                        if (!mk) {
                            #pragma omp simd reduction(+:sum)
                            for (int s = lo; s < len; s++) { p[s] = kiln_exp(p[s] * scale - maxv); sum += p[s]; }
                        } else {
                            for (int s = lo; s < len; s++) { p[s] = mk[s] && maxv > -INFINITY ? kiln_exp(p[s] * scale - maxv) : 0; sum += p[s]; }
                        }
                        const real inv = sum > 0 ? 1 / sum : 0;  /* 0: a query that sees no key */
                        real pdp = 0;
                        #pragma omp simd reduction(+:pdp)
                        for (int s = lo; s < len; s++) { p[s] *= inv; pdp += p[s] * ds[s]; }
                        #pragma omp simd
                        for (int s = lo; s < len; s++) ds[s] = p[s] * (ds[s] - pdp) * scale;
                        /* the rest of the row's slot among the keys 0 .. S-1 (no tile reads a key past them):
                         * zeros */
                        const int slot = (int)((size_t)t * (W - R)) - O, end = slot + W < S ? slot + W : S;
                        for (int s = slot > 0 ? slot : 0; s < lo; s++) p[s] = ds[s] = 0;
                        for (int s = len; s < end; s++) p[s] = ds[s] = 0;
                    }
                }
                /* dq = dS·k: 6 queries at a time, over the keys they see */
                if (dq)
                    for (int t0 = 0; t0 < T; t0 += GEMM_MR) {
                        const int mb = T - t0 < GEMM_MR ? T - t0 : GEMM_MR;
                        int s_lo, s_hi, unused;
                        attention_span(t0, S, causal, window, &s_lo, &unused);
                        attention_span(t0 + mb - 1, S, causal, window, &unused, &s_hi);
                        for (int c0 = 0; c0 < hs; c0 += GEMM_NR) {
                            const int nb = hs - c0 < GEMM_NR ? hs - c0 : GEMM_NR;
                            _Alignas(64) real acc[GEMM_MR * GEMM_NR];
                            gemm_tile_for(nb)(acc, dS + (size_t)t0 * R + O + s_lo, (size_t)R, 1, mb,
                                              kb + (size_t)s_lo * ldk + c0, ldk, s_hi - s_lo);
                            for (int i = 0; i < mb; i++)
                                memcpy(dq + base + (size_t)(t0 + i) * C + c0, acc + i * GEMM_NR, (size_t)nb * sizeof(real));
                        }
                    }
                if (!kv_wanted) continue;
                /* dk = dSᵀ·q and dv = Pᵀ·dout: 6 keys at a time, over the queries that see them; the group's
                 * first head writes, the others add */
                for (int s0 = 0; s0 < S; s0 += GEMM_MR) {
                    const int mb = S - s0 < GEMM_MR ? S - s0 : GEMM_MR;
                    /* the queries that see key s: from s (causal) or s − window + 1, to s + window − 1 (window) */
                    int t_lo = causal ? s0 : 0, t_hi = T;
                    if (window > 0) {
                        if (!causal && s0 - window + 1 > 0) t_lo = s0 - window + 1;
                        if (s0 + mb - 1 + window < T) t_hi = s0 + mb - 1 + window;
                    }
                    if (t_lo >= t_hi) {  /* no query sees these keys */
                        for (int i = 0; i < mb; i++)
                            for (int which = 0; which < 2; which++) {
                                real *o = which == 0 ? dk : dv;
                                if (o && first) memset(o + kvbase + (size_t)(s0 + i) * Ckv, 0, (size_t)hs * sizeof(real));
                            }
                        continue;
                    }
                    for (int c0 = 0; c0 < hs; c0 += GEMM_NR) {
                        const int nb = hs - c0 < GEMM_NR ? hs - c0 : GEMM_NR;
                        _Alignas(64) real acc[GEMM_MR * GEMM_NR];
                        for (int which = 0; which < 2; which++) {
                            real *restrict o = which == 0 ? dk : dv;
                            if (!o) continue;
                            gemm_tile_for(nb)(acc, (which == 0 ? dS : P) + (size_t)t_lo * R + O + s0, 1, (size_t)R, mb,
                                              (which == 0 ? qb : dyb) + (size_t)t_lo * ldq + c0, ldq, t_hi - t_lo);
                            for (int i = 0; i < mb; i++) {
                                real *restrict row = o + kvbase + (size_t)(s0 + i) * Ckv + c0;
                                const real *restrict a = acc + i * GEMM_NR;
                                if (first) memcpy(row, a, (size_t)nb * sizeof(real));
                                else {
                                    #pragma omp simd
                                    for (int j = 0; j < nb; j++) row[j] += a[j];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}



/* The softmax row p[lo .. len) of the query qt over the keys kb + s * Ckv (one head's hs channels): scores
 * q·k·scale − slope·|t − s| (ALiBi; slope 0 without), 0 for a padding key (mk[s] == 0), and all 0 for a query
 * that sees no key. */
KILN_KERNEL inline void attention_row(real *restrict p, const real *restrict qt, const real *restrict kb,
                                      const int32_t *restrict mk, int Ckv, int hs, real scale, double slope, int t,
                                      int lo, int len) {
    real maxv = -INFINITY;
    for (int s = lo; s < len; s++) {
        const real *ks = kb + (size_t)s * Ckv;
        real score = 0;
        #pragma omp simd reduction(+:score)
        for (int d = 0; d < hs; d++) score += qt[d] * ks[d];
        p[s] = score * scale - (real)(slope * (t > s ? t - s : s - t));
        if (mk && !mk[s]) p[s] = -INFINITY;  /* a padding key */
        maxv = p[s] > maxv ? p[s] : maxv;
    }
    real sum = 0;
    if (!mk) {
        #pragma omp simd reduction(+:sum)
        for (int s = lo; s < len; s++) { p[s] = kiln_exp(p[s] - maxv); sum += p[s]; }
    } else {
        for (int s = lo; s < len; s++) { p[s] = mk[s] && maxv > -INFINITY ? kiln_exp(p[s] - maxv) : 0; sum += p[s]; }
    }
    for (int s = lo; s < len; s++) p[s] = sum > 0 ? p[s] / sum : 0;
}

/* The weights of attention_forward's heads, for pictures (op attention_probs): out (B, NH, T, S) gets per
 * (batch, head) and query t the softmax of q_t·k_s·scale (with ALiBi's bias) over the keys t sees, and 0 for
 * the keys it does not (causal, window, padding); a query that sees no key gets a row of zeros. Row by row,
 * one (batch, head) per thread. */
KILN_KERNEL void attention_probs_forward(real *restrict out, const real *restrict q, const real *restrict k,
                                         const int32_t *restrict mask, int B, int T, int S, int C, int NH, int KVH,
                                         int causal, int alibi, int window) {
    const int hs = C / NH, Ckv = KVH * hs, group = NH / KVH;
    const real scale = 1 / sqrt((real)hs);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const double slope = alibi ? alibi_slope(h, NH) : 0;
            for (int t = 0; t < T; t++) {
                real *restrict p = out + (((size_t)b * NH + h) * T + t) * S;
                int lo, len;
                attention_span(t, S, causal, window, &lo, &len);
                for (int s = 0; s < lo; s++) p[s] = 0;
                for (int s = len; s < S; s++) p[s] = 0;
                attention_row(p, q + ((size_t)b * T + t) * C + h * hs, k + (size_t)b * S * Ckv + (size_t)(h / group) * hs,
                              mask ? mask + (size_t)b * S : NULL, Ckv, hs, scale, slope, t, lo, len);
            }
        }
    }
}

/* BigBird's block-sparse layout of the same op (`attention` with `block`) */
#include "bigbird.c"

#endif /* KILN_KERNELS_ATTENTION_C */
