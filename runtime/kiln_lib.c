/*
 * kiln_lib.c - the C API of a compiled model (NAME.h, docs/c-api.md), over the description its model.c
 * gives (kiln_model_info, runtime/kiln_model.h).
 *
 * model.c includes this file last, after defining KILN_PREFIX (the model's prefix, e.g. char_gpt) and
 * `static const kiln_model_info kiln_model`. With the runtime (kiln_rt.c, included here with
 * KILN_RT_STATIC) everything is one translation unit whose only external symbols are the API's, each named
 * PREFIX_...: two models' libraries link into one program.
 *
 * Nothing here prints or exits: every failure returns a kiln_status and leaves a one-line message for
 * PREFIX_error(ctx). A context is used by one thread at a time.
 */
#ifndef KILN_PREFIX
#error "kiln_lib.c is included by a generated model.c, which defines KILN_PREFIX"
#endif

#define KILN_RT_STATIC 1
#include "kiln_rt.c"

#include <stdarg.h>
#include <stdio.h>

#define KILN_PASTE2(a, b) a##_##b
#define KILN_PASTE(a, b) KILN_PASTE2(a, b)
/* The API name of a function: KILN_API(run) is char_gpt_run for the prefix char_gpt. */
#define KILN_API(fn) KILN_PASTE(KILN_PREFIX, fn)

#if defined(__GNUC__) || defined(__clang__)
#define KILN_EXPORT __attribute__((visibility("default")))
#else
#define KILN_EXPORT
#endif

#define KILN_MAX_THREADS 4096
#define KILN_MAX_STATE_ROWS (1 << 20)

struct KILN_API(context) {
    real *params;           /* the parameter block: weights-file layout, or panel layout when packed */
    int packed;
    real *grads;            /* allocated by the first call that writes gradients */
    real *arena;
    size_t arena_elements;
    real **state;           /* kiln_model.num_state tensors of state_rows rows, or NULL */
    int64_t state_rows;
    int threads;            /* 0: OpenMP's default */
    char error[KILN_ERR_MAX];
};
typedef struct KILN_API(context) kiln_context;

/* Records a one-line message and returns status. */
KILN_PRINTF(3, 4)
static kiln_status fail(kiln_context *ctx, kiln_status status, const char *fmt, ...) {
    if (ctx) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* n elements of real, 64-byte aligned; zeroed when `zero`, else untouched (pages of a large buffer that are
 * never written cost no memory). */
static real *alloc_reals(size_t n, int zero) {
    size_t bytes;
    if (kiln_size_mul(n ? n : 1, sizeof(real), &bytes) || bytes > SIZE_MAX - 64) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes)) return NULL;
    if (zero) memset(p, 0, bytes);
    return p;
}

static const char *dtype_name(kiln_dtype t) {
    switch (t) {
    case KILN_F32: return "f32";
    case KILN_F64: return "f64";
    case KILN_I32: return "i32";
    case KILN_I64: return "i64";
    }
    return "?";
}


/* ------------------------------------------------------------------------- */
/* The model */

KILN_EXPORT const char *KILN_API(model_name)(void) { return kiln_model.name; }
KILN_EXPORT const char *KILN_API(isa)(void) { return gemm_isa(); }
KILN_EXPORT int KILN_API(num_functions)(void) { return kiln_model.num_functions; }

KILN_EXPORT const kiln_function_desc *KILN_API(function)(int i) {
    return i >= 0 && i < kiln_model.num_functions ? &kiln_model.functions[i].desc : NULL;
}

static const kiln_function_info *find_function(const char *name) {
    for (int i = 0; name && i < kiln_model.num_functions; i++)
        if (strcmp(kiln_model.functions[i].desc.name, name) == 0) return &kiln_model.functions[i];
    return NULL;
}

KILN_EXPORT const kiln_function_desc *KILN_API(find_function)(const char *name) {
    const kiln_function_info *f = find_function(name);
    return f ? &f->desc : NULL;
}

KILN_EXPORT int KILN_API(num_params)(void) { return kiln_model.num_params; }
KILN_EXPORT size_t KILN_API(param_elements)(void) { return kiln_model.param_count; }

