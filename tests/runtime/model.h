/*
 * model.h - hand-written stand-in for the header the Kiln compiler generates,
 * used to test the runtime without the compiler. Same interface as the real one.
 * FAKE_VOCAB may be overridden (-DFAKE_VOCAB=128) to test smaller vocabularies;
 * -DFAKE_NO_TRAIN leaves out the training interface (a model without a train
 * section); -DFAKE_DROPOUT makes kiln_train_step use its seed (dropout on h).
 */
#ifndef KILN_MODEL_H
#define KILN_MODEL_H
#include <stddef.h>
#include <stdint.h>
#ifndef FAKE_VOCAB
#define FAKE_VOCAB 256
#endif
#define KILN_MODEL_NAME "FakeBigram"
#define KILN_VOCAB FAKE_VOCAB   /* input token ids must be in [0, KILN_VOCAB) */
#define KILN_OUT_DIM FAKE_VOCAB /* logits last dimension */
#define KILN_CONTEXT 32         /* maximum sequence length T */
#define KILN_NUM_PARAMS 4       /* number of parameter tensors */
#define KILN_PARAM_FLOATS (FAKE_VOCAB * FAKE_VOCAB + 2 * FAKE_VOCAB + KILN_CONTEXT * FAKE_VOCAB)
/* element type of weights and activations (the runtime's programs need f32) */
typedef float kiln_real;
#define KILN_REAL_IS_DOUBLE 0
typedef enum { KILN_INIT_ZEROS = 0, KILN_INIT_ONES = 1, KILN_INIT_NORMAL = 2 } kiln_init_kind;
/* how the optimiser treats a parameter (weight decay skips biases and norm gains) */
typedef enum { KILN_ROLE_WEIGHT = 0, KILN_ROLE_BIAS = 1, KILN_ROLE_NORM = 2, KILN_ROLE_EMBEDDING = 3 } kiln_param_role;
typedef struct {
    const char *name;      /* safetensors tensor name, e.g. "layers.0.attention.query.weight" */
    int ndim;              /* 1..4 */
    int64_t shape[4];
    size_t offset;         /* offset in floats into the parameter block */
    size_t numel;
    kiln_init_kind init;
    float init_std;        /* for KILN_INIT_NORMAL: N(0, init_std^2) */
    kiln_param_role role;
} kiln_param_info;
extern const kiln_param_info kiln_params[KILN_NUM_PARAMS];
/* floats of scratch memory kiln_forward needs for a batch of shape [B, T] */
size_t kiln_forward_arena_floats(int B, int T);
/* rearranges params in place for kiln_forward (here: negates the bias); returns 0 */
int kiln_pack_params(kiln_real *params);
const char *kiln_isa(void);
/* tokens: [B, T] int32 in [0, KILN_VOCAB); logits out: [B, T, KILN_OUT_DIM]; params: KILN_PARAM_FLOATS floats */
void kiln_forward(const kiln_real *params, kiln_real *arena, const int32_t *tokens, int B, int T, kiln_real *logits);
#ifndef FAKE_NO_TRAIN
#define KILN_HAS_TRAIN 1
#define KILN_TRAIN_OPTIMIZER 0        /* 0 = AdamW, 1 = SGD with momentum */
#define KILN_TRAIN_LR 1e-2
#define KILN_TRAIN_MIN_LR 1e-3
#define KILN_TRAIN_WARMUP 5           /* warmup steps (linear from lr/warmup to lr) */
#define KILN_TRAIN_SCHEDULE 1         /* 0 = constant, 1 = linear warmup then cosine decay */
#define KILN_TRAIN_STEPS 50           /* default --steps; also the cosine horizon */
#define KILN_TRAIN_BETA1 0.9
#define KILN_TRAIN_BETA2 0.99
#define KILN_TRAIN_EPS 1e-8
#define KILN_TRAIN_WEIGHT_DECAY 0.1
#define KILN_TRAIN_DECAY_EMBEDDINGS 1 /* decay ROLE_WEIGHT, and ROLE_EMBEDDING when 1 */
#define KILN_TRAIN_MOMENTUM 0.9       /* SGD */
#define KILN_TRAIN_CLIP 1.0           /* clip the global gradient norm to this; 0 = off */
#define KILN_TRAIN_BATCH 4
#define KILN_TRAIN_SEQ 16             /* must be <= KILN_CONTEXT */
#define KILN_TRAIN_ACCUMULATE 1       /* micro-batches per optimiser step */
#define KILN_TRAIN_EVAL_INTERVAL 10
#define KILN_TRAIN_EVAL_ITERS 4       /* validation batches per evaluation */
/* scratch floats kiln_train_step needs for [B, T] */
size_t kiln_train_arena_floats(int B, int T);
/* forward + backward for one micro-batch; OVERWRITES grads; returns the mean cross-entropy */
kiln_real kiln_train_step(const kiln_real *params, kiln_real *grads, kiln_real *arena, const int32_t *tokens,
                          const int32_t *targets, int B, int T, uint64_t seed);
#endif
#endif
