/*
 * fake_model.c - a trivial "compiled model" for testing the runtime:
 *   h      = (embed.weight[token] + bias) * ln.weight      (in the arena)
 *   logits = h + pos.weight[t]
 * A bigram model plus a position term, so that tests can observe how the
 * runtime windows sequences. The numpy reference in test_runtime.py
 * computes exactly the same float32 operations.
 */
#include "model.h"

#define V FAKE_VOCAB
#define C KILN_CONTEXT
#define OFF_EMBED 0
#define OFF_BIAS (V * V)
#define OFF_LN (OFF_BIAS + V)
#define OFF_POS (OFF_LN + V)

const kiln_param_info kiln_params[KILN_NUM_PARAMS] = {
    {"embed.weight", 2, {V, V}, OFF_EMBED, V * V, KILN_INIT_NORMAL, 0.02f},
    {"bias", 1, {V}, OFF_BIAS, V, KILN_INIT_ZEROS, 0.0f},
    {"ln.weight", 1, {V}, OFF_LN, V, KILN_INIT_ONES, 0.0f},
    {"pos.weight", 2, {C, V}, OFF_POS, C * V, KILN_INIT_NORMAL, 0.01f},
};

size_t kiln_forward_arena_floats(int B, int T) { return (size_t)B * (size_t)T * V; }

void kiln_forward(const float *params, float *arena, const int32_t *tokens, int B, int T,
                  float *logits) {
    const float *embed = params + OFF_EMBED, *bias = params + OFF_BIAS;
    const float *ln = params + OFF_LN, *pos = params + OFF_POS;
    long n = (long)B * T;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        int t = (int)(i % T);
        const float *e = embed + (size_t)tokens[i] * V;
        float *h = arena + (size_t)i * V;
        float *out = logits + (size_t)i * V;
        for (int v = 0; v < V; v++) h[v] = (e[v] + bias[v]) * ln[v];
        for (int v = 0; v < V; v++) out[v] = h[v] + pos[(size_t)t * V + v];
    }
}