KILN_EXPORT const kiln_param_desc *KILN_API(param)(int i) {
    return i >= 0 && i < kiln_model.num_params ? &kiln_model.params[i] : NULL;
}

/* ------------------------------------------------------------------------- */
/* Contexts */

KILN_EXPORT kiln_status KILN_API(create)(kiln_context **out) {
    if (!out) return KILN_ERR_ARGUMENT;
    *out = NULL;
    kiln_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return KILN_ERR_MEMORY;
    ctx->params = alloc_reals(kiln_model.param_count, 1);
    if (!ctx->params) {
        free(ctx);
        return KILN_ERR_MEMORY;
    }
    *out = ctx;
    return KILN_OK;
}

static void free_state(kiln_context *ctx) {
    if (ctx->state)
        for (int i = 0; i < kiln_model.num_state; i++) free(ctx->state[i]);
    free(ctx->state);
    ctx->state = NULL;
    ctx->state_rows = 0;
}

KILN_EXPORT void KILN_API(free)(kiln_context *ctx) {
    if (!ctx) return;
    free_state(ctx);
    free(ctx->params);
    free(ctx->grads);
    free(ctx->arena);
    free(ctx);
}

KILN_EXPORT const char *KILN_API(error)(const kiln_context *ctx) {
    return ctx ? ctx->error : "no context (out of memory creating one)";
}

KILN_EXPORT kiln_status KILN_API(set_threads)(kiln_context *ctx, int threads) {
    if (!ctx) return KILN_ERR_ARGUMENT;
    if (threads < 0 || threads > KILN_MAX_THREADS)
        return fail(ctx, KILN_ERR_ARGUMENT, "threads: %d is out of range [0, %d] (0: OpenMP's default)",
                    threads, KILN_MAX_THREADS);
    ctx->threads = threads;
    return KILN_OK;
}

/* The parameter block in weights-file layout (for training, saving, loading) or panel layout (inference). */
static kiln_status set_layout(kiln_context *ctx, int packed) {
    if (ctx->packed == packed) return KILN_OK;
    if ((packed ? kiln_model.pack : kiln_model.unpack)(ctx->params))
        return fail(ctx, KILN_ERR_MEMORY, "out of memory rearranging the weights");
    ctx->packed = packed;
    return KILN_OK;
}

KILN_EXPORT real *KILN_API(params)(kiln_context *ctx) {
    if (!ctx || set_layout(ctx, 0)) return NULL;
    return ctx->params;
}

KILN_EXPORT real *KILN_API(grads)(kiln_context *ctx) {
    if (!ctx) return NULL;
    if (!ctx->grads && !(ctx->grads = alloc_reals(kiln_model.param_count, 1))) {
        fail(ctx, KILN_ERR_MEMORY, "out of memory for the gradients");
        return NULL;
    }
    return ctx->grads;
}

/* ------------------------------------------------------------------------- */
/* Weights */

KILN_EXPORT kiln_status KILN_API(init)(kiln_context *ctx, uint64_t seed) {
    if (!ctx) return KILN_ERR_ARGUMENT;
    kiln_rng rng;
    kiln_rng_seed(&rng, seed);
    ctx->packed = 0;
    for (int i = 0; i < kiln_model.num_params; i++) {
        const kiln_param_desc *p = &kiln_model.params[i];
        real *dst = ctx->params + p->offset;
        for (size_t j = 0; j < p->numel; j++) {
            if (p->init == KILN_INIT_NORMAL) dst[j] = (real)(float)(kiln_rng_normal(&rng) * (double)p->init_std);
            else dst[j] = p->init == KILN_INIT_ONES ? 1 : 0;
        }
    }
    return KILN_OK;
}

/* Whether st names the parameters as the model does: a Kiln checkpoint, or a file holding every parameter
 * under its own name. Otherwise a model with a weights section reads it by that section's names. */
static int own_names(const kiln_safetensors *st) {
    if (!kiln_model.sources || kiln_st_meta_get(st, "kiln_checkpoint")) return 1;
    for (int i = 0; i < kiln_model.num_params; i++)
        if (!kiln_st_find(st, kiln_model.params[i].name)) return 0;
    return 1;
}

