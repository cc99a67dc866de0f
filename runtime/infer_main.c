/*
 * infer_main.c - the `infer` command-line tool of a Kiln-compiled model.
 *
 * Linked with the generated model.c (which implements model.h) and
 * kiln_rt.c. Commands:
 *   init      random GPT-2-style weights -> safetensors
 *   forward   token ids (.npy) -> logits (.npy)
 *   generate  byte-level text generation from a prompt
 *   score     byte-level loss / perplexity of a file
 *   bench     time kiln_forward
 *
 * Every error is one line on stderr; exit status 1 for runtime errors,
 * 2 for usage errors.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "kiln_rt.h"
#include "model.h"

#define EXIT_USAGE 2
#define MAX_THREADS 4096
#define TOKENS_FILE_LIMIT ((size_t)1 << 30) /* .npy token files */
#define SCORE_FILE_LIMIT ((size_t)1 << 30)  /* text files to score */
#define SCORE_MAX_BATCH 8                   /* full windows per kiln_forward call */
#define SCORE_LOGITS_BUDGET ((size_t)256 << 20) /* ...fewer if their logits exceed this */
#define DEFAULT_SEED "1234"

/* ------------------------------------------------------------------------- */
/* Command table and argument parsing */

/* One flag of a command: "--name", the value's placeholder, the help text. */
typedef struct {
    const char *name;
    const char *metavar;
    const char *help;
} flag_def;

#define MAX_FLAGS 12

/* Flag values of one invocation, indexed like the command's flag table. */
typedef struct {
    const char *values[MAX_FLAGS];
    const char *positional; /* at most one positional argument */
} opts;

typedef struct command command;
struct command {
    const char *name;
    const char *usage;   /* arguments after the command name */
    const char *summary; /* one line */
    const char *details; /* extra help text, may be NULL */
    flag_def flags[MAX_FLAGS];
    const char *positional; /* name of the positional argument, or NULL */
    void (*run)(const command *cmd, const opts *o);
};

static void cmd_init(const command *cmd, const opts *o);
static void cmd_forward(const command *cmd, const opts *o);
static void cmd_generate(const command *cmd, const opts *o);
static void cmd_score(const command *cmd, const opts *o);
static void cmd_bench(const command *cmd, const opts *o);

static const command COMMANDS[] = {
    {"init", "--out W.safetensors [--seed N]",
     "write randomly initialized weights (GPT-2-style init)",
     "Normal weights use N(0, std^2) with each tensor's std; deterministic for a seed.",
     {{"--out", "W.safetensors", "output weights file (required; written atomically)"},
      {"--seed", "N", "random seed, 0..2^64-1 (default " DEFAULT_SEED ")"}},
     NULL,
     cmd_init},
    {"forward", "--weights W --tokens IN.npy --out LOGITS.npy",
     "compute logits for a batch of token ids",
     "IN.npy holds int32 or int64 ids of shape [B, T] (B >= 1, 1 <= T <= context);\n"
     "LOGITS.npy receives float32 logits of shape [B, T, out_dim].",
     {{"--weights", "W", "weights file (.safetensors, required)"},
      {"--tokens", "IN.npy", "token ids (required)"},
      {"--out", "LOGITS.npy", "output logits (required; written atomically)"}},
     NULL,
     cmd_forward},
    {"generate", "--weights W --prompt TEXT --tokens N [options]",
     "generate text byte by byte from a prompt",
     "Each prompt byte is a token. Prints the prompt, then streams each new byte.\n"
     "Beyond the context length, the model sees the last <context> tokens.",
     {{"--weights", "W", "weights file (.safetensors, required)"},
      {"--prompt", "TEXT", "prompt text, 1..context bytes (required)"},
      {"--tokens", "N", "number of tokens to generate (required)"},
      {"--temperature", "T", "sampling temperature, 0 = greedy (default 1.0)"},
      {"--top-k", "K", "sample from the K most likely tokens, 0 = off (default 0)"},
      {"--top-p", "P", "nucleus sampling threshold in (0, 1], 1 = off (default 1.0)"},
      {"--seed", "N", "random seed (default " DEFAULT_SEED ")"}},
     NULL,
     cmd_generate},
    {"score", "--weights W FILE", "report the byte-level loss of a file",
     "Scores every byte after the first, in windows of up to <context> predictions.\n"
     "Prints: tokens N  loss L nats  perplexity P  bits/char B  (N = predicted bytes).",
     {{"--weights", "W", "weights file (.safetensors, required)"}},
     "FILE",
     cmd_score},
    {"bench", "[--batch B] [--seq T] [options]", "time the forward pass",
     "Uses seeded random weights unless --weights is given, and random tokens.",
     {{"--batch", "B", "batch size (default 1)"},
      {"--seq", "T", "sequence length, 1..context (default: the context)"},
      {"--iters", "N", "timed iterations (default 10)"},
      {"--warmup", "N", "untimed warm-up iterations (default 2)"},
      {"--weights", "W", "weights file (default: random init)"},
      {"--seed", "N", "seed for random weights and tokens (default " DEFAULT_SEED ")"}},
     NULL,
     cmd_bench},
};
#define NUM_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static const char *g_threads = NULL; /* value of --threads, if given */

