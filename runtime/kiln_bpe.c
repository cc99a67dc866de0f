/*
 * kiln_bpe.c - byte-level BPE: pre-tokenisation, learning, encoding, decoding, the text form (kiln_bpe.h).
 */
#include "kiln_bpe.h"

#include <stdlib.h>
#include <string.h>

#include "kiln_unicode.h"

/* ------------------------------------------------------------------------- */
/* Characters */

/* The code point at s[0, n) (valid UTF-8) and its length in bytes. */
static uint32_t next_cp(const uint8_t *s, size_t n, size_t *len) {
    const uint8_t c = s[0];
    size_t k = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (k > n) k = n;
    uint32_t cp = k == 1 ? c : k == 2 ? c & 0x1Fu : k == 3 ? c & 0x0Fu : c & 0x07u;
    for (size_t i = 1; i < k; i++) cp = (cp << 6) | (s[i] & 0x3Fu);
    *len = k;
    return cp;
}

static int is_letter(uint32_t cp) {
    if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    return KILN_UNICODE_IN(cp, kiln_unicode_letters);
}
static int is_number(uint32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    return KILN_UNICODE_IN(cp, kiln_unicode_numbers);
}

enum { C_LETTER, C_NUMBER, C_SPACE, C_OTHER };
static int char_class(uint32_t cp) {
    return is_letter(cp) ? C_LETTER : is_number(cp) ? C_NUMBER : kiln_unicode_is_space(cp) ? C_SPACE : C_OTHER;
}

/* The bytes of the run of characters of class cls from s[0, n). */
static size_t run_of(const uint8_t *s, size_t n, int cls) {
    size_t i = 0, k;
    while (i < n && char_class(next_cp(s + i, n - i, &k)) == cls) i += k;
    return i;
}

KILN_RT_API size_t kiln_pretoken_len(const uint8_t *s, size_t n) {
    if (s[0] == '\'' && n >= 2) { /* the contractions */
        if (n >= 3 && ((s[1] == 'r' && s[2] == 'e') || (s[1] == 'v' && s[2] == 'e') || (s[1] == 'l' && s[2] == 'l'))) return 3;
        if (s[1] == 's' || s[1] == 't' || s[1] == 'm' || s[1] == 'd') return 2;
    }
    size_t k;
    const int first = char_class(next_cp(s, n, &k));
    if (first != C_SPACE) return run_of(s, n, first);
    if (s[0] == ' ' && n > 1) { /* " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+" */
        size_t k2;
        const int second = char_class(next_cp(s + 1, n - 1, &k2));
        if (second != C_SPACE) return 1 + run_of(s + 1, n - 1, second);
    }
    /* whitespace: all of it at the end of the text; else all but its last character (which joins what follows),
     * or the one character when it is alone */
    size_t end = 0, last = 0;
    while (end < n) {
        size_t c;
        if (!kiln_unicode_is_space(next_cp(s + end, n - end, &c))) break;
        last = end;
        end += c;
    }
    if (end == n || last == 0) return end;
    return last;
}

/* ------------------------------------------------------------------------- */
/* Tokenizer */

struct kiln_bpe {
    int num_specials;
    char *specials[KILN_BPE_MAX_SPECIALS];
    int size;                /* ids */
    int32_t byte_id[256];
    uint8_t **bytes;         /* [size]: each id's bytes (NULL for specials) */
    uint32_t *len;           /* [size] */
    int num_merges;
    int32_t (*merge)[2];     /* [num_merges]: rank r joins merge[r][0] and merge[r][1] ... */
    int32_t *merged;         /* ... into merged[r] */
    uint64_t *keys;          /* open addressing: (a, b) -> rank + 1 in vals; capacity a power of two */
    int32_t *vals;
    size_t cap;
    int32_t *ext;            /* GPT-2's files: [size] the file's id of each id (NULL: the ids are the file's) ... */
    int32_t *intern;         /* ... and [ext_size] the id of each of the file's ids */
    int ext_size;
};

/* The caller's id of an internal id, and back (-1 for an id that is none). */
static int32_t to_ext(const kiln_bpe *t, int32_t id) { return t->ext ? t->ext[id] : id; }
static int32_t to_int(const kiln_bpe *t, int32_t id) {
    if (!t->ext) return id;
    return id >= 0 && id < t->ext_size ? t->intern[id] : -1;
}

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }
static size_t hash64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

/* The rank of merging (a, b), or -1. */
static int32_t merge_rank(const kiln_bpe *t, int32_t a, int32_t b) {
    const uint64_t key = pair_key(a, b);
    for (size_t i = hash64(key) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (t->vals[i] == 0) return -1;
        if (t->keys[i] == key) return t->vals[i] - 1;
    }
}

KILN_RT_API void kiln_bpe_free(kiln_bpe *t) {
    if (!t) return;
    for (int i = 0; i < t->num_specials; i++) free(t->specials[i]);
    for (int i = 0; t->bytes && i < t->size; i++) free(t->bytes[i]);
    free(t->bytes);
    free(t->len);
    free(t->merge);
    free(t->merged);
    free(t->keys);
    free(t->vals);
    free(t->ext);
    free(t->intern);
    free(t);
}