/* Loads parsed safetensors into the parameter block: every parameter present as F32 with its exact shape,
 * nothing else except the optimizer state ("train.*") of a training checkpoint; or, for a model with a
 * weights section, a file that names (and lays out) them as that section says. */
static kiln_status load_st(kiln_context *ctx, const kiln_safetensors *st) {
    kiln_tensor_spec *specs = calloc((size_t)kiln_model.num_params + 1, sizeof *specs);
    if (!specs) return fail(ctx, KILN_ERR_MEMORY, "out of memory for the parameter table");
    for (int i = 0; i < kiln_model.num_params; i++) {
        const kiln_param_desc *p = &kiln_model.params[i];
        specs[i].name = p->name;
        specs[i].ndim = p->rank;
        for (int d = 0; d < p->rank; d++) specs[i].shape[d] = p->shape[d];
        specs[i].offset = p->offset;
    }
    const int own = own_names(st);
    kiln_tensor_source *sources = own ? NULL : calloc((size_t)kiln_model.num_params + 1, sizeof *sources);
    if (!own && !sources) {
        free(specs);
        return fail(ctx, KILN_ERR_MEMORY, "out of memory for the parameter table");
    }
    for (int i = 0; !own && i < kiln_model.num_params; i++) {
        const kiln_param_source *src = &kiln_model.sources[i];
        sources[i] = (kiln_tensor_source){src->tensor, src->slice_axis, src->slice_start, src->transposed};
    }
    const char *ignore = kiln_st_meta_get(st, "kiln_checkpoint") ? "train." : NULL;
    kiln_error err;
#if KILN_REAL_IS_DOUBLE
    float *block = malloc((kiln_model.param_count ? kiln_model.param_count : 1) * sizeof(float));
    if (!block) snprintf(err.msg, sizeof err.msg, "out of memory loading the weights");
#else
    float *block = ctx->params;
#endif
    int rc = !block ? -1
             : own ? kiln_st_load_f32_ignoring(st, specs, (size_t)kiln_model.num_params, block, kiln_model.param_count, ignore, &err)
                   : kiln_st_load_mapped(st, specs, sources, (size_t)kiln_model.num_params, kiln_model.ignore,
                                         (size_t)kiln_model.num_ignore, block, kiln_model.param_count, &err);
#if KILN_REAL_IS_DOUBLE
    for (size_t i = 0; rc == 0 && i < kiln_model.param_count; i++) ctx->params[i] = block[i];
    free(block);
#endif
    free(specs);
    free(sources);
    ctx->packed = 0;
    if (rc) return fail(ctx, KILN_ERR_WEIGHTS, "%s", err.msg);
    /* ready for forward: its layout now, so that the first call does not pay for rearranging the weights
     * (a training step rearranges them back once) */
    return set_layout(ctx, kiln_model.functions[0].packed);
}

KILN_EXPORT kiln_status KILN_API(load)(kiln_context *ctx, const char *path) {
    if (!ctx || !path) return fail(ctx, KILN_ERR_ARGUMENT, "load: no path");
    kiln_safetensors st;
    kiln_error err;
    if (kiln_st_open(path, &st, &err)) return fail(ctx, KILN_ERR_WEIGHTS, "%s", err.msg);
    kiln_status s = load_st(ctx, &st);
    kiln_st_close(&st);
    return s;
}

KILN_EXPORT kiln_status KILN_API(load_memory)(kiln_context *ctx, const void *data, size_t size) {
    if (!ctx || (!data && size)) return fail(ctx, KILN_ERR_ARGUMENT, "load_memory: no data");
    kiln_safetensors st;
    kiln_error err;
    if (kiln_st_parse(data, size, "weights buffer", &st, &err)) return fail(ctx, KILN_ERR_WEIGHTS, "%s", err.msg);
    kiln_status s = load_st(ctx, &st);
    kiln_st_close(&st);
    return s;
}

KILN_EXPORT kiln_status KILN_API(open)(const char *path, kiln_context **out) {
    kiln_status s = KILN_API(create)(out);
    if (s) return s;
    return KILN_API(load)(*out, path);
}

