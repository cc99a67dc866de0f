/*
 * rt_tool.c - a small driver that exposes kiln_rt functions to test_runtime.py
 * (things the `infer` binary cannot reach directly: parsing files that do not
 * match a model, the generic writers, the RNG and the sampler).
 *
 *   rt_tool st-dump FILE          print metadata and tensors of a safetensors file
 *   rt_tool st-write OUT          write a file with assorted dtypes, ranks and metadata
 *   rt_tool npy-dump FILE         print shape and values of an int .npy file
 *   rt_tool npy-write PREFIX      write PREFIX{0d,1d,3d,i32}.npy
 *   rt_tool rng SEED N            print N u64 values, N doubles and N normals
 *   rt_tool sample T K P N L...   sample N times from logits L, print counts per id
 *   rt_tool mlm SEED N RATE        masked-LM corruption of N tokens (i mod 256; mask id 256, random tokens
 *                                 below 256): prints the counts chosen, masked, random, kept, and the checksum
 *   rt_tool png W H SEED OUT      write a W x H test picture (flat blocks, gradients, noise) with kiln_png_encode
 *   rt_tool svg-cells N OUT       write a figure of N one-pixel cells as an SVG (kiln_figure_write)
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_plot.h"
#include "kiln_rt.h"

/* kiln_mlm_mask over n tokens: how many positions were chosen, and of those how many became the mask id, another
 * token (a random replacement that drew the token itself counts as kept), or stayed; how many positions break the
 * rules (should be 0); and an FNV-1a checksum of the inputs and targets, the same in every run. */
static int mlm(const char *seed_s, const char *n_s, const char *rate_s) {
    const size_t n = (size_t)strtoull(n_s, NULL, 10);
    int32_t *tokens = malloc(n * sizeof *tokens), *inputs = malloc(n * sizeof *inputs), *targets = malloc(n * sizeof *targets);
    if (!tokens || !inputs || !targets) return 1;
    for (size_t i = 0; i < n; i++) tokens[i] = (int32_t)(i % 256);
    kiln_rng r;
    kiln_rng_seed(&r, strtoull(seed_s, NULL, 10));
    kiln_mlm_mask(&r, tokens, n, 256, strtod(rate_s, NULL), 256, inputs, targets);
    size_t chosen = 0, masked = 0, random = 0, kept = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (targets[i] < 0) {
            bad += targets[i] != -1 || inputs[i] != tokens[i];
            continue;
        }
        chosen++;
        bad += targets[i] != tokens[i];
        if (inputs[i] == 256) masked++;
        else if (inputs[i] != tokens[i]) random++;
        else kept++;
    }
    uint64_t h = kiln_fnv1a64(KILN_FNV1A64_INIT, inputs, n * sizeof *inputs);
    h = kiln_fnv1a64(h, targets, n * sizeof *targets);
    printf("%zu %zu %zu %zu %zu %016" PRIx64 "\n", chosen, masked, random, kept, bad, h);
    free(tokens);
    free(inputs);
    free(targets);
    return 0;
}

/* Prints s as hex so tests can compare exact bytes. */
static void print_hex(const char *s) {
    for (; *s; s++) printf("%02x", (unsigned char)*s);
}

static int st_dump(const char *path) {
    kiln_safetensors st;
    kiln_error err;
    if (kiln_st_open(path, &st, &err)) kiln_die("%s", err.msg);
    for (size_t i = 0; i < st.num_meta; i++) {
        printf("meta ");
        print_hex(st.meta[i].key);
        printf(" ");
        print_hex(st.meta[i].value);
        printf("\n");
    }
    for (size_t i = 0; i < st.num_tensors; i++) {
        const kiln_st_tensor *t = &st.tensors[i];
        if (kiln_st_find(&st, t->name) != t) kiln_die("kiln_st_find is broken");
        printf("tensor ");
        print_hex(t->name);
        printf(" %s [", kiln_st_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) printf("%s%" PRId64, d ? ", " : "", t->shape[d]);
        printf("] %zu %zu\n", t->offset, t->nbytes);
    }
    kiln_st_close(&st);
    return 0;
}