/* Prints the top-level help. */
static void print_main_help(FILE *f) {
    fprintf(f,
            "usage: %s [--threads N] COMMAND [flags]\n\n"
            "Inference for the Kiln-compiled model '%s' (vocab %d, output dim %d, context %d,\n"
            "%d parameter tensors, %lld parameters).\n\ncommands:\n",
            kiln_progname(), KILN_MODEL_NAME, KILN_VOCAB, KILN_OUT_DIM, KILN_CONTEXT,
            KILN_NUM_PARAMS, (long long)KILN_PARAM_FLOATS);
    for (size_t i = 0; i < NUM_COMMANDS; i++)
        fprintf(f, "  %-9s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f,
            "\nglobal flags (also accepted after the command):\n"
            "  --threads N   OpenMP threads, 1..%d (default: OpenMP's default, OMP_NUM_THREADS)\n"
            "  --help, -h    show help; '%s COMMAND --help' shows a command's flags\n",
            MAX_THREADS, kiln_progname());
}

/* Prints the help of one command. */
static void print_command_help(const command *c, FILE *f) {
    fprintf(f, "usage: %s %s %s\n\n%s.\n", kiln_progname(), c->name, c->usage, c->summary);
    if (c->details) fprintf(f, "%s\n", c->details);
    fprintf(f, "\nflags:\n");
    for (int i = 0; i < MAX_FLAGS && c->flags[i].name; i++) {
        char left[64];
        snprintf(left, sizeof left, "%s %s", c->flags[i].name, c->flags[i].metavar);
        fprintf(f, "  %-24s %s\n", left, c->flags[i].help);
    }
    fprintf(f, "  %-24s %s\n", "--threads N", "OpenMP threads (default: OpenMP's default)");
    fprintf(f, "  %-24s %s\n", "--help, -h", "show this help");
}

/* Dies with a usage error (exit status 2). */
#define usage_die(...) kiln_die_code(EXIT_USAGE, __VA_ARGS__)

/* Index of flag `name` in command c, or -1. */
static int find_flag(const command *c, const char *name, size_t name_len) {
    for (int i = 0; i < MAX_FLAGS && c->flags[i].name; i++)
        if (strlen(c->flags[i].name) == name_len && strncmp(c->flags[i].name, name, name_len) == 0)
            return i;
    return -1;
}

/* Parses the arguments after the command name into o. */
static void parse_command_args(const command *c, int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    int only_positional = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!only_positional && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            print_command_help(c, stdout);
            exit(0);
        }
        if (!only_positional && strcmp(a, "--") == 0) {
            only_positional = 1;
            continue;
        }
        if (!only_positional && a[0] == '-' && a[1] != '\0') {
            const char *eq = strchr(a, '=');
            size_t name_len = eq ? (size_t)(eq - a) : strlen(a);
            const char **slot;
            int idx = -1;
            if (name_len == 9 && strncmp(a, "--threads", 9) == 0) {
                slot = &g_threads;
            } else {
                idx = find_flag(c, a, name_len);
                if (idx < 0)
                    usage_die("unknown flag '%.*s' for '%s' (see '%s %s --help')", (int)name_len,
                              a, c->name, kiln_progname(), c->name);
                slot = &o->values[idx];
            }
            const char *value;
            if (eq) value = eq + 1;
            else if (i + 1 < argc) value = argv[++i];
            else usage_die("flag '%.*s' needs a value", (int)name_len, a);
            if (*slot && idx >= 0) usage_die("flag '%.*s' is given more than once", (int)name_len, a);
            *slot = value;
            continue;
        }
        if (!c->positional || o->positional)
            usage_die("unexpected argument '%s' for '%s' (see '%s %s --help')", a, c->name,
                      kiln_progname(), c->name);
        o->positional = a;
    }
}

