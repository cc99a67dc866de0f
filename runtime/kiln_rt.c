/*
 * kiln_rt.c - the Kiln C runtime library (see kiln_rt.h).
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* madvise */
#endif

#include "kiln_rt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the Kiln runtime assumes a little-endian host"
#endif

/* Room for a tensor name or key shown in an error message. */
#define NAME_SHOW 160

/* ========================================================================= */
/* Errors */

static const char *g_progname = "kiln";

KILN_RT_API void kiln_error_set(kiln_error *err, const char *fmt, ...) {
    if (!err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

KILN_RT_API void kiln_set_progname(const char *argv0) {
    if (!argv0 || !*argv0) return;
    const char *slash = strrchr(argv0, '/');
    g_progname = (slash && slash[1]) ? slash + 1 : argv0;
}

KILN_RT_API const char *kiln_progname(void) { return g_progname; }

/* Replaces control bytes so that a message is always exactly one line. */
static void one_line(char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\t') *s = ' ';
        else if (c < 0x20 || c == 0x7f) *s = '?';
    }
}

static kiln_die_hook g_die_hook = NULL;

KILN_RT_API void kiln_set_die_hook(kiln_die_hook hook) { g_die_hook = hook; }

/* Shared body of kiln_die and kiln_die_code. */
static KILN_NORETURN void vdie(int code, const char *fmt, va_list ap) {
    char msg[4096];
    vsnprintf(msg, sizeof msg, fmt, ap);
    one_line(msg);
    fflush(stdout);
    if (g_die_hook) g_die_hook(msg, code);
    fprintf(stderr, "%s: error: %s\n", g_progname, msg);
    fflush(stderr);
    exit(code);
}

KILN_RT_API void kiln_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vdie(1, fmt, ap);
}

KILN_RT_API void kiln_die_code(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vdie(code, fmt, ap);
}

KILN_RT_API const char *kiln_printable(char *dst, size_t cap, const char *s) {
    if (cap == 0) return dst;
    size_t n = strlen(s), i;
    int cut = n + 1 > cap;
    size_t keep = cut ? (cap > 4 ? cap - 4 : 0) : n;
    for (i = 0; i < keep; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (cut) {
        /* do not end in the middle of a UTF-8 sequence */
        while (i > 0 && ((unsigned char)dst[i - 1] & 0xC0) == 0x80) i--;
        if (i > 0 && (unsigned char)dst[i - 1] >= 0xC0) i--;
        for (int k = 0; k < 3 && i + 1 < cap; k++) dst[i++] = '.';
    }
    dst[i] = '\0';
    return dst;
}

/* ========================================================================= */
/* Checked memory and size arithmetic */

KILN_RT_API int kiln_size_mul(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return -1;
    *out = a * b;
    return 0;
}

KILN_RT_API int kiln_size_add(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return -1;
    *out = a + b;
    return 0;
}

KILN_RT_API void *kiln_xmalloc(size_t n, const char *what) {
    void *p = malloc(n ? n : 1);
    if (!p) kiln_die("out of memory allocating %zu bytes for %s", n, what);
    return p;
}

KILN_RT_API void *kiln_xcalloc(size_t count, size_t size, const char *what) {
    size_t n;
    if (kiln_size_mul(count, size, &n)) kiln_die("size overflow allocating %s", what);
    void *p = calloc(n ? count : 1, n ? size : 1);
    if (!p) kiln_die("out of memory allocating %zu bytes for %s", n, what);
    return p;
}

KILN_RT_API float *kiln_xalloc_floats(size_t n, const char *what) {
    size_t bytes;
    if (kiln_size_mul(n ? n : 1, sizeof(float), &bytes))
        kiln_die("size overflow allocating %s", what);
    bytes = (bytes + 63) & ~(size_t)63;
    if (bytes == 0) kiln_die("size overflow allocating %s", what);
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes) != 0 || !p)
        kiln_die("out of memory allocating %zu bytes for %s", bytes, what);
    return p;
}

KILN_RT_API float *kiln_xcalloc_floats(size_t n, const char *what) {
    float *p = kiln_xalloc_floats(n, what);
    memset(p, 0, (n ? n : 1) * sizeof(float));
    return p;
}

/* Little-endian loads from possibly unaligned bytes. */
static uint64_t load_le64(const uint8_t *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}
static uint32_t load_le32(const uint8_t *b) {
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static uint16_t load_le16(const uint8_t *b) { return (uint16_t)(b[0] | b[1] << 8); }

/* ========================================================================= */
/* Growable byte buffer used by the JSON parser and the writers */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

/* Makes room for n more bytes plus a NUL; sets oom on failure. */
static int sb_reserve(sbuf *b, size_t n) {
    if (b->oom) return -1;
    size_t need;
    if (kiln_size_add(b->len, n, &need) || kiln_size_add(need, 1, &need)) {
        b->oom = 1;
        return -1;
    }
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    b->p[b->len] = '\0'; /* always a valid C string */
    return 0;
}

static void sb_put(sbuf *b, const void *s, size_t n) {
    if (sb_reserve(b, n)) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_putc(sbuf *b, char c) { sb_put(b, &c, 1); }

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) KILN_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->oom = 1; /* only used for short numeric fields */
        return;
    }
    sb_put(b, tmp, (size_t)n);
}

/* Formats a shape as "[2, 3]" into dst. */
static const char *fmt_shape(char *dst, size_t cap, int ndim, const int64_t *shape) {
    size_t n = 0;
    dst[0] = '\0';
    n += (size_t)snprintf(dst + n, cap - n, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(dst + n, cap - n, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (n < cap) snprintf(dst + n, cap - n, "]");
    return dst;
}

/* ========================================================================= */
/* UTF-8 */

/* Length of the valid UTF-8 sequence at s[0, n), or 0 if invalid. */
static size_t utf8_seq(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; /* no UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
    } else return 0;
    if (n < len) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return len;
}

KILN_RT_API size_t kiln_utf8_check(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        size_t k = utf8_seq(s + i, len - i);
        if (k == 0) return i;
        i += k;
    }
    return len;
}

/* ========================================================================= */
/* JSON */

typedef struct {
    const char *s;
    size_t len, pos;
    int depth;
    kiln_error *err;
} jparser;

/* Records "<message> at offset N" and returns -1. */
static int jfail(jparser *p, const char *fmt, ...) KILN_PRINTF(2, 3);
static int jfail(jparser *p, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kiln_error_set(p->err, "%s at offset %zu", msg, p->pos);
    return -1;
}

/* Describes the byte at the current position for "unexpected ..." messages. */
static int junexpected(jparser *p, const char *expected) {
    if (p->pos >= p->len) return jfail(p, "unexpected end of input, expected %s", expected);
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c > 0x20 && c < 0x7f) return jfail(p, "unexpected character '%c', expected %s", c, expected);
    return jfail(p, "unexpected byte 0x%02x, expected %s", c, expected);
}

static void jskip_ws(jparser *p) {
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int jparse_value(jparser *p, kiln_json *out);

/* Parses 4 hex digits at the current position. */
static int jhex4(jparser *p, uint32_t *out) {
    if (p->len - p->pos < 4) return jfail(p, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos + (size_t)i];
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return jfail(p, "invalid hex digit in \\u escape");
        v = v * 16 + (uint32_t)d;
    }
    p->pos += 4;
    *out = v;
    return 0;
}

/* Appends code point cp as UTF-8. */
static void sb_put_utf8(sbuf *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    sb_put(b, u, n);
}

/* Parses a string literal (current char is '"') into a malloc'd C string. */
static int jparse_string(jparser *p, char **out) {
    sbuf b = {0};
    *out = NULL;
    p->pos++; /* opening quote */
    sb_reserve(&b, 16);
    for (;;) {
        if (p->pos >= p->len) {
            free(b.p);
            return jfail(p, "unterminated string");
        }
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c == '\\') {
            p->pos++;
            if (p->pos >= p->len) {
                free(b.p);
                return jfail(p, "unterminated string");
            }
            char e = p->s[p->pos++];
            switch (e) {
            case '"': sb_putc(&b, '"'); break;
            case '\\': sb_putc(&b, '\\'); break;
            case '/': sb_putc(&b, '/'); break;
            case 'b': sb_putc(&b, '\b'); break;
            case 'f': sb_putc(&b, '\f'); break;
            case 'n': sb_putc(&b, '\n'); break;
            case 'r': sb_putc(&b, '\r'); break;
            case 't': sb_putc(&b, '\t'); break;
            case 'u': {
                uint32_t cp, lo;
                if (jhex4(p, &cp)) goto fail;
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    p->pos -= 6;
                    jfail(p, "unpaired low surrogate \\u%04X", (unsigned)cp);
                    goto fail;
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                        jfail(p, "unpaired high surrogate \\u%04X", (unsigned)cp);
                        goto fail;
                    }
                    p->pos += 2;
                    if (jhex4(p, &lo)) goto fail;
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        p->pos -= 6;
                        jfail(p, "high surrogate \\u%04X not followed by a low surrogate",
                              (unsigned)cp);
                        goto fail;
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                if (cp == 0) {
                    p->pos -= 6;
                    jfail(p, "\\u0000 (NUL) in strings is not supported");
                    goto fail;
                }
                sb_put_utf8(&b, cp);
                break;
            }
            default:
                p->pos--;
                if ((unsigned char)e > 0x20 && (unsigned char)e < 0x7f)
                    jfail(p, "invalid escape '\\%c'", e);
                else
                    jfail(p, "invalid escape (byte 0x%02x)", (unsigned char)e);
                goto fail;
            }
            continue;
        }
        if (c < 0x20) {
            jfail(p, "unescaped control character 0x%02x in string", c);
            goto fail;
        }
        size_t k = utf8_seq((const uint8_t *)p->s + p->pos, p->len - p->pos);
        if (k == 0) {
            jfail(p, "invalid UTF-8 in string");
            goto fail;
        }
        sb_put(&b, p->s + p->pos, k);
        p->pos += k;
    }
    if (b.oom) {
        free(b.p);
        return jfail(p, "out of memory");
    }
    *out = b.p;
    return 0;
fail:
    free(b.p);
    return -1;
}

