/*
 * gradcheck_main.c - the `gradcheck` tool of a Kiln-compiled model with a
 * training graph. Two commands:
 *   fd    compares every parameter's gradient from kiln_train_step with
 *         central finite differences of the loss (meaningful in an f64
 *         build: `kiln build --dtype f64`), on random weights and tokens;
 *   dump  writes the gradients for given weights, tokens and targets to a
 *         safetensors file (for comparisons with PyTorch autograd).
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
#error "gradcheck needs a model compiled with a training graph"
#endif

static void usage(void) {
    printf("usage: gradcheck fd [--seed N] [--batch B] [--seq T] [--samples K] [--eps E] [--tol R]\n"
           "       gradcheck dump --weights W --tokens IN.npy --targets TG.npy --out G.safetensors [--seed S]\n\n"
           "Model '%s' (%d parameter tensors), element type %s.\n"
           "fd: random weights and tokens; for K random elements of every parameter tensor, compares\n"
           "    d(loss)/d(p) from the backward graph with (loss(p+E) - loss(p-E)) / 2E. The error of an\n"
           "    element is |fd - grad| / max(|fd|, |grad|, 1e-3 * the model's largest |grad|); it fails\n"
           "    when any error exceeds R (default 1e-6). Defaults: B=2 T=min(5, context) K=6 E=1e-5.\n"
           "dump: loss and gradients for the given weights and [B, T] int32/int64 tokens and targets.\n",
           KILN_MODEL_NAME, KILN_NUM_PARAMS, KILN_REAL_IS_DOUBLE ? "f64" : "f32");
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

static kiln_real *alloc_real(size_t n) { return kiln_xcalloc(n ? n : 1, sizeof(kiln_real), "a buffer"); }

/* loss of one step at the current parameters (grads are scratch) */
static double loss_at(const kiln_real *params, kiln_real *grads, kiln_real *arena, const int32_t *tok,
                      const int32_t *tgt, int B, int T, uint64_t seed) {
    return (double)kiln_train_step(params, grads, arena, tok, tgt, B, T, seed);
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

static int cmd_fd(int argc, char **argv) {
    uint64_t seed = (uint64_t)flag_int(argc, argv, "--seed", "1", 0, INT64_MAX);
    int B = (int)flag_int(argc, argv, "--batch", "2", 1, 64);
    int T = (int)flag_int(argc, argv, "--seq", KILN_CONTEXT < 5 ? "1" : "5", 1, KILN_CONTEXT);
    int K = (int)flag_int(argc, argv, "--samples", "6", 1, 1000000);
    double eps = flag_f64(argc, argv, "--eps", "1e-5", 1e-12, 1.0);
    double tol = flag_f64(argc, argv, "--tol", "1e-6", 0.0, 1.0);

    kiln_rng rng;
    kiln_rng_seed(&rng, seed);
    kiln_real *params = alloc_real(KILN_PARAM_FLOATS), *grads = alloc_real(KILN_PARAM_FLOATS);
    kiln_real *scratch = alloc_real(KILN_PARAM_FLOATS);
    /* Weights large enough that every path matters; gains near one. */
    for (int p = 0; p < KILN_NUM_PARAMS; p++) {
        const kiln_param_info *pi = &kiln_params[p];
        for (size_t i = 0; i < pi->numel; i++) {
            double r = kiln_rng_normal(&rng);
            params[pi->offset + i] = (kiln_real)(pi->init == KILN_INIT_ONES ? 1.0 + 0.2 * r : 0.3 * r);
        }
    }
    size_t n = (size_t)B * T;
    int32_t *tok = kiln_xcalloc(n, sizeof *tok, "tokens"), *tgt = kiln_xcalloc(n, sizeof *tgt, "targets");
    for (size_t i = 0; i < n; i++) {
        tok[i] = (int32_t)kiln_rng_below(&rng, KILN_VOCAB);
        tgt[i] = (int32_t)kiln_rng_below(&rng, KILN_OUT_DIM);
    }
    kiln_real *arena = alloc_real(kiln_train_arena_floats(B, T));
    double loss = loss_at(params, grads, arena, tok, tgt, B, T, seed);
    printf("model %s, B=%d T=%d, loss %.12g, eps %g\n", KILN_MODEL_NAME, B, T, loss, eps);

    /* Errors are relative to the element's gradient, floored at 1e-3 of the largest gradient of
     * the model, so exactly-zero gradients (e.g. of a key bias) compare with round-off scale. */
    double worst = 0;
    const double global_max = max_abs(grads, KILN_PARAM_FLOATS);
    for (int p = 0; p < KILN_NUM_PARAMS; p++) {
        const kiln_param_info *pi = &kiln_params[p];
        const double gmax = max_abs(grads + pi->offset, pi->numel);
        double tensor_worst = 0;
        int samples = (size_t)K < pi->numel ? K : (int)pi->numel;
        for (int s = 0; s < samples; s++) {
            size_t i = pi->offset + ((size_t)K < pi->numel ? (size_t)kiln_rng_below(&rng, pi->numel) : (size_t)s);
            kiln_real keep = params[i];
            params[i] = keep + (kiln_real)eps;
            double up = loss_at(params, scratch, arena, tok, tgt, B, T, seed);
            params[i] = keep - (kiln_real)eps;
            double down = loss_at(params, scratch, arena, tok, tgt, B, T, seed);
            params[i] = keep;
            double fd = (up - down) / (2 * eps), an = (double)grads[i];
            double denom = fmax(fmax(fabs(fd), fabs(an)), 1e-3 * global_max);
            double e = denom > 0 ? fabs(fd - an) / denom : 0;
            tensor_worst = fmax(tensor_worst, e);
        }
        printf("%-48s max relative error %.3e (%d samples, largest |grad| %.3e)\n", pi->name, tensor_worst, samples, gmax);
        worst = fmax(worst, tensor_worst);
    }
    printf("worst relative error %.3e (tolerance %.1e): %s\n", worst, tol, worst <= tol ? "ok" : "FAILED");
    free(params); free(grads); free(scratch); free(arena); free(tok); free(tgt);
    return worst <= tol ? 0 : 1;
}

static int32_t *read_ids(const char *path, int64_t *B, int64_t *T) {
    kiln_error err;
    kiln_npy_ints a;
    if (kiln_npy_read_ints(path, (size_t)1 << 30, &a, &err)) kiln_die("%s", err.msg);
    if (a.ndim != 2 || a.shape[0] < 1 || a.shape[1] < 1 || a.shape[1] > KILN_CONTEXT)
        kiln_die("%s: expected ids of shape [B, T] with 1 <= T <= %d", path, KILN_CONTEXT);
    int32_t *ids = kiln_xcalloc(a.numel, sizeof *ids, "ids");
    for (size_t i = 0; i < a.numel; i++) {
        if (a.data[i] < 0 || a.data[i] >= KILN_VOCAB)
            kiln_die("%s: id %lld at flat index %zu is outside [0, %d)", path, (long long)a.data[i], i, KILN_VOCAB);
        ids[i] = (int32_t)a.data[i];
    }
    *B = a.shape[0];
    *T = a.shape[1];
    kiln_npy_free_ints(&a);
    return ids;
}

static int cmd_dump(int argc, char **argv) {
    const char *weights = flag(argc, argv, "--weights", NULL), *tokens = flag(argc, argv, "--tokens", NULL);
    const char *targets = flag(argc, argv, "--targets", NULL), *out = flag(argc, argv, "--out", NULL);
    if (!weights || !tokens || !targets || !out) kiln_die_code(2, "dump needs --weights, --tokens, --targets and --out");
    uint64_t seed = (uint64_t)flag_int(argc, argv, "--seed", "1", 0, INT64_MAX);
    kiln_error err;
    kiln_safetensors st;
    if (kiln_st_open(weights, &st, &err)) kiln_die("%s", err.msg);
    kiln_tensor_spec specs[KILN_NUM_PARAMS];
    for (int p = 0; p < KILN_NUM_PARAMS; p++) {
        memset(&specs[p], 0, sizeof specs[p]);
        specs[p].name = kiln_params[p].name;
        specs[p].ndim = kiln_params[p].ndim;
        for (int d = 0; d < kiln_params[p].ndim; d++) specs[p].shape[d] = kiln_params[p].shape[d];
        specs[p].offset = kiln_params[p].offset;
    }
    float *w32 = kiln_xcalloc(KILN_PARAM_FLOATS, sizeof(float), "weights");
    if (kiln_st_load_f32(&st, specs, KILN_NUM_PARAMS, w32, KILN_PARAM_FLOATS, &err)) kiln_die("%s", err.msg);
    kiln_st_close(&st);
    kiln_real *params = alloc_real(KILN_PARAM_FLOATS), *grads = alloc_real(KILN_PARAM_FLOATS);
    for (size_t i = 0; i < KILN_PARAM_FLOATS; i++) params[i] = (kiln_real)w32[i];
    int64_t B, T, B2, T2;
    int32_t *tok = read_ids(tokens, &B, &T), *tgt = read_ids(targets, &B2, &T2);
    if (B != B2 || T != T2) kiln_die("tokens [%lld, %lld] and targets [%lld, %lld] differ in shape", (long long)B, (long long)T, (long long)B2, (long long)T2);
    kiln_real *arena = alloc_real(kiln_train_arena_floats((int)B, (int)T));
    double loss = (double)kiln_train_step(params, grads, arena, tok, tgt, (int)B, (int)T, seed);
    for (size_t i = 0; i < KILN_PARAM_FLOATS; i++) w32[i] = (float)grads[i];
    kiln_st_entry entries[KILN_NUM_PARAMS];
    for (int p = 0; p < KILN_NUM_PARAMS; p++) {
        memset(&entries[p], 0, sizeof entries[p]);
        entries[p].name = kiln_params[p].name;
        entries[p].dtype = KILN_DT_F32;
        entries[p].ndim = kiln_params[p].ndim;
        for (int d = 0; d < kiln_params[p].ndim; d++) entries[p].shape[d] = kiln_params[p].shape[d];
        entries[p].data = w32 + kiln_params[p].offset;
    }
    char loss_text[64];
    snprintf(loss_text, sizeof loss_text, "%.17g", loss);
    const char *keys[] = {"format", "loss"}, *values[] = {"pt", loss_text};
    if (kiln_st_write(out, entries, KILN_NUM_PARAMS, keys, values, 2, &err)) kiln_die("%s", err.msg);
    printf("loss %.9g\n", loss);
    free(w32); free(params); free(grads); free(arena); free(tok); free(tgt);
    return 0;
}

int main(int argc, char **argv) {
    kiln_set_progname(argv[0]);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) { usage(); return argc < 2 ? 2 : 0; }
    if (strcmp(argv[1], "fd") == 0) return cmd_fd(argc, argv);
    if (strcmp(argv[1], "dump") == 0) return cmd_dump(argc, argv);
    kiln_die_code(2, "unknown command '%s' (see 'gradcheck --help')", argv[1]);
    return 2;
}
