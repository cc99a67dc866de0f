/*
 * kiln_plot.c - figures as PNG or SVG with no library (kiln_plot.h). PNG: 8-bit RGB, each row filtered
 * with "up" when it repeats the row above and "sub" otherwise, so flat areas become runs of zeros, then one
 * fixed-Huffman deflate block whose only matches are runs of a repeated byte (distance 1); that is enough for
 * heat maps and text on a white ground. CRC-32 and Adler-32 as the PNG and zlib specifications define them.
 */
#include "kiln_plot.h"

#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

/* The 5x7 pixel font for ' ' .. '~': seven rows per glyph, bit 4 the leftmost pixel (the same glyphs as the
 * charts of kiln sweep). */
static const uint8_t FONT[95][7] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, /* ' ' */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04}, /* '!' */
    {0x0a, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00}, /* '"' */
    {0x0a, 0x0a, 0x1f, 0x0a, 0x1f, 0x0a, 0x0a}, /* '#' */
    {0x04, 0x0f, 0x14, 0x0e, 0x05, 0x1e, 0x04}, /* '$' */
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}, /* '%' */
    {0x0c, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0d}, /* '&' */
    {0x04, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00}, /* "'" */
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}, /* '(' */
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}, /* ')' */
    {0x00, 0x04, 0x15, 0x0e, 0x15, 0x04, 0x00}, /* '*' */
    {0x00, 0x04, 0x04, 0x1f, 0x04, 0x04, 0x00}, /* '+' */
    {0x00, 0x00, 0x00, 0x00, 0x06, 0x04, 0x08}, /* ',' */
    {0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00}, /* '-' */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c}, /* '.' */
    {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}, /* '/' */
    {0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e}, /* '0' */
    {0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e}, /* '1' */
    {0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f}, /* '2' */
    {0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e}, /* '3' */
    {0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02}, /* '4' */
    {0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e}, /* '5' */
    {0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e}, /* '6' */
    {0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}, /* '7' */
    {0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e}, /* '8' */
    {0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c}, /* '9' */
    {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00}, /* ':' */
    {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x04, 0x08}, /* ';' */
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}, /* '<' */
    {0x00, 0x00, 0x1f, 0x00, 0x1f, 0x00, 0x00}, /* '=' */
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}, /* '>' */
    {0x0e, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}, /* '?' */
    {0x0e, 0x11, 0x01, 0x0d, 0x15, 0x15, 0x0e}, /* '@' */
    {0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11}, /* 'A' */
    {0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e}, /* 'B' */
    {0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e}, /* 'C' */
    {0x1c, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1c}, /* 'D' */
    {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f}, /* 'E' */
    {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10}, /* 'F' */
    {0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f}, /* 'G' */
    {0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11}, /* 'H' */
    {0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e}, /* 'I' */
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c}, /* 'J' */
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}, /* 'K' */
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f}, /* 'L' */
    {0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11}, /* 'M' */
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}, /* 'N' */
    {0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}, /* 'O' */
    {0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10}, /* 'P' */
    {0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d}, /* 'Q' */
    {0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11}, /* 'R' */
    {0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e}, /* 'S' */
    {0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}, /* 'T' */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}, /* 'U' */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04}, /* 'V' */
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a}, /* 'W' */
    {0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11}, /* 'X' */
    {0x11, 0x11, 0x11, 0x0a, 0x04, 0x04, 0x04}, /* 'Y' */
    {0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f}, /* 'Z' */
    {0x0e, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0e}, /* '[' */
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00}, /* '\\' */
    {0x0e, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0e}, /* ']' */
    {0x04, 0x0a, 0x11, 0x00, 0x00, 0x00, 0x00}, /* '^' */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f}, /* '_' */
    {0x08, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00}, /* '`' */
    {0x00, 0x00, 0x0e, 0x01, 0x0f, 0x11, 0x0f}, /* 'a' */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1e}, /* 'b' */
    {0x00, 0x00, 0x0e, 0x10, 0x10, 0x11, 0x0e}, /* 'c' */
    {0x01, 0x01, 0x0d, 0x13, 0x11, 0x11, 0x0f}, /* 'd' */
    {0x00, 0x00, 0x0e, 0x11, 0x1f, 0x10, 0x0e}, /* 'e' */
    {0x06, 0x09, 0x08, 0x1c, 0x08, 0x08, 0x08}, /* 'f' */
    {0x00, 0x0f, 0x11, 0x11, 0x0f, 0x01, 0x0e}, /* 'g' */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11}, /* 'h' */
    {0x04, 0x00, 0x0c, 0x04, 0x04, 0x04, 0x0e}, /* 'i' */
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0c}, /* 'j' */
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12}, /* 'k' */
    {0x0c, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e}, /* 'l' */
    {0x00, 0x00, 0x1a, 0x15, 0x15, 0x11, 0x11}, /* 'm' */
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11}, /* 'n' */
    {0x00, 0x00, 0x0e, 0x11, 0x11, 0x11, 0x0e}, /* 'o' */
    {0x00, 0x00, 0x1e, 0x11, 0x1e, 0x10, 0x10}, /* 'p' */
    {0x00, 0x00, 0x0d, 0x13, 0x0f, 0x01, 0x01}, /* 'q' */
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10}, /* 'r' */
    {0x00, 0x00, 0x0e, 0x10, 0x0e, 0x01, 0x1e}, /* 's' */
    {0x08, 0x08, 0x1c, 0x08, 0x08, 0x09, 0x06}, /* 't' */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0d}, /* 'u' */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0a, 0x04}, /* 'v' */
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0a}, /* 'w' */
    {0x00, 0x00, 0x11, 0x0a, 0x04, 0x0a, 0x11}, /* 'x' */
    {0x00, 0x00, 0x11, 0x11, 0x0f, 0x01, 0x0e}, /* 'y' */
    {0x00, 0x00, 0x1f, 0x02, 0x04, 0x08, 0x1f}, /* 'z' */
    {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02}, /* '{' */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}, /* '|' */
    {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08}, /* '}' */
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00}, /* '~' */
};