/* Parses a number with the strict JSON grammar. */
static int jparse_number(jparser *p, kiln_json *out) {
    size_t start = p->pos, i = p->pos;
    const char *s = p->s;
    int is_int = 1;
    if (i < p->len && s[i] == '-') i++;
    if (i >= p->len || s[i] < '0' || s[i] > '9') {
        p->pos = i;
        return junexpected(p, "a digit");
    }
    if (s[i] == '0') i++;
    else
        while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    if (i < p->len && s[i] == '.') {
        is_int = 0;
        i++;
        if (i >= p->len || s[i] < '0' || s[i] > '9') {
            p->pos = i;
            return junexpected(p, "a digit after '.'");
        }
        while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        is_int = 0;
        i++;
        if (i < p->len && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->len || s[i] < '0' || s[i] > '9') {
            p->pos = i;
            return junexpected(p, "a digit in the exponent");
        }
        while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (is_int) {
        /* exact int64 if it fits */
        int neg = s[start] == '-';
        uint64_t acc = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        int overflow = 0;
        for (size_t k = start + (size_t)neg; k < i; k++) {
            uint64_t d = (uint64_t)(s[k] - '0');
            if (acc > (limit - d) / 10) {
                overflow = 1;
                break;
            }
            acc = acc * 10 + d;
        }
        if (!overflow) {
            out->type = KILN_JSON_INT;
            out->i = neg ? (acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc)
                         : (int64_t)acc;
            out->num = (double)out->i;
            p->pos = i;
            return 0;
        }
    }
    char buf[400];
    if (i - start >= sizeof buf) return jfail(p, "number too long");
    memcpy(buf, s + start, i - start);
    buf[i - start] = '\0';
    double v = strtod(buf, NULL);
    if (isinf(v)) return jfail(p, "number out of range");
    out->type = KILN_JSON_NUMBER;
    out->num = v;
    p->pos = i;
    return 0;
}

/* Matches the literal word at the current position. */
static int jparse_word(jparser *p, const char *word, kiln_json_type type, kiln_json *out) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return junexpected(p, "a JSON value");
    p->pos += n;
    out->type = type;
    return 0;
}

/* Grows an array/object to hold at least one more item (and key if keys). */
static int jgrow(jparser *p, kiln_json *v, size_t *cap, int keys) {
    if (v->count < *cap) return 0;
    size_t ncap = *cap ? *cap * 2 : 4;
    if (ncap > SIZE_MAX / sizeof(kiln_json)) return jfail(p, "out of memory");
    kiln_json *items = realloc(v->items, ncap * sizeof *items);
    if (!items) return jfail(p, "out of memory");
    v->items = items;
    if (keys) {
        char **k = realloc(v->keys, ncap * sizeof *k);
        if (!k) return jfail(p, "out of memory");
        v->keys = k;
    }
    *cap = ncap;
    return 0;
}

/* qsort comparator for key pointers. */
static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Rejects an object whose keys are not unique (O(n log n)). */
static int jcheck_duplicates(jparser *p, const kiln_json *obj, size_t obj_start) {
    if (obj->count < 2) return 0;
    char **sorted = malloc(obj->count * sizeof *sorted);
    if (!sorted) return jfail(p, "out of memory");
    memcpy(sorted, obj->keys, obj->count * sizeof *sorted);
    qsort(sorted, obj->count, sizeof *sorted, cmp_str_ptr);
    for (size_t i = 1; i < obj->count; i++) {
        if (strcmp(sorted[i - 1], sorted[i]) == 0) {
            char nb[NAME_SHOW];
            kiln_printable(nb, sizeof nb, sorted[i]);
            free(sorted);
            p->pos = obj_start;
            return jfail(p, "duplicate key '%s' in the object", nb);
        }
    }
    free(sorted);
    return 0;
}

static int jparse_array(jparser *p, kiln_json *out) {
    size_t cap = 0;
    out->type = KILN_JSON_ARRAY;
    p->pos++;
    jskip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ']') {
        p->pos++;
        return 0;
    }
    for (;;) {
        if (jgrow(p, out, &cap, 0)) return -1;
        kiln_json item;
        if (jparse_value(p, &item)) {
            kiln_json_free(&item);
            return -1;
        }
        out->items[out->count++] = item;
        jskip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == ']') {
            p->pos++;
            return 0;
        }
        return junexpected(p, "',' or ']'");
    }
}

static int jparse_object(jparser *p, kiln_json *out) {
    size_t cap = 0, start = p->pos;
    out->type = KILN_JSON_OBJECT;
    p->pos++;
    jskip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == '}') {
        p->pos++;
        return 0;
    }
    for (;;) {
        jskip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != '"') return junexpected(p, "a string key");
        if (jgrow(p, out, &cap, 1)) return -1;
        char *key;
        if (jparse_string(p, &key)) return -1;
        jskip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != ':') {
            free(key);
            return junexpected(p, "':'");
        }
        p->pos++;
        kiln_json value;
        if (jparse_value(p, &value)) {
            free(key);
            kiln_json_free(&value);
            return -1;
        }
        out->keys[out->count] = key;
        out->items[out->count++] = value;
        jskip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == '}') {
            p->pos++;
            return jcheck_duplicates(p, out, start);
        }
        return junexpected(p, "',' or '}'");
    }
}

/* Parses any value; *out is always left in a state kiln_json_free accepts. */
static int jparse_value(jparser *p, kiln_json *out) {
    memset(out, 0, sizeof *out);
    jskip_ws(p);
    if (p->pos >= p->len) return junexpected(p, "a JSON value");
    char c = p->s[p->pos];
    int rc;
    switch (c) {
    case '{':
    case '[':
        if (p->depth >= KILN_JSON_MAX_DEPTH)
            return jfail(p, "nesting deeper than %d levels", KILN_JSON_MAX_DEPTH);
        p->depth++;
        rc = c == '{' ? jparse_object(p, out) : jparse_array(p, out);
        p->depth--;
        return rc;
    case '"':
        out->type = KILN_JSON_STRING;
        return jparse_string(p, &out->str);
    case 't': return jparse_word(p, "true", KILN_JSON_TRUE, out);
    case 'f': return jparse_word(p, "false", KILN_JSON_FALSE, out);
    case 'n': return jparse_word(p, "null", KILN_JSON_NULL, out);
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return jparse_number(p, out);
        return junexpected(p, "a JSON value");
    }
}

KILN_RT_API int kiln_json_parse(const char *text, size_t len, kiln_json *out, size_t *end, kiln_error *err) {
    jparser p = {text, len, 0, 0, err};
    if (jparse_value(&p, out)) {
        kiln_json_free(out);
        return -1;
    }
    if (end) *end = p.pos;
    return 0;
}

