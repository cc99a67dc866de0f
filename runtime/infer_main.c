/*
 * infer_main.c - the `infer` command-line tool of a Kiln-compiled model: a program over the model's C library
 * (libPREFIX.a, through model.h's KILN(...) names). Commands:
 *   init      random GPT-2-style weights -> safetensors
 *   run       any function of the model: inputs from .npy files, outputs to .npy files
 *   forward   token ids (.npy) -> logits (.npy)           (language models)
 *   generate  text or token ids from a prompt             (language models)
 *   score     byte-level loss / perplexity of a file      (byte-level language models)
 *             loss, BLEU and chrF of sentence pairs        (encoder–decoder models)
 *   translate greedy or beam-search translation          (encoder–decoder models)
 *   embed     sentence embeddings, WordPiece tokens in     (BERT-style encoders)
 *   tokenize  text to token ids and back
 *   attention a picture of one layer's attention weights (PNG or SVG)
 *   bench     time the forward pass
 *
 * A language model here is one whose forward function takes token ids [B, T] (role tokens) and returns
 * logits [B, T, V]; the library checks every input of every call.
 *
 * Every error is one line on stderr; exit status 1 for runtime errors, 2 for usage errors.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_beam.h"
#include "kiln_cli.h"
#include "kiln_plot.h"
#include "kiln_rt.h"
#include "kiln_wordpiece.h"
#include "model.h"
#include "kiln_program_api.h"

#if KILN_REAL_IS_DOUBLE
#error "infer needs an f32 build of the model (kiln_real is double)"
#endif

#define NPY_FILE_LIMIT ((size_t)1 << 31)    /* .npy input files */
#define SCORE_FILE_LIMIT ((size_t)1 << 30)  /* text files to score */
#define SCORE_MAX_BATCH 8                   /* full windows per forward call */
#define SCORE_LOGITS_BUDGET ((size_t)256 << 20) /* ...fewer if their logits exceed this */
#define DEFAULT_SEED "1234"

/* ------------------------------------------------------------------------- */
/* Command table */

typedef kiln_command command;
typedef kiln_opts opts;

static void cmd_init(const command *cmd, const opts *o);
static void cmd_run(const command *cmd, const opts *o);
static void cmd_forward(const command *cmd, const opts *o);
static void cmd_generate(const command *cmd, const opts *o);
static void cmd_score(const command *cmd, const opts *o);
static void cmd_bench(const command *cmd, const opts *o);
static void cmd_translate(const command *cmd, const opts *o);
static void cmd_tokenize(const command *cmd, const opts *o);
static void cmd_embed(const command *cmd, const opts *o);
static void cmd_attention(const command *cmd, const opts *o);

static const command COMMANDS[] = {
    {"init", "--out W.safetensors [--seed N]",
     "write randomly initialized weights (GPT-2-style init)",
     "Normal weights use N(0, std^2) with each tensor's std; deterministic for a seed.",
     {{"--out", "W.safetensors", "output weights file (required; written atomically)", 0},
      {"--seed", "N", "random seed, 0..2^64-1 (default " DEFAULT_SEED ")", 0}},
     NULL,
     cmd_init},
    {"run", "--weights W [--function F] --input NAME=IN.npy ... [--output NAME=OUT.npy ...]",
     "run any function of the model on .npy inputs",
     "Each input of the function comes from a .npy file (int32/int64 for integer inputs, float32/float64 for\n"
     "float ones); each is checked against the function's signature (dtype, rank, dims and their bounds, token\n"
     "ids inside the vocabulary, masks of 0 and 1). --output writes an output to a .npy file (float32).\n"
     "'infer run --list' prints every function's signature.",
     {{"--weights", "W", "weights file (.safetensors)", 0},
      {"--function", "F", "the function to run (default forward)", 0},
      {"--input", "NAME=IN.npy", "an input of the function", 1},
      {"--output", "NAME=OUT.npy", "write an output (written atomically)", 1},
      {"--list", NULL, "print the functions and their inputs and outputs, then exit", 0}},
     NULL,
     cmd_run},
    {"forward", "--weights W --tokens IN.npy --out LOGITS.npy",
     "compute logits for a batch of token ids",
     "IN.npy holds int32 or int64 ids of shape [B, T] (B >= 1, 1 <= T <= context);\n"
     "LOGITS.npy receives float32 logits of shape [B, T, out_dim].",
     {{"--weights", "W", "weights file (.safetensors, required)", 0},
      {"--tokens", "IN.npy", "token ids (required)", 0},
      {"--out", "LOGITS.npy", "output logits (required; written atomically)", 0}},
     NULL,
     cmd_forward},
    {"generate", "--weights W (--prompt TEXT | --prompt-ids IDS) --tokens N [options]",
     "generate text from a prompt (or token ids)",
     "With --prompt each prompt byte is a token (byte-level models): prints the prompt,\n"
     "then streams each new byte. With --prompt and --tokenizer (e.g. GPT-2's gpt2.tiktoken,\n"
     "or its vocab.json with merges.txt beside it) the prompt is cut into that tokenizer's\n"
     "ids and each new token's text is streamed. With --prompt-ids (any vocabulary) the\n"
     "prompt is token ids, and the prompt's and each new token's id are printed.\n"
     "With the KV cache (default) the prompt is encoded once, in one forward pass, and\n"
     "each new token costs one decode step; once the context is full, the oldest half of\n"
     "the window is dropped and the rest re-encoded in one pass. --no-cache runs a full\n"
     "forward pass per token over the last <context> tokens (a window sliding by one), as\n"
     "models with bidirectional attention always do (a cache cannot serve them).",
     {{"--weights", "W", "weights file (.safetensors, required)", 0},
      {"--prompt", "TEXT", "prompt text, 1..context bytes", 0},
      {"--prompt-ids", "IDS", "prompt token ids instead, e.g. 464,2068,7586 (1..context ids < vocab)", 0},
      {"--tokenizer", "FILE", "with --prompt: a byte-level BPE tokenizer (NAME.tiktoken, vocab.json, Kiln's)", 0},
      {"--tokens", "N", "number of tokens to generate (required)", 0},
      {"--timing", NULL, "print the prompt's and the new tokens' times to stderr", 0},
      {"--temperature", "T", "sampling temperature, 0 = greedy (default 1.0)", 0},
      {"--top-k", "K", "sample from the K most likely tokens, 0 = off (default 0)", 0},
      {"--top-p", "P", "nucleus sampling threshold in (0, 1], 1 = off (default 1.0)", 0},
      {"--seed", "N", "random seed (default " DEFAULT_SEED ")", 0},
      {"--no-cache", NULL, "recompute the whole window for every token (no KV cache)", 0}},
     NULL,
     cmd_generate},
    {"score", "--weights W (FILE | --pairs FILE.tsv)", "report the loss of a text file, or score translations",
     "A text file (byte-level language models): scores every byte after the first, in windows of up to\n"
     "<context> predictions (--seq N: N; above the context only for models whose positions extrapolate:\n"
     "sinusoidal, rotary, ALiBi, relative, T5 or none). Prints: tokens N  loss L nats  perplexity P  bits/char B.\n"
     "A model trained with masked_lm (bidirectional) is scored as it is trained: each window of --seq bytes has\n"
     "15% (its rate) of its positions chosen, 80% of those masked, 10% replaced by a random byte, 10% kept\n"
     "(the same positions for a --seed and window length), and the loss is over the chosen ones: masked N.\n"
     "--pairs (encoder-decoder models): source TAB target per line. Prints the teacher-forced cross-entropy\n"
     "per target token (eos included, no label smoothing) and its perplexity, then corpus BLEU and chrF\n"
     "(sacreBLEU's defaults: 13a tokens; character 6-grams, beta 2) of the translations of the sources\n"
     "(greedy, or --beam K) against the targets.",
     {{"--weights", "W", "weights file (.safetensors, required)", 0},
      {"--seq", "N", "a text file: predictions per window (default: the context)", 0},
      {"--seed", "N", "masked_lm models: the seed of the chosen positions (default " DEFAULT_SEED ")", 0},
      {"--pairs", "FILE.tsv", "sentence pairs to score (encoder-decoder models)", 0},
      {"--tokenizer", "FILE", "the tokenizer (default: the one saved with the weights)", 0},
      {"--beam", "K", "--pairs: beams, 1..64 (default 1: greedy)", 0},
      {"--length-penalty", "A", "--pairs: alpha of the length penalty (default 0.6)", 0},
      {"--length-style", "S", "--pairs: wu (((5 + n) / 6)^A, the default) or power (n^A, as transformers)", 0},
      {"--max-len", "N", "--pairs: tokens generated at most (default: the decoder's context)", 0},
      {"--hypotheses", "OUT.txt", "--pairs: also write the translations there, one line each", 0}},
     "FILE",
     cmd_score},
    {"translate", "--weights W (--text TEXT | --file IN.txt | --ids IDS | --ids-file IN.txt) [--beam K] [options]",
     "translate with an encoder-decoder model (greedy or beam search)",
     "Each source (--text, or each line of --file) is cut into tokens by the model's tokenizer (saved\n"
     "with the weights of a model trained from sentence pairs), followed by <eos>, and encoded once; the\n"
     "decoder then starts from <bos> and writes until <eos>, with the KV cache, its K beams one batch of\n"
     "rows. Beam search: candidates best first; one ending in eos among the K best finishes, scored by its\n"
     "log-probability over ((5 + n) / 6)^A (Wu et al. 2016, n its tokens with eos; --length-style power: n^A),\n"
     "one further down is dropped; the rest continue until K continue; the search stops when K have\n"
     "finished or after --max-len tokens. --beam 1 is greedy decoding. Prints one\n"
     "line per source as it goes. --ids and --ids-file take and print token ids instead of text (ids\n"
     "separated by spaces or commas; bos and eos left out of the output). With --scores each line starts\n"
     "with the log-probability and the normalized score, then a tab.",
     {{"--weights", "W", "weights file (.safetensors, required)", 0},
      {"--text", "TEXT", "one source sentence", 0},
      {"--file", "IN.txt", "sources, one sentence per line", 0},
      {"--ids", "IDS", "one source of token ids, e.g. 17,4,9", 0},
      {"--ids-file", "IN.txt", "sources, one line of ids each", 0},
      {"--tokenizer", "FILE", "the tokenizer (default: the one saved with the weights)", 0},
      {"--bos", "ID", "the id the decoder starts from (default: the tokenizer's <bos>)", 0},
      {"--eos", "ID", "the id that ends a translation (default: the tokenizer's <eos>)", 0},
      {"--beam", "K", "beams, 1..64 (default 4)", 0},
      {"--length-penalty", "A", "alpha of the length penalty (default 0.6)", 0},
      {"--length-style", "S", "wu: divide scores by ((5 + n) / 6)^A (Wu et al. 2016, the default); power: by n^A (fairseq, transformers)", 0},
      {"--max-len", "N", "tokens generated at most, eos included (default: the decoder's context)", 0},
      {"--scores", NULL, "print each translation's scores before it", 0}},
     NULL,
     cmd_translate},
    {"tokenize", "(--weights W | --tokenizer FILE) (--text TEXT | --file IN.txt) [--decode]",
     "cut text into token ids with a model's tokenizer, or ids back into text",
     "Prints one line of ids per line of text (the tokenizer's byte-level BPE, no <bos> or <eos> added);\n"
     "with --decode the input lines are ids and each comes out as text (special tokens left out).",
     {{"--weights", "W", "weights file whose tokenizer to use", 0},
      {"--tokenizer", "FILE", "a tokenizer file instead", 0},
      {"--text", "TEXT", "one line", 0},
      {"--file", "IN.txt", "lines", 0},
      {"--decode", NULL, "ids to text", 0}},
     NULL,
     cmd_tokenize},
    {"embed", "--weights W --vocab vocab.txt (--text TEXT | --file LINES.txt) --out EMB.npy [options]",
     "sentence embeddings of a BERT-style encoder",
     "Each line (or --text) is cut into WordPiece tokens with vocab.txt as BERT's tokenizer does it, between\n"
     "[CLS] and [SEP], and truncated to --max-len tokens; sentences of similar lengths are run together in\n"
     "batches, padded and masked. The model's forward function takes tokens, mask (and token_types, zeros\n"
     "here) [B, T]; its 'embedding' output [B, C] is used, or else its hidden states [B, T, C] averaged over\n"
     "the tokens. Each embedding is divided by its length (as sentence-transformers' Normalize does).\n"
     "Writes one row per line, in the file's order, to EMB.npy (float32 [N, C]), or with --out - prints\n"
     "each as a JSON list on its own line.",
     {{"--weights", "W", "weights file (.safetensors, required)", 0},
      {"--vocab", "FILE", "the WordPiece vocabulary, vocab.txt (required)", 0},
      {"--text", "TEXT", "one sentence", 0},
      {"--file", "LINES.txt", "sentences, one per line", 0},
      {"--out", "EMB.npy", "where the embeddings go; - prints JSON lines (required)", 0},
      {"--max-len", "N", "tokens per sentence at most, [CLS] and [SEP] included (default: the model's context)", 0},
      {"--batch", "B", "sentences per forward call (default 32)", 0},
      {"--cased", NULL, "a cased vocabulary: keep case and accents", 0},
      {"--no-normalize", NULL, "leave the embeddings unnormalized", 0},
      {"--verbose", NULL, "say which lines were truncated", 0}},
     NULL,
     cmd_embed},
    {"attention", "--weights W (--text TEXT | --ids IDS) [--layer L] [--head H] -o MAP.png",
     "draw what the heads of one attention look at, as a heat map (PNG or SVG)",
     "Runs the model's attention_maps function on one input and draws the weights of attention L, counted\n"
     "from 0 in the order the model computes them (layer by layer; an encoder's before the decoder's, a\n"
     "decoder layer's self-attention before its cross-attention; 'infer run --list' shows them): one head\n"
     "with --head, else a grid of all its heads. Rows are queries and columns keys, labelled with the tokens\n"
     "(a space shows as '_'); the colour runs from 0 (white) to 1 (dark blue). --text is cut into bytes\n"
     "(byte-level models), into --tokenizer's BPE tokens, or into --vocab's WordPiece tokens between [CLS]\n"
     "and [SEP]; --ids are token ids. An encoder-decoder reads --text with its tokenizer and <eos> as the\n"
     "source; its decoder reads <bos> and --target, or else its own greedy translation. A path ending in\n"
     ".svg gets an SVG, any other a PNG (both written atomically).",
     {{"--weights", "W", "weights file (.safetensors, required)", 0},
      {"--text", "TEXT", "the input text", 0},
      {"--ids", "IDS", "the input as token ids instead, e.g. 464,2068,7586", 0},
      {"--layer", "L", "which attention, from 0 (default 0)", 0},
      {"--head", "H", "one head, from 0 (default: all heads in a grid)", 0},
      {"-o", "MAP.png", "where the picture goes (.png or .svg)", 0},
      {"--out", "MAP.png", "the same as -o", 0},
      {"--npy", "OUT.npy", "also write the weights of all its heads [heads, T, S] (float32)", 0},
      {"--tokenizer", "FILE", "a byte-level BPE tokenizer for --text (NAME.tiktoken, vocab.json, Kiln's)", 0},
      {"--vocab", "FILE", "a WordPiece vocabulary for --text (BERT's vocab.txt)", 0},
      {"--cased", NULL, "with --vocab: a cased vocabulary", 0},
      {"--target", "TEXT", "encoder-decoder models: the target the decoder reads after <bos>", 0},
      {"--bos", "ID", "encoder-decoder models: the decoder's first id (default: the tokenizer's <bos>)", 0}},
     NULL,
     cmd_attention},
    {"bench", "[--batch B] [--seq T] [options]", "time the forward pass",
     "Uses seeded random weights unless --weights is given, and random inputs: token ids in the\n"
     "vocabulary, masks of ones, normal data. --batch sets every input's first dim, --seq its second.",
     {{"--batch", "B", "batch size (default 1)", 0},
      {"--seq", "T", "sequence length, up to its bound (default: the bound)", 0},
      {"--iters", "N", "timed iterations (default 10)", 0},
      {"--warmup", "N", "untimed warm-up iterations (default 2)", 0},
      {"--weights", "W", "weights file (default: random init)", 0},
      {"--seed", "N", "seed for random weights and inputs (default " DEFAULT_SEED ")", 0}},
     NULL,
     cmd_bench},
};
#define NUM_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])
/* score's flags that only --pairs reads */
static const char *const SEQ2SEQ_FLAGS[] = {"--tokenizer", "--beam", "--length-penalty", "--length-style", "--max-len", "--hypotheses"};