KILN_EXPORT kiln_status KILN_API(save)(kiln_context *ctx, const char *path) {
    if (!ctx || !path) return fail(ctx, KILN_ERR_ARGUMENT, "save: no path");
    kiln_status s = set_layout(ctx, 0);
    if (s) return s;
    kiln_st_entry *entries = calloc((size_t)kiln_model.num_params + 1, sizeof *entries);
#if KILN_REAL_IS_DOUBLE
    float *data = malloc((kiln_model.param_count ? kiln_model.param_count : 1) * sizeof(float));
    for (size_t i = 0; data && i < kiln_model.param_count; i++) data[i] = (float)ctx->params[i];
#else
    const float *data = ctx->params;
#endif
    if (!entries || !data) {
        free(entries);
#if KILN_REAL_IS_DOUBLE
        free(data);
#endif
        return fail(ctx, KILN_ERR_MEMORY, "out of memory saving the weights");
    }
    for (int i = 0; i < kiln_model.num_params; i++) {
        const kiln_param_desc *p = &kiln_model.params[i];
        entries[i].name = p->name;
        entries[i].dtype = KILN_DT_F32;
        entries[i].ndim = p->rank;
        for (int d = 0; d < p->rank; d++) entries[i].shape[d] = p->shape[d];
        entries[i].data = data + p->offset;
    }
    const char *keys[] = {"format", "kiln_model"};
    const char *values[] = {"pt", kiln_model.name};
    kiln_error err;
    int rc = kiln_st_write(path, entries, (size_t)kiln_model.num_params, keys, values, 2, &err);
    free(entries);
#if KILN_REAL_IS_DOUBLE
    free(data);
#endif
    return rc ? fail(ctx, KILN_ERR_IO, "%s", err.msg) : KILN_OK;
}

/* ------------------------------------------------------------------------- */
/* State (the KV caches) */

KILN_EXPORT kiln_status KILN_API(reset_state)(kiln_context *ctx, int64_t rows) {
    if (!ctx) return KILN_ERR_ARGUMENT;
    if (rows < 1 || rows > KILN_MAX_STATE_ROWS)
        return fail(ctx, KILN_ERR_ARGUMENT, "reset_state: %lld rows is out of range [1, %d]", (long long)rows,
                    KILN_MAX_STATE_ROWS);
    free_state(ctx);
    if (kiln_model.num_state == 0) {
        ctx->state_rows = rows;
        return KILN_OK;
    }
    ctx->state = calloc((size_t)kiln_model.num_state, sizeof *ctx->state);
    for (int i = 0; ctx->state && i < kiln_model.num_state; i++) {
        size_t n;
        /* calloc: zero pages that positions never reached do not take memory */
        if (kiln_size_mul((size_t)rows, kiln_model.state[i].row_elements, &n) || !(ctx->state[i] = calloc(n ? n : 1, sizeof(real)))) {
            free_state(ctx);
            return fail(ctx, KILN_ERR_MEMORY, "out of memory for the state of %lld rows", (long long)rows);
        }
    }
    if (!ctx->state) return fail(ctx, KILN_ERR_MEMORY, "out of memory for the state");
    ctx->state_rows = rows;
    return KILN_OK;
}

KILN_EXPORT int64_t KILN_API(state_rows)(const kiln_context *ctx) { return ctx ? ctx->state_rows : 0; }

KILN_EXPORT kiln_status KILN_API(copy_state_row)(kiln_context *ctx, int64_t from, int64_t to) {
    if (!ctx) return KILN_ERR_ARGUMENT;
    if (from < 0 || from >= ctx->state_rows || to < 0 || to >= ctx->state_rows)
        return fail(ctx, KILN_ERR_STATE, "copy_state_row: rows %lld and %lld must lie in [0, %lld)", (long long)from,
                    (long long)to, (long long)ctx->state_rows);
    for (int i = 0; from != to && i < kiln_model.num_state; i++) {
        const size_t n = kiln_model.state[i].row_elements;
        memcpy(ctx->state[i] + (size_t)to * n, ctx->state[i] + (size_t)from * n, n * sizeof(real));
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------------- */
/* Running a function */

/* "[3, 17, 97]" */
static const char *shape_text(char *buf, size_t cap, int rank, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < rank && n < cap; d++) n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

/* The declared shape with dims bound: "[B, T, 97]" as "[3, 17, 97]"; unbound dims print their names. */
static const char *declared_text(char *buf, size_t cap, const kiln_tensor_desc *t, const int64_t *values,
                                 const kiln_function_info *f) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->rank && n < cap; d++) {
        int k = -1;
        for (int j = 0; t->dims[d] && j < f->num_dims; j++)
            if (strcmp(f->dim_names[j], t->dims[d]) == 0) k = j;
        if (k < 0) n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        else if (values[k] > 0) n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? ", " : "", (long long)values[k]);
        else n += (size_t)snprintf(buf + n, cap - n, "%s%s", d ? ", " : "", t->dims[d]);
    }
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

