/*
 * train_main.c - the `train` command-line tool of a Kiln-compiled model: a program over the model's C library
 * (libPREFIX.a, through model.h's KILN(...) names), which computes each micro-batch's loss and gradients
 * (its train_step function) and validation losses (its loss function). Commands:
 *   train [flags]   train on a byte-level text file, writing checkpoints
 *   train bench     time one full training step
 *
 * A step: `accumulate` micro-batches through train_step (gradients
 * averaged), global-norm clipping as torch.nn.utils.clip_grad_norm_, then
 * AdamW or SGD with momentum with the same float32 arithmetic as
 * torch.optim (single-tensor path). Everything that decides a step (data
 * RNG, dropout seeds, reductions) depends only on the step number and the
 * checkpointed state, so a resumed run is bit-identical to an uninterrupted
 * one, whatever the thread count.
 *
 * Built as `train-mpi` (make mpi), the same program trains data-parallel under mpirun: --batch and
 * --accumulate are each rank's, the step's M micro-batches are spread over the ranks (micro-batch m on rank
 * m mod N) and their gradients summed in micro-batch order (kiln_dist.h), so N ranks give the bits of one
 * process with --accumulate M. Rank 0 alone prints, logs, evaluates and writes checkpoints.
 *
 * Every error is one line on stderr; exit status 1 for runtime errors,
 * 2 for usage errors. Progress goes to stdout.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln_cli.h"
#include "kiln_dist.h"
#include "kiln_pairs.h"
#include "kiln_rt.h"
#include "model.h"
#include "kiln_program_api.h"

#ifndef KILN_HAS_TRAIN
#error "train_main.c needs a model compiled with a train section (KILN_HAS_TRAIN in model.h)"
#endif
#if defined(KILN_REAL_IS_DOUBLE) && KILN_REAL_IS_DOUBLE
#error "train needs an f32 build of the model (kiln_real is double)"
#endif

#define DATA_FILE_LIMIT ((size_t)1 << 30)
#define DEFAULT_SEED "1234"
#define DEFAULT_VAL_FRACTION 0.1
#define CHECKPOINT_VERSION "1"
#define MAX_STEPS 1000000000000LL
#define MAX_BATCH (1 << 20)
#define MAX_BATCH_PAIRS 65536 /* pairs per micro-batch */
#define NORM_CHUNK 65536 /* floats per partial sum of the gradient norm */
#define DATA_RNG_TAG 0x6b696c6e64617461ULL /* "kilndata": data RNG = seed ^ tag */
#define EVAL_RNG_TAG 0x6b696c6e6576616cULL /* "kilneval" */
#define DROPOUT_TAG 0x6b696c6e64726f70ULL  /* "kilndrop" */

#define usage_die kiln_usage_die

enum { OPT_ADAMW = 0, OPT_SGD = 1 };
enum { SCHED_CONSTANT = 0, SCHED_COSINE = 1, SCHED_INVERSE_SQRT = 2 };

/* ------------------------------------------------------------------------- */
/* Hyperparameters: one table drives flags, defaults, checkpoint metadata */

typedef struct {
    int64_t steps, warmup, decay_steps, schedule, optimizer, decay_embeddings;
    int64_t batch, seq, accumulate, eval_interval, eval_iters, checkpoint_interval;
    double lr, min_lr, beta1, beta2, eps, weight_decay, momentum, clip, val_fraction;
} hparams;

static const char *const OPTIMIZER_NAMES[] = {"adamw", "sgd", NULL};
static const char *const SCHEDULE_NAMES[] = {"constant", "cosine", "inverse_sqrt", NULL};

typedef struct {
    const char *flag;          /* "--min-lr" */
    const char *key;           /* checkpoint metadata key: "min_lr" */
    int is_int;                /* int64_t field (else double) */
    size_t offset;             /* of the field in hparams */
    double lo, hi;             /* inclusive range */
    int lo_open, hi_open;      /* ...or exclusive at that end */
    const char *const *words;  /* names of the values 0, 1, ... (then is_int) */
    const char *metavar;
    const char *help;          /* "(default ...)" is appended */
} hp_def;

#define HP_I(field) 1, offsetof(hparams, field)
#define HP_F(field) 0, offsetof(hparams, field)

static hp_def HPARAMS[] = {
    {"--steps", "steps", HP_I(steps), 1, (double)MAX_STEPS, 0, 0, NULL, "N",
     "train until N optimizer steps in total"},
    {"--val-fraction", "val_fraction", HP_F(val_fraction), 0, 1, 1, 1, NULL, "F",
     "last fraction of the data held out for validation"},
    {"--lr", "lr", HP_F(lr), 0, 1e30, 0, 0, NULL, "LR", "peak learning rate"},
    {"--min-lr", "min_lr", HP_F(min_lr), 0, 1e30, 0, 0, NULL, "LR",
     "final learning rate of cosine"},
    {"--warmup", "warmup", HP_I(warmup), 0, (double)MAX_STEPS, 0, 0, NULL, "N",
     "linear warmup steps"},
    {"--decay-steps", "decay_steps", HP_I(decay_steps), 0, (double)MAX_STEPS, 0, 0, NULL, "N",
     "step at which cosine reaches --min-lr"},
    {"--schedule", "schedule", HP_I(schedule), 0, 2, 0, 0, SCHEDULE_NAMES, "constant|cosine|inverse_sqrt",
     "learning-rate schedule"},
    {"--optimizer", "optimizer", HP_I(optimizer), 0, 1, 0, 0, OPTIMIZER_NAMES, "adamw|sgd",
     "optimizer"},
    {"--beta1", "beta1", HP_F(beta1), 0, 1, 0, 1, NULL, "B", "AdamW beta1"},
    {"--beta2", "beta2", HP_F(beta2), 0, 1, 0, 1, NULL, "B", "AdamW beta2"},
    {"--eps", "eps", HP_F(eps), 0, 1, 0, 0, NULL, "E", "AdamW epsilon"},
    {"--weight-decay", "weight_decay", HP_F(weight_decay), 0, 1e6, 0, 0, NULL, "WD",
     "weight decay (decoupled for AdamW, L2 for SGD)"},
    {"--decay-embeddings", "decay_embeddings", HP_I(decay_embeddings), 0, 1, 0, 0, NULL, "0|1",
     "apply weight decay to embeddings too"},
    {"--momentum", "momentum", HP_F(momentum), 0, 1, 0, 0, NULL, "M", "SGD momentum"},
    {"--clip", "clip", HP_F(clip), 0, 1e30, 0, 0, NULL, "C",
     "clip the global gradient norm to C, 0 = off"},
    {"--batch", "batch", HP_I(batch), 1, MAX_BATCH, 0, 0, NULL, "B", "sequences per micro-batch"},
    {"--seq", "seq", HP_I(seq), 1, 1, 0, 0, NULL, "T", "sequence length"}, /* hi: the context (main) */
    {"--accumulate", "accumulate", HP_I(accumulate), 1, MAX_BATCH, 0, 0, NULL, "K",
     "micro-batches per optimizer step"},
    {"--eval-interval", "eval_interval", HP_I(eval_interval), 0, (double)MAX_STEPS, 0, 0, NULL,
     "N", "evaluate every N steps, 0 = only at the end"},
    {"--eval-iters", "eval_iters", HP_I(eval_iters), 1, MAX_BATCH, 0, 0, NULL, "N",
     "validation batches per evaluation"},
    {"--checkpoint-interval", "checkpoint_interval", HP_I(checkpoint_interval), 0,
     (double)MAX_STEPS, 0, 0, NULL, "N", "checkpoint every N steps, 0 = only at the end"},
};
#define NUM_HPARAMS (sizeof HPARAMS / sizeof HPARAMS[0])

/* The defaults: the model file's training section. */
static hparams model_defaults(void) {
    hparams h;
    memset(&h, 0, sizeof h);
    h.steps = KILN_TRAIN_STEPS;
    h.val_fraction = DEFAULT_VAL_FRACTION;
    h.lr = KILN_TRAIN_LR;
    h.min_lr = KILN_TRAIN_MIN_LR;
    h.warmup = KILN_TRAIN_WARMUP;
    h.decay_steps = KILN_TRAIN_STEPS;
    h.schedule = KILN_TRAIN_SCHEDULE;
    h.optimizer = KILN_TRAIN_OPTIMIZER;
    h.beta1 = KILN_TRAIN_BETA1;
    h.beta2 = KILN_TRAIN_BETA2;
    h.eps = KILN_TRAIN_EPS;
    h.weight_decay = KILN_TRAIN_WEIGHT_DECAY;
    h.decay_embeddings = KILN_TRAIN_DECAY_EMBEDDINGS;
    h.momentum = KILN_TRAIN_MOMENTUM;
    h.clip = KILN_TRAIN_CLIP;
    h.batch = KILN_TRAIN_BATCH;
    h.seq = KILN_TRAIN_SEQ;
    h.accumulate = KILN_TRAIN_ACCUMULATE;
    h.eval_interval = KILN_TRAIN_EVAL_INTERVAL;
    h.eval_iters = KILN_TRAIN_EVAL_ITERS;
    h.checkpoint_interval = KILN_TRAIN_EVAL_INTERVAL; /* default: the eval interval */
    return h;
}

/* ------------------------------------------------------------------------- */
/* The model, through its C library */

#ifndef KILN_TRAIN_MASK_ID /* masked_lm: the mask token and the rate of chosen positions (-1, 0: next_token) */
#define KILN_TRAIN_MASK_ID (-1)
#define KILN_TRAIN_MASK_RATE 0.0
#endif
#ifndef KILN_TRAIN_TEXT
#define KILN_TRAIN_TEXT 1
#endif
#define MAX_INPUTS 16

/* The functions train reads: train_step (loss and gradients of a micro-batch) and loss (validation). With a
 * next-token or masked-token objective (KILN_TRAIN_TEXT) their inputs are token ids and targets [B, T] cut
 * from text, and a dropout seed when the model has dropout; otherwise every input but the seed comes from a
 * .npy file. */
typedef struct {
    const kiln_function_desc *step, *loss;
    const kiln_function_desc *forward; /* when it has an output expert_load [L, E] (moe_load): printed at evaluations */
    int load;                   /* that output's index in forward, or -1 */
    int text;                   /* the data is text */
    int tokens, targets, seed;  /* train_step's inputs of those roles, -1 when none */
    int64_t vocab;              /* text: token ids lie in [0, vocab) */
    int64_t classes;            /* text: targets lie in [0, classes) */
    int64_t context;            /* the bound of T: the largest --seq */
    size_t pf;                  /* elements of the parameter block */
    int pairs;                  /* an encoder-decoder: it can also train from sentence pairs */
    kiln_s2s_inputs s2s;        /* then, train_step's inputs */
} model_info;
static model_info g_model;

/* The input of function f with this role, or -1. */
static int input_with_role(const kiln_function_desc *f, kiln_role role) {
    for (int k = 0; f && k < f->num_inputs; k++)
        if (f->inputs[k].role == role) return k;
    return -1;
}

static void find_model(void) {
    model_info *m = &g_model;
    m->step = KILN(find_function)("train_step");
    m->loss = KILN(find_function)("loss");
    if (!m->step || !m->loss || m->step->num_inputs > MAX_INPUTS) kiln_die("internal error: the model has no train_step and loss");
    m->text = KILN_TRAIN_TEXT;
    m->forward = KILN(find_function)("forward");
    m->load = -1;
    for (int k = 0; m->forward && k < m->forward->num_outputs; k++)
        if (strcmp(m->forward->outputs[k].name, "expert_load") == 0 && m->forward->outputs[k].rank == 2 && m->forward->outputs[k].dtype == KILN_F32 &&
            m->forward->outputs[k].dims[0] == NULL && m->forward->outputs[k].dims[1] == NULL)
            m->load = k;
    m->tokens = input_with_role(m->step, KILN_ROLE_TOKENS);
    m->targets = input_with_role(m->step, KILN_ROLE_TARGETS);
    m->seed = input_with_role(m->step, KILN_ROLE_SEED);
    m->pf = KILN(param_elements)();
    m->context = 1 << 20;
    if (!m->text) {
        m->pairs = kiln_s2s_find_inputs(m->step, &m->s2s) == 0 && m->s2s.labels >= 0;
        for (int k = 0; k < m->step->num_inputs; k++)
            if (m->step->inputs[k].rank > 1 && m->step->inputs[k].dims[1] && m->step->inputs[k].bounds[1] > 0)
                m->context = m->step->inputs[k].bounds[1];
        return;
    }
    if (m->tokens < 0 || m->targets < 0 || m->step->num_inputs != 2 + (m->seed >= 0) ||
        m->step->inputs[m->tokens].rank != 2 || m->step->inputs[m->tokens].bounds[1] <= 0)
        kiln_die("internal error: a next-token objective without token ids and targets [B, T]");
    m->vocab = m->step->inputs[m->tokens].limit;
    m->classes = m->step->inputs[m->targets].limit;
    m->context = m->step->inputs[m->tokens].bounds[1];
    if (KILN_TRAIN_MASK_RATE > 0 && (KILN_TRAIN_MASK_ID < 0 || KILN_TRAIN_MASK_ID >= m->vocab))
        kiln_die("internal error: the mask id %d is not a token id below %lld", (int)KILN_TRAIN_MASK_ID, (long long)m->vocab);
}

