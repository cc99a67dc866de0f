/*
 * bigbird.c - BigBird's block-sparse attention (Zaheer et al. 2020, the ITC layout) for `attention` with
 * `block`: the sequence is cut into blocks of `block` positions (the last one may be shorter); the first
 * `global` blocks are global (their queries see every key, and every query sees their keys); every other
 * query block sees the global blocks, its window of three blocks (itself and both neighbours) and `random`
 * further blocks drawn by a seed. So a query sees (global + 3 + random) blocks, and the cost is linear in T.
 * The forward pass and the three gradients (one pass) gather each query block's keys and run attention.c's
 * tiles over them; the weights for pictures go one query row at a time (attention_row). Each (batch, head) is
 * one thread's.
 * Included by attention.c, whose helpers (online_softmax_block, attention_tile_pv, attention_tile_normalize, attention_row) it uses.
 */
#ifndef KILN_KERNELS_BIGBIRD_C
#define KILN_KERNELS_BIGBIRD_C

#include "kiln_kernel.h"
#include "attention.c" /* its tiles' helpers; it includes this file at its end, after them */

/* SplitMix64 (Steele et al. 2014): the random blocks' generator, easy to reproduce in a reference */
KILN_KERNEL inline uint64_t bigbird_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

enum { BIGBIRD_MAX_RANDOM = 64 };

/* The key blocks of query block i among nb, ascending, in out (room for nb); returns their count. A global
 * block (i < g) sees all. Another sees blocks 0 .. g-1, i-1 .. i+1, and min(r, m) of the m others: a partial
 * Fisher–Yates shuffle of them (ascending) by SplitMix64 from seed ^ (nb·2³² + i)·0x9E3779B97F4A7C15. */
KILN_KERNEL int bigbird_blocks(int *restrict out, int i, int nb, int g, int r, uint64_t seed) {
    int n = 0;
    if (i < g) {
        for (int j = 0; j < nb; j++) out[n++] = j;
        return n;
    }
    int m = 0;  /* the candidates, ascending */
    for (int j = g; j < nb; j++)
        if (j < i - 1 || j > i + 1) out[m++] = j;
    uint64_t state = seed ^ ((((uint64_t)nb << 32) | (uint64_t)i) * 0x9E3779B97F4A7C15ull);
    const int take = r < m ? r : m;
    int chosen[BIGBIRD_MAX_RANDOM];
    for (int j = 0; j < take; j++) {
        const int pick = j + (int)(bigbird_next(&state) % (uint64_t)(m - j));
        const int tmp = out[j];
        out[j] = out[pick];
        out[pick] = tmp;
        chosen[j] = out[j];
    }
    for (int a = 1; a < take; a++)  /* ascending */
        for (int b = a; b > 0 && chosen[b - 1] > chosen[b]; b--) {
            const int tmp = chosen[b];
            chosen[b] = chosen[b - 1];
            chosen[b - 1] = tmp;
        }
    int c = 0;
    for (int j = 0; j < nb; j++) {
        const int random = c < take && chosen[c] == j;
        c += random;
        if (j < g || (j >= i - 1 && j <= i + 1) || random) out[n++] = j;
    }
    return n;
}

/* The keys of blocks[0 .. n) (`block` positions each, the last block of T possibly shorter): their positions
 * pos (m) and mask mk (m: 1, or 0 for padding; 1 without a mask); returns m. */
KILN_KERNEL int bigbird_keys(int *restrict pos, real *restrict mk, const int32_t *restrict mask,
                             const int *restrict blocks, int n, int block, int T) {
    int m = 0;
    for (int j = 0; j < n; j++) {
        const int s0 = blocks[j] * block, s1 = s0 + block < T ? s0 + block : T;
        for (int s = s0; s < s1; s++, m++) {
            pos[m] = s;
            mk[m] = !mask || mask[s] ? 1 : 0;
        }
    }
    return m;
}

/* The rows pos[0 .. m) of one head's hs channels (rows src + s * ld): transposed into xt (hs, ldt), and/or as
 * rows zero-padded to hs64 into xp (m, hs64); either may be NULL. */
KILN_KERNEL void bigbird_gather(real *restrict xt, size_t ldt, real *restrict xp, const real *restrict src, size_t ld,
                                const int *restrict pos, int m, int hs, int hs64) {
    for (int a = 0; a < m; a++) {
        const real *row = src + (size_t)pos[a] * ld;
        if (xt)
            for (int d = 0; d < hs; d++) xt[(size_t)d * ldt + a] = row[d];
        if (xp)
            for (int d = 0; d < hs64; d++) xp[(size_t)a * hs64 + d] = d < hs ? row[d] : 0;
    }
}