/* Value of flag `name` (NULL if not given). */
static const char *opt_get(const command *c, const opts *o, const char *name) {
    int idx = find_flag(c, name, strlen(name));
    if (idx < 0) kiln_die("internal error: '%s' has no flag '%s'", c->name, name);
    return o->values[idx];
}

/* Value of a required flag; usage error if missing. */
static const char *opt_required(const command *c, const opts *o, const char *name) {
    const char *v = opt_get(c, o, name);
    if (!v) usage_die("'%s' needs %s (see '%s %s --help')", c->name, name, kiln_progname(), c->name);
    return v;
}

/* Integer flag in [lo, hi] with a default (def NULL: required); usage error if malformed. */
static int64_t opt_int(const command *c, const opts *o, const char *name, const char *def,
                       int64_t lo, int64_t hi) {
    const char *v = def ? opt_get(c, o, name) : opt_required(c, o, name);
    int64_t x = 0;
    kiln_error err;
    if (kiln_flag_i64(name, v ? v : def, lo, hi, &x, &err)) usage_die("%s", err.msg);
    return x;
}

/* Floating-point flag in [lo, hi] with a default. */
static double opt_double(const command *c, const opts *o, const char *name, const char *def,
                         double lo, double hi) {
    const char *v = opt_get(c, o, name);
    double x = 0;
    kiln_error err;
    if (kiln_flag_f64(name, v ? v : def, lo, hi, &x, &err)) usage_die("%s", err.msg);
    return x;
}

/* The --seed flag (any 64-bit unsigned value). */
static uint64_t opt_seed(const command *c, const opts *o) {
    const char *v = opt_get(c, o, "--seed");
    uint64_t x = 0;
    kiln_error err;
    if (kiln_flag_u64("--seed", v ? v : DEFAULT_SEED, &x, &err)) usage_die("%s", err.msg);
    return x;
}

/* Applies --threads (validated) to OpenMP. */
static void apply_threads(void) {
    if (!g_threads) return;
    int64_t n = 0;
    kiln_error err;
    if (kiln_flag_i64("--threads", g_threads, 1, MAX_THREADS, &n, &err)) usage_die("%s", err.msg);
#ifdef _OPENMP
    omp_set_num_threads((int)n);
#endif
}

/* Number of threads kiln_forward will use. */
static int num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* ------------------------------------------------------------------------- */
/* Model parameters */

/* Checks the generated parameter table once (a failure is a compiler bug). */
static void check_param_table(void) {
    for (int i = 0; i < KILN_NUM_PARAMS; i++) {
        const kiln_param_info *p = &kiln_params[i];
        size_t numel = 1, end;
        if (p->ndim < 1 || p->ndim > 4)
            kiln_die("internal error: parameter '%s' has rank %d", p->name, p->ndim);
        for (int d = 0; d < p->ndim; d++)
            if (p->shape[d] < 0 || kiln_size_mul(numel, (size_t)p->shape[d], &numel))
                kiln_die("internal error: parameter '%s' has an invalid shape", p->name);
        if (numel != p->numel || kiln_size_add(p->offset, p->numel, &end) ||
            end > (size_t)KILN_PARAM_FLOATS)
            kiln_die("internal error: parameter '%s' does not fit the parameter block", p->name);
    }
}

/* Allocates the zeroed parameter block. */
static float *alloc_params(void) {
    return kiln_xcalloc((size_t)KILN_PARAM_FLOATS, sizeof(float), "the model parameters");
}

/* Fills params with the table's initializers, deterministically for seed. */
static void init_params(float *params, uint64_t seed) {
    kiln_rng rng;
    kiln_rng_seed(&rng, seed);
    for (int i = 0; i < KILN_NUM_PARAMS; i++) {
        const kiln_param_info *p = &kiln_params[i];
        float *dst = params + p->offset;
        switch (p->init) {
        case KILN_INIT_ZEROS:
            for (size_t j = 0; j < p->numel; j++) dst[j] = 0.0f;
            break;
        case KILN_INIT_ONES:
            for (size_t j = 0; j < p->numel; j++) dst[j] = 1.0f;
            break;
        case KILN_INIT_NORMAL:
            for (size_t j = 0; j < p->numel; j++)
                dst[j] = (float)(kiln_rng_normal(&rng) * (double)p->init_std);
            break;
        default:
            kiln_die("internal error: parameter '%s' has unknown init kind %d", p->name,
                     (int)p->init);
        }
    }
}

