/*
 * kiln_metrics.c - corpus BLEU (13a) and chrF, as sacreBLEU computes them (kiln_metrics.h).
 */
#include "kiln_metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A string of code points. */
typedef struct {
    uint32_t *v;
    size_t n, cap;
} ustr;

static int us_push(ustr *s, uint32_t c) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        uint32_t *v = realloc(s->v, cap * sizeof *v);
        if (!v) return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = c;
    return 0;
}

/* Decodes UTF-8; each byte of an invalid sequence becomes U+FFFD. */
static int us_decode(ustr *out, const char *text, size_t len) {
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    while (i < len) {
        const size_t good = kiln_utf8_check(s + i, len - i);
        const size_t end = i + good;
        while (i < end) {
            const uint8_t c = s[i];
            const size_t k = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            uint32_t cp = k == 1 ? c : k == 2 ? c & 0x1Fu : k == 3 ? c & 0x0Fu : c & 0x07u;
            for (size_t j = 1; j < k; j++) cp = (cp << 6) | (s[i + j] & 0x3Fu);
            if (us_push(out, cp)) return -1;
            i += k;
        }
        if (i < len) {
            if (us_push(out, 0xFFFD)) return -1;
            i++;
        }
    }
    return 0;
}

/* Python's str.isspace(), which str.split() and str.rstrip() use. */
static int py_space(uint32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static int is_digit(uint32_t c) { return c >= '0' && c <= '9'; }

/* ------------------------------------------------------------------------- */
/* 13a */

/* Replaces every occurrence of the ASCII string `from` by `to` (no longer than from), left to right, in place. */
static void us_replace(ustr *s, const char *from, const char *to) {
    const size_t nf = strlen(from), nt = strlen(to);
    size_t o = 0, i = 0;
    while (i < s->n) {
        size_t k = 0;
        while (k < nf && i + k < s->n && s->v[i + k] == (uint8_t)from[k]) k++;
        if (k == nf) {
            for (size_t j = 0; j < nt; j++) s->v[o++] = (uint8_t)to[j];
            i += nf;
        } else s->v[o++] = s->v[i++];
    }
    s->n = o;
}

/* The first rule's class: [{-~[-` -&(-+:-@/] */
static int rule1(uint32_t c) {
    return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') || (c >= '(' && c <= '+') ||
           (c >= ':' && c <= '@') || c == '/';
}

/* One of the two-character rules, applied as Python's re.sub does (matches left to right, not overlapping):
 * 2: ([^0-9])([.,]) -> "\1 \2 "; 3: ([.,])([^0-9]) -> " \1 \2"; 4: ([0-9])(-) -> "\1 \2 ". */
static int rule_pairs(const ustr *in, ustr *out, int rule) {
    out->n = 0;
    for (size_t i = 0; i < in->n;) {
        const uint32_t a = in->v[i], b = i + 1 < in->n ? in->v[i + 1] : 0;
        const int point = a == '.' || a == ',', point_b = b == '.' || b == ',';
        const int hit = i + 1 < in->n && (rule == 2 ? !is_digit(a) && point_b : rule == 3 ? point && !is_digit(b) : is_digit(a) && b == '-');
        if (!hit) {
            if (us_push(out, a)) return -1;
            i++;
            continue;
        }
        const uint32_t seq2[4] = {a, ' ', b, ' '}, seq3[4] = {' ', a, ' ', b};
        const uint32_t *seq = rule == 3 ? seq3 : seq2;
        for (int k = 0; k < 4; k++)
            if (us_push(out, seq[k])) return -1;
        i += 2;
    }
    return 0;
}

/* The 13a tokens of a line: code points in *toks with single spaces between tokens. */
static int tokenize_13a(const char *line, size_t len, ustr *toks) {
    ustr a = {0}, b = {0};
    int rc = -1;
    if (us_decode(&a, line, len)) goto done;
    while (a.n > 0 && py_space(a.v[a.n - 1])) a.n--; /* rstrip */
    us_replace(&a, "<skipped>", "");
    us_replace(&a, "-\n", "");
    us_replace(&a, "\n", " ");
    us_replace(&a, "&quot;", "\"");
    us_replace(&a, "&amp;", "&");
    us_replace(&a, "&lt;", "<");
    us_replace(&a, "&gt;", ">");
    if (us_push(&b, ' ')) goto done;
    for (size_t i = 0; i < a.n; i++) {
        const int pad = rule1(a.v[i]);
        if ((pad && us_push(&b, ' ')) || us_push(&b, a.v[i]) || (pad && us_push(&b, ' '))) goto done;
    }
    if (us_push(&b, ' ')) goto done;
    if (rule_pairs(&b, &a, 2) || rule_pairs(&a, &b, 3) || rule_pairs(&b, &a, 4)) goto done;
    toks->n = 0;
    for (size_t i = 0; i < a.n; i++) {
        if (py_space(a.v[i])) continue;
        if (toks->n && py_space(a.v[i - 1]) && us_push(toks, ' ')) goto done;
        if (us_push(toks, a.v[i])) goto done;
    }
    rc = 0;
done:
    free(a.v);
    free(b.v);
    return rc;
}

KILN_RT_API char *kiln_tokenize_13a(const char *line, size_t len) {
    ustr t = {0};
    if (tokenize_13a(line, len, &t)) {
        free(t.v);
        return NULL;
    }
    char *out = malloc(4 * t.n + 1);
    size_t o = 0;
    for (size_t i = 0; out && i < t.n; i++) {
        const uint32_t c = t.v[i];
        if (c < 0x80) out[o++] = (char)c;
        else if (c < 0x800) { out[o++] = (char)(0xC0 | (c >> 6)); out[o++] = (char)(0x80 | (c & 0x3F)); }
        else if (c < 0x10000) {
            out[o++] = (char)(0xE0 | (c >> 12)); out[o++] = (char)(0x80 | ((c >> 6) & 0x3F)); out[o++] = (char)(0x80 | (c & 0x3F));
        } else {
            out[o++] = (char)(0xF0 | (c >> 18)); out[o++] = (char)(0x80 | ((c >> 12) & 0x3F));
            out[o++] = (char)(0x80 | ((c >> 6) & 0x3F)); out[o++] = (char)(0x80 | (c & 0x3F));
        }
    }
    if (out) out[o] = 0;
    free(t.v);
    return out;
}

/* ------------------------------------------------------------------------- */
/* n-gram counting by hashes */

static int cmp_u64(const void *a, const void *b) {
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Sum over distinct n-grams of min(count in h, count in r); h and r sorted. */
static int64_t clipped_matches(const uint64_t *h, size_t nh, const uint64_t *r, size_t nr) {
    int64_t m = 0;
    size_t i = 0, j = 0;
    while (i < nh && j < nr) {
        if (h[i] < r[j]) i++;
        else if (h[i] > r[j]) j++;
        else {
            m++;
            i++;
            j++;
        }
    }
    return m;
}

static uint64_t mix(uint64_t h, uint64_t x) {
    h ^= x + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdULL;
    return h ^ (h >> 29);
}

/* The words of a tokenised line: their hashes. */
static int word_hashes(const ustr *toks, uint64_t **out, size_t *n) {
    size_t count = 0;
    for (size_t i = 0; i < toks->n; i++) count += toks->v[i] == ' ' || i == 0;
    uint64_t *w = malloc((count ? count : 1) * sizeof *w);
    if (!w) return -1;
    size_t k = 0;
    uint64_t h = 0x12345;
    for (size_t i = 0; i <= toks->n; i++) {
        if (i == toks->n || toks->v[i] == ' ') {
            if (i > 0) w[k++] = h;
            h = 0x12345;
        } else h = mix(h, toks->v[i]);
    }
    *out = w;
    *n = toks->n ? k : 0;
    return 0;
}

/* The sorted hashes of the n-grams of units u[0, m) (words or characters); NULL when out of memory. */
static uint64_t *ngrams(const uint64_t *u, size_t m, int n, size_t *count) {
    *count = m >= (size_t)n ? m - (size_t)n + 1 : 0;
    uint64_t *g = malloc((*count ? *count : 1) * sizeof *g);
    if (!g) return NULL;
    for (size_t i = 0; i < *count; i++) {
        uint64_t h = (uint64_t)n;
        for (int k = 0; k < n; k++) h = mix(h, u[i + (size_t)k]);
        g[i] = h;
    }
    qsort(g, *count, sizeof *g, cmp_u64);
    return g;
}

/* For each order 1..orders: hyp n-grams, ref n-grams, clipped matches. */
static int count_orders(const uint64_t *hu, size_t hn, const uint64_t *ru, size_t rn, int orders, int64_t *nh,
                        int64_t *nr, int64_t *match) {
    for (int n = 1; n <= orders; n++) {
        size_t ch, cr;
        uint64_t *h = ngrams(hu, hn, n, &ch), *r = ngrams(ru, rn, n, &cr);
        if (!h || !r) {
            free(h);
            free(r);
            return -1;
        }
        nh[n - 1] = (int64_t)ch;
        nr[n - 1] = (int64_t)cr;
        match[n - 1] = clipped_matches(h, ch, r, cr);
        free(h);
        free(r);
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* BLEU */

KILN_RT_API int kiln_bleu_add(kiln_bleu_stats *s, const char *hyp, size_t hyp_len, const char *ref, size_t ref_len) {
    ustr th = {0}, tr = {0};
    uint64_t *wh = NULL, *wr = NULL;
    size_t nh = 0, nr = 0;
    int rc = -1;
    if (tokenize_13a(hyp, hyp_len, &th) || tokenize_13a(ref, ref_len, &tr) || word_hashes(&th, &wh, &nh) ||
        word_hashes(&tr, &wr, &nr))
        goto done;
    int64_t total[KILN_BLEU_ORDER], refs[KILN_BLEU_ORDER], correct[KILN_BLEU_ORDER];
    if (count_orders(wh, nh, wr, nr, KILN_BLEU_ORDER, total, refs, correct)) goto done;
    s->sys_len += (int64_t)nh;
    s->ref_len += (int64_t)nr;
    for (int n = 0; n < KILN_BLEU_ORDER; n++) {
        s->total[n] += total[n];
        s->correct[n] += correct[n];
    }
    rc = 0;
done:
    free(th.v);
    free(tr.v);
    free(wh);
    free(wr);
    return rc;
}

KILN_RT_API double kiln_bleu_score(const kiln_bleu_stats *s) {
    int any = 0;
    for (int n = 0; n < KILN_BLEU_ORDER; n++) any |= s->correct[n] != 0;
    if (!any) return 0.0;
    double bp = 1.0;
    if (s->sys_len < s->ref_len) bp = s->sys_len > 0 ? exp(1.0 - (double)s->ref_len / (double)s->sys_len) : 0.0;
    double smooth = 1.0, logsum = 0.0;
    for (int n = 0; n < KILN_BLEU_ORDER; n++) {
        if (s->total[n] == 0) return 0.0; /* an order without n-grams: sacreBLEU's log(0) */
        double p;
        if (s->correct[n] == 0) {
            smooth *= 2.0;
            p = 100.0 / (smooth * (double)s->total[n]);
        } else p = 100.0 * (double)s->correct[n] / (double)s->total[n];
        logsum += log(p);
    }
    return bp * exp(logsum / KILN_BLEU_ORDER);
}

/* ------------------------------------------------------------------------- */
/* chrF */

/* The characters of a line without its whitespace, as hashes. */
static int char_units(const char *text, size_t len, uint64_t **out, size_t *n) {
    ustr u = {0};
    if (us_decode(&u, text, len)) {
        free(u.v);
        return -1;
    }
    uint64_t *c = malloc((u.n ? u.n : 1) * sizeof *c);
    if (!c) {
        free(u.v);
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < u.n; i++)
        if (!py_space(u.v[i])) c[k++] = u.v[i];
    free(u.v);
    *out = c;
    *n = k;
    return 0;
}

KILN_RT_API int kiln_chrf_add(kiln_chrf_stats *s, const char *hyp, size_t hyp_len, const char *ref, size_t ref_len) {
    uint64_t *ch = NULL, *cr = NULL;
    size_t nh = 0, nr = 0;
    int rc = -1;
    int64_t h[KILN_CHRF_ORDER], r[KILN_CHRF_ORDER], m[KILN_CHRF_ORDER];
    if (char_units(hyp, hyp_len, &ch, &nh) || char_units(ref, ref_len, &cr, &nr) ||
        count_orders(ch, nh, cr, nr, KILN_CHRF_ORDER, h, r, m))
        goto done;
    for (int n = 0; n < KILN_CHRF_ORDER; n++) {
        s->hyp[n] += r[n] > 0 ? h[n] : 0; /* sacreBLEU: no hypothesis n-grams where the reference has none */
        s->ref[n] += r[n];
        s->match[n] += m[n];
    }
    rc = 0;
done:
    free(ch);
    free(cr);
    return rc;
}

KILN_RT_API double kiln_chrf_score(const kiln_chrf_stats *s) {
    const double beta2 = 4.0; /* beta = 2 */
    double prec = 0.0, rec = 0.0;
    int effective = 0;
    for (int n = 0; n < KILN_CHRF_ORDER; n++)
        if (s->hyp[n] > 0 && s->ref[n] > 0) {
            prec += (double)s->match[n] / (double)s->hyp[n];
            rec += (double)s->match[n] / (double)s->ref[n];
            effective++;
        }
    if (effective == 0) return 0.0;
    prec /= effective;
    rec /= effective;
    if (prec + rec == 0.0) return 0.0;
    return 100.0 * (1.0 + beta2) * prec * rec / (beta2 * prec + rec);
}
