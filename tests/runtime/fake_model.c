/*
 * fake_model.c - a hand-written "compiled model" for testing the runtime's programs (infer, train) and the C
 * API (runtime/kiln_lib.c) without the compiler: it describes itself the way a generated model.c does
 * (runtime/kiln_model.h) and includes kiln_lib.c with the prefix `fake`.
 *
 *   forward:    h = (embed.weight[token] + bias) * ln.weight;  logits = h + pos.weight[t]
 *   train_step: the same forward (with FAKE_DROPOUT: h *= mask / 0.9, the mask drawn from the seed input),
 *               mean cross-entropy against targets, analytic gradients
 *   loss:       the mean cross-entropy of forward's logits (no dropout)
 * A bigram model plus a position term, so that tests can observe how the programs window sequences. The
 * inference functions read the parameters "packed": pack_params negates the bias in place and forward reads
 * it negated, so a program (or the library) that forgets to pack, or packs twice, gets wrong logits. The numpy
 * reference in test_runtime.py computes exactly the same float32 operations.
 *
 * FAKE_VOCAB may be overridden (-DFAKE_VOCAB=128); -DFAKE_NO_TRAIN leaves out the training functions (a model
 * without a train section).
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include "kiln_model.h"
#include "kernels/gemm.h"

#ifndef FAKE_VOCAB
#define FAKE_VOCAB 256
#endif
#define V FAKE_VOCAB
#define C 32
#define OFF_EMBED 0
#define OFF_BIAS (V * V)
#define OFF_LN (OFF_BIAS + V)
#define OFF_POS (OFF_LN + V)
#define PARAM_COUNT (OFF_POS + C * V)

/* pos.weight counts as a plain weight, so that --decay-embeddings is observable */
static const kiln_param_desc kiln_params[4] = {
    {"embed.weight", 2, {V, V}, OFF_EMBED, V * V, KILN_INIT_NORMAL, 0.02f, KILN_PARAM_EMBEDDING},
    {"bias", 1, {V}, OFF_BIAS, V, KILN_INIT_ZEROS, 0.0f, KILN_PARAM_BIAS},
    {"ln.weight", 1, {V}, OFF_LN, V, KILN_INIT_ONES, 0.0f, KILN_PARAM_NORM},
    {"pos.weight", 2, {C, V}, OFF_POS, C * V, KILN_INIT_NORMAL, 0.01f, KILN_PARAM_WEIGHT},
};

static int pack_params(real *params) {
    for (int v = 0; v < V; v++) params[OFF_BIAS + v] = -params[OFF_BIAS + v];
    return 0;
}

/* forward: dims B, T; the arena holds h */
static size_t forward_arena(const int64_t *dims) { return (size_t)dims[0] * (size_t)dims[1] * V; }

static void forward(const kiln_call *call) {
    const int B = (int)call->dims[0], T = (int)call->dims[1];
    const int32_t *tokens = call->inputs[0];
    real *logits = call->outputs[0];
    const real *embed = call->params + OFF_EMBED, *bias = call->params + OFF_BIAS;
    const real *ln = call->params + OFF_LN, *pos = call->params + OFF_POS;
    long n = (long)B * T;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        int t = (int)(i % T);
        const real *e = embed + (size_t)tokens[i] * V;
        real *h = call->arena + (size_t)i * V;
        real *out = logits + (size_t)i * V;
        for (int v = 0; v < V; v++) h[v] = (e[v] - bias[v]) * ln[v];
        for (int v = 0; v < V; v++) out[v] = h[v] + pos[(size_t)t * V + v];
    }
}

#ifndef FAKE_NO_TRAIN
/* train_step's arena: dlogits [N, V], dropout scales [N, V], nll [N] */
static size_t train_arena(const int64_t *dims) { return (size_t)dims[0] * (size_t)dims[1] * (2 * V + 1); }

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

