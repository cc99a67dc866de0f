/*
 * kiln_beam.h - greedy and beam-search decoding of an encoder–decoder (or any causal decoder) over callbacks,
 * independent of the model: the caller runs one decode step for a batch of rows and copies a row's state.
 *
 * The search (docs/translation.md):
 *   - K live hypotheses; at step t every live one is fed its last token (bos first) at position t, and every
 *     (hypothesis, token) is a candidate scored by the sum of its log-probabilities.
 *   - Candidates are taken best first (ties: the earlier hypothesis, then the smaller id). One ending in eos
 *     among the K best finishes, its score normalized by a length penalty: Wu et al. 2016's
 *     lp = ((5 + n) / 6)^alpha, or n^alpha (fairseq, Hugging Face), with n the tokens it generated (eos
 *     included); one ending in eos further down is dropped (as fairseq and transformers do); any other
 *     continues, until K continue.
 *   - The search ends when K hypotheses have finished, or after max_len tokens (the live ones then finish
 *     without eos). The result is the finished one of highest normalized score (ties: the first finished).
 *   With K = 1 this is greedy decoding.
 */
#ifndef KILN_BEAM_H
#define KILN_BEAM_H

#include <stdint.h>

#include "kiln_rt.h"

typedef struct {
    void *user;
    int vocab; /* logits per row */
    /* the logits (n, vocab) of rows 0 … n-1, each fed tokens[i] at position positions[i]; 0 on success */
    int (*step)(void *user, int n, const int32_t *tokens, const int32_t *positions, float *logits);
    /* copies row `from`'s state (KV cache and memory) to row `to`; 0 on success */
    int (*copy_row)(void *user, int from, int to);
} kiln_decoder;

typedef struct {
    int beam;              /* K >= 1 (1: greedy) */
    double length_penalty; /* alpha >= 0 (0: the plain sum of log-probabilities) */
    int length_power;      /* 1: divide by n^alpha; 0: by ((5 + n) / 6)^alpha (Wu et al. 2016) */
    int max_len;           /* tokens generated at most, eos included, >= 1 */
    int32_t bos, eos;
} kiln_beam_options;

typedef struct {
    int32_t *tokens; /* the generated tokens (not bos; eos last when finished), kiln_beam_search's allocation */
    int len;
    double score;      /* sum of log-probabilities */
    double normalized; /* score / lp(len) */
    int finished;      /* ended in eos */
} kiln_hypothesis;

/* The rows a search needs: the state of the source is in row 0 when it starts, and rows 0 … 2K-1 are used. */
KILN_RT_API int kiln_beam_rows(int beam);

/* Decodes from row 0's state; *best gets the result (free best->tokens). 0 on success; -1 with *err set when a
 * callback fails or memory runs out. */
KILN_RT_API int kiln_beam_search(const kiln_decoder *d, const kiln_beam_options *o, kiln_hypothesis *best, kiln_error *err);

#endif /* KILN_BEAM_H */
