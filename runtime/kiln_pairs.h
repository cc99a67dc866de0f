/*
 * kiln_pairs.h - sentence pairs for translation: a tab-separated file of source TAB target per line (further
 * columns, such as Tatoeba's attribution, ignored), read and checked as untrusted input, then encoded with a
 * byte-level BPE (kiln_bpe.h) into the token lists an encoder-decoder trains and is scored on.
 */
#ifndef KILN_PAIRS_H
#define KILN_PAIRS_H

#include <stddef.h>
#include <stdint.h>

#include "kiln_bpe.h"
#include "kiln_rt.h"

/* The lines of a pairs file: pair i's source is buf[src[i], src[i] + src_len[i]), its target likewise. */
typedef struct {
    uint8_t *buf;
    size_t size;
    size_t n;                /* pairs = lines */
    size_t *src, *src_len, *tgt, *tgt_len;
} kiln_pairs;

/* Every 10th pair (i % 10 == 0, counting from 0) is held out for validation. */
#define KILN_PAIRS_HOLDOUT 10

/* Reads and checks a pairs file: valid UTF-8, every line has a tab, neither side is empty (a trailing \r is
 * dropped). Errors name the line ("FILE:LINE: ..."). 0, or -1 with *err set. */
KILN_RT_API int kiln_pairs_read(const char *path, size_t max_bytes, kiln_pairs *p, kiln_error *err);
KILN_RT_API void kiln_pairs_free(kiln_pairs *p);

/* Token lists: list i is ids[off[i], off[i] + len[i]). */
typedef struct {
    int32_t *ids;
    size_t *off;
    int32_t *len;
    size_t n;
} kiln_token_lists;

/* Encodes one side (0: sources, 1: targets) of every pair, each list followed by `eos`; a list longer than
 * max_len (eos included) is an error naming the line. 0, or -1 with *err set. */
KILN_RT_API int kiln_pairs_encode(const kiln_pairs *p, const char *path, int side, const kiln_bpe *t, int32_t eos,
                                  int64_t max_len, kiln_token_lists *out, kiln_error *err);
KILN_RT_API void kiln_token_lists_free(kiln_token_lists *l);

/* Sorts pair indices idx[0, n) by target length, then source length, then index: batches of neighbours in this
 * order pad little. */
KILN_RT_API void kiln_pairs_sort_by_length(size_t *idx, size_t n, const kiln_token_lists *src, const kiln_token_lists *tgt);

#endif /* KILN_PAIRS_H */
