/*
 * bigbird.c - BigBird's block-sparse attention (Zaheer et al. 2020, the ITC layout) for `attention` with
 * `block`: the sequence is cut into blocks of `block` positions (the last one may be shorter); the first
 * `global` blocks are global (their queries see every key, and every query sees their keys); every other
 * query block sees the global blocks, its window of three blocks (itself and both neighbours) and `random`
 * further blocks drawn by a seed. So a query sees (global + 3 + random) blocks, and the cost is linear in T.
 * The forward pass, the three gradients (one pass) and the weights for pictures run one query row at a time
 * over the row's key blocks; each (batch, head) is one thread's.
 */
#ifndef KILN_KERNELS_BIGBIRD_C
#define KILN_KERNELS_BIGBIRD_C

#include "kiln_kernel.h"
#include "kiln_math.h"

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

/* The softmax row p over the keys of blocks[0 .. nblocks) (each `block` positions, the last block of S
 * possibly shorter) of the query qt (one head's hs channels; keys kb + s * Ckv): q·k·scale, 0 for a padding
 * key (mk[s] == 0), all 0 for a query that sees no key. Only those entries of p are written. */
KILN_KERNEL void bigbird_row(real *restrict p, const real *restrict qt, const real *restrict kb,
                             const int32_t *restrict mk, const int *restrict blocks, int nblocks, int block, int S,
                             int Ckv, int hs, real scale) {
    real maxv = -INFINITY;
    for (int j = 0; j < nblocks; j++) {
        const int s0 = blocks[j] * block, s1 = s0 + block < S ? s0 + block : S;
        for (int s = s0; s < s1; s++) {
            const real *ks = kb + (size_t)s * Ckv;
            real score = 0;
            #pragma omp simd reduction(+:score)
            for (int d = 0; d < hs; d++) score += qt[d] * ks[d];
            p[s] = mk && !mk[s] ? -INFINITY : score * scale;
            maxv = p[s] > maxv ? p[s] : maxv;
        }
    }
    real sum = 0;
    for (int j = 0; j < nblocks; j++) {
        const int s0 = blocks[j] * block, s1 = s0 + block < S ? s0 + block : S;
        for (int s = s0; s < s1; s++) {
            p[s] = maxv > -INFINITY && p[s] > -INFINITY ? kiln_exp(p[s] - maxv) : 0;
            sum += p[s];
        }
    }
    const real inv = sum > 0 ? 1 / sum : 0;
    for (int j = 0; j < nblocks; j++) {
        const int s0 = blocks[j] * block, s1 = s0 + block < S ? s0 + block : S;
        for (int s = s0; s < s1; s++) p[s] *= inv;
    }
}

/* out, q (B, T, C); k, v (B, T, KVH * hs) with query head h reading key/value head h / (NH/KVH); mask (B, T)
 * of the keys, or NULL. ws: per (batch, head) T values of scores and T ints of key blocks (as reals). */
KILN_KERNEL void bigbird_attention_forward(real *restrict out, const real *restrict q, const real *restrict k,
                                           const real *restrict v, const int32_t *restrict mask, real *restrict ws,
                                           int B, int T, int C, int NH, int KVH, int block, int g, int r,
                                           int seed) {
    const int hs = C / NH, Ckv = KVH * hs, group = NH / KVH, nb = (T + block - 1) / block;
    const real scale = 1 / sqrt((real)hs);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            real *p = ws + ((size_t)b * NH + h) * 2 * T;
            int *blocks = (int *)(p + T);
            const size_t kvo = (size_t)b * T * Ckv + (size_t)(h / group) * hs;
            const int32_t *mk = mask ? mask + (size_t)b * T : NULL;
            for (int i = 0; i < nb; i++) {
                const int n = bigbird_blocks(blocks, i, nb, g, r, (uint64_t)(uint32_t)seed);
                for (int t = i * block; t < (i + 1) * block && t < T; t++) {
                    const real *qt = q + ((size_t)b * T + t) * C + h * hs;
                    real *restrict ot = out + ((size_t)b * T + t) * C + h * hs;
                    bigbird_row(p, qt, k + kvo, mk, blocks, n, block, T, Ckv, hs, scale);
                    for (int d = 0; d < hs; d++) ot[d] = 0;
                    for (int j = 0; j < n; j++) {
                        const int s0 = blocks[j] * block, s1 = s0 + block < T ? s0 + block : T;
                        for (int s = s0; s < s1; s++) {
                            const real ps = p[s], *vs = v + kvo + (size_t)s * Ckv;
                            #pragma omp simd
                            for (int d = 0; d < hs; d++) ot[d] += ps * vs[d];
                        }
                    }
                }
            }
        }
}

/* The gradients dq (B, T, C), dk and dv (B, T, KVH * hs), each NULL when not wanted, in one pass: per
 * (batch, key/value head), for each query head of its group and each query row, P over the row's keys, then
 * dP = dout·vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P))·scale, dq = dS·k, dk += dSᵀ·q, dv += Pᵀ·dout. ws: per (batch,
 * key/value head) 3·T values: P and dP rows and the key blocks (as ints). */