static int dim_index(const kiln_function_info *f, const char *name) {
    for (int j = 0; name && j < f->num_dims; j++)
        if (strcmp(f->dim_names[j], name) == 0) return j;
    return -1;
}

/* The given tensor named `name` (NULL if absent); duplicate names are an error. */
static kiln_status find_tensor(kiln_context *ctx, const char *what, const char *fname, const kiln_tensor *ts, int n,
                               const char *name, const kiln_tensor **out) {
    *out = NULL;
    for (int i = 0; i < n; i++) {
        if (!ts[i].name) return fail(ctx, KILN_ERR_INPUT, "%s: %s %d has no name", fname, what, i);
        if (strcmp(ts[i].name, name) != 0) continue;
        if (*out) return fail(ctx, KILN_ERR_INPUT, "%s: %s '%s' is given twice", fname, what, name);
        *out = &ts[i];
    }
    return KILN_OK;
}

/* Checks one given tensor against its declaration, binding the symbolic dims it has. */
static kiln_status bind(kiln_context *ctx, const kiln_function_info *f, const char *what, const kiln_tensor_desc *d,
                        const kiln_tensor *t, int64_t *values) {
    char a[160], b[160];
    const char *fname = f->desc.name;
    if (!t->data) return fail(ctx, KILN_ERR_INPUT, "%s: %s '%s' has no data", fname, what, d->name);
    if (t->dtype != d->dtype)
        return fail(ctx, KILN_ERR_INPUT, "%s: %s '%s' must be %s, got %s", fname, what, d->name, dtype_name(d->dtype),
                    dtype_name(t->dtype));
    if (t->rank != d->rank)
        return fail(ctx, KILN_ERR_INPUT, "%s: %s '%s' must have rank %d %s, got rank %d", fname, what, d->name, d->rank,
                    declared_text(a, sizeof a, d, values, f), t->rank);
    for (int k = 0; k < d->rank; k++) {
        const int64_t size = t->shape[k];
        int j = dim_index(f, d->dims[k]);
        if (j < 0) {
            if (size != d->shape[k])
                return fail(ctx, KILN_ERR_INPUT, "%s: %s '%s' has shape %s, expected %s", fname, what, d->name,
                            shape_text(a, sizeof a, t->rank, t->shape), declared_text(b, sizeof b, d, values, f));
            continue;
        }
        if (size < 1)
            return fail(ctx, KILN_ERR_INPUT, "%s: %s '%s' has shape %s: dim %s must be at least 1", fname, what, d->name,
                        shape_text(a, sizeof a, t->rank, t->shape), d->dims[k]);
        if (f->dim_bounds[j] > 0 && size > f->dim_bounds[j] && f->dim_limits[j])
            return fail(ctx, KILN_ERR_INPUT, "%s: %s '%s' has shape %s: dim %s = %lld exceeds its bound %lld, which %s needs",
                        fname, what, d->name, shape_text(a, sizeof a, t->rank, t->shape), d->dims[k], (long long)size,
                        (long long)f->dim_bounds[j], f->dim_limits[j]);
        if (values[j] > 0 && values[j] != size)
            return fail(ctx, KILN_ERR_INPUT, "%s: %s '%s' has shape %s, expected %s (dim %s)", fname, what, d->name,
                        shape_text(a, sizeof a, t->rank, t->shape), declared_text(b, sizeof b, d, values, f), d->dims[k]);
        values[j] = size;
    }
    return KILN_OK;
}

