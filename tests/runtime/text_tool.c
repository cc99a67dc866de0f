/*
 * text_tool.c - exposes the runtime's text code to test_text.py: the byte-level BPE (kiln_bpe.c), WordPiece
 * (kiln_wordpiece.c) and the translation metrics (kiln_metrics.c). Every FILE is read as lines (without their newline).
 *
 *   text_tool pieces FILE               each line's pre-tokenisation pieces, as hex, separated by spaces
 *   text_tool learn VOCAB OUT FILE      learns a tokenizer of VOCAB ids (<pad> <bos> <eos>) from the lines
 *   text_tool parse TOK                 reads a tokenizer file and prints its size
 *                                       (TOK: Kiln's text form, NAME.tiktoken, or vocab.json + merges.txt)
 *   text_tool encode TOK FILE           each line's ids
 *   text_tool decode TOK FILE           each line of ids as text
 *   text_tool tok13a FILE               each line's 13a tokens
 *   text_tool score HYP REF             corpus BLEU and chrF of the lines of HYP against those of REF
 *   text_tool wordpiece VOCAB FILE [cased]  each line's WordPiece ids (kiln_wordpiece.c; uncased unless cased)
 *   text_tool wordpiece-parse VOCAB     reads a vocab.txt and prints its size
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_bpe.h"
#include "kiln_metrics.h"
#include "kiln_rt.h"
#include "kiln_wordpiece.h"

typedef struct {
    uint8_t *buf;
    size_t n;
    const uint8_t **line;
    size_t *len;
} lines;

static lines read_lines(const char *path) {
    lines L = {0};
    kiln_error err;
    if (kiln_read_file(path, (size_t)1 << 30, &L.buf, &L.n, &err)) kiln_die("%s", err.msg);
    size_t cap = 1;
    for (size_t i = 0; i < L.n; i++) cap += L.buf[i] == '\n';
    L.line = kiln_xcalloc(cap, sizeof *L.line, "lines");
    L.len = kiln_xcalloc(cap, sizeof *L.len, "lines");
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= L.n; i++)
        if (i == L.n || L.buf[i] == '\n') {
            if (i == L.n && i == start) break;
            L.line[k] = L.buf + start;
            L.len[k++] = i - start;
            start = i + 1;
        }
    L.n = k;
    return L;
}

/* A tokenizer file: the text form, NAME.tiktoken, or vocab.json with merges.txt beside it. */
static kiln_bpe *load_tok(const char *path) {
    kiln_error err;
    kiln_bpe *t;
    if (kiln_bpe_load_file(path, &t, &err)) kiln_die("%s", err.msg);
    return t;
}