/* out, q (B, T, C); k, v (B, T, KVH * hs) with query head h reading key/value head h / (NH/KVH); mask (B, T)
 * of the keys, or NULL. Per (batch, head) and query block: its keys gathered (bigbird_gather), then the
 * FlashAttention loop of attention_forward over them on the GEMM engine's tiles: tiles of 6 queries x 64
 * gathered keys, an online softmax, P V added to the rescaled output rows. ws: per (batch, head) T·(hs + hs64
 * + 3) values: kᵀ (hs, T), V (T, hs64), the gathered keys' mask, then their positions and the key blocks
 * (T + nb ints in 2·T values). */
KILN_KERNEL void bigbird_attention_forward(real *restrict out, const real *restrict q, const real *restrict k,
                                           const real *restrict v, const int32_t *restrict mask, real *restrict ws,
                                           int B, int T, int C, int NH, int KVH, int block, int g, int r,
                                           int seed) {
    const int hs = C / NH, hs64 = (hs + GEMM_NR - 1) / GEMM_NR * GEMM_NR, Ckv = KVH * hs, group = NH / KVH;
    const int nb = (T + block - 1) / block;
    const real scale = 1 / sqrt((real)hs);
    const gemm_tile_fn tile = gemm_tile();
    const size_t per = (size_t)T * (hs + hs64 + 3);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            real *kt = ws + ((size_t)b * NH + h) * per, *vp = kt + (size_t)hs * T, *mk = vp + (size_t)T * hs64;
            int *pos = (int *)(mk + T), *blocks = pos + T;  /* 2·T reals hold T + nb ints */
            const size_t kvo = (size_t)b * T * Ckv + (size_t)(h / group) * hs;
            for (int i = 0; i < nb; i++) {
                const int n = bigbird_blocks(blocks, i, nb, g, r, (uint64_t)(uint32_t)seed);
                const int m = bigbird_keys(pos, mk, mask ? mask + (size_t)b * T : NULL, blocks, n, block, T);
                bigbird_gather(kt, (size_t)T, NULL, k + kvo, (size_t)Ckv, pos, m, hs, hs64);
                bigbird_gather(NULL, 0, vp, v + kvo, (size_t)Ckv, pos, m, hs, hs64);
                const int t_end = (i + 1) * block < T ? (i + 1) * block : T;
                for (int t0 = i * block; t0 < t_end; t0 += GEMM_MR) {
                    const int mb = t_end - t0 < GEMM_MR ? t_end - t0 : GEMM_MR;
                    const real *qt = q + ((size_t)b * T + t0) * C + h * hs;
                    real *ot = out + ((size_t)b * T + t0) * C + h * hs;
                    real p[GEMM_MR * GEMM_NR];
                    real maxv[GEMM_MR], sum[GEMM_MR], corr[GEMM_MR];
                    for (int a = 0; a < mb; a++) {
                        maxv[a] = -INFINITY;
                        sum[a] = 0;
                        for (int d = 0; d < hs; d++) ot[(size_t)a * C + d] = 0;
                    }
                    for (int s0 = 0; s0 < m; s0 += GEMM_NR) {
                        const int nk = m - s0 < GEMM_NR ? m - s0 : GEMM_NR;
                        tile(p, qt, C, 1, mb, kt + s0, (size_t)T, hs);  /* p (mb, 64) = Q K^T of these keys */
                        for (int a = 0; a < mb; a++) {
                            real *row = p + a * GEMM_NR;
                            for (int j = 0; j < nk; j++) row[j] = mk[s0 + j] != 0 ? row[j] : -INFINITY;
                            online_softmax_block(row, nk, scale, &maxv[a], &sum[a], &corr[a]);
                            for (int j = nk; j < GEMM_NR; j++) row[j] = 0;
                        }
                        attention_tile_pv(ot, (size_t)C, p, vp + (size_t)s0 * hs64, hs64, nk, mb, hs, corr);
                    }
                    attention_tile_normalize(ot, (size_t)C, sum, mb, hs);
                }
            }
        }
}

/* The gradients dq (B, T, C), dk and dv (B, T, KVH * hs), each NULL when not wanted, in one pass on tiles:
 * per (batch, key/value head), for each query head of its group and each query block, its keys gathered,
 * then as attention_backward_tiled: P and dP (the block's rows x m gathered keys, tiles of 6 x 64), dS = P ⊙
 * (dP − rowsum(dP ⊙ P))·scale, dq = dS·k, and the gathered keys' dSᵀ·q and Pᵀ·dout added to their rows of dk
 * and dv (in a fixed order, by the one thread that owns the key/value head).
 * ws: per (batch, key/value head) T·(2·hs + hs64 + 3) values: kᵀ and vᵀ (hs, T), k (T, hs64), the gathered
 * keys' mask, then their positions and the key blocks (T + nb ints in 2·T values); ws_rows: per pair
 * 2·block·(T64 + hs64) values (T64: T rounded up to 64): P and dS (block, m rounded up to 64), then q and dout
 * of the block's rows (block, hs64). */
