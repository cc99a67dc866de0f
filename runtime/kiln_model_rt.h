/*
 * kiln_model_rt.h - support shared by the programs of a Kiln-compiled model
 * (infer_main.c, train_main.c): the command-line framework and the model's
 * parameter block (table check, GPT-2-style init, loading weights files).
 *
 * Unlike kiln_rt.c, kiln_model_rt.c includes the generated model.h, so it is
 * compiled once per model together with model.c.
 */
#ifndef KILN_MODEL_RT_H
#define KILN_MODEL_RT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kiln_rt.h"

/* ------------------------------------------------------------------------- */
/* Command line */

#define KILN_EXIT_USAGE 2
#define KILN_MAX_THREADS 4096
#define KILN_MAX_FLAGS 32

/* Dies with a usage error (exit status 2). */
#define kiln_usage_die(...) kiln_die_code(KILN_EXIT_USAGE, __VA_ARGS__)

/* One flag of a command: "--name", the value's placeholder, the help text. */
typedef struct {
    const char *name;
    const char *metavar;
    const char *help;
} kiln_flag_def;

/* Flag values of one invocation, indexed like the command's flag table. */
typedef struct {
    const char *values[KILN_MAX_FLAGS];
    const char *positional; /* at most one positional argument */
} kiln_opts;

typedef struct kiln_command kiln_command;
struct kiln_command {
    const char *name;
    const char *usage;   /* arguments after the command name */
    const char *summary; /* one line */
    const char *details; /* extra help text, may be NULL */
    kiln_flag_def flags[KILN_MAX_FLAGS];
    const char *positional; /* name of the positional argument, or NULL */
    void (*run)(const kiln_command *cmd, const kiln_opts *o);
};

/* Prints the help of one command ("usage: PROG NAME USAGE", flags, --threads). */
void kiln_cli_command_help(const kiln_command *c, FILE *f);
/* Parses the arguments after the command name into o: strict flags
 * ("--flag V" or "--flag=V", each at most once), --help, "--" and --threads
 * (accepted anywhere). Exits 0 after --help, 2 on a usage error. */
void kiln_cli_parse(const kiln_command *c, int argc, char **argv, kiln_opts *o);
/* Records the value of a global --threads flag (validated by kiln_cli_apply_threads). */
void kiln_cli_set_threads(const char *value);
/* Applies --threads (if given) to OpenMP; usage error if malformed. */
void kiln_cli_apply_threads(void);
/* Number of threads OpenMP regions will use (1 without OpenMP). */
int kiln_num_threads(void);

/* Value of flag `name` (NULL if not given); dies if c has no such flag. */
const char *kiln_opt_get(const kiln_command *c, const kiln_opts *o, const char *name);
/* Value of a required flag; usage error if missing. */
const char *kiln_opt_required(const kiln_command *c, const kiln_opts *o, const char *name);
/* Integer flag in [lo, hi] with a default string (def NULL: required). */
int64_t kiln_opt_int(const kiln_command *c, const kiln_opts *o, const char *name, const char *def,
                     int64_t lo, int64_t hi);
/* Floating-point flag in [lo, hi] with a default string. */
double kiln_opt_double(const kiln_command *c, const kiln_opts *o, const char *name,
                       const char *def, double lo, double hi);
/* The --seed flag (any 64-bit unsigned value) with a default string. */
uint64_t kiln_opt_seed(const kiln_command *c, const kiln_opts *o, const char *def);

/* Median of x[0, n) (sorts x in place); 0 if n == 0. */
double kiln_median(double *x, size_t n);

/* ------------------------------------------------------------------------- */
/* The model's parameter block */

/* Checks the generated parameter table once (a failure is a compiler bug). */
void kiln_check_param_table(void);
/* The zeroed, 64-byte aligned parameter block (KILN_PARAM_FLOATS floats). */
float *kiln_alloc_params(void);
/* Fills params with the table's initializers (GPT-2 style: N(0, std^2),
 * zeros, ones), deterministically for seed, in table order. */
void kiln_init_params(float *params, uint64_t seed);
/* Fills spec with the name, shape and offset of parameter i; name and offset
 * replace the table's when not NULL / not SIZE_MAX. */
void kiln_param_spec(int i, const char *name, size_t offset, kiln_tensor_spec *spec);
/* Fills entry for writing parameter i as F32 from data under name. */
void kiln_param_entry(int i, const char *name, const float *data, kiln_st_entry *entry);
/* Loads and validates model weights from an open safetensors file: every
 * parameter present as F32 with its exact shape and nothing else, except
 * that a training checkpoint (metadata "kiln_checkpoint") may also hold
 * tensors named "train.*" (optimizer state), which are ignored. */
int kiln_load_params_st(const kiln_safetensors *st, float *params, kiln_error *err);
/* Opens path and loads it with kiln_load_params_st; dies on any error. */
void kiln_load_params(const char *path, float *params);
/* Floats of logits for [B, T]; dies on overflow. */
size_t kiln_logits_floats(size_t B, size_t T);

#endif /* KILN_MODEL_RT_H */
