/*
 * kiln_rt.h - the Kiln C runtime library.
 *
 * Shared by the binaries the Kiln compiler generates (infer, and later
 * train). Everything here is independent of any particular model: the
 * model-specific tables live in the generated model.h / model.c.
 *
 * Contents:
 *   - errors: one-line fatal errors (kiln_die) and a message buffer
 *     (kiln_error) for functions that validate untrusted input
 *   - checked allocation and size arithmetic
 *   - a strict, bounded JSON parser
 *   - safetensors: validating reader, F32 model-weights loader, atomic writer
 *   - .npy: int32/int64 reader, float32/int32 writer (atomic)
 *   - a deterministic RNG (splitmix64-seeded xoshiro256**)
 *   - sampling from logits (temperature, top-k, top-p) and log-softmax
 *   - a monotonic timer, whole-file reading, strict CLI number parsing
 *
 * Conventions: functions that can fail on bad input return 0 on success
 * and -1 on failure, after writing a one-line message (no trailing newline)
 * into *err. They never exit and never abort, so they are safe to fuzz.
 * Assumes a little-endian host (checked at compile time).
 */
#ifndef KILN_RT_H
#define KILN_RT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Every function of the runtime. Built as a library of its own (kiln_rt.c), they are external; a model's C
 * library includes kiln_rt.c into its one translation unit with KILN_RT_STATIC defined, so that they are
 * internal to it and two models' libraries link into one program. */
#if defined(KILN_RT_STATIC) && (defined(__GNUC__) || defined(__clang__))
#define KILN_RT_API static __attribute__((unused))
#elif defined(KILN_RT_STATIC)
#define KILN_RT_API static
#else
#define KILN_RT_API
#endif

#if defined(__GNUC__) || defined(__clang__)
#define KILN_NORETURN __attribute__((noreturn))
#define KILN_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#define KILN_NORETURN
#define KILN_PRINTF(fmt_index, first_arg)
#endif

/* ------------------------------------------------------------------------- */
/* Errors */

#define KILN_ERR_MAX 1024

/* A one-line error message filled in by functions that validate input. */
typedef struct {
    char msg[KILN_ERR_MAX];
} kiln_error;

/* Formats a message into err (err may be NULL). */
KILN_RT_API void kiln_error_set(kiln_error *err, const char *fmt, ...) KILN_PRINTF(2, 3);

/* Sets the program name used as the prefix of fatal errors (basename of argv0). */
KILN_RT_API void kiln_set_progname(const char *argv0);
/* The program name set by kiln_set_progname ("kiln" by default). */
KILN_RT_API const char *kiln_progname(void);

/* Prints "PROGNAME: error: <message>" as one line on stderr and exits 1. */
KILN_RT_API KILN_NORETURN void kiln_die(const char *fmt, ...) KILN_PRINTF(1, 2);
/* Like kiln_die, with an explicit exit code (2 is used for usage errors). */
KILN_RT_API KILN_NORETURN void kiln_die_code(int code, const char *fmt, ...) KILN_PRINTF(2, 3);
/* A function kiln_die calls with the formatted one-line message and the exit code before it prints them; it
 * may print the message its own way and exit (the MPI training program's ranks other than 0 do), or return
 * to let kiln_die print and exit as usual. NULL (the default) removes it. */
typedef void (*kiln_die_hook)(const char *msg, int code);
KILN_RT_API void kiln_set_die_hook(kiln_die_hook hook);

/* Copies s into dst (capacity cap) for display in a one-line message:
 * control bytes become '?', long strings are cut and end with "...". */
KILN_RT_API const char *kiln_printable(char *dst, size_t cap, const char *s);

/* ------------------------------------------------------------------------- */
/* Checked memory and size arithmetic */

/* *out = a * b; returns 0, or -1 on overflow. */
KILN_RT_API int kiln_size_mul(size_t a, size_t b, size_t *out);
/* *out = a + b; returns 0, or -1 on overflow. */
KILN_RT_API int kiln_size_add(size_t a, size_t b, size_t *out);
/* malloc that dies with "out of memory" naming `what`; n == 0 is allowed. */
KILN_RT_API void *kiln_xmalloc(size_t n, const char *what);
/* calloc(count, size) that dies on overflow or out of memory. */
KILN_RT_API void *kiln_xcalloc(size_t count, size_t size, const char *what);
/* Zeroed floats[n] aligned to 64 bytes (free with free()); dies like kiln_xcalloc. */
KILN_RT_API float *kiln_xcalloc_floats(size_t n, const char *what);
/* The same without zeroing, for buffers every element of which is written before it is read: pages of a large
 * buffer that are never touched then cost no memory. Free with free(). */