KILN_KERNEL void bigbird_attention_backward(real *restrict dq, real *restrict dk, real *restrict dv,
                                            const real *restrict dout, const real *restrict q,
                                            const real *restrict k, const real *restrict v,
                                            const int32_t *restrict mask, real *restrict ws, real *restrict ws_rows,
                                            int B, int T, int C, int NH, int KVH, int block, int g, int r,
                                            int seed) {
    const int hs = C / NH, hs64 = (hs + GEMM_NR - 1) / GEMM_NR * GEMM_NR, Ckv = KVH * hs, group = NH / KVH;
    const int nb = (T + block - 1) / block, T64 = (T + GEMM_NR - 1) / GEMM_NR * GEMM_NR;
    const real scale = 1 / sqrt((real)hs);
    const gemm_tile_fn tile = gemm_tile();
    const size_t per = (size_t)T * (2 * hs + hs64 + 3), per_rows = 2 * (size_t)block * (T64 + hs64);
    const int kv_wanted = dk || dv;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int u = 0; u < KVH; u++) {
            real *kt = ws + ((size_t)b * KVH + u) * per, *vt = kt + (size_t)hs * T, *kp = vt + (size_t)hs * T;
            real *mk = kp + (size_t)T * hs64;
            int *pos = (int *)(mk + T), *blocks = pos + T;
            real *P = ws_rows + ((size_t)b * KVH + u) * per_rows, *dS = P + (size_t)block * T64;
            real *qp = dS + (size_t)block * T64, *dyp = qp + (size_t)block * hs64;
            const size_t kvo = (size_t)b * T * Ckv + (size_t)u * hs;
            for (int t = 0; t < T; t++)
                for (int d = 0; d < hs; d++) {
                    if (dk) dk[kvo + (size_t)t * Ckv + d] = 0;
                    if (dv) dv[kvo + (size_t)t * Ckv + d] = 0;
                }
            for (int i = 0; i < nb; i++) {
                /* the query block's keys, gathered once for the group's query heads */
                const int n = bigbird_blocks(blocks, i, nb, g, r, (uint64_t)(uint32_t)seed);
                const int m = bigbird_keys(pos, mk, mask ? mask + (size_t)b * T : NULL, blocks, n, block, T);
                bigbird_gather(kt, (size_t)T, dq ? kp : NULL, k + kvo, (size_t)Ckv, pos, m, hs, hs64);
                bigbird_gather(vt, (size_t)T, NULL, v + kvo, (size_t)Ckv, pos, m, hs, hs64);
                const int m64 = (m + GEMM_NR - 1) / GEMM_NR * GEMM_NR;
                const int t_beg = i * block, t_end = t_beg + block < T ? t_beg + block : T, rows = t_end - t_beg;
                for (int h = u * group; h < (u + 1) * group; h++) {
                    const size_t base = (size_t)b * T * C + (size_t)h * hs;
                    for (int a = 0; a < rows; a++)
                        for (int d = 0; d < hs64; d++) {
                            qp[(size_t)a * hs64 + d] = d < hs ? q[base + (size_t)(t_beg + a) * C + d] : 0;
                            dyp[(size_t)a * hs64 + d] = d < hs ? dout[base + (size_t)(t_beg + a) * C + d] : 0;
                        }
                    /* P and dS (rows, m64), 6 query rows at a time */
                    for (int t0 = 0; t0 < rows; t0 += GEMM_MR) {
                        const int mb = rows - t0 < GEMM_MR ? rows - t0 : GEMM_MR;
                        for (int s0 = 0; s0 < m; s0 += GEMM_NR) {
                            _Alignas(64) real sc[GEMM_MR * GEMM_NR], dp[GEMM_MR * GEMM_NR];
                            tile(sc, qp + (size_t)t0 * hs64, (size_t)hs64, 1, mb, kt + s0, (size_t)T, hs);
                            tile(dp, dyp + (size_t)t0 * hs64, (size_t)hs64, 1, mb, vt + s0, (size_t)T, hs);
                            for (int a = 0; a < mb; a++) {
                                memcpy(P + (size_t)(t0 + a) * m64 + s0, sc + a * GEMM_NR, GEMM_NR * sizeof(real));
                                memcpy(dS + (size_t)(t0 + a) * m64 + s0, dp + a * GEMM_NR, GEMM_NR * sizeof(real));
                            }
                        }
                        for (int a = 0; a < mb; a++) {
                            real *p = P + (size_t)(t0 + a) * m64, *ds = dS + (size_t)(t0 + a) * m64;
                            for (int s = 0; s < m; s++) p[s] = mk[s] != 0 ? p[s] : -INFINITY;
                            const real maxv = row_max(p, m) * scale;
                            real sum = 0;
                            for (int s = 0; s < m; s++) {
                                p[s] = maxv > -INFINITY && p[s] > -INFINITY ? kiln_exp(p[s] * scale - maxv) : 0;
                                sum += p[s];
                            }
                            const real inv = sum > 0 ? 1 / sum : 0;
                            real pdp = 0;
                            #pragma omp simd reduction(+:pdp)
                            for (int s = 0; s < m; s++) { p[s] *= inv; pdp += p[s] * ds[s]; }
                            #pragma omp simd
                            for (int s = 0; s < m; s++) ds[s] = p[s] * (ds[s] - pdp) * scale;
                            for (int s = m; s < m64; s++) p[s] = ds[s] = 0;
                        }
                    }
                    if (dq)  /* dq = dS·k over the gathered keys */
                        for (int t0 = 0; t0 < rows; t0 += GEMM_MR) {
                            const int mb = rows - t0 < GEMM_MR ? rows - t0 : GEMM_MR;
                            for (int c0 = 0; c0 < hs; c0 += GEMM_NR) {
                                const int w = hs - c0 < GEMM_NR ? hs - c0 : GEMM_NR;
                                _Alignas(64) real acc[GEMM_MR * GEMM_NR];
                                tile(acc, dS + (size_t)t0 * m64, (size_t)m64, 1, mb, kp + c0, (size_t)hs64, m);
                                for (int a = 0; a < mb; a++)
                                    memcpy(dq + base + (size_t)(t_beg + t0 + a) * C + c0, acc + a * GEMM_NR, (size_t)w * sizeof(real));
                            }
                        }
                    if (!kv_wanted) continue;
                    /* dk = dSᵀ·q and dv = Pᵀ·dout for the gathered keys, 6 at a time, added to their rows */
                    for (int s0 = 0; s0 < m; s0 += GEMM_MR) {
                        const int mb = m - s0 < GEMM_MR ? m - s0 : GEMM_MR;
                        for (int c0 = 0; c0 < hs; c0 += GEMM_NR) {
                            const int w = hs - c0 < GEMM_NR ? hs - c0 : GEMM_NR;
                            _Alignas(64) real acc[GEMM_MR * GEMM_NR];
                            for (int which = 0; which < 2; which++) {
                                real *restrict o = which == 0 ? dk : dv;
                                if (!o) continue;
                                tile(acc, (which == 0 ? dS : P) + s0, 1, (size_t)m64, mb, (which == 0 ? qp : dyp) + c0,
                                     (size_t)hs64, rows);
                                for (int a = 0; a < mb; a++) {
                                    real *restrict row = o + kvo + (size_t)pos[s0 + a] * Ckv + c0;
                                    const real *restrict add = acc + a * GEMM_NR;
                                    #pragma omp simd
                                    for (int d = 0; d < w; d++) row[d] += add[d];
                                }
                            }
                        }
                    }
                }
            }
        }
}