/* Loads and validates weights from a safetensors file into params. */
static void load_params(const char *path, float *params) {
    kiln_error err;
    kiln_safetensors st;
    if (kiln_st_open(path, &st, &err)) kiln_die("%s", err.msg);
    kiln_tensor_spec *specs =
        kiln_xcalloc(KILN_NUM_PARAMS, sizeof *specs, "the parameter table");
    for (int i = 0; i < KILN_NUM_PARAMS; i++) {
        specs[i].name = kiln_params[i].name;
        specs[i].ndim = kiln_params[i].ndim;
        for (int d = 0; d < kiln_params[i].ndim; d++) specs[i].shape[d] = kiln_params[i].shape[d];
        specs[i].offset = kiln_params[i].offset;
    }
    int rc = kiln_st_load_f32(&st, specs, KILN_NUM_PARAMS, params, (size_t)KILN_PARAM_FLOATS, &err);
    free(specs);
    kiln_st_close(&st);
    if (rc) kiln_die("%s", err.msg);
}

/* Parameters for a command: from --weights if given, else seeded random init. */
static float *get_params(const char *weights, uint64_t seed) {
    check_param_table();
    float *params = alloc_params();
    if (weights) load_params(weights, params);
    else init_params(params, seed);
    return params;
}

/* Allocates n floats, naming `what` on failure; checks n * 4 for overflow. */
static float *alloc_floats(size_t n, const char *what) {
    return kiln_xcalloc(n ? n : 1, sizeof(float), what);
}

/* Floats of logits for [B, T]; dies on overflow. */
static size_t logits_floats(size_t B, size_t T) {
    size_t n;
    if (kiln_size_mul(B, T, &n) || kiln_size_mul(n, (size_t)KILN_OUT_DIM, &n) ||
        n > SIZE_MAX / sizeof(float))
        kiln_die("batch too large: logits for B=%zu, T=%zu do not fit in memory", B, T);
    return n;
}

/* ------------------------------------------------------------------------- */
/* init */

static void cmd_init(const command *cmd, const opts *o) {
    const char *out = opt_required(cmd, o, "--out");
    uint64_t seed = opt_seed(cmd, o);
    check_param_table();
    float *params = alloc_params();
    init_params(params, seed);
    kiln_st_entry *entries = kiln_xcalloc(KILN_NUM_PARAMS, sizeof *entries, "tensor list");
    for (int i = 0; i < KILN_NUM_PARAMS; i++) {
        const kiln_param_info *p = &kiln_params[i];
        entries[i].name = p->name;
        entries[i].dtype = KILN_DT_F32;
        entries[i].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) entries[i].shape[d] = p->shape[d];
        entries[i].data = params + p->offset;
    }
    const char *keys[] = {"format", "kiln_model"};
    const char *values[] = {"pt", KILN_MODEL_NAME};
    kiln_error err;
    if (kiln_st_write(out, entries, KILN_NUM_PARAMS, keys, values, 2, &err))
        kiln_die("%s", err.msg);
    printf("init: wrote %s (%d tensors, %lld parameters, seed %" PRIu64 ")\n", out,
           KILN_NUM_PARAMS, (long long)KILN_PARAM_FLOATS, seed);
    free(entries);
    free(params);
}

/* ------------------------------------------------------------------------- */
/* forward */