/* Shorthands for the shared command-line helpers. */
#define usage_die kiln_usage_die
#define opt_get kiln_opt_get
#define opt_required kiln_opt_required
#define opt_int kiln_opt_int
#define opt_double kiln_opt_double
#define opt_seed(c, o) kiln_opt_seed(c, o, DEFAULT_SEED)

static const char *dtype_name(kiln_dtype t) {
    static const char *const names[] = {"f32", "f64", "i32", "i64"};
    return (unsigned)t < 4 ? names[t] : "?";
}

/* "[B, T, 256]" with bounds: "[B, T <= 256, 256]" */
static const char *desc_shape(char *buf, size_t cap, const kiln_tensor_desc *d) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int k = 0; k < d->rank && n < cap; k++) {
        if (d->dims[k]) n += (size_t)snprintf(buf + n, cap - n, "%s%s", k ? ", " : "", d->dims[k]);
        else n += (size_t)snprintf(buf + n, cap - n, "%s%lld", k ? ", " : "", (long long)d->shape[k]);
        if (d->dims[k] && d->bounds[k] > 0 && n < cap) n += (size_t)snprintf(buf + n, cap - n, " <= %lld", (long long)d->bounds[k]);
    }
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

/* Prints the top-level help: the commands and the model's functions. */
static void print_main_help(FILE *f) {
    fprintf(f,
            "usage: %s [--threads N] COMMAND [flags]\n\n"
            "Inference for the Kiln-compiled model '%s' (%d parameter tensors, %zu parameters).\n\ncommands:\n",
            kiln_progname(), KILN(model_name)(), KILN(num_params)(), KILN(param_elements)());
    for (size_t i = 0; i < NUM_COMMANDS; i++)
        fprintf(f, "  %-9s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\nfunctions (%s run --list for their signatures):", kiln_progname());
    for (int i = 0; i < KILN(num_functions)(); i++) fprintf(f, " %s", KILN(function)(i)->name);
    fprintf(f,
            "\n\nglobal flags (also accepted after the command):\n"
            "  --threads N   OpenMP threads, 1..%d (default: OpenMP's default, OMP_NUM_THREADS)\n"
            "  --help, -h    show help; '%s COMMAND --help' shows a command's flags\n",
            KILN_MAX_THREADS, kiln_progname());
}

/* A context with the weights of --weights, or seeded random ones. */
static kiln_ctx *open_model(const char *weights, uint64_t seed) {
    kiln_ctx *ctx;
    if (KILN(create)(&ctx) != KILN_OK) kiln_die("out of memory for the model's weights");
    if ((weights ? KILN(load)(ctx, weights) : KILN(init)(ctx, seed)) != KILN_OK) kiln_die("%s", KILN(error)(ctx));
    return ctx;
}

/* Runs a function; dies with the library's message. */
static void run_or_die(kiln_ctx *ctx, const char *fn, const kiln_tensor *in, int nin, kiln_tensor *out, int nout) {
    if (KILN(run)(ctx, fn, in, nin, out, nout) != KILN_OK) kiln_die("%s", KILN(error)(ctx));
}

static void *xcalloc_or_die(size_t count, size_t size, const char *what) { return kiln_xcalloc(count, size, what); }

/* ------------------------------------------------------------------------- */
/* The language-model view of a model: forward(tokens [B, T]) -> logits [B, T, V] */

typedef struct {
    const kiln_function_desc *forward;
    int64_t vocab;     /* token ids lie in [0, vocab) */
    int64_t out_dim;   /* logits' last dim */
    int64_t context;   /* the bound of T */
} lm_info;

static lm_info language_model(const char *command) {
    lm_info m = {KILN(find_function)("forward"), 0, 0, 0};
    const kiln_function_desc *f = m.forward;
    if (!f || f->num_inputs != 1 || f->num_outputs != 1 || f->inputs[0].role != KILN_ROLE_TOKENS || f->inputs[0].rank != 2 ||
        !f->inputs[0].dims[0] || !f->inputs[0].dims[1] || f->outputs[0].rank != 3 || f->outputs[0].dims[2] ||
        f->inputs[0].bounds[1] <= 0)
        kiln_die("'%s' needs a language model, whose forward function takes token ids [B, T <= context] and returns "
                 "logits [B, T, V]; this one does not (use '%s run')", command, kiln_progname());
    m.vocab = f->inputs[0].limit;
    m.out_dim = f->outputs[0].shape[2];
    m.context = f->inputs[0].bounds[1];
    return m;
}

/* logits (B, T, out_dim) of token ids (B, T) */
static void lm_forward(kiln_ctx *ctx, const lm_info *m, const int32_t *tokens, int64_t B, int64_t T, float *logits) {
    kiln_tensor in = {m->forward->inputs[0].name, KILN_I32, 2, {B, T}, (void *)tokens};
    kiln_tensor out = {m->forward->outputs[0].name, KILN_F32, 3, {B, T, m->out_dim}, logits};
    run_or_die(ctx, "forward", &in, 1, &out, 1);
}

/* elements of B x T x n floats; dies on overflow */
static size_t floats_of(size_t B, size_t T, size_t n) {
    size_t r;
    if (kiln_size_mul(B, T, &r) || kiln_size_mul(r, n, &r) || r > SIZE_MAX / sizeof(float))
        kiln_die("batch too large: %zu x %zu x %zu floats do not fit in memory", B, T, n);
    return r;
}

/* ------------------------------------------------------------------------- */
/* init */

static void cmd_init(const command *cmd, const opts *o) {
    const char *out = opt_required(cmd, o, "--out");
    uint64_t seed = opt_seed(cmd, o);
    kiln_ctx *ctx = open_model(NULL, seed);
    if (KILN(save)(ctx, out) != KILN_OK) kiln_die("%s", KILN(error)(ctx));
    printf("init: wrote %s (%d tensors, %lld parameters, seed %" PRIu64 ")\n", out, KILN(num_params)(),
           (long long)KILN(param_elements)(), seed);
    KILN(free)(ctx);
}

/* ------------------------------------------------------------------------- */
/* run */

/* Splits "NAME=PATH"; dies on a malformed value. */
static void split_pair(const char *flag, const char *v, char *name, size_t cap, const char **path) {
    const char *eq = strchr(v, '=');
    if (!eq || eq == v || !eq[1] || (size_t)(eq - v) >= cap)
        usage_die("%s: expected NAME=FILE.npy, got '%s'", flag, v);
    memcpy(name, v, (size_t)(eq - v));
    name[eq - v] = '\0';
    *path = eq + 1;
}

/* The file of each tensor of a function named by a repeatable flag (NAME=FILE, each at most once); NULL for
 * the tensors not named. */
static const char **name_paths(const command *cmd, const opts *o, const char *flag, const kiln_function_desc *f,
                               const kiln_tensor_desc *tensors, int count) {
    const char *const *values;
    const int n = kiln_opt_list(cmd, o, flag, &values);
    const char **paths = xcalloc_or_die((size_t)count + 1, sizeof *paths, "file names");
    for (int i = 0; i < n; i++) {
        char name[256];
        const char *path;
        split_pair(flag, values[i], name, sizeof name, &path);
        int k = 0;
        while (k < count && strcmp(tensors[k].name, name) != 0) k++;
        if (k == count) usage_die("%s: %s has no %s '%s'", flag, f->name, flag + 2, name);
        if (paths[k]) usage_die("%s: '%s' is given twice", flag, name);
        paths[k] = path;
    }
    return paths;
}