KILN_KERNEL void bigbird_attention_backward(real *restrict dq, real *restrict dk, real *restrict dv,
                                            const real *restrict dout, const real *restrict q,
                                            const real *restrict k, const real *restrict v,
                                            const int32_t *restrict mask, real *restrict ws, int B, int T, int C,
                                            int NH, int KVH, int block, int g, int r, int seed) {
    const int hs = C / NH, Ckv = KVH * hs, group = NH / KVH, nb = (T + block - 1) / block;
    const real scale = 1 / sqrt((real)hs);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int u = 0; u < KVH; u++) {
            real *p = ws + ((size_t)b * KVH + u) * 3 * T, *dp = p + T;
            int *blocks = (int *)(dp + T);
            const size_t kvo = (size_t)b * T * Ckv + (size_t)u * hs;
            const int32_t *mk = mask ? mask + (size_t)b * T : NULL;
            for (int t = 0; t < T; t++)
                for (int d = 0; d < hs; d++) {
                    if (dk) dk[kvo + (size_t)t * Ckv + d] = 0;
                    if (dv) dv[kvo + (size_t)t * Ckv + d] = 0;
                }
            for (int h = u * group; h < (u + 1) * group; h++)
                for (int i = 0; i < nb; i++) {
                    const int n = bigbird_blocks(blocks, i, nb, g, r, (uint64_t)(uint32_t)seed);
                    for (int t = i * block; t < (i + 1) * block && t < T; t++) {
                        const real *qt = q + ((size_t)b * T + t) * C + h * hs;
                        const real *dyt = dout + ((size_t)b * T + t) * C + h * hs;
                        bigbird_row(p, qt, k + kvo, mk, blocks, n, block, T, Ckv, hs, scale);
                        real dot = 0;
                        for (int j = 0; j < n; j++) {
                            const int s0 = blocks[j] * block, s1 = s0 + block < T ? s0 + block : T;
                            for (int s = s0; s < s1; s++) {
                                const real *vs = v + kvo + (size_t)s * Ckv;
                                real acc = 0;
                                #pragma omp simd reduction(+:acc)
                                for (int d = 0; d < hs; d++) acc += dyt[d] * vs[d];
                                dp[s] = acc;
                                dot += acc * p[s];
                            }
                        }
                        real *restrict dqt = dq ? dq + ((size_t)b * T + t) * C + h * hs : NULL;
                        if (dqt)
                            for (int d = 0; d < hs; d++) dqt[d] = 0;
                        for (int j = 0; j < n; j++) {
                            const int s0 = blocks[j] * block, s1 = s0 + block < T ? s0 + block : T;
                            for (int s = s0; s < s1; s++) {
                                const real ps = p[s], ds = ps * (dp[s] - dot) * scale;
                                const size_t row = kvo + (size_t)s * Ckv;
                                if (dqt) {
                                    const real *restrict ks = k + row;
                                    #pragma omp simd
                                    for (int d = 0; d < hs; d++) dqt[d] += ds * ks[d];
                                }
                                if (dk) {
                                    real *restrict dks = dk + row;
                                    #pragma omp simd
                                    for (int d = 0; d < hs; d++) dks[d] += ds * qt[d];
                                }
                                if (dv) {
                                    real *restrict dvs = dv + row;
                                    #pragma omp simd
                                    for (int d = 0; d < hs; d++) dvs[d] += ps * dyt[d];
                                }
                            }
                        }
                    }
                }
        }
}

/* The weights for pictures (op attention_probs with `block`): out (B, NH, T, T), 0 for the keys a query does
 * not see. ws: per (batch, head) T ints of key blocks (as reals). */
KILN_KERNEL void bigbird_attention_probs_forward(real *restrict out, const real *restrict q, const real *restrict k,
                                                 const int32_t *restrict mask, real *restrict ws, int B, int T,
                                                 int C, int NH, int KVH, int block, int g, int r, int seed) {
    const int hs = C / NH, Ckv = KVH * hs, group = NH / KVH, nb = (T + block - 1) / block;
    const real scale = 1 / sqrt((real)hs);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            int *blocks = (int *)(ws + ((size_t)b * NH + h) * T);
            for (int i = 0; i < nb; i++) {
                const int n = bigbird_blocks(blocks, i, nb, g, r, (uint64_t)(uint32_t)seed);
                for (int t = i * block; t < (i + 1) * block && t < T; t++) {
                    real *restrict p = out + (((size_t)b * NH + h) * T + t) * T;
                    for (int s = 0; s < T; s++) p[s] = 0;
                    bigbird_row(p, q + ((size_t)b * T + t) * C + h * hs, k + (size_t)b * T * Ckv + (size_t)(h / group) * hs,
                                mask ? mask + (size_t)b * T : NULL, blocks, n, block, T, Ckv, hs, scale);
                }
            }
        }
}

#endif /* KILN_KERNELS_BIGBIRD_C */