static size_t element_count(const kiln_tensor *t) {
    size_t n = 1;
    for (int k = 0; k < t->rank; k++) n *= (size_t)t->shape[k];
    return n;
}

/* "[1, 4]" for flat index i of shape */
static const char *index_text(char *buf, size_t cap, const kiln_tensor *t, size_t i) {
    int64_t idx[KILN_MAX_RANK];
    for (int k = t->rank - 1; k >= 0; k--) {
        idx[k] = (int64_t)(i % (size_t)t->shape[k]);
        i /= (size_t)t->shape[k];
    }
    return shape_text(buf, cap, t->rank, idx);
}

/* Checks an input's values against its role: ids and positions inside their range, a mask of 0 and 1, data
 * finite. */
static kiln_status check_values(kiln_context *ctx, const kiln_function_info *f, const kiln_tensor_desc *d,
                                const kiln_tensor *t) {
    char at[160];
    const size_t n = element_count(t);
    if (d->dtype == KILN_I32 || d->dtype == KILN_I64) {
        for (size_t i = 0; i < n; i++) {
            const int64_t v = d->dtype == KILN_I32 ? ((const int32_t *)t->data)[i] : ((const int64_t *)t->data)[i];
            switch (d->role) {
            case KILN_ROLE_MASK:
                if (v != 0 && v != 1)
                    return fail(ctx, KILN_ERR_INPUT, "%s: input '%s' is a mask, but holds %lld at %s (only 0 and 1)",
                                f->desc.name, d->name, (long long)v, index_text(at, sizeof at, t, i));
                break;
            case KILN_ROLE_TARGETS:
                if (d->has_ignore && v == d->ignore) break;
                /* fall through */
            case KILN_ROLE_TOKENS:
            case KILN_ROLE_POSITIONS:
                if (v < 0 || (d->limit > 0 && v >= d->limit))
                    return fail(ctx, KILN_ERR_INPUT, "%s: input '%s' holds %lld at %s, outside [0, %lld)%s", f->desc.name,
                                d->name, (long long)v, index_text(at, sizeof at, t, i), (long long)d->limit,
                                d->role == KILN_ROLE_TOKENS ? " (the vocabulary)" : "");
                break;
            default: break;
            }
        }
        return KILN_OK;
    }
    for (size_t i = 0; i < n; i++) {
        const double v = d->dtype == KILN_F32 ? (double)((const float *)t->data)[i] : ((const double *)t->data)[i];
        if (!isfinite(v))
            return fail(ctx, KILN_ERR_INPUT, "%s: input '%s' holds %s at %s", f->desc.name, d->name,
                        isnan(v) ? "nan" : "an infinity", index_text(at, sizeof at, t, i));
    }
    return KILN_OK;
}