static void list_functions(void) {
    char shape[256];
    printf("model %s\n", KILN(model_name)());
    for (int i = 0; i < KILN(num_functions)(); i++) {
        const kiln_function_desc *f = KILN(function)(i);
        static const char *const roles[] = {"data", "tokens", "mask", "targets", "positions", "seed"};
        printf("%s%s\n", f->name, f->uses_state ? "  (uses the KV cache)" : "");
        for (int k = 0; k < f->num_inputs; k++) {
            const kiln_tensor_desc *d = &f->inputs[k];
            printf("  input  %-12s %s%s  %s", d->name, dtype_name(d->dtype), desc_shape(shape, sizeof shape, d),
                   roles[d->role]);
            if (d->limit) printf(" in [0, %lld)", (long long)d->limit);
            if (d->has_ignore) printf(" or %lld (ignored)", (long long)d->ignore);
            printf("\n");
        }
        for (int k = 0; k < f->num_outputs; k++)
            printf("  output %-12s %s%s\n", f->outputs[k].name, dtype_name(f->outputs[k].dtype),
                   desc_shape(shape, sizeof shape, &f->outputs[k]));
        if (f->writes_grads) printf("  (and the gradient of every parameter)\n");
    }
}

/* An input's data from a .npy file, converted to the declared dtype (integers to integers, floats to floats). */
static void *load_input(const kiln_tensor_desc *d, const char *path, kiln_tensor *t) {
    kiln_npy_array a;
    kiln_error err;
    if (kiln_npy_read(path, NPY_FILE_LIMIT, &a, &err)) kiln_die("%s", err.msg);
    const int file_int = a.dtype == KILN_NPY_I32 || a.dtype == KILN_NPY_I64;
    const int want_int = d->dtype == KILN_I32 || d->dtype == KILN_I64;
    if (file_int != want_int)
        kiln_die("%s: input '%s' is %s, but the file holds %s numbers", path, d->name, dtype_name(d->dtype),
                 file_int ? "integer" : "floating-point");
    const size_t item = d->dtype == KILN_F64 || d->dtype == KILN_I64 ? 8 : 4;
    void *data = xcalloc_or_die(a.numel ? a.numel : 1, item, "an input");
    for (size_t i = 0; i < a.numel; i++) {
        const uint8_t *src = (const uint8_t *)a.data + i * a.item;
        if (want_int) {
            int64_t v;
            if (a.dtype == KILN_NPY_I32) { int32_t x; memcpy(&x, src, 4); v = x; } else memcpy(&v, src, 8);
            if (d->dtype == KILN_I32) {
                if (v < INT32_MIN || v > INT32_MAX) kiln_die("%s: input '%s': value %lld does not fit in int32", path, d->name, (long long)v);
                ((int32_t *)data)[i] = (int32_t)v;
            } else {
                ((int64_t *)data)[i] = v;
            }
        } else {
            double v;
            if (a.dtype == KILN_NPY_F32) { float x; memcpy(&x, src, 4); v = x; } else memcpy(&v, src, 8);
            if (d->dtype == KILN_F32) ((float *)data)[i] = (float)v;
            else ((double *)data)[i] = v;
        }
    }
    t->name = d->name;
    t->dtype = d->dtype;
    t->rank = a.ndim;
    for (int k = 0; k < a.ndim; k++) t->shape[k] = a.shape[k];
    t->data = data;
    kiln_npy_free(&a);
    return data;
}

/* The size a declared dim takes in this call: from an input with the same dim name. */
static int64_t bound_dim(const kiln_function_desc *f, const kiln_tensor *ins, const char *dim) {
    for (int k = 0; k < f->num_inputs; k++)
        for (int j = 0; j < f->inputs[k].rank && j < ins[k].rank; j++)
            if (f->inputs[k].dims[j] && strcmp(f->inputs[k].dims[j], dim) == 0) return ins[k].shape[j];
    return -1;
}

static void cmd_run(const command *cmd, const opts *o) {
    if (opt_get(cmd, o, "--list")) {
        list_functions();
        return;
    }
    const char *weights = opt_required(cmd, o, "--weights");
    const char *fname = opt_get(cmd, o, "--function");
    if (!fname) fname = "forward";
    const kiln_function_desc *f = KILN(find_function)(fname);
    if (!f) {
        char names[512] = "";
        for (int i = 0; i < KILN(num_functions)(); i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", KILN(function)(i)->name);
        usage_die("--function: model %s has no function '%s' (it has %s)", KILN(model_name)(), fname, names);
    }
    /* inputs: one file each */
    kiln_tensor *ins = xcalloc_or_die((size_t)f->num_inputs + 1, sizeof *ins, "inputs");
    void **buffers = xcalloc_or_die((size_t)f->num_inputs + (size_t)f->num_outputs + 1, sizeof *buffers, "buffers");
    const char **in_paths = name_paths(cmd, o, "--input", f, f->inputs, f->num_inputs);
    for (int k = 0; k < f->num_inputs; k++) {
        if (!in_paths[k]) usage_die("%s needs --input %s=FILE.npy", f->name, f->inputs[k].name);
        buffers[k] = load_input(&f->inputs[k], in_paths[k], &ins[k]);
    }
    /* outputs: every one computed, the named ones written */
    kiln_tensor *outs = xcalloc_or_die((size_t)f->num_outputs + 1, sizeof *outs, "outputs");
    const char **out_paths = name_paths(cmd, o, "--output", f, f->outputs, f->num_outputs);
    for (int k = 0; k < f->num_outputs; k++) {
        const kiln_tensor_desc *d = &f->outputs[k];
        outs[k].name = d->name;
        outs[k].dtype = d->dtype;
        outs[k].rank = d->rank;
        size_t n = 1;
        for (int j = 0; j < d->rank; j++) {
            int64_t size = d->dims[j] ? bound_dim(f, ins, d->dims[j]) : d->shape[j];
            if (size < 1) kiln_die("%s: no input gives the size of dim %s of output '%s'", f->name, d->dims[j], d->name);
            outs[k].shape[j] = size;
            if (kiln_size_mul(n, (size_t)size, &n)) kiln_die("output '%s' is too large", d->name);
        }
        buffers[f->num_inputs + k] = outs[k].data = xcalloc_or_die(n ? n : 1, d->dtype == KILN_F64 ? 8 : 4, "an output");
    }
    kiln_ctx *ctx = open_model(weights, 0);
    run_or_die(ctx, f->name, ins, f->num_inputs, outs, f->num_outputs);
    for (int k = 0; k < f->num_outputs; k++) {
        if (!out_paths[k]) continue;
        kiln_error err;
        int rc = outs[k].dtype == KILN_F64 ? kiln_npy_write_f64(out_paths[k], outs[k].data, outs[k].rank, outs[k].shape, &err)
                                           : kiln_npy_write_f32(out_paths[k], outs[k].data, outs[k].rank, outs[k].shape, &err);
        if (rc) kiln_die("%s", err.msg);
        printf("%s: wrote %s to %s [", f->name, outs[k].name, out_paths[k]);
        for (int j = 0; j < outs[k].rank; j++) printf("%s%lld", j ? ", " : "", (long long)outs[k].shape[j]);
        printf("]\n");
    }
    KILN(free)(ctx);
    for (int k = 0; k < f->num_inputs + f->num_outputs; k++) free(buffers[k]);
    free(buffers);
    free(ins);
    free(outs);
    free(in_paths);
    free(out_paths);
}

/* ------------------------------------------------------------------------- */
/* forward */

static void cmd_forward(const command *cmd, const opts *o) {
    const char *weights = opt_required(cmd, o, "--weights");
    const char *tokens_path = opt_required(cmd, o, "--tokens");
    const char *out = opt_required(cmd, o, "--out");
    lm_info m = language_model("forward");
    kiln_error err;

    /* token ids first: cheap to validate */
    kiln_npy_ints ids;
    if (kiln_npy_read_ints(tokens_path, NPY_FILE_LIMIT, &ids, &err)) kiln_die("%s", err.msg);
    if (ids.ndim != 2) {
        char shape[256] = "(";
        for (int d = 0; d < ids.ndim; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%" PRId64, d ? ", " : "", ids.shape[d]);
        snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s)", ids.ndim == 1 ? "," : "");
        kiln_die("%s: expected token ids of shape [B, T], got a %d-D array of shape %s", tokens_path, ids.ndim, shape);
    }
    int64_t B = ids.shape[0], T = ids.shape[1];
    if (B < 1) kiln_die("%s: batch size must be at least 1, got %" PRId64, tokens_path, B);
    if (T < 1) kiln_die("%s: sequence length must be at least 1, got %" PRId64, tokens_path, T);
    if (T > m.context)
        kiln_die("%s: sequence length %" PRId64 " exceeds the model context %lld", tokens_path, T, (long long)m.context);
    if (B > INT32_MAX) kiln_die("%s: batch size %" PRId64 " is too large", tokens_path, B);
    size_t n = ids.numel;
    for (size_t i = 0; i < n; i++) {
        int64_t v = ids.data[i];
        if (v < 0 || v >= m.vocab)
            kiln_die("%s: token id %" PRId64 " at [%zu, %zu] is outside the vocabulary [0, %lld)", tokens_path, v,
                     i / (size_t)T, i % (size_t)T, (long long)m.vocab);
    }
    int32_t *tokens = xcalloc_or_die(n, sizeof *tokens, "token ids");
    for (size_t i = 0; i < n; i++) tokens[i] = (int32_t)ids.data[i];
    kiln_npy_free_ints(&ids);

    float *logits = kiln_xalloc_floats(floats_of((size_t)B, (size_t)T, (size_t)m.out_dim), "logits");
    kiln_ctx *ctx = open_model(weights, 0);
    lm_forward(ctx, &m, tokens, B, T, logits);
    int64_t shape[3] = {B, T, m.out_dim};
    if (kiln_npy_write_f32(out, logits, 3, shape, &err)) kiln_die("%s", err.msg);
    printf("forward: wrote %s [%" PRId64 ", %" PRId64 ", %lld]\n", out, B, T, (long long)m.out_dim);
    KILN(free)(ctx);
    free(logits);
    free(tokens);
}

/* ------------------------------------------------------------------------- */
/* generate */

/* Parses --prompt-ids: comma-separated decimal ids, each < vocab, 1..context of them, into window. */
static int parse_prompt_ids(const char *text, const lm_info *m, int32_t *window) {
    int n = 0;
    const char *p = text;
    for (;;) {
        if (*p < '0' || *p > '9') usage_die("--prompt-ids: expected a comma-separated list of token ids, got '%s'", text);
        const char *start = p;
        long long v = 0;
        while (*p >= '0' && *p <= '9') {
            if (v < m->vocab) v = v * 10 + (*p - '0');
            p++;
        }
        if (v >= m->vocab)
            usage_die("--prompt-ids: id %.*s is outside the vocabulary [0, %lld)", (int)(p - start), start, (long long)m->vocab);
        if (n == m->context) usage_die("--prompt-ids: more than the model context of %lld ids", (long long)m->context);
        window[n++] = (int32_t)v;
        if (*p == '\0') return n;
        if (*p++ != ',') usage_die("--prompt-ids: expected a comma-separated list of token ids, got '%s'", text);
    }
}

static void cmd_generate(const command *cmd, const opts *o) {
    const char *weights = opt_required(cmd, o, "--weights");
    const char *prompt = opt_get(cmd, o, "--prompt"), *prompt_ids = opt_get(cmd, o, "--prompt-ids");
    if (!prompt == !prompt_ids) usage_die("generate needs exactly one of --prompt and --prompt-ids");
    lm_info m = language_model("generate");
    const int timing = opt_get(cmd, o, "--timing") != NULL;
    int64_t ntokens = opt_int(cmd, o, "--tokens", NULL, 0, INT64_MAX);
    double temperature = opt_double(cmd, o, "--temperature", "1.0", 0.0, 1e6);
    int top_k = (int)opt_int(cmd, o, "--top-k", "0", 0, m.out_dim);
    double top_p = opt_double(cmd, o, "--top-p", "1.0", 0.0, 1.0);
    if (top_p <= 0.0) usage_die("--top-p: must be greater than 0 (1 disables nucleus sampling)");
    uint64_t seed = opt_seed(cmd, o);

    if (m.out_dim > m.vocab)
        kiln_die("generate needs an output dimension (%lld) no larger than the vocabulary (%lld): each sampled "
                 "output is fed back as a token", (long long)m.out_dim, (long long)m.vocab);
    kiln_bpe *tok = NULL;
    const char *tok_path = opt_get(cmd, o, "--tokenizer");
    if (tok_path) {
        kiln_error err;
        if (!prompt) usage_die("--tokenizer goes with --prompt");
        if (kiln_bpe_load_file(tok_path, &tok, &err)) kiln_die("%s", err.msg);
        if (kiln_bpe_size(tok) > m.vocab)
            kiln_die("%s has %d ids, more than the model's vocabulary of %lld", tok_path, kiln_bpe_size(tok), (long long)m.vocab);
    }
    if (prompt && !tok && m.out_dim > 256)
        kiln_die("--prompt needs a byte-level model, but the output dimension %lld exceeds 256; use --tokenizer or "
                 "--prompt-ids", (long long)m.out_dim);
    const int ctx_len = (int)m.context;
    int32_t *window = xcalloc_or_die((size_t)ctx_len, sizeof *window, "the token window");
    size_t plen;
    if (prompt && tok) {
        kiln_error err;
        const size_t bytes = strlen(prompt);
        int32_t *ids = xcalloc_or_die(bytes + 1, sizeof *ids, "the prompt's ids");
        const int64_t n = kiln_bpe_encode(tok, (const uint8_t *)prompt, bytes, ids, bytes + 1, &err);
        if (n < 0) kiln_die("--prompt: %s", err.msg);
        if (n == 0) kiln_die("the prompt is empty; generate needs at least one token");
        if (n > ctx_len) kiln_die("the prompt is %lld tokens, longer than the model context %d", (long long)n, ctx_len);
        memcpy(window, ids, (size_t)n * sizeof *ids);
        plen = (size_t)n;
        free(ids);
    } else if (prompt) {
        plen = strlen(prompt);
        if (plen == 0) kiln_die("the prompt is empty; generate needs at least one byte");
        if (plen > (size_t)ctx_len) kiln_die("the prompt is %zu bytes, longer than the model context %d", plen, ctx_len);
        for (size_t i = 0; i < plen; i++) {
            unsigned b = (unsigned char)prompt[i];
            if (b >= (unsigned)m.vocab)
                kiln_die("prompt byte %u at offset %zu is outside the vocabulary [0, %lld)", b, i, (long long)m.vocab);
            window[i] = (int32_t)b;
        }
    } else {
        plen = (size_t)parse_prompt_ids(prompt_ids, &m, window);
    }

    kiln_ctx *ctx = open_model(weights, 0);
    /* the KV cache: prefill encodes a prompt at once, decode_step one token at a given position */
    const kiln_function_desc *prefill = KILN(find_function)("prefill"), *decode = KILN(find_function)("decode_step");
    int use_cache = prefill && decode && !opt_get(cmd, o, "--no-cache");
    if (use_cache && KILN(reset_state)(ctx, 1) != KILN_OK) kiln_die("%s", KILN(error)(ctx));
    /* one row of logits with the cache; a whole window's without */
    float *logits = kiln_xalloc_floats(floats_of(1, use_cache ? 1 : (size_t)ctx_len, (size_t)m.out_dim), "logits");
    kiln_sampler sampler;
    if (kiln_sampler_init(&sampler, (int)m.out_dim)) kiln_die("out of memory for the sampler");
    kiln_rng rng;
    kiln_rng_seed(&rng, seed);

    if (prompt) {
        fputs(prompt, stdout);
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
            if (cached == 0 && len > 1) { /* a prompt, or the window kept after a drop: one forward pass */
                kiln_tensor in = {"tokens", KILN_I32, 2, {1, len}, window};
                kiln_tensor out = {prefill->outputs[0].name, KILN_F32, 2, {1, m.out_dim}, logits};
                in.name = prefill->inputs[0].name;
                run_or_die(ctx, "prefill", &in, 1, &out, 1);
                cached = len;
            }
            for (; cached < len; cached++) { /* encode what the cache lacks; logits of the last one */
                int32_t position = cached;
                kiln_tensor in[2] = {{"tokens", KILN_I32, 2, {1, 1}, &window[cached]}, {"positions", KILN_I32, 2, {1, 1}, &position}};
                kiln_tensor out = {decode->outputs[0].name, KILN_F32, 3, {1, 1, m.out_dim}, logits};
                in[0].name = m.forward->inputs[0].name;
                run_or_die(ctx, "decode_step", in, 2, &out, 1);
            }
            last = logits;
        } else {
            lm_forward(ctx, &m, window, 1, len, logits);
            last = logits + (size_t)(len - 1) * (size_t)m.out_dim;
        }
        const int next = kiln_sample(&sampler, last, temperature, top_k, top_p, &rng);
        if (step == 0) t_first = kiln_time_ms();
        if (tok) { /* the token's bytes (none for a special) */
            size_t n;
            const uint8_t *b = kiln_bpe_bytes(tok, next, &n);
            if (n) fwrite(b, 1, n, stdout);
        } else if (prompt) putchar(next);
        else printf(" %d", next);
        if (fflush(stdout) != 0) kiln_die("cannot write to stdout");
        if (len == ctx_len) {
            /* full: without a cache slide by one token; with one, drop the oldest half and re-encode */
            int drop = use_cache ? (ctx_len / 2 > 0 ? ctx_len / 2 : 1) : 1;
            memmove(window, window + drop, (size_t)(ctx_len - drop) * sizeof *window);
            len -= drop;
            cached = 0;
        }
        window[len++] = next;
    }
    const double t_end = kiln_time_ms();
    if (!prompt || isatty(STDOUT_FILENO)) putchar('\n');
    if (timing && ntokens > 0)
        fprintf(stderr, "prompt %zu tokens + first token %.1f ms; %lld more tokens %.1f ms: %.1f tokens/s (%s)\n",
                plen, t_first - t_start, (long long)(ntokens - 1), t_end - t_first,
                ntokens > 1 ? (double)(ntokens - 1) * 1e3 / (t_end - t_first) : 0.0,
                use_cache ? "KV cache" : "no cache");
    if (fflush(stdout) != 0 || ferror(stdout)) kiln_die("cannot write to stdout");
    kiln_sampler_free(&sampler);
    kiln_bpe_free(tok);
    KILN(free)(ctx);
    free(logits);
    free(window);
}

