/*
 * kiln_seq2seq.c - translating and scoring with an encoder-decoder model over its C API (kiln_seq2seq.h).
 */
#include "kiln_seq2seq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_metrics.h"

#define LOGITS_BUDGET ((size_t)1 << 26) /* floats of logits per forward call when scoring */
#define SCORE_MAX_BATCH 64

static int same_dim(const kiln_tensor_desc *a, const kiln_tensor_desc *b) {
    return a->dims[1] && b->dims[1] && strcmp(a->dims[1], b->dims[1]) == 0;
}

KILN_RT_API int kiln_s2s_find_inputs(const kiln_function_desc *f, kiln_s2s_inputs *in) {
    *in = (kiln_s2s_inputs){-1, -1, -1, -1, -1};
    int tokens[2] = {-1, -1}, nt = 0;
    for (int k = 0; k < f->num_inputs; k++) {
        const kiln_tensor_desc *d = &f->inputs[k];
        if (d->role == KILN_ROLE_SEED && in->seed < 0) in->seed = k;
        else if (d->rank != 2) return -1;
        else if (d->role == KILN_ROLE_TOKENS && nt < 2) tokens[nt++] = k;
        else if (d->role == KILN_ROLE_MASK && in->mask < 0) in->mask = k;
        else if (d->role == KILN_ROLE_TARGETS && in->labels < 0) in->labels = k;
        else return -1;
    }
    if (nt != 2) return -1;
    const kiln_tensor_desc *a = &f->inputs[tokens[0]], *b = &f->inputs[tokens[1]];
    int src = 0;
    if (in->labels >= 0) {
        const kiln_tensor_desc *l = &f->inputs[in->labels];
        if (same_dim(a, l) == same_dim(b, l)) return -1;
        src = same_dim(a, l) ? 1 : 0;
    } else if (in->mask >= 0) {
        src = same_dim(b, &f->inputs[in->mask]) ? 1 : 0;
    }
    in->source = tokens[src];
    in->target = tokens[1 - src];
    if (in->mask >= 0 && !same_dim(&f->inputs[in->source], &f->inputs[in->mask])) return -1;
    return 0;
}