static void cmd_forward(const command *cmd, const opts *o) {
    const char *weights = opt_required(cmd, o, "--weights");
    const char *tokens_path = opt_required(cmd, o, "--tokens");
    const char *out = opt_required(cmd, o, "--out");
    kiln_error err;

    /* token ids first: cheap to validate */
    kiln_npy_ints ids;
    if (kiln_npy_read_ints(tokens_path, TOKENS_FILE_LIMIT, &ids, &err)) kiln_die("%s", err.msg);
    if (ids.ndim != 2) {
        char shape[256] = "(";
        for (int d = 0; d < ids.ndim; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%" PRId64,
                     d ? ", " : "", ids.shape[d]);
        snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s)",
                 ids.ndim == 1 ? "," : "");
        kiln_die("%s: expected token ids of shape [B, T], got a %d-D array of shape %s",
                 tokens_path, ids.ndim, shape);
    }
    int64_t B = ids.shape[0], T = ids.shape[1];
    if (B < 1) kiln_die("%s: batch size must be at least 1, got %" PRId64, tokens_path, B);
    if (T < 1) kiln_die("%s: sequence length must be at least 1, got %" PRId64, tokens_path, T);
    if (T > KILN_CONTEXT)
        kiln_die("%s: sequence length %" PRId64 " exceeds the model context %d", tokens_path, T,
                 KILN_CONTEXT);
    if (B > INT32_MAX) kiln_die("%s: batch size %" PRId64 " is too large", tokens_path, B);
    size_t n = ids.numel;
    for (size_t i = 0; i < n; i++) {
        int64_t v = ids.data[i];
        if (v < 0 || v >= KILN_VOCAB)
            kiln_die("%s: token id %" PRId64 " at [%zu, %zu] is outside the vocabulary [0, %d)",
                     tokens_path, v, i / (size_t)T, i % (size_t)T, KILN_VOCAB);
    }
    int32_t *tokens = kiln_xcalloc(n, sizeof *tokens, "token ids");
    for (size_t i = 0; i < n; i++) tokens[i] = (int32_t)ids.data[i];
    kiln_npy_free_ints(&ids);

    float *params = get_params(weights, 0);
    float *logits = alloc_floats(logits_floats((size_t)B, (size_t)T), "logits");
    float *arena = alloc_floats(kiln_forward_arena_floats((int)B, (int)T), "the forward arena");
    kiln_forward(params, arena, tokens, (int)B, (int)T, logits);

    int64_t shape[3] = {B, T, KILN_OUT_DIM};
    if (kiln_npy_write_f32(out, logits, 3, shape, &err)) kiln_die("%s", err.msg);
    printf("forward: wrote %s [%" PRId64 ", %" PRId64 ", %d]\n", out, B, T, KILN_OUT_DIM);
    free(arena);
    free(logits);
    free(params);
    free(tokens);
}

/* ------------------------------------------------------------------------- */
/* generate */

static void cmd_generate(const command *cmd, const opts *o) {
    const char *weights = opt_required(cmd, o, "--weights");
    const char *prompt = opt_required(cmd, o, "--prompt");
    int64_t ntokens = opt_int(cmd, o, "--tokens", NULL, 0, INT64_MAX);
    double temperature = opt_double(cmd, o, "--temperature", "1.0", 0.0, 1e6);
    int top_k = (int)opt_int(cmd, o, "--top-k", "0", 0, KILN_OUT_DIM);
    double top_p = opt_double(cmd, o, "--top-p", "1.0", 0.0, 1.0);
    if (top_p <= 0.0) usage_die("--top-p: must be greater than 0 (1 disables nucleus sampling)");
    uint64_t seed = opt_seed(cmd, o);

    if (KILN_OUT_DIM > KILN_VOCAB || KILN_OUT_DIM > 256)
        kiln_die("generate needs a byte-level model, but the output dimension %d exceeds "
                 "min(vocab %d, 256)",
                 KILN_OUT_DIM, KILN_VOCAB);
    size_t plen = strlen(prompt);
    if (plen == 0) kiln_die("the prompt is empty; generate needs at least one byte");
    if (plen > (size_t)KILN_CONTEXT)
        kiln_die("the prompt is %zu bytes, longer than the model context %d", plen, KILN_CONTEXT);
    const int ctx = KILN_CONTEXT;
    int32_t *window = kiln_xcalloc((size_t)ctx, sizeof *window, "the token window");
    for (size_t i = 0; i < plen; i++) {
        unsigned b = (unsigned char)prompt[i];
        if (b >= (unsigned)KILN_VOCAB)
            kiln_die("prompt byte %u at offset %zu is outside the vocabulary [0, %d)", b, i,
                     KILN_VOCAB);
        window[i] = (int32_t)b;
    }

    float *params = get_params(weights, 0);
    size_t arena_n = 0; /* the largest arena any window length needs */
    for (int t = 1; t <= ctx; t++) {
        size_t a = kiln_forward_arena_floats(1, t);
        if (a > arena_n) arena_n = a;
    }
    float *arena = alloc_floats(arena_n, "the forward arena");
    float *logits = alloc_floats(logits_floats(1, (size_t)ctx), "logits");
    kiln_sampler sampler;
    if (kiln_sampler_init(&sampler, KILN_OUT_DIM)) kiln_die("out of memory for the sampler");
    kiln_rng rng;
    kiln_rng_seed(&rng, seed);

    fwrite(prompt, 1, plen, stdout);
    fflush(stdout);
    int len = (int)plen;
    for (int64_t step = 0; step < ntokens; step++) {
        kiln_forward(params, arena, window, 1, len, logits);
        const float *last = logits + (size_t)(len - 1) * KILN_OUT_DIM;
        int tok = kiln_sample(&sampler, last, temperature, top_k, top_p, &rng);
        putchar(tok);
        if (fflush(stdout) != 0) kiln_die("cannot write to stdout");
        if (len == ctx) { /* slide the window by one token */
            memmove(window, window + 1, (size_t)(ctx - 1) * sizeof *window);
            len--;
        }
        window[len++] = tok;
    }
    if (isatty(STDOUT_FILENO)) putchar('\n');
    if (fflush(stdout) != 0 || ferror(stdout)) kiln_die("cannot write to stdout");
    kiln_sampler_free(&sampler);
    free(logits);
    free(arena);
    free(params);
    free(window);
}