/* ------------------------------------------------------------------------- */
/* score */

static void score_pairs(const command *cmd, const opts *o, const char *weights, const char *path);

#if defined(KILN_HAS_TRAIN) && defined(KILN_TRAIN_MASK_ID) && KILN_TRAIN_MASK_ID >= 0
/* score of a masked_lm model: windows of --seq bytes corrupted as training corrupts them (kiln_mlm_mask, from
 * --seed), the loss over the chosen positions. */
static void score_masked(const command *cmd, const opts *o, const char *weights, const char *path, const lm_info *m) {
    kiln_error err;
    uint8_t *text;
    size_t n;
    if (kiln_read_file(path, SCORE_FILE_LIMIT, &text, &n, &err)) kiln_die("%s", err.msg);
    if (n < 1) kiln_die("%s: an empty file has nothing to score", path);
    const int32_t mask_id = KILN_TRAIN_MASK_ID; /* a variable: a byte compared with a constant above 255 warns */
    for (size_t i = 0; i < n; i++)
        if (text[i] >= (unsigned)m->vocab || text[i] >= (unsigned)m->out_dim || (int32_t)text[i] == mask_id)
            kiln_die("%s: byte %u at offset %zu is not a token the model predicts (outputs [0, %lld), mask %d)", path,
                     text[i], i, (long long)m->out_dim, (int)KILN_TRAIN_MASK_ID);
    char context[32];
    snprintf(context, sizeof context, "%lld", (long long)m->context);
    const size_t win = (size_t)opt_int(cmd, o, "--seq", context, 1, (int64_t)1 << 24), V = (size_t)m->out_dim;
    kiln_rng rng;
    kiln_rng_seed(&rng, opt_seed(cmd, o));
    const size_t nfull = n / win;
    size_t maxb = nfull < SCORE_MAX_BATCH ? nfull : SCORE_MAX_BATCH;
    while (maxb > 1 && maxb * win * V * sizeof(float) > SCORE_LOGITS_BUDGET) maxb--;
    const size_t rows = maxb ? maxb * win : n % win;
    float *logits = kiln_xalloc_floats(floats_of(1, rows, V), "logits");
    int32_t *tokens = xcalloc_or_die(rows, sizeof *tokens, "token ids"), *targets = xcalloc_or_die(rows, sizeof *targets, "targets");
    kiln_ctx *ctx = open_model(weights, 0);
    double nll = 0.0;
    size_t chosen = 0;
    for (size_t start = 0; start < n;) {
        const size_t left = n - start, T = left >= win ? win : left, B = left >= win ? (left / win < maxb ? left / win : maxb) : 1;
        for (size_t b = 0; b < B; b++) {
            int32_t *in = tokens + b * T;
            for (size_t t = 0; t < T; t++) in[t] = text[start + b * T + t];
            kiln_mlm_mask(&rng, in, T, KILN_TRAIN_MASK_ID, KILN_TRAIN_MASK_RATE, (int64_t)V, in, targets + b * T);
        }
        lm_forward(ctx, m, tokens, (int64_t)B, (int64_t)T, logits);
        for (size_t i = 0; i < B * T; i++)
            if (targets[i] >= 0) {
                nll -= kiln_log_softmax_at(logits + i * V, (int)V, targets[i]);
                chosen++;
            }
        start += B * T;
    }
    if (chosen == 0) kiln_die("%s: no position was chosen to be masked (%zu bytes); score a longer file", path, n);
    const double loss = nll / (double)chosen;
    printf("masked %zu of %zu tokens  loss %.4f nats  perplexity %.4f  bits/char %.4f\n", chosen, n, loss, exp(loss), loss / log(2.0));
    KILN(free)(ctx);
    free(tokens);
    free(targets);
    free(logits);
    free(text);
}
#endif

static void cmd_score(const command *cmd, const opts *o) {
    const char *weights = opt_required(cmd, o, "--weights");
    const char *path = o->positional, *pairs = opt_get(cmd, o, "--pairs");
    if (pairs) {
        if (path) usage_die("'score' takes either --pairs FILE.tsv or a FILE of text, not both");
        if (opt_get(cmd, o, "--seq")) usage_die("--seq goes with a text FILE, not --pairs");
        score_pairs(cmd, o, weights, pairs);
        return;
    }
    for (size_t i = 0; i < sizeof SEQ2SEQ_FLAGS / sizeof SEQ2SEQ_FLAGS[0]; i++)
        if (opt_get(cmd, o, SEQ2SEQ_FLAGS[i])) usage_die("%s goes with --pairs", SEQ2SEQ_FLAGS[i]);
    if (!path) usage_die("'score' needs a FILE argument or --pairs FILE.tsv (see '%s score --help')", kiln_progname());
    lm_info m = language_model("score");
#if defined(KILN_HAS_TRAIN) && defined(KILN_TRAIN_MASK_ID) && KILN_TRAIN_MASK_ID >= 0
    if (KILN_TRAIN_MASK_RATE > 0) {
        score_masked(cmd, o, weights, path, &m);
        return;
    }
#endif
    if (opt_get(cmd, o, "--seed")) usage_die("--seed chooses the masked positions of a masked_lm model; this one predicts the next token");
    kiln_error err;
    uint8_t *text;
    size_t n;
    if (kiln_read_file(path, SCORE_FILE_LIMIT, &text, &n, &err)) kiln_die("%s", err.msg);
    if (n < 2) kiln_die("%s: need at least 2 bytes to score, got %zu", path, n);
    for (size_t i = 0; i < n; i++) {
        unsigned b = text[i];
        if (b >= (unsigned)m.vocab)
            kiln_die("%s: byte %u at offset %zu is outside the vocabulary [0, %lld)", path, b, i, (long long)m.vocab);
        if (i > 0 && b >= (unsigned)m.out_dim)
            kiln_die("%s: byte %u at offset %zu cannot be predicted (output dimension %lld)", path, b, i, (long long)m.out_dim);
    }

    char context[32];
    snprintf(context, sizeof context, "%lld", (long long)m.context);
    const size_t win = (size_t)opt_int(cmd, o, "--seq", context, 1, (int64_t)1 << 24), preds = n - 1, V = (size_t)m.out_dim;
    kiln_ctx *ctx = open_model(weights, 0);
    const size_t nfull = preds / win;
    size_t maxb = nfull < SCORE_MAX_BATCH ? nfull : SCORE_MAX_BATCH;
    while (maxb > 1 && maxb * win * V * sizeof(float) > SCORE_LOGITS_BUDGET) maxb--;
    const size_t rows = maxb ? maxb * win : preds % win;
    float *logits = kiln_xalloc_floats(floats_of(1, rows, V), "logits");
    int32_t *tokens = xcalloc_or_die(rows, sizeof *tokens, "token ids");

    double nll = 0.0;
    size_t start = 0; /* first token of the current window */
    while (start < preds) {
        size_t left = preds - start;
        size_t B, T;
        if (left >= win) { /* a batch of full windows */
            B = left / win < maxb ? left / win : maxb;
            T = win;
        } else { /* the shorter last window */
            B = 1;
            T = left;
        }
        for (size_t i = 0; i < B * T; i++) tokens[i] = text[start + i];
        lm_forward(ctx, &m, tokens, (int64_t)B, (int64_t)T, logits);
        for (size_t i = 0; i < B * T; i++) nll -= kiln_log_softmax_at(logits + i * V, (int)V, text[start + i + 1]);
        start += B * T;
    }
    double loss = nll / (double)preds;
    printf("tokens %zu  loss %.4f nats  perplexity %.4f  bits/char %.4f\n", preds, loss, exp(loss), loss / log(2.0));
    KILN(free)(ctx);
    free(tokens);
    free(logits);
    free(text);
}