/* A tokenizer of the specials and the 256 bytes, with room for max_merges merges; NULL when out of memory. */
static kiln_bpe *bpe_new(const char *const *specials, int num_specials, int max_merges) {
    kiln_bpe *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    const int cap_ids = num_specials + 256 + max_merges;
    t->bytes = calloc((size_t)cap_ids, sizeof *t->bytes);
    t->len = calloc((size_t)cap_ids, sizeof *t->len);
    t->merge = calloc((size_t)max_merges + 1, sizeof *t->merge);
    t->merged = calloc((size_t)max_merges + 1, sizeof *t->merged);
    t->cap = 16;
    while (t->cap < 2 * (size_t)max_merges + 2) t->cap *= 2;
    t->keys = calloc(t->cap, sizeof *t->keys);
    t->vals = calloc(t->cap, sizeof *t->vals);
    if (!t->bytes || !t->len || !t->merge || !t->merged || !t->keys || !t->vals) goto fail;
    for (int i = 0; i < num_specials; i++) {
        const size_t n = strlen(specials[i]) + 1;
        if (!(t->specials[i] = malloc(n))) goto fail;
        memcpy(t->specials[i], specials[i], n);
        t->num_specials = i + 1;
    }
    t->size = num_specials;
    for (int b = 0; b < 256; b++) {
        if (!(t->bytes[t->size] = malloc(1))) goto fail;
        t->bytes[t->size][0] = (uint8_t)b;
        t->len[t->size] = 1;
        t->byte_id[b] = t->size++;
    }
    return t;
fail:
    kiln_bpe_free(t);
    return NULL;
}

/* Adds the merge of a and b as the next id; 0, or -1 when out of memory. */
static int bpe_add_merge(kiln_bpe *t, int32_t a, int32_t b) {
    const int32_t id = t->size;
    const uint32_t n = t->len[a] + t->len[b];
    if (!(t->bytes[id] = malloc(n))) return -1;
    memcpy(t->bytes[id], t->bytes[a], t->len[a]);
    memcpy(t->bytes[id] + t->len[a], t->bytes[b], t->len[b]);
    t->len[id] = n;
    t->merge[t->num_merges][0] = a;
    t->merge[t->num_merges][1] = b;
    t->merged[t->num_merges] = id;
    const uint64_t key = pair_key(a, b);
    size_t i = hash64(key) & (t->cap - 1);
    while (t->vals[i] != 0) i = (i + 1) & (t->cap - 1);
    t->keys[i] = key;
    t->vals[i] = ++t->num_merges;
    t->size++;
    return 0;
}

KILN_RT_API int kiln_bpe_size(const kiln_bpe *t) { return t->ext ? t->ext_size : t->size; }

KILN_RT_API int32_t kiln_bpe_special(const kiln_bpe *t, const char *name) {
    for (int i = 0; i < t->num_specials; i++)
        if (strcmp(t->specials[i], name) == 0) return to_ext(t, i);
    return -1;
}

KILN_RT_API const uint8_t *kiln_bpe_bytes(const kiln_bpe *t, int32_t id, size_t *len) {
    id = to_int(t, id);
    if (id < t->num_specials || id >= t->size) {
        *len = 0;
        return NULL;
    }
    *len = t->len[id];
    return t->bytes[id];
}

/* Encodes one piece of n <= KILN_BPE_MAX_PIECE bytes into sym (room for n); returns the number of ids. */
static size_t encode_piece(const kiln_bpe *t, const uint8_t *s, size_t n, int32_t *sym) {
    for (size_t i = 0; i < n; i++) sym[i] = t->byte_id[s[i]];
    for (;;) {
        int32_t best = -1;
        for (size_t i = 0; i + 1 < n; i++) {
            const int32_t r = merge_rank(t, sym[i], sym[i + 1]);
            if (r >= 0 && (best < 0 || r < best)) best = r;
        }
        if (best < 0) return n;
        const int32_t a = t->merge[best][0], b = t->merge[best][1], m = t->merged[best];
        size_t w = 0;
        for (size_t i = 0; i < n; i++) {
            if (i + 1 < n && sym[i] == a && sym[i + 1] == b) {
                sym[w++] = m;
                i++;
            } else sym[w++] = sym[i];
        }
        n = w;
    }
}

KILN_RT_API int64_t kiln_bpe_encode(const kiln_bpe *t, const uint8_t *text, size_t len, int32_t *ids, size_t cap,
                                    kiln_error *err) {
    const size_t bad = kiln_utf8_check(text, len);
    if (bad < len) {
        kiln_error_set(err, "invalid UTF-8 at byte %zu", bad + 1);
        return -1;
    }
    int32_t sym[KILN_BPE_MAX_PIECE];
    int64_t count = 0;
    size_t i = 0;
    while (i < len) {
        size_t piece = kiln_pretoken_len(text + i, len - i);
        while (piece > 0) {
            size_t part = piece;
            if (part > KILN_BPE_MAX_PIECE) { /* cut before a character that starts at most MAX_PIECE bytes in */
                part = KILN_BPE_MAX_PIECE;
                while ((text[i + part] & 0xC0) == 0x80) part--;
            }
            const size_t m = encode_piece(t, text + i, part, sym);
            for (size_t j = 0; j < m; j++, count++)
                if ((size_t)count < cap) ids[count] = to_ext(t, sym[j]);
            i += part;
            piece -= part;
        }
    }
    return count;
}