KILN_RT_API void kiln_json_free(kiln_json *v) {
    if (!v) return;
    for (size_t i = 0; i < v->count; i++) {
        if (v->items) kiln_json_free(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
    memset(v, 0, sizeof *v);
}

KILN_RT_API const kiln_json *kiln_json_get(const kiln_json *obj, const char *key) {
    if (!obj || obj->type != KILN_JSON_OBJECT) return NULL;
    for (size_t i = 0; i < obj->count; i++)
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}

/* ========================================================================= */
/* Dtypes */

static const char *const DTYPE_NAMES[KILN_DT_COUNT] = {"F64", "F32", "F16", "BF16", "I64",
                                                       "I32", "I16", "I8",  "U8",   "BOOL"};
static const size_t DTYPE_SIZES[KILN_DT_COUNT] = {8, 4, 2, 2, 8, 4, 2, 1, 1, 1};

KILN_RT_API const char *kiln_st_dtype_name(kiln_st_dtype dt) {
    return (unsigned)dt < KILN_DT_COUNT ? DTYPE_NAMES[dt] : "?";
}

KILN_RT_API size_t kiln_st_dtype_size(kiln_st_dtype dt) { return (unsigned)dt < KILN_DT_COUNT ? DTYPE_SIZES[dt] : 0; }

KILN_RT_API int kiln_st_dtype_from_name(const char *name, kiln_st_dtype *out) {
    for (int i = 0; i < KILN_DT_COUNT; i++) {
        if (strcmp(name, DTYPE_NAMES[i]) == 0) {
            *out = (kiln_st_dtype)i;
            return 0;
        }
    }
    return -1;
}

/* ========================================================================= */
/* Safetensors reader */

/* Error for tensor `name` of file `label`: "<label>: tensor '<name>': <msg>". */
static int st_tensor_fail(kiln_error *err, const char *label, const char *name, const char *fmt,
                          ...) KILN_PRINTF(4, 5);
static int st_tensor_fail(kiln_error *err, const char *label, const char *name, const char *fmt,
                          ...) {
    char msg[600], nb[NAME_SHOW];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kiln_error_set(err, "%s: tensor '%s': %s", label, kiln_printable(nb, sizeof nb, name), msg);
    return -1;
}

/* Reads a non-negative JSON integer; returns 0 or -1. */
static int json_nonneg_int(const kiln_json *v, uint64_t *out) {
    if (v->type != KILN_JSON_INT || v->i < 0) return -1;
    *out = (uint64_t)v->i;
    return 0;
}

/* Describes a JSON value briefly for messages ("-3", "1.5", "a string"). */
static const char *json_brief(char *dst, size_t cap, const kiln_json *v) {
    switch (v->type) {
    case KILN_JSON_INT: snprintf(dst, cap, "%" PRId64, v->i); break;
    case KILN_JSON_NUMBER: snprintf(dst, cap, "%.17g", v->num); break;
    case KILN_JSON_STRING: snprintf(dst, cap, "a string"); break;
    case KILN_JSON_ARRAY: snprintf(dst, cap, "an array"); break;
    case KILN_JSON_OBJECT: snprintf(dst, cap, "an object"); break;
    case KILN_JSON_NULL: snprintf(dst, cap, "null"); break;
    default: snprintf(dst, cap, "a boolean"); break;
    }
    return dst;
}

/* Validates one tensor entry of the header and fills t (except data). */
static int st_parse_entry(const char *label, const char *name, const kiln_json *v,
                          size_t data_len, kiln_st_tensor *t, kiln_error *err) {
    char sb[256], vb[64];
    if (v->type != KILN_JSON_OBJECT)
        return st_tensor_fail(err, label, name, "entry must be a JSON object");
    for (size_t i = 0; i < v->count; i++) {
        const char *k = v->keys[i];
        if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets")) {
            char kb[NAME_SHOW];
            return st_tensor_fail(err, label, name,
                                  "unexpected field '%s' (allowed: dtype, shape, data_offsets)",
                                  kiln_printable(kb, sizeof kb, k));
        }
    }
    const kiln_json *dtype = kiln_json_get(v, "dtype");
    const kiln_json *shape = kiln_json_get(v, "shape");
    const kiln_json *offs = kiln_json_get(v, "data_offsets");
    if (!dtype) return st_tensor_fail(err, label, name, "missing field 'dtype'");
    if (!shape) return st_tensor_fail(err, label, name, "missing field 'shape'");
    if (!offs) return st_tensor_fail(err, label, name, "missing field 'data_offsets'");

    if (dtype->type != KILN_JSON_STRING)
        return st_tensor_fail(err, label, name, "dtype must be a string");
    if (kiln_st_dtype_from_name(dtype->str, &t->dtype)) {
        char db[NAME_SHOW];
        return st_tensor_fail(err, label, name,
                              "unknown dtype '%s' (known: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)",
                              kiln_printable(db, sizeof db, dtype->str));
    }

    if (shape->type != KILN_JSON_ARRAY)
        return st_tensor_fail(err, label, name, "shape must be an array of integers");
    if (shape->count > KILN_MAX_RANK)
        return st_tensor_fail(err, label, name, "rank %zu exceeds the maximum of %d", shape->count,
                              KILN_MAX_RANK);
    t->ndim = (int)shape->count;
    for (size_t i = 0; i < shape->count; i++) {
        uint64_t d;
        if (json_nonneg_int(&shape->items[i], &d))
            return st_tensor_fail(err, label, name,
                                  "shape dimension %zu is %s, not a non-negative integer", i,
                                  json_brief(vb, sizeof vb, &shape->items[i]));
        t->shape[i] = (int64_t)d;
    }
    size_t numel = 1, nbytes;
    for (int i = 0; i < t->ndim; i++) {
        if ((uint64_t)t->shape[i] > SIZE_MAX ||
            kiln_size_mul(numel, (size_t)t->shape[i], &numel))
            return st_tensor_fail(err, label, name, "shape %s overflows the element count",
                                  fmt_shape(sb, sizeof sb, t->ndim, t->shape));
    }
    if (kiln_size_mul(numel, kiln_st_dtype_size(t->dtype), &nbytes))
        return st_tensor_fail(err, label, name, "shape %s of %s overflows the byte count",
                              fmt_shape(sb, sizeof sb, t->ndim, t->shape),
                              kiln_st_dtype_name(t->dtype));
    t->numel = numel;
    t->nbytes = nbytes;

    uint64_t begin, end;
    if (offs->type != KILN_JSON_ARRAY || offs->count != 2 ||
        json_nonneg_int(&offs->items[0], &begin) || json_nonneg_int(&offs->items[1], &end))
        return st_tensor_fail(err, label, name,
                              "data_offsets must be an array of two non-negative integers");
    if (begin > end)
        return st_tensor_fail(err, label, name,
                              "data_offsets [%" PRIu64 ", %" PRIu64 "] are reversed (begin > end)",
                              begin, end);
    if (end > data_len)
        return st_tensor_fail(err, label, name,
                              "data_offsets [%" PRIu64 ", %" PRIu64
                              "] are outside the data section (%zu bytes)",
                              begin, end, data_len);
    if (end - begin != nbytes)
        return st_tensor_fail(err, label, name,
                              "data_offsets [%" PRIu64 ", %" PRIu64
                              "] do not match shape %s of %s (%zu bytes)",
                              begin, end, fmt_shape(sb, sizeof sb, t->ndim, t->shape),
                              kiln_st_dtype_name(t->dtype), nbytes);
    t->offset = (size_t)begin;
    return 0;
}

/* Reads __metadata__: an object mapping strings to strings. */
static int st_parse_metadata(const char *label, const kiln_json *v, kiln_safetensors *st,
                             kiln_error *err) {
    if (v->type != KILN_JSON_OBJECT) {
        kiln_error_set(err, "%s: __metadata__ must be an object of string to string", label);
        return -1;
    }
    st->meta = calloc(v->count ? v->count : 1, sizeof *st->meta);
    if (!st->meta) {
        kiln_error_set(err, "%s: out of memory", label);
        return -1;
    }
    for (size_t i = 0; i < v->count; i++) {
        if (v->items[i].type != KILN_JSON_STRING) {
            char kb[NAME_SHOW];
            kiln_error_set(err, "%s: __metadata__ value for key '%s' must be a string", label,
                           kiln_printable(kb, sizeof kb, v->keys[i]));
            return -1;
        }
        kiln_st_meta *m = &st->meta[st->num_meta];
        m->key = strdup(v->keys[i]);
        m->value = strdup(v->items[i].str);
        st->num_meta++;
        if (!m->key || !m->value) {
            kiln_error_set(err, "%s: out of memory", label);
            return -1;
        }
    }
    return 0;
}

/* qsort comparator: tensors by (offset, end). */
static int cmp_tensor_offset(const void *a, const void *b) {
    const kiln_st_tensor *x = *(kiln_st_tensor *const *)a, *y = *(kiln_st_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

/* qsort comparator: tensors by name. */
static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(kiln_st_tensor *const *)a)->name, (*(kiln_st_tensor *const *)b)->name);
}

/* Checks that the non-empty tensors tile the data section exactly. */
static int st_check_coverage(const char *label, kiln_safetensors *st, kiln_error *err) {
    char na[NAME_SHOW], nb[NAME_SHOW];
    kiln_st_tensor **order = st->by_name; /* reused as scratch, re-sorted by name later */
    for (size_t i = 0; i < st->num_tensors; i++) order[i] = &st->tensors[i];
    qsort(order, st->num_tensors, sizeof *order, cmp_tensor_offset);
    size_t pos = 0;
    const kiln_st_tensor *prev = NULL;
    for (size_t i = 0; i < st->num_tensors; i++) {
        const kiln_st_tensor *t = order[i];
        if (t->nbytes == 0) continue; /* empty tensors occupy no bytes */
        if (t->offset < pos) {
            kiln_error_set(err, "%s: tensors '%s' [%zu, %zu] and '%s' [%zu, %zu] overlap", label,
                           kiln_printable(na, sizeof na, prev->name), prev->offset,
                           prev->offset + prev->nbytes, kiln_printable(nb, sizeof nb, t->name),
                           t->offset, t->offset + t->nbytes);
            return -1;
        }
        if (t->offset > pos) {
            kiln_error_set(err,
                           "%s: gap in the data section: bytes [%zu, %zu) before tensor '%s' "
                           "belong to no tensor",
                           label, pos, t->offset, kiln_printable(nb, sizeof nb, t->name));
            return -1;
        }
        pos = t->offset + t->nbytes;
        prev = t;
    }
    if (pos != st->data_len) {
        kiln_error_set(err,
                       "%s: %zu trailing bytes after the last tensor (the data section has %zu "
                       "bytes, tensors cover %zu)",
                       label, st->data_len - pos, st->data_len, pos);
        return -1;
    }
    return 0;
}

KILN_RT_API int kiln_st_parse(const uint8_t *bytes, size_t size, const char *label, kiln_safetensors *st,
                  kiln_error *err) {
    memset(st, 0, sizeof *st);
    if (size < 8) {
        kiln_error_set(err,
                       "%s: file is too short to be safetensors (%zu bytes; at least 8 needed)",
                       label, size);
        return -1;
    }
    uint64_t n = load_le64(bytes);
    if (n > size - 8) {
        kiln_error_set(err, "%s: header length %" PRIu64 " exceeds file size %zu", label, n,
                       size);
        return -1;
    }
    if (n > KILN_ST_MAX_HEADER) {
        kiln_error_set(err, "%s: header length %" PRIu64 " exceeds the limit of %u bytes", label,
                       n, KILN_ST_MAX_HEADER);
        return -1;
    }
    const uint8_t *hdr = bytes + 8;
    size_t hlen = (size_t)n;
    size_t bad = kiln_utf8_check(hdr, hlen);
    if (bad < hlen) {
        kiln_error_set(err, "%s: header is not valid UTF-8 (byte 0x%02x at header offset %zu)",
                       label, hdr[bad], bad);
        return -1;
    }
    kiln_json root;
    size_t end;
    kiln_error jerr;
    if (kiln_json_parse((const char *)hdr, hlen, &root, &end, &jerr)) {
        kiln_error_set(err, "%s: header is not valid JSON: %s", label, jerr.msg);
        return -1;
    }
    int rc = -1;
    for (size_t i = end; i < hlen; i++) {
        if (hdr[i] != ' ') {
            kiln_error_set(err,
                           "%s: unexpected trailing data after the header JSON at header offset "
                           "%zu (only space padding is allowed)",
                           label, i);
            goto done;
        }
    }
    if (root.type != KILN_JSON_OBJECT) {
        kiln_error_set(err, "%s: header is not a JSON object", label);
        goto done;
    }
    st->label = strdup(label);
    st->header_len = hlen;
    st->data = bytes + 8 + hlen;
    st->data_len = size - 8 - hlen;
    st->tensors = calloc(root.count ? root.count : 1, sizeof *st->tensors);
    st->by_name = calloc(root.count ? root.count : 1, sizeof *st->by_name);
    if (!st->label || !st->tensors || !st->by_name) {
        kiln_error_set(err, "%s: out of memory", label);
        goto done;
    }
    for (size_t i = 0; i < root.count; i++) {
        const char *key = root.keys[i];
        if (strcmp(key, "__metadata__") == 0) {
            if (st_parse_metadata(label, &root.items[i], st, err)) goto done;
            continue;
        }
        kiln_st_tensor *t = &st->tensors[st->num_tensors];
        if (st_parse_entry(label, key, &root.items[i], st->data_len, t, err)) goto done;
        t->name = strdup(key);
        if (!t->name) {
            kiln_error_set(err, "%s: out of memory", label);
            goto done;
        }
        st->num_tensors++;
    }
    if (st_check_coverage(label, st, err)) goto done;
    for (size_t i = 0; i < st->num_tensors; i++) {
        st->tensors[i].data = st->data + st->tensors[i].offset;
        st->by_name[i] = &st->tensors[i];
    }
    qsort(st->by_name, st->num_tensors, sizeof *st->by_name, cmp_tensor_name);
    rc = 0;
done:
    kiln_json_free(&root);
    if (rc) kiln_st_close(st);
    return rc;
}

