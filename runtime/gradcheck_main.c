/*
 * gradcheck_main.c - the `gradcheck` tool of a Kiln-compiled model with a training function, a program over
 * the model's C library. Two commands:
 *   fd    compares every parameter's gradient from train_step with central finite differences of its loss
 *         (meaningful in an f64 build: `kiln build --dtype f64`), on random weights and random inputs;
 *   dump  writes the loss and gradients for given weights and inputs to a safetensors file (for comparisons
 *         with PyTorch autograd).
 * Errors are one line on stderr; exit 1 for failures, 2 for usage errors.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_rt.h"
#include "model.h"

#ifndef KILN_HAS_TRAIN
#error "gradcheck needs a model compiled with a training function"
#endif

static const kiln_function_desc *g_step;

static void usage(void) {
    printf("usage: gradcheck fd [--seed N] [--batch B] [--seq T] [--dim NAME=N]... [--samples K] [--eps E] [--tol R]\n"
           "       gradcheck dump --weights W --input NAME=IN.npy ... --out G.safetensors [--seed S]\n"
           "       (dump also takes --tokens IN.npy and --targets TG.npy for the inputs of those roles)\n\n"
           "Model '%s' (%d parameter tensors), element type %s.\n"
           "fd: random weights and inputs (token ids and targets in their ranges, masks of 1s and 0s that keep\n"
           "    each row's first position, normal data); for K random elements of every parameter tensor,\n"
           "    compares d(loss)/d(p) from the backward graph with (loss(p+E) - loss(p-E)) / 2E. The error of an\n"
           "    element is |fd - grad| / max(|fd|, |grad|, 1e-3 * the model's largest |grad|); it fails\n"
           "    when any error exceeds R (default 1e-6). Defaults: B=2 T=min(5, bound) K=6 E=1e-5. Every\n"
           "    sequence dim (dim 1 of an input) is T unless --dim NAME=N sizes it (a source length S beside T).\n"
           "dump: loss and gradients of train_step for the given weights and inputs.\n",
           KILN(model_name)(), KILN(num_params)(), KILN_REAL_IS_DOUBLE ? "f64" : "f32");
}

static const char *flag(int argc, char **argv, const char *name, const char *def) {
    for (int i = 2; i < argc - 1; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return def;
}

static int64_t flag_int(int argc, char **argv, const char *name, const char *def, int64_t lo, int64_t hi) {
    kiln_error err;
    int64_t v = 0;
    if (kiln_flag_i64(name, flag(argc, argv, name, def), lo, hi, &v, &err)) kiln_die_code(2, "%s", err.msg);
    return v;
}

static double flag_f64(int argc, char **argv, const char *name, const char *def, double lo, double hi) {
    kiln_error err;
    double v = 0;
    if (kiln_flag_f64(name, flag(argc, argv, name, def), lo, hi, &v, &err)) kiln_die_code(2, "%s", err.msg);
    return v;
}

static kiln_dtype real_dtype(void) { return KILN_REAL_IS_DOUBLE ? KILN_F64 : KILN_F32; }

/* The loss of train_step at the current weights; the gradients go to the context's block. */
static double loss_of(kiln_ctx *ctx, const kiln_tensor *in) {
    kiln_real loss = 0;
    kiln_tensor out = {g_step->outputs[0].name, real_dtype(), 0, {0}, &loss};
    if (KILN(run)(ctx, "train_step", in, g_step->num_inputs, &out, 1) != KILN_OK) kiln_die("%s", KILN(error)(ctx));
    return (double)loss;
}

/* the largest |x[i]| (NaN-free input; a comparison, not fmax: gcc 12 for aarch64 crashes vectorising an fmax
 * reduction over converted floats) */
static double max_abs(const kiln_real *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        const double a = fabs((double)x[i]);
        if (a > m) m = a;
    }
    return m;
}

/* The size --dim NAME=N gives a symbolic dim, or 0. */
static int64_t dim_flag(int argc, char **argv, const char *name) {
    const size_t n = strlen(name);
    for (int i = 2; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--dim") || strncmp(argv[i + 1], name, n) || argv[i + 1][n] != '=') continue;
        char *end;
        long long v = strtoll(argv[i + 1] + n + 1, &end, 10);
        if (*end || v < 1 || v > (1 << 20)) kiln_die("--dim %s: expected NAME=N with N in [1, 1048576]", argv[i + 1]);
        return v;
    }
    return 0;
}

