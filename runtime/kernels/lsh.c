/*
 * lsh.c - Reformer's LSH attention (Kitaev et al. 2020; op `lsh_attention`), forward and backward, per head of
 * size D = C / NH:
 *   - queries are qk_i; keys are qk_j / sqrt(|qk_j|^2 + 1e-12) (shared query/key attention);
 *   - round r hashes position t to the argmax over [x R_r, -x R_r], R_r a D x (buckets / 2) matrix of normals
 *     fixed by the seed (lsh_normal), the same for every head; ties go to the first;
 *   - per round the positions are sorted by (bucket, position) and cut into chunks of `chunk`; a query sees the
 *     keys of its own chunk and of the previous one; causal: none after the query; its own key scores -1e5;
 *   - all rounds' (round, key) pairs of a query share one softmax.
 * Each (batch, head) pair runs on one thread with its own scratch (lsh_pair_size reals): O(T (hashes + D)).
 * A query's keys are taken a round at a time: their scores into a buffer, then one rescale of the running sums
 * per round (not per key), and the weighted values as vector loops over the head's channels.
 */
#ifndef KILN_KERNELS_LSH_C
#define KILN_KERNELS_LSH_C

#include "kiln_kernel.h"
#include "kiln_math.h"

#define LSH_SELF_SCORE ((real)-1e5)