KILN_RT_API char *kiln_bpe_decode(const kiln_bpe *t, const int32_t *ids, size_t n) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        kiln_bpe_bytes(t, ids[i], &l);
        total += l;
    }
    uint8_t *raw = malloc(total + 1);
    char *out = malloc(3 * total + 1); /* each invalid byte becomes U+FFFD: 3 bytes */
    if (!raw || !out) {
        free(raw);
        free(out);
        return NULL;
    }
    size_t p = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const uint8_t *b = kiln_bpe_bytes(t, ids[i], &l);
        if (l) memcpy(raw + p, b, l);
        p += l;
    }
    size_t o = 0, i = 0;
    while (i < total) {
        const size_t good = kiln_utf8_check(raw + i, total - i);
        memcpy(out + o, raw + i, good);
        o += good;
        i += good;
        if (i < total) { /* one invalid byte */
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    out[o] = 0;
    free(raw);
    return out;
}

/* ------------------------------------------------------------------------- */
/* The text form */

static int special_ok(const char *s, size_t n) {
    if (n == 0 || n > 64) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7F) return 0;
    return 1;
}

KILN_RT_API char *kiln_bpe_format(const kiln_bpe *t) {
    if (t->ext) return NULL; /* GPT-2's ids are not the text form's */
    size_t cap = 64 + 70 * (size_t)t->num_specials + 24 * (size_t)t->num_merges, o = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    o += (size_t)snprintf(s + o, cap - o, "kiln-bpe 1\nspecials");
    for (int i = 0; i < t->num_specials; i++) o += (size_t)snprintf(s + o, cap - o, " %s", t->specials[i]);
    o += (size_t)snprintf(s + o, cap - o, "\nmerges %d\n", t->num_merges);
    for (int r = 0; r < t->num_merges; r++) o += (size_t)snprintf(s + o, cap - o, "%d %d\n", t->merge[r][0], t->merge[r][1]);
    return s;
}

/* Reads a non-negative decimal below `limit` at s[*i]; -1 when there is none. */
static int64_t read_uint(const char *s, size_t len, size_t *i, int64_t limit) {
    int64_t v = 0;
    const size_t start = *i;
    while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
        v = v * 10 + (s[*i] - '0');
        if (v >= limit) return -1;
        (*i)++;
    }
    return *i == start ? -1 : v;
}

KILN_RT_API int kiln_bpe_parse(const char *s, size_t len, kiln_bpe **out, kiln_error *err) {
    *out = NULL;
    size_t i = 0;
    static const char head[] = "kiln-bpe 1\nspecials";
    if (len < sizeof head - 1 || memcmp(s, head, sizeof head - 1) != 0) {
        kiln_error_set(err, "not a Kiln BPE tokenizer (it must start with 'kiln-bpe 1' and a 'specials' line)");
        return -1;
    }
    i = sizeof head - 1;
    char names[KILN_BPE_MAX_SPECIALS][65];
    const char *ptrs[KILN_BPE_MAX_SPECIALS];
    int ns = 0;
    while (i < len && s[i] == ' ') {
        size_t j = ++i;
        while (j < len && s[j] != ' ' && s[j] != '\n') j++;
        if (!special_ok(s + i, j - i) || ns == KILN_BPE_MAX_SPECIALS) {
            kiln_error_set(err, "line 2: special tokens are up to %d names of 1 to 64 printable ASCII characters",
                           KILN_BPE_MAX_SPECIALS);
            return -1;
        }
        memcpy(names[ns], s + i, j - i);
        names[ns][j - i] = 0;
        for (int k = 0; k < ns; k++)
            if (strcmp(names[k], names[ns]) == 0) {
                kiln_error_set(err, "line 2: the special token '%s' appears twice", names[ns]);
                return -1;
            }
        ptrs[ns] = names[ns];
        ns++;
        i = j;
    }
    static const char mh[] = "\nmerges ";
    if (len - i < sizeof mh - 1 || memcmp(s + i, mh, sizeof mh - 1) != 0) {
        kiln_error_set(err, "line 3: expected 'merges N'");
        return -1;
    }
    i += sizeof mh - 1;
    const int64_t nm = read_uint(s, len, &i, KILN_BPE_MAX_TOKENS - 256 - ns + 1);
    if (nm < 0 || i >= len || s[i] != '\n') {
        kiln_error_set(err, "line 3: expected 'merges N' with N below %d", KILN_BPE_MAX_TOKENS - 256 - ns + 1);
        return -1;
    }
    i++;
    kiln_bpe *t = bpe_new(ptrs, ns, (int)nm);
    if (!t) {
        kiln_error_set(err, "out of memory for a tokenizer of %lld merges", (long long)nm);
        return -1;
    }
    for (int64_t r = 0; r < nm; r++) {
        const int64_t line = r + 4;
        const int64_t a = read_uint(s, len, &i, t->size);
        const int ok1 = a >= 0 && i < len && s[i++] == ' ';
        const int64_t b = ok1 ? read_uint(s, len, &i, t->size) : -1;
        if (b < 0 || i >= len || s[i] != '\n') {
            kiln_error_set(err, "line %lld: expected two ids below %d (the tokens merged), separated by a space", (long long)line, t->size);
            goto fail;
        }
        i++;
        if (a < ns || b < ns) {
            kiln_error_set(err, "line %lld: a merge of a special token", (long long)line);
            goto fail;
        }
        if (merge_rank(t, (int32_t)a, (int32_t)b) >= 0) {
            kiln_error_set(err, "line %lld: the merge %lld %lld appears twice", (long long)line, (long long)a, (long long)b);
            goto fail;
        }
        if (bpe_add_merge(t, (int32_t)a, (int32_t)b)) {
            kiln_error_set(err, "out of memory for a tokenizer of %lld merges", (long long)nm);
            goto fail;
        }
    }
    if (i != len) {
        kiln_error_set(err, "line %lld: text after the %lld merges", (long long)nm + 4, (long long)nm);
        goto fail;
    }
    *out = t;
    return 0;
fail:
    kiln_bpe_free(t);
    return -1;
}

