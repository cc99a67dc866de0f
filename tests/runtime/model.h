/*
 * model.h - hand-written stand-in for the header the Kiln compiler generates,
 * used to test the runtime without the compiler. Same interface as the real one.
 * FAKE_VOCAB may be overridden (-DFAKE_VOCAB=128) to test smaller vocabularies.
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
typedef enum { KILN_INIT_ZEROS = 0, KILN_INIT_ONES = 1, KILN_INIT_NORMAL = 2 } kiln_init_kind;
typedef struct {
    const char *name;      /* safetensors tensor name, e.g. "layers.0.attention.query.weight" */
    int ndim;              /* 1..4 */
    int64_t shape[4];
    size_t offset;         /* offset in floats into the parameter block */
    size_t numel;
    kiln_init_kind init;
    float init_std;        /* for KILN_INIT_NORMAL: N(0, init_std^2) */
} kiln_param_info;
extern const kiln_param_info kiln_params[KILN_NUM_PARAMS];
/* floats of scratch memory kiln_forward needs for a batch of shape [B, T] */
size_t kiln_forward_arena_floats(int B, int T);
/* tokens: [B, T] int32 in [0, KILN_VOCAB); logits out: [B, T, KILN_OUT_DIM]; params: KILN_PARAM_FLOATS floats */
void kiln_forward(const float *params, float *arena, const int32_t *tokens, int B, int T, float *logits);
#endif
