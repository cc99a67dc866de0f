/*
 * fake_model.c - a trivial "compiled model" for testing the runtime:
 *   h      = (embed.weight[token] + bias) * ln.weight      (in the arena)
 *   logits = h + pos.weight[t]
 * A bigram model plus a position term, so that tests can observe how the
 * runtime windows sequences. kiln_pack_params negates the bias in place and
 * kiln_forward reads it negated, so a program that forgets to pack (or packs
 * twice) gets wrong logits. The numpy reference in test_runtime.py
 * computes exactly the same float32 operations.
 *
 * kiln_train_step: the same forward (with FAKE_DROPOUT: h *= mask / 0.9, the
 * mask drawn from the seed), mean cross-entropy, analytic gradients.
 */
#include <math.h>
#include <string.h>

#include "model.h"

#define V FAKE_VOCAB
#define C KILN_CONTEXT
#define OFF_EMBED 0
#define OFF_BIAS (V * V)
#define OFF_LN (OFF_BIAS + V)
#define OFF_POS (OFF_LN + V)

/* pos.weight counts as a plain weight, so that --decay-embeddings is observable */
const kiln_param_info kiln_params[KILN_NUM_PARAMS] = {
    {"embed.weight", 2, {V, V}, OFF_EMBED, V * V, KILN_INIT_NORMAL, 0.02f, KILN_ROLE_EMBEDDING},
    {"bias", 1, {V}, OFF_BIAS, V, KILN_INIT_ZEROS, 0.0f, KILN_ROLE_BIAS},
    {"ln.weight", 1, {V}, OFF_LN, V, KILN_INIT_ONES, 0.0f, KILN_ROLE_NORM},
    {"pos.weight", 2, {C, V}, OFF_POS, C * V, KILN_INIT_NORMAL, 0.01f, KILN_ROLE_WEIGHT},
};

size_t kiln_forward_arena_floats(int B, int T) { return (size_t)B * (size_t)T * V; }

int kiln_pack_params(kiln_real *params) {
    for (int v = 0; v < V; v++) params[OFF_BIAS + v] = -params[OFF_BIAS + v];
    return 0;
}

const char *kiln_isa(void) { return "portable"; }

void kiln_forward(const kiln_real *params, kiln_real *arena, const int32_t *tokens, int B, int T,
                  kiln_real *logits) {
    const float *embed = params + OFF_EMBED, *bias = params + OFF_BIAS;
    const float *ln = params + OFF_LN, *pos = params + OFF_POS;
    long n = (long)B * T;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        int t = (int)(i % T);
        const float *e = embed + (size_t)tokens[i] * V;
        float *h = arena + (size_t)i * V;
        float *out = logits + (size_t)i * V;
        for (int v = 0; v < V; v++) h[v] = (e[v] - bias[v]) * ln[v];
        for (int v = 0; v < V; v++) out[v] = h[v] + pos[(size_t)t * V + v];
    }
}

#ifdef KILN_HAS_TRAIN
/* arena: dlogits [N, V], dropout scales [N, V], nll [N] */
size_t kiln_train_arena_floats(int B, int T) { return (size_t)B * (size_t)T * (2 * V + 1); }

#ifdef FAKE_DROPOUT
/* Dropout scale (0 or 1/0.9) of element k for a seed: a splitmix64 hash. */
static float dropout_scale(uint64_t seed, uint64_t k) {
    uint64_t z = seed + (k + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (z >> 40) < (uint64_t)(0.1 * 16777216.0) ? 0.0f : 1.0f / 0.9f;
}
#endif

kiln_real kiln_train_step(const kiln_real *params, kiln_real *grads, kiln_real *arena,
                          const int32_t *tokens, const int32_t *targets, int B, int T,
                          uint64_t seed) {
    const float *embed = params + OFF_EMBED, *bias = params + OFF_BIAS;
    const float *ln = params + OFF_LN, *pos = params + OFF_POS;
    long n = (long)B * T;
    float *dl_all = arena, *scale_all = arena + (size_t)n * V, *nll = arena + (size_t)n * 2 * V;
    (void)seed;
    /* forward and dlogits, one position per iteration */
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        int t = (int)(i % T);
        const float *e = embed + (size_t)tokens[i] * V;
        float *dl = dl_all + (size_t)i * V, *sc = scale_all + (size_t)i * V;
        double mx = -INFINITY, sum = 0.0;
        for (int v = 0; v < V; v++) {
#ifdef FAKE_DROPOUT
            sc[v] = dropout_scale(seed, (uint64_t)i * V + (uint64_t)v);
#else
            sc[v] = 1.0f;
#endif
            float logit = (e[v] + bias[v]) * ln[v] * sc[v] + pos[(size_t)t * V + v];
            dl[v] = logit;
            if (logit > mx) mx = logit;
        }
        for (int v = 0; v < V; v++) sum += exp((double)dl[v] - mx);
        double lse = mx + log(sum);
        nll[i] = (float)(lse - dl[targets[i]]);
        for (int v = 0; v < V; v++)
            dl[v] = (float)((exp((double)dl[v] - lse) - (v == targets[i])) / (double)n);
    }
    /* parameter gradients, accumulated serially (deterministic) */
    memset(grads, 0, sizeof(float) * (size_t)KILN_PARAM_FLOATS);
    float *gE = grads + OFF_EMBED, *gb = grads + OFF_BIAS, *gln = grads + OFF_LN;
    float *gpos = grads + OFF_POS;
    double loss = 0.0;
    for (long i = 0; i < n; i++) {
        int t = (int)(i % T);
        const float *e = embed + (size_t)tokens[i] * V;
        const float *dl = dl_all + (size_t)i * V, *sc = scale_all + (size_t)i * V;
        float *ge = gE + (size_t)tokens[i] * V;
        for (int v = 0; v < V; v++) {
            float dh = dl[v] * sc[v];
            gpos[(size_t)t * V + v] += dl[v];
            gln[v] += dh * (e[v] + bias[v]);
            ge[v] += dh * ln[v];
            gb[v] += dh * ln[v];
        }
        loss += nll[i];
    }
    return (float)(loss / (double)n);
}
#endif