static void *grow(void *p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(p, c * size);
    if (!q) kiln_die("out of memory for a figure");
    *cap = c;
    return q;
}

void kiln_figure_init(kiln_figure *f, int width, int height) {
    memset(f, 0, sizeof *f);
    f->width = width;
    f->height = height;
}

void kiln_figure_free(kiln_figure *f) {
    for (size_t i = 0; i < f->num_texts; i++) free(f->texts[i].text);
    free(f->texts);
    free(f->rects);
    memset(f, 0, sizeof *f);
}

void kiln_figure_rect(kiln_figure *f, int x, int y, int w, int h, uint32_t rgb) {
    f->rects = grow(f->rects, &f->cap_rects, f->num_rects + 1, sizeof *f->rects);
    f->rects[f->num_rects++] = (kiln_fig_rect){x, y, w, h, rgb};
}

void kiln_figure_text(kiln_figure *f, int x, int y, int scale, int vertical, uint32_t rgb, const char *text) {
    f->texts = grow(f->texts, &f->cap_texts, f->num_texts + 1, sizeof *f->texts);
    char *copy = malloc(strlen(text) + 1);
    if (!copy) kiln_die("out of memory for a figure");
    strcpy(copy, text);
    f->texts[f->num_texts++] = (kiln_fig_text){x, y, scale, vertical, rgb, copy};
}

int kiln_text_width(const char *text, int scale) {
    const int n = (int)strlen(text);
    return n ? (n * (KILN_GLYPH_W + 1) - 1) * scale : 0;
}

uint32_t kiln_blues(double v) {
    static const uint8_t stops[5][3] = {{247, 251, 255}, {198, 219, 239}, {107, 174, 214}, {33, 113, 181}, {8, 48, 107}};
    if (!(v > 0)) v = 0;
    if (v > 1) v = 1;
    const double x = v * 4;
    int i = (int)x;
    if (i > 3) i = 3;
    const double t = x - i;
    uint32_t c = 0;
    for (int k = 0; k < 3; k++) c = c << 8 | (uint32_t)(stops[i][k] + t * (stops[i + 1][k] - stops[i][k]) + 0.5);
    return c;
}

/* ------------------------------------------------------------------------- */
/* rasterising */

static void put(uint8_t *rgb, int w, int h, int x, int y, uint32_t c) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    uint8_t *p = rgb + ((size_t)y * w + x) * 3;
    p[0] = (uint8_t)(c >> 16); p[1] = (uint8_t)(c >> 8); p[2] = (uint8_t)c;
}