static void train_step(const kiln_call *call) {
    const int B = (int)call->dims[0], T = (int)call->dims[1];
    const int32_t *tokens = call->inputs[0], *targets = call->inputs[1];
#ifdef FAKE_DROPOUT
    const uint64_t seed = (uint64_t)*(const int64_t *)call->inputs[2];
#endif
    const real *embed = call->params + OFF_EMBED, *bias = call->params + OFF_BIAS;
    const real *ln = call->params + OFF_LN, *pos = call->params + OFF_POS;
    long n = (long)B * T;
    real *dl_all = call->arena, *scale_all = call->arena + (size_t)n * V, *nll = call->arena + (size_t)n * 2 * V;
    /* forward and dlogits, one position per iteration */
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        int t = (int)(i % T);
        const real *e = embed + (size_t)tokens[i] * V;
        real *dl = dl_all + (size_t)i * V, *sc = scale_all + (size_t)i * V;
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
        for (int v = 0; v < V; v++) dl[v] = (float)((exp((double)dl[v] - lse) - (v == targets[i])) / (double)n);
    }
    /* parameter gradients, accumulated serially (deterministic) */
    real *grads = call->grads;
    memset(grads, 0, sizeof(real) * (size_t)PARAM_COUNT);
    real *gE = grads + OFF_EMBED, *gb = grads + OFF_BIAS, *gln = grads + OFF_LN, *gpos = grads + OFF_POS;
    double loss = 0.0;
    for (long i = 0; i < n; i++) {
        int t = (int)(i % T);
        const real *e = embed + (size_t)tokens[i] * V;
        const real *dl = dl_all + (size_t)i * V, *sc = scale_all + (size_t)i * V;
        real *ge = gE + (size_t)tokens[i] * V;
        for (int v = 0; v < V; v++) {
            float dh = dl[v] * sc[v];
            gpos[(size_t)t * V + v] += dl[v];
            gln[v] += dh * (e[v] + bias[v]);
            ge[v] += dh * ln[v];
            gb[v] += dh * ln[v];
        }
        loss += nll[i];
    }
    ((real *)call->outputs[0])[0] = (float)(loss / (double)n);
}

/* loss: forward's logits (packed parameters), then the mean of -log softmax at the targets, in double */
static size_t loss_arena(const int64_t *dims) { return (size_t)dims[0] * (size_t)dims[1] * 2 * V; }

static void loss_fn(const kiln_call *call) {
    const int B = (int)call->dims[0], T = (int)call->dims[1];
    const int32_t *targets = call->inputs[1];
    long n = (long)B * T;
    real *logits = call->arena + (size_t)n * V;
    void *outputs[1] = {logits};
    kiln_call f = *call;
    f.outputs = outputs;
    forward(&f);
    double total = 0.0;
    for (long i = 0; i < n; i++) {
        const real *x = logits + (size_t)i * V;
        double mx = -INFINITY, sum = 0.0;
        for (int v = 0; v < V; v++) mx = x[v] > mx ? x[v] : mx;
        for (int v = 0; v < V; v++) sum += exp((double)x[v] - mx);
        total += mx + log(sum) - (double)x[targets[i]];
    }
    ((real *)call->outputs[0])[0] = (float)(total / (double)n);
}
#endif

/* ---- the tables the API reads ---- */
#define TOKENS(name, role) {name, KILN_I32, 2, {-1, -1}, {"B", "T"}, {0, C}, role, V, 0, 0}
static const kiln_tensor_desc forward_inputs[1] = {TOKENS("tokens", KILN_ROLE_TOKENS)};
static const kiln_tensor_desc forward_outputs[1] = {{"logits", KILN_F32, 3, {-1, -1, V}, {"B", "T", NULL}, {0, C, V}, KILN_ROLE_DATA, 0, 0, 0}};
static const char *const bt_dims[2] = {"B", "T"};
static const int64_t bt_bounds[2] = {0, C};
static const char *const bt_limits[2] = {NULL, "the fake model's position table"};
#ifndef FAKE_NO_TRAIN
static const kiln_tensor_desc train_inputs[3] = {
    TOKENS("tokens", KILN_ROLE_TOKENS), TOKENS("targets", KILN_ROLE_TARGETS),
    {"seed", KILN_I64, 0, {0}, {NULL}, {0}, KILN_ROLE_SEED, 0, 0, 0}};
static const kiln_tensor_desc loss_outputs[1] = {{"loss", KILN_F32, 0, {0}, {NULL}, {0}, KILN_ROLE_DATA, 0, 0, 0}};
#ifdef FAKE_DROPOUT
#define TRAIN_INPUTS 3
#else
#define TRAIN_INPUTS 2
#endif
#endif

static const kiln_function_info kiln_functions[] = {
    {{"forward", 1, forward_inputs, 1, forward_outputs, 0, 0}, 2, bt_dims, bt_bounds, bt_limits, 1, forward_arena, forward},
#ifndef FAKE_NO_TRAIN
    {{"train_step", TRAIN_INPUTS, train_inputs, 1, loss_outputs, 0, 1}, 2, bt_dims, bt_bounds, bt_limits, 0, train_arena, train_step},
    {{"loss", 2, train_inputs, 1, loss_outputs, 0, 0}, 2, bt_dims, bt_bounds, bt_limits, 1, loss_arena, loss_fn},
#endif
};

static const kiln_state_info kiln_state[1] = {{NULL, 0, {0}, 0}};

static const kiln_model_info kiln_model = {
    "FakeBigram", 4, kiln_params, PARAM_COUNT, 0, kiln_state,
    (int)(sizeof kiln_functions / sizeof kiln_functions[0]), kiln_functions, pack_params, pack_params, NULL, 0, NULL};

#define KILN_PREFIX fake
#include "kiln_lib.c"