/* Opens path for reading, describing failures as one-liners. */
static int open_regular(const char *path, int *fd_out, off_t *size_out, kiln_error *err) {
    int fd = open(path, O_RDONLY | O_NONBLOCK); /* O_NONBLOCK: never hang on a FIFO */
    if (fd < 0) {
        if (errno == ENOENT) kiln_error_set(err, "no such file '%s'", path);
        else kiln_error_set(err, "cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        kiln_error_set(err, "cannot stat '%s': %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (S_ISDIR(sb.st_mode)) {
        kiln_error_set(err, "'%s' is a directory, not a file", path);
        close(fd);
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        kiln_error_set(err, "'%s' is not a regular file", path);
        close(fd);
        return -1;
    }
    *fd_out = fd;
    *size_out = sb.st_size;
    return 0;
}

KILN_RT_API int kiln_st_open(const char *path, kiln_safetensors *st, kiln_error *err) {
    memset(st, 0, sizeof *st);
    int fd;
    off_t fsize;
    if (open_regular(path, &fd, &fsize, err)) return -1;
    if ((uint64_t)fsize > SIZE_MAX) {
        kiln_error_set(err, "%s: file is too large to map", path);
        close(fd);
        return -1;
    }
    size_t size = (size_t)fsize;
    if (size < 8) { /* nothing to map; let the parser produce the message */
        close(fd);
        return kiln_st_parse((const uint8_t *)"", size, path, st, err);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) {
        kiln_error_set(err, "cannot map '%s': %s", path, strerror(map_errno));
        return -1;
    }
    if (kiln_st_parse((const uint8_t *)map, size, path, st, err)) {
        munmap(map, size);
        return -1;
    }
    st->map = map;
    st->map_len = size;
    return 0;
}

KILN_RT_API void kiln_st_close(kiln_safetensors *st) {
    if (!st) return;
    if (st->tensors)
        for (size_t i = 0; i < st->num_tensors; i++) free(st->tensors[i].name);
    if (st->meta)
        for (size_t i = 0; i < st->num_meta; i++) {
            free(st->meta[i].key);
            free(st->meta[i].value);
        }
    free(st->tensors);
    free(st->meta);
    free(st->by_name);
    free(st->label);
    if (st->map) munmap(st->map, st->map_len);
    memset(st, 0, sizeof *st);
}

KILN_RT_API const kiln_st_tensor *kiln_st_find(const kiln_safetensors *st, const char *name) {
    size_t lo = 0, hi = st->num_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->by_name[mid]->name, name);
        if (c == 0) return st->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

KILN_RT_API const char *kiln_st_meta_get(const kiln_safetensors *st, const char *key) {
    for (size_t i = 0; i < st->num_meta; i++)
        if (strcmp(st->meta[i].key, key) == 0) return st->meta[i].value;
    return NULL;
}

/* qsort comparator for spec pointers by name. */
static int cmp_spec_name(const void *a, const void *b) {
    return strcmp((*(const kiln_tensor_spec *const *)a)->name,
                  (*(const kiln_tensor_spec *const *)b)->name);
}

/* True if the spec table (sorted by name) contains name. */
static int spec_has(const kiln_tensor_spec **sorted, size_t n, const char *name) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(sorted[mid]->name, name);
        if (c == 0) return 1;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

KILN_RT_API int kiln_st_load_f32(const kiln_safetensors *st, const kiln_tensor_spec *specs, size_t num_specs,
                     float *dst, size_t dst_floats, kiln_error *err) {
    return kiln_st_load_f32_ignoring(st, specs, num_specs, dst, dst_floats, NULL, err);
}

/* memcpy from a tensor's data in 8 MiB pieces; when the data lies in kiln_st_open's file mapping, each piece's
 * whole pages are handed back to the kernel once copied (they are read again from the file if touched again), so
 * loading W floats peaks near W floats of memory rather than W plus the whole file. */
static void copy_out_of_mapping(const kiln_safetensors *st, void *dst, const uint8_t *src, size_t n) {
    const size_t piece = (size_t)8 << 20;
#ifdef MADV_DONTNEED
    const long ps = sysconf(_SC_PAGESIZE);
    const uintptr_t page = ps > 0 ? (uintptr_t)ps : 4096;
    uintptr_t released = ((uintptr_t)src + page - 1) & ~(page - 1); /* first whole page of src */
#endif
    for (size_t off = 0; off < n; off += piece) {
        const size_t len = n - off < piece ? n - off : piece;
        memcpy((uint8_t *)dst + off, src + off, len);
#ifdef MADV_DONTNEED
        const uintptr_t end = ((uintptr_t)src + off + len) & ~(page - 1);
        if (st->map && end > released) {
            (void)madvise((void *)released, end - released, MADV_DONTNEED); /* a hint: failure changes nothing */
            released = end;
        }
#else
        (void)st;
#endif
    }
}

KILN_RT_API int kiln_st_load_f32_ignoring(const kiln_safetensors *st, const kiln_tensor_spec *specs,
                              size_t num_specs, float *dst, size_t dst_floats,
                              const char *ignore_prefix, kiln_error *err) {
    const char *label = st->label ? st->label : "safetensors";
    char nb[NAME_SHOW], s1[256], s2[256];
    /* 1. every expected tensor is present with the right dtype and shape */
    for (size_t i = 0; i < num_specs; i++) {
        const kiln_tensor_spec *sp = &specs[i];
        const kiln_st_tensor *t = kiln_st_find(st, sp->name);
        kiln_printable(nb, sizeof nb, sp->name);
        if (!t) {
            kiln_error_set(err, "%s: missing tensor '%s'", label, nb);
            return -1;
        }
        if (t->dtype != KILN_DT_F32) {
            kiln_error_set(err, "%s: tensor '%s' has dtype %s, expected F32", label, nb,
                           kiln_st_dtype_name(t->dtype));
            return -1;
        }
        int same = t->ndim == sp->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == sp->shape[d];
        if (!same) {
            kiln_error_set(err, "%s: tensor '%s' has shape %s, expected %s", label, nb,
                           fmt_shape(s1, sizeof s1, t->ndim, t->shape),
                           fmt_shape(s2, sizeof s2, sp->ndim, sp->shape));
            return -1;
        }
        size_t end;
        if (kiln_size_add(sp->offset, t->numel, &end) || end > dst_floats) {
            kiln_error_set(err, "%s: tensor '%s' does not fit the parameter block (%zu floats)",
                           label, nb, dst_floats);
            return -1;
        }
    }
    /* 2. nothing unexpected */
    const kiln_tensor_spec **sorted = malloc((num_specs ? num_specs : 1) * sizeof *sorted);
    if (!sorted) {
        kiln_error_set(err, "%s: out of memory", label);
        return -1;
    }
    for (size_t i = 0; i < num_specs; i++) sorted[i] = &specs[i];
    qsort(sorted, num_specs, sizeof *sorted, cmp_spec_name);
    size_t plen = ignore_prefix ? strlen(ignore_prefix) : 0;
    for (size_t i = 0; i < st->num_tensors; i++) {
        if (ignore_prefix && strncmp(st->tensors[i].name, ignore_prefix, plen) == 0) continue;
        if (!spec_has(sorted, num_specs, st->tensors[i].name)) {
            kiln_error_set(err, "%s: unexpected tensor '%s'", label,
                           kiln_printable(nb, sizeof nb, st->tensors[i].name));
            free(sorted);
            return -1;
        }
    }
    free(sorted);
    /* 3. copy (memcpy: the source may be misaligned) */
    for (size_t i = 0; i < num_specs; i++) {
        const kiln_st_tensor *t = kiln_st_find(st, specs[i].name);
        if (t->nbytes) copy_out_of_mapping(st, dst + specs[i].offset, t->data, t->nbytes);
    }
    return 0;
}

KILN_RT_API int kiln_glob_match(const char *pattern, const char *s) {
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*pattern == '*') { star = pattern++; resume = s; }
        else if (*pattern == *s) { pattern++; s++; }
        else if (star) { pattern = star + 1; s = ++resume; }
        else return 0;
    }
    while (*pattern == '*') pattern++;
    return *pattern == 0;
}

/* One element of a float tensor as a float (IEEE half and bfloat16 widened exactly). */
static float st_float_at(const kiln_st_tensor *t, size_t i) {
    const uint8_t *p = t->data + i * kiln_st_dtype_size(t->dtype);
    switch (t->dtype) {
    case KILN_DT_F32: { float v; memcpy(&v, p, 4); return v; }
    case KILN_DT_F64: { double v; memcpy(&v, p, 8); return (float)v; }
    case KILN_DT_BF16: {
        uint16_t h; memcpy(&h, p, 2);
        uint32_t u = (uint32_t)h << 16; float v; memcpy(&v, &u, 4); return v;
    }
    case KILN_DT_F16: {
        uint16_t h; memcpy(&h, p, 2);
        const uint32_t sign = (uint32_t)(h >> 15) << 31, ex = (h >> 10) & 31, man = h & 1023;
        uint32_t u;
        if (ex == 31) u = sign | 0x7f800000u | (man << 13);          /* inf, nan */
        else if (ex) u = sign | ((ex + 112) << 23) | (man << 13);     /* normal */
        else if (!man) u = sign;                                       /* zero */
        else {                                                         /* subnormal: man * 2^-24 */
            float v = (float)man * 5.9604644775390625e-8f;
            return sign ? -v : v;
        }
        float v; memcpy(&v, &u, 4); return v;
    }
    default: return 0;
    }
}

/* Whether two shapes are equal once their axes of size 1 are dropped. */
static int same_but_unit_axes(int na, const int64_t *a, int nb, const int64_t *b) {
    int i = 0, j = 0;
    for (;;) {
        while (i < na && a[i] == 1) i++;
        while (j < nb && b[j] == 1) j++;
        if (i == na || j == nb) return i == na && j == nb;
        if (a[i++] != b[j++]) return 0;
    }
}