KILN_RT_API float *kiln_xalloc_floats(size_t n, const char *what);

/* ------------------------------------------------------------------------- */
/* UTF-8 and JSON */

/* Offset of the first byte of the first invalid UTF-8 sequence in s[0, len),
 * or len when all of it is valid (strict: no overlongs, surrogates, > U+10FFFF). */
KILN_RT_API size_t kiln_utf8_check(const uint8_t *s, size_t len);

#define KILN_JSON_MAX_DEPTH 64

typedef enum {
    KILN_JSON_NULL = 0,
    KILN_JSON_FALSE,
    KILN_JSON_TRUE,
    KILN_JSON_INT,    /* integer literal that fits int64_t: value in .i (and .num) */
    KILN_JSON_NUMBER, /* any other number (fraction, exponent or huge): value in .num */
    KILN_JSON_STRING, /* NUL-terminated UTF-8 in .str (\u0000 is rejected) */
    KILN_JSON_ARRAY,  /* .count values in .items */
    KILN_JSON_OBJECT  /* .count pairs: keys[i] -> items[i], in document order, keys unique */
} kiln_json_type;

/* A parsed JSON value (a tree that owns all its memory). */
typedef struct kiln_json {
    kiln_json_type type;
    int64_t i;
    double num;
    char *str;
    char **keys;
    struct kiln_json *items;
    size_t count;
} kiln_json;

/* Parses one JSON value from text[0, len) after optional whitespace; *end gets
 * the offset just past the value (the caller decides what may follow).
 * Rejects malformed input, duplicate object keys and nesting deeper than
 * KILN_JSON_MAX_DEPTH. On failure *out is left empty (nothing to free). */
KILN_RT_API int kiln_json_parse(const char *text, size_t len, kiln_json *out, size_t *end, kiln_error *err);
/* Frees a value from kiln_json_parse and zeroes it. */
KILN_RT_API void kiln_json_free(kiln_json *v);
/* Value of `key` in object obj, or NULL (also when obj is not an object). */
KILN_RT_API const kiln_json *kiln_json_get(const kiln_json *obj, const char *key);

/* ------------------------------------------------------------------------- */
/* Safetensors */

typedef enum {
    KILN_DT_F64 = 0,
    KILN_DT_F32,
    KILN_DT_F16,
    KILN_DT_BF16,
    KILN_DT_I64,
    KILN_DT_I32,
    KILN_DT_I16,
    KILN_DT_I8,
    KILN_DT_U8,
    KILN_DT_BOOL,
    KILN_DT_COUNT
} kiln_st_dtype;

/* Safetensors name of a dtype ("F32"), or "?" if out of range. */
KILN_RT_API const char *kiln_st_dtype_name(kiln_st_dtype dt);
/* Size in bytes of one element of dt (0 if out of range). */
KILN_RT_API size_t kiln_st_dtype_size(kiln_st_dtype dt);
/* Looks up a dtype by its safetensors name; returns 0, or -1 if unknown. */
KILN_RT_API int kiln_st_dtype_from_name(const char *name, kiln_st_dtype *out);

#define KILN_MAX_RANK 8
#define KILN_ST_MAX_HEADER 100000000u

/* One tensor of a parsed safetensors file. */
typedef struct {
    char *name;
    kiln_st_dtype dtype;
    int ndim;                      /* 0..KILN_MAX_RANK */
    int64_t shape[KILN_MAX_RANK];
    size_t numel;
    size_t offset;                 /* byte offset in the data section */
    size_t nbytes;
    const uint8_t *data;           /* bytes (not aligned: read with memcpy) */
} kiln_st_tensor;

/* One __metadata__ entry. */
typedef struct {
    char *key;
    char *value;
} kiln_st_meta;