/* Random inputs of train_step: dims at index 0 are B, at index 1 T (or their --dim size), others their bound. */
static void random_inputs(kiln_tensor *in, int B, int T, uint64_t seed, kiln_rng *rng, int argc, char **argv) {
    for (int k = 0; k < g_step->num_inputs; k++) {
        const kiln_tensor_desc *d = &g_step->inputs[k];
        in[k] = (kiln_tensor){d->name, d->dtype, d->rank, {0}, NULL};
        size_t n = 1;
        for (int j = 0; j < d->rank; j++) {
            const int64_t given = d->dims[j] ? dim_flag(argc, argv, d->dims[j]) : 0;
            int64_t size = !d->dims[j] ? d->shape[j] : given ? given : j == 0 ? B
                         : j == 1 ? (d->bounds[j] && d->bounds[j] < T ? d->bounds[j] : T) : (d->bounds[j] ? d->bounds[j] : 3);
            in[k].shape[j] = size;
            n *= (size_t)size;
        }
        const size_t item = d->dtype == KILN_F64 || d->dtype == KILN_I64 ? 8 : 4;
        in[k].data = kiln_xcalloc(n ? n : 1, item, "an input");
        const size_t row = d->rank >= 2 ? (size_t)in[k].shape[1] * (n / ((size_t)in[k].shape[0] * (size_t)in[k].shape[1])) : 1;
        for (size_t i = 0; i < n; i++) {
            int64_t v = 0;
            switch (d->role) {
            case KILN_ROLE_TOKENS:
            case KILN_ROLE_TARGETS:
            case KILN_ROLE_POSITIONS: v = d->limit > 0 ? (int64_t)kiln_rng_below(rng, (uint64_t)d->limit) : 0; break;
            case KILN_ROLE_MASK: v = i % row == 0 ? 1 : (int64_t)kiln_rng_below(rng, 4) > 0; break;
            case KILN_ROLE_SEED: v = (int64_t)seed; break;
            case KILN_ROLE_DATA: break;
            }
            switch (d->dtype) {
            case KILN_I32: ((int32_t *)in[k].data)[i] = (int32_t)v; break;
            case KILN_I64: ((int64_t *)in[k].data)[i] = v; break;
            case KILN_F32: ((float *)in[k].data)[i] = (float)kiln_rng_normal(rng); break;
            case KILN_F64: ((double *)in[k].data)[i] = kiln_rng_normal(rng); break;
            }
        }
    }
}