/* ------------------------------------------------------------------------- */
/* score */

static void cmd_score(const command *cmd, const opts *o) {
    const char *weights = opt_required(cmd, o, "--weights");
    const char *path = o->positional;
    if (!path) usage_die("'score' needs a FILE argument (see '%s score --help')", kiln_progname());
    kiln_error err;
    uint8_t *text;
    size_t n;
    if (kiln_read_file(path, SCORE_FILE_LIMIT, &text, &n, &err)) kiln_die("%s", err.msg);
    if (n < 2) kiln_die("%s: need at least 2 bytes to score, got %zu", path, n);
    for (size_t i = 0; i < n; i++) {
        unsigned b = text[i];
        if (b >= (unsigned)KILN_VOCAB)
            kiln_die("%s: byte %u at offset %zu is outside the vocabulary [0, %d)", path, b, i,
                     KILN_VOCAB);
        if (i > 0 && b >= (unsigned)KILN_OUT_DIM)
            kiln_die("%s: byte %u at offset %zu cannot be predicted (output dimension %d)", path,
                     b, i, KILN_OUT_DIM);
    }

    float *params = get_params(weights, 0);
    const size_t ctx = KILN_CONTEXT, preds = n - 1;
    const size_t nfull = preds / ctx, tail = preds % ctx;
    size_t maxb = nfull < SCORE_MAX_BATCH ? nfull : SCORE_MAX_BATCH;
    while (maxb > 1 && maxb * ctx * KILN_OUT_DIM * sizeof(float) > SCORE_LOGITS_BUDGET) maxb--;
    size_t arena_n = 0, logit_n = 0, tok_n = 0;
    if (maxb) {
        arena_n = kiln_forward_arena_floats((int)maxb, (int)ctx);
        logit_n = logits_floats(maxb, ctx);
        tok_n = maxb * ctx;
    }
    if (tail) {
        size_t a = kiln_forward_arena_floats(1, (int)tail), l = logits_floats(1, tail);
        if (a > arena_n) arena_n = a;
        if (l > logit_n) logit_n = l;
        if (tail > tok_n) tok_n = tail;
    }
    float *arena = alloc_floats(arena_n, "the forward arena");
    float *logits = alloc_floats(logit_n, "logits");
    int32_t *tokens = kiln_xcalloc(tok_n, sizeof *tokens, "token ids");

    double nll = 0.0;
    size_t start = 0; /* first token of the current window */
    while (start < preds) {
        size_t left = preds - start;
        size_t B, T;
        if (left >= ctx) { /* a batch of full windows */
            B = left / ctx < maxb ? left / ctx : maxb;
            T = ctx;
        } else { /* the shorter last window */
            B = 1;
            T = left;
        }
        for (size_t i = 0; i < B * T; i++) tokens[i] = text[start + i];
        kiln_forward(params, arena, tokens, (int)B, (int)T, logits);
        for (size_t i = 0; i < B * T; i++)
            nll -= kiln_log_softmax_at(logits + i * KILN_OUT_DIM, KILN_OUT_DIM,
                                       text[start + i + 1]);
        start += B * T;
    }
    double loss = nll / (double)preds;
    printf("tokens %zu  loss %.4f nats  perplexity %.4f  bits/char %.4f\n", preds, loss, exp(loss),
           loss / log(2.0));
    free(tokens);
    free(logits);
    free(arena);
    free(params);
    free(text);
}