/* ------------------------------------------------------------------------- */
/* translate, score --pairs: encoder-decoder models (kiln_seq2seq.c) */

/* Calls fn for each line of the file (without its newline), with "FILE:LINE" for messages. */
static void each_line(const char *path, void (*fn)(void *user, const char *line, size_t len, const char *where), void *user) {
    kiln_error err;
    uint8_t *buf;
    size_t len;
    if (kiln_read_file(path, SCORE_FILE_LIMIT, &buf, &len, &err)) kiln_die("%s", err.msg);
    size_t start = 0;
    for (int64_t line = 1; start < len; line++) {
        const uint8_t *nl = memchr(buf + start, '\n', len - start);
        const size_t end = nl ? (size_t)(nl - buf) : len;
        char where[4200];
        snprintf(where, sizeof where, "%s:%lld", path, (long long)line);
        fn(user, (const char *)buf + start, end - start, where);
        start = end + 1;
    }
    free(buf);
}

/* The model, its tokenizer (NULL when neither the weights nor --tokenizer have one) and its special ids. */
typedef struct {
    kiln_seq2seq m;
    kiln_ctx *ctx;
    kiln_bpe *tok;
    int32_t pad, bos, eos;
} translator;

static translator open_translator(const command *cmd, const opts *o, const char *weights) {
    translator t;
    memset(&t, 0, sizeof t);
    kiln_error err;
    t.ctx = open_model(weights, 0);
    kiln_api api = kiln_model_api(t.ctx);
    if (kiln_s2s_open(&t.m, &api, &err)) kiln_die("%s: %s", cmd->name, err.msg);
    if (kiln_s2s_tokenizer(weights, opt_get(cmd, o, "--tokenizer"), &t.tok, &err)) kiln_die("%s", err.msg);
    t.pad = t.bos = t.eos = -1;
    int64_t limit = t.m.vocab < t.m.target_vocab ? t.m.vocab : t.m.target_vocab;
    if (t.m.out_dim < limit) limit = t.m.out_dim;
    if (t.tok && kiln_s2s_check_tokenizer(t.tok, limit, &t.pad, &t.bos, &t.eos, &err)) kiln_die("%s", err.msg);
    return t;
}

static void free_translator(translator *t) {
    kiln_bpe_free(t->tok);
    KILN(free)(t->ctx);
}

/* The search options of --beam, --length-penalty, --max-len (bos and eos from the tokenizer). */
static kiln_beam_options beam_options(const command *cmd, const opts *o, const translator *t) {
    kiln_beam_options bo;
    bo.bos = t->bos;
    bo.eos = t->eos;
    bo.beam = (int)opt_int(cmd, o, "--beam", cmd->run == cmd_translate ? "4" : "1", 1, 64);
    bo.length_penalty = opt_double(cmd, o, "--length-penalty", "0.6", 0.0, 100.0);
    const char *style = opt_get(cmd, o, "--length-style");
    if (style && strcmp(style, "wu") && strcmp(style, "power")) usage_die("--length-style must be wu or power, got '%s'", style);
    bo.length_power = style && !strcmp(style, "power");
    char context[32];
    snprintf(context, sizeof context, "%lld", (long long)t->m.target_len);
    bo.max_len = (int)opt_int(cmd, o, "--max-len", context, 1, t->m.target_len);
    return bo;
}

/* Parses one source: ids separated by spaces, tabs or commas, each in [0, vocab), 1..limit of them. */
static int64_t parse_ids(const char *text, size_t len, int64_t vocab, int64_t limit, int32_t *ids, const char *where) {
    int64_t n = 0;
    size_t i = 0;
    for (;;) {
        while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == ',' || text[i] == '\r')) i++;
        if (i == len) break;
        if (text[i] < '0' || text[i] > '9') kiln_die("%s: expected token ids separated by spaces or commas, found '%c'", where, text[i]);
        int64_t v = 0;
        while (i < len && text[i] >= '0' && text[i] <= '9') {
            if (v < vocab) v = v * 10 + (text[i] - '0');
            i++;
        }
        if (v >= vocab) kiln_die("%s: id %lld is outside the vocabulary [0, %lld)", where, (long long)v, (long long)vocab);
        if (n == limit) kiln_die("%s: more than the %lld source ids the model takes", where, (long long)limit);
        ids[n++] = (int32_t)v;
    }
    if (n == 0) kiln_die("%s: an empty source", where);
    return n;
}

/* Encodes a line of text and <eos>. */
static int64_t encode_text(const translator *t, const char *text, size_t len, int32_t *ids, const char *where) {
    kiln_error err;
    if (len > 0 && text[len - 1] == '\r') len--;
    const int64_t n = kiln_bpe_encode(t->tok, (const uint8_t *)text, len, ids, (size_t)t->m.source_len, &err);
    if (n < 0) kiln_die("%s: %s", where, err.msg);
    if (n == 0) kiln_die("%s: an empty source", where);
    if (n + 1 > t->m.source_len)
        kiln_die("%s: the source is %lld tokens; with <eos> that is %lld, and the model takes at most %lld", where,
                 (long long)n, (long long)n + 1, (long long)t->m.source_len);
    ids[n] = t->eos;
    return n + 1;
}

/* Translates one source and prints it: text with a tokenizer (unless ids_out), else ids. */
static void translate_one(translator *t, const int32_t *ids, int64_t n, const kiln_beam_options *bo, int scores, int ids_out) {
    kiln_hypothesis best;
    kiln_error err;
    if (kiln_s2s_translate(&t->m, ids, n, bo, &best, &err)) kiln_die("%s", err.msg);
    if (scores) printf("%.6f %.6f\t", best.score, best.normalized);
    const int len = best.finished ? best.len - 1 : best.len;
    if (ids_out) {
        for (int i = 0; i < len; i++) printf(i ? " %d" : "%d", (int)best.tokens[i]);
    } else {
        char *text = kiln_bpe_decode(t->tok, best.tokens, (size_t)len);
        if (!text) kiln_die("out of memory");
        for (char *c = text; *c; c++)
            if (*c == '\n' || *c == '\r') *c = ' '; /* one line per source */
        fputs(text, stdout);
        free(text);
    }
    putchar('\n');
    if (fflush(stdout) != 0) kiln_die("cannot write to stdout");
    free(best.tokens);
}

/* translate --file / --ids-file: one source per line */
typedef struct {
    translator *t;
    int32_t *source;
    const kiln_beam_options *bo;
    int scores, ids_mode;
} translate_job;

static void translate_line(void *user, const char *line, size_t len, const char *where) {
    translate_job *j = user;
    const int64_t n = j->ids_mode ? parse_ids(line, len, j->t->m.vocab, j->t->m.source_len, j->source, where)
                                  : encode_text(j->t, line, len, j->source, where);
    translate_one(j->t, j->source, n, j->bo, j->scores, j->ids_mode);
}

static void cmd_translate(const command *cmd, const opts *o) {
    const char *weights = opt_required(cmd, o, "--weights");
    const char *ids = opt_get(cmd, o, "--ids"), *ids_file = opt_get(cmd, o, "--ids-file");
    const char *text = opt_get(cmd, o, "--text"), *file = opt_get(cmd, o, "--file");
    if (!!ids + !!ids_file + !!text + !!file != 1) usage_die("translate needs exactly one of --text, --file, --ids and --ids-file");
    translator t = open_translator(cmd, o, weights);
    const int ids_mode = ids || ids_file;
    if (!ids_mode && !t.tok)
        kiln_die("%s has no tokenizer (models trained from sentence pairs save theirs); give --tokenizer FILE, or ids "
                 "with --ids or --ids-file", weights);
    const char *bos = opt_get(cmd, o, "--bos"), *eos = opt_get(cmd, o, "--eos");
    if (ids_mode && !t.tok && (!bos || !eos)) usage_die("without a tokenizer, translating ids needs --bos and --eos");
    if (bos) t.bos = (int32_t)opt_int(cmd, o, "--bos", NULL, 0, t.m.target_vocab - 1);
    if (eos) t.eos = (int32_t)opt_int(cmd, o, "--eos", NULL, 0, t.m.out_dim - 1);
    const kiln_beam_options bo = beam_options(cmd, o, &t);
    const int scores = opt_get(cmd, o, "--scores") != NULL;
    int32_t *source = xcalloc_or_die((size_t)t.m.source_len, sizeof *source, "the source ids");
    if (ids || text) {
        const int64_t n = ids ? parse_ids(ids, strlen(ids), t.m.vocab, t.m.source_len, source, "--ids")
                              : encode_text(&t, text, strlen(text), source, "--text");
        translate_one(&t, source, n, &bo, scores, ids_mode);
    } else {
        translate_job job = {&t, source, &bo, scores, ids_mode};
        each_line(ids_file ? ids_file : file, translate_line, &job);
    }
    free(source);
    free_translator(&t);
}

/* tokenize: one line of text to ids, or (--decode) of ids to text */
typedef struct {
    const kiln_bpe *tok;
    int decode;
} tokenize_job;