/* The weights for pictures (op attention_probs with `block`): out (B, NH, T, T), 0 for the keys a query does
 * not see. Each query block's keys become a mask over all T (its blocks, less padding), under which
 * attention.c's attention_row takes each row's softmax. ws: per (batch, head) 2·T values: the key blocks and
 * that mask (as ints). */
KILN_KERNEL void bigbird_attention_probs_forward(real *restrict out, const real *restrict q, const real *restrict k,
                                                 const int32_t *restrict mask, real *restrict ws, int B, int T,
                                                 int C, int NH, int KVH, int block, int g, int r, int seed) {
    const int hs = C / NH, Ckv = KVH * hs, group = NH / KVH, nb = (T + block - 1) / block;
    const real scale = 1 / sqrt((real)hs);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            int *blocks = (int *)(ws + ((size_t)b * NH + h) * 2 * T);
            int32_t *seen = (int32_t *)(ws + ((size_t)b * NH + h) * 2 * T + T);
            for (int i = 0; i < nb; i++) {
                const int n = bigbird_blocks(blocks, i, nb, g, r, (uint64_t)(uint32_t)seed);
                for (int s = 0; s < T; s++) seen[s] = 0;
                for (int j = 0; j < n; j++)
                    for (int s = blocks[j] * block; s < (blocks[j] + 1) * block && s < T; s++)
                        seen[s] = !mask || mask[(size_t)b * T + s];
                for (int t = i * block; t < (i + 1) * block && t < T; t++)
                    attention_row(out + (((size_t)b * NH + h) * T + t) * T, q + ((size_t)b * T + t) * C + h * hs,
                                  k + (size_t)b * T * Ckv + (size_t)(h / group) * hs, seen, Ckv, hs, scale, 0, t, 0, T);
            }
        }
}

#endif /* KILN_KERNELS_BIGBIRD_C */