/* "[768, 2304]", with the sliced axis written as at least its end: "[768, >=2304]". */
static const char *fmt_wanted(char *dst, size_t cap, int ndim, const int64_t *shape, int axis) {
    size_t n = 0;
    n += (size_t)snprintf(dst + n, n < cap ? cap - n : 0, "[");
    for (int d = 0; d < ndim; d++)
        n += (size_t)snprintf(dst + n, n < cap ? cap - n : 0, "%s%s%lld", d ? ", " : "", d == axis ? ">=" : "", (long long)shape[d]);
    snprintf(dst + n, n < cap ? cap - n : 0, "]");
    return dst;
}

KILN_RT_API int kiln_st_load_mapped(const kiln_safetensors *st, const kiln_tensor_spec *specs,
                        const kiln_tensor_source *sources, size_t num_specs, const char *const *ignore,
                        size_t num_ignore, float *dst, size_t dst_floats, kiln_error *err) {
    const char *label = st->label ? st->label : "safetensors";
    char nb[NAME_SHOW], mb[NAME_SHOW], s1[256], s2[256];
    /* 1. every source tensor is present, a float, and of a shape the parameter can be cut from */
    for (size_t i = 0; i < num_specs; i++) {
        const kiln_tensor_spec *sp = &specs[i];
        const kiln_tensor_source *src = &sources[i];
        const kiln_st_tensor *t = kiln_st_find(st, src->tensor);
        kiln_printable(nb, sizeof nb, src->tensor);
        kiln_printable(mb, sizeof mb, sp->name);
        if (!t) {
            kiln_error_set(err, "%s: missing tensor '%s' (the model's %s)", label, nb, mb);
            return -1;
        }
        if (t->dtype != KILN_DT_F32 && t->dtype != KILN_DT_F64 && t->dtype != KILN_DT_F16 && t->dtype != KILN_DT_BF16) {
            kiln_error_set(err, "%s: tensor '%s' (the model's %s) has dtype %s, expected a float (F32, F16, BF16 or F64)",
                           label, nb, mb, kiln_st_dtype_name(t->dtype));
            return -1;
        }
        /* the file tensor's expected shape: the parameter's, transposed back, with the slice's axis longer */
        int64_t want[KILN_MAX_RANK];
        for (int d = 0; d < sp->ndim; d++) want[d] = sp->shape[d];
        if (src->transposed) { want[0] = sp->shape[1]; want[1] = sp->shape[0]; }
        int ok = t->ndim == sp->ndim && (!src->transposed || sp->ndim == 2) && src->slice_axis < sp->ndim;
        for (int d = 0; ok && d < t->ndim; d++) {
            if (d == src->slice_axis) ok = src->slice_start >= 0 && t->shape[d] >= src->slice_start + want[d];
            else ok = t->shape[d] == want[d];
        }
        /* a whole tensor may differ by axes of size 1 (Marian's final_logits_bias [1, V] for a [V] bias):
         * the same elements in the same order */
        if (!ok && src->slice_axis < 0 && !src->transposed) ok = same_but_unit_axes(t->ndim, t->shape, sp->ndim, sp->shape);
        if (!ok) {
            if (src->slice_axis >= 0 && src->slice_axis < sp->ndim) want[src->slice_axis] += src->slice_start;
            char s3[256];
            kiln_error_set(err, "%s: tensor '%s' (the model's %s %s) has shape %s, expected %s", label, nb, mb,
                           fmt_shape(s2, sizeof s2, sp->ndim, sp->shape), fmt_shape(s1, sizeof s1, t->ndim, t->shape),
                           fmt_wanted(s3, sizeof s3, sp->ndim, want, src->slice_axis));
            return -1;
        }
        size_t numel = 1, end;
        for (int d = 0; d < sp->ndim; d++) numel *= (size_t)sp->shape[d];
        if (kiln_size_add(sp->offset, numel, &end) || end > dst_floats) {
            kiln_error_set(err, "%s: the model's %s does not fit the parameter block (%zu floats)", label, mb, dst_floats);
            return -1;
        }
    }
    /* 2. nothing unexpected */
    for (size_t i = 0; i < st->num_tensors; i++) {
        const char *name = st->tensors[i].name;
        int known = 0;
        for (size_t k = 0; !known && k < num_ignore; k++) known = kiln_glob_match(ignore[k], name);
        for (size_t k = 0; !known && k < num_specs; k++) known = strcmp(sources[k].tensor, name) == 0;
        if (!known) {
            kiln_error_set(err, "%s: unexpected tensor '%s': the model reads no such tensor (its weights section can ignore it)",
                           label, kiln_printable(nb, sizeof nb, name));
            return -1;
        }
    }
    /* 3. copy, cutting and transposing: destination element (i0, i1, ...) of the parameter reads the
     * file's element at the same index (swapped when transposed), shifted by the slice's start */
    for (size_t i = 0; i < num_specs; i++) {
        const kiln_tensor_spec *sp = &specs[i];
        const kiln_tensor_source *src = &sources[i];
        const kiln_st_tensor *t = kiln_st_find(st, src->tensor);
        size_t numel = 1;
        for (int d = 0; d < sp->ndim; d++) numel *= (size_t)sp->shape[d];
        int64_t stride[KILN_MAX_RANK];           /* of the file's tensor */
        int64_t acc = 1;
        for (int d = t->ndim - 1; d >= 0; d--) { stride[d] = acc; acc *= t->shape[d]; }
        int64_t idx[KILN_MAX_RANK] = {0};        /* in the parameter */
        float *out = dst + sp->offset;
        if (t->ndim != sp->ndim) {                /* the same elements, with other axes of size 1 */
            for (size_t e = 0; e < numel; e++) out[e] = st_float_at(t, e);
            continue;
        }
        for (size_t e = 0; e < numel; e++) {
            int64_t at = 0;
            for (int d = 0; d < sp->ndim; d++) {
                const int fd = src->transposed ? 1 - d : d;   /* the file's axis of the parameter's axis d */
                at += (idx[d] + (fd == src->slice_axis ? src->slice_start : 0)) * stride[fd];
            }
            out[e] = st_float_at(t, (size_t)at);
            for (int d = sp->ndim - 1; d >= 0; d--) {
                if (++idx[d] < sp->shape[d]) break;
                idx[d] = 0;
            }
        }
    }
    return 0;
}

/* ========================================================================= */
/* Atomic file replacement */

KILN_RT_API int kiln_atomic_open(kiln_atomic_file *af, const char *path, kiln_error *err) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path);
    af->path = strdup(path);
    af->tmp_path = malloc(n + 16);
    if (!af->path || !af->tmp_path) {
        kiln_error_set(err, "out of memory");
        goto fail;
    }
    snprintf(af->tmp_path, n + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(af->tmp_path);
    if (fd < 0) {
        kiln_error_set(err, "cannot create a temporary file for '%s': %s", path, strerror(errno));
        goto fail;
    }
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0) { /* mkstemp uses 0600; use the normal mode */
        kiln_error_set(err, "cannot set permissions of '%s': %s", af->tmp_path, strerror(errno));
        close(fd);
        unlink(af->tmp_path);
        goto fail;
    }
    af->fp = fdopen(fd, "wb");
    if (!af->fp) {
        kiln_error_set(err, "cannot open '%s': %s", af->tmp_path, strerror(errno));
        close(fd);
        unlink(af->tmp_path);
        goto fail;
    }
    return 0;
fail:
    free(af->path);
    free(af->tmp_path);
    memset(af, 0, sizeof *af);
    return -1;
}

KILN_RT_API int kiln_atomic_write(kiln_atomic_file *af, const void *buf, size_t n, kiln_error *err) {
    if (n && fwrite(buf, 1, n, af->fp) != n) {
        kiln_error_set(err, "error writing '%s': %s", af->path, strerror(errno));
        return -1;
    }
    return 0;
}

/* fsyncs the directory containing path so that a rename is durable. */
static int fsync_parent_dir(const char *path, kiln_error *err) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) {
        kiln_error_set(err, "out of memory");
        return -1;
    }
    int fd = open(dir, O_RDONLY);
    int rc = 0;
    if (fd >= 0) {
        /* some file systems cannot fsync directories (EINVAL); that is fine */
        if (fsync(fd) != 0 && errno != EINVAL && errno != EBADF) {
            kiln_error_set(err, "cannot fsync directory '%s': %s", dir, strerror(errno));
            rc = -1;
        }
        close(fd);
    }
    free(dir);
    return rc;
}

KILN_RT_API int kiln_atomic_commit(kiln_atomic_file *af, kiln_error *err) {
    int rc = -1;
    if (fflush(af->fp) != 0 || ferror(af->fp)) {
        kiln_error_set(err, "error writing '%s': %s", af->path, strerror(errno));
        goto fail;
    }
    if (fsync(fileno(af->fp)) != 0) {
        kiln_error_set(err, "cannot fsync '%s': %s", af->tmp_path, strerror(errno));
        goto fail;
    }
    FILE *fp = af->fp;
    af->fp = NULL;
    if (fclose(fp) != 0) {
        kiln_error_set(err, "error closing '%s': %s", af->tmp_path, strerror(errno));
        goto fail;
    }
    if (rename(af->tmp_path, af->path) != 0) {
        kiln_error_set(err, "cannot write '%s': %s", af->path, strerror(errno));
        goto fail;
    }
    rc = fsync_parent_dir(af->path, err);
    free(af->path);
    free(af->tmp_path);
    memset(af, 0, sizeof *af);
    return rc;
fail:
    kiln_atomic_abort(af);
    return rc;
}

KILN_RT_API void kiln_atomic_abort(kiln_atomic_file *af) {
    if (af->fp) fclose(af->fp);
    if (af->tmp_path) unlink(af->tmp_path);
    free(af->path);
    free(af->tmp_path);
    memset(af, 0, sizeof *af);
}

/* ========================================================================= */
/* Safetensors writer */

/* Appends s as a JSON string literal (s must be valid UTF-8). */
static void sb_put_json_string(sbuf *b, const char *s) {
    sb_putc(b, '"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"') sb_puts(b, "\\\"");
        else if (c == '\\') sb_puts(b, "\\\\");
        else if (c < 0x20) sb_printf(b, "\\u%04x", c);
        else sb_putc(b, (char)c);
    }
    sb_putc(b, '"');
}