/* ------------------------------------------------------------------------- */
/* Learning */

/* A growable array of int32. */
typedef struct {
    int32_t *v;
    size_t n, cap;
} ivec;

static int ivec_push(ivec *a, int32_t x) {
    if (a->n == a->cap) {
        size_t c = a->cap ? 2 * a->cap : 4;
        int32_t *v = realloc(a->v, c * sizeof *v);
        if (!v) return -1;
        a->v = v;
        a->cap = c;
    }
    a->v[a->n++] = x;
    return 0;
}

/* The learner's state: the distinct pieces (words) with their counts and current tokens, and every adjacent
 * pair of tokens with its count over the corpus and the words it (may) occur in. */
typedef struct {
    /* words: distinct pieces, by hash of their bytes */
    size_t nwords, wcap;
    int64_t *wcount;
    ivec *wsym;            /* the word's tokens */
    uint32_t *whash;       /* open addressing over word indices + 1 */
    size_t whcap;
    const uint8_t **wtext; /* the piece's first occurrence */
    size_t *wlen;
    int32_t *stamp;        /* the last merge that visited the word */
    /* pairs */
    size_t npairs, pcap;
    uint64_t *pkey;
    int64_t *pcount;
    ivec *pwhere;          /* words that contain (or contained) the pair */
    uint32_t *phash;       /* open addressing over pair indices + 1 */
    size_t phcap;
} learner;

static uint64_t fnv(const uint8_t *s, size_t n) {
    uint64_t h = KILN_FNV1A64_INIT;
    return kiln_fnv1a64(h, s, n);
}

static int grow_table(uint32_t **tab, size_t *cap, size_t n, uint64_t (*key_hash)(const learner *, uint32_t), const learner *L) {
    if (2 * (n + 1) <= *cap) return 0;
    size_t c = *cap ? 2 * *cap : 1024;
    uint32_t *t = calloc(c, sizeof *t);
    if (!t) return -1;
    for (size_t i = 0; i < *cap; i++)
        if ((*tab)[i]) {
            size_t j = (size_t)key_hash(L, (*tab)[i] - 1) & (c - 1);
            while (t[j]) j = (j + 1) & (c - 1);
            t[j] = (*tab)[i];
        }
    free(*tab);
    *tab = t;
    *cap = c;
    return 0;
}

static uint64_t word_hash(const learner *L, uint32_t w) { return fnv(L->wtext[w], L->wlen[w]); }
static uint64_t pair_hash(const learner *L, uint32_t p) { return hash64(L->pkey[p]); }

#define GROW(arr, cap, n)                                                            \
    do {                                                                             \
        void *g_ = realloc((arr), (cap) * sizeof *(arr));                            \
        if (!g_) return -1;                                                          \
        (arr) = g_;                                                                  \
        memset((arr) + (n), 0, ((cap) - (n)) * sizeof *(arr));                       \
    } while (0)

/* Counts one piece. */
static int add_word(learner *L, const uint8_t *s, size_t n) {
    if (grow_table(&L->whash, &L->whcap, L->nwords, word_hash, L)) return -1;
    size_t j = (size_t)fnv(s, n) & (L->whcap - 1);
    for (; L->whash[j]; j = (j + 1) & (L->whcap - 1)) {
        const uint32_t w = L->whash[j] - 1;
        if (L->wlen[w] == n && memcmp(L->wtext[w], s, n) == 0) {
            L->wcount[w]++;
            return 0;
        }
    }
    if (L->nwords == L->wcap) {
        L->wcap = L->wcap ? 2 * L->wcap : 1024;
        GROW(L->wcount, L->wcap, L->nwords);
        GROW(L->wsym, L->wcap, L->nwords);
        GROW(L->wtext, L->wcap, L->nwords);
        GROW(L->wlen, L->wcap, L->nwords);
    }
    const size_t w = L->nwords++;
    L->wtext[w] = s;
    L->wlen[w] = n;
    L->wcount[w] = 1;
    L->whash[j] = (uint32_t)w + 1;
    return 0;
}

/* The index of pair (a, b), added with count 0 when new; -1 when out of memory. */
static int64_t pair_index(learner *L, int32_t a, int32_t b) {
    if (grow_table(&L->phash, &L->phcap, L->npairs, pair_hash, L)) return -1;
    const uint64_t key = pair_key(a, b);
    size_t j = hash64(key) & (L->phcap - 1);
    for (; L->phash[j]; j = (j + 1) & (L->phcap - 1))
        if (L->pkey[L->phash[j] - 1] == key) return L->phash[j] - 1;
    if (L->npairs == L->pcap) {
        L->pcap = L->pcap ? 2 * L->pcap : 1024;
        GROW(L->pkey, L->pcap, L->npairs);
        GROW(L->pcount, L->pcap, L->npairs);
        GROW(L->pwhere, L->pcap, L->npairs);
    }
    const size_t p = L->npairs++;
    L->pkey[p] = key;
    L->phash[j] = (uint32_t)p + 1;
    return (int64_t)p;
}

/* Adds sign * the word's count to each of its pairs; with sign > 0 also records the word where a pair holds
 * `fresh` (or every pair when fresh < 0). */