static int cmd_fd(int argc, char **argv) {
    uint64_t seed = (uint64_t)flag_int(argc, argv, "--seed", "1", 0, INT64_MAX);
    int B = (int)flag_int(argc, argv, "--batch", "2", 1, 64);
    int T = (int)flag_int(argc, argv, "--seq", "5", 1, 1 << 20);
    int K = (int)flag_int(argc, argv, "--samples", "6", 1, 1000000);
    double eps = flag_f64(argc, argv, "--eps", "1e-5", 1e-12, 1.0);
    double tol = flag_f64(argc, argv, "--tol", "1e-6", 0.0, 1.0);

    kiln_rng rng;
    kiln_rng_seed(&rng, seed);
    kiln_ctx *ctx;
    if (KILN(create)(&ctx) != KILN_OK) kiln_die("out of memory");
    kiln_real *params = KILN(params)(ctx), *grads = KILN(grads)(ctx);
    const size_t pf = KILN(param_elements)();
    kiln_real *saved = kiln_xcalloc(pf ? pf : 1, sizeof *saved, "the gradients");
    /* Weights large enough that every path matters; gains near one. */
    for (int p = 0; p < KILN(num_params)(); p++) {
        const kiln_param_desc *pi = KILN(param)(p);
        for (size_t i = 0; i < pi->numel; i++) {
            double r = kiln_rng_normal(&rng);
            params[pi->offset + i] = (kiln_real)(pi->init == KILN_INIT_ONES ? 1.0 + 0.2 * r : 0.3 * r);
        }
    }
    kiln_tensor in[16];
    if (g_step->num_inputs > 16) kiln_die("train_step has too many inputs");
    random_inputs(in, B, T, seed, &rng, argc, argv);
    double loss = loss_of(ctx, in);
    memcpy(saved, grads, pf * sizeof *saved);
    printf("model %s, B=%d T=%d, loss %.12g, eps %g\n", KILN(model_name)(), B, T, loss, eps);
    for (int k = 0; k < g_step->num_inputs; k++) {
        printf("  input %s [", in[k].name);
        for (int j = 0; j < in[k].rank; j++) printf("%s%lld", j ? ", " : "", (long long)in[k].shape[j]);
        printf("]\n");
    }

    /* Errors are relative to the element's gradient, floored at 1e-3 of the largest gradient of
     * the model, so exactly-zero gradients (e.g. of a key bias) compare with round-off scale. */
    double worst = 0;
    const double global_max = max_abs(saved, pf);
    for (int p = 0; p < KILN(num_params)(); p++) {
        const kiln_param_desc *pi = KILN(param)(p);
        const double gmax = max_abs(saved + pi->offset, pi->numel);
        double tensor_worst = 0;
        int samples = (size_t)K < pi->numel ? K : (int)pi->numel;
        for (int s = 0; s < samples; s++) {
            size_t i = pi->offset + ((size_t)K < pi->numel ? (size_t)kiln_rng_below(&rng, pi->numel) : (size_t)s);
            kiln_real keep = params[i];
            params[i] = keep + (kiln_real)eps;
            double up = loss_of(ctx, in);
            params[i] = keep - (kiln_real)eps;
            double down = loss_of(ctx, in);
            params[i] = keep;
            double fd = (up - down) / (2 * eps), an = (double)saved[i];
            double denom = fmax(fmax(fabs(fd), fabs(an)), 1e-3 * global_max);
            double e = denom > 0 ? fabs(fd - an) / denom : 0;
            tensor_worst = fmax(tensor_worst, e);
        }
        printf("%-48s max relative error %.3e (%d samples, largest |grad| %.3e)\n", pi->name, tensor_worst, samples, gmax);
        worst = fmax(worst, tensor_worst);
    }
    printf("worst relative error %.3e (tolerance %.1e): %s\n", worst, tol, worst <= tol ? "ok" : "FAILED");
    for (int k = 0; k < g_step->num_inputs; k++) free(in[k].data);
    free(saved);
    KILN(free)(ctx);
    return worst <= tol ? 0 : 1;
}

/* An input of train_step from a .npy file, converted to its declared dtype. */
static void read_input(const kiln_tensor_desc *d, const char *path, kiln_tensor *t) {
    kiln_error err;
    kiln_npy_array a;
    if (kiln_npy_read(path, (size_t)1 << 31, &a, &err)) kiln_die("%s", err.msg);
    const int want_int = d->dtype == KILN_I32 || d->dtype == KILN_I64;
    if (want_int != (a.dtype == KILN_NPY_I32 || a.dtype == KILN_NPY_I64))
        kiln_die("%s: input '%s' is %s, but the file holds %s numbers", path, d->name, want_int ? "an integer" : "a float",
                 want_int ? "floating-point" : "integer");
    const size_t item = d->dtype == KILN_F64 || d->dtype == KILN_I64 ? 8 : 4;
    *t = (kiln_tensor){d->name, d->dtype, a.ndim, {0}, kiln_xcalloc(a.numel ? a.numel : 1, item, "an input")};
    for (int j = 0; j < a.ndim; j++) t->shape[j] = a.shape[j];
    for (size_t i = 0; i < a.numel; i++) {
        const uint8_t *src = (const uint8_t *)a.data + i * a.item;
        double f = 0;
        int64_t v = 0;
        if (a.dtype == KILN_NPY_I32) { int32_t x; memcpy(&x, src, 4); v = x; }
        else if (a.dtype == KILN_NPY_I64) memcpy(&v, src, 8);
        else if (a.dtype == KILN_NPY_F32) { float x; memcpy(&x, src, 4); f = x; }
        else memcpy(&f, src, 8);
        switch (d->dtype) {
        case KILN_I32:
            if (v < INT32_MIN || v > INT32_MAX) kiln_die("%s: value %lld does not fit in int32", path, (long long)v);
            ((int32_t *)t->data)[i] = (int32_t)v;
            break;
        case KILN_I64: ((int64_t *)t->data)[i] = v; break;
        case KILN_F32: ((float *)t->data)[i] = (float)f; break;
        case KILN_F64: ((double *)t->data)[i] = f; break;
        }
    }
    kiln_npy_free(&a);
}