/* ------------------------------------------------------------------------- */
/* bench */

/* qsort comparator for doubles. */
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void cmd_bench(const command *cmd, const opts *o) {
    int B = (int)opt_int(cmd, o, "--batch", "1", 1, 1 << 20);
    char ctx_s[32];
    snprintf(ctx_s, sizeof ctx_s, "%d", KILN_CONTEXT);
    int T = (int)opt_int(cmd, o, "--seq", ctx_s, 1, KILN_CONTEXT);
    int iters = (int)opt_int(cmd, o, "--iters", "10", 1, 1000000);
    int warmup = (int)opt_int(cmd, o, "--warmup", "2", 0, 1000000);
    const char *weights = opt_get(cmd, o, "--weights");
    uint64_t seed = opt_seed(cmd, o);

    float *params = get_params(weights, seed);
    size_t ntok;
    if (kiln_size_mul((size_t)B, (size_t)T, &ntok)) kiln_die("batch too large");
    int32_t *tokens = kiln_xcalloc(ntok, sizeof *tokens, "token ids");
    kiln_rng rng;
    kiln_rng_seed(&rng, seed ^ 0x746f6b656e73ULL); /* independent stream for tokens */
    for (size_t i = 0; i < ntok; i++) tokens[i] = (int32_t)kiln_rng_below(&rng, KILN_VOCAB);
    float *logits = alloc_floats(logits_floats((size_t)B, (size_t)T), "logits");
    float *arena = alloc_floats(kiln_forward_arena_floats(B, T), "the forward arena");
    double *times = kiln_xcalloc((size_t)iters, sizeof *times, "timings");

    for (int i = 0; i < warmup; i++) kiln_forward(params, arena, tokens, B, T, logits);
    for (int i = 0; i < iters; i++) {
        double t0 = kiln_time_ms();
        kiln_forward(params, arena, tokens, B, T, logits);
        times[i] = kiln_time_ms() - t0;
    }
    qsort(times, (size_t)iters, sizeof *times, cmp_double);
    double median = iters % 2 ? times[iters / 2] : 0.5 * (times[iters / 2 - 1] + times[iters / 2]);
    printf("forward B=%d T=%d threads=%d: median %.3f ms  min %.3f ms  (%d iters)\n", B, T,
           num_threads(), median, times[0], iters);
    free(times);
    free(arena);
    free(logits);
    free(tokens);
    free(params);
}

/* ------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    kiln_set_progname(argc > 0 ? argv[0] : "infer");
    int i = 1;
    /* global flags before the command */
    while (i < argc && argv[i][0] == '-') {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_main_help(stdout);
            return 0;
        }
        if (strcmp(a, "--threads") == 0) {
            if (i + 1 >= argc) usage_die("flag '--threads' needs a value");
            g_threads = argv[i + 1];
            i += 2;
        } else if (strncmp(a, "--threads=", 10) == 0) {
            g_threads = a + 10;
            i++;
        } else {
            usage_die("unknown flag '%s' (see '%s --help')", a, kiln_progname());
        }
    }
    if (i >= argc) usage_die("missing command (see '%s --help')", kiln_progname());
    const command *cmd = NULL;
    for (size_t k = 0; k < NUM_COMMANDS; k++)
        if (strcmp(argv[i], COMMANDS[k].name) == 0) cmd = &COMMANDS[k];
    if (!cmd) usage_die("unknown command '%s' (see '%s --help')", argv[i], kiln_progname());
    opts o;
    parse_command_args(cmd, argc - i - 1, argv + i + 1, &o);
    apply_threads();
    cmd->run(cmd, &o);
    if (fflush(stdout) != 0 || ferror(stdout)) kiln_die("cannot write to stdout");
    return 0;
}