static int count_pairs(learner *L, int32_t w, int sign, int32_t fresh) {
    const ivec *s = &L->wsym[w];
    for (size_t i = 0; i + 1 < s->n; i++) {
        const int64_t p = pair_index(L, s->v[i], s->v[i + 1]);
        if (p < 0) return -1;
        L->pcount[p] += sign * L->wcount[w];
        if (sign > 0 && (fresh < 0 || s->v[i] == fresh || s->v[i + 1] == fresh)) {
            ivec *where = &L->pwhere[p];
            if ((where->n == 0 || where->v[where->n - 1] != w) && ivec_push(where, w)) return -1;
        }
    }
    return 0;
}

static void learner_free(learner *L) {
    for (size_t w = 0; w < L->nwords; w++) free(L->wsym[w].v);
    for (size_t p = 0; p < L->npairs; p++) free(L->pwhere[p].v);
    free(L->wcount); free(L->wsym); free(L->whash); free(L->wtext); free(L->wlen); free(L->stamp);
    free(L->pkey); free(L->pcount); free(L->pwhere); free(L->phash);
}

static int learn(learner *L, kiln_bpe *t, const uint8_t *const *texts, const size_t *lens, size_t n, int vocab_size) {
    for (size_t k = 0; k < n; k++)
        for (size_t i = 0; i < lens[k];) {
            const size_t piece = kiln_pretoken_len(texts[k] + i, lens[k] - i);
            if (add_word(L, texts[k] + i, piece)) return -1;
            i += piece;
        }
    if (!(L->stamp = calloc(L->nwords ? L->nwords : 1, sizeof *L->stamp))) return -1;
    for (size_t w = 0; w < L->nwords; w++) {
        for (size_t i = 0; i < L->wlen[w]; i++)
            if (ivec_push(&L->wsym[w], t->byte_id[L->wtext[w][i]])) return -1;
        if (count_pairs(L, (int32_t)w, 1, -1)) return -1;
    }
    while (t->size < vocab_size) {
        int64_t best = -1;
        for (size_t p = 0; p < L->npairs; p++)
            if (L->pcount[p] >= 2 && (best < 0 || L->pcount[p] > L->pcount[best] ||
                                      (L->pcount[p] == L->pcount[best] && L->pkey[p] < L->pkey[best])))
                best = (int64_t)p;
        if (best < 0) break;
        const int32_t a = (int32_t)(L->pkey[best] >> 32), b = (int32_t)(uint32_t)L->pkey[best];
        const int32_t id = t->size;
        if (bpe_add_merge(t, a, b)) return -1;
        /* the words holding the pair: their pairs out, the pair merged, their pairs back in */
        ivec where = L->pwhere[best];
        L->pwhere[best] = (ivec){0};
        for (size_t k = 0; k < where.n; k++) {
            const int32_t w = where.v[k];
            if (L->stamp[w] == id) continue;
            L->stamp[w] = id;
            ivec *s = &L->wsym[w];
            int has = 0;
            for (size_t i = 0; i + 1 < s->n && !has; i++) has = s->v[i] == a && s->v[i + 1] == b;
            if (!has) continue;
            if (count_pairs(L, w, -1, 0)) return -1;
            size_t o = 0;
            for (size_t i = 0; i < s->n; i++) {
                if (i + 1 < s->n && s->v[i] == a && s->v[i + 1] == b) {
                    s->v[o++] = id;
                    i++;
                } else s->v[o++] = s->v[i];
            }
            s->n = o;
            if (count_pairs(L, w, 1, id)) return -1;
        }
        free(where.v);
    }
    return 0;
}

KILN_RT_API int kiln_bpe_learn(const uint8_t *const *texts, const size_t *lens, size_t n, const char *const *specials,
                               int num_specials, int vocab_size, kiln_bpe **out, kiln_error *err) {
    *out = NULL;
    if (num_specials < 0 || num_specials > KILN_BPE_MAX_SPECIALS) {
        kiln_error_set(err, "at most %d special tokens", KILN_BPE_MAX_SPECIALS);
        return -1;
    }
    for (int i = 0; i < num_specials; i++)
        if (!special_ok(specials[i], strlen(specials[i]))) {
            kiln_error_set(err, "special tokens are names of 1 to 64 printable ASCII characters");
            return -1;
        }
    if (vocab_size < num_specials + 256 || vocab_size > KILN_BPE_MAX_TOKENS) {
        kiln_error_set(err, "a byte-level vocabulary of %d ids needs at least %d (the %d specials and the 256 bytes) and at most %d",
                       vocab_size, num_specials + 256, num_specials, KILN_BPE_MAX_TOKENS);
        return -1;
    }
    for (size_t k = 0; k < n; k++) {
        const size_t bad = kiln_utf8_check(texts[k], lens[k]);
        if (bad < lens[k]) {
            kiln_error_set(err, "text %zu: invalid UTF-8 at byte %zu", k + 1, bad + 1);
            return -1;
        }
    }
    kiln_bpe *t = bpe_new(specials, num_specials, vocab_size - num_specials - 256);
    learner L = {0};
    if (!t || learn(&L, t, texts, lens, n, vocab_size)) {
        learner_free(&L);
        kiln_bpe_free(t);
        kiln_error_set(err, "out of memory learning a tokenizer");
        return -1;
    }
    learner_free(&L);
    *out = t;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* GPT-2's files: tiktoken ranks, vocab.json + merges.txt */

/* The ids of byte strings: open addressing over the tokenizer's own bytes (capacity a power of two). */
typedef struct {
    int32_t *slot;
    size_t cap;
} bytes_map;

static int32_t bytes_find(const bytes_map *m, const kiln_bpe *t, const uint8_t *s, size_t n) {
    for (size_t i = fnv(s, n) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        const int32_t id = m->slot[i];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->bytes[id], s, n) == 0) return id;
    }
}