/* A parsed and fully validated safetensors file. */
typedef struct {
    char *label;                   /* file name used in error messages */
    kiln_st_tensor *tensors;       /* in header order */
    size_t num_tensors;
    kiln_st_meta *meta;
    size_t num_meta;
    size_t header_len;
    const uint8_t *data;           /* data section */
    size_t data_len;
    kiln_st_tensor **by_name;      /* private: tensors sorted by name */
    void *map;                     /* private: mapping owned by kiln_st_open */
    size_t map_len;
} kiln_safetensors;

/* Parses and validates a safetensors file held in memory (bytes must outlive
 * st). label names the file in error messages ("W.safetensors: ..."). */
KILN_RT_API int kiln_st_parse(const uint8_t *bytes, size_t size, const char *label, kiln_safetensors *st,
                  kiln_error *err);
/* Maps the file at path read-only and parses it with kiln_st_parse. */
KILN_RT_API int kiln_st_open(const char *path, kiln_safetensors *st, kiln_error *err);
/* Releases everything held by st (safe on a zeroed or failed st). */
KILN_RT_API void kiln_st_close(kiln_safetensors *st);
/* The tensor called name, or NULL. */
KILN_RT_API const kiln_st_tensor *kiln_st_find(const kiln_safetensors *st, const char *name);
/* The __metadata__ value for key, or NULL. */
KILN_RT_API const char *kiln_st_meta_get(const kiln_safetensors *st, const char *key);

/* An expected F32 tensor of a model: where it goes in the parameter block. */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[KILN_MAX_RANK];
    size_t offset;                 /* in floats, into the destination block */
} kiln_tensor_spec;

/* Checks that st holds exactly the tensors in specs (same names, dtype F32,
 * exact shapes, nothing extra) and copies them into dst (dst_floats floats). */
KILN_RT_API int kiln_st_load_f32(const kiln_safetensors *st, const kiln_tensor_spec *specs, size_t num_specs,
                     float *dst, size_t dst_floats, kiln_error *err);
/* Like kiln_st_load_f32, but tensors whose names start with ignore_prefix
 * (when not NULL) are skipped instead of being "unexpected". */
KILN_RT_API int kiln_st_load_f32_ignoring(const kiln_safetensors *st, const kiln_tensor_spec *specs,
                              size_t num_specs, float *dst, size_t dst_floats,
                              const char *ignore_prefix, kiln_error *err);

/* Where an expected tensor is in a file that names and lays it out otherwise (a model file's weights
 * section): that file's tensor, a slice of it along one axis (as long as the expected tensor is there),
 * then transposed (rank 2). */
typedef struct {
    const char *tensor;            /* "h.0.attn.c_attn.weight" */
    int slice_axis;                /* of the file's tensor; -1: the whole tensor */
    int64_t slice_start;
    int transposed;
} kiln_tensor_source;

/* Like kiln_st_load_f32 for a file with other names: each specs[i] is read from sources[i], converting
 * F64, F16 and BF16 to F32. Every tensor of the file must be read or match one of the ignore patterns
 * ('*' matches any run of characters). Errors name the tensor in both namings. */
KILN_RT_API int kiln_st_load_mapped(const kiln_safetensors *st, const kiln_tensor_spec *specs,
                        const kiln_tensor_source *sources, size_t num_specs, const char *const *ignore,
                        size_t num_ignore, float *dst, size_t dst_floats, kiln_error *err);
/* Whether s matches pattern, in which '*' matches any run of characters (also empty). */
KILN_RT_API int kiln_glob_match(const char *pattern, const char *s);

/* A tensor to write: data holds numel * kiln_st_dtype_size(dtype) bytes. */
typedef struct {
    const char *name;
    kiln_st_dtype dtype;
    int ndim;
    int64_t shape[KILN_MAX_RANK];
    const void *data;
} kiln_st_entry;

/* Writes a safetensors file atomically (temp file + fsync + rename + fsync of
 * the directory). Tensors are laid out in the given order; the header is
 * space-padded so that 8 + header length is a multiple of 8. */
KILN_RT_API int kiln_st_write(const char *path, const kiln_st_entry *tensors, size_t num_tensors,
                  const char *const *meta_keys, const char *const *meta_values, size_t num_meta,
                  kiln_error *err);

/* ------------------------------------------------------------------------- */
/* Atomic file replacement */

/* A file being written next to its final path. */
typedef struct {
    FILE *fp;
    char *path;
    char *tmp_path;
} kiln_atomic_file;

