/*
 * kiln_wordpiece.c - BERT's WordPiece tokenizer: normalisation, pre-tokenisation, greedy longest-match
 * (kiln_wordpiece.h).
 */
#include "kiln_wordpiece.h"

#include <stdlib.h>
#include <string.h>

#include "kiln_unicode.h"


struct kiln_wordpiece {
    char *text;        /* the tokens, each NUL-terminated */
    uint32_t *start;   /* [n] offset of token i in text */
    uint32_t *len;     /* [n] its bytes */
    int32_t *slot;     /* [cap] open-addressing hash table of ids, -1 empty */
    size_t cap;
    int n;
    size_t longest;    /* bytes of the longest token */
    int32_t unk;
    int lowercase;
};

/* ------------------------------------------------------------------------- */
/* Characters */


/* What the text cleanup removes: the other characters except tab, newline and carriage return. */
static int is_control(uint32_t cp) {
    if (cp == '\t' || cp == '\n' || cp == '\r') return 0;
    return KILN_UNICODE_IN(cp, kiln_unicode_other);
}

static int is_punctuation(uint32_t cp) {
    if (cp < 0x80) return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126);
    return KILN_UNICODE_IN(cp, kiln_unicode_punctuation);
}

/* The CJK Unified Ideographs blocks and their extensions and compatibility forms, as tokenizers lists them
 * (from U+2B920 in extension E, where Google's BERT had U+2B820). */