static int st_write(const char *out) {
    static const float f32[6] = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, 7.0f};
    static const int32_t i32[4] = {-1, 2, 2147483647, -2147483647 - 1};
    static const int64_t i64[3] = {INT64_MIN, 0, INT64_MAX};
    static const uint8_t u8[5] = {0, 1, 127, 128, 255};
    static const float scalar = 42.0f;
    kiln_st_entry e[6] = {
        {"f32 \"quoted\"\\", KILN_DT_F32, 2, {2, 3}, f32},
        {"i32", KILN_DT_I32, 1, {4}, i32},
        {"i64", KILN_DT_I64, 1, {3}, i64},
        {"u8.\xc3\xa9", KILN_DT_U8, 1, {5}, u8},
        {"empty", KILN_DT_F32, 2, {0, 7}, NULL},
        {"scalar", KILN_DT_F32, 0, {0}, &scalar},
    };
    const char *keys[] = {"format", "note"};
    const char *values[] = {"pt", "tab\there, newline\nand \xf0\x9f\x98\x80"};
    kiln_error err;
    if (kiln_st_write(out, e, 6, keys, values, 2, &err)) kiln_die("%s", err.msg);
    return 0;
}

static int npy_dump(const char *path) {
    kiln_npy_ints a;
    kiln_error err;
    if (kiln_npy_read_ints(path, (size_t)1 << 30, &a, &err)) kiln_die("%s", err.msg);
    printf("shape [");
    for (int d = 0; d < a.ndim; d++) printf("%s%" PRId64, d ? ", " : "", a.shape[d]);
    printf("]\nvalues");
    for (size_t i = 0; i < a.numel; i++) printf(" %" PRId64, a.data[i]);
    printf("\n");
    kiln_npy_free_ints(&a);
    return 0;
}

static int npy_write(const char *prefix) {
    char path[4096];
    kiln_error err;
    float f[24];
    int32_t ints[5] = {1, -2, 3, -4, 2147483647};
    for (int i = 0; i < 24; i++) f[i] = (float)i * 0.5f - 3.0f;
    int64_t s0[1] = {0}, s1[1] = {5}, s3[3] = {2, 3, 4};
    snprintf(path, sizeof path, "%s0d.npy", prefix);
    if (kiln_npy_write_f32(path, f, 0, s0, &err)) kiln_die("%s", err.msg);
    snprintf(path, sizeof path, "%s1d.npy", prefix);
    if (kiln_npy_write_f32(path, f, 1, s1, &err)) kiln_die("%s", err.msg);
    snprintf(path, sizeof path, "%s3d.npy", prefix);
    if (kiln_npy_write_f32(path, f, 3, s3, &err)) kiln_die("%s", err.msg);
    snprintf(path, sizeof path, "%si32.npy", prefix);
    if (kiln_npy_write_i32(path, ints, 1, s1, &err)) kiln_die("%s", err.msg);
    return 0;
}

static int rng(const char *seed_s, const char *n_s) {
    uint64_t seed;
    int64_t n;
    kiln_error err;
    if (kiln_flag_u64("SEED", seed_s, &seed, &err) || kiln_flag_i64("N", n_s, 0, 10000000, &n, &err))
        kiln_die_code(2, "%s", err.msg);
    kiln_rng r;
    kiln_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) printf("%" PRIu64 "\n", kiln_rng_u64(&r));
    for (int64_t i = 0; i < n; i++) printf("%.17g\n", kiln_rng_double(&r));
    for (int64_t i = 0; i < n; i++) printf("%.17g\n", kiln_rng_normal(&r));
    return 0;
}