/* Checks that a name or metadata string can be written as JSON. */
static int check_writable_string(const char *what, const char *s, kiln_error *err) {
    size_t n = strlen(s);
    if (kiln_utf8_check((const uint8_t *)s, n) != n) {
        char nb[NAME_SHOW];
        kiln_error_set(err, "%s '%s' is not valid UTF-8", what, kiln_printable(nb, sizeof nb, s));
        return -1;
    }
    return 0;
}

KILN_RT_API int kiln_st_write(const char *path, const kiln_st_entry *tensors, size_t num_tensors,
                  const char *const *meta_keys, const char *const *meta_values, size_t num_meta,
                  kiln_error *err) {
    char nb[NAME_SHOW];
    sbuf h = {0};
    size_t *nbytes = calloc(num_tensors ? num_tensors : 1, sizeof *nbytes);
    const char **names = calloc(num_tensors ? num_tensors : 1, sizeof *names);
    int rc = -1;
    if (!nbytes || !names) {
        kiln_error_set(err, "out of memory");
        goto done;
    }
    /* validate the entries */
    for (size_t i = 0; i < num_tensors; i++) {
        const kiln_st_entry *e = &tensors[i];
        kiln_printable(nb, sizeof nb, e->name);
        if (check_writable_string("tensor name", e->name, err)) goto done;
        if (strcmp(e->name, "__metadata__") == 0) {
            kiln_error_set(err, "a tensor cannot be called '__metadata__'");
            goto done;
        }
        if ((unsigned)e->dtype >= KILN_DT_COUNT || e->ndim < 0 || e->ndim > KILN_MAX_RANK) {
            kiln_error_set(err, "tensor '%s': invalid dtype or rank", nb);
            goto done;
        }
        size_t numel = 1;
        for (int d = 0; d < e->ndim; d++) {
            if (e->shape[d] < 0 || (uint64_t)e->shape[d] > SIZE_MAX ||
                kiln_size_mul(numel, (size_t)e->shape[d], &numel)) {
                kiln_error_set(err, "tensor '%s': invalid shape", nb);
                goto done;
            }
        }
        if (kiln_size_mul(numel, kiln_st_dtype_size(e->dtype), &nbytes[i])) {
            kiln_error_set(err, "tensor '%s': size overflow", nb);
            goto done;
        }
        if (nbytes[i] && !e->data) {
            kiln_error_set(err, "tensor '%s': no data", nb);
            goto done;
        }
        names[i] = e->name;
    }
    qsort(names, num_tensors, sizeof *names, cmp_str_ptr);
    for (size_t i = 1; i < num_tensors; i++) {
        if (strcmp(names[i - 1], names[i]) == 0) {
            kiln_error_set(err, "duplicate tensor name '%s'",
                           kiln_printable(nb, sizeof nb, names[i]));
            goto done;
        }
    }
    /* header JSON: metadata first, then tensors in offset order */
    sb_putc(&h, '{');
    if (num_meta) {
        sb_puts(&h, "\"__metadata__\":{");
        for (size_t i = 0; i < num_meta; i++) {
            if (check_writable_string("metadata key", meta_keys[i], err) ||
                check_writable_string("metadata value", meta_values[i], err))
                goto done;
            for (size_t j = 0; j < i; j++) {
                if (strcmp(meta_keys[i], meta_keys[j]) == 0) {
                    kiln_error_set(err, "duplicate metadata key '%s'",
                                   kiln_printable(nb, sizeof nb, meta_keys[i]));
                    goto done;
                }
            }
            if (i) sb_putc(&h, ',');
            sb_put_json_string(&h, meta_keys[i]);
            sb_putc(&h, ':');
            sb_put_json_string(&h, meta_values[i]);
        }
        sb_putc(&h, '}');
    }
    size_t offset = 0;
    for (size_t i = 0; i < num_tensors; i++) {
        const kiln_st_entry *e = &tensors[i];
        if (num_meta || i) sb_putc(&h, ',');
        sb_put_json_string(&h, e->name);
        sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", kiln_st_dtype_name(e->dtype));
        for (int d = 0; d < e->ndim; d++) sb_printf(&h, "%s%" PRId64, d ? "," : "", e->shape[d]);
        sb_printf(&h, "],\"data_offsets\":[%zu,", offset);
        if (kiln_size_add(offset, nbytes[i], &offset)) {
            kiln_error_set(err, "total tensor size overflows");
            goto done;
        }
        sb_printf(&h, "%zu]}", offset);
    }
    sb_putc(&h, '}');
    while ((8 + h.len) % 8 != 0) sb_putc(&h, ' ');
    if (h.oom) {
        kiln_error_set(err, "out of memory building the safetensors header");
        goto done;
    }
    /* write */
    kiln_atomic_file af;
    if (kiln_atomic_open(&af, path, err)) goto done;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    if (kiln_atomic_write(&af, len8, 8, err) || kiln_atomic_write(&af, h.p, h.len, err)) {
        kiln_atomic_abort(&af);
        goto done;
    }
    for (size_t i = 0; i < num_tensors; i++) {
        if (kiln_atomic_write(&af, tensors[i].data, nbytes[i], err)) {
            kiln_atomic_abort(&af);
            goto done;
        }
    }
    rc = kiln_atomic_commit(&af, err);
done:
    free(h.p);
    free(nbytes);
    free(names);
    return rc;
}

/* ========================================================================= */
/* NumPy .npy */