static int is_cjk(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* A growing array of code points. */
typedef struct {
    uint32_t *v;
    size_t n, cap;
} cps;

static int push(cps *s, uint32_t c) {
    if (s->n == s->cap) {
        const size_t cap = s->cap ? 2 * s->cap : 256;
        uint32_t *v = realloc(s->v, cap * sizeof *v);
        if (!v) return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = c;
    return 0;
}

/* Lowercases c (one code point may become several) onto out. */
static int push_lower(cps *out, uint32_t c) {
    const kiln_unicode_map *m = KILN_UNICODE_FIND(c, kiln_unicode_lower);
    if (!m) return push(out, c);
    for (int i = 0; i < m->len; i++)
        if (push(out, kiln_unicode_lower_to[m->at + i])) return -1;
    return 0;
}

/* Strips the accents of c (its canonical decomposition without the nonspacing marks), then lowercases. */
static int push_stripped(cps *out, uint32_t c) {
    if (c >= 0xAC00 && c <= 0xD7A3) { /* a Hangul syllable: leading consonant, vowel, optional trailing one */
        const uint32_t s = c - 0xAC00;
        if (push(out, 0x1100 + s / 588) || push(out, 0x1161 + (s % 588) / 28)) return -1;
        return s % 28 ? push(out, 0x11A7 + s % 28) : 0;
    }
    const kiln_unicode_map *m = KILN_UNICODE_FIND(c, kiln_unicode_nfd);
    const uint32_t *d = m ? kiln_unicode_nfd_to + m->at : &c;
    const int n = m ? m->len : 1;
    for (int i = 0; i < n; i++)
        if (!KILN_UNICODE_IN(d[i], kiln_unicode_nonspacing) && push_lower(out, d[i])) return -1;
    return 0;
}

/* The normalised code points of valid UTF-8 text. */
static int normalize(const kiln_wordpiece *t, const uint8_t *s, size_t len, cps *out) {
    size_t i = 0;
    while (i < len) {
        const uint8_t b = s[i];
        const size_t k = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
        uint32_t c = k == 1 ? b : k == 2 ? b & 0x1Fu : k == 3 ? b & 0x0Fu : b & 0x07u;
        for (size_t j = 1; j < k; j++) c = (c << 6) | (s[i + j] & 0x3Fu);
        i += k;
        if (c == 0 || c == 0xFFFD || is_control(c)) continue;
        if (kiln_unicode_is_space(c)) c = ' ';
        const int cjk = is_cjk(c);
        if (cjk && push(out, ' ')) return -1;
        if (t->lowercase ? push_stripped(out, c) : push(out, c)) return -1;
        if (cjk && push(out, ' ')) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* The vocabulary */

static uint64_t hash(const uint8_t *s, size_t n) { return kiln_fnv1a64(KILN_FNV1A64_INIT, s, n); }

/* The id of the token s[0, n), or -1. */
static int32_t lookup(const kiln_wordpiece *t, const uint8_t *s, size_t n) {
    for (size_t i = hash(s, n) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        const int32_t id = t->slot[i];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->text + t->start[id], s, n) == 0) return id;
    }
}

KILN_RT_API int kiln_wordpiece_parse(const char *text, size_t len, int lowercase, kiln_wordpiece **out, kiln_error *err) {
    *out = NULL;
    kiln_wordpiece *t = calloc(1, sizeof *t);
    if (!t) goto oom;
    t->lowercase = lowercase;
    t->unk = -1;
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    if (len && text[len - 1] != '\n') lines++;
    if (lines == 0) {
        kiln_error_set(err, "the vocabulary is empty");
        goto fail;
    }
    if (lines > KILN_WORDPIECE_MAX_TOKENS) {
        kiln_error_set(err, "more than %d tokens", KILN_WORDPIECE_MAX_TOKENS);
        goto fail;
    }
    t->text = malloc(len + 1);
    t->start = calloc(lines, sizeof *t->start);
    t->len = calloc(lines, sizeof *t->len);
    for (t->cap = 16; t->cap < 2 * lines;) t->cap *= 2;
    t->slot = malloc(t->cap * sizeof *t->slot);
    if (!t->text || !t->start || !t->len || !t->slot) goto oom;
    memset(t->slot, 0xFF, t->cap * sizeof *t->slot);
    size_t at = 0, pos = 0;
    for (size_t line = 1; pos < len; line++) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len, n = end - pos;
        if (n && text[pos + n - 1] == '\r') n--;
        const uint8_t *tok = (const uint8_t *)text + pos;
        pos = end + 1;
        if (n == 0) {
            kiln_error_set(err, "line %zu is empty (one token per line)", line);
            goto fail;
        }
        const size_t bad = kiln_utf8_check(tok, n);
        if (bad < n) {
            kiln_error_set(err, "line %zu: invalid UTF-8 at byte %zu", line, bad + 1);
            goto fail;
        }
        const int32_t seen = lookup(t, tok, n);
        if (seen >= 0) {
            kiln_error_set(err, "line %zu: token '%.*s' is also on line %d", line, (int)(n > 64 ? 64 : n), (const char *)tok,
                           seen + 1);
            goto fail;
        }
        const int32_t id = t->n++;
        memcpy(t->text + at, tok, n);
        t->text[at + n] = 0;
        t->start[id] = (uint32_t)at;
        t->len[id] = (uint32_t)n;
        at += n + 1;
        if (n > t->longest) t->longest = n;
        size_t i = hash(tok, n) & (t->cap - 1);
        while (t->slot[i] >= 0) i = (i + 1) & (t->cap - 1);
        t->slot[i] = id;
    }
    t->unk = kiln_wordpiece_id(t, "[UNK]");
    if (t->unk < 0) {
        kiln_error_set(err, "no [UNK] token (is it a BERT vocab.txt?)");
        goto fail;
    }
    *out = t;
    return 0;
oom:
    kiln_error_set(err, "out of memory reading the vocabulary");
fail:
    kiln_wordpiece_free(t);
    return -1;
}

KILN_RT_API int kiln_wordpiece_load(const char *path, int lowercase, kiln_wordpiece **out, kiln_error *err) {
    uint8_t *buf;
    size_t n;
    *out = NULL;
    if (kiln_read_file(path, (size_t)1 << 30, &buf, &n, err)) return -1;
    kiln_error inner;
    const int rc = kiln_wordpiece_parse((const char *)buf, n, lowercase, out, &inner);
    free(buf);
    if (rc) kiln_error_set(err, "%s: %s", path, inner.msg);
    return rc;
}

KILN_RT_API int32_t kiln_wordpiece_id(const kiln_wordpiece *t, const char *token) {
    return lookup(t, (const uint8_t *)token, strlen(token));
}

KILN_RT_API int kiln_wordpiece_size(const kiln_wordpiece *t) { return t->n; }

KILN_RT_API const char *kiln_wordpiece_token(const kiln_wordpiece *t, int32_t id) {
    return id >= 0 && id < t->n ? t->text + t->start[id] : NULL;
}

KILN_RT_API void kiln_wordpiece_free(kiln_wordpiece *t) {
    if (!t) return;
    free(t->text);
    free(t->start);
    free(t->len);
    free(t->slot);
    free(t);
}

/* ------------------------------------------------------------------------- */
/* Encoding */

static size_t put_utf8(uint8_t *d, uint32_t c) {
    if (c < 0x80) return d[0] = (uint8_t)c, 1;
    if (c < 0x800) return d[0] = (uint8_t)(0xC0 | c >> 6), d[1] = (uint8_t)(0x80 | (c & 0x3F)), 2;
    if (c < 0x10000)
        return d[0] = (uint8_t)(0xE0 | c >> 12), d[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F)), d[2] = (uint8_t)(0x80 | (c & 0x3F)), 3;
    d[0] = (uint8_t)(0xF0 | c >> 18), d[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
    d[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F)), d[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

typedef struct {
    int32_t *ids;
    size_t cap;
    int64_t n;
} sink;

static void emit(sink *s, int32_t id) {
    if ((size_t)s->n < s->cap) s->ids[s->n] = id;
    s->n++;
}

/* One word of n characters: its UTF-8 in buf after two bytes of room ("##"), the offset where each
 * character starts in off[0..n] (off[n] the end). */
static void wordpiece(const kiln_wordpiece *t, uint8_t *buf, const size_t *off, size_t n, sink *s) {
    if (n > KILN_WORDPIECE_MAX_WORD) {
        emit(s, t->unk);
        return;
    }
    const int64_t first = s->n;
    for (size_t start = 0; start < n;) {
        int32_t id = -1;
        size_t end = n;
        for (; end > start; end--) {
            size_t bytes = off[end] - off[start];
            uint8_t *p = buf + 2 + off[start];
            if (start > 0) { /* the continuation: "##" written over the bytes before (restored below) */
                const uint8_t b0 = p[-2], b1 = p[-1];
                p[-2] = '#', p[-1] = '#';
                id = bytes + 2 <= t->longest ? lookup(t, p - 2, bytes + 2) : -1;
                p[-2] = b0, p[-1] = b1;
            } else {
                id = bytes <= t->longest ? lookup(t, p, bytes) : -1;
            }
            if (id >= 0) break;
        }
        if (id < 0) { /* no cut: the whole word is unknown */
            s->n = first;
            emit(s, t->unk);
            return;
        }
        emit(s, id);
        start = end;
    }
}

KILN_RT_API int64_t kiln_wordpiece_encode(const kiln_wordpiece *t, const uint8_t *text, size_t len, int32_t *ids,
                                          size_t cap, kiln_error *err) {
    const size_t bad = kiln_utf8_check(text, len);
    if (bad < len) {
        kiln_error_set(err, "invalid UTF-8 at byte %zu", bad + 1);
        return -1;
    }
    cps c = {0};
    uint8_t *buf = NULL;
    size_t *off = NULL;
    if (normalize(t, text, len, &c)) goto oom;
    buf = malloc(4 * c.n + 3);
    off = malloc((c.n + 1) * sizeof *off);
    if (!buf || !off) goto oom;
    sink s = {ids, cap, 0};
    size_t i = 0;
    while (i < c.n) {
        if (c.v[i] == ' ') { /* after the cleanup every whitespace character is a space */
            i++;
            continue;
        }
        size_t n = 0, at = 0;
        if (is_punctuation(c.v[i])) {
            off[0] = 0;
            at = put_utf8(buf + 2, c.v[i++]);
            off[n = 1] = at;
        } else {
            while (i < c.n && c.v[i] != ' ' && !is_punctuation(c.v[i])) {
                off[n++] = at;
                at += put_utf8(buf + 2 + at, c.v[i++]);
            }
            off[n] = at;
        }
        wordpiece(t, buf, off, n, &s);
    }
    free(c.v);
    free(buf);
    free(off);
    return s.n;
oom:
    free(c.v);
    free(buf);
    free(off);
    kiln_error_set(err, "out of memory encoding %zu bytes", len);
    return -1;
}