static int sample(int argc, char **argv) {
    if (argc < 5) kiln_die_code(2, "usage: sample T K P N LOGITS...");
    double temp, top_p;
    int64_t k, n;
    kiln_error err;
    if (kiln_flag_f64("T", argv[0], 0, 1e6, &temp, &err) ||
        kiln_flag_i64("K", argv[1], 0, 1000000, &k, &err) ||
        kiln_flag_f64("P", argv[2], 0, 1, &top_p, &err) ||
        kiln_flag_i64("N", argv[3], 1, 100000000, &n, &err))
        kiln_die_code(2, "%s", err.msg);
    int nl = argc - 4;
    float *logits = kiln_xcalloc((size_t)nl, sizeof *logits, "logits");
    long *counts = kiln_xcalloc((size_t)nl, sizeof *counts, "counts");
    for (int i = 0; i < nl; i++) {
        double v;
        if (kiln_flag_f64("LOGIT", argv[4 + i], -1e30, 1e30, &v, &err)) kiln_die_code(2, "%s", err.msg);
        logits[i] = (float)v;
    }
    kiln_sampler s;
    if (kiln_sampler_init(&s, nl)) kiln_die("out of memory");
    kiln_rng r;
    kiln_rng_seed(&r, 99);
    for (int64_t i = 0; i < n; i++) counts[kiln_sample(&s, logits, temp, (int)k, top_p, &r)]++;
    for (int i = 0; i < nl; i++) printf("%s%ld", i ? " " : "", counts[i]);
    printf("\n");
    kiln_sampler_free(&s);
    free(logits);
    free(counts);
    return 0;
}

/* The test picture's pixel (x, y): blocks of 16 that are flat, a gradient, or a hash of (x, y, seed). */
static uint32_t test_pixel(uint32_t x, uint32_t y, uint32_t seed) {
    const uint32_t kind = (x / 16 + y / 16) % 3;
    if (kind == 0) return 0x336699;
    if (kind == 1) return ((x * 3 + y) & 255) * 0x010101u;
    return ((x * 73856093u) ^ (y * 19349663u) ^ (seed * 83492791u)) & 0xffffffu;
}

static int png(const char *w_s, const char *h_s, const char *seed_s, const char *path) {
    const int w = atoi(w_s), h = atoi(h_s);
    const uint32_t seed = (uint32_t)strtoul(seed_s, NULL, 10);
    uint8_t *rgb = malloc((size_t)w * h * 3 + 1), *bytes;
    size_t len;
    if (!rgb) return 1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const uint32_t c = test_pixel((uint32_t)x, (uint32_t)y, seed);
            uint8_t *p = rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(c >> 16); p[1] = (uint8_t)(c >> 8); p[2] = (uint8_t)c;
        }
    if (kiln_png_encode(rgb, w, h, &bytes, &len)) kiln_die("out of memory");
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(bytes, 1, len, f) != len || fclose(f)) kiln_die("cannot write %s", path);
    free(bytes);
    free(rgb);
    return 0;
}

static int svg_cells(const char *n_s, const char *path) {
    const long n = atol(n_s);
    kiln_figure f;
    kiln_figure_init(&f, 1000, 1000);
    for (long i = 0; i < n; i++) kiln_figure_rect(&f, (int)(i % 1000), (int)(i / 1000 % 1000), 1, 1, kiln_blues((double)(i % 7) / 6));
    kiln_error err;
    const int rc = kiln_figure_write(&f, path, &err);
    kiln_figure_free(&f);
    if (rc) kiln_die("%s", err.msg);
    return 0;
}

int main(int argc, char **argv) {
    kiln_set_progname(argv[0]);
    if (argc >= 3 && strcmp(argv[1], "st-dump") == 0) return st_dump(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "st-write") == 0) return st_write(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "npy-dump") == 0) return npy_dump(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "npy-write") == 0) return npy_write(argv[2]);
    if (argc >= 4 && strcmp(argv[1], "rng") == 0) return rng(argv[2], argv[3]);
    if (argc >= 5 && strcmp(argv[1], "mlm") == 0) return mlm(argv[2], argv[3], argv[4]);
    if (argc >= 2 && strcmp(argv[1], "sample") == 0) return sample(argc - 2, argv + 2);
    if (argc >= 6 && strcmp(argv[1], "png") == 0) return png(argv[2], argv[3], argv[4], argv[5]);
    if (argc >= 4 && strcmp(argv[1], "svg-cells") == 0) return svg_cells(argv[2], argv[3]);
    kiln_die_code(2, "usage: rt_tool st-dump|st-write|npy-dump|npy-write|rng|mlm|sample|png|svg-cells ...");
}