/* A context with all weights zero; dies when out of memory. */
static kiln_ctx *new_context(void) {
    kiln_ctx *ctx;
    if (KILN(create)(&ctx) != KILN_OK) kiln_die("out of memory for the model's weights");
    return ctx;
}

/* The inputs of one call of train_step or loss: a tensor per input of train_step (the seed's holds the
 * micro-batch's dropout seed), their rows filled by draw_batch. */
typedef struct {
    kiln_tensor t[MAX_INPUTS];
    int64_t seed;
} batch;

static size_t dtype_size(kiln_dtype t) { return t == KILN_F64 || t == KILN_I64 ? 8 : 4; }

/* The elements of one row (all dims but the first) of a tensor. */
static size_t row_elements(const kiln_tensor *t) {
    size_t n = 1;
    for (int j = 1; j < t->rank; j++) n *= (size_t)t->shape[j];
    return n;
}

/* Allocates a batch of B rows; row_shape[k] gives the dims after the first of input k (text: T). */
static void batch_init(batch *bt, int B, const int64_t row_shape[][KILN_MAX_RANK]) {
    memset(bt, 0, sizeof *bt);
    for (int k = 0; k < g_model.step->num_inputs; k++) {
        const kiln_tensor_desc *d = &g_model.step->inputs[k];
        kiln_tensor *t = &bt->t[k];
        *t = (kiln_tensor){d->name, d->dtype, d->rank, {0}, NULL};
        if (d->role == KILN_ROLE_SEED) {
            t->data = &bt->seed;
            continue;
        }
        t->shape[0] = B;
        for (int j = 1; j < d->rank; j++) t->shape[j] = row_shape[k][j];
        size_t n;
        if (kiln_size_mul((size_t)B, row_elements(t), &n)) kiln_die("batch too large");
        t->data = kiln_xcalloc(n ? n : 1, dtype_size(d->dtype), "a batch");
    }
}

static void batch_free(batch *bt) {
    for (int k = 0; k < g_model.step->num_inputs; k++)
        if (bt->t[k].data != &bt->seed) free(bt->t[k].data);
}

/* Runs train_step or loss on the batch; returns the loss. */
static float run_batch(kiln_ctx *ctx, const kiln_function_desc *f, batch *bt, uint64_t seed) {
    kiln_tensor in[MAX_INPUTS];
    float loss = 0;
    bt->seed = (int64_t)seed;
    for (int k = 0; k < f->num_inputs; k++) {
        int j = 0;
        while (j < g_model.step->num_inputs && strcmp(g_model.step->inputs[j].name, f->inputs[k].name) != 0) j++;
        if (j == g_model.step->num_inputs) kiln_die("internal error: %s's input '%s' is not train_step's", f->name, f->inputs[k].name);
        in[k] = bt->t[j];
    }
    kiln_tensor out = {f->outputs[0].name, KILN_F32, 0, {0}, &loss};
    if (KILN(run)(ctx, f->name, in, f->num_inputs, &out, 1) != KILN_OK) kiln_die("%s", KILN(error)(ctx));
    return loss;
}

/* Shortest of %.15g, %.16g, %.17g that reads back as x (like Python's repr);
 * "null" for NaN and infinities (so that JSON stays valid). */
static const char *fmt_exact(double x, char *buf, size_t cap) {
    if (!isfinite(x)) {
        snprintf(buf, cap, "null");
        return buf;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) break;
    }
    return buf;
}

static int64_t *hp_int(hparams *h, const hp_def *d) { return (int64_t *)((char *)h + d->offset); }
static double *hp_f64(hparams *h, const hp_def *d) { return (double *)((char *)h + d->offset); }

/* Formats the value of d in h as the flag would spell it: exactly ("%.17g")
 * for checkpoints, or short ("%g") for the help. */
static const char *hp_format_as(const hp_def *d, hparams *h, int exact, char *buf, size_t cap) {
    if (d->words) snprintf(buf, cap, "%s", d->words[*hp_int(h, d)]);
    else if (d->is_int) snprintf(buf, cap, "%" PRId64, *hp_int(h, d));
    else if (!exact) snprintf(buf, cap, "%g", *hp_f64(h, d));
    else fmt_exact(*hp_f64(h, d), buf, cap);
    return buf;
}

static const char *hp_format(const hp_def *d, hparams *h, char *buf, size_t cap) {
    return hp_format_as(d, h, 1, buf, cap);
}