static int cmd_dump(int argc, char **argv) {
    const char *weights = flag(argc, argv, "--weights", NULL), *out = flag(argc, argv, "--out", NULL);
    if (!weights || !out) kiln_die_code(2, "dump needs --weights, --out and the inputs of train_step");
    uint64_t seed = (uint64_t)flag_int(argc, argv, "--seed", "1", 0, INT64_MAX);
    kiln_tensor in[16];
    if (g_step->num_inputs > 16) kiln_die("train_step has too many inputs");
    for (int k = 0; k < g_step->num_inputs; k++) {
        const kiln_tensor_desc *d = &g_step->inputs[k];
        const char *path = NULL;
        if (d->role == KILN_ROLE_SEED) {
            int64_t *s = kiln_xcalloc(1, sizeof *s, "the seed");
            *s = (int64_t)seed;
            in[k] = (kiln_tensor){d->name, KILN_I64, 0, {0}, s};
            continue;
        }
        for (int i = 2; i < argc - 1; i++) {
            const char *a = argv[i + 1];
            size_t n = strlen(d->name);
            if (strcmp(argv[i], "--input") == 0 && strncmp(a, d->name, n) == 0 && a[n] == '=') path = a + n + 1;
        }
        if (!path && d->role == KILN_ROLE_TOKENS) path = flag(argc, argv, "--tokens", NULL);
        if (!path && d->role == KILN_ROLE_TARGETS) path = flag(argc, argv, "--targets", NULL);
        if (!path) kiln_die_code(2, "dump needs --input %s=FILE.npy", d->name);
        read_input(d, path, &in[k]);
    }
    kiln_ctx *ctx;
    if (KILN(open)(weights, &ctx) != KILN_OK) kiln_die("%s", ctx ? KILN(error)(ctx) : "out of memory");
    double loss = loss_of(ctx, in);
    const kiln_real *grads = KILN(grads)(ctx);
    const size_t pf = KILN(param_elements)();
    const int np = KILN(num_params)();
    float *g32 = kiln_xcalloc(pf ? pf : 1, sizeof *g32, "the gradients");
    for (size_t i = 0; i < pf; i++) g32[i] = (float)grads[i];
    kiln_st_entry *entries = kiln_xcalloc((size_t)np, sizeof *entries, "the tensor list");
    for (int p = 0; p < np; p++) {
        const kiln_param_desc *pi = KILN(param)(p);
        entries[p].name = pi->name;
        entries[p].dtype = KILN_DT_F32;
        entries[p].ndim = pi->rank;
        for (int d = 0; d < pi->rank; d++) entries[p].shape[d] = pi->shape[d];
        entries[p].data = g32 + pi->offset;
    }
    char loss_text[64];
    snprintf(loss_text, sizeof loss_text, "%.17g", loss);
    const char *keys[] = {"format", "loss"}, *values[] = {"pt", loss_text};
    kiln_error err;
    if (kiln_st_write(out, entries, (size_t)np, keys, values, 2, &err)) kiln_die("%s", err.msg);
    printf("loss %.9g\n", loss);
    for (int k = 0; k < g_step->num_inputs; k++) free(in[k].data);
    free(entries);
    free(g32);
    KILN(free)(ctx);
    return 0;
}

int main(int argc, char **argv) {
    kiln_set_progname(argv[0]);
    g_step = KILN(find_function)("train_step");
    if (!g_step) kiln_die("model %s has no train_step function", KILN(model_name)());
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) { usage(); return argc < 2 ? 2 : 0; }
    if (strcmp(argv[1], "fd") == 0) return cmd_fd(argc, argv);
    if (strcmp(argv[1], "dump") == 0) return cmd_dump(argc, argv);
    kiln_die_code(2, "unknown command '%s' (see 'gradcheck --help')", argv[1]);
    return 2;
}