static void tokenize_line(void *user, const char *text, size_t len, const char *where) {
    const tokenize_job *j = user;
    const kiln_bpe *tok = j->tok;
    const int decode = j->decode;
    if (len > 0 && text[len - 1] == '\r') len--;
    int32_t *ids = xcalloc_or_die(len + 1, sizeof *ids, "the ids");
    if (decode) {
        const int64_t n = parse_ids(text, len, kiln_bpe_size(tok), (int64_t)len + 1, ids, where);
        char *s = kiln_bpe_decode(tok, ids, (size_t)n);
        if (!s) kiln_die("out of memory");
        for (char *c = s; *c; c++)
            if (*c == '\n' || *c == '\r') *c = ' ';
        puts(s);
        free(s);
    } else {
        kiln_error err;
        const int64_t n = kiln_bpe_encode(tok, (const uint8_t *)text, len, ids, len + 1, &err);
        if (n < 0) kiln_die("%s: %s", where, err.msg);
        for (int64_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    }
    free(ids);
}

static void cmd_tokenize(const command *cmd, const opts *o) {
    const char *weights = opt_get(cmd, o, "--weights"), *tok_path = opt_get(cmd, o, "--tokenizer");
    const char *text = opt_get(cmd, o, "--text"), *file = opt_get(cmd, o, "--file");
    if (!text == !file) usage_die("tokenize needs exactly one of --text and --file");
    if (!weights && !tok_path) usage_die("tokenize needs --weights or --tokenizer");
    kiln_bpe *tok;
    kiln_error err;
    if (kiln_s2s_tokenizer(weights, tok_path, &tok, &err)) kiln_die("%s", err.msg);
    if (!tok) kiln_die("%s has no tokenizer", weights);
    const int decode = opt_get(cmd, o, "--decode") != NULL;
    tokenize_job job = {tok, decode};
    if (text) tokenize_line(&job, text, strlen(text), "--text");
    else each_line(file, tokenize_line, &job);
    if (fflush(stdout) != 0) kiln_die("cannot write to stdout");
    kiln_bpe_free(tok);
}

/* ------------------------------------------------------------------------- */
/* embed: sentence embeddings of an encoder (kiln_wordpiece.c) */

/* The encoder view of a model: forward(tokens [B, T], mask [B, T], token_types [B, T]?) returns an embedding
 * [B, C] (pooled by the model) or hidden states [B, T, C] (mean-pooled here over the mask). */
typedef struct {
    const kiln_function_desc *f;
    int tokens, mask, types; /* input indices (types -1 when the model has none) */
    int out, pooled;         /* the output read; whether it is [B, C] */
    int64_t vocab, context, dim;
} encoder_info;

static encoder_info encoder_model(void) {
    encoder_info e = {KILN(find_function)("forward"), -1, -1, -1, -1, 0, 0, 0, 0};
    const kiln_function_desc *f = e.f;
    int fits = f != NULL;
    for (int k = 0; fits && k < f->num_inputs; k++) {
        const kiln_tensor_desc *d = &f->inputs[k];
        if (d->rank != 2 || d->dtype != KILN_I32) fits = 0;
        else if (d->role == KILN_ROLE_MASK && e.mask < 0) e.mask = k;
        else if (d->role == KILN_ROLE_TOKENS && strcmp(d->name, "token_types") == 0 && e.types < 0) e.types = k;
        else if (d->role == KILN_ROLE_TOKENS && e.tokens < 0) e.tokens = k;
        else fits = 0;
    }
    for (int k = 0; fits && k < f->num_outputs && e.out < 0; k++)
        if (strcmp(f->outputs[k].name, "embedding") == 0 && f->outputs[k].rank == 2 && !f->outputs[k].dims[1]) e.out = k, e.pooled = 1;
    for (int k = 0; fits && k < f->num_outputs && e.out < 0; k++)
        if (f->outputs[k].rank == 3 && !f->outputs[k].dims[2]) e.out = k;
    if (!fits || e.tokens < 0 || e.mask < 0 || e.out < 0 || f->inputs[e.tokens].bounds[1] <= 0 || f->outputs[e.out].dtype != KILN_F32)
        kiln_die("'embed' needs an encoder whose forward function takes token ids [B, T <= context], a padding mask "
                 "[B, T] (and optionally token_types [B, T]) and returns an embedding [B, C] or hidden states [B, T, C]; "
                 "this one does not (use '%s run')", kiln_progname());
    e.vocab = f->inputs[e.tokens].limit;
    e.context = f->inputs[e.tokens].bounds[1];
    e.dim = f->outputs[e.out].shape[e.pooled ? 1 : 2];
    return e;
}

/* The sentences of an embed run, as ids with [CLS] and [SEP]. */
typedef struct {
    const kiln_wordpiece *wp;
    int32_t cls, sep;
    int64_t max_len;
    int verbose;
    int32_t **ids;
    int64_t *len;
    size_t n, cap;
} sentences;

static void add_sentence(void *user, const char *text, size_t len, const char *where) {
    sentences *s = user;
    if (len > 0 && text[len - 1] == '\r') len--;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->ids = realloc(s->ids, s->cap * sizeof *s->ids);
        s->len = realloc(s->len, s->cap * sizeof *s->len);
        if (!s->ids || !s->len) kiln_die("out of memory for the sentences");
    }
    int32_t *ids = xcalloc_or_die((size_t)s->max_len, sizeof *ids, "the ids");
    kiln_error err;
    const int64_t n = kiln_wordpiece_encode(s->wp, (const uint8_t *)text, len, ids + 1, (size_t)s->max_len - 2, &err);
    if (n < 0) kiln_die("%s: %s", where, err.msg);
    const int64_t kept = n < s->max_len - 2 ? n : s->max_len - 2;
    if (kept < n && s->verbose)
        fprintf(stderr, "%s: %lld tokens, truncated to the first %lld (--max-len %lld with [CLS] and [SEP])\n", where,
                (long long)n, (long long)kept, (long long)s->max_len);
    ids[0] = s->cls;
    ids[kept + 1] = s->sep;
    s->ids[s->n] = ids;
    s->len[s->n++] = kept + 2;
}