static void raster_text(uint8_t *rgb, int w, int h, const kiln_fig_text *t) {
    const int s = t->scale;
    int off = 0;  /* pixels along the text */
    for (const unsigned char *c = (const unsigned char *)t->text; *c; c++, off += KILN_GLYPH_W + 1) {
        const uint8_t *glyph = FONT[*c >= 32 && *c < 127 ? *c - 32 : '?' - 32];
        for (int row = 0; row < KILN_GLYPH_H; row++)
            for (int col = 0; col < KILN_GLYPH_W; col++) {
                if (!(glyph[row] >> (KILN_GLYPH_W - 1 - col) & 1)) continue;
                for (int dy = 0; dy < s; dy++)
                    for (int dx = 0; dx < s; dx++) {
                        if (t->vertical)  /* rotated a quarter turn anticlockwise: reads upwards from (x, y) */
                            put(rgb, w, h, t->x + row * s + dx, t->y - (off + col + 1) * s + dy, t->rgb);
                        else
                            put(rgb, w, h, t->x + (off + col) * s + dx, t->y + row * s + dy, t->rgb);
                    }
            }
    }
}

/* ------------------------------------------------------------------------- */
/* PNG */

typedef struct { uint8_t *buf; size_t len, cap; uint64_t bits; int nbits; int failed; } sink;

static void emit_byte(sink *o, uint8_t b) {
    if (o->len == o->cap) {
        size_t c = o->cap ? o->cap * 2 : 4096;
        uint8_t *q = realloc(o->buf, c);
        if (!q) { o->failed = 1; return; }
        o->buf = q; o->cap = c;
    }
    o->buf[o->len++] = b;
}
static void emit_u32(sink *o, uint32_t v) { for (int k = 3; k >= 0; k--) emit_byte(o, (uint8_t)(v >> (8 * k))); }
/* n bits of v, least significant first (deflate's order for everything but Huffman codes) */
static void emit_bits(sink *o, uint32_t v, int n) {
    o->bits |= (uint64_t)v << o->nbits;
    o->nbits += n;
    while (o->nbits >= 8) { emit_byte(o, (uint8_t)o->bits); o->bits >>= 8; o->nbits -= 8; }
}
/* a Huffman code of n bits, most significant bit first */
static void emit_code(sink *o, uint32_t code, int n) {
    uint32_t r = 0;
    for (int k = 0; k < n; k++) r = r << 1 | (code >> k & 1);
    emit_bits(o, r, n);
}
/* the fixed literal/length code of symbol v (RFC 1951, 3.2.6) */
static void emit_symbol(sink *o, int v) {
    if (v < 144) emit_code(o, 0x30 + v, 8);
    else if (v < 256) emit_code(o, 0x190 + v - 144, 9);
    else if (v < 280) emit_code(o, v - 256, 7);
    else emit_code(o, 0xc0 + v - 280, 8);
}
/* a match of len (3..258) bytes at distance 1 */
static void emit_run(sink *o, int len) {
    static const int base[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
                                 131, 163, 195, 227, 258};
    static const int extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
    int k = 28;
    while (base[k] > len) k--;
    emit_symbol(o, 257 + k);
    if (extra[k]) emit_bits(o, (uint32_t)(len - base[k]), extra[k]);
    emit_code(o, 0, 5);  /* distance code 0: distance 1 */
}

static uint32_t crc_table[256];
static void crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}
static uint32_t crc32_of(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 255] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

static void emit_chunk(sink *o, const char *type, const uint8_t *data, size_t n) {
    emit_u32(o, (uint32_t)n);
    const size_t start = o->len;
    for (int k = 0; k < 4; k++) emit_byte(o, (uint8_t)type[k]);
    for (size_t i = 0; i < n; i++) emit_byte(o, data[i]);
    if (!o->failed) emit_u32(o, crc32_of(o->buf + start, o->len - start));
}