/* Creates a temporary file in the directory of path, opened for writing in af->fp. */
KILN_RT_API int kiln_atomic_open(kiln_atomic_file *af, const char *path, kiln_error *err);
/* fwrite n bytes to af; returns 0, or -1 with a message. */
KILN_RT_API int kiln_atomic_write(kiln_atomic_file *af, const void *buf, size_t n, kiln_error *err);
/* Flushes, fsyncs, closes, renames over the target and fsyncs the directory.
 * On failure the temporary file is removed. Always releases af. */
KILN_RT_API int kiln_atomic_commit(kiln_atomic_file *af, kiln_error *err);
/* Closes and removes the temporary file, releasing af. */
KILN_RT_API void kiln_atomic_abort(kiln_atomic_file *af);

/* ------------------------------------------------------------------------- */
/* NumPy .npy */

/* An integer array read from .npy, widened to int64. */
typedef struct {
    int ndim;
    int64_t shape[KILN_MAX_RANK];
    size_t numel;
    int64_t *data;
} kiln_npy_ints;

/* Parses an in-memory .npy (v1.0/v2.0, '<i4' or '<i8', C order) into out. */
KILN_RT_API int kiln_npy_parse_ints(const uint8_t *bytes, size_t size, const char *label, kiln_npy_ints *out,
                        kiln_error *err);
/* Reads path (at most max_bytes) and parses it with kiln_npy_parse_ints. */
KILN_RT_API int kiln_npy_read_ints(const char *path, size_t max_bytes, kiln_npy_ints *out, kiln_error *err);
/* Frees out->data and zeroes out. */
KILN_RT_API void kiln_npy_free_ints(kiln_npy_ints *out);
/* An array read from .npy as it is stored: float32, float64, int32 or int64, C order. */
typedef enum { KILN_NPY_F32 = 0, KILN_NPY_F64 = 1, KILN_NPY_I32 = 2, KILN_NPY_I64 = 3 } kiln_npy_dtype;
typedef struct {
    kiln_npy_dtype dtype;
    size_t item;            /* bytes per element */
    int ndim;
    int64_t shape[KILN_MAX_RANK];
    size_t numel;
    void *data;             /* numel * item bytes (malloc'd) */
} kiln_npy_array;

/* Parses an in-memory .npy (v1.0/v2.0, '<f4', '<f8', '<i4' or '<i8', C order) into out. */
KILN_RT_API int kiln_npy_parse(const uint8_t *bytes, size_t size, const char *label, kiln_npy_array *out, kiln_error *err);
/* Reads path (at most max_bytes) and parses it with kiln_npy_parse. */
KILN_RT_API int kiln_npy_read(const char *path, size_t max_bytes, kiln_npy_array *out, kiln_error *err);
/* Frees out->data and zeroes out. */
KILN_RT_API void kiln_npy_free(kiln_npy_array *out);
/* Writes a C-order int64 ('<i8') or float64 ('<f8') array as .npy v1.0, atomically. */
KILN_RT_API int kiln_npy_write_i64(const char *path, const int64_t *data, int ndim, const int64_t *shape, kiln_error *err);
KILN_RT_API int kiln_npy_write_f64(const char *path, const double *data, int ndim, const int64_t *shape, kiln_error *err);

/* Writes a C-order float32 ('<f4') array as .npy v1.0, atomically. */
KILN_RT_API int kiln_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape,
                       kiln_error *err);
/* Writes a C-order int32 ('<i4') array as .npy v1.0, atomically. */
KILN_RT_API int kiln_npy_write_i32(const char *path, const int32_t *data, int ndim, const int64_t *shape,
                       kiln_error *err);

/* ------------------------------------------------------------------------- */
/* Random numbers: xoshiro256** seeded by splitmix64; identical on every platform. */

typedef struct {
    uint64_t s[4];
    int has_spare;
    double spare;
} kiln_rng;

/* Seeds rng from a 64-bit seed. */
KILN_RT_API void kiln_rng_seed(kiln_rng *rng, uint64_t seed);
/* Next 64 random bits. */
KILN_RT_API uint64_t kiln_rng_u64(kiln_rng *rng);
/* Uniform integer in [0, n) without modulo bias (0 if n == 0). */
KILN_RT_API uint64_t kiln_rng_below(kiln_rng *rng, uint64_t n);
/* Uniform double in [0, 1) with 53 random bits. */
KILN_RT_API double kiln_rng_double(kiln_rng *rng);
/* Uniform float in [0, 1) with 24 random bits. */
KILN_RT_API float kiln_rng_float(kiln_rng *rng);
/* Standard normal N(0, 1) by the Box-Muller transform (pairs are cached). */
KILN_RT_API double kiln_rng_normal(kiln_rng *rng);