/* Parses s as the value of d into h; `what` names the source in messages. */
static int hp_parse(const hp_def *d, const char *what, const char *s, hparams *h,
                    kiln_error *err) {
    char vb[128];
    if (d->words) {
        for (int i = 0; d->words[i]; i++) {
            if (strcmp(s, d->words[i]) == 0) {
                *hp_int(h, d) = i;
                return 0;
            }
        }
        kiln_error_set(err, "%s: '%s' is not one of %s", what, kiln_printable(vb, sizeof vb, s),
                       d->metavar);
        return -1;
    }
    if (d->is_int) return kiln_flag_i64(what, s, (int64_t)d->lo, (int64_t)d->hi, hp_int(h, d), err);
    double v;
    if (kiln_flag_f64(what, s, d->lo, d->hi, &v, err)) return -1;
    if ((d->lo_open && v == d->lo) || (d->hi_open && v == d->hi)) {
        kiln_error_set(err, "%s: %s is out of range %c%g, %g%c", what,
                       kiln_printable(vb, sizeof vb, s), d->lo_open ? '(' : '[', d->lo, d->hi,
                       d->hi_open ? ')' : ']');
        return -1;
    }
    *hp_f64(h, d) = v;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Command table (the train command's flags are built from HPARAMS) */

typedef kiln_command command;
typedef kiln_opts opts;

static void cmd_train(const command *cmd, const opts *o);
static void cmd_bench(const command *cmd, const opts *o);

static const kiln_flag_def TRAIN_FLAGS[] = {
    {"--data", "FILE", "training text, one byte per token (required)", 0},
    {"--out", "CKPT", "checkpoint file to write (required; replaced atomically)", 0},
    {"--resume", "CKPT", "continue exactly from a checkpoint of this model and data", 0},
    {"--init-from", "W", "start from these weights (.safetensors) instead of random init", 0},
    {"--seed", "S", "seed of the init, the data order and dropout (default " DEFAULT_SEED ")", 0},
    {"--log", "LOG.jsonl", "also write one JSON object per step and per evaluation", 0},
    {"--tokenizer", "FILE", "sentence pairs: this tokenizer instead of one learned from the data", 0},
    {"--weights-out", "W", "at the end, also write the weights alone (no optimizer state), for infer", 0},
    {"--time-limit", "S", "also stop once the training steps have taken S seconds in all (over resumes; "
                          "evaluations and checkpoints not counted)", 0},
};
#define NUM_TRAIN_FLAGS (sizeof TRAIN_FLAGS / sizeof TRAIN_FLAGS[0])

static command g_train = {
    "", "--data FILE --out CKPT [flags]\n       %s bench [flags]",
    "train the Kiln-compiled model on a byte-level text file",
    "Data of a next-token objective: every byte of FILE is a token (at most 1 GiB; each byte must be < the vocabulary).\n"
    "The first (1 - val-fraction) of the bytes are for training, the last val-fraction for\n"
    "validation; each needs at least seq+1 bytes. A micro-batch is `batch` windows of\n"
    "seq+1 bytes at uniformly random offsets of the training part (inputs = window[:-1],\n"
    "targets = window[1:]). Evaluations use the same validation batches every time.\n"
    "Data of any other objective: FILE is a directory holding NAME.npy for each input NAME of\n"
    "train_step ('infer run --list' shows them), each [N, ...] with one example per row (int32/int64\n"
    "for integer inputs, float32/float64 for float ones); all have the same N. The first\n"
    "(1 - val-fraction) of the rows are for training, the rest for validation; a micro-batch is\n"
    "`batch` rows drawn at random (seq does not apply: each file's rows have their own length).\n"
    "Data of an encoder-decoder (inputs: source ids, their mask, target ids, labels): FILE may also be\n"
    "a file of sentence pairs, source TAB target per line (UTF-8; further columns are ignored). Every\n"
    "10th pair (lines 1, 11, 21, ...) is held out for validation. Both sides are cut into tokens by a\n"
    "byte-level BPE learned from the training pairs at the start (as many ids as the model's vocabulary,\n"
    "<pad> <bos> <eos> first) or given with --tokenizer; it is saved in every checkpoint. A micro-batch\n"
    "is `batch` pairs of similar lengths (drawn from a window of 8*batch neighbours in length order),\n"
    "padded to the longest: source + <eos> with its mask; decoder input <bos> + target; labels target\n"
    "+ <eos>, padded with <pad>, which the objective must ignore. Evaluations print the loss per target\n"
    "token without label smoothing, its perplexity, and BLEU and chrF of greedy translations of all\n"
    "held-out pairs.\n"
    "\n"
    "Learning rate at step s (0-based): cosine: lr*(s+1)/warmup while s < warmup, then\n"
    "min-lr + (lr-min-lr)*(1+cos(pi*(s-warmup)/(decay-steps-warmup)))/2 until decay-steps,\n"
    "then min-lr; inverse_sqrt (Vaswani et al. 2017): the same warmup, then lr*sqrt(warmup/(s+1));\n"
    "constant: the same warmup, then lr. Weight decay applies to weight matrices (and to\n"
    "embeddings with --decay-embeddings 1), never to biases or norm gains.\n"
    "\n"
    "Checkpoints are one safetensors file holding every parameter under its name\n"
    "(usable as --weights by infer), the optimizer state (train.*) and the run's\n"
    "settings in its metadata. --resume restores all of it: the run continues exactly\n"
    "as if uninterrupted; settings not given on the command line come from the\n"
    "checkpoint, --steps N trains until step N in total. A fresh run truncates --log,\n"
    "a resumed one appends to it.\n"
    "\n"
    "Output (stdout): per step 'step S/N  loss L  lr R  X tok/s  ETA T'; per evaluation\n"
    "'eval step S: val loss L  perplexity P  bits/char B'. 'bench --help' for timing.",
    {{NULL, NULL, NULL, 0}},
    NULL,
    cmd_train};

static const command BENCH = {
    "bench", "[--batch B] [--seq T] [--iters N] [--warmup N] [--seed S]",
    "time one training step (train step + gradient clipping + optimizer update)",
    "Random tokens and random init; the model file's optimizer and settings.\n"
    "Prints: train step B=.. T=.. threads=..: median X ms  min Y ms  (N iters).",
    {{"--batch", "B", "batch size (default: the model's training batch)", 0},
     {"--seq", "T", "sequence length, 1..context (default: the model's training seq)", 0},
     {"--iters", "N", "timed iterations (default 10)", 0},
     {"--warmup", "N", "untimed warm-up iterations (default 2)", 0},
     {"--seed", "N", "seed for random weights and tokens (default " DEFAULT_SEED ")", 0}},
    NULL,
    cmd_bench};

/* Builds g_train's flag table: the fixed flags, then one per hyperparameter
 * with its default appended to the help text. */
static void build_train_command(void) {
    static char usage[256], summary[256];
    static char helps[NUM_HPARAMS][192];
    hparams def = model_defaults();
    size_t k = 0;
    snprintf(usage, sizeof usage, g_train.usage, kiln_progname());
    g_train.usage = usage;
    if (g_model.text)
        snprintf(summary, sizeof summary,
                 "train the Kiln-compiled model '%s' (vocab %lld, context %lld, %zu parameters)\n"
                 "on a byte-level text file",
                 KILN(model_name)(), (long long)g_model.vocab, (long long)g_model.context, g_model.pf);
    else  /* no byte vocabulary: the data are sentence pairs or .npy inputs (see below) */
        snprintf(summary, sizeof summary, "train the Kiln-compiled model '%s' (context %lld, %zu parameters)\n%s",
                 KILN(model_name)(), (long long)g_model.context, g_model.pf,
                 g_model.pairs ? "on sentence pairs or a directory of .npy inputs" : "on a directory of .npy inputs");
    g_train.summary = summary;
    for (size_t i = 0; i < NUM_TRAIN_FLAGS; i++) g_train.flags[k++] = TRAIN_FLAGS[i];
    for (size_t i = 0; i < NUM_HPARAMS && k < KILN_MAX_FLAGS; i++) {
        const hp_def *d = &HPARAMS[i];
        char v[64];
        if (strcmp(d->key, "checkpoint_interval") == 0) snprintf(v, sizeof v, "--eval-interval");
        else hp_format_as(d, &def, 0, v, sizeof v);
        snprintf(helps[i], sizeof helps[i], "%s (default %s)", d->help, v);
        g_train.flags[k].name = d->flag;
        g_train.flags[k].metavar = d->metavar;
        g_train.flags[k].help = helps[i];
        k++;
    }
    if (k >= KILN_MAX_FLAGS) kiln_die("internal error: too many flags");
}

/* ------------------------------------------------------------------------- */
/* Small helpers */

/* Number to print for a non-finite value: "nan", "inf" or "-inf". */
static const char *nonfinite_name(double x) { return isnan(x) ? "nan" : x > 0 ? "inf" : "-inf"; }

/* Formats seconds as "45s", "3m12s" or "2h05m". */
static const char *fmt_eta(double s, char *buf, size_t cap) {
    if (!(s >= 0) || s > 1e9) snprintf(buf, cap, "?");
    else if (s < 60) snprintf(buf, cap, "%ds", (int)s);
    else if (s < 3600) snprintf(buf, cap, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s, 3600) / 60);
    return buf;
}

/* Hash of the model's interface: name, sizes, every parameter's name and shape. */
static uint64_t model_fingerprint(void) {
    uint64_t h = KILN_FNV1A64_INIT;
    h = kiln_fnv1a64(h, KILN(model_name)(), strlen(KILN(model_name)()) + 1);
    int64_t dims[3] = {g_model.vocab, g_model.classes, g_model.context};
    h = kiln_fnv1a64(h, dims, sizeof dims);
    for (int i = 0; i < KILN(num_params)(); i++) {
        const kiln_param_desc *p = KILN(param)(i);
        int64_t nd = p->rank;
        h = kiln_fnv1a64(h, p->name, strlen(p->name) + 1);
        h = kiln_fnv1a64(h, &nd, sizeof nd);
        h = kiln_fnv1a64(h, p->shape, sizeof(int64_t) * (size_t)p->rank);
    }
    return h;
}

/* Dropout seed of micro-batch `micro` of step `step` (0-based): a pure function. */
static uint64_t step_seed(uint64_t seed, int64_t step, int64_t micro) {
    uint64_t h = kiln_mix64(kiln_mix64(seed ^ DROPOUT_TAG) ^ (uint64_t)step);
    return kiln_mix64(h ^ (uint64_t)micro);
}

/* Learning rate of step `step` (0-based): a linear warmup, then constant, nanoGPT's cosine (get_lr), or the
 * inverse square root of Vaswani et al. 2017 (lr is its peak, d^-0.5 * warmup^-0.5 in the paper). */
static double lr_at(const hparams *h, int64_t step) {
    if (step < h->warmup) return h->lr * (double)(step + 1) / (double)h->warmup;
    if (h->schedule == SCHED_CONSTANT) return h->lr;
    if (h->schedule == SCHED_INVERSE_SQRT) return h->lr * sqrt((double)(h->warmup > 0 ? h->warmup : 1) / (double)(step + 1));
    if (step >= h->decay_steps) return h->min_lr;
    double ratio = (double)(step - h->warmup) / (double)(h->decay_steps - h->warmup);
    return h->min_lr + 0.5 * (h->lr - h->min_lr) * (1.0 + cos(3.14159265358979323846 * ratio));
}

/* Whether weight decay applies to parameter i. */
static int is_decayed(const hparams *h, int i) {
    kiln_param_role r = KILN(param)(i)->role;
    return r == KILN_PARAM_WEIGHT || (r == KILN_PARAM_EMBEDDING && h->decay_embeddings);
}

/* ------------------------------------------------------------------------- */
/* Data */

/* Text (a next-token objective): train = bytes[0, n_train), val = bytes[n_train, n). Arrays: one per input of
 * train_step (none for the seed), N rows each; train = rows [0, rows_train), val = rows [rows_train, N). */
typedef struct {
    const char *path;
    uint8_t *bytes;
    size_t n, n_train, n_val;
    kiln_npy_array arrays[MAX_INPUTS];
    size_t rows, rows_train, rows_val;
    /* sentence pairs: the file, its token lists (each ending in eos), the training pairs in length order, the
     * held-out ones, the tokenizer and its text form */
    kiln_pairs pairs;
    kiln_token_lists src, tgt;
    size_t *train_idx, *val_idx, n_train_pairs, n_val_pairs;
    int32_t max_src, max_tgt;
    kiln_bpe *tok;
    char *tok_text;
    int32_t pad, bos, eos;
    size_t batch_tokens;      /* source and target tokens of the last batch drawn */
    uint64_t fingerprint;     /* of the data and the val fraction (pairs: and the tokenizer) */
} dataset;

static void load_text(const char *path, const hparams *h, dataset *d) {
    kiln_error err;
    if (kiln_read_file(path, DATA_FILE_LIMIT, &d->bytes, &d->n, &err)) kiln_die("%s", err.msg);
    const int64_t vocab = g_model.vocab, classes = g_model.classes, limit = vocab < classes ? vocab : classes;
    for (size_t i = 0; i < d->n; i++) {
        unsigned b = d->bytes[i];
        if (b >= (uint64_t)limit) {
            if (b >= (uint64_t)vocab)
                kiln_die("%s: byte %u at offset %zu is outside the vocabulary [0, %lld)", path, b, i, (long long)vocab);
            kiln_die("%s: byte %u at offset %zu cannot be predicted (output dimension %lld)", path, b, i,
                     (long long)classes);
        }
    }
    d->n_val = (size_t)floor((double)d->n * h->val_fraction);
    if (d->n_val > d->n) d->n_val = d->n;
    d->n_train = d->n - d->n_val;
    size_t need = (size_t)h->seq + 1;
    if (d->n_train < need || d->n_val < need)
        kiln_die("%s: the %s part has %zu bytes (%zu bytes, --val-fraction %g), but --seq %" PRId64
                 " needs at least %zu; use more data, another --val-fraction or a smaller --seq",
                 path, d->n_train < need ? "training" : "validation",
                 d->n_train < need ? d->n_train : d->n_val, d->n, h->val_fraction, h->seq, need);
    char vf[64];
    snprintf(vf, sizeof vf, "|val_fraction=%.17g", h->val_fraction);
    d->fingerprint = kiln_fnv1a64(kiln_fnv1a64(KILN_FNV1A64_INIT, d->bytes, d->n), vf, strlen(vf));
}

/* Checks every value of an array against its input's role (ids in range, masks of 0 and 1, finite data),
 * converted to the input's dtype in place of the file's (integers to integers, floats to floats). */
static void check_array(const char *file, const kiln_tensor_desc *d, kiln_npy_array *a) {
    const int want_int = d->dtype == KILN_I32 || d->dtype == KILN_I64;
    if (want_int != (a->dtype == KILN_NPY_I32 || a->dtype == KILN_NPY_I64))
        kiln_die("%s: input '%s' is %s, but the file holds %s numbers", file, d->name, want_int ? "an integer" : "a float",
                 want_int ? "floating-point" : "integer");
    const size_t item = dtype_size(d->dtype);
    uint8_t *out = kiln_xcalloc(a->numel ? a->numel : 1, item, "an array");
    for (size_t i = 0; i < a->numel; i++) {
        const uint8_t *src = (const uint8_t *)a->data + i * a->item;
        if (want_int) {
            int64_t v;
            if (a->dtype == KILN_NPY_I32) { int32_t x; memcpy(&x, src, 4); v = x; } else memcpy(&v, src, 8);
            const int ok = d->role == KILN_ROLE_MASK ? (v == 0 || v == 1)
                         : d->role == KILN_ROLE_DATA ? 1
                         : (d->has_ignore && v == d->ignore) || (v >= 0 && (d->limit == 0 || v < d->limit));
            if (!ok || (d->dtype == KILN_I32 && (v < INT32_MIN || v > INT32_MAX)))
                kiln_die("%s: value %lld at flat index %zu is not a valid %s for input '%s'%s", file, (long long)v, i,
                         d->role == KILN_ROLE_MASK ? "mask value (0 or 1)" : "id", d->name,
                         d->limit ? " (ids lie in [0, limit))" : "");
            if (d->dtype == KILN_I32) { int32_t x = (int32_t)v; memcpy(out + i * 4, &x, 4); }
            else memcpy(out + i * 8, &v, 8);
        } else {
            double v;
            if (a->dtype == KILN_NPY_F32) { float x; memcpy(&x, src, 4); v = x; } else memcpy(&v, src, 8);
            if (!isfinite(v)) kiln_die("%s: a non-finite value at flat index %zu", file, i);
            if (d->dtype == KILN_F32) { float x = (float)v; memcpy(out + i * 4, &x, 4); }
            else memcpy(out + i * 8, &v, 8);
        }
    }
    free(a->data);
    a->data = out;
    a->item = item;
}

/* Arrays: DIR/NAME.npy for each input NAME of train_step but the seed, each [N, ...] with one example per row. */
static void load_arrays(const char *dir, const hparams *h, dataset *d) {
    const kiln_function_desc *f = g_model.step;
    uint64_t fp = KILN_FNV1A64_INIT;
    for (int k = 0; k < f->num_inputs; k++) {
        const kiln_tensor_desc *desc = &f->inputs[k];
        if (desc->role == KILN_ROLE_SEED) continue;
        char file[4096];
        kiln_error err;
        snprintf(file, sizeof file, "%s/%s.npy", dir, desc->name);
        if (kiln_npy_read(file, DATA_FILE_LIMIT, &d->arrays[k], &err)) kiln_die("%s", err.msg);
        kiln_npy_array *a = &d->arrays[k];
        if (a->ndim != desc->rank || a->ndim < 1)
            kiln_die("%s: input '%s' has rank %d (one row per example: [N, ...]), the file rank %d", file, desc->name,
                     desc->rank, a->ndim);
        if (k > 0 && d->rows != (size_t)a->shape[0])
            kiln_die("%s: %lld rows, but the other arrays have %zu", file, (long long)a->shape[0], d->rows);
        d->rows = (size_t)a->shape[0];
        check_array(file, desc, a);
        fp = kiln_fnv1a64(fp, desc->name, strlen(desc->name) + 1);
        fp = kiln_fnv1a64(fp, a->shape, sizeof(int64_t) * (size_t)a->ndim);
        fp = kiln_fnv1a64(fp, a->data, a->numel * a->item);
    }
    d->rows_val = (size_t)floor((double)d->rows * h->val_fraction);
    d->rows_train = d->rows - d->rows_val;
    if (d->rows_train < 1 || d->rows_val < 1)
        kiln_die("%s: %zu examples (--val-fraction %g) leave %s; use more data or another --val-fraction", dir, d->rows,
                 h->val_fraction, d->rows_train < 1 ? "none for training" : "none for validation");
    char vf[64];
    snprintf(vf, sizeof vf, "|val_fraction=%.17g", h->val_fraction);
    d->fingerprint = kiln_fnv1a64(fp, vf, strlen(vf));
}

/* Sentence pairs: tok is the tokenizer to use (NULL: learn one from the training pairs). */
static void load_pairs(const char *path, kiln_bpe *tok, dataset *d) {
    const model_info *m = &g_model;
    const kiln_tensor_desc *src = &m->step->inputs[m->s2s.source], *tgt = &m->step->inputs[m->s2s.target],
                           *lab = &m->step->inputs[m->s2s.labels];
    kiln_error err;
    if (kiln_pairs_read(path, DATA_FILE_LIMIT, &d->pairs, &err)) kiln_die("%s", err.msg);
    const size_t n = d->pairs.n;
    d->n_val_pairs = (n + KILN_PAIRS_HOLDOUT - 1) / KILN_PAIRS_HOLDOUT;
    d->n_train_pairs = n - d->n_val_pairs;
    if (d->n_train_pairs < 1)
        kiln_die("%s: %zu pairs leave none for training (every %dth is held out)", path, n, KILN_PAIRS_HOLDOUT);
    d->train_idx = kiln_xcalloc(d->n_train_pairs, sizeof *d->train_idx, "the pairs");
    d->val_idx = kiln_xcalloc(d->n_val_pairs, sizeof *d->val_idx, "the pairs");
    for (size_t i = 0, a = 0, b = 0; i < n; i++) {
        if (i % KILN_PAIRS_HOLDOUT == 0) d->val_idx[b++] = i;
        else d->train_idx[a++] = i;
    }
    int64_t vocab = src->limit < tgt->limit ? src->limit : tgt->limit;
    if (lab->limit < vocab) vocab = lab->limit;
    if (!tok) { /* learn one from both sides of the training pairs */
        const size_t nt = 2 * d->n_train_pairs;
        const uint8_t **texts = kiln_xcalloc(nt, sizeof *texts, "the texts");
        size_t *lens = kiln_xcalloc(nt, sizeof *lens, "the texts");
        for (size_t k = 0; k < d->n_train_pairs; k++) {
            const size_t i = d->train_idx[k];
            texts[2 * k] = d->pairs.buf + d->pairs.src[i];
            lens[2 * k] = d->pairs.src_len[i];
            texts[2 * k + 1] = d->pairs.buf + d->pairs.tgt[i];
            lens[2 * k + 1] = d->pairs.tgt_len[i];
        }
        static const char *const specials[] = {"<pad>", "<bos>", "<eos>"};
        const double t0 = kiln_time_ms();
        if (vocab > KILN_BPE_MAX_TOKENS) vocab = KILN_BPE_MAX_TOKENS;
        if (kiln_bpe_learn(texts, lens, nt, specials, 3, (int)vocab, &tok, &err)) kiln_die("learning the tokenizer: %s", err.msg);
        printf("train: learned a byte-level BPE of %d ids (%d merges) from the training pairs in %.2f s\n",
               kiln_bpe_size(tok), kiln_bpe_size(tok) - 259, (kiln_time_ms() - t0) / 1e3);
        free(texts);
        free(lens);
    }
    d->tok = tok;
    if (kiln_s2s_check_tokenizer(tok, vocab, &d->pad, &d->bos, &d->eos, &err)) kiln_die("%s", err.msg);
    if (!lab->has_ignore || lab->ignore != d->pad)
        kiln_die("the tokenizer's <pad> is id %d, but the objective %s; write cross_entropy(..., ignore: %d)", d->pad,
                 lab->has_ignore ? "ignores another id" : "ignores none", d->pad);
    if (kiln_pairs_encode(&d->pairs, path, 0, tok, d->eos, src->bounds[1] > 0 ? src->bounds[1] : INT32_MAX, &d->src, &err) ||
        kiln_pairs_encode(&d->pairs, path, 1, tok, d->eos, tgt->bounds[1] > 0 ? tgt->bounds[1] : INT32_MAX, &d->tgt, &err))
        kiln_die("%s", err.msg);
    for (size_t i = 0; i < n; i++) {
        if (d->src.len[i] > d->max_src) d->max_src = d->src.len[i];
        if (d->tgt.len[i] > d->max_tgt) d->max_tgt = d->tgt.len[i];
    }
    kiln_pairs_sort_by_length(d->train_idx, d->n_train_pairs, &d->src, &d->tgt);
    if (!(d->tok_text = kiln_bpe_format(tok))) kiln_die("out of memory");
    uint64_t fp = kiln_fnv1a64(KILN_FNV1A64_INIT, d->pairs.buf, d->pairs.size);
    fp = kiln_fnv1a64(fp, "|pairs|", 7);
    d->fingerprint = kiln_fnv1a64(fp, d->tok_text, strlen(d->tok_text));
}

static void load_data(const char *path, const hparams *h, kiln_bpe *tok, dataset *d) {
    struct stat st;
    memset(d, 0, sizeof *d);
    d->path = path;
    const int dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    if (g_model.text && dir) kiln_die("%s is a directory; this model learns next-token prediction from a text file", path);
    if (g_model.pairs && !dir) {
        load_pairs(path, tok, d);
        return;
    }
    if (!g_model.text && !dir)
        kiln_die("%s: this model trains on .npy arrays: --data names a directory with one NAME.npy per input of "
                 "train_step (see --help)", path);
    if (g_model.text) load_text(path, h, d);
    else load_arrays(path, h, d);
}

/* The dims after the first of each input, for batch_init: text [B, T]; arrays: the files' rows; pairs: the
 * longest source and target (each batch sets its own). */
static void row_shapes(const dataset *d, int T, int64_t shapes[][KILN_MAX_RANK]) {
    for (int k = 0; k < g_model.step->num_inputs; k++) {
        if (g_model.text) shapes[k][1] = T;
        else if (d->tok) shapes[k][1] = k == g_model.s2s.source || k == g_model.s2s.mask ? d->max_src : d->max_tgt;
        else
            for (int j = 1; j < d->arrays[k].ndim; j++) shapes[k][j] = d->arrays[k].shape[j];
    }
}

/* Draws a batch from the training part (val = 0) or the validation part (val = 1): text, B windows of T+1
 * bytes at random offsets (inputs window[:-1], targets window[1:]; masked_lm: the first T bytes, corrupted by
 * kiln_mlm_mask, targets their bytes at the chosen positions); arrays, B random rows. */
static void draw_pairs(kiln_rng *rng, dataset *d, int val, int B, batch *bt);

static void draw_batch(kiln_rng *rng, dataset *d, int val, int B, int T, batch *bt) {
    if (d->tok) {
        draw_pairs(rng, d, val, B, bt);
        return;
    }
    if (g_model.text) {
        const uint8_t *part = d->bytes + (val ? d->n_train : 0);
        const size_t n = val ? d->n_val : d->n_train;
        int32_t *tokens = bt->t[g_model.tokens].data, *targets = bt->t[g_model.targets].data;
        for (int b = 0; b < B; b++) {
            size_t off = (size_t)kiln_rng_below(rng, (uint64_t)(n - (size_t)T));
            int32_t *in = tokens + (size_t)b * T, *out = targets + (size_t)b * T;
            for (int t = 0; t < T; t++) {
                in[t] = part[off + (size_t)t];
                out[t] = part[off + (size_t)t + 1];
            }
            if (KILN_TRAIN_MASK_RATE > 0)
                kiln_mlm_mask(rng, in, (size_t)T, KILN_TRAIN_MASK_ID, KILN_TRAIN_MASK_RATE, g_model.classes, in, out);
        }
        return;
    }
    for (int b = 0; b < B; b++) {
        const size_t r = (size_t)kiln_rng_below(rng, (uint64_t)(val ? d->rows_val : d->rows_train)) + (val ? d->rows_train : 0);
        for (int k = 0; k < g_model.step->num_inputs; k++) {
            if (k == g_model.seed) continue;
            const size_t bytes = row_elements(&bt->t[k]) * d->arrays[k].item;
            memcpy((uint8_t *)bt->t[k].data + (size_t)b * bytes, (const uint8_t *)d->arrays[k].data + r * bytes, bytes);
        }
    }
}

/* Pairs: B of similar lengths (from a random window of 8B neighbours in length order), padded to the longest. */
static void draw_pairs(kiln_rng *rng, dataset *d, int val, int B, batch *bt) {
    const size_t *idx = val ? d->val_idx : d->train_idx, n = val ? d->n_val_pairs : d->n_train_pairs;
    const size_t W = n < 8 * (size_t)B ? n : 8 * (size_t)B;
    const size_t start = (size_t)kiln_rng_below(rng, (uint64_t)(n - W + 1));
    const kiln_s2s_inputs *in = &g_model.s2s;
    static size_t pick[MAX_BATCH_PAIRS]; /* not on the stack: up to 512 KiB */
    int32_t S = 1, T = 1;
    for (int b = 0; b < B; b++) {
        pick[b] = idx[start + (size_t)kiln_rng_below(rng, (uint64_t)W)];
        if (d->src.len[pick[b]] > S) S = d->src.len[pick[b]];
        if (d->tgt.len[pick[b]] > T) T = d->tgt.len[pick[b]];
    }
    int32_t *source = bt->t[in->source].data, *target = bt->t[in->target].data, *labels = bt->t[in->labels].data;
    int32_t *mask = in->mask >= 0 ? bt->t[in->mask].data : NULL;
    d->batch_tokens = 0;
    for (int b = 0; b < B; b++) {
        const int32_t *s = d->src.ids + d->src.off[pick[b]], *t = d->tgt.ids + d->tgt.off[pick[b]];
        const int32_t ns = d->src.len[pick[b]], nt = d->tgt.len[pick[b]];
        for (int32_t j = 0; j < S; j++) {
            source[(size_t)b * S + j] = j < ns ? s[j] : d->pad;
            if (mask) mask[(size_t)b * S + j] = j < ns;
        }
        for (int32_t j = 0; j < T; j++) {
            target[(size_t)b * T + j] = j == 0 ? d->bos : j < nt ? t[j - 1] : d->pad;
            labels[(size_t)b * T + j] = j < nt ? t[j] : d->pad;
        }
        d->batch_tokens += (size_t)(ns + nt);
    }
    bt->t[in->source].shape[1] = S;
    if (mask) bt->t[in->mask].shape[1] = S;
    bt->t[in->target].shape[1] = T;
    bt->t[in->labels].shape[1] = T;
}

static void free_data(dataset *d) {
    kiln_pairs_free(&d->pairs);
    kiln_token_lists_free(&d->src);
    kiln_token_lists_free(&d->tgt);
    free(d->train_idx);
    free(d->val_idx);
    kiln_bpe_free(d->tok);
    free(d->tok_text);
    free(d->bytes);
    for (int k = 0; k < MAX_INPUTS; k++) kiln_npy_free(&d->arrays[k]);
}

/* ------------------------------------------------------------------------- */
/* Gradient norm, clipping, optimizers */

/* sqrt(sum g^2), accumulated in double over fixed chunks (thread-count independent). Within a chunk,
 * NORM_LANES running sums take every NORM_LANES-th element, so the loop vectorises without reordering any
 * sum; they are added in lane order at the end of the chunk. */
#define NORM_LANES 16
static double grad_norm(const float *g, size_t n) {
    size_t nchunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    double *partial = kiln_xcalloc(nchunks ? nchunks : 1, sizeof *partial, "norm partial sums");
#pragma omp parallel for schedule(static)
    for (long c = 0; c < (long)nchunks; c++) {
        size_t lo = (size_t)c * NORM_CHUNK, hi = lo + NORM_CHUNK < n ? lo + NORM_CHUNK : n;
        double lane[NORM_LANES] = {0.0};
        size_t i = lo;
        for (; i + NORM_LANES <= hi; i += NORM_LANES)
            for (int l = 0; l < NORM_LANES; l++) lane[l] += (double)g[i + l] * (double)g[i + l];
        for (int l = 0; i < hi; i++, l++) lane[l] += (double)g[i] * (double)g[i];
        double s = 0.0;
        for (int l = 0; l < NORM_LANES; l++) s += lane[l];
        partial[c] = s;
    }
    double total = 0.0;
    for (size_t c = 0; c < nchunks; c++) total += partial[c];
    free(partial);
    return sqrt(total);
}

/* The factor gradient clipping multiplies every gradient by: min(1, clip / (norm + 1e-6)) as
 * torch.nn.utils.clip_grad_norm_ computes it in float32 (reciprocal, then times clip); 1 when clipping is
 * off. The optimizers apply it as they read each gradient: the same floats as scaling the gradients first,
 * without another pass over them. */
static float clip_coef(double clip, double norm) {
    if (!(clip > 0.0)) return 1.0f;
    float coef = 1.0f / ((float)norm + (float)1e-6) * (float)clip;
    return coef < 1.0f ? coef : 1.0f;
}

/* The optimizers update the parameter block (KILN(param_elements)() floats) in OPT_CHUNKS equal chunks shared by
 * the threads, one parallel loop per step: the small tensors, biases and norm gains, are not left to one thread. */
enum { OPT_CHUNKS = 64 };

/* An optimizer step's constants: AdamW's (torch's float32 arithmetic) or SGD's with momentum
 * (torch.optim.SGD, dampening 0, coupled weight decay). */
typedef struct {
    int adamw;
    float gscale;                                                   /* the clipping factor */
    float w1, one_minus_w1, b2, w2, eps, neg_step, bc2_sqrt, keep;  /* AdamW (t = 1-based step) */
    float mom, wd, neg_lr;                                          /* SGD */
    int first_step, momentum;
} opt_step;

/* The step over n elements of one parameter tensor: p their values, s1 and s2 their optimizer state (AdamW's m
 * and v; SGD's momentum buffer, s2 unused), g their gradient. */
static void opt_piece(const opt_step *k, int decay, float *restrict p, float *restrict s1, float *restrict s2,
                      const float *restrict g, size_t n) {
    if (k->adamw) {
        for (size_t j = 0; j < n; j++) {
            float pj = p[j], gj = g[j] * k->gscale, mj = s1[j], vj = s2[j];
            if (decay) pj = pj * k->keep;
            /* torch.lerp: weight < 0.5 ? m + w*(g-m) : g - (g-m)*(1-w) */
            mj = k->w1 < 0.5f ? mj + k->w1 * (gj - mj) : gj - (gj - mj) * k->one_minus_w1;
            vj = vj * k->b2;
            vj = vj + k->w2 * gj * gj;
            float denom = sqrtf(vj) / k->bc2_sqrt + k->eps;
            pj = pj + k->neg_step * mj / denom;
            p[j] = pj;
            s1[j] = mj;
            s2[j] = vj;
        }
        return;
    }
    for (size_t j = 0; j < n; j++) {
        float d = g[j] * k->gscale;
        if (decay) d = d + k->wd * p[j];
        if (k->momentum) {
            d = k->first_step ? d : s1[j] * k->mom + d;
            s1[j] = d;
        }
        p[j] = p[j] + k->neg_lr * d;
    }
}

/* The step over every parameter: the chunks of the parameter block in one parallel loop, each updating the parts
 * of the tensors that lie in it. */
static void opt_update(const hparams *h, const opt_step *k, float *params, const float *grads, float *s1, float *s2) {
    const size_t total = KILN(param_elements)();
#pragma omp parallel for schedule(static) if (total > 16384)
    for (int c = 0; c < OPT_CHUNKS; c++) {
        const size_t lo = total * c / OPT_CHUNKS, hi = total * (c + 1) / OPT_CHUNKS;
        for (int i = 0; i < KILN(num_params)(); i++) {
            const kiln_param_desc *pi = KILN(param)(i);
            const size_t s = pi->offset > lo ? pi->offset : lo;
            const size_t e = pi->offset + pi->numel < hi ? pi->offset + pi->numel : hi;
            if (s < e)
                opt_piece(k, is_decayed(h, i) && h->weight_decay != 0.0, params + s, s1 + s, s2 ? s2 + s : NULL,
                          grads + s, e - s);
        }
    }
}

/* One AdamW step (t = 1-based step) over every parameter, torch's float32 arithmetic. */
static void adamw_update(const hparams *h, double lr, int64_t t, float *params, const float *grads,
                         float gscale, float *m, float *v) {
    const double bc1 = 1.0 - pow(h->beta1, (double)t), bc2 = 1.0 - pow(h->beta2, (double)t);
    opt_step k = {.adamw = 1, .gscale = gscale};
    k.w1 = (float)(1.0 - h->beta1), k.one_minus_w1 = 1.0f - k.w1, k.b2 = (float)h->beta2;
    k.w2 = (float)(1.0 - h->beta2), k.eps = (float)h->eps;
    k.neg_step = (float)(-(lr / bc1)), k.bc2_sqrt = (float)pow(bc2, 0.5), k.keep = (float)(1.0 - lr * h->weight_decay);
    opt_update(h, &k, params, grads, m, v);
}

/* One SGD-with-momentum step (torch.optim.SGD, dampening 0, coupled weight decay). */
static void sgd_update(const hparams *h, double lr, int64_t t, float *params, const float *grads,
                       float gscale, float *buf) {
    opt_step k = {.adamw = 0, .gscale = gscale, .mom = (float)h->momentum, .wd = (float)h->weight_decay,
                  .neg_lr = (float)(-lr), .first_step = t == 1, .momentum = h->momentum != 0.0};
    opt_update(h, &k, params, grads, buf, NULL);
}

/* ------------------------------------------------------------------------- */
/* Training state and checkpoints */

typedef struct {
    hparams hp;
    uint64_t seed;    /* train_seed: init, data order, dropout */
    int64_t step;     /* completed optimizer steps */
    double trained_s; /* seconds the training steps took, over resumes (kept with --time-limit) */
    int timed;        /* --time-limit given: the checkpoint records trained_s */
    kiln_rng data_rng;
    float *params;
    float *m;         /* AdamW exp_avg, or the SGD momentum buffer */
    float *v;         /* AdamW exp_avg_sq (NULL for SGD) */
} train_state;

/* Names of the optimizer-state tensors: "train.m.<name>" etc. */
static const char *state_prefix(int optimizer, int which) {
    if (optimizer == OPT_SGD) return "train.momentum.";
    return which == 0 ? "train.m." : "train.v.";
}

static char *concat(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *s = kiln_xmalloc(na + nb + 1, "a tensor name");
    memcpy(s, a, na);
    memcpy(s + na, b, nb + 1);
    return s;
}

/* Index of the first parameter/state tensor holding a non-finite value, or -1. */
static int first_nonfinite(const float *block) {
    for (int i = 0; i < KILN(num_params)(); i++) {
        const float *x = block + KILN(param)(i)->offset;
        for (size_t j = 0; j < KILN(param)(i)->numel; j++)
            if (!isfinite(x[j])) return i;
    }
    return -1;
}

/* A checkpoint tensor: parameter i's shape, under a name, with data. */
static void param_entry(int i, const char *name, const float *data, kiln_st_entry *e) {
    const kiln_param_desc *p = KILN(param)(i);
    memset(e, 0, sizeof *e);
    e->name = name ? name : p->name;
    e->dtype = KILN_DT_F32;
    e->ndim = p->rank;
    for (int d = 0; d < p->rank; d++) e->shape[d] = p->shape[d];
    e->data = data;
}

/* What a checkpoint must hold: parameter i's shape, under a name, at an offset of the block being loaded. */
static void param_spec(int i, const char *name, size_t offset, kiln_tensor_spec *spec) {
    const kiln_param_desc *p = KILN(param)(i);
    memset(spec, 0, sizeof *spec);
    spec->name = name ? name : p->name;
    spec->ndim = p->rank;
    for (int d = 0; d < p->rank; d++) spec->shape[d] = p->shape[d];
    spec->offset = offset;
}

#define MAX_META (17 + NUM_HPARAMS)

/* Writes the checkpoint atomically; values were checked to be finite. */
static void write_checkpoint(const char *path, train_state *s, const dataset *data) {
    int nstate = s->hp.optimizer == OPT_ADAMW ? 2 : 1;
    const int np = KILN(num_params)();
    size_t nt = (size_t)np * (size_t)(1 + nstate);
    kiln_st_entry *e = kiln_xcalloc(nt, sizeof *e, "the checkpoint tensor list");
    char **names = kiln_xcalloc(nt, sizeof *names, "the checkpoint tensor names");
    size_t k = 0;
    for (int i = 0; i < np; i++) param_entry(i, NULL, s->params + KILN(param)(i)->offset, &e[k++]);
    for (int w = 0; w < nstate; w++) {
        const float *block = w == 0 ? s->m : s->v;
        for (int i = 0; i < np; i++) {
            names[k] = concat(state_prefix((int)s->hp.optimizer, w), KILN(param)(i)->name);
            param_entry(i, names[k], block + KILN(param)(i)->offset, &e[k]);
            k++;
        }
    }
    const char *keys[MAX_META], *vals[MAX_META];
    static char buf[MAX_META][256];
    size_t nm = 0;
#define META(K, ...)                                                                       \
    (keys[nm] = (K), snprintf(buf[nm], sizeof buf[nm], __VA_ARGS__), vals[nm] = buf[nm], nm++)
    META("format", "pt");
    META("kiln_model", "%s", KILN(model_name)());
    META("kiln_checkpoint", CHECKPOINT_VERSION);
    META("step", "%" PRId64, s->step);
    if (s->timed) META("train_seconds", "%.6f", s->trained_s);
    META("train_seed", "%" PRIu64, s->seed);
    META("data_rng", "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64, s->data_rng.s[0],
         s->data_rng.s[1], s->data_rng.s[2], s->data_rng.s[3]);
    META("model_fingerprint", "%016" PRIx64, model_fingerprint());
    META("data_fingerprint", "%016" PRIx64, data->fingerprint);
    META("data_bytes", "%zu", g_model.text ? data->n : data->tok ? data->pairs.n : data->rows);
#undef META
    if (data->tok_text) {
        keys[nm] = "tokenizer";
        vals[nm++] = data->tok_text;
    }
    for (size_t i = 0; i < NUM_HPARAMS; i++) {
        keys[nm] = HPARAMS[i].key;
        vals[nm] = hp_format(&HPARAMS[i], &s->hp, buf[nm], sizeof buf[nm]);
        nm++;
    }
    kiln_error err;
    int rc = kiln_st_write(path, e, nt, keys, vals, nm, &err);
    for (size_t i = 0; i < nt; i++) free(names[i]);
    free(names);
    free(e);
    if (rc) kiln_die("%s", err.msg);
}

/* Strict readers of checkpoint metadata. */
/* The weights alone, with the model's name and the tokenizer (if any) in the metadata: what a trained model
 * ships as. Written atomically. */
static void write_weights(const char *path, const train_state *s, const dataset *data) {
    const int np = KILN(num_params)();
    kiln_st_entry *e = kiln_xcalloc((size_t)np, sizeof *e, "the tensor list");
    for (int i = 0; i < np; i++) param_entry(i, NULL, s->params + KILN(param)(i)->offset, &e[i]);
    const char *keys[3] = {"format", "kiln_model", "tokenizer"}, *vals[3] = {"pt", KILN(model_name)(), data->tok_text};
    kiln_error err;
    if (kiln_st_write(path, e, (size_t)np, keys, vals, data->tok_text ? 3 : 2, &err)) kiln_die("%s", err.msg);
    free(e);
}

static const char *meta_required(const kiln_safetensors *st, const char *path, const char *key) {
    const char *v = kiln_st_meta_get(st, key);
    if (!v) kiln_die("checkpoint '%s' has no '%s' metadata", path, key);
    return v;
}

static uint64_t meta_hex64(const kiln_safetensors *st, const char *path, const char *key) {
    const char *v = meta_required(st, path, key);
    uint64_t x = 0;
    size_t n = strlen(v);
    char vb[96];
    int ok = n == 16;
    for (size_t i = 0; ok && i < n; i++) {
        char c = v[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) ok = 0;
        else x = x << 4 | (uint64_t)d;
    }
    if (!ok)
        kiln_die("checkpoint '%s': metadata '%s' is '%s', expected 16 lowercase hex digits", path,
                 key, kiln_printable(vb, sizeof vb, v));
    return x;
}

/* Restores the data RNG from 64 hex digits. */
static void meta_rng(const kiln_safetensors *st, const char *path, kiln_rng *rng) {
    const char *v = meta_required(st, path, "data_rng");
    char vb[96];
    int ok = strlen(v) == 64;
    uint64_t w[4] = {0, 0, 0, 0};
    for (size_t i = 0; ok && i < 64; i++) {
        char c = v[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) ok = 0;
        else w[i / 16] = w[i / 16] << 4 | (uint64_t)d;
    }
    if (ok && (w[0] | w[1] | w[2] | w[3]) == 0) ok = 0; /* xoshiro's one invalid state */
    if (!ok)
        kiln_die("checkpoint '%s': metadata 'data_rng' is '%s', expected 64 lowercase hex digits "
                 "(not all zero)",
                 path, kiln_printable(vb, sizeof vb, v));
    memcpy(rng->s, w, sizeof w);
    rng->has_spare = 0;
    rng->spare = 0.0;
}

/* Loads params and optimizer state of a checkpoint already checked for model
 * and settings; dies with a one-line message on anything missing or invalid. */
static void load_checkpoint_tensors(const kiln_safetensors *st, const char *path, train_state *s) {
    int nstate = s->hp.optimizer == OPT_ADAMW ? 2 : 1;
    const char *first = KILN(param)(0)->name;
    char *probe = concat(state_prefix((int)s->hp.optimizer, 0), first);
    if (!kiln_st_find(st, probe))
        kiln_die("checkpoint '%s' has no optimizer state for %s (missing tensor '%s')", path,
                 OPTIMIZER_NAMES[s->hp.optimizer], probe);
    free(probe);
    /* one block [params | m | v] so that the exact tensor set is checked in one call */
    const int np = KILN(num_params)();
    size_t pf = g_model.pf, total = pf * (size_t)(1 + nstate);
    size_t nt = (size_t)np * (size_t)(1 + nstate);
    float *block = kiln_xcalloc_floats(total, "the checkpoint");
    kiln_tensor_spec *specs = kiln_xcalloc(nt, sizeof *specs, "the checkpoint tensor list");
    char **names = kiln_xcalloc(nt, sizeof *names, "the checkpoint tensor names");
    size_t k = 0;
    for (int i = 0; i < np; i++) param_spec(i, NULL, KILN(param)(i)->offset, &specs[k++]);
    for (int w = 0; w < nstate; w++) {
        for (int i = 0; i < np; i++) {
            names[k] = concat(state_prefix((int)s->hp.optimizer, w), KILN(param)(i)->name);
            param_spec(i, names[k], pf * (size_t)(1 + w) + KILN(param)(i)->offset, &specs[k]);
            k++;
        }
    }
    kiln_error err;
    int rc = kiln_st_load_f32(st, specs, nt, block, total, &err);
    for (size_t i = 0; i < nt; i++) free(names[i]);
    free(names);
    free(specs);
    if (rc) kiln_die("%s", err.msg);
    for (int w = 0; w <= nstate; w++) {
        int bad = first_nonfinite(block + pf * (size_t)w);
        if (bad >= 0)
            kiln_die("checkpoint '%s': tensor '%s%s' holds non-finite values", path,
                     w == 0 ? "" : state_prefix((int)s->hp.optimizer, w - 1),
                     KILN(param)(bad)->name);
    }
    memcpy(s->params, block, pf * sizeof(float));
    memcpy(s->m, block + pf, pf * sizeof(float));
    if (nstate == 2) {
        for (size_t j = 0; j < pf; j++)
            if (block[2 * pf + j] < 0.0f)
                kiln_die("checkpoint '%s': AdamW second moments (train.v.*) must not be negative",
                         path);
        memcpy(s->v, block + 2 * pf, pf * sizeof(float));
    }
    free(block);
}

/* ------------------------------------------------------------------------- */
/* Evaluation */

/* Mean validation loss over eval_iters batches drawn by an RNG re-seeded each time: the model's loss
 * function (no dropout) on each batch. */
static double evaluate(kiln_ctx *ctx, const train_state *s, dataset *d, batch *bt) {
    int B = (int)s->hp.batch, T = (int)s->hp.seq;
    kiln_rng rng;
    kiln_rng_seed(&rng, s->seed ^ EVAL_RNG_TAG);
    double total = 0.0;
    for (int64_t it = 0; it < s->hp.eval_iters; it++) {
        draw_batch(&rng, d, 1, B, T, bt);
        total += (double)run_batch(ctx, g_model.loss, bt, 0);
    }
    return total / (double)s->hp.eval_iters;
}

static void log_line(FILE *f, const char *path, const char *fmt, ...) KILN_PRINTF(3, 4);

/* A mixture-of-experts model's `expert_load` (forward's output [L, E], the fraction of the tokens each expert
 * of each layer takes) on the first validation batch: a printed line per layer, and the field
 * ,"expert_load":[[...], ...] of the evaluation's log record. */
static void report_expert_load(kiln_ctx *ctx, const train_state *s, dataset *d, batch *bt, FILE *jlog,
                               const char *log_path) {
    if (g_model.load < 0) return;
    const kiln_function_desc *f = g_model.forward;
    const kiln_tensor_desc *o = &f->outputs[g_model.load];
    kiln_rng rng;
    kiln_rng_seed(&rng, s->seed ^ EVAL_RNG_TAG);
    draw_batch(&rng, d, 1, (int)s->hp.batch, (int)s->hp.seq, bt);
    kiln_tensor in[MAX_INPUTS];
    for (int k = 0; k < f->num_inputs; k++) {
        int j = 0;
        while (j < g_model.step->num_inputs && strcmp(g_model.step->inputs[j].name, f->inputs[k].name) != 0) j++;
        if (j == g_model.step->num_inputs) return; /* forward reads an input training does not have */
        in[k] = bt->t[j];
    }
    /* forward writes every output: buffers for all, each dim constant or a symbolic dim of an input */
    kiln_tensor out[MAX_INPUTS];
    if (f->num_outputs > MAX_INPUTS) return;
    for (int k = 0; k < f->num_outputs; k++) {
        const kiln_tensor_desc *od = &f->outputs[k];
        out[k] = (kiln_tensor){od->name, od->dtype, od->rank, {0}, NULL};
        size_t n = 1;
        for (int j = 0; j < od->rank; j++) {
            int64_t v = od->shape[j];
            for (int i = 0; i < f->num_inputs && od->dims[j]; i++)
                for (int jj = 0; jj < f->inputs[i].rank; jj++)
                    if (f->inputs[i].dims[jj] && strcmp(f->inputs[i].dims[jj], od->dims[j]) == 0) v = in[i].shape[jj];
            if (v < 1) kiln_die("internal error: forward's output '%s' has an unknown dim", od->name);
            out[k].shape[j] = v;
            n *= (size_t)v;
        }
        out[k].data = kiln_xcalloc(n, dtype_size(od->dtype), "forward's outputs");
    }
    if (KILN(run)(ctx, f->name, in, f->num_inputs, out, f->num_outputs) != KILN_OK) kiln_die("%s", KILN(error)(ctx));
    const int64_t L = o->shape[0], E = o->shape[1];
    const float *load = out[g_model.load].data;
    for (int64_t l = 0; l < L; l++) {
        double lo = 1e300, hi = 0;
        printf("  expert load, layer %" PRId64 ":", l);
        for (int64_t e = 0; e < E; e++) {
            const double v = load[l * E + e];
            printf(" %.3f", v);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        printf("  (min %.3f max %.3f)\n", lo, hi);
        char b1[40];
        log_line(jlog, log_path, "%s[", l ? "," : ",\"expert_load\":[");
        for (int64_t e = 0; e < E; e++) log_line(jlog, log_path, "%s%s", e ? "," : "", fmt_exact(load[l * E + e], b1, sizeof b1));
        log_line(jlog, log_path, "]%s", l == L - 1 ? "]" : "");
    }
    for (int k = 0; k < f->num_outputs; k++) free(out[k].data);
}

/* Sentence pairs: the loss per target token (no label smoothing) and BLEU and chrF of greedy translations of
 * every held-out pair. */
static kiln_s2s_scores evaluate_pairs(kiln_ctx *ctx, const dataset *d) {
    kiln_api api = kiln_model_api(ctx);
    kiln_seq2seq m;
    kiln_error err;
    if (kiln_s2s_open(&m, &api, &err)) kiln_die("evaluating: %s", err.msg);
    kiln_beam_options bo = {.beam = 1, .length_penalty = 0.6, .max_len = (int)m.target_len, .bos = d->bos, .eos = d->eos};
    kiln_s2s_scores sc;
    if (kiln_s2s_score(&m, &d->pairs, &d->src, &d->tgt, d->val_idx, d->n_val_pairs, d->tok, d->pad, &bo, NULL, &sc, &err))
        kiln_die("evaluating: %s", err.msg);
    return sc;
}

/* ------------------------------------------------------------------------- */
/* train */

/* Dies if a default from the model file is out of range (a compiler bug). */
static void check_defaults(void) {
    hparams h = model_defaults();
    for (size_t i = 0; i < NUM_HPARAMS; i++) {
        const hp_def *d = &HPARAMS[i];
        double x = d->is_int ? (double)*hp_int(&h, d) : *hp_f64(&h, d);
        if (!(x >= d->lo && x <= d->hi) || (d->lo_open && x == d->lo) || (d->hi_open && x == d->hi))
            kiln_die("internal error: the model's default %s %g is out of range", d->flag, x);
    }
}

/* Settings given on the command line: parsed before any file is read, so
 * that a malformed flag is always a usage error. */
typedef struct {
    hparams values;
    int given[NUM_HPARAMS];
} hp_flags;

static void parse_hp_flags(const command *cmd, const opts *o, hp_flags *f) {
    kiln_error err;
    memset(f, 0, sizeof *f);
    f->values = model_defaults();
    for (size_t i = 0; i < NUM_HPARAMS; i++) {
        const char *v = kiln_opt_get(cmd, o, HPARAMS[i].flag);
        if (!v) continue;
        if (hp_parse(&HPARAMS[i], HPARAMS[i].flag, v, &f->values, &err)) usage_die("%s", err.msg);
        f->given[i] = 1;
    }
}

/* Settings: command line, else the checkpoint (when resuming), else the model's defaults. */
static void resolve_hparams(const hp_flags *f, const kiln_safetensors *ckpt,
                            const char *ckpt_path, hparams *h) {
    *h = model_defaults();
    kiln_error err;
    char what[512];
    hparams fv = f->values;
    for (size_t i = 0; i < NUM_HPARAMS; i++) {
        const hp_def *d = &HPARAMS[i];
        if (ckpt) {
            const char *v = meta_required(ckpt, ckpt_path, d->key);
            snprintf(what, sizeof what, "checkpoint '%s': metadata '%s'", ckpt_path, d->key);
            if (hp_parse(d, what, v, h, &err)) kiln_die("%s", err.msg);
        }
        if (!f->given[i]) continue;
        if (ckpt && strcmp(d->key, "optimizer") == 0 && *hp_int(h, d) != *hp_int(&fv, d))
            kiln_die("checkpoint '%s' was written with --optimizer %s; a resumed run cannot "
                     "switch to %s",
                     ckpt_path, OPTIMIZER_NAMES[*hp_int(h, d)], OPTIMIZER_NAMES[*hp_int(&fv, d)]);
        if (d->is_int) *hp_int(h, d) = *hp_int(&fv, d);
        else *hp_f64(h, d) = *hp_f64(&fv, d);
    }
    /* a fresh run's checkpoint interval follows --eval-interval unless given */
    for (size_t i = 0; i < NUM_HPARAMS; i++)
        if (!ckpt && !f->given[i] && strcmp(HPARAMS[i].key, "checkpoint_interval") == 0)
            h->checkpoint_interval = h->eval_interval;
}

/* Appends one line to the JSON log (if any); dies on a write error. */
static void log_line(FILE *f, const char *path, const char *fmt, ...) KILN_PRINTF(3, 4);
static void log_line(FILE *f, const char *path, const char *fmt, ...) {
    if (!f) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    if (fflush(f) != 0 || ferror(f)) kiln_die("error writing the log '%s'", path);
}

/* "the last checkpoint 'out' is untouched" or "no checkpoint was written to 'out'". */
static const char *ckpt_note(const char *out, char *buf, size_t cap) {
    char ob[512];
    kiln_printable(ob, sizeof ob, out);
    if (access(out, F_OK) == 0) snprintf(buf, cap, "the last checkpoint '%s' is untouched", ob);
    else snprintf(buf, cap, "no checkpoint was written to '%s'", ob);
    return buf;
}

/* Dies unless the state is finite (never checkpoint NaN/Inf). */
static void check_finite_state(const train_state *s, const char *out) {
    char note[640];
    const float *blocks[3] = {s->params, s->m, s->v};
    const char *what[3] = {"parameter", "optimizer state of", "optimizer state of"};
    for (int b = 0; b < 3; b++) {
        if (!blocks[b]) continue;
        int bad = first_nonfinite(blocks[b]);
        if (bad >= 0)
            kiln_die("non-finite %s '%s' after step %" PRId64 "; %s", what[b],
                     KILN(param)(bad)->name, s->step, ckpt_note(out, note, sizeof note));
    }
}

/* Under N ranks the step's micro-batches are N times each rank's --accumulate (or the model's default); a
 * resumed run without --accumulate keeps the checkpoint's global count, which N must divide. */
static void global_accumulate(const hp_flags *f, const char *resume, hparams *h) {
    const int N = kiln_dist_size();
    if (N == 1) return;
    size_t i = 0;
    while (strcmp(HPARAMS[i].key, "accumulate") != 0) i++;
    if (!resume || f->given[i]) {
        if (h->accumulate > MAX_BATCH / N)
            usage_die("--accumulate %" PRId64 " on %d ranks: at most %d micro-batches per step in all", h->accumulate, N, MAX_BATCH);
        h->accumulate *= N;
    } else if (h->accumulate % N != 0) {
        kiln_die("checkpoint '%s' takes steps of %" PRId64 " micro-batches of %" PRId64 ", which %d ranks cannot share "
                 "evenly; run on a number of ranks that divides %" PRId64 ", or give --accumulate (micro-batches per rank)",
                 resume, h->accumulate, h->batch, N, h->accumulate);
    }
}

/* A hash of everything a step starts from: step, seeds, data order, weights and optimizer state. */
static uint64_t state_hash(const train_state *s) {
    uint64_t h = KILN_FNV1A64_INIT;
    h = kiln_fnv1a64(h, &s->step, sizeof s->step);
    h = kiln_fnv1a64(h, &s->seed, sizeof s->seed);
    h = kiln_fnv1a64(h, s->data_rng.s, sizeof s->data_rng.s);
    h = kiln_fnv1a64(h, s->params, g_model.pf * sizeof(float));
    h = kiln_fnv1a64(h, s->m, g_model.pf * sizeof(float));
    if (s->v) h = kiln_fnv1a64(h, s->v, g_model.pf * sizeof(float));
    return h;
}

/* Under MPI: every rank must start from the same data and state, or the ranks' gradients mean nothing. */
static void check_ranks_agree(const train_state *s, const dataset *data, const char *data_path) {
    const int N = kiln_dist_size();
    if (N == 1) return;
    uint64_t *all = kiln_xcalloc((size_t)N, sizeof *all, "the ranks' fingerprints");
    kiln_dist_allgather_u64(data->fingerprint, all);
    for (int r = 1; r < N; r++)
        if (all[r] != all[0])
            kiln_die("rank %d read different data from '%s' than rank 0 (fingerprint %016" PRIx64 ", rank 0 has %016" PRIx64
                     "); every rank needs the same data file", r, data_path, all[r], all[0]);
    kiln_dist_allgather_u64(state_hash(s), all);
    for (int r = 1; r < N; r++)
        if (all[r] != all[0])
            kiln_die("rank %d starts from different weights or optimizer state than rank 0; every rank needs the same "
                     "--resume or --init-from file", r);
    free(all);
}

static void cmd_train(const command *cmd, const opts *o) {
    const char *data_path = kiln_opt_required(cmd, o, "--data");
    const char *out = kiln_opt_required(cmd, o, "--out");
    const char *resume = kiln_opt_get(cmd, o, "--resume");
    const char *init_from = kiln_opt_get(cmd, o, "--init-from");
    const char *log_path = kiln_opt_get(cmd, o, "--log");
    const char *seed_flag = kiln_opt_get(cmd, o, "--seed");
    if (resume && init_from) usage_die("--resume and --init-from cannot be combined");
    const char *limit_flag = kiln_opt_get(cmd, o, "--time-limit");
    double time_limit = 0.0;
    kiln_error err_early;
    if (limit_flag && kiln_flag_f64("--time-limit", limit_flag, 1e-3, 1e12, &time_limit, &err_early))
        usage_die("%s", err_early.msg);
    struct stat so, sd;
    if (stat(out, &so) == 0) {
        if (S_ISDIR(so.st_mode)) usage_die("--out '%s' is a directory", out);
        if (stat(data_path, &sd) == 0 && so.st_dev == sd.st_dev && so.st_ino == sd.st_ino)
            usage_die("--out '%s' is the data file", out);
    }
    train_state s;
    memset(&s, 0, sizeof s);
    s.seed = kiln_opt_seed(cmd, o, DEFAULT_SEED);
    s.timed = time_limit > 0.0;
    hp_flags flags;
    parse_hp_flags(cmd, o, &flags);
    kiln_error err;

    /* settings, the checkpoint's identity, the data */
    kiln_safetensors ckpt;
    memset(&ckpt, 0, sizeof ckpt);
    if (resume) {
        if (kiln_st_open(resume, &ckpt, &err)) kiln_die("%s", err.msg);
        const char *ver = kiln_st_meta_get(&ckpt, "kiln_checkpoint");
        char vb[96];
        if (!ver)
            kiln_die("'%s' is not a training checkpoint (no 'kiln_checkpoint' metadata)", resume);
        if (strcmp(ver, CHECKPOINT_VERSION) != 0)
            kiln_die("checkpoint '%s' has kiln_checkpoint version '%s'; this program reads "
                     "version " CHECKPOINT_VERSION,
                     resume, kiln_printable(vb, sizeof vb, ver));
        uint64_t fp = meta_hex64(&ckpt, resume, "model_fingerprint");
        if (fp != model_fingerprint())
            kiln_die("checkpoint '%s' was written for a different model (fingerprint %016" PRIx64
                     ", this model '%s' has %016" PRIx64 ")",
                     resume, fp, KILN(model_name)(), model_fingerprint());
    }
    resolve_hparams(&flags, resume ? &ckpt : NULL, resume, &s.hp);
    global_accumulate(&flags, resume, &s.hp);
    /* sentence pairs: the tokenizer of the checkpoint, of --init-from's weights or --tokenizer, else a new one */
    kiln_bpe *tok = NULL;
    const char *tok_path = kiln_opt_get(cmd, o, "--tokenizer");
    if (g_model.pairs && kiln_s2s_tokenizer(resume ? resume : init_from, tok_path, &tok, &err)) kiln_die("%s", err.msg);
    if (!g_model.pairs && tok_path) usage_die("--tokenizer is for encoder-decoder models trained from sentence pairs");
    if (g_model.pairs && s.hp.batch > MAX_BATCH_PAIRS) usage_die("--batch: at most %d sentence pairs", MAX_BATCH_PAIRS);
    dataset data;
    load_data(data_path, &s.hp, tok, &data);
    if (resume && data.tok && !tok) kiln_die("checkpoint '%s' has no tokenizer to read its sentence pairs with", resume);

    size_t pf = g_model.pf;
    kiln_ctx *ctx = new_context();
    s.params = KILN(params)(ctx); /* the weights, in the layout of the weights file, trained in place */
    s.m = kiln_xcalloc_floats(pf, "the optimizer state");
    if (s.hp.optimizer == OPT_ADAMW) s.v = kiln_xcalloc_floats(pf, "the optimizer state");
    if (resume) {
        uint64_t fp = meta_hex64(&ckpt, resume, "data_fingerprint");
        if (fp != data.fingerprint)
            kiln_die("checkpoint '%s' was written for different data (fingerprint %016" PRIx64
                     "; '%s' with --val-fraction %g has %016" PRIx64 ")",
                     resume, fp, data_path, s.hp.val_fraction, data.fingerprint);
        char what[512];
        snprintf(what, sizeof what, "checkpoint '%s': metadata 'step'", resume);
        if (kiln_flag_i64(what, meta_required(&ckpt, resume, "step"), 0, MAX_STEPS, &s.step, &err))
            kiln_die("%s", err.msg);
        const char *secs = kiln_st_meta_get(&ckpt, "train_seconds");
        snprintf(what, sizeof what, "checkpoint '%s': metadata 'train_seconds'", resume);
        if (secs && kiln_flag_f64(what, secs, 0.0, 1e12, &s.trained_s, &err)) kiln_die("%s", err.msg);
        uint64_t ck_seed;
        snprintf(what, sizeof what, "checkpoint '%s': metadata 'train_seed'", resume);
        if (kiln_flag_u64(what, meta_required(&ckpt, resume, "train_seed"), &ck_seed, &err))
            kiln_die("%s", err.msg);
        if (!seed_flag) s.seed = ck_seed;
        meta_rng(&ckpt, resume, &s.data_rng);
        load_checkpoint_tensors(&ckpt, resume, &s);
        kiln_st_close(&ckpt);
    } else {
        if ((init_from ? KILN(load)(ctx, init_from) : KILN(init)(ctx, s.seed)) != KILN_OK)
            kiln_die("%s", KILN(error)(ctx));
        int bad = first_nonfinite(s.params);
        if (bad >= 0)
            kiln_die("%s: tensor '%s' holds non-finite values", init_from ? init_from : "init",
                     KILN(param)(bad)->name);
        kiln_rng_seed(&s.data_rng, s.seed ^ DATA_RNG_TAG);
    }

    /* fail now, not at the first checkpoint, if --out cannot be written (by rank 0, the one writer) */
    const int N = kiln_dist_size(), rank = kiln_dist_rank();
    if (rank == 0) {
        kiln_atomic_file probe;
        if (kiln_atomic_open(&probe, out, &err)) kiln_die("%s", err.msg);
        kiln_atomic_abort(&probe);
    }
    check_ranks_agree(&s, &data, data_path);

    const hparams *h = &s.hp;
    if (g_model.text)
        printf("train: model %s (%zu parameters), data %s: %zu bytes (train %zu, val %zu)\n",
               KILN(model_name)(), pf, data_path, data.n, data.n_train, data.n_val);
    else if (data.tok)
        printf("train: model %s (%zu parameters), data %s: %zu sentence pairs (train %zu, held out %zu), "
               "tokenizer of %d ids\n",
               KILN(model_name)(), pf, data_path, data.pairs.n, data.n_train_pairs, data.n_val_pairs, kiln_bpe_size(data.tok));
    else
        printf("train: model %s (%zu parameters), data %s: %zu examples (train %zu, val %zu)\n",
               KILN(model_name)(), pf, data_path, data.rows, data.rows_train, data.rows_val);
    if (N > 1) {
        printf("train: %d ranks (%s) x %d OpenMP threads; a step is %" PRId64 " micro-batches of %" PRId64
               " (%" PRId64 " per rank), %" PRId64 " in all\n",
               N, kiln_dist_library(), kiln_num_threads(), h->accumulate, h->batch, h->accumulate / N, h->accumulate * h->batch);
        int cpus = kiln_dist_cpus();
        if (cpus > 0 && kiln_num_threads() > cpus)
            fprintf(stderr, "train: warning: rank 0 runs %d OpenMP threads on %d CPU%s: mpirun binds each rank to one core "
                    "unless told otherwise (mpirun --bind-to none, or --map-by slot:PE=%d)\n",
                    kiln_num_threads(), cpus, cpus == 1 ? "" : "s", kiln_num_threads());
    }
    if (resume) printf("train: resumed from %s at step %" PRId64 "\n", resume, s.step);
    if (s.step >= h->steps || (s.timed && s.trained_s >= time_limit)) {
        if (s.step >= h->steps)
            printf("train: already at step %" PRId64 " (--steps %" PRId64 "); nothing to do\n", s.step, h->steps);
        else
            printf("train: the training steps already took %.1f s (--time-limit %g); nothing to do\n", s.trained_s, time_limit);
        const char *weights_out = kiln_opt_get(cmd, o, "--weights-out");
        if (weights_out && kiln_dist_rank() == 0) { /* the weights of a finished run */
            write_weights(weights_out, &s, &data);
            printf("weights step %" PRId64 ": wrote %s\n", s.step, weights_out);
        }
        KILN(free)(ctx);
        free(s.m);
        free(s.v);
        free_data(&data);
        return;
    }

    /* buffers */
    int B = (int)h->batch, T = (int)h->seq;
    size_t ntok;
    if (kiln_size_mul((size_t)B, (size_t)T, &ntok)) kiln_die("batch too large");
    /* train_step writes each micro-batch's gradients into the context's block; with accumulation (or other
     * ranks) they are summed in `sum`, in micro-batch order */
    float *micro = KILN(grads)(ctx);
    if (!micro) kiln_die("%s", KILN(error)(ctx));
    float *sum = h->accumulate > 1 ? kiln_xcalloc_floats(pf, "the gradients") : NULL;
    float *grads = sum ? sum : micro;
    kiln_dist_sum *reduce = sum ? kiln_dist_sum_new(pf, sum) : NULL;
    float *losses = kiln_xcalloc((size_t)N, sizeof *losses, "the ranks' losses");
    int64_t shapes[MAX_INPUTS][KILN_MAX_RANK] = {{0}};
    row_shapes(&data, T, shapes);
    batch bt, others; /* this rank's micro-batch; those of the other ranks, drawn to keep the data order */
    batch_init(&bt, B, shapes);
    if (N > 1) batch_init(&others, B, shapes);
    if (!g_model.text) ntok = (size_t)B; /* examples per micro-batch (pairs: their tokens, counted per step) */

    FILE *jlog = NULL;
    if (log_path && rank == 0) {
        jlog = fopen(log_path, resume ? "a" : "w");
        if (!jlog) kiln_die("cannot open the log '%s' for writing", log_path);
    }

    double t_start = kiln_time_ms(), t_steps = 0.0;
    /* KILN_EXIT_WITH_PARENT=1 (kiln sweep sets it): stop when the process that started this run is gone, so a
     * sweep that is killed leaves no run training on behind it (the last checkpoint stays for its resume) */
    const char *with_parent = getenv("KILN_EXIT_WITH_PARENT");
    const pid_t parent = with_parent && strcmp(with_parent, "1") == 0 ? getppid() : 0;
    int64_t done_here = 0;
    while (s.step < h->steps) {
        if (parent && getppid() != parent) {
            fprintf(stderr, "train: the process that started this run is gone; stopping at step %" PRId64 "\n", s.step);
            exit(1);
        }
        double t0 = kiln_time_ms();
        int64_t step = s.step; /* 0-based index of this step */
        double lr = lr_at(h, step), loss = 0.0;
        size_t step_tokens = 0;
        /* round j: micro-batches jN .. jN+N-1, micro-batch jN+r on rank r */
        for (int64_t j = 0; j < h->accumulate / N; j++) {
            for (int r = 0; r < N; r++) { /* every rank draws every micro-batch: the data order of one process */
                draw_batch(&s.data_rng, &data, 0, B, T, r == rank ? &bt : &others);
                step_tokens += data.batch_tokens;
            }
            losses[0] = run_batch(ctx, g_model.step, &bt, step_seed(s.seed, step, j * N + rank));
            if (N > 1) kiln_dist_allgather_f32(losses[0], losses);
            for (int r = 0; r < N; r++) loss += (double)losses[r];
            if (reduce) kiln_dist_sum_round(reduce, micro, j == 0);
        }
        s.params = KILN(params)(ctx); /* after a validation, which reads them rearranged */
        if (reduce) {
            kiln_dist_sum_finish(reduce, (float)h->accumulate);
            loss /= (double)h->accumulate;
        }
        double norm = grad_norm(grads, pf);
        if (!isfinite(loss) || !isfinite(norm)) {
            char note[640];
            kiln_die("non-finite %s at step %" PRId64 " (%s); %s",
                     isfinite(loss) ? "gradient norm" : "loss", step + 1,
                     nonfinite_name(isfinite(loss) ? norm : loss),
                     ckpt_note(out, note, sizeof note));
        }
        const float coef = clip_coef(h->clip, norm);
        if (h->optimizer == OPT_ADAMW) adamw_update(h, lr, step + 1, s.params, grads, coef, s.m, s.v);
        else sgd_update(h, lr, step + 1, s.params, grads, coef, s.m);
        s.step = step + 1;
        done_here++;

        double dt = kiln_time_ms() - t0;
        t_steps += dt;
        s.trained_s += dt / 1e3;
        /* the time limit: rank 0's clock decides for every rank */
        int out_of_time = s.timed && s.trained_s >= time_limit;
        if (s.timed && N > 1) {
            uint64_t *flags_all = kiln_xcalloc((size_t)N, sizeof *flags_all, "the ranks' flags");
            kiln_dist_allgather_u64((uint64_t)out_of_time, flags_all);
            out_of_time = (int)flags_all[0];
            free(flags_all);
        }
        double tok_s = (data.tok ? (double)step_tokens : (double)ntok * (double)h->accumulate) / (dt > 0 ? dt / 1e3 : 1e-9);
        char eta[32];
        double remaining = t_steps / 1e3 / (double)done_here * (double)(h->steps - s.step);
        if (s.timed && time_limit - s.trained_s < remaining) remaining = time_limit - s.trained_s > 0 ? time_limit - s.trained_s : 0;
        fmt_eta(remaining, eta, sizeof eta);
        /* text: tokens per second; arrays: examples */
        const char *unit = g_model.text || data.tok ? "tok" : "examples";
        printf("step %" PRId64 "/%" PRId64 "  loss %.4f  lr %.2e  %.0f %s/s  ETA %s\n", s.step,
               h->steps, loss, lr, tok_s, unit, eta);
        fflush(stdout);
        char b1[40], b2[40];
        /* with --time-limit: the seconds of training steps so far, over resumes, cut (not rounded) to the
         * millisecond, so that a step before the limit never logs the limit itself (1.9996 s is 1.999, not 2.000) */
        char train_s[48] = "";
        if (s.timed) snprintf(train_s, sizeof train_s, ",\"train_s\":%.3f", floor(s.trained_s * 1e3) / 1e3);
        log_line(jlog, log_path,
                 "{\"step\":%" PRId64 ",\"loss\":%s,\"lr\":%s,\"%s_per_s\":%.1f,"
                 "\"time_s\":%.3f%s}\n",
                 s.step, fmt_exact(loss, b1, sizeof b1), fmt_exact(lr, b2, sizeof b2),
                 g_model.text || data.tok ? "tokens" : "examples", tok_s, (kiln_time_ms() - t_start) / 1e3, train_s);

        int end = s.step == h->steps || out_of_time;
        if (out_of_time && s.step < h->steps)
            printf("train: time limit reached: the training steps took %.1f s (--time-limit %g) at step %" PRId64 "\n",
                   s.trained_s, time_limit, s.step);
        if (rank != 0) { /* rank 0 evaluates and writes */
        } else if (((h->eval_interval > 0 && s.step % h->eval_interval == 0) || end) && data.tok) {
            const double t_eval = kiln_time_ms();
            kiln_s2s_scores sc = evaluate_pairs(ctx, &data);
            s.params = KILN(params)(ctx);
            printf("eval step %" PRId64 ": val loss %.4f  perplexity %.2f  BLEU %.2f  chrF %.2f  (%zu held-out pairs, "
                   "greedy, %.1f s)\n", s.step, sc.loss, exp(sc.loss), sc.bleu, sc.chrf, sc.pairs,
                   (kiln_time_ms() - t_eval) / 1e3);
            char b3[40], b4[40];
            log_line(jlog, log_path,
                     "{\"step\":%" PRId64 ",\"val_loss\":%s,\"val_perplexity\":%s,\"val_bleu\":%s,\"val_chrf\":%s}\n",
                     s.step, fmt_exact(sc.loss, b1, sizeof b1), fmt_exact(exp(sc.loss), b2, sizeof b2),
                     fmt_exact(sc.bleu, b3, sizeof b3), fmt_exact(sc.chrf, b4, sizeof b4));
            fflush(stdout);
        } else if ((h->eval_interval > 0 && s.step % h->eval_interval == 0) || end) {
            double vl = evaluate(ctx, &s, &data, &bt);
            s.params = KILN(params)(ctx);
            char b3[40];
            if (g_model.text) {  /* next-token losses: also perplexity and bits per character */
                printf("eval step %" PRId64 ": val loss %.4f  perplexity %.2f  bits/char %.4f\n",
                       s.step, vl, exp(vl), vl / log(2.0));
                log_line(jlog, log_path,
                         "{\"step\":%" PRId64 ",\"val_loss\":%s,\"val_perplexity\":%s,"
                         "\"val_bits_per_char\":%s",
                         s.step, fmt_exact(vl, b1, sizeof b1), fmt_exact(exp(vl), b2, sizeof b2),
                         fmt_exact(vl / log(2.0), b3, sizeof b3));
                report_expert_load(ctx, &s, &data, &bt, jlog, log_path); /* its printed lines, its log field */
                log_line(jlog, log_path, "}\n");
                s.params = KILN(params)(ctx);
            } else {
                printf("eval step %" PRId64 ": val loss %.4f\n", s.step, vl);
                log_line(jlog, log_path, "{\"step\":%" PRId64 ",\"val_loss\":%s}\n", s.step, fmt_exact(vl, b1, sizeof b1));
            }
            fflush(stdout);
        }
        if (((h->checkpoint_interval > 0 && s.step % h->checkpoint_interval == 0) || end) && rank == 0) {
            check_finite_state(&s, out);
            write_checkpoint(out, &s, &data);
            printf("checkpoint step %" PRId64 ": wrote %s\n", s.step, out);
            fflush(stdout);
        }
        if (end) break;
    }
    const char *weights_out = kiln_opt_get(cmd, o, "--weights-out");
    if (weights_out && rank == 0) {
        s.params = KILN(params)(ctx);
        write_weights(weights_out, &s, &data);
        printf("weights step %" PRId64 ": wrote %s\n", s.step, weights_out);
    }
    if (jlog && fclose(jlog) != 0) kiln_die("error writing the log '%s'", log_path);
    batch_free(&bt);
    if (N > 1) batch_free(&others);
    kiln_dist_sum_free(reduce);
    free(losses);
    free(sum);
    KILN(free)(ctx);
    free(s.m);
    free(s.v);
    free_data(&data);
}

/* ------------------------------------------------------------------------- */
/* bench */

static void cmd_bench(const command *cmd, const opts *o) {
    char def_b[32], def_t[32];
    snprintf(def_b, sizeof def_b, "%d", (int)KILN_TRAIN_BATCH);
    snprintf(def_t, sizeof def_t, "%d", (int)KILN_TRAIN_SEQ);
    int B = (int)kiln_opt_int(cmd, o, "--batch", def_b, 1, MAX_BATCH);
    int T = (int)kiln_opt_int(cmd, o, "--seq", def_t, 1, g_model.context);
    int iters = (int)kiln_opt_int(cmd, o, "--iters", "10", 1, 1000000);
    int warmup = (int)kiln_opt_int(cmd, o, "--warmup", "2", 0, 1000000);
    uint64_t seed = kiln_opt_seed(cmd, o, DEFAULT_SEED);
    hparams h = model_defaults();
    size_t pf = g_model.pf, ntok;
    if (kiln_size_mul((size_t)B, (size_t)T, &ntok)) kiln_die("batch too large");
    kiln_ctx *ctx = new_context();
    if (KILN(init)(ctx, seed) != KILN_OK) kiln_die("%s", KILN(error)(ctx));
    float *params = KILN(params)(ctx), *grads = KILN(grads)(ctx);
    if (!params || !grads) kiln_die("%s", KILN(error)(ctx));
    float *m = kiln_xcalloc_floats(pf, "the optimizer state");
    float *v = kiln_xcalloc_floats(pf, "the optimizer state");
    /* under N ranks: each rank's micro-batch of B, their gradients summed (kiln_dist.h) into the mean */
    const int N = kiln_dist_size();
    float *mean = N > 1 ? kiln_xcalloc_floats(pf, "the gradients") : grads;
    kiln_dist_sum *reduce = N > 1 ? kiln_dist_sum_new(pf, mean) : NULL;
    /* random inputs: every dim after the batch at --seq (T) or its bound */
    int64_t shapes[MAX_INPUTS][KILN_MAX_RANK] = {{0}};
    for (int k = 0; k < g_model.step->num_inputs; k++) {
        const kiln_tensor_desc *d = &g_model.step->inputs[k];
        for (int j = 1; j < d->rank; j++) shapes[k][j] = !d->dims[j] ? d->shape[j] : j == 1 || !d->bounds[j] ? T : d->bounds[j];
    }
    batch bt;
    batch_init(&bt, B, shapes);
    kiln_rng rng;
    kiln_rng_seed(&rng, seed ^ 0x746f6b656e73ULL ^ (uint64_t)kiln_dist_rank());
    if (g_model.text) {
        int32_t *tokens = bt.t[g_model.tokens].data, *targets = bt.t[g_model.targets].data;
        for (size_t i = 0; i < ntok; i++) {
            tokens[i] = (int32_t)kiln_rng_below(&rng, (uint64_t)g_model.vocab);
            targets[i] = (int32_t)kiln_rng_below(&rng, (uint64_t)(g_model.classes < g_model.vocab ? g_model.classes
                                                                                                  : g_model.vocab));
        }
    } else {
        for (int k = 0; k < g_model.step->num_inputs; k++) {
            const kiln_tensor_desc *d = &g_model.step->inputs[k];
            const size_t n = (size_t)B * row_elements(&bt.t[k]);
            for (size_t i = 0; d->role != KILN_ROLE_SEED && i < n; i++) {
                const int64_t id = d->role == KILN_ROLE_MASK ? 1 : d->limit > 0 ? (int64_t)kiln_rng_below(&rng, (uint64_t)d->limit) : 0;
                switch (d->dtype) {
                case KILN_I32: ((int32_t *)bt.t[k].data)[i] = (int32_t)id; break;
                case KILN_I64: ((int64_t *)bt.t[k].data)[i] = id; break;
                case KILN_F32: ((float *)bt.t[k].data)[i] = (float)kiln_rng_normal(&rng); break;
                case KILN_F64: ((double *)bt.t[k].data)[i] = kiln_rng_normal(&rng); break;
                }
            }
        }
    }
    double *times = kiln_xcalloc((size_t)iters, sizeof *times, "timings");
    double *exchange = kiln_xcalloc((size_t)iters, sizeof *exchange, "timings");
    for (int i = 0; i < warmup + iters; i++) {
        double t0 = kiln_time_ms();
        float loss = run_batch(ctx, g_model.step, &bt, step_seed(seed, i, kiln_dist_rank()));
        if (reduce) {
            double t1 = kiln_time_ms();
            kiln_dist_sum_round(reduce, grads, 1);
            kiln_dist_sum_finish(reduce, (float)N);
            if (i >= warmup) exchange[i - warmup] = kiln_time_ms() - t1;
        }
        double norm = grad_norm(mean, pf);
        if (!isfinite(loss) || !isfinite(norm))
            kiln_die("non-finite loss in bench iteration %d (%s)", i + 1,
                     nonfinite_name(isfinite(loss) ? norm : loss));
        const float coef = clip_coef(h.clip, norm);
        double lr = lr_at(&h, i);
        if (h.optimizer == OPT_ADAMW) adamw_update(&h, lr, i + 1, params, mean, coef, m, v);
        else sgd_update(&h, lr, i + 1, params, mean, coef, m);
        if (i >= warmup) times[i - warmup] = kiln_time_ms() - t0;
    }
    double mn = times[0];
    for (int i = 1; i < iters; i++)
        if (times[i] < mn) mn = times[i];
    double median = kiln_median(times, (size_t)iters);
    if (N > 1)
        printf("train step B=%d T=%d ranks=%d (B per rank) threads=%d: median %.3f ms  min %.3f ms  (%d iters); "
               "gradient exchange median %.3f ms (%zu bytes of gradients)\n", B, T,
               N, kiln_num_threads(), median, mn, iters, kiln_median(exchange, (size_t)iters), pf * sizeof(float));
    else
        printf("train step B=%d T=%d threads=%d: median %.3f ms  min %.3f ms  (%d iters)\n", B, T,
               kiln_num_threads(), median, mn, iters);
    free(times);
    free(exchange);
    kiln_dist_sum_free(reduce);
    if (mean != grads) free(mean);
    batch_free(&bt);
    free(v);
    free(m);
    KILN(free)(ctx);
}

/* ------------------------------------------------------------------------- */

/* The plain program started by mpirun would train N copies side by side: say which program to run. */
static void refuse_mpirun(void) {
    if (kiln_dist_library()) return;
    const char *size = getenv("OMPI_COMM_WORLD_SIZE"), *rank = getenv("OMPI_COMM_WORLD_RANK");
    if (!size) size = getenv("PMI_SIZE"), rank = getenv("PMI_RANK");
    if (!size || atoi(size) <= 1) return;
    if (rank && atoi(rank) != 0) exit(2);
    usage_die("this program trains in one process; under mpirun run train-mpi (built beside it by 'make mpi' "
              "where an MPI compiler wrapper, mpicc, is installed)");
}

int main(int argc, char **argv) {
    kiln_set_progname(argc > 0 ? argv[0] : "train");
    kiln_dist_init(&argc, &argv);
    refuse_mpirun();
    find_model();
    for (size_t i = 0; i < NUM_HPARAMS; i++)
        if (strcmp(HPARAMS[i].key, "seq") == 0) HPARAMS[i].hi = (double)g_model.context;
    check_defaults();
    build_train_command();
    const command *cmd = &g_train;
    int first = 1;
    if (argc > 1 && strcmp(argv[1], "bench") == 0) {
        cmd = &BENCH;
        first = 2;
    }
    if (argc <= 1) {
        char hint[64];
        snprintf(hint, sizeof hint, "%s --help", kiln_progname());
        usage_die("'%s' needs --data and --out (see '%s')", kiln_progname(), hint);
    }
    opts o;
    kiln_cli_parse(cmd, argc - first, argv + first, &o);
    kiln_cli_apply_threads();
    cmd->run(cmd, &o);
    if (fflush(stdout) != 0 || ferror(stdout)) kiln_die("cannot write to stdout");
    kiln_dist_finalize();
    return 0;
}