static void bytes_put(bytes_map *m, const kiln_bpe *t, int32_t id) {
    size_t i = fnv(t->bytes[id], t->len[id]) & (m->cap - 1);
    while (m->slot[i] >= 0) i = (i + 1) & (m->cap - 1);
    m->slot[i] = id;
}

static int bytes_map_new(bytes_map *m, size_t ids) {
    for (m->cap = 16; m->cap < 2 * ids;) m->cap *= 2;
    m->slot = malloc(m->cap * sizeof *m->slot);
    if (!m->slot) return -1;
    memset(m->slot, 0xFF, m->cap * sizeof *m->slot);
    return 0;
}

/* Gives the tokenizer the file's ids: ext[i] for each id i (all set), which must use every id below
 * ext_size once. Takes ext. 0, or -1 with *err set. */
static int set_ext(kiln_bpe *t, int32_t *ext, int ext_size, kiln_error *err) {
    t->ext = ext;
    t->ext_size = ext_size;
    if (!(t->intern = malloc((size_t)ext_size * sizeof *t->intern))) {
        kiln_error_set(err, "out of memory for the tokenizer's ids");
        return -1;
    }
    memset(t->intern, 0xFF, (size_t)ext_size * sizeof *t->intern);
    for (int32_t i = 0; i < t->size; i++) {
        if (ext[i] < 0 || ext[i] >= ext_size) {
            kiln_error_set(err, "id %d is out of range (%d tokens)", ext[i], ext_size);
            return -1;
        }
        if (t->intern[ext[i]] >= 0) {
            kiln_error_set(err, "id %d is given to two tokens", ext[i]);
            return -1;
        }
        t->intern[ext[i]] = i;
    }
    for (int i = 0; i < ext_size; i++)
        if (t->intern[i] < 0) {
            kiln_error_set(err, "no token has id %d", i);
            return -1;
        }
    return 0;
}

static int b64_value(uint8_t c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decodes standard base64 (with its = padding) of s[0, n) into out (room for 3n/4); its length, or -1. */
static int64_t b64_decode(const uint8_t *s, size_t n, uint8_t *out) {
    if (n == 0 || n % 4) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        const int pad = (s[i + 3] == '=') + (s[i + 2] == '=' && s[i + 3] == '=');
        if (pad && i + 4 != n) return -1;
        int v[4];
        for (int k = 0; k < 4 - pad; k++)
            if ((v[k] = b64_value(s[i + k])) < 0) return -1;
        for (int k = 4 - pad; k < 4; k++) v[k] = 0;
        const uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(x >> 16);
        if (pad < 2) out[o++] = (uint8_t)(x >> 8);
        if (pad < 1) out[o++] = (uint8_t)x;
    }
    return (int64_t)o;
}

KILN_RT_API int kiln_bpe_load_tiktoken(const char *text, size_t len, kiln_bpe **out, kiln_error *err) {
    *out = NULL;
    const uint8_t *s = (const uint8_t *)text;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += s[i] == '\n';
    if (len && s[len - 1] != '\n') n++;
    if (n < 256 || n > KILN_BPE_MAX_TOKENS - 1) {
        kiln_error_set(err, "%zu ranks; a tiktoken file has the 256 bytes and at most %d tokens", n, KILN_BPE_MAX_TOKENS - 1);
        return -1;
    }
    /* every line "BASE64 RANK", the ranks 0 .. n-1 once each */
    const uint8_t **tok = calloc(n, sizeof *tok);
    size_t *tlen = calloc(n, sizeof *tlen);
    uint8_t *raw = malloc(len + 1);
    kiln_bpe *t = NULL;
    int32_t *ext = NULL;
    int rc = -1;
    if (!tok || !tlen || !raw) goto oom;
    size_t pos = 0, used = 0, singles = 0;
    for (size_t line = 1; pos < len; line++) {
        const uint8_t *nl = memchr(s + pos, '\n', len - pos);
        const size_t end = nl ? (size_t)(nl - s) : len;
        const uint8_t *sp = memchr(s + pos, ' ', end - pos);
        size_t i = sp ? (size_t)(sp - s) + 1 : end;
        const int64_t rank = sp ? read_uint(text, end, &i, (int64_t)n) : -1;
        const int64_t bytes = sp ? b64_decode(s + pos, (size_t)(sp - s) - pos, raw + used) : -1;
        if (rank < 0 || i != end || bytes <= 0 || bytes > KILN_BPE_MAX_PIECE) {
            kiln_error_set(err, "line %zu: expected the base64 of a token (1 to %d bytes), a space and its rank below %zu",
                           line, KILN_BPE_MAX_PIECE, n);
            goto fail;
        }
        if (tok[rank]) {
            kiln_error_set(err, "line %zu: rank %lld is given twice", line, (long long)rank);
            goto fail;
        }
        tok[rank] = raw + used;
        tlen[rank] = (size_t)bytes;
        used += (size_t)bytes;
        singles += bytes == 1;
        pos = end + 1;
    }
    if (singles != 256) {
        kiln_error_set(err, "%zu single-byte tokens; a byte-level tokenizer has the 256 bytes", singles);
        goto fail;
    }
    /* the merges in rank order: each token must be the merge of the two tokens that the ranks before it make
     * of its bytes; "<|endoftext|>" comes after the ranks, as GPT-2 has it */
    const char *eot = "<|endoftext|>";
    if (!(t = bpe_new(&eot, 1, (int)(n - 256))) || !(ext = malloc((n + 1) * sizeof *ext))) goto oom;
    memset(ext, 0xFF, (n + 1) * sizeof *ext);
    ext[0] = (int32_t)n;
    int32_t sym[KILN_BPE_MAX_PIECE];
    for (size_t r = 0; r < n; r++) {
        if (tlen[r] == 1) {
            ext[t->byte_id[tok[r][0]]] = (int32_t)r;
            continue;
        }
        if (encode_piece(t, tok[r], tlen[r], sym) != 2) {
            kiln_error_set(err, "rank %zu: the token is not the merge of two tokens of lower ranks", r);
            goto fail;
        }
        if (bpe_add_merge(t, sym[0], sym[1])) goto oom;
        ext[t->size - 1] = (int32_t)r;
    }
    if (set_ext(t, ext, (int)n + 1, err)) {
        ext = NULL;
        goto fail;
    }
    ext = NULL;
    *out = t;
    t = NULL;
    rc = 0;
    goto done;
oom:
    kiln_error_set(err, "out of memory reading the tokenizer");
fail:
done:
    kiln_bpe_free(t);
    free(ext);
    free(tok);
    free(tlen);
    free(raw);
    return rc;
}