int main(int argc, char **argv) {
    kiln_set_progname(argv[0]);
    kiln_error err;
    if (argc == 3 && strcmp(argv[1], "pieces") == 0) {
        lines L = read_lines(argv[2]);
        for (size_t k = 0; k < L.n; k++) {
            if (kiln_utf8_check(L.line[k], L.len[k]) != L.len[k]) kiln_die("line %zu: invalid UTF-8", k + 1);
            for (size_t i = 0; i < L.len[k];) {
                const size_t p = kiln_pretoken_len(L.line[k] + i, L.len[k] - i);
                if (i) putchar(' ');
                for (size_t j = 0; j < p; j++) printf("%02x", L.line[k][i + j]);
                i += p;
            }
            putchar('\n');
        }
    } else if (argc == 5 && strcmp(argv[1], "learn") == 0) {
        lines L = read_lines(argv[4]);
        const char *sp[3] = {"<pad>", "<bos>", "<eos>"};
        kiln_bpe *t;
        if (kiln_bpe_learn(L.line, L.len, L.n, sp, 3, atoi(argv[2]), &t, &err)) kiln_die("%s", err.msg);
        char *f = kiln_bpe_format(t);
        FILE *o = fopen(argv[3], "wb");
        if (!f || !o || fputs(f, o) < 0 || fclose(o) != 0) kiln_die("cannot write %s", argv[3]);
        printf("%d\n", kiln_bpe_size(t));
    } else if (argc == 3 && strcmp(argv[1], "parse") == 0) {
        printf("%d\n", kiln_bpe_size(load_tok(argv[2])));
    } else if (argc == 4 && strcmp(argv[1], "encode") == 0) {
        kiln_bpe *t = load_tok(argv[2]);
        lines L = read_lines(argv[3]);
        for (size_t k = 0; k < L.n; k++) {
            int32_t *ids = kiln_xcalloc(L.len[k] + 1, sizeof *ids, "ids");
            const int64_t n = kiln_bpe_encode(t, L.line[k], L.len[k], ids, L.len[k] + 1, &err);
            if (n < 0) kiln_die("line %zu: %s", k + 1, err.msg);
            for (int64_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
            putchar('\n');
            free(ids);
        }
    } else if (argc == 4 && strcmp(argv[1], "decode") == 0) {
        kiln_bpe *t = load_tok(argv[2]);
        lines L = read_lines(argv[3]);
        for (size_t k = 0; k < L.n; k++) {
            int32_t ids[4096];
            size_t n = 0;
            char *s = (char *)L.line[k], *end = s + L.len[k];
            while (s < end && n < 4096) {
                char *e;
                long v = strtol(s, &e, 10);
                if (e == s) break;
                ids[n++] = (int32_t)v;
                s = e;
            }
            char *text = kiln_bpe_decode(t, ids, n);
            printf("%s\n", text);
            free(text);
        }
    } else if (argc == 3 && strcmp(argv[1], "tok13a") == 0) {
        lines L = read_lines(argv[2]);
        for (size_t k = 0; k < L.n; k++) {
            char *s = kiln_tokenize_13a((const char *)L.line[k], L.len[k]);
            printf("%s\n", s);
            free(s);
        }
    } else if (argc == 4 && strcmp(argv[1], "score") == 0) {
        lines H = read_lines(argv[2]), R = read_lines(argv[3]);
        if (H.n != R.n) kiln_die("%zu hypotheses, %zu references", H.n, R.n);
        kiln_bleu_stats b = {0};
        kiln_chrf_stats c = {0};
        for (size_t k = 0; k < H.n; k++)
            if (kiln_bleu_add(&b, (const char *)H.line[k], H.len[k], (const char *)R.line[k], R.len[k]) ||
                kiln_chrf_add(&c, (const char *)H.line[k], H.len[k], (const char *)R.line[k], R.len[k]))
                kiln_die("out of memory");
        printf("bleu %.10f chrf %.10f\n", kiln_bleu_score(&b), kiln_chrf_score(&c));
    } else if ((argc == 4 || argc == 5) && strcmp(argv[1], "wordpiece") == 0) {
        kiln_wordpiece *t;
        if (kiln_wordpiece_load(argv[2], !(argc == 5 && strcmp(argv[4], "cased") == 0), &t, &err)) kiln_die("%s", err.msg);
        lines L = read_lines(argv[3]);
        for (size_t k = 0; k < L.n; k++) {
            int32_t *ids = kiln_xcalloc(4 * L.len[k] + 1, sizeof *ids, "ids");
            const int64_t n = kiln_wordpiece_encode(t, L.line[k], L.len[k], ids, 4 * L.len[k] + 1, &err);
            if (n < 0) kiln_die("line %zu: %s", k + 1, err.msg);
            for (int64_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
            putchar('\n');
            free(ids);
        }
        kiln_wordpiece_free(t);
    } else if (argc == 3 && strcmp(argv[1], "wordpiece-parse") == 0) {
        kiln_wordpiece *t;
        if (kiln_wordpiece_load(argv[2], 1, &t, &err)) kiln_die("%s", err.msg);
        printf("%d\n", kiln_wordpiece_size(t));
        kiln_wordpiece_free(t);
    } else {
        kiln_die("usage: text_tool pieces|learn|parse|encode|decode|tok13a|score|wordpiece|wordpiece-parse ...");
    }
    return 0;
}
