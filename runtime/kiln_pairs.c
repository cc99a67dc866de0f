/*
 * kiln_pairs.c - reading, checking and encoding sentence pairs (kiln_pairs.h).
 */
#include "kiln_pairs.h"

#include <stdlib.h>
#include <string.h>

KILN_RT_API void kiln_pairs_free(kiln_pairs *p) {
    free(p->buf);
    free(p->src);
    free(p->src_len);
    free(p->tgt);
    free(p->tgt_len);
    memset(p, 0, sizeof *p);
}

KILN_RT_API int kiln_pairs_read(const char *path, size_t max_bytes, kiln_pairs *p, kiln_error *err) {
    memset(p, 0, sizeof *p);
    if (kiln_read_file(path, max_bytes, &p->buf, &p->size, err)) return -1;
    size_t lines = 0;
    for (size_t i = 0; i < p->size; i++) lines += p->buf[i] == '\n';
    if (p->size && p->buf[p->size - 1] != '\n') lines++;
    if (lines == 0) {
        kiln_error_set(err, "%s: no sentence pairs (each line is: source TAB target)", path);
        goto fail;
    }
    p->src = calloc(lines, sizeof *p->src);
    p->src_len = calloc(lines, sizeof *p->src_len);
    p->tgt = calloc(lines, sizeof *p->tgt);
    p->tgt_len = calloc(lines, sizeof *p->tgt_len);
    if (!p->src || !p->src_len || !p->tgt || !p->tgt_len) {
        kiln_error_set(err, "%s: out of memory for %zu sentence pairs", path, lines);
        goto fail;
    }
    size_t start = 0;
    while (start < p->size) {
        const size_t line = p->n + 1;
        const uint8_t *nl = memchr(p->buf + start, '\n', p->size - start);
        const size_t next = nl ? (size_t)(nl - p->buf) + 1 : p->size;
        size_t end = nl ? next - 1 : p->size;
        if (end > start && p->buf[end - 1] == '\r') end--;
        const size_t bad = kiln_utf8_check(p->buf + start, end - start);
        if (bad < end - start) {
            kiln_error_set(err, "%s:%zu: invalid UTF-8 at byte %zu of the line", path, line, bad + 1);
            goto fail;
        }
        const uint8_t *tab = memchr(p->buf + start, '\t', end - start);
        if (!tab) {
            kiln_error_set(err, "%s:%zu: no tab between the source and the target", path, line);
            goto fail;
        }
        const size_t t0 = (size_t)(tab - p->buf) + 1;
        const uint8_t *tab2 = memchr(p->buf + t0, '\t', end - t0);
        const size_t t1 = tab2 ? (size_t)(tab2 - p->buf) : end;
        if (t0 - 1 == start || t1 == t0) {
            kiln_error_set(err, "%s:%zu: the %s is empty", path, line, t0 - 1 == start ? "source" : "target");
            goto fail;
        }
        p->src[p->n] = start;
        p->src_len[p->n] = t0 - 1 - start;
        p->tgt[p->n] = t0;
        p->tgt_len[p->n] = t1 - t0;
        p->n++;
        start = next;
    }
    return 0;
fail:
    kiln_pairs_free(p);
    return -1;
}

KILN_RT_API void kiln_token_lists_free(kiln_token_lists *l) {
    free(l->ids);
    free(l->off);
    free(l->len);
    memset(l, 0, sizeof *l);
}

KILN_RT_API int kiln_pairs_encode(const kiln_pairs *p, const char *path, int side, const kiln_bpe *t, int32_t eos,
                                  int64_t max_len, kiln_token_lists *out, kiln_error *err) {
    memset(out, 0, sizeof *out);
    const size_t *at = side ? p->tgt : p->src, *len = side ? p->tgt_len : p->src_len;
    const char *what = side ? "target" : "source";
    size_t cap = 0;
    for (size_t i = 0; i < p->n; i++) cap += len[i] + 1; /* at most one id per byte, and eos */
    out->ids = malloc((cap ? cap : 1) * sizeof *out->ids);
    out->off = calloc(p->n ? p->n : 1, sizeof *out->off);
    out->len = calloc(p->n ? p->n : 1, sizeof *out->len);
    if (!out->ids || !out->off || !out->len) {
        kiln_error_set(err, "%s: out of memory encoding %zu sentences", path, p->n);
        goto fail;
    }
    size_t o = 0;
    for (size_t i = 0; i < p->n; i++) {
        const int64_t n = kiln_bpe_encode(t, p->buf + at[i], len[i], out->ids + o, len[i], err);
        if (n < 0) goto fail; /* not reached: the file was checked */
        if (n + 1 > max_len) {
            kiln_error_set(err, "%s:%zu: the %s is %lld tokens; with <eos> that is %lld, and the model takes at most %lld",
                           path, i + 1, what, (long long)n, (long long)n + 1, (long long)max_len);
            goto fail;
        }
        out->ids[o + (size_t)n] = eos;
        out->off[i] = o;
        out->len[i] = (int32_t)n + 1;
        o += (size_t)n + 1;
    }
    out->n = p->n;
    return 0;
fail:
    kiln_token_lists_free(out);
    return -1;
}

static const int32_t *sort_src, *sort_tgt; /* qsort has no context argument */
static int by_length(const void *x, const void *y) {
    const size_t i = *(const size_t *)x, j = *(const size_t *)y;
    if (sort_tgt[i] != sort_tgt[j]) return sort_tgt[i] < sort_tgt[j] ? -1 : 1;
    if (sort_src[i] != sort_src[j]) return sort_src[i] < sort_src[j] ? -1 : 1;
    return (i > j) - (i < j);
}

KILN_RT_API void kiln_pairs_sort_by_length(size_t *idx, size_t n, const kiln_token_lists *src, const kiln_token_lists *tgt) {
    sort_src = src->len;
    sort_tgt = tgt->len;
    qsort(idx, n, sizeof *idx, by_length);
}