KILN_RT_API int kiln_s2s_open(kiln_seq2seq *m, const kiln_api *api, kiln_error *err) {
    memset(m, 0, sizeof *m);
    m->api = *api;
    m->source = m->mask = m->target = m->positions = -1;
    m->encode = api->find_function("encode");
    m->decode = api->find_function("decode_step");
    m->forward = api->find_function("forward");
    if (!m->encode || !m->decode || !m->forward) {
        kiln_error_set(err, "this needs an encoder-decoder model, with encode and decode_step functions (docs/language.md, "
                            "Encoder-decoder models); this one has none");
        return -1;
    }
    for (int k = 0; k < m->encode->num_inputs; k++) {
        const kiln_tensor_desc *d = &m->encode->inputs[k];
        if (d->role == KILN_ROLE_TOKENS && d->rank == 2 && m->source < 0) m->source = k;
        else if (d->role == KILN_ROLE_MASK && d->rank == 2 && m->mask < 0) m->mask = k;
        else {
            kiln_error_set(err, "encode's input '%s' is neither the source ids [B, S] nor their mask", d->name);
            return -1;
        }
    }
    for (int k = 0; k < m->decode->num_inputs; k++) {
        const kiln_tensor_desc *d = &m->decode->inputs[k];
        if (d->role == KILN_ROLE_TOKENS && m->target < 0) m->target = k;
        else if (d->role == KILN_ROLE_POSITIONS) m->positions = k;
        else {
            kiln_error_set(err, "decode_step's input '%s' is neither the target ids nor the positions", d->name);
            return -1;
        }
    }
    const kiln_tensor_desc *out = m->decode->num_outputs == 1 ? &m->decode->outputs[0] : NULL;
    const kiln_tensor_desc *fout = m->forward->num_outputs == 1 ? &m->forward->outputs[0] : NULL;
    if (m->source < 0 || m->target < 0 || m->positions < 0 || !out || out->rank != 3 || out->dims[2] ||
        kiln_s2s_find_inputs(m->forward, &m->fwd) || m->fwd.labels >= 0 || !fout || fout->rank != 3 ||
        fout->shape[2] != out->shape[2]) {
        kiln_error_set(err, "the model's encode, decode_step and forward do not take source and target ids and return logits");
        return -1;
    }
    m->vocab = m->encode->inputs[m->source].limit;
    m->target_vocab = m->decode->inputs[m->target].limit;
    m->out_dim = out->shape[2];
    m->source_len = m->encode->inputs[m->source].bounds[1];
    m->target_len = m->decode->inputs[m->positions].limit;
    if (m->out_dim > m->target_vocab) {
        kiln_error_set(err, "translating needs logits (%lld) no wider than the target vocabulary (%lld): each output is fed back",
                       (long long)m->out_dim, (long long)m->target_vocab);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* The tokenizer */

#define TOKENIZER_FILE_LIMIT ((size_t)1 << 28)

KILN_RT_API int kiln_s2s_tokenizer(const char *weights, const char *tok_path, kiln_bpe **out, kiln_error *err) {
    *out = NULL;
    char *saved = NULL;
    if (weights) {
        kiln_safetensors st;
        if (kiln_st_open(weights, &st, err)) return -1;
        const char *v = kiln_st_meta_get(&st, "tokenizer");
        if (v && !(saved = malloc(strlen(v) + 1))) {
            kiln_st_close(&st);
            kiln_error_set(err, "out of memory reading the tokenizer");
            return -1;
        }
        if (v) memcpy(saved, v, strlen(v) + 1);
        kiln_st_close(&st);
    }
    uint8_t *file = NULL;
    size_t len = 0;
    if (tok_path && kiln_read_file(tok_path, TOKENIZER_FILE_LIMIT, &file, &len, err)) {
        free(saved);
        return -1;
    }
    int rc = 0;
    if (saved && file && (len != strlen(saved) || memcmp(file, saved, len) != 0)) {
        kiln_error_set(err, "the tokenizer %s is not the one saved with the weights %s (the same ids would be other tokens)",
                       tok_path, weights);
        rc = -1;
    } else if (saved) {
        kiln_error perr;
        if (kiln_bpe_parse(saved, strlen(saved), out, &perr)) {
            kiln_error_set(err, "%s (its tokenizer): %s", weights, perr.msg);
            rc = -1;
        }
    } else if (file) { /* the text form, NAME.tiktoken, or vocab.json with merges.txt */
        rc = kiln_bpe_load_file(tok_path, out, err);
    }
    free(saved);
    free(file);
    return rc;
}

KILN_RT_API int kiln_s2s_check_tokenizer(const kiln_bpe *t, int64_t limit, int32_t *pad, int32_t *bos, int32_t *eos,
                                         kiln_error *err) {
    if (kiln_bpe_size(t) > limit) {
        kiln_error_set(err, "the tokenizer has %d ids, but the model's vocabulary has %lld", kiln_bpe_size(t), (long long)limit);
        return -1;
    }
    *pad = kiln_bpe_special(t, "<pad>");
    *bos = kiln_bpe_special(t, "<bos>");
    *eos = kiln_bpe_special(t, "<eos>");
    if (*pad < 0 || *bos < 0 || *eos < 0) {
        kiln_error_set(err, "the tokenizer has no %s token", *pad < 0 ? "<pad>" : *bos < 0 ? "<bos>" : "<eos>");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Translating */

typedef struct {
    kiln_seq2seq *m;
    kiln_error *err;
} step_user;

static int decode_rows(void *user, int n, const int32_t *tokens, const int32_t *positions, float *logits) {
    step_user *u = user;
    kiln_seq2seq *m = u->m;
    kiln_tensor in[2];
    in[m->target] = (kiln_tensor){m->decode->inputs[m->target].name, KILN_I32, 2, {n, 1}, (void *)tokens};
    in[m->positions] = (kiln_tensor){m->decode->inputs[m->positions].name, KILN_I32, 2, {n, 1}, (void *)positions};
    kiln_tensor out = {m->decode->outputs[0].name, KILN_F32, 3, {n, 1, m->out_dim}, logits};
    if (m->api.run(m->api.ctx, "decode_step", in, 2, &out, 1) == KILN_OK) return 0;
    kiln_error_set(u->err, "%s", m->api.error(m->api.ctx));
    return -1;
}

static int copy_row(void *user, int from, int to) {
    step_user *u = user;
    if (u->m->api.copy_state_row(u->m->api.ctx, from, to) == KILN_OK) return 0;
    kiln_error_set(u->err, "%s", u->m->api.error(u->m->api.ctx));
    return -1;
}

KILN_RT_API int kiln_s2s_translate(kiln_seq2seq *m, const int32_t *source, int64_t n, const kiln_beam_options *o,
                                   kiln_hypothesis *best, kiln_error *err) {
    const int64_t rows = kiln_beam_rows(o->beam);
    if (rows > m->rows) {
        if (m->api.reset_state(m->api.ctx, rows) != KILN_OK) {
            kiln_error_set(err, "%s", m->api.error(m->api.ctx));
            return -1;
        }
        m->rows = rows;
    }
    /* the source's memory in row 0 */
    int32_t *mask = malloc((size_t)(n ? n : 1) * sizeof *mask);
    if (!mask) {
        kiln_error_set(err, "out of memory for the source mask");
        return -1;
    }
    for (int64_t i = 0; i < n; i++) mask[i] = 1;
    kiln_tensor in[2];
    in[m->source] = (kiln_tensor){m->encode->inputs[m->source].name, KILN_I32, 2, {1, n}, (void *)source};
    if (m->mask >= 0) in[m->mask] = (kiln_tensor){m->encode->inputs[m->mask].name, KILN_I32, 2, {1, n}, mask};
    const kiln_status s = m->api.run(m->api.ctx, "encode", in, m->mask >= 0 ? 2 : 1, NULL, 0);
    free(mask);
    if (s != KILN_OK) {
        kiln_error_set(err, "%s", m->api.error(m->api.ctx));
        return -1;
    }
    step_user u = {m, err};
    kiln_decoder d = {&u, (int)m->out_dim, decode_rows, copy_row};
    return kiln_beam_search(&d, o, best, err);
}

/* ------------------------------------------------------------------------- */
/* Scoring */

/* The summed cross-entropy of pairs order[0, count) (sorted by length, so that batches pad little). */
static int teacher_forced(kiln_seq2seq *m, const kiln_token_lists *src, const kiln_token_lists *tgt, const size_t *order,
                          size_t count, int32_t bos, int32_t pad, double *nll, int64_t *tokens, kiln_error *err) {
    const size_t V = (size_t)m->out_dim, S = (size_t)m->source_len, T = (size_t)m->target_len;
    size_t maxb = m->fwd.mask >= 0 ? SCORE_MAX_BATCH : 1; /* without a mask, sources cannot be padded */
    while (maxb > 1 && maxb * T * V > LOGITS_BUDGET) maxb--;
    int32_t *sids = calloc(maxb * S, sizeof *sids), *smask = calloc(maxb * S, sizeof *smask);
    int32_t *tids = calloc(maxb * T, sizeof *tids);
    float *logits = malloc(maxb * T * V * sizeof *logits);
    int rc = -1;
    if (!sids || !smask || !tids || !logits) {
        kiln_error_set(err, "out of memory for the scoring batches");
        goto done;
    }
    *nll = 0.0;
    *tokens = 0;
    for (size_t b0 = 0; b0 < count; b0 += maxb) {
        const size_t B = count - b0 < maxb ? count - b0 : maxb;
        size_t Sb = 1, Tb = 1;
        for (size_t r = 0; r < B; r++) {
            const size_t i = order[b0 + r];
            if ((size_t)src->len[i] > Sb) Sb = (size_t)src->len[i];
            if ((size_t)tgt->len[i] > Tb) Tb = (size_t)tgt->len[i];
        }
        for (size_t r = 0; r < B; r++) {
            const size_t i = order[b0 + r];
            for (size_t t = 0; t < Sb; t++) {
                const int in = t < (size_t)src->len[i];
                sids[r * Sb + t] = in ? src->ids[src->off[i] + t] : pad;
                smask[r * Sb + t] = in;
            }
            for (size_t t = 0; t < Tb; t++) /* bos, then the target without its eos */
                tids[r * Tb + t] = t == 0 ? bos : t < (size_t)tgt->len[i] ? tgt->ids[tgt->off[i] + t - 1] : pad;
        }
        kiln_tensor in[3];
        const kiln_function_desc *f = m->forward;
        in[m->fwd.source] = (kiln_tensor){f->inputs[m->fwd.source].name, KILN_I32, 2, {(int64_t)B, (int64_t)Sb}, sids};
        in[m->fwd.target] = (kiln_tensor){f->inputs[m->fwd.target].name, KILN_I32, 2, {(int64_t)B, (int64_t)Tb}, tids};
        if (m->fwd.mask >= 0)
            in[m->fwd.mask] = (kiln_tensor){f->inputs[m->fwd.mask].name, KILN_I32, 2, {(int64_t)B, (int64_t)Sb}, smask};
        kiln_tensor out = {f->outputs[0].name, KILN_F32, 3, {(int64_t)B, (int64_t)Tb, (int64_t)V}, logits};
        if (m->api.run(m->api.ctx, "forward", in, f->num_inputs, &out, 1) != KILN_OK) {
            kiln_error_set(err, "%s", m->api.error(m->api.ctx));
            goto done;
        }
        for (size_t r = 0; r < B; r++) {
            const size_t i = order[b0 + r];
            for (size_t t = 0; t < (size_t)tgt->len[i]; t++)
                *nll -= kiln_log_softmax_at(logits + (r * Tb + t) * V, (int)V, tgt->ids[tgt->off[i] + t]);
            *tokens += tgt->len[i];
        }
    }
    rc = 0;
done:
    free(sids);
    free(smask);
    free(tids);
    free(logits);
    return rc;
}

KILN_RT_API int kiln_s2s_score(kiln_seq2seq *m, const kiln_pairs *p, const kiln_token_lists *src,
                               const kiln_token_lists *tgt, const size_t *idx, size_t count, const kiln_bpe *tok,
                               int32_t pad, const kiln_beam_options *o, FILE *hyps, kiln_s2s_scores *out,
                               kiln_error *err) {
    memset(out, 0, sizeof *out);
    out->pairs = count;
    size_t *order = malloc((count ? count : 1) * sizeof *order);
    if (!order) {
        kiln_error_set(err, "out of memory");
        return -1;
    }
    memcpy(order, idx, count * sizeof *order);
    kiln_pairs_sort_by_length(order, count, src, tgt);
    double nll;
    int rc = teacher_forced(m, src, tgt, order, count, o->bos, pad, &nll, &out->tokens, err);
    free(order);
    if (rc) return -1;
    out->loss = out->tokens ? nll / (double)out->tokens : 0.0;
    kiln_bleu_stats bleu = {0};
    kiln_chrf_stats chrf = {0};
    for (size_t k = 0; k < count; k++) {
        const size_t i = idx[k];
        kiln_hypothesis best;
        if (kiln_s2s_translate(m, src->ids + src->off[i], src->len[i], o, &best, err)) return -1;
        char *text = kiln_bpe_decode(tok, best.tokens, (size_t)best.len);
        free(best.tokens);
        const char *ref = (const char *)p->buf + p->tgt[i];
        if (!text || kiln_bleu_add(&bleu, text, strlen(text), ref, p->tgt_len[i]) ||
            kiln_chrf_add(&chrf, text, strlen(text), ref, p->tgt_len[i])) {
            free(text);
            kiln_error_set(err, "out of memory scoring translations");
            return -1;
        }
        if (hyps) fprintf(hyps, "%s\n", text);
        free(text);
    }
    out->bleu = kiln_bleu_score(&bleu);
    out->chrf = kiln_chrf_score(&chrf);
    return 0;
}