static const char NPY_MAGIC[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

/* Cursor over the Python-literal header dict of a .npy file. */
typedef struct {
    const char *s;
    size_t len, pos;
} npy_cur;

static void npy_ws(npy_cur *c) {
    while (c->pos < c->len && (c->s[c->pos] == ' ' || c->s[c->pos] == '\n' ||
                               c->s[c->pos] == '\t' || c->s[c->pos] == '\r'))
        c->pos++;
}

/* Parses a quoted Python string (no escapes) into buf. */
static int npy_string(npy_cur *c, char *buf, size_t cap) {
    if (c->pos >= c->len || (c->s[c->pos] != '\'' && c->s[c->pos] != '"')) return -1;
    char q = c->s[c->pos++];
    size_t n = 0;
    while (c->pos < c->len && c->s[c->pos] != q) {
        if (c->s[c->pos] == '\\' || n + 1 >= cap) return -1;
        buf[n++] = c->s[c->pos++];
    }
    if (c->pos >= c->len) return -1;
    c->pos++;
    buf[n] = '\0';
    return 0;
}

/* Matches a literal word. */
static int npy_word(npy_cur *c, const char *w) {
    size_t n = strlen(w);
    if (c->len - c->pos < n || memcmp(c->s + c->pos, w, n) != 0) return -1;
    c->pos += n;
    return 0;
}

/* Parses a shape tuple "(2, 3)", "(5,)" or "()"; returns 0, -1 syntax, -2 rank/range. */
static int npy_shape(npy_cur *c, int *ndim, int64_t *shape) {
    if (c->pos >= c->len || c->s[c->pos] != '(') return -1;
    c->pos++;
    int n = 0, trailing_comma = 0;
    for (;;) {
        npy_ws(c);
        if (c->pos < c->len && c->s[c->pos] == ')') {
            c->pos++;
            break;
        }
        if (c->pos >= c->len || c->s[c->pos] < '0' || c->s[c->pos] > '9') return -1;
        uint64_t v = 0;
        int big = 0;
        while (c->pos < c->len && c->s[c->pos] >= '0' && c->s[c->pos] <= '9') {
            uint64_t d = (uint64_t)(c->s[c->pos++] - '0');
            if (v > ((uint64_t)INT64_MAX - d) / 10) big = 1;
            else v = v * 10 + d;
        }
        if (big || n >= KILN_MAX_RANK) return -2;
        shape[n++] = (int64_t)v;
        npy_ws(c);
        trailing_comma = 0;
        if (c->pos < c->len && c->s[c->pos] == ',') {
            c->pos++;
            trailing_comma = 1;
            continue;
        }
        if (c->pos < c->len && c->s[c->pos] == ')') {
            c->pos++;
            break;
        }
        return -1;
    }
    if (n == 1 && !trailing_comma) return -1; /* "(5)" is not a tuple */
    *ndim = n;
    return 0;
}

static int npy_write(const char *path, const char *descr, size_t item, const void *data, int ndim,
                     const int64_t *shape, kiln_error *err);

/* Parses the .npy header of b[0, size): its dtype descr, shape (rank and dims in *ndim, shape), and where
 * the data starts; checks the version, the header's bytes and keys, and that the order is C. */
static int npy_header(const uint8_t *b, size_t size, const char *label, char descr[32], int *ndim,
                      int64_t shape[KILN_MAX_RANK], size_t *data_start, kiln_error *err) {
    *ndim = 0;
    if (size < 10 || memcmp(b, NPY_MAGIC, 6) != 0) {
        kiln_error_set(err, "%s: not a .npy file (missing the \\x93NUMPY magic)", label);
        return -1;
    }
    size_t hstart, hlen;
    if (b[6] == 1 && b[7] == 0) {
        hstart = 10;
        hlen = load_le16(b + 8);
    } else if (b[6] == 2 && b[7] == 0) {
        if (size < 12) {
            kiln_error_set(err, "%s: .npy file is truncated (%zu bytes)", label, size);
            return -1;
        }
        hstart = 12;
        hlen = load_le32(b + 8);
    } else {
        kiln_error_set(err, "%s: unsupported .npy format version %d.%d (expected 1.0 or 2.0)",
                       label, b[6], b[7]);
        return -1;
    }
    if (hlen > size - hstart) {
        kiln_error_set(err, "%s: .npy header length %zu exceeds file size %zu", label, hlen, size);
        return -1;
    }
    npy_cur c = {(const char *)b + hstart, hlen, 0};
    for (size_t i = 0; i < hlen; i++) {
        unsigned char ch = (unsigned char)c.s[i];
        if ((ch < 0x20 && ch != '\n' && ch != '\t' && ch != '\r') || ch >= 0x7f) {
            kiln_error_set(err, "%s: .npy header contains byte 0x%02x", label, ch);
            return -1;
        }
    }
    descr[0] = '\0';
    int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0;
    npy_ws(&c);
    if (c.pos >= c.len || c.s[c.pos] != '{') goto syntax;
    c.pos++;
    for (;;) {
        char key[32];
        npy_ws(&c);
        if (c.pos < c.len && c.s[c.pos] == '}') {
            c.pos++;
            break;
        }
        if (npy_string(&c, key, sizeof key)) goto syntax;
        npy_ws(&c);
        if (c.pos >= c.len || c.s[c.pos] != ':') goto syntax;
        c.pos++;
        npy_ws(&c);
        if (strcmp(key, "descr") == 0 && !have_descr) {
            if (npy_string(&c, descr, 32)) goto syntax;
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_fortran) {
            if (npy_word(&c, "False") == 0) fortran = 0;
            else if (npy_word(&c, "True") == 0) fortran = 1;
            else goto syntax;
            have_fortran = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            int rc = npy_shape(&c, ndim, shape);
            if (rc == -2) {
                kiln_error_set(err, "%s: .npy shape has more than %d dimensions or a huge one",
                               label, KILN_MAX_RANK);
                return -1;
            }
            if (rc) goto syntax;
            have_shape = 1;
        } else {
            char kb[NAME_SHOW];
            kiln_error_set(err, "%s: unexpected or repeated key '%s' in the .npy header", label,
                           kiln_printable(kb, sizeof kb, key));
            return -1;
        }
        npy_ws(&c);
        if (c.pos < c.len && c.s[c.pos] == ',') {
            c.pos++;
            continue;
        }
        if (c.pos < c.len && c.s[c.pos] == '}') {
            c.pos++;
            break;
        }
        goto syntax;
    }
    npy_ws(&c);
    if (c.pos != c.len) goto syntax;
    if (!have_descr || !have_fortran || !have_shape) {
        kiln_error_set(err, "%s: .npy header is missing '%s'", label,
                       !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
        return -1;
    }
    if (fortran) {
        kiln_error_set(err, "%s: Fortran-order .npy arrays are not supported", label);
        return -1;
    }
    *data_start = hstart + hlen;
    return 0;
syntax:
    kiln_error_set(err, "%s: malformed .npy header dict near header offset %zu", label, c.pos);
    return -1;
}

/* The elements of a shape, and their bytes at `item` bytes each (with the room for a widened copy). */
static int npy_sizes(const char *label, int ndim, const int64_t *shape, size_t item, size_t widen, size_t *numel,
                     size_t *nbytes, kiln_error *err) {
    char sb[256];
    size_t n = 1, w;
    for (int i = 0; i < ndim; i++) {
        if ((uint64_t)shape[i] > SIZE_MAX || kiln_size_mul(n, (size_t)shape[i], &n)) {
            kiln_error_set(err, "%s: .npy shape %s is too large", label, fmt_shape(sb, sizeof sb, ndim, shape));
            return -1;
        }
    }
    if (kiln_size_mul(n, item, nbytes) || kiln_size_mul(n, widen, &w)) {
        kiln_error_set(err, "%s: .npy shape %s is too large", label, fmt_shape(sb, sizeof sb, ndim, shape));
        return -1;
    }
    *numel = n;
    return 0;
}

/* Checks that the data after the header holds exactly nbytes. */
static int npy_data_size(const char *label, size_t size, size_t start, size_t nbytes, int ndim, const int64_t *shape,
                         kiln_error *err) {
    char sb[256];
    size_t avail = size - start;
    if (avail < nbytes) {
        kiln_error_set(err, "%s: .npy data is truncated (shape %s needs %zu bytes, found %zu)", label,
                       fmt_shape(sb, sizeof sb, ndim, shape), nbytes, avail);
        return -1;
    }
    if (avail > nbytes) {
        kiln_error_set(err, "%s: %zu unexpected trailing bytes after the .npy data", label, avail - nbytes);
        return -1;
    }
    return 0;
}

KILN_RT_API int kiln_npy_parse_ints(const uint8_t *b, size_t size, const char *label, kiln_npy_ints *out,
                        kiln_error *err) {
    memset(out, 0, sizeof *out);
    char descr[32], sb[256];
    size_t start, item, numel, nbytes;
    if (npy_header(b, size, label, descr, &out->ndim, out->shape, &start, err)) return -1;
    if (strcmp(descr, "<i4") == 0) item = 4;
    else if (strcmp(descr, "<i8") == 0) item = 8;
    else {
        kiln_error_set(err,
                       "%s: unsupported .npy dtype '%s' (expected int32 '<i4' or int64 '<i8')",
                       label, kiln_printable(sb, sizeof sb, descr));
        return -1;
    }
    if (npy_sizes(label, out->ndim, out->shape, item, 8, &numel, &nbytes, err)) return -1;
    if (npy_data_size(label, size, start, nbytes, out->ndim, out->shape, err)) return -1;
    out->numel = numel;
    out->data = malloc(numel ? numel * 8 : 1);
    if (!out->data) {
        kiln_error_set(err, "%s: out of memory reading %zu integers", label, numel);
        return -1;
    }
    const uint8_t *d = b + start;
    for (size_t i = 0; i < numel; i++) {
        if (item == 4) {
            int32_t v;
            memcpy(&v, d + 4 * i, 4);
            out->data[i] = v;
        } else {
            int64_t v;
            memcpy(&v, d + 8 * i, 8);
            out->data[i] = v;
        }
    }
    return 0;
}

KILN_RT_API int kiln_npy_parse(const uint8_t *b, size_t size, const char *label, kiln_npy_array *out, kiln_error *err) {
    memset(out, 0, sizeof *out);
    char descr[32], sb[256];
    size_t start, nbytes;
    if (npy_header(b, size, label, descr, &out->ndim, out->shape, &start, err)) return -1;
    static const char *const names[] = {"<f4", "<f8", "<i4", "<i8"};
    int kind = -1;
    for (int k = 0; k < 4; k++)
        if (strcmp(descr, names[k]) == 0) kind = k;
    if (kind < 0) {
        kiln_error_set(err, "%s: unsupported .npy dtype '%s' (expected float32 '<f4', float64 '<f8', int32 '<i4' or int64 '<i8')",
                       label, kiln_printable(sb, sizeof sb, descr));
        return -1;
    }
    out->dtype = (kiln_npy_dtype)kind;
    out->item = kind == 0 || kind == 2 ? 4 : 8;
    if (npy_sizes(label, out->ndim, out->shape, out->item, out->item, &out->numel, &nbytes, err)) return -1;
    if (npy_data_size(label, size, start, nbytes, out->ndim, out->shape, err)) return -1;
    out->data = malloc(nbytes ? nbytes : 1);
    if (!out->data) {
        kiln_error_set(err, "%s: out of memory reading %zu bytes", label, nbytes);
        return -1;
    }
    memcpy(out->data, b + start, nbytes);
    return 0;
}

KILN_RT_API int kiln_npy_read(const char *path, size_t max_bytes, kiln_npy_array *out, kiln_error *err) {
    uint8_t *bytes;
    size_t len;
    memset(out, 0, sizeof *out);
    if (kiln_read_file(path, max_bytes, &bytes, &len, err)) return -1;
    int rc = kiln_npy_parse(bytes, len, path, out, err);
    free(bytes);
    return rc;
}

KILN_RT_API void kiln_npy_free(kiln_npy_array *a) {
    free(a->data);
    memset(a, 0, sizeof *a);
}

KILN_RT_API int kiln_npy_write_i64(const char *path, const int64_t *data, int ndim, const int64_t *shape,
                       kiln_error *err) {
    return npy_write(path, "<i8", 8, data, ndim, shape, err);
}

KILN_RT_API int kiln_npy_write_f64(const char *path, const double *data, int ndim, const int64_t *shape,
                       kiln_error *err) {
    return npy_write(path, "<f8", 8, data, ndim, shape, err);
}

KILN_RT_API int kiln_npy_read_ints(const char *path, size_t max_bytes, kiln_npy_ints *out, kiln_error *err) {
    uint8_t *bytes;
    size_t len;
    memset(out, 0, sizeof *out);
    if (kiln_read_file(path, max_bytes, &bytes, &len, err)) return -1;
    int rc = kiln_npy_parse_ints(bytes, len, path, out, err);
    free(bytes);
    return rc;
}

KILN_RT_API void kiln_npy_free_ints(kiln_npy_ints *out) {
    free(out->data);
    memset(out, 0, sizeof *out);
}

/* Writes a C-order array with the given descr as .npy v1.0. */
static int npy_write(const char *path, const char *descr, size_t item, const void *data, int ndim,
                     const int64_t *shape, kiln_error *err) {
    if (ndim < 0 || ndim > KILN_MAX_RANK) {
        kiln_error_set(err, "%s: unsupported rank %d", path, ndim);
        return -1;
    }
    size_t numel = 1, nbytes;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (uint64_t)shape[i] > SIZE_MAX ||
            kiln_size_mul(numel, (size_t)shape[i], &numel)) {
            kiln_error_set(err, "%s: invalid array shape", path);
            return -1;
        }
    }
    if (kiln_size_mul(numel, item, &nbytes)) {
        kiln_error_set(err, "%s: array too large", path);
        return -1;
    }
    sbuf h = {0};
    sb_put(&h, NPY_MAGIC, 6);
    sb_put(&h, "\x01\x00\x00\x00", 4); /* version 1.0, length patched below */
    sb_printf(&h, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < ndim; i++) sb_printf(&h, "%s%" PRId64, i ? ", " : "", shape[i]);
    sb_puts(&h, ndim == 1 ? ",), }" : "), }");
    while ((h.len + 1) % 64 != 0) sb_putc(&h, ' '); /* total header is 64-byte aligned */
    sb_putc(&h, '\n');
    if (h.oom || h.len - 10 > 65535) {
        free(h.p);
        kiln_error_set(err, "%s: cannot build the .npy header", path);
        return -1;
    }
    h.p[8] = (char)((h.len - 10) & 0xff);
    h.p[9] = (char)((h.len - 10) >> 8);
    kiln_atomic_file af;
    int rc = -1;
    if (kiln_atomic_open(&af, path, err) == 0) {
        if (kiln_atomic_write(&af, h.p, h.len, err) || kiln_atomic_write(&af, data, nbytes, err))
            kiln_atomic_abort(&af);
        else
            rc = kiln_atomic_commit(&af, err);
    }
    free(h.p);
    return rc;
}

KILN_RT_API int kiln_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape,
                       kiln_error *err) {
    return npy_write(path, "<f4", 4, data, ndim, shape, err);
}

