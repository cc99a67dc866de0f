/*
 * kiln_beam.c - greedy and beam-search decoding over callbacks (kiln_beam.h).
 */
#include "kiln_beam.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double score;
    int beam;
    int32_t token;
} candidate;

/* best first: higher score, then the earlier hypothesis, then the smaller id */
static int by_rank(const void *pa, const void *pb) {
    const candidate *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->beam != b->beam) return a->beam < b->beam ? -1 : 1;
    return (a->token > b->token) - (a->token < b->token);
}

static double length_penalty(const kiln_beam_options *o, int len) {
    if (o->length_penalty == 0) return 1.0;
    return o->length_power ? pow((double)len, o->length_penalty) : pow((5.0 + len) / 6.0, o->length_penalty);
}

KILN_RT_API int kiln_beam_rows(int beam) { return 2 * beam; }

/* log-probabilities of one row of logits, in place (double accumulation) */
static void log_softmax_row(float *x, int n, double *out) {
    double m = -INFINITY, s = 0;
    for (int i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - m);
    const double lse = m + log(s);
    for (int i = 0; i < n; i++) out[i] = (double)x[i] - lse;
}

KILN_RT_API int kiln_beam_search(const kiln_decoder *d, const kiln_beam_options *o, kiln_hypothesis *best, kiln_error *err) {
    const int K = o->beam, V = d->vocab, L = o->max_len;
    memset(best, 0, sizeof *best);
    /* each of K beams: its tokens (up to L) and score; the next step's in the second half */
    int32_t *toks = calloc((size_t)2 * K * L, sizeof *toks), *feed = calloc((size_t)K, sizeof *feed);
    int32_t *pos = calloc((size_t)K, sizeof *pos);
    double *score = calloc((size_t)2 * K, sizeof *score), *logp = malloc((size_t)V * sizeof *logp);
    int *parent = calloc((size_t)K, sizeof *parent);
    float *logits = malloc((size_t)K * V * sizeof *logits);
    /* per beam its best K + 1 candidates: at most K end in eos before K others continue (one per beam) */
    const int per = K + 1 < V ? K + 1 : V;
    candidate *cand = malloc((size_t)K * per * sizeof *cand);
    /* finished: K at most, then the live ones at max_len */
    int32_t *done_toks = calloc((size_t)2 * K * L, sizeof *done_toks);
    kiln_hypothesis *done = calloc((size_t)2 * K, sizeof *done);
    int rc = -1;
    if (!toks || !feed || !pos || !score || !logp || !parent || !logits || !cand || !done_toks || !done) {
        kiln_error_set(err, "out of memory for a beam search of %d beams", K);
        goto out;
    }
    int live = 1, ndone = 0, t = 0;
    feed[0] = o->bos;
    for (; t < L && live > 0 && ndone < K; t++) {
        for (int i = 0; i < live; i++) pos[i] = t;
        if (d->step(d->user, live, feed, pos, logits)) {
            kiln_error_set(err, "decode step %d failed", t);
            goto out;
        }
        /* each beam's best `per` candidates, by partial selection */
        int nc = 0;
        for (int i = 0; i < live; i++) {
            log_softmax_row(logits + (size_t)i * V, V, logp);
            candidate *c = cand + nc;
            int have = 0;
            for (int v = 0; v < V; v++) {
                candidate x = {score[i] + logp[v], i, v};
                if (have == per && by_rank(&x, &c[per - 1]) >= 0) continue;
                int j = have < per ? have++ : per - 1;
                while (j > 0 && by_rank(&x, &c[j - 1]) < 0) { c[j] = c[j - 1]; j--; }
                c[j] = x;
            }
            nc += have;
        }
        qsort(cand, (size_t)nc, sizeof *cand, by_rank);
        int next = 0;
        for (int k = 0; k < nc && next < K && ndone < K; k++) {
            const candidate *c = &cand[k];
            const int32_t *from = toks + (size_t)c->beam * L;
            if (c->token == o->eos) {
                if (k >= K) continue;  /* only the K best candidates may finish */
                kiln_hypothesis *h = &done[ndone];
                h->tokens = done_toks + (size_t)ndone * L;
                memcpy(h->tokens, from, (size_t)t * sizeof *from);
                h->tokens[t] = o->eos;
                h->len = t + 1;
                h->score = c->score;
                h->normalized = c->score / length_penalty(o, h->len);
                h->finished = 1;
                ndone++;
                continue;
            }
            int32_t *to = toks + (size_t)(K + next) * L;
            memcpy(to, from, (size_t)t * sizeof *from);
            to[t] = c->token;
            score[K + next] = c->score;
            parent[next] = c->beam;
            next++;
        }
        memcpy(toks, toks + (size_t)K * L, (size_t)next * L * sizeof *toks);
        memcpy(score, score + K, (size_t)next * sizeof *score);
        /* row j takes its parent's state: staged in rows K … 2K-1 first, so that no source is overwritten */
        for (int j = 0; j < next; j++)
            if (parent[j] != j && d->copy_row(d->user, parent[j], K + j)) goto copy_failed;
        for (int j = 0; j < next; j++)
            if (parent[j] != j && d->copy_row(d->user, K + j, j)) goto copy_failed;
        for (int j = 0; j < next; j++) feed[j] = toks[(size_t)j * L + t];
        live = next;
    }
    /* out of length: the live ones finish as they are */
    for (int i = 0; i < live && ndone < K && t == L; i++) {
        kiln_hypothesis *h = &done[ndone++];
        h->tokens = done_toks + (size_t)(ndone - 1) * L;
        memcpy(h->tokens, toks + (size_t)i * L, (size_t)L * sizeof *toks);
        h->len = L;
        h->score = score[i];
        h->normalized = score[i] / length_penalty(o, L);
        h->finished = 0;
    }
    int b = 0;
    for (int i = 1; i < ndone; i++)
        if (done[i].normalized > done[b].normalized) b = i;
    *best = done[b];
    if (!(best->tokens = malloc((size_t)(done[b].len > 0 ? done[b].len : 1) * sizeof *best->tokens))) {
        kiln_error_set(err, "out of memory for a hypothesis");
        goto out;
    }
    memcpy(best->tokens, done[b].tokens, (size_t)done[b].len * sizeof *best->tokens);
    rc = 0;
    goto out;
copy_failed:
    kiln_error_set(err, "copying a beam's state failed at step %d", t);
out:
    free(toks), free(feed), free(pos), free(score), free(logp), free(parent), free(logits), free(cand), free(done_toks), free(done);
    return rc;
}