/* splitmix64 (Steele et al. 2014): the rotations' random bits */
static inline uint64_t lsh_mix(uint64_t x) {
    uint64_t z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Entry `index` of the rotations of `seed`, a normal: two uniforms from lsh_mix of key 2k and 2k + 1 (k = seed *
 * 2^32 + index; u1 in (0, 1], u2 in [0, 1), 53 bits each), Box-Muller's sqrt(-2 ln u1) cos(2 pi u2). */
KILN_KERNEL double lsh_normal(uint64_t seed, uint64_t index) {
    const uint64_t k = (seed << 32) + index;
    const double u1 = ((double)(lsh_mix(2 * k) >> 11) + 1.0) * 0x1p-53, u2 = (double)(lsh_mix(2 * k + 1) >> 11) * 0x1p-53;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Reals of scratch: the rotations, then one area per (batch, head) pair */
KILN_KERNEL size_t lsh_rotation_size(int hashes, int D, int buckets) { return (size_t)hashes * D * (buckets / 2); }
KILN_KERNEL size_t lsh_pair_size(int T, int D, int hashes) { return (size_t)T * (2 * (size_t)D + 3) + 2 * (size_t)hashes * T; }

/* One (batch, head) pair's scratch: the normalised keys kn (T x D) and their 1/|x| rn (T), the keys' gradients
 * dk (T x D, backward), one round's scores sc (T) and their key positions key (T), and per round the sorted order
 * perm (slot -> position) and its inverse inv (position -> slot) */
typedef struct {
    real *kn, *rn, *dk, *sc;
    int *key, *perm, *inv;
} lsh_area;

static lsh_area lsh_area_of(real *areas, int w, int T, int D, int hashes) {
    lsh_area a;
    a.kn = areas + (size_t)w * lsh_pair_size(T, D, hashes);
    a.rn = a.kn + (size_t)T * D;
    a.dk = a.rn + T;
    a.sc = a.dk + (size_t)T * D;
    a.key = (int *)(a.sc + T);
    a.perm = a.key + T;
    a.inv = a.perm + (size_t)hashes * T;
    return a;
}

/* The pair's normalised keys kn (T x D), their 1/|x| rn, and per round the sorted order perm (sorted slot ->
 * position) and its inverse inv (position -> slot). x: the pair's qk rows, stride C. */
static void lsh_prepare(const real *restrict x, int C, int T, int D, const real *restrict rot, int hashes, int buckets,
                        real *restrict kn, real *restrict rn, int *restrict perm, int *restrict inv) {
    const int half = buckets / 2;
    for (int t = 0; t < T; t++) {
        const real *xt = x + (size_t)t * C;
        double ss = 0;
        for (int d = 0; d < D; d++) ss += (double)xt[d] * xt[d];
        const real r = (real)(1.0 / sqrt(ss + 1e-12));
        rn[t] = r;
        for (int d = 0; d < D; d++) kn[(size_t)t * D + d] = xt[d] * r;
    }
    int count[1025];
    for (int h = 0; h < hashes; h++) {
        int *bucket = inv + (size_t)h * T; /* the buckets first, then overwritten by the inverse */
        const real *R = rot + (size_t)h * D * half;
        for (int t = 0; t < T; t++) {
            const real *xt = x + (size_t)t * C;
            real y[512]; /* x R: half <= 512 */
            for (int j = 0; j < half; j++) y[j] = 0;
            for (int d = 0; d < D; d++) {
                const real xd = xt[d], *Rd = R + (size_t)d * half;
                for (int j = 0; j < half; j++) y[j] += xd * Rd[j];
            }
            real best = y[0];
            int arg = 0;
            for (int j = 1; j < half; j++)
                if (y[j] > best) { best = y[j]; arg = j; }
            for (int j = 0; j < half; j++) /* then the negated half, [x R, -x R] */
                if (-y[j] > best) { best = -y[j]; arg = half + j; }
            bucket[t] = arg;
        }
        /* a stable counting sort by bucket: ties stay in position order */
        for (int b = 0; b <= buckets; b++) count[b] = 0;
        for (int t = 0; t < T; t++) count[bucket[t] + 1]++;
        for (int b = 0; b < buckets; b++) count[b + 1] += count[b];
        int *order = perm + (size_t)h * T;
        for (int t = 0; t < T; t++) order[count[bucket[t]]++] = t;
        for (int s = 0; s < T; s++) bucket[order[s]] = s;
    }
}

/* The rotations: rot[(h D + d) half + j] = lsh_normal(seed, that index) */
static void lsh_rotations(real *restrict rot, int hashes, int D, int buckets, unsigned seed) {
    const size_t n = lsh_rotation_size(hashes, D, buckets);
    for (size_t i = 0; i < n; i++) rot[i] = (real)lsh_normal(seed, i);
}

/* The slots [*lo, *hi) of round h's sorted order that query slot s sees: its chunk and the previous one */
static inline void lsh_window(int s, int T, int chunk, int *lo, int *hi) {
    const int c0 = s / chunk * chunk;
    *lo = c0 >= chunk ? c0 - chunk : 0;
    *hi = c0 + chunk < T ? c0 + chunk : T;
}

static inline real lsh_dot(const real *restrict a, const real *restrict b, int D) {
    real s = 0;
    #pragma omp simd reduction(+:s)
    for (int d = 0; d < D; d++) s += a[d] * b[d];
    return s;
}

/* The keys query i sees in round h (their positions into key[], their scores into sc[]): returns how many and
 * their maximum in *max. */
static inline int lsh_scores(int i, int h, const real *restrict q, const real *restrict kn, const int *restrict perm,
                             const int *restrict inv, int T, int D, int chunk, int causal, real scale, int *restrict key,
                             real *restrict sc, real *max) {
    int lo, hi, n = 0;
    lsh_window(inv[(size_t)h * T + i], T, chunk, &lo, &hi);
    real m = -INFINITY;
    for (int s = lo; s < hi; s++) {
        const int j = perm[(size_t)h * T + s];
        if (causal && j > i) continue;
        const real v = j == i ? LSH_SELF_SCORE : scale * lsh_dot(q, kn + (size_t)j * D, D);
        key[n] = j;
        sc[n++] = v;
        if (v > m) m = v;
    }
    *max = m;
    return n;
}

/* out (B, T, C) = LSH attention of qk, v (B, T, C); ws: lsh_rotation_size + B NH lsh_pair_size reals */
KILN_KERNEL void lsh_attention_forward(real *restrict out, const real *restrict qk, const real *restrict v, real *restrict ws,
                                       int B, int T, int C, int NH, int hashes, int buckets, int chunk, unsigned seed, int causal) {
    const int D = C / NH;
    const real scale = (real)(1.0 / sqrt((double)D));
    lsh_rotations(ws, hashes, D, buckets, seed);
    const real *rot = ws;
    real *areas = ws + lsh_rotation_size(hashes, D, buckets);
    #pragma omp parallel for schedule(dynamic, 1)
    for (int w = 0; w < B * NH; w++) {
        const int b = w / NH, hd = w % NH;
        const lsh_area a = lsh_area_of(areas, w, T, D, hashes);
        real *kn = a.kn, *sc = a.sc;
        int *key = a.key, *perm = a.perm, *inv = a.inv;
        const real *x = qk + (size_t)b * T * C + (size_t)hd * D, *vb = v + (size_t)b * T * C + (size_t)hd * D;
        lsh_prepare(x, C, T, D, rot, hashes, buckets, kn, a.rn, perm, inv);
        for (int i = 0; i < T; i++) {
            const real *q = x + (size_t)i * C;
            real *restrict o = out + ((size_t)b * T + i) * C + (size_t)hd * D;
            real m = -INFINITY, l = 0;
            for (int d = 0; d < D; d++) o[d] = 0;
            for (int h = 0; h < hashes; h++) {
                real mr;
                const int n = lsh_scores(i, h, q, kn, perm, inv, T, D, chunk, causal, scale, key, sc, &mr);
                if (mr > m) { /* a new maximum: rescale what is summed so far, once per round */
                    const real f = kiln_exp(m - mr);
                    l *= f;
                    #pragma omp simd
                    for (int d = 0; d < D; d++) o[d] *= f;
                    m = mr;
                }
                for (int k = 0; k < n; k++) {
                    const real p = kiln_exp(sc[k] - m);
                    const real *restrict vj = vb + (size_t)key[k] * C;
                    l += p;
                    #pragma omp simd
                    for (int d = 0; d < D; d++) o[d] += p * vj[d];
                }
            }
            for (int d = 0; d < D; d++) o[d] /= l; /* l >= 1: every query sees its own key */
        }
    }
}

/* dqk, dv (B, T, C): the gradients of lsh_attention_forward for dy, given qk, v and its result y; ws as forward's */
KILN_KERNEL void lsh_attention_backward(real *restrict dqk, real *restrict dv, const real *restrict dy, const real *restrict qk,
                                        const real *restrict v, const real *restrict y, real *restrict ws, int B, int T, int C,
                                        int NH, int hashes, int buckets, int chunk, unsigned seed, int causal) {
    const int D = C / NH;
    const real scale = (real)(1.0 / sqrt((double)D));
    lsh_rotations(ws, hashes, D, buckets, seed);
    const real *rot = ws;
    real *areas = ws + lsh_rotation_size(hashes, D, buckets);
    #pragma omp parallel for schedule(dynamic, 1)
    for (int w = 0; w < B * NH; w++) {
        const int b = w / NH, hd = w % NH;
        const lsh_area a = lsh_area_of(areas, w, T, D, hashes);
        real *kn = a.kn, *rn = a.rn, *dk = a.dk, *sc = a.sc;
        int *key = a.key, *perm = a.perm, *inv = a.inv;
        const size_t off = (size_t)b * T * C + (size_t)hd * D;
        const real *x = qk + off, *vb = v + off;
        real *dq = dqk + off, *dvb = dv + off;
        lsh_prepare(x, C, T, D, rot, hashes, buckets, kn, rn, perm, inv);
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++) dq[(size_t)t * C + d] = dvb[(size_t)t * C + d] = dk[(size_t)t * D + d] = 0;
        for (int i = 0; i < T; i++) {
            const real *q = x + (size_t)i * C, *g = dy + off + (size_t)i * C;
            /* the maximum m and the normaliser l = sum e^(s - m) over the seen pairs, as the forward pass */
            real m = -INFINITY, l = 0;
            for (int h = 0; h < hashes; h++) {
                real mr;
                const int n = lsh_scores(i, h, q, kn, perm, inv, T, D, chunk, causal, scale, key, sc, &mr);
                if (mr > m) { l *= kiln_exp(m - mr); m = mr; }
                for (int k = 0; k < n; k++) l += kiln_exp(sc[k] - m);
            }
            /* p = e^(s - m) / l: m + log l would round away the fraction next to the own key's -1e5 */
            const real inv_l = 1 / l, Di = lsh_dot(g, y + off + (size_t)i * C, D);
            real *restrict dqi = dq + (size_t)i * C;
            for (int h = 0; h < hashes; h++) {
                real mr;
                const int n = lsh_scores(i, h, q, kn, perm, inv, T, D, chunk, causal, scale, key, sc, &mr);
                for (int k = 0; k < n; k++) {
                    const int j = key[k];
                    const real p = kiln_exp(sc[k] - m) * inv_l;
                    real *restrict dvj = dvb + (size_t)j * C;
                    #pragma omp simd
                    for (int d = 0; d < D; d++) dvj[d] += p * g[d];
                    if (j == i) continue; /* a constant score: its probability weighs the value, nothing flows back */
                    const real *restrict kj = kn + (size_t)j * D;
                    const real ds = scale * p * (lsh_dot(g, vb + (size_t)j * C, D) - Di);
                    real *restrict dkj = dk + (size_t)j * D;
                    #pragma omp simd
                    for (int d = 0; d < D; d++) {
                        dqi[d] += ds * kj[d];
                        dkj[d] += ds * q[d];
                    }
                }
            }
        }
        /* keys k = x / sqrt(|x|^2 + eps): dx = (dk - k (k . dk)) / sqrt(|x|^2 + eps) */
        for (int j = 0; j < T; j++) {
            const real *kj = kn + (size_t)j * D, *dkj = dk + (size_t)j * D;
            const real kd = lsh_dot(kj, dkj, D);
            for (int d = 0; d < D; d++) dq[(size_t)j * C + d] += rn[j] * (dkj[d] - kj[d] * kd);
        }
    }
}

#endif /* KILN_KERNELS_LSH_C */