static const int64_t *sort_lengths;
static int by_length(const void *a, const void *b) {
    const size_t i = *(const size_t *)a, j = *(const size_t *)b;
    if (sort_lengths[i] != sort_lengths[j]) return sort_lengths[i] < sort_lengths[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

static void cmd_embed(const command *cmd, const opts *o) {
    const char *weights = opt_required(cmd, o, "--weights"), *vocab = opt_required(cmd, o, "--vocab");
    const char *text = opt_get(cmd, o, "--text"), *file = opt_get(cmd, o, "--file"), *out = opt_required(cmd, o, "--out");
    if (!text == !file) usage_die("embed needs exactly one of --text and --file");
    const encoder_info e = encoder_model();
    char context[32];
    snprintf(context, sizeof context, "%lld", (long long)e.context);
    const int64_t max_len = opt_int(cmd, o, "--max-len", context, 2, e.context);
    const int64_t batch = opt_int(cmd, o, "--batch", "32", 1, 4096);
    const int normalize = opt_get(cmd, o, "--no-normalize") == NULL;
    kiln_wordpiece *wp;
    kiln_error err;
    if (kiln_wordpiece_load(vocab, opt_get(cmd, o, "--cased") == NULL, &wp, &err)) kiln_die("%s", err.msg);
    if (e.vocab > 0 && kiln_wordpiece_size(wp) > e.vocab)
        kiln_die("%s has %d tokens, more than the model's vocabulary of %lld", vocab, kiln_wordpiece_size(wp), (long long)e.vocab);
    sentences s = {wp, kiln_wordpiece_id(wp, "[CLS]"), kiln_wordpiece_id(wp, "[SEP]"), max_len,
                   opt_get(cmd, o, "--verbose") != NULL, NULL, NULL, 0, 0};
    const int32_t pad = kiln_wordpiece_id(wp, "[PAD]") >= 0 ? kiln_wordpiece_id(wp, "[PAD]") : 0;
    if (s.cls < 0 || s.sep < 0) kiln_die("%s: no [CLS] or no [SEP] token", vocab);
    if (text) add_sentence(&s, text, strlen(text), "--text");
    else each_line(file, add_sentence, &s);

    /* batches of sentences of similar lengths, each padded to its longest */
    size_t *order = xcalloc_or_die(s.n + 1, sizeof *order, "the order");
    for (size_t i = 0; i < s.n; i++) order[i] = i;
    sort_lengths = s.len;
    qsort(order, s.n, sizeof *order, by_length);
    const kiln_function_desc *f = e.f;
    const size_t T = (size_t)max_len, B = (size_t)batch, C = (size_t)e.dim;
    float *emb = xcalloc_or_die(s.n * C + 1, sizeof *emb, "the embeddings");
    int32_t *tokens = xcalloc_or_die(B * T, sizeof *tokens, "a batch"), *mask = xcalloc_or_die(B * T, sizeof *mask, "a batch");
    int32_t *types = xcalloc_or_die(B * T, sizeof *types, "a batch");
    kiln_tensor ins[3], *outs = xcalloc_or_die((size_t)f->num_outputs, sizeof *outs, "outputs");
    kiln_ctx *ctx = open_model(weights, 0);
    for (size_t first = 0; first < s.n; first += B) {
        const size_t rows = s.n - first < B ? s.n - first : B, len = (size_t)s.len[order[first + rows - 1]];
        for (size_t r = 0; r < rows; r++) {
            const size_t i = order[first + r];
            for (size_t t = 0; t < len; t++) {
                const int in = t < (size_t)s.len[i];
                tokens[r * len + t] = in ? s.ids[i][t] : pad;
                mask[r * len + t] = in;
                types[r * len + t] = 0;
            }
        }
        const int32_t *data[3] = {tokens, mask, types};
        const int which[3] = {e.tokens, e.mask, e.types};
        for (int k = 0; k < f->num_inputs; k++) {
            int w = 0;
            while (which[w] != k) w++;
            ins[k] = (kiln_tensor){f->inputs[k].name, KILN_I32, 2, {(int64_t)rows, (int64_t)len}, (void *)data[w]};
        }
        for (int k = 0; k < f->num_outputs; k++) {
            const kiln_tensor_desc *d = &f->outputs[k];
            outs[k] = (kiln_tensor){d->name, d->dtype, d->rank, {0}, NULL};
            size_t n = 1;
            for (int j = 0; j < d->rank; j++) {
                outs[k].shape[j] = !d->dims[j] ? d->shape[j] : j == 0 ? (int64_t)rows : (int64_t)len;
                n *= (size_t)outs[k].shape[j];
            }
            outs[k].data = xcalloc_or_die(n ? n : 1, d->dtype == KILN_F64 ? 8 : 4, "an output");
        }
        run_or_die(ctx, f->name, ins, f->num_inputs, outs, f->num_outputs);
        const float *y = outs[e.out].data;
        for (size_t r = 0; r < rows; r++) {
            float *v = emb + order[first + r] * C;
            if (e.pooled) {
                memcpy(v, y + r * C, C * sizeof *v);
            } else { /* the mean over the sentence's tokens */
                const size_t n = (size_t)s.len[order[first + r]];
                for (size_t t = 0; t < n; t++)
                    for (size_t c = 0; c < C; c++) v[c] += y[(r * len + t) * C + c];
                for (size_t c = 0; c < C; c++) v[c] /= (float)n;
            }
            if (normalize) { /* divided by max(|v|, 1e-12), as torch.nn.functional.normalize does */
                double sq = 0;
                for (size_t c = 0; c < C; c++) sq += (double)v[c] * v[c];
                const double norm = sqrt(sq) > 1e-12 ? sqrt(sq) : 1e-12;
                for (size_t c = 0; c < C; c++) v[c] = (float)(v[c] / norm);
            }
        }
        for (int k = 0; k < f->num_outputs; k++) free(outs[k].data);
    }
    if (strcmp(out, "-") == 0) { /* JSON lines */
        for (size_t i = 0; i < s.n; i++) {
            putchar('[');
            for (size_t c = 0; c < C; c++) printf(c ? ", %.9g" : "%.9g", (double)emb[i * C + c]);
            puts("]");
        }
        if (fflush(stdout) != 0) kiln_die("cannot write to stdout");
    } else {
        const int64_t shape[2] = {(int64_t)s.n, (int64_t)C};
        if (kiln_npy_write_f32(out, emb, 2, shape, &err)) kiln_die("%s", err.msg);
        printf("embed: wrote %zu embeddings of %zu to %s\n", s.n, C, out);
    }
    KILN(free)(ctx);
    for (size_t i = 0; i < s.n; i++) free(s.ids[i]);
    free(s.ids);
    free(s.len);
    free(order);
    free(emb);
    free(tokens);
    free(mask);
    free(types);
    free(outs);
    kiln_wordpiece_free(wp);
}

/* score --pairs: teacher-forced loss, and BLEU and chrF of the translations, of every pair of a file. */
/* ------------------------------------------------------------------------- */
/* attention */

#define LABEL_CHARS 12 /* of a token's label in a picture */

/* A token's label in the pixel font's ASCII: printable bytes as they are, a space as '_', others escaped; at
 * most LABEL_CHARS characters (a longer token ends in '~'). */
static void byte_label(char *out, const uint8_t *b, size_t n) {
    char buf[8 * LABEL_CHARS];
    size_t k = 0;
    for (size_t i = 0; i < n && k < sizeof buf - 8; i++) {
        const uint8_t c = b[i];
        if (c == ' ') buf[k++] = '_';
        else if (c == '\n') { buf[k++] = '\\'; buf[k++] = 'n'; }
        else if (c == '\t') { buf[k++] = '\\'; buf[k++] = 't'; }
        else if (c > 32 && c < 127) buf[k++] = (char)c;
        else k += (size_t)snprintf(buf + k, sizeof buf - k, "\\x%02x", c);
    }
    buf[k] = '\0';
    if (k > LABEL_CHARS) { buf[LABEL_CHARS - 1] = '~'; buf[LABEL_CHARS] = '\0'; }
    memcpy(out, buf, strlen(buf) + 1);
}

/* One sequence of a picture: its ids and their labels. */
typedef struct {
    int32_t *ids;
    char (*labels)[LABEL_CHARS + 1];
    int64_t n;
} attn_sequence;

static attn_sequence new_sequence(int64_t cap) {
    attn_sequence s = {xcalloc_or_die((size_t)cap + 1, sizeof(int32_t), "token ids"),
                       xcalloc_or_die((size_t)cap + 1, LABEL_CHARS + 1, "labels"), 0};
    return s;
}

static void push_token(attn_sequence *s, int32_t id, const char *label) {
    s->ids[s->n] = id;
    snprintf(s->labels[s->n], LABEL_CHARS + 1, "%s", label);
    s->n++;
}

/* Labels every id of s from a BPE tokenizer (specials by name), or as numbers without one. */
static void label_bpe(attn_sequence *s, const kiln_bpe *tok, int32_t bos, int32_t eos, int32_t pad) {
    for (int64_t i = 0; i < s->n; i++) {
        size_t len = 0;
        const uint8_t *b = tok ? kiln_bpe_bytes(tok, s->ids[i], &len) : NULL;
        if (b) byte_label(s->labels[i], b, len);
        else if (s->ids[i] == bos) strcpy(s->labels[i], "<bos>");
        else if (s->ids[i] == eos) strcpy(s->labels[i], "<eos>");
        else if (s->ids[i] == pad) strcpy(s->labels[i], "<pad>");
        else snprintf(s->labels[i], LABEL_CHARS + 1, "%d", (int)s->ids[i]);
    }
}

/* The ids of --ids (spaces or commas between them) into a new sequence labelled by number. */
static attn_sequence ids_sequence(const char *text, int64_t vocab, int64_t limit, const char *flag) {
    attn_sequence s = new_sequence(limit);
    s.n = parse_ids(text, strlen(text), vocab, limit, s.ids, flag);
    for (int64_t i = 0; i < s.n; i++) snprintf(s.labels[i], LABEL_CHARS + 1, "%d", (int)s.ids[i]);
    return s;
}

/* The size of a symbolic dim of attention_maps given its inputs (dims NULL: a constant), or -1. */
static int64_t dim_size(const kiln_function_desc *f, const kiln_tensor *ins, const char *dim) {
    for (int k = 0; k < f->num_inputs; k++)
        for (int d = 0; d < f->inputs[k].rank; d++)
            if (f->inputs[k].dims[d] && strcmp(f->inputs[k].dims[d], dim) == 0) return ins[k].shape[d];
    return -1;
}

static void cmd_attention(const command *cmd, const opts *o) {
    const char *weights = opt_required(cmd, o, "--weights");
    const char *out = opt_get(cmd, o, "--out"), *out_short = opt_get(cmd, o, "-o");
    if (!out == !out_short) usage_die("attention needs one of -o and --out: where the picture goes (.png or .svg)");
    if (!out) out = out_short;
    const char *text = opt_get(cmd, o, "--text"), *ids_text = opt_get(cmd, o, "--ids");
    if (!text == !ids_text) usage_die("attention needs exactly one of --text and --ids");
    const char *tok_path = opt_get(cmd, o, "--tokenizer"), *vocab_path = opt_get(cmd, o, "--vocab");
    if (tok_path && vocab_path) usage_die("--tokenizer and --vocab are two tokenizers: give one");
    if ((tok_path || vocab_path) && !text) usage_die("--tokenizer and --vocab cut --text into tokens; --ids are tokens already");
    const kiln_function_desc *f = KILN(find_function)("attention_maps");
    if (!f) kiln_die("this model has no attention (its build has no attention_maps function)");
    const int layer = (int)opt_int(cmd, o, "--layer", "0", 0, f->num_outputs - 1);
    const kiln_tensor_desc *map = &f->outputs[layer];
    const int heads = (int)map->shape[1];
    const int head = opt_get(cmd, o, "--head") ? (int)opt_int(cmd, o, "--head", NULL, 0, heads - 1) : -1;

    /* the sequences: one, or an encoder-decoder's source and target */
    attn_sequence seq[2] = {{0}, {0}};
    int nseq = 1, tokens_in[2] = {-1, -1};
    kiln_ctx *ctx;
    if (KILN(find_function)("encode")) {
        translator t = open_translator(cmd, o, weights);
        ctx = t.ctx;
        kiln_s2s_inputs in;
        if (kiln_s2s_find_inputs(f, &in)) kiln_die("attention_maps does not take an encoder-decoder's source and target");
        tokens_in[0] = in.source;
        tokens_in[1] = in.target;
        nseq = 2;
        if (text && !t.tok) kiln_die("--text needs the model's tokenizer (saved with weights trained from pairs, or --tokenizer)");
        if (text) {
            seq[0] = new_sequence(t.m.source_len);
            seq[0].n = encode_text(&t, text, strlen(text), seq[0].ids, "--text");
        } else {
            seq[0] = ids_sequence(ids_text, t.m.vocab, t.m.source_len, "--ids");
        }
        const char *target = opt_get(cmd, o, "--target");
        seq[1] = new_sequence(t.m.target_len);
        if (t.bos < 0 && !opt_get(cmd, o, "--bos")) kiln_die("the decoder's first token is unknown: give --bos (no tokenizer names <bos>)");
        const int32_t bos = opt_get(cmd, o, "--bos") ? (int32_t)opt_int(cmd, o, "--bos", NULL, 0, t.m.target_vocab - 1) : t.bos;
        seq[1].ids[seq[1].n++] = bos;
        if (target) {  /* the decoder reads <bos> and the target */
            if (!t.tok) kiln_die("--target needs the model's tokenizer (saved with weights trained from pairs, or --tokenizer)");
            kiln_error err;
            const int64_t n = kiln_bpe_encode(t.tok, (const uint8_t *)target, strlen(target), seq[1].ids + 1,
                                              (size_t)t.m.target_len - 1, &err);
            if (n < 0) kiln_die("--target: %s", err.msg);
            if (n + 1 > t.m.target_len)
                kiln_die("--target: with <bos> the target is %lld tokens, and the decoder takes at most %lld",
                         (long long)n + 1, (long long)t.m.target_len);
            seq[1].n += n;
        } else {  /* the decoder reads <bos> and its own greedy translation */
            kiln_beam_options bo = {1, 0.6, 0, (int)t.m.target_len, bos, t.eos};
            kiln_hypothesis best;
            kiln_error err;
            if (kiln_s2s_translate(&t.m, seq[0].ids, seq[0].n, &bo, &best, &err)) kiln_die("%s", err.msg);
            for (int i = 0; i < best.len && seq[1].n < t.m.target_len && best.tokens[i] != t.eos; i++)
                seq[1].ids[seq[1].n++] = best.tokens[i];
            free(best.tokens);
        }
        label_bpe(&seq[0], t.tok, t.bos, t.eos, t.pad);
        label_bpe(&seq[1], t.tok, bos, t.eos, t.pad);
        kiln_bpe_free(t.tok);
    } else {
        if (opt_get(cmd, o, "--target") || opt_get(cmd, o, "--bos")) usage_die("--target and --bos are for encoder-decoder models");
        for (int k = 0; k < f->num_inputs; k++) {
            const kiln_tensor_desc *d = &f->inputs[k];
            if (d->role != KILN_ROLE_TOKENS || strcmp(d->name, "token_types") == 0) continue;
            if (tokens_in[0] >= 0) kiln_die("attention_maps takes two sequences of tokens ('%s', '%s'); draw it with 'run'", f->inputs[tokens_in[0]].name, d->name);
            tokens_in[0] = k;
        }
        if (tokens_in[0] < 0) kiln_die("attention_maps takes no token ids; draw its outputs from 'run'");
        const kiln_tensor_desc *d = &f->inputs[tokens_in[0]];
        const int64_t vocab = d->limit, limit = d->bounds[1] > 0 ? d->bounds[1] : INT32_MAX;
        if (ids_text) {
            seq[0] = ids_sequence(ids_text, vocab, limit, "--ids");
        } else if (vocab_path) {  /* WordPiece between [CLS] and [SEP], as BERT reads a sentence */
            kiln_wordpiece *wp;
            kiln_error err;
            if (kiln_wordpiece_load(vocab_path, opt_get(cmd, o, "--cased") == NULL, &wp, &err)) kiln_die("%s", err.msg);
            const int32_t cls = kiln_wordpiece_id(wp, "[CLS]"), sep = kiln_wordpiece_id(wp, "[SEP]");
            if (cls < 0 || sep < 0) kiln_die("%s: no [CLS] or no [SEP] token", vocab_path);
            if (kiln_wordpiece_size(wp) > vocab)
                kiln_die("%s has %d tokens, more than the model's vocabulary of %lld", vocab_path, kiln_wordpiece_size(wp), (long long)vocab);
            if (limit < 3) kiln_die("the model's context of %lld tokens leaves no room between [CLS] and [SEP]", (long long)limit);
            seq[0] = new_sequence(limit);
            const int64_t n = kiln_wordpiece_encode(wp, (const uint8_t *)text, strlen(text), seq[0].ids + 1, (size_t)limit - 2, &err);
            if (n < 0) kiln_die("--text: %s", err.msg);
            if (n + 2 > limit) kiln_die("--text: with [CLS] and [SEP] it is %lld tokens, and the model takes at most %lld", (long long)n + 2, (long long)limit);
            seq[0].ids[0] = cls;
            seq[0].ids[n + 1] = sep;
            seq[0].n = n + 2;
            for (int64_t i = 0; i < seq[0].n; i++) snprintf(seq[0].labels[i], LABEL_CHARS + 1, "%s", kiln_wordpiece_token(wp, seq[0].ids[i]));
            kiln_wordpiece_free(wp);
        } else if (tok_path) {
            kiln_bpe *tok;
            kiln_error err;
            if (kiln_bpe_load_file(tok_path, &tok, &err)) kiln_die("%s", err.msg);
            if (kiln_bpe_size(tok) > vocab)
                kiln_die("%s has %d ids, more than the model's vocabulary of %lld", tok_path, kiln_bpe_size(tok), (long long)vocab);
            const size_t bytes = strlen(text);
            seq[0] = new_sequence((int64_t)bytes + 1);
            const int64_t n = kiln_bpe_encode(tok, (const uint8_t *)text, bytes, seq[0].ids, bytes + 1, &err);
            if (n < 0) kiln_die("--text: %s", err.msg);
            if (n > limit) kiln_die("--text is %lld tokens, and the model takes at most %lld", (long long)n, (long long)limit);
            seq[0].n = n;
            label_bpe(&seq[0], tok, -1, -1, -1);
            kiln_bpe_free(tok);
        } else {  /* byte-level */
            const size_t bytes = strlen(text);
            if ((int64_t)bytes > limit) kiln_die("--text is %zu bytes, and the model takes at most %lld", bytes, (long long)limit);
            seq[0] = new_sequence((int64_t)bytes);
            for (size_t i = 0; i < bytes; i++) {
                const uint8_t b = (uint8_t)text[i];
                if (b >= vocab)
                    kiln_die("--text: byte %u at offset %zu is outside the vocabulary [0, %lld) (a byte-level model reads "
                             "bytes; use --tokenizer, --vocab or --ids)", b, i, (long long)vocab);
                char label[LABEL_CHARS + 1];
                byte_label(label, &b, 1);
                push_token(&seq[0], b, label);
            }
        }
        if (seq[0].n == 0) kiln_die("--text is empty: no tokens to draw");
        ctx = open_model(weights, 0);
    }

    /* the inputs: each sequence's ids, masks of ones and token types of zeros along their sequence */
    kiln_tensor ins[KILN_MAX_FLAGS];
    int32_t *buffers[KILN_MAX_FLAGS] = {0};
    if (f->num_inputs > KILN_MAX_FLAGS) kiln_die("attention_maps has too many inputs");
    for (int k = 0; k < f->num_inputs; k++) {
        const kiln_tensor_desc *d = &f->inputs[k];
        int s = k == tokens_in[0] ? 0 : k == tokens_in[1] ? 1 : -1;
        if (s < 0 && d->rank == 2 && d->dims[1])  /* a mask or token types: the sequence of the same dim */
            for (int j = 0; j < nseq; j++)
                if (f->inputs[tokens_in[j]].dims[1] && strcmp(f->inputs[tokens_in[j]].dims[1], d->dims[1]) == 0) s = j;
        const int fill = d->role == KILN_ROLE_MASK ? 1 : 0;
        if (s < 0 || d->dtype != KILN_I32 || (k != tokens_in[s] && d->role != KILN_ROLE_MASK && strcmp(d->name, "token_types") != 0))
            kiln_die("attention_maps takes an input '%s' that is not token ids, a mask or token types; draw it from 'run'", d->name);
        int32_t *data = seq[s].ids;
        if (k != tokens_in[s]) {
            data = buffers[k] = xcalloc_or_die((size_t)seq[s].n, sizeof *data, "an input");
            for (int64_t i = 0; i < seq[s].n; i++) data[i] = fill;
        }
        ins[k] = (kiln_tensor){d->name, KILN_I32, 2, {1, seq[s].n}, data};
    }
    /* every map, each [1, heads, T, S] */
    kiln_tensor *outs = xcalloc_or_die((size_t)f->num_outputs, sizeof *outs, "outputs");
    for (int k = 0; k < f->num_outputs; k++) {
        const kiln_tensor_desc *d = &f->outputs[k];
        size_t n = 1;
        outs[k] = (kiln_tensor){d->name, KILN_F32, d->rank, {0}, NULL};
        for (int j = 0; j < d->rank; j++) {
            outs[k].shape[j] = d->dims[j] ? dim_size(f, ins, d->dims[j]) : d->shape[j];
            if (outs[k].shape[j] < 0) kiln_die("attention_maps: the size of dim %s of '%s' is unknown", d->dims[j], d->name);
            n *= (size_t)outs[k].shape[j];
        }
        outs[k].data = kiln_xalloc_floats(n ? n : 1, "attention weights");
    }
    run_or_die(ctx, "attention_maps", ins, f->num_inputs, outs, f->num_outputs);

    /* the picture: rows are the queries' sequence, columns the keys' */
    const kiln_tensor *m = &outs[layer];
    const int rows = (int)m->shape[2], cols = (int)m->shape[3];
    const attn_sequence *qs = &seq[0], *ks = &seq[0];
    for (int j = 0; j < nseq; j++) {
        const char *dim = f->inputs[tokens_in[j]].dims[1];
        if (dim && map->dims[2] && strcmp(dim, map->dims[2]) == 0) qs = &seq[j];
        if (dim && map->dims[3] && strcmp(dim, map->dims[3]) == 0) ks = &seq[j];
    }
    const char **row_labels = xcalloc_or_die((size_t)rows + 1, sizeof *row_labels, "labels");
    const char **col_labels = xcalloc_or_die((size_t)cols + 1, sizeof *col_labels, "labels");
    for (int i = 0; i < rows; i++) row_labels[i] = qs->labels[i];
    /* keys that are not positions of a sequence (Linformer's projected rows, a dim of constant size): numbered */
    const int keys_are_tokens = map->dims[3] && cols <= ks->n;
    char (*key_rows)[16] = keys_are_tokens ? NULL : xcalloc_or_die((size_t)cols + 1, sizeof *key_rows, "labels");
    for (int i = 0; i < cols; i++) {
        if (!keys_are_tokens) snprintf(key_rows[i], sizeof key_rows[i], "row %d", i);
        col_labels[i] = keys_are_tokens ? ks->labels[i] : key_rows[i];
    }
    char (*titles)[32] = xcalloc_or_die((size_t)heads, sizeof *titles, "titles");
    const char **title_ptrs = xcalloc_or_die((size_t)heads, sizeof *title_ptrs, "titles");
    for (int h = 0; h < heads; h++) {
        snprintf(titles[h], sizeof titles[h], "head %d", h);
        title_ptrs[h] = titles[h];
    }
    const char *kind = nseq == 2 ? (qs == ks ? (qs == &seq[0] ? " (encoder)" : " (decoder)") : " (cross: target over source)") : "";
    char title[160], subtitle[200];
    if (head >= 0) snprintf(title, sizeof title, "%s: attention %d%s, head %d", KILN(model_name)(), layer, kind, head);
    else snprintf(title, sizeof title, "%s: attention %d%s, %d heads", KILN(model_name)(), layer, kind, heads);
    snprintf(subtitle, sizeof subtitle, "rows: queries, columns: %s; colour: the attention weight (each row sums to 1)",
             keys_are_tokens ? "keys" : "the keys' projected rows");
    const float *values = (const float *)m->data + (head >= 0 ? (size_t)head * rows * cols : 0);
    kiln_figure fig;
    kiln_heatmaps(&fig, values, head >= 0 ? 1 : heads, rows, cols, row_labels, col_labels, head >= 0 ? NULL : title_ptrs, title, subtitle);
    kiln_error err;
    if (kiln_figure_write(&fig, out, &err)) kiln_die("%s", err.msg);
    const char *npy = opt_get(cmd, o, "--npy");
    if (npy) {
        const int64_t shape[3] = {heads, rows, cols};
        if (kiln_npy_write_f32(npy, (const float *)m->data, 3, shape, &err)) kiln_die("%s", err.msg);
    }
    printf("attention: wrote %s (attention %d of %d, %s, %d x %d tokens, %d x %d pixels)\n", out, layer, f->num_outputs,
           head >= 0 ? titles[head] : "all heads", rows, cols, fig.width, fig.height);
    kiln_figure_free(&fig);
    for (int k = 0; k < f->num_outputs; k++) free(outs[k].data);
    for (int k = 0; k < f->num_inputs; k++) free(buffers[k]);
    for (int j = 0; j < nseq; j++) { free(seq[j].ids); free(seq[j].labels); }
    free(outs); free(row_labels); free(col_labels); free(key_rows); free(titles); free(title_ptrs);
    KILN(free)(ctx);
}

static void score_pairs(const command *cmd, const opts *o, const char *weights, const char *path) {
    translator t = open_translator(cmd, o, weights);
    if (!t.tok) kiln_die("%s has no tokenizer (models trained from sentence pairs save theirs); give --tokenizer FILE", weights);
    const kiln_beam_options bo = beam_options(cmd, o, &t);
    kiln_error err;
    kiln_pairs p;
    kiln_token_lists src, tgt;
    if (kiln_pairs_read(path, SCORE_FILE_LIMIT, &p, &err) ||
        kiln_pairs_encode(&p, path, 0, t.tok, t.eos, t.m.source_len, &src, &err) ||
        kiln_pairs_encode(&p, path, 1, t.tok, t.eos, t.m.target_len, &tgt, &err))
        kiln_die("%s", err.msg);
    size_t *idx = xcalloc_or_die(p.n, sizeof *idx, "the pairs");
    for (size_t i = 0; i < p.n; i++) idx[i] = i;
    const char *hyp_path = opt_get(cmd, o, "--hypotheses");
    FILE *hyps = NULL;
    if (hyp_path && !(hyps = fopen(hyp_path, "w"))) kiln_die("cannot open '%s' for writing", hyp_path);
    kiln_s2s_scores sc;
    if (kiln_s2s_score(&t.m, &p, &src, &tgt, idx, p.n, t.tok, t.pad, &bo, hyps, &sc, &err)) kiln_die("%s", err.msg);
    if (hyps && fclose(hyps) != 0) kiln_die("error writing '%s'", hyp_path);
    printf("pairs %zu  tokens %lld  loss %.4f nats  perplexity %.4f  BLEU %.2f  chrF %.2f  (%s, beam %d)\n", sc.pairs,
           (long long)sc.tokens, sc.loss, exp(sc.loss), sc.bleu, sc.chrf, bo.beam == 1 ? "greedy" : "beam search", bo.beam);
    free(idx);
    kiln_token_lists_free(&src);
    kiln_token_lists_free(&tgt);
    kiln_pairs_free(&p);
    free_translator(&t);
}

/* ------------------------------------------------------------------------- */
/* bench */

/* Random data for an input by its role: token ids in range, a mask of ones, normal floats. */
static void fill_input(const kiln_tensor_desc *d, void *data, size_t n, kiln_rng *rng) {
    for (size_t i = 0; i < n; i++) {
        if (d->dtype == KILN_F32) ((float *)data)[i] = (float)kiln_rng_normal(rng);
        else if (d->dtype == KILN_F64) ((double *)data)[i] = kiln_rng_normal(rng);
        else {
            int64_t v = d->role == KILN_ROLE_MASK ? 1 : d->limit > 0 ? (int64_t)kiln_rng_below(rng, (uint64_t)d->limit) : 0;
            if (d->dtype == KILN_I32) ((int32_t *)data)[i] = (int32_t)v;
            else ((int64_t *)data)[i] = v;
        }
    }
}

static void cmd_bench(const command *cmd, const opts *o) {
    const kiln_function_desc *f = KILN(find_function)("forward");
    int64_t seq_bound = 0;
    for (int k = 0; k < f->num_inputs; k++)
        if (f->inputs[k].rank > 1 && f->inputs[k].dims[1]) seq_bound = f->inputs[k].bounds[1];
    char bound_s[32];
    snprintf(bound_s, sizeof bound_s, "%lld", (long long)(seq_bound > 0 ? seq_bound : 1));
    int64_t B = opt_int(cmd, o, "--batch", "1", 1, 1 << 20);
    int64_t T = opt_int(cmd, o, "--seq", bound_s, 1, seq_bound > 0 ? seq_bound : 1 << 20);
    int iters = (int)opt_int(cmd, o, "--iters", "10", 1, 1000000);
    int warmup = (int)opt_int(cmd, o, "--warmup", "2", 0, 1000000);
    const char *weights = opt_get(cmd, o, "--weights");
    uint64_t seed = opt_seed(cmd, o);

    kiln_ctx *ctx = open_model(weights, seed);
    kiln_rng rng;
    kiln_rng_seed(&rng, seed ^ 0x746f6b656e73ULL); /* independent stream for the inputs */
    kiln_tensor *ins = xcalloc_or_die((size_t)f->num_inputs + 1, sizeof *ins, "inputs");
    kiln_tensor *outs = xcalloc_or_die((size_t)f->num_outputs + 1, sizeof *outs, "outputs");
    for (int io = 0; io < 2; io++) {
        const int count = io ? f->num_outputs : f->num_inputs;
        for (int k = 0; k < count; k++) {
            const kiln_tensor_desc *d = io ? &f->outputs[k] : &f->inputs[k];
            kiln_tensor *t = io ? &outs[k] : &ins[k];
            t->name = d->name;
            t->dtype = d->dtype;
            t->rank = d->rank;
            size_t n = 1;
            for (int j = 0; j < d->rank; j++) {
                int64_t size = !d->dims[j] ? d->shape[j] : j == 0 ? B : j == 1 ? T : d->bounds[j];
                if (size < 1) kiln_die("bench: dim %s of '%s' has no bound to run at", d->dims[j], d->name);
                t->shape[j] = size;
                if (kiln_size_mul(n, (size_t)size, &n)) kiln_die("bench: '%s' is too large", d->name);
            }
            t->data = xcalloc_or_die(n ? n : 1, d->dtype == KILN_F64 || d->dtype == KILN_I64 ? 8 : 4, "a tensor");
            if (!io) fill_input(d, t->data, n, &rng);
        }
    }
    double *times = xcalloc_or_die((size_t)iters, sizeof *times, "timings");
    for (int i = 0; i < warmup; i++) run_or_die(ctx, "forward", ins, f->num_inputs, outs, f->num_outputs);
    for (int i = 0; i < iters; i++) {
        double t0 = kiln_time_ms();
        run_or_die(ctx, "forward", ins, f->num_inputs, outs, f->num_outputs);
        times[i] = kiln_time_ms() - t0;
    }
    double median = kiln_median(times, (size_t)iters);
    printf("forward B=%lld T=%lld threads=%d: median %.3f ms  min %.3f ms  (%d iters, %s kernels)\n", (long long)B,
           (long long)T, kiln_num_threads(), median, times[0], iters, KILN(isa)());
    for (int k = 0; k < f->num_inputs; k++) free(ins[k].data);
    for (int k = 0; k < f->num_outputs; k++) free(outs[k].data);
    free(ins);
    free(outs);
    free(times);
    KILN(free)(ctx);
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