KILN_EXPORT kiln_status KILN_API(run)(kiln_context *ctx, const char *function, const kiln_tensor *inputs,
                                      int num_inputs, kiln_tensor *outputs, int num_outputs) {
    if (!ctx) return KILN_ERR_ARGUMENT;
    const kiln_function_info *f = find_function(function);
    if (!f) {
        char names[512] = "";
        for (int i = 0; i < kiln_model.num_functions; i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                     kiln_model.functions[i].desc.name);
        return fail(ctx, KILN_ERR_ARGUMENT, "model %s has no function '%s' (it has %s)", kiln_model.name,
                    function ? function : "(null)", names);
    }
    if ((num_inputs && !inputs) || (num_outputs && !outputs) || num_inputs < 0 || num_outputs < 0)
        return fail(ctx, KILN_ERR_ARGUMENT, "%s: no tensors", f->desc.name);
    const kiln_function_desc *fd = &f->desc;
    int64_t values[KILN_MAX_RANK * 8 + 8] = {0};
    const void *in_data[64];
    void *out_data[64];
    if (fd->num_inputs > 64 || fd->num_outputs > 64 || f->num_dims > (int)(sizeof values / sizeof values[0]))
        return fail(ctx, KILN_ERR_ARGUMENT, "%s: too many tensors", fd->name);
    kiln_status s;
    /* inputs: each declared one given once, nothing unknown; dims bound and checked */
    for (int i = 0; i < num_inputs; i++) {
        int known = 0;
        for (int k = 0; k < fd->num_inputs && inputs[i].name; k++) known |= strcmp(inputs[i].name, fd->inputs[k].name) == 0;
        if (!known) {
            char names[512] = "";
            for (int k = 0; k < fd->num_inputs; k++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", k ? ", " : "", fd->inputs[k].name);
            return fail(ctx, KILN_ERR_INPUT, "%s: unknown input '%s' (its inputs: %s)", fd->name,
                        inputs[i].name ? inputs[i].name : "(null)", names);
        }
    }
    for (int k = 0; k < fd->num_inputs; k++) {
        const kiln_tensor *t;
        if ((s = find_tensor(ctx, "input", fd->name, inputs, num_inputs, fd->inputs[k].name, &t))) return s;
        if (!t) return fail(ctx, KILN_ERR_INPUT, "%s: missing input '%s'", fd->name, fd->inputs[k].name);
        if ((s = bind(ctx, f, "input", &fd->inputs[k], t, values))) return s;
        if ((s = check_values(ctx, f, &fd->inputs[k], t))) return s;
        in_data[k] = t->data;
    }
    /* state: its rows are the one dim no input binds; the batch must fit in them */
    if (fd->uses_state) {
        int64_t batch = fd->num_inputs ? inputs[0].shape[0] : 1;
        for (int k = 0; k < fd->num_inputs; k++) {
            const kiln_tensor *t;
            find_tensor(ctx, "input", fd->name, inputs, num_inputs, fd->inputs[k].name, &t);
            if (t->rank > 0 && t->shape[0] > batch) batch = t->shape[0];
        }
        if (!ctx->state_rows && (s = KILN_API(reset_state)(ctx, batch))) return s;
        if (batch > ctx->state_rows)
            return fail(ctx, KILN_ERR_STATE, "%s: a batch of %lld rows, but the context's state has %lld (reset_state)",
                        fd->name, (long long)batch, (long long)ctx->state_rows);
        for (int j = 0; j < f->num_dims; j++)
            if (values[j] == 0) values[j] = ctx->state_rows;
    }
    for (int j = 0; j < f->num_dims; j++)
        if (values[j] == 0) return fail(ctx, KILN_ERR_INPUT, "%s: no input gives the size of dim %s", fd->name, f->dim_names[j]);
    /* outputs: each declared one given once, with the shape the inputs imply */
    for (int k = 0; k < fd->num_outputs; k++) {
        const kiln_tensor *t;
        if ((s = find_tensor(ctx, "output", fd->name, outputs, num_outputs, fd->outputs[k].name, &t))) return s;
        if (!t) return fail(ctx, KILN_ERR_INPUT, "%s: missing output '%s'", fd->name, fd->outputs[k].name);
        if ((s = bind(ctx, f, "output", &fd->outputs[k], t, values))) return s;
        out_data[k] = t->data;
    }
    if (num_outputs > fd->num_outputs)
        return fail(ctx, KILN_ERR_INPUT, "%s: %d outputs given, it has %d", fd->name, num_outputs, fd->num_outputs);
    /* memory: the weights' layout, the arena, the gradients */
    if ((s = set_layout(ctx, f->packed))) return s;
    const size_t need = f->arena_size(values);
    if (need > ctx->arena_elements) {
        free(ctx->arena);
        ctx->arena_elements = 0;
        if (!(ctx->arena = alloc_reals(need, 0)))
            return fail(ctx, KILN_ERR_MEMORY, "%s: out of memory for %zu bytes of activations", fd->name, need * sizeof(real));
        ctx->arena_elements = need;
    }
    if (fd->writes_grads && !KILN_API(grads)(ctx)) return KILN_ERR_MEMORY;
    kiln_call call = {ctx->params, ctx->grads, ctx->arena, in_data, out_data, ctx->state, values};
#ifdef _OPENMP
    const int before = omp_get_max_threads();
    if (ctx->threads > 0) omp_set_num_threads(ctx->threads);
#endif
    f->run(&call);
#ifdef _OPENMP
    omp_set_num_threads(before);
#endif
    ctx->error[0] = '\0';
    return KILN_OK;
}