/* Masked-language-model corruption of n tokens (Devlin et al. 2019), as a training batch needs it: each
 * position is chosen with probability `rate`; a chosen position's input becomes mask_id (probability 0.8), a
 * uniform token in [0, random_below) (0.1) or stays (0.1), and its target is its token; every other position
 * keeps its token and gets the target -1 (ignored by the loss). inputs may be tokens. One draw of rng per
 * position, one more per chosen position and one more per random replacement. */
KILN_RT_API void kiln_mlm_mask(kiln_rng *rng, const int32_t *tokens, size_t n, int32_t mask_id, double rate,
                               int64_t random_below, int32_t *inputs, int32_t *targets);

/* FNV-1a 64-bit hash of n bytes, continuing from h (start with KILN_FNV1A64_INIT). */
#define KILN_FNV1A64_INIT 0xcbf29ce484222325ULL
KILN_RT_API uint64_t kiln_fnv1a64(uint64_t h, const void *data, size_t n);
/* The splitmix64 output function: a bijective 64-bit mix (for deriving seeds). */
KILN_RT_API uint64_t kiln_mix64(uint64_t x);

/* ------------------------------------------------------------------------- */
/* Sampling and softmax */

/* One candidate of the sampler (probability and token id). */
typedef struct {
    double p;
    int id;
} kiln_prob_index;

/* Reusable buffers for sampling from a logits row of n entries. */
typedef struct {
    int n;
    kiln_prob_index *cand;
} kiln_sampler;

/* Allocates a sampler for rows of n logits; returns 0, or -1 if out of memory. */
KILN_RT_API int kiln_sampler_init(kiln_sampler *s, int n);
/* Frees the sampler's buffers. */
KILN_RT_API void kiln_sampler_free(kiln_sampler *s);
/* Samples a token id from logits[0, s->n): temperature <= 0 means greedy
 * argmax; top_k <= 0 or >= n disables top-k; top_p >= 1 disables nucleus
 * sampling. Softmax is computed in double with the maximum subtracted. */
KILN_RT_API int kiln_sample(kiln_sampler *s, const float *logits, double temperature, int top_k, double top_p,
                kiln_rng *rng);
/* Index of the first maximum of x[0, n), ignoring NaNs (0 if none). */
KILN_RT_API int kiln_argmax(const float *x, int n);
/* log softmax(logits)[target], computed stably in double. */
KILN_RT_API double kiln_log_softmax_at(const float *logits, int n, int target);

/* ------------------------------------------------------------------------- */
/* Time, files and command-line numbers */

/* Milliseconds from a monotonic clock. */
KILN_RT_API double kiln_time_ms(void);

/* Reads a whole regular file of at most max_bytes into a malloc'd buffer
 * (NUL-terminated for convenience; *len excludes the NUL). */
KILN_RT_API int kiln_read_file(const char *path, size_t max_bytes, uint8_t **data, size_t *len,
                   kiln_error *err);

/* Strict whole-string parsers: return 0, KILN_PARSE_SYNTAX or KILN_PARSE_RANGE. */
#define KILN_PARSE_SYNTAX (-1)
#define KILN_PARSE_RANGE (-2)
/* Decimal integer in [lo, hi]; optional sign, no spaces. */
KILN_RT_API int kiln_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
/* Unsigned decimal integer in [0, 2^64). */
KILN_RT_API int kiln_parse_u64(const char *s, uint64_t *out);
/* Finite decimal number in [lo, hi]. */
KILN_RT_API int kiln_parse_f64(const char *s, double lo, double hi, double *out);

/* Flag-value parsers with messages like "--threads: 0 is out of range [1, 4096]". */
KILN_RT_API int kiln_flag_i64(const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out,
                  kiln_error *err);
KILN_RT_API int kiln_flag_u64(const char *flag, const char *s, uint64_t *out, kiln_error *err);
KILN_RT_API int kiln_flag_f64(const char *flag, const char *s, double lo, double hi, double *out,
                  kiln_error *err);

#endif /* KILN_RT_H */
