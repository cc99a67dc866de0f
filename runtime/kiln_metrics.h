/*
 * kiln_metrics.h - corpus BLEU and chrF of translations against one reference each, as sacreBLEU computes them
 * by default (sacreBLEU 2.x: `BLEU()` with the 13a tokenisation and exponential smoothing, `CHRF()` with
 * character 6-grams and beta 2), so that the numbers Kiln prints are the numbers papers report.
 *
 * Statistics are summed sentence by sentence (kiln_*_add) and the score is computed from the sums. Inputs are
 * UTF-8 (invalid bytes count as U+FFFD); n-grams are compared by 64-bit hashes of their characters.
 */
#ifndef KILN_METRICS_H
#define KILN_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "kiln_rt.h"

#define KILN_BLEU_ORDER 4
#define KILN_CHRF_ORDER 6

typedef struct {
    int64_t sys_len, ref_len;         /* tokens of the hypotheses, of the references */
    int64_t correct[KILN_BLEU_ORDER]; /* n-grams of the hypotheses found in the references (clipped counts) */
    int64_t total[KILN_BLEU_ORDER];   /* n-grams of the hypotheses */
} kiln_bleu_stats;

typedef struct {
    int64_t hyp[KILN_CHRF_ORDER], ref[KILN_CHRF_ORDER], match[KILN_CHRF_ORDER];
} kiln_chrf_stats;

/* Adds one hypothesis and its reference (13a-tokenised after trailing whitespace is removed). 0, or -1 when out
 * of memory. */
KILN_RT_API int kiln_bleu_add(kiln_bleu_stats *s, const char *hyp, size_t hyp_len, const char *ref, size_t ref_len);
/* Corpus BLEU in [0, 100]. */
KILN_RT_API double kiln_bleu_score(const kiln_bleu_stats *s);

/* Adds one hypothesis and its reference (characters without whitespace). 0, or -1 when out of memory. */
KILN_RT_API int kiln_chrf_add(kiln_chrf_stats *s, const char *hyp, size_t hyp_len, const char *ref, size_t ref_len);
/* Corpus chrF in [0, 100]. */
KILN_RT_API double kiln_chrf_score(const kiln_chrf_stats *s);

/* The 13a tokenisation of a line, tokens separated by single spaces, NUL-terminated (free it); NULL when out of
 * memory. */
KILN_RT_API char *kiln_tokenize_13a(const char *line, size_t len);

#endif /* KILN_METRICS_H */