KILN_RT_API int kiln_npy_write_i32(const char *path, const int32_t *data, int ndim, const int64_t *shape,
                       kiln_error *err) {
    return npy_write(path, "<i4", 4, data, ndim, shape, err);
}

/* ========================================================================= */
/* Random numbers */

/* splitmix64: expands a seed into well-mixed state words. */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

KILN_RT_API uint64_t kiln_mix64(uint64_t x) { return splitmix64(&x); }

KILN_RT_API uint64_t kiln_fnv1a64(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

KILN_RT_API void kiln_rng_seed(kiln_rng *rng, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&x);
    rng->has_spare = 0;
    rng->spare = 0.0;
}

KILN_RT_API uint64_t kiln_rng_u64(kiln_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

KILN_RT_API uint64_t kiln_rng_below(kiln_rng *rng, uint64_t n) {
    if (n == 0) return 0;
    uint64_t threshold = (0 - n) % n; /* 2^64 mod n: reject the biased low values */
    for (;;) {
        uint64_t x = kiln_rng_u64(rng);
        if (x >= threshold) return x % n;
    }
}

KILN_RT_API double kiln_rng_double(kiln_rng *rng) { return (double)(kiln_rng_u64(rng) >> 11) * 0x1.0p-53; }

KILN_RT_API float kiln_rng_float(kiln_rng *rng) { return (float)(kiln_rng_u64(rng) >> 40) * 0x1.0p-24f; }

KILN_RT_API void kiln_mlm_mask(kiln_rng *rng, const int32_t *tokens, size_t n, int32_t mask_id, double rate,
                               int64_t random_below, int32_t *inputs, int32_t *targets) {
    for (size_t i = 0; i < n; i++) {
        const int32_t t = tokens[i];
        if (kiln_rng_double(rng) >= rate) {
            inputs[i] = t;
            targets[i] = -1;
            continue;
        }
        targets[i] = t;
        const double u = kiln_rng_double(rng);
        inputs[i] = u < 0.8 ? mask_id : u < 0.9 ? (int32_t)kiln_rng_below(rng, (uint64_t)random_below) : t;
    }
}

KILN_RT_API double kiln_rng_normal(kiln_rng *rng) {
    if (rng->has_spare) {
        rng->has_spare = 0;
        return rng->spare;
    }
    double u1 = 1.0 - kiln_rng_double(rng); /* (0, 1]: log is finite */
    double u2 = kiln_rng_double(rng);
    double r = sqrt(-2.0 * log(u1));
    double theta = 6.283185307179586476925286766559 * u2;
    rng->spare = r * sin(theta);
    rng->has_spare = 1;
    return r * cos(theta);
}

/* ========================================================================= */
/* Sampling and softmax */

KILN_RT_API int kiln_sampler_init(kiln_sampler *s, int n) {
    s->n = n;
    s->cand = malloc((size_t)(n > 0 ? n : 1) * sizeof *s->cand);
    return s->cand ? 0 : -1;
}

KILN_RT_API void kiln_sampler_free(kiln_sampler *s) {
    free(s->cand);
    s->cand = NULL;
    s->n = 0;
}

KILN_RT_API int kiln_argmax(const float *x, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i]) && (best < 0 || x[i] > x[best])) best = i;
    return best < 0 ? 0 : best;
}

/* qsort comparator: probability descending, then id ascending (deterministic). */
static int cmp_prob_desc(const void *a, const void *b) {
    const kiln_prob_index *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

KILN_RT_API int kiln_sample(kiln_sampler *s, const float *logits, double temperature, int top_k, double top_p,
                kiln_rng *rng) {
    int n = s->n;
    if (n <= 0) return 0;
    if (!(temperature > 0.0)) return kiln_argmax(logits, n);
    kiln_prob_index *c = s->cand;
    double mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        double z = isnan(logits[i]) ? -INFINITY : (double)logits[i] / temperature;
        c[i].p = z;
        c[i].id = i;
        if (z > mx) mx = z;
    }
    if (mx == -INFINITY) return kiln_argmax(logits, n);
    for (int i = 0; i < n; i++) {
        if (isinf(mx)) c[i].p = c[i].p == INFINITY ? 1.0 : 0.0; /* +inf logits share the mass */
        else c[i].p = exp(c[i].p - mx);
    }
    int m = n;
    int use_k = top_k > 0 && top_k < n, use_p = top_p < 1.0;
    if (use_k || use_p) {
        qsort(c, (size_t)n, sizeof *c, cmp_prob_desc);
        if (use_k) m = top_k;
    }
    double total = 0.0;
    for (int i = 0; i < m; i++) total += c[i].p;
    if (use_p) {
        double cum = 0.0, cut = top_p * total;
        for (int i = 0; i < m; i++) {
            cum += c[i].p;
            if (cum >= cut) {
                m = i + 1;
                break;
            }
        }
        total = 0.0;
        for (int i = 0; i < m; i++) total += c[i].p;
    }
    double u = kiln_rng_double(rng) * total, cum = 0.0;
    int last = c[0].id;
    for (int i = 0; i < m; i++) {
        if (c[i].p <= 0.0) continue;
        cum += c[i].p;
        last = c[i].id;
        if (u < cum) return c[i].id;
    }
    return last; /* rounding: u landed at the very top */
}

KILN_RT_API double kiln_log_softmax_at(const float *logits, int n, int target) {
    double mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if ((double)logits[i] > mx) mx = logits[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += exp((double)logits[i] - mx);
    return ((double)logits[target] - mx) - log(sum);
}

/* ========================================================================= */
/* Time and files */

KILN_RT_API double kiln_time_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

KILN_RT_API int kiln_read_file(const char *path, size_t max_bytes, uint8_t **data, size_t *len,
                   kiln_error *err) {
    *data = NULL;
    *len = 0;
    int fd;
    off_t fsize;
    if (open_regular(path, &fd, &fsize, err)) return -1;
    if ((uint64_t)fsize > max_bytes) {
        kiln_error_set(err, "file '%s' is too large (%lld bytes; the limit is %zu)", path,
                       (long long)fsize, max_bytes);
        close(fd);
        return -1;
    }
    size_t size = (size_t)fsize, got = 0;
    uint8_t *buf = malloc(size + 1);
    if (!buf) {
        kiln_error_set(err, "out of memory reading '%s' (%zu bytes)", path, size);
        close(fd);
        return -1;
    }
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            kiln_error_set(err, "error reading '%s': %s", path, strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0) break; /* file shrank while reading */
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *data = buf;
    *len = got;
    return 0;
}

/* ========================================================================= */
/* Command-line numbers */

KILN_RT_API int kiln_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!s) return KILN_PARSE_SYNTAX;
    int neg = s[0] == '-';
    size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
    if (s[i] < '0' || s[i] > '9') return KILN_PARSE_SYNTAX;
    uint64_t acc = 0;
    int overflow = 0;
    for (; s[i]; i++) {
        if (s[i] < '0' || s[i] > '9') return KILN_PARSE_SYNTAX;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (acc > (UINT64_MAX - d) / 10) overflow = 1;
        else acc = acc * 10 + d;
    }
    if (overflow || acc > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
        return KILN_PARSE_RANGE;
    int64_t v = neg ? (acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc) : (int64_t)acc;
    if (v < lo || v > hi) return KILN_PARSE_RANGE;
    *out = v;
    return 0;
}

KILN_RT_API int kiln_parse_u64(const char *s, uint64_t *out) {
    if (!s) return KILN_PARSE_SYNTAX;
    size_t i = s[0] == '+' ? 1 : 0;
    if (s[i] < '0' || s[i] > '9') return KILN_PARSE_SYNTAX;
    uint64_t acc = 0;
    int overflow = 0;
    for (; s[i]; i++) {
        if (s[i] < '0' || s[i] > '9') return KILN_PARSE_SYNTAX;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (acc > (UINT64_MAX - d) / 10) overflow = 1;
        else acc = acc * 10 + d;
    }
    if (overflow) return KILN_PARSE_RANGE;
    *out = acc;
    return 0;
}

KILN_RT_API int kiln_parse_f64(const char *s, double lo, double hi, double *out) {
    if (!s || !*s) return KILN_PARSE_SYNTAX;
    char c = s[0];
    if (!((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.')) return KILN_PARSE_SYNTAX;
    for (const char *q = s; *q; q++) /* plain decimal only: no hex, inf or nan */
        if (!((*q >= '0' && *q <= '9') || *q == '-' || *q == '+' || *q == '.' || *q == 'e' ||
              *q == 'E'))
            return KILN_PARSE_SYNTAX;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0') return KILN_PARSE_SYNTAX;
    if (!isfinite(v) || (errno == ERANGE && v != 0.0)) return KILN_PARSE_RANGE;
    if (v < lo || v > hi) return KILN_PARSE_RANGE;
    *out = v;
    return 0;
}

/* Shared message for the flag parsers. */
static int flag_fail(const char *flag, const char *s, int rc, const char *kind, const char *range,
                     kiln_error *err) {
    char vb[NAME_SHOW];
    kiln_printable(vb, sizeof vb, s ? s : "");
    if (rc == KILN_PARSE_SYNTAX) kiln_error_set(err, "%s: '%s' is not %s", flag, vb, kind);
    else kiln_error_set(err, "%s: %s is out of range %s", flag, vb, range);
    return -1;
}

KILN_RT_API int kiln_flag_i64(const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out,
                  kiln_error *err) {
    int rc = kiln_parse_i64(s, lo, hi, out);
    if (rc == 0) return 0;
    char range[96];
    snprintf(range, sizeof range, "[%" PRId64 ", %" PRId64 "]", lo, hi);
    return flag_fail(flag, s, rc, "an integer", range, err);
}

KILN_RT_API int kiln_flag_u64(const char *flag, const char *s, uint64_t *out, kiln_error *err) {
    int rc = kiln_parse_u64(s, out);
    if (rc == 0) return 0;
    return flag_fail(flag, s, rc, "a non-negative integer", "[0, 18446744073709551615]", err);
}

KILN_RT_API int kiln_flag_f64(const char *flag, const char *s, double lo, double hi, double *out,
                  kiln_error *err) {
    int rc = kiln_parse_f64(s, lo, hi, out);
    if (rc == 0) return 0;
    char range[96];
    snprintf(range, sizeof range, "[%g, %g]", lo, hi);
    return flag_fail(flag, s, rc, "a number", range, err);
}