int kiln_png_encode(const uint8_t *rgb, int w, int h, uint8_t **out, size_t *len) {
    crc_init();
    const size_t stride = (size_t)w * 3, raw_len = (size_t)h * (stride + 1);
    uint8_t *raw = malloc(raw_len ? raw_len : 1);
    if (!raw) return -1;
    for (int y = 0; y < h; y++) {
        uint8_t *r = raw + (size_t)y * (stride + 1);
        const uint8_t *cur = rgb + (size_t)y * stride, *up = y ? cur - stride : NULL;
        if (up && memcmp(cur, up, stride) == 0) {  /* filter 2, up: a repeated row is all zeros */
            r[0] = 2;
            memset(r + 1, 0, stride);
        } else {  /* filter 1, sub: each byte less the same channel of the pixel to its left */
            r[0] = 1;
            for (size_t i = 0; i < stride; i++) r[1 + i] = (uint8_t)(cur[i] - (i >= 3 ? cur[i - 3] : 0));
        }
    }
    sink z = {0};
    emit_byte(&z, 0x78); emit_byte(&z, 0x01);  /* zlib: deflate, 32K window, no dictionary */
    emit_bits(&z, 1, 1);                       /* the final block */
    emit_bits(&z, 1, 2);                       /* fixed Huffman codes */
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < raw_len;) {
        size_t run = 0;
        if (i > 0)
            while (run < 258 && i + run < raw_len && raw[i + run] == raw[i - 1]) run++;
        if (run >= 3) {
            emit_run(&z, (int)run);
        } else {
            run = 1;
            emit_symbol(&z, raw[i]);
        }
        for (size_t k = 0; k < run; k++) { a = (a + raw[i + k]) % 65521; b = (b + a) % 65521; }
        i += run;
    }
    emit_symbol(&z, 256);
    if (z.nbits) emit_bits(&z, 0, 8 - z.nbits);
    emit_u32(&z, b << 16 | a);
    free(raw);

    sink png = {0};
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    for (int k = 0; k < 8; k++) emit_byte(&png, signature[k]);
    uint8_t ihdr[13] = {0};
    for (int k = 0; k < 4; k++) { ihdr[k] = (uint8_t)((uint32_t)w >> (24 - 8 * k)); ihdr[4 + k] = (uint8_t)((uint32_t)h >> (24 - 8 * k)); }
    ihdr[8] = 8;  /* bits per channel */
    ihdr[9] = 2;  /* RGB */
    emit_chunk(&png, "IHDR", ihdr, sizeof ihdr);
    emit_chunk(&png, "IDAT", z.buf, z.len);
    emit_chunk(&png, "IEND", NULL, 0);
    free(z.buf);
    if (z.failed || png.failed) { free(png.buf); return -1; }
    *out = png.buf;
    *len = png.len;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* SVG */

static void svg_escaped(sink *o, const char *s) {
    for (; *s; s++) {
        const char *e = *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : *s == '&' ? "&amp;" : *s == '"' ? "&quot;" : NULL;
        if (e) for (; *e; e++) emit_byte(o, (uint8_t)*e);
        else emit_byte(o, (unsigned char)*s >= 32 && (unsigned char)*s < 127 ? (uint8_t)*s : '?');
    }
}
static void svg_printf(sink *o, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    for (int i = 0; i < n && i < (int)sizeof buf - 1; i++) emit_byte(o, (uint8_t)buf[i]);
}

static void svg_encode(const kiln_figure *f, sink *o) {
    svg_printf(o, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                  "font-family=\"monospace\">\n<rect width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n",
               f->width, f->height, f->width, f->height, f->width, f->height);
    for (size_t i = 0; i < f->num_rects; i++) {
        const kiln_fig_rect *r = &f->rects[i];
        svg_printf(o, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#%06x\"/>\n", r->x, r->y, r->w, r->h,
                   (unsigned)r->rgb);
    }
    for (size_t i = 0; i < f->num_texts; i++) {
        const kiln_fig_text *t = &f->texts[i];
        /* the pixel font's 7-pixel letters are about the capitals of a 9-pixel monospace font */
        if (t->vertical)
            svg_printf(o, "<text transform=\"translate(%d,%d) rotate(-90)\" font-size=\"%d\" fill=\"#%06x\">",
                       t->x + KILN_GLYPH_H * t->scale, t->y, 9 * t->scale, (unsigned)t->rgb);
        else
            svg_printf(o, "<text x=\"%d\" y=\"%d\" font-size=\"%d\" fill=\"#%06x\">", t->x, t->y + KILN_GLYPH_H * t->scale,
                       9 * t->scale, (unsigned)t->rgb);
        svg_escaped(o, t->text);
        svg_printf(o, "</text>\n");
    }
    svg_printf(o, "</svg>\n");
}

