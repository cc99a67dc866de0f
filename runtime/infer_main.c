/*
 * infer_main.c - the `infer` command-line tool of a Kiln-compiled model.
 *
 * Linked with the generated model.c (which implements model.h), kiln_rt.c
 * and kiln_model_rt.c. Commands:
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

#include "kiln_model_rt.h"
#include "kiln_rt.h"
#include "model.h"

#if defined(KILN_REAL_IS_DOUBLE) && KILN_REAL_IS_DOUBLE
#error "infer needs an f32 build of the model (kiln_real is double)"
#endif

#define TOKENS_FILE_LIMIT ((size_t)1 << 30) /* .npy token files */
#define SCORE_FILE_LIMIT ((size_t)1 << 30)  /* text files to score */
#define SCORE_MAX_BATCH 8                   /* full windows per kiln_forward call */
#define SCORE_LOGITS_BUDGET ((size_t)256 << 20) /* ...fewer if their logits exceed this */
#define DEFAULT_SEED "1234"

/* ------------------------------------------------------------------------- */
/* Command table */

typedef kiln_command command;
typedef kiln_opts opts;

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
    {"generate", "--weights W (--prompt TEXT | --prompt-ids IDS) --tokens N [options]",
     "generate text byte by byte from a prompt (or token ids)",
     "With --prompt each prompt byte is a token (byte-level models): prints the prompt,\n"
     "then streams each new byte. With --prompt-ids (any vocabulary) the prompt is token\n"
     "ids, and the prompt's and each new token's id are printed, separated by spaces.\n"
     "With the KV cache (default) the prompt is encoded once, in one forward pass, and\n"
     "each new token costs one decode step; once the context is full, the oldest half of\n"
     "the window is dropped and the rest re-encoded in one pass. --no-cache runs a full\n"
     "forward pass per token over the last <context> tokens (a window sliding by one), as\n"
     "models with bidirectional attention always do (a cache cannot serve them).",
     {{"--weights", "W", "weights file (.safetensors, required)"},
      {"--prompt", "TEXT", "prompt text, 1..context bytes"},
      {"--prompt-ids", "IDS", "prompt token ids instead, e.g. 464,2068,7586 (1..context ids < vocab)"},
      {"--tokens", "N", "number of tokens to generate (required)"},
      {"--timing", NULL, "print the prompt's and the new tokens' times to stderr"},
      {"--temperature", "T", "sampling temperature, 0 = greedy (default 1.0)"},
      {"--top-k", "K", "sample from the K most likely tokens, 0 = off (default 0)"},
      {"--top-p", "P", "nucleus sampling threshold in (0, 1], 1 = off (default 1.0)"},
      {"--seed", "N", "random seed (default " DEFAULT_SEED ")"},
      {"--no-cache", NULL, "recompute the whole window for every token (no KV cache)"}},
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
            KILN_MAX_THREADS, kiln_progname());
}

/* Shorthands for the shared command-line helpers. */
#define usage_die kiln_usage_die
#define opt_get kiln_opt_get
#define opt_required kiln_opt_required
#define opt_int kiln_opt_int
#define opt_double kiln_opt_double
#define opt_seed(c, o) kiln_opt_seed(c, o, DEFAULT_SEED)

/* Parameters for a command: from --weights if given, else seeded random init. */
static float *get_params(const char *weights, uint64_t seed) {
    kiln_check_param_table();
    float *params = kiln_alloc_params();
    if (weights) kiln_load_params(weights, params);
    else kiln_init_params(params, seed);
    return params;
}

/* The same, rearranged for kiln_forward / kiln_decode_step (kiln_pack_params). */
static float *get_packed_params(const char *weights, uint64_t seed) {
    float *params = get_params(weights, seed);
    if (kiln_pack_params(params) != 0) kiln_die("out of memory packing the weights");
    return params;
}

/* Allocates n zeroed floats (64-byte aligned), naming `what` on failure. */
static float *alloc_floats(size_t n, const char *what) { return kiln_xcalloc_floats(n, what); }

#define logits_floats kiln_logits_floats

/* ------------------------------------------------------------------------- */
/* init */

