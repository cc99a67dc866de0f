/*
 * kiln_seq2seq.h - what the programs do with an encoder-decoder model, over its C API: find its inputs by
 * their roles, translate a source (encode once, then greedy or beam search over decode_step with the KV
 * cache), and score sentence pairs (teacher-forced cross-entropy from forward; corpus BLEU and chrF of the
 * translations). Shared by `infer translate`, `infer score --pairs` and the evaluations of `train`.
 *
 * The model is reached through a table of its API functions (kiln_api), so this file is compiled once for
 * every model: the programs fill the table from their model's NAME_* functions.
 */
#ifndef KILN_SEQ2SEQ_H
#define KILN_SEQ2SEQ_H

#include <stdio.h>

#include "kiln.h"
#include "kiln_beam.h"
#include "kiln_bpe.h"
#include "kiln_pairs.h"
#include "kiln_rt.h"

/* A model's C API, for one context. */
typedef struct {
    void *ctx;
    const kiln_function_desc *(*find_function)(const char *name);
    kiln_status (*run)(void *ctx, const char *function, const kiln_tensor *inputs, int num_inputs, kiln_tensor *outputs,
                       int num_outputs);
    kiln_status (*reset_state)(void *ctx, int64_t rows);
    kiln_status (*copy_state_row)(void *ctx, int64_t from, int64_t to);
    const char *(*error)(const void *ctx);
} kiln_api;

/* Where an encoder-decoder's inputs are in one function's signature (-1: absent): the source ids [B, S], their
 * mask [B, S], the decoder's input ids [B, T] and the labels [B, T] (targets of the same T), a dropout seed. */
typedef struct {
    int source, mask, target, labels, seed;
} kiln_s2s_inputs;

/* Finds them; 0 when f has that layout (every input one of them; the labels optional), else -1. */
KILN_RT_API int kiln_s2s_find_inputs(const kiln_function_desc *f, kiln_s2s_inputs *in);

typedef struct {
    kiln_api api;
    const kiln_function_desc *encode, *decode, *forward;
    int source, mask;          /* encode's inputs: the ids, the mask (-1: none) */
    int target, positions;     /* decode_step's inputs */
    kiln_s2s_inputs fwd;       /* forward's */
    int64_t vocab;             /* source ids lie in [0, vocab) */
    int64_t target_vocab;      /* decoder input ids */
    int64_t out_dim;           /* logits per position */
    int64_t source_len;        /* the bound of S */
    int64_t target_len;        /* the bound of T */
    int64_t rows;              /* state rows reserved so far */
} kiln_seq2seq;

/* Checks that the model is an encoder-decoder (encode, decode_step and forward with the layout above). 0, or
 * -1 with *err set. */
KILN_RT_API int kiln_s2s_open(kiln_seq2seq *m, const kiln_api *api, kiln_error *err);

/* Translates one source of n ids. 0, or -1 with *err set. */
KILN_RT_API int kiln_s2s_translate(kiln_seq2seq *m, const int32_t *source, int64_t n, const kiln_beam_options *o,
                                   kiln_hypothesis *best, kiln_error *err);

/* The tokenizer of a model: the one saved in the weights file's metadata under "tokenizer" (weights may be
 * NULL), or the one in the file tok_path (may be NULL); when both are there they must be the same. *out is NULL
 * when there is none. 0, or -1 with *err set. */
KILN_RT_API int kiln_s2s_tokenizer(const char *weights, const char *tok_path, kiln_bpe **out, kiln_error *err);

/* Checks that a tokenizer fits a model whose ids lie in [0, limit) (the smallest of its source and target
 * vocabularies and its logits) and has <pad>, <bos> and <eos>, and gives their ids. 0, or -1 with *err set. */
KILN_RT_API int kiln_s2s_check_tokenizer(const kiln_bpe *t, int64_t limit, int32_t *pad, int32_t *bos, int32_t *eos,
                                         kiln_error *err);

/* The scores of a set of pairs. */
typedef struct {
    size_t pairs;
    int64_t tokens;        /* predicted target tokens, eos included */
    double loss;           /* mean cross-entropy per token, nats (no label smoothing) */
    double bleu, chrf;     /* of the translations against the targets (sacreBLEU's defaults) */
} kiln_s2s_scores;

/* Scores pairs idx[0, count) of p, encoded as src and tgt (each list ends in eos): the teacher-forced loss
 * (decoder input bos + target, padding `pad`), then each source translated with o and detokenised with tok,
 * against the target's text. Each translation is written to `hyps` (a line each) when it is not NULL. 0, or -1
 * with *err set. */
KILN_RT_API int kiln_s2s_score(kiln_seq2seq *m, const kiln_pairs *p, const kiln_token_lists *src,
                               const kiln_token_lists *tgt, const size_t *idx, size_t count, const kiln_bpe *tok,
                               int32_t pad, const kiln_beam_options *o, FILE *hyps, kiln_s2s_scores *out,
                               kiln_error *err);

#endif /* KILN_SEQ2SEQ_H */