/* ------------------------------------------------------------------------- */

static int ends_with(const char *s, const char *suffix) {
    const size_t n = strlen(s), m = strlen(suffix);
    if (n < m) return 0;
    for (size_t i = 0; i < m; i++) {
        char c = s[n - m + i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != suffix[i]) return 0;
    }
    return 1;
}

int kiln_figure_write(const kiln_figure *f, const char *path, kiln_error *err) {
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (ends_with(path, ".svg")) {
        if (f->num_rects > KILN_SVG_MAX_RECTS) {
            snprintf(err->msg, sizeof err->msg, "%s: the picture has %zu cells, too many for an SVG (at most %d): write a .png",
                     path, f->num_rects, KILN_SVG_MAX_RECTS);
            return -1;
        }
        sink o = {0};
        svg_encode(f, &o);
        if (o.failed) { free(o.buf); snprintf(err->msg, sizeof err->msg, "%s: out of memory for the SVG", path); return -1; }
        bytes = o.buf; len = o.len;
    } else {
        if (f->width <= 0 || f->height <= 0 || (size_t)f->width * (size_t)f->height > ((size_t)1 << 28)) {
            snprintf(err->msg, sizeof err->msg, "%s: a %d x %d picture is too large", path, f->width, f->height);
            return -1;
        }
        uint8_t *rgb = malloc((size_t)f->width * f->height * 3);
        if (!rgb) { snprintf(err->msg, sizeof err->msg, "%s: out of memory for the picture", path); return -1; }
        memset(rgb, 255, (size_t)f->width * f->height * 3);
        for (size_t i = 0; i < f->num_rects; i++) {
            const kiln_fig_rect *r = &f->rects[i];
            for (int y = r->y; y < r->y + r->h; y++)
                for (int x = r->x; x < r->x + r->w; x++) put(rgb, f->width, f->height, x, y, r->rgb);
        }
        for (size_t i = 0; i < f->num_texts; i++) raster_text(rgb, f->width, f->height, &f->texts[i]);
        const int rc = kiln_png_encode(rgb, f->width, f->height, &bytes, &len);
        free(rgb);
        if (rc) { snprintf(err->msg, sizeof err->msg, "%s: out of memory for the PNG", path); return -1; }
    }
    kiln_atomic_file af;
    int rc = kiln_atomic_open(&af, path, err);
    if (!rc) {
        if (kiln_atomic_write(&af, bytes, len, err)) {
            kiln_atomic_abort(&af);
            rc = -1;
        } else {
            rc = kiln_atomic_commit(&af, err);
        }
    }
    free(bytes);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* heat maps */

/* The step between labelled indices when not every index fits: 1, 2, 5, 10, 20, 50, ... pixels apart >= min. */
static int tick_step(int cell, int min) {
    for (int step = 1;; step *= 10) {
        if (step * cell >= min) return step;
        if (2 * step * cell >= min) return 2 * step;
        if (5 * step * cell >= min) return 5 * step;
    }
}

void kiln_heatmaps(kiln_figure *f, const float *values, int panels, int rows, int cols,
                   const char *const *row_labels, const char *const *col_labels,
                   const char *const *panel_titles, const char *title, const char *subtitle) {
    const int margin = 16, gap = 5, between = 28;
    const int per_row = panels == 1 ? 1 : (int)ceil(sqrt((double)panels));
    const int grid_rows = (panels + per_row - 1) / per_row;
    const int longest = rows > cols ? rows : cols;
    int cell = (panels == 1 ? 640 : 1080 / per_row) / longest;
    if (cell > 32) cell = 32;
    if (cell < 1) cell = 1;
    const int labelled = cell >= 8, ls = cell >= 16 ? 2 : 1;
    const int step = labelled ? 1 : tick_step(cell, 14);
    char num[24];
    /* the widest row label and the tallest (vertical) column label */
    int lw = 0, lh = 0;
    for (int t = 0; t < rows; t += step) {
        const char *s = labelled ? row_labels[t] : (snprintf(num, sizeof num, "%d", t), num);
        const int w = kiln_text_width(s, labelled ? ls : 1);
        lw = w > lw ? w : lw;
    }
    for (int s = 0; s < cols; s += step) {
        const char *l = labelled ? col_labels[s] : (snprintf(num, sizeof num, "%d", s), num);
        const int w = kiln_text_width(l, labelled ? ls : 1);
        lh = w > lh ? w : lh;
    }
    const int ps = panels == 1 ? 2 : 1, title_h = panel_titles ? KILN_GLYPH_H * ps + 8 : 0;
    const int map_w = cols * cell, map_h = rows * cell;
    const int pw = lw + gap + map_w, ph = title_h + lh + gap + map_h;
    const int head_h = KILN_GLYPH_H * 2 + 8 + (subtitle ? KILN_GLYPH_H + 10 : 0);
    const int bar_x = margin + per_row * pw + (per_row - 1) * between + 24;
    int width = bar_x + 16 + 6 + kiln_text_width("0.5", 1) + margin;
    const int tw = margin + kiln_text_width(title, 2) + margin, sw = subtitle ? margin + kiln_text_width(subtitle, 1) + margin : 0;
    width = width > tw ? width : tw;
    width = width > sw ? width : sw;
    const int height = margin + head_h + grid_rows * ph + (grid_rows - 1) * between + margin;
    kiln_figure_init(f, width, height);
    kiln_figure_text(f, margin, margin, 2, 0, 0x000000, title);
    if (subtitle) kiln_figure_text(f, margin, margin + KILN_GLYPH_H * 2 + 8, 1, 0, 0x444444, subtitle);
    int first_map_y = 0;
    for (int p = 0; p < panels; p++) {
        const int ox = margin + (p % per_row) * (pw + between), oy = margin + head_h + (p / per_row) * (ph + between);
        const int mx = ox + lw + gap, my = oy + title_h + lh + gap;
        if (p == 0) first_map_y = my;
        if (panel_titles) kiln_figure_text(f, mx, oy, ps, 0, 0x000000, panel_titles[p]);
        kiln_figure_rect(f, mx - 1, my - 1, map_w + 2, map_h + 2, 0x999999);
        kiln_figure_rect(f, mx, my, map_w, map_h, 0xffffff);
        const float *v = values + (size_t)p * rows * cols;
        for (int t = 0; t < rows; t++)
            for (int s = 0; s < cols; s++) {
                const float x = v[(size_t)t * cols + s];
                if (x > 0) kiln_figure_rect(f, mx + s * cell, my + t * cell, cell, cell, kiln_blues(x));
            }
        const int sc = labelled ? ls : 1;
        for (int t = 0; t < rows; t += step) {
            const char *l = labelled ? row_labels[t] : (snprintf(num, sizeof num, "%d", t), num);
            const int y = labelled ? my + t * cell + (cell - KILN_GLYPH_H * sc) / 2 : my + t * cell;
            kiln_figure_text(f, mx - gap - kiln_text_width(l, sc), y, sc, 0, 0x222222, l);
        }
        for (int s = 0; s < cols; s += step) {
            const char *l = labelled ? col_labels[s] : (snprintf(num, sizeof num, "%d", s), num);
            const int x = labelled ? mx + s * cell + (cell - KILN_GLYPH_H * sc) / 2 : mx + s * cell;
            kiln_figure_text(f, x, my - gap, sc, 1, 0x222222, l);
        }
    }
    /* the colour bar: 0 at the bottom, 1 at the top */
    int bar_h = map_h < 100 ? 100 : map_h > 240 ? 240 : map_h;
    if (first_map_y + bar_h > height - margin) bar_h = height - margin - first_map_y;
    kiln_figure_rect(f, bar_x - 1, first_map_y - 1, 18, bar_h + 2, 0x999999);
    for (int i = 0; i < bar_h; i++) kiln_figure_rect(f, bar_x, first_map_y + i, 16, 1, kiln_blues(1.0 - (double)i / (bar_h - 1)));
    kiln_figure_text(f, bar_x + 22, first_map_y, 1, 0, 0x222222, "1");
    kiln_figure_text(f, bar_x + 22, first_map_y + (bar_h - KILN_GLYPH_H) / 2, 1, 0, 0x222222, "0.5");
    kiln_figure_text(f, bar_x + 22, first_map_y + bar_h - KILN_GLYPH_H, 1, 0, 0x222222, "0");
}