/* GPT-2's printable stand-ins for bytes (vocab.json and merges.txt write tokens with them): the printable
 * Latin-1 bytes stand for themselves, the other 68 for U+0100 onwards, in byte order. */
static void gpt2_byte_chars(uint32_t byte_char[256], int16_t char_byte[512]) {
    for (int i = 0; i < 512; i++) char_byte[i] = -1;
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        const int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        byte_char[b] = printable ? (uint32_t)b : next++;
        char_byte[byte_char[b]] = (int16_t)b;
    }
}

/* The bytes a token's text in GPT-2's stand-ins means, into out (room for n); their count, or -1 when a
 * character is not a stand-in. */
static int64_t gpt2_token_bytes(const int16_t char_byte[512], const uint8_t *s, size_t n, uint8_t *out) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (kiln_utf8_check(s + i, n - i) == 0) return -1;
        size_t k;
        const uint32_t c = next_cp(s + i, n - i, &k);
        if (c >= 512 || char_byte[c] < 0) return -1;
        out[o++] = (uint8_t)char_byte[c];
        i += k;
    }
    return (int64_t)o;
}

KILN_RT_API int kiln_bpe_load_gpt2(const char *vocab, size_t vocab_len, const char *merges, size_t merges_len, kiln_bpe **out,
                                   kiln_error *err) {
    *out = NULL;
    uint32_t byte_char[256];
    int16_t char_byte[512];
    gpt2_byte_chars(byte_char, char_byte);
    kiln_json v;
    size_t end;
    kiln_error jerr;
    if (kiln_json_parse(vocab, vocab_len, &v, &end, &jerr)) {
        kiln_error_set(err, "vocab.json: %s", jerr.msg);
        return -1;
    }
    kiln_bpe *plain = NULL, *t = NULL;
    bytes_map map = {0};
    int32_t *ext = NULL;
    uint8_t *buf = malloc(merges_len + vocab_len + 1);
    int rc = -1;
    if (!buf) goto oom;
    if (v.type != KILN_JSON_OBJECT || v.count < 256 || v.count > KILN_BPE_MAX_TOKENS) {
        kiln_error_set(err, "vocab.json: expected an object of 256 to %d tokens and their ids", KILN_BPE_MAX_TOKENS);
        goto fail;
    }
    for (size_t k = 0; k < v.count; k++)
        if (v.items[k].type != KILN_JSON_INT || v.items[k].i < 0 || v.items[k].i >= (int64_t)v.count) {
            kiln_error_set(err, "vocab.json: the id of '%.64s' must be an integer below %zu", v.keys[k], v.count);
            goto fail;
        }
    /* the merges, over the bytes alone (the specials are known once every merge is) */
    size_t lines = 0;
    for (size_t i = 0; i < merges_len; i++) lines += merges[i] == '\n';
    if (!(plain = bpe_new(NULL, 0, (int)lines + 1)) || bytes_map_new(&map, 256 + lines + 1)) goto oom;
    for (int32_t id = 0; id < 256; id++) bytes_put(&map, plain, id);
    size_t pos = 0;
    for (size_t line = 1; pos < merges_len; line++) {
        const char *nl = memchr(merges + pos, '\n', merges_len - pos);
        size_t stop = nl ? (size_t)(nl - merges) : merges_len, n = stop - pos;
        const uint8_t *l = (const uint8_t *)merges + pos;
        pos = stop + 1;
        if (n && l[n - 1] == '\r') n--;
        if (n == 0 || (line == 1 && n >= 8 && memcmp(l, "#version", 8) == 0)) continue;
        const uint8_t *sp = memchr(l, ' ', n);
        const size_t na = sp ? (size_t)(sp - l) : n;
        const int64_t la = sp ? gpt2_token_bytes(char_byte, l, na, buf) : -1;
        const int64_t lb = sp ? gpt2_token_bytes(char_byte, sp + 1, n - na - 1, buf + (la > 0 ? la : 0)) : -1;
        if (la <= 0 || lb <= 0) {
            kiln_error_set(err, "merges.txt line %zu: expected two tokens in GPT-2's byte characters, separated by a space", line);
            goto fail;
        }
        const int32_t a = bytes_find(&map, plain, buf, (size_t)la), b = bytes_find(&map, plain, buf + la, (size_t)lb);
        if (a < 0 || b < 0) {
            kiln_error_set(err, "merges.txt line %zu: '%.*s' is not a token the lines before make", line,
                           (int)(a < 0 ? na : n - na - 1), (const char *)(a < 0 ? l : sp + 1));
            goto fail;
        }
        if (merge_rank(plain, a, b) >= 0) {
            kiln_error_set(err, "merges.txt line %zu: the merge appears twice", line);
            goto fail;
        }
        if (bytes_find(&map, plain, buf, (size_t)(la + lb)) >= 0) {
            kiln_error_set(err, "merges.txt line %zu: makes a token an earlier line made", line);
            goto fail;
        }
        if (bpe_add_merge(plain, a, b)) goto oom;
        bytes_put(&map, plain, plain->size - 1);
    }
    /* vocab.json's ids of those tokens; its other entries are the specials */
    const char *specials[KILN_BPE_MAX_SPECIALS];
    int32_t special_ids[KILN_BPE_MAX_SPECIALS];
    int ns = 0;
    if (!(ext = malloc(v.count * sizeof *ext))) goto oom;
    memset(ext, 0xFF, v.count * sizeof *ext);
    for (size_t k = 0; k < v.count; k++) {
        const size_t kl = strlen(v.keys[k]);
        const int64_t nb = gpt2_token_bytes(char_byte, (const uint8_t *)v.keys[k], kl, buf);
        const int32_t id = nb > 0 ? bytes_find(&map, plain, buf, (size_t)nb) : -1;
        if (id >= 0) {
            ext[id] = (int32_t)v.items[k].i;
        } else if (ns < KILN_BPE_MAX_SPECIALS && special_ok(v.keys[k], kl)) {
            special_ids[ns] = (int32_t)v.items[k].i;
            specials[ns++] = v.keys[k];
        } else {
            kiln_error_set(err, "vocab.json: '%.64s' is neither a byte, a merge of merges.txt nor a special token (up to %d, "
                           "printable ASCII)", v.keys[k], KILN_BPE_MAX_SPECIALS);
            goto fail;
        }
    }
    for (int32_t id = 0; id < plain->size; id++)
        if (ext[id] < 0) {
            kiln_error_set(err, "vocab.json has no id for the token merges.txt line %d makes", id - 255);
            goto fail;
        }
    /* the tokenizer: the specials first, then the same bytes and merges */
    if (!(t = bpe_new(specials, ns, plain->num_merges))) goto oom;
    for (int r = 0; r < plain->num_merges; r++)
        if (bpe_add_merge(t, plain->merge[r][0] + ns, plain->merge[r][1] + ns)) goto oom;
    int32_t *ids = malloc((size_t)t->size * sizeof *ids);
    if (!ids) goto oom;
    for (int i = 0; i < ns; i++) ids[i] = special_ids[i];
    for (int32_t id = 0; id < plain->size; id++) ids[id + ns] = ext[id];
    kiln_error serr;
    if (set_ext(t, ids, (int)v.count, &serr)) {
        kiln_error_set(err, "vocab.json: %s", serr.msg);
        goto fail;
    }
    *out = t;
    t = NULL;
    rc = 0;
    goto done;
oom:
    kiln_error_set(err, "out of memory reading the tokenizer");
fail:
done:
    kiln_json_free(&v);
    kiln_bpe_free(plain);
    kiln_bpe_free(t);
    free(map.slot);
    free(ext);
    free(buf);
    return rc;
}

