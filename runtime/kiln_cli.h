/*
 * kiln_cli.h - the command-line framework shared by the programs of a Kiln build directory (infer_main.c,
 * train_main.c, gradcheck_main.c): commands with strict flags, --help and --threads, one-line usage errors.
 */
#ifndef KILN_CLI_H
#define KILN_CLI_H

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
    int repeatable;         /* may be given several times (read with kiln_opt_list) */
} kiln_flag_def;

#define KILN_MAX_FLAG_VALUES 64

/* Flag values of one invocation, indexed like the command's flag table. */
typedef struct {
    const char *values[KILN_MAX_FLAGS];
    const char *lists[KILN_MAX_FLAGS][KILN_MAX_FLAG_VALUES]; /* every value of a repeatable flag */
    int counts[KILN_MAX_FLAGS];
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
/* The values of a repeatable flag, in the order given: their count, *values pointing at them. */
int kiln_opt_list(const kiln_command *c, const kiln_opts *o, const char *name, const char *const **values);
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

#endif /* KILN_CLI_H */