static void cmd_init(const command *cmd, const opts *o) {
    const char *out = opt_required(cmd, o, "--out");
    uint64_t seed = opt_seed(cmd, o);
    float *params = get_params(NULL, seed);
    kiln_st_entry *entries = kiln_xcalloc(KILN_NUM_PARAMS, sizeof *entries, "tensor list");
    for (int i = 0; i < KILN_NUM_PARAMS; i++)
        kiln_param_entry(i, NULL, params + kiln_params[i].offset, &entries[i]);
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

    float *params = get_packed_params(weights, 0);
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

/* The generated KV-cache decode step, when the model has one. */
#ifdef KILN_HAS_DECODE
#define KILN_HAS_DECODE_VALUE 1
#define decode_cache_floats kiln_decode_cache_floats
#define decode_arena_floats kiln_decode_arena_floats
#define decode_step kiln_decode_step
#ifdef KILN_HAS_PREFILL
#define KILN_HAS_PREFILL_VALUE 1
#else
#define KILN_HAS_PREFILL_VALUE 0
#endif
#else
#define KILN_HAS_DECODE_VALUE 0
#define KILN_HAS_PREFILL_VALUE 0
static size_t decode_cache_floats(void) { return 1; }
static size_t decode_arena_floats(void) { return 1; }
static void decode_step(const float *p, float *c, float *a, int32_t t, int pos, float *l) {
    (void)p; (void)c; (void)a; (void)t; (void)pos; (void)l;
}
#endif

/* The largest forward arena a window of 1 .. context tokens (batch 1) needs. */
static size_t window_arena_floats(void) {
    size_t n = 0;
    for (int t = 1; t <= KILN_CONTEXT; t++) {
        const size_t a = kiln_forward_arena_floats(1, t);
        if (a > n) n = a;
    }
    return n;
}

/* Parses --prompt-ids: comma-separated decimal ids, each < KILN_VOCAB, 1..context of them, into window. */
static int parse_prompt_ids(const char *text, int32_t *window) {
    int n = 0;
    const char *p = text;
    for (;;) {
        if (*p < '0' || *p > '9')
            usage_die("--prompt-ids: expected a comma-separated list of token ids, got '%s'", text);
        const char *start = p;
        long long v = 0;
        while (*p >= '0' && *p <= '9') {
            if (v < KILN_VOCAB) v = v * 10 + (*p - '0');
            p++;
        }
        if (v >= KILN_VOCAB)
            usage_die("--prompt-ids: id %.*s is outside the vocabulary [0, %d)", (int)(p - start), start, KILN_VOCAB);
        if (n == KILN_CONTEXT) usage_die("--prompt-ids: more than the model context of %d ids", KILN_CONTEXT);
        window[n++] = (int32_t)v;
        if (*p == '\0') return n;
        if (*p++ != ',') usage_die("--prompt-ids: expected a comma-separated list of token ids, got '%s'", text);
    }
}

static void cmd_generate(const command *cmd, const opts *o) {
    const char *weights = opt_required(cmd, o, "--weights");
    const char *prompt = opt_get(cmd, o, "--prompt"), *prompt_ids = opt_get(cmd, o, "--prompt-ids");
    if (!prompt == !prompt_ids) usage_die("generate needs exactly one of --prompt and --prompt-ids");
    const int timing = opt_get(cmd, o, "--timing") != NULL;
    int64_t ntokens = opt_int(cmd, o, "--tokens", NULL, 0, INT64_MAX);
    double temperature = opt_double(cmd, o, "--temperature", "1.0", 0.0, 1e6);
    int top_k = (int)opt_int(cmd, o, "--top-k", "0", 0, KILN_OUT_DIM);
    double top_p = opt_double(cmd, o, "--top-p", "1.0", 0.0, 1.0);
    if (top_p <= 0.0) usage_die("--top-p: must be greater than 0 (1 disables nucleus sampling)");
    uint64_t seed = opt_seed(cmd, o);

    if (KILN_OUT_DIM > KILN_VOCAB)
        kiln_die("generate needs an output dimension (%d) no larger than the vocabulary (%d): each sampled "
                 "output is fed back as a token", KILN_OUT_DIM, KILN_VOCAB);
    if (prompt && KILN_OUT_DIM > 256)
        kiln_die("--prompt needs a byte-level model, but the output dimension %d exceeds 256; "
                 "use --prompt-ids", KILN_OUT_DIM);
    const int ctx = KILN_CONTEXT;
    int32_t *window = kiln_xcalloc((size_t)ctx, sizeof *window, "the token window");
    size_t plen;
    if (prompt) {
        plen = strlen(prompt);
        if (plen == 0) kiln_die("the prompt is empty; generate needs at least one byte");
        if (plen > (size_t)KILN_CONTEXT)
            kiln_die("the prompt is %zu bytes, longer than the model context %d", plen, KILN_CONTEXT);
        for (size_t i = 0; i < plen; i++) {
            unsigned b = (unsigned char)prompt[i];
            if (b >= (unsigned)KILN_VOCAB)
                kiln_die("prompt byte %u at offset %zu is outside the vocabulary [0, %d)", b, i,
                         KILN_VOCAB);
            window[i] = (int32_t)b;
        }
    } else {
        plen = (size_t)parse_prompt_ids(prompt_ids, window);
    }

    float *params = get_packed_params(weights, 0);
    int use_cache = KILN_HAS_DECODE_VALUE && !opt_get(cmd, o, "--no-cache");
    /* With the KV cache: the cache (written position by position before it is read, so the positions never
     * reached cost no memory), one row of logits and the decode arena. Without: the full forward's arena and
     * logits for a whole window. */
    float *arena = NULL, *logits, *cache = NULL, *darena = NULL;
    if (use_cache) {
        cache = kiln_xalloc_floats(decode_cache_floats(), "the KV cache");
        darena = alloc_floats(decode_arena_floats(), "the decode arena");
        logits = alloc_floats(logits_floats(1, 1), "logits");
#if KILN_HAS_PREFILL_VALUE
        /* the prompt's forward pass (kiln_prefill); pages are touched as far as a window uses them */
        arena = kiln_xalloc_floats(window_arena_floats(), "the prompt's arena");
#endif
    } else {
        arena = alloc_floats(window_arena_floats(), "the forward arena");
        logits = alloc_floats(logits_floats(1, (size_t)ctx), "logits");
    }
    kiln_sampler sampler;
    if (kiln_sampler_init(&sampler, KILN_OUT_DIM)) kiln_die("out of memory for the sampler");
    kiln_rng rng;
    kiln_rng_seed(&rng, seed);

    if (prompt) {
        fwrite(prompt, 1, plen, stdout);
    } else {
        for (size_t i = 0; i < plen; i++) printf(i ? " %d" : "%d", (int)window[i]);
    }
    fflush(stdout);
    int len = (int)plen;
    int cached = 0; /* window[0 .. cached) is in the KV cache at positions 0 .. cached-1 */
    const double t_start = kiln_time_ms();
    double t_first = t_start; /* when the first new token was sampled (the prompt encoded) */
    for (int64_t step = 0; step < ntokens; step++) {
        const float *last;
        if (use_cache) {
#if KILN_HAS_PREFILL_VALUE
            if (cached == 0 && len > 1) { /* a prompt, or the window kept after a drop: one forward pass */
                kiln_prefill(params, cache, arena, window, len, logits);
                cached = len;
            }
#endif
            for (; cached < len; cached++) /* encode what the cache lacks; logits of the last one */
                decode_step(params, cache, darena, window[cached], cached, logits);
            last = logits;
        } else {
            kiln_forward(params, arena, window, 1, len, logits);
            last = logits + (size_t)(len - 1) * KILN_OUT_DIM;
        }
        int tok = kiln_sample(&sampler, last, temperature, top_k, top_p, &rng);
        if (step == 0) t_first = kiln_time_ms();
        if (prompt) putchar(tok);
        else printf(" %d", tok);
        if (fflush(stdout) != 0) kiln_die("cannot write to stdout");
        if (len == ctx) {
            /* full: without a cache slide by one token; with one, drop the oldest half and re-encode */
            int drop = use_cache ? (ctx / 2 > 0 ? ctx / 2 : 1) : 1;
            memmove(window, window + drop, (size_t)(ctx - drop) * sizeof *window);
            len -= drop;
            cached = 0;
        }
        window[len++] = tok;
    }
    const double t_end = kiln_time_ms();
    free(cache);
    free(darena);
    if (!prompt || isatty(STDOUT_FILENO)) putchar('\n');
    if (timing && ntokens > 0)
        fprintf(stderr, "prompt %zu tokens + first token %.1f ms; %lld more tokens %.1f ms: %.1f tokens/s (%s)\n",
                plen, t_first - t_start, (long long)(ntokens - 1), t_end - t_first,
                ntokens > 1 ? (double)(ntokens - 1) * 1e3 / (t_end - t_first) : 0.0,
                use_cache ? "KV cache" : "no cache");
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

    float *params = get_packed_params(weights, 0);
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

static void cmd_bench(const command *cmd, const opts *o) {
    int B = (int)opt_int(cmd, o, "--batch", "1", 1, 1 << 20);
    char ctx_s[32];
    snprintf(ctx_s, sizeof ctx_s, "%d", KILN_CONTEXT);
    int T = (int)opt_int(cmd, o, "--seq", ctx_s, 1, KILN_CONTEXT);
    int iters = (int)opt_int(cmd, o, "--iters", "10", 1, 1000000);
    int warmup = (int)opt_int(cmd, o, "--warmup", "2", 0, 1000000);
    const char *weights = opt_get(cmd, o, "--weights");
    uint64_t seed = opt_seed(cmd, o);

    float *params = get_packed_params(weights, seed);
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
    double median = kiln_median(times, (size_t)iters);
    printf("forward B=%d T=%d threads=%d: median %.3f ms  min %.3f ms  (%d iters, %s kernels)\n", B, T,
           kiln_num_threads(), median, times[0], iters, kiln_isa());
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
            kiln_cli_set_threads(argv[i + 1]);
            i += 2;
        } else if (strncmp(a, "--threads=", 10) == 0) {
            kiln_cli_set_threads(a + 10);
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
    kiln_cli_parse(cmd, argc - i - 1, argv + i + 1, &o);
    kiln_cli_apply_threads();
    cmd->run(cmd, &o);
    if (fflush(stdout) != 0 || ferror(stdout)) kiln_die("cannot write to stdout");
    return 0;
}