KILN_RT_API int kiln_bpe_load_file(const char *path, kiln_bpe **out, kiln_error *err) {
    *out = NULL;
    const size_t n = strlen(path);
    uint8_t *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    kiln_error e;
    int rc = -1;
    if (kiln_read_file(path, (size_t)1 << 30, &a, &la, err)) return -1;
    if (n >= 9 && strcmp(path + n - 9, ".tiktoken") == 0) {
        rc = kiln_bpe_load_tiktoken((const char *)a, la, out, &e);
    } else if (n >= 5 && strcmp(path + n - 5, ".json") == 0) { /* merges.txt beside it */
        const char *slash = strrchr(path, '/');
        const size_t dir = slash ? (size_t)(slash - path) + 1 : 0;
        char *mpath = malloc(dir + sizeof "merges.txt");
        if (!mpath) {
            free(a);
            kiln_error_set(err, "out of memory");
            return -1;
        }
        memcpy(mpath, path, dir);
        memcpy(mpath + dir, "merges.txt", sizeof "merges.txt");
        if (kiln_read_file(mpath, (size_t)1 << 30, &b, &lb, err)) {
            free(mpath);
            free(a);
            return -1;
        }
        free(mpath);
        rc = kiln_bpe_load_gpt2((const char *)a, la, (const char *)b, lb, out, &e);
    } else {
        rc = kiln_bpe_parse((const char *)a, la, out, &e);
    }
    if (rc) kiln_error_set(err, "%s: %s", path, e.msg);
    free(a);
    free(b);
    return rc;
}
