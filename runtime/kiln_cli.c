/*
 * kiln_cli.c - the command-line framework of the programs of a Kiln build directory (see kiln_cli.h).
 */
#define _POSIX_C_SOURCE 200809L

#include "kiln_cli.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ========================================================================= */
/* Command line */

static const char *g_threads = NULL; /* value of --threads, if given */

void kiln_cli_command_help(const kiln_command *c, FILE *f) {
    fprintf(f, "usage: %s %s%s%s\n\n%s.\n", kiln_progname(), c->name, *c->name ? " " : "",
            c->usage, c->summary);
    if (c->details) fprintf(f, "%s\n", c->details);
    fprintf(f, "\nflags:\n");
    for (int i = 0; i < KILN_MAX_FLAGS && c->flags[i].name; i++) {
        char left[64];
        snprintf(left, sizeof left, "%s %s", c->flags[i].name, c->flags[i].metavar ? c->flags[i].metavar : "");
        fprintf(f, "  %-28s %s%s\n", left, c->flags[i].help, c->flags[i].repeatable ? " (repeatable)" : "");
    }
    fprintf(f, "  %-28s %s\n", "--threads N", "OpenMP threads (default: OpenMP's default)");
    fprintf(f, "  %-28s %s\n", "--help, -h", "show this help");
}

/* Index of flag `name` in command c, or -1. */
static int find_flag(const kiln_command *c, const char *name, size_t name_len) {
    for (int i = 0; i < KILN_MAX_FLAGS && c->flags[i].name; i++)
        if (strlen(c->flags[i].name) == name_len && strncmp(c->flags[i].name, name, name_len) == 0)
            return i;
    return -1;
}

/* "'PROG NAME --help'" or "'PROG --help'" for messages. */
static const char *help_hint(const kiln_command *c, char *buf, size_t cap) {
    snprintf(buf, cap, "%s%s%s --help", kiln_progname(), *c->name ? " " : "", c->name);
    return buf;
}

void kiln_cli_parse(const kiln_command *c, int argc, char **argv, kiln_opts *o) {
    memset(o, 0, sizeof *o);
    int only_positional = 0;
    char hint[256];
    const char *who = *c->name ? c->name : kiln_progname();
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!only_positional && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            kiln_cli_command_help(c, stdout);
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
                    kiln_usage_die("unknown flag '%.*s' for '%s' (see '%s')", (int)name_len, a,
                                   who, help_hint(c, hint, sizeof hint));
                slot = &o->values[idx];
            }
            const char *value;
            if (idx >= 0 && !c->flags[idx].metavar) { /* a switch: no value */
                if (eq) kiln_usage_die("flag '%.*s' takes no value", (int)name_len, a);
                value = "1";
            } else if (eq) value = eq + 1;
            else if (i + 1 < argc) value = argv[++i];
            else kiln_usage_die("flag '%.*s' needs a value", (int)name_len, a);
            if (idx >= 0 && c->flags[idx].repeatable) {
                if (o->counts[idx] == KILN_MAX_FLAG_VALUES)
                    kiln_usage_die("flag '%.*s' is given more than %d times", (int)name_len, a, KILN_MAX_FLAG_VALUES);
                o->lists[idx][o->counts[idx]++] = value;
            } else if (*slot && idx >= 0) {
                kiln_usage_die("flag '%.*s' is given more than once", (int)name_len, a);
            }
            *slot = value;
            continue;
        }
        if (!c->positional || o->positional)
            kiln_usage_die("unexpected argument '%s' for '%s' (see '%s')", a, who,
                           help_hint(c, hint, sizeof hint));
        o->positional = a;
    }
}

void kiln_cli_set_threads(const char *value) { g_threads = value; }

void kiln_cli_apply_threads(void) {
    if (!g_threads) return;
    int64_t n = 0;
    kiln_error err;
    if (kiln_flag_i64("--threads", g_threads, 1, KILN_MAX_THREADS, &n, &err))
        kiln_usage_die("%s", err.msg);
#ifdef _OPENMP
    omp_set_num_threads((int)n);
#endif
}

int kiln_num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

const char *kiln_opt_get(const kiln_command *c, const kiln_opts *o, const char *name) {
    int idx = find_flag(c, name, strlen(name));
    if (idx < 0) kiln_die("internal error: '%s' has no flag '%s'", c->name, name);
    return o->values[idx];
}

int kiln_opt_list(const kiln_command *c, const kiln_opts *o, const char *name, const char *const **values) {
    int idx = find_flag(c, name, strlen(name));
    if (idx < 0) kiln_die("internal error: '%s' has no flag '%s'", c->name, name);
    *values = o->lists[idx];
    return o->counts[idx];
}

const char *kiln_opt_required(const kiln_command *c, const kiln_opts *o, const char *name) {
    const char *v = kiln_opt_get(c, o, name);
    char hint[256];
    if (!v)
        kiln_usage_die("'%s' needs %s (see '%s')", *c->name ? c->name : kiln_progname(), name,
                       help_hint(c, hint, sizeof hint));
    return v;
}

int64_t kiln_opt_int(const kiln_command *c, const kiln_opts *o, const char *name, const char *def,
                     int64_t lo, int64_t hi) {
    const char *v = def ? kiln_opt_get(c, o, name) : kiln_opt_required(c, o, name);
    int64_t x = 0;
    kiln_error err;
    if (kiln_flag_i64(name, v ? v : def, lo, hi, &x, &err)) kiln_usage_die("%s", err.msg);
    return x;
}

double kiln_opt_double(const kiln_command *c, const kiln_opts *o, const char *name,
                       const char *def, double lo, double hi) {
    const char *v = kiln_opt_get(c, o, name);
    double x = 0;
    kiln_error err;
    if (kiln_flag_f64(name, v ? v : def, lo, hi, &x, &err)) kiln_usage_die("%s", err.msg);
    return x;
}

uint64_t kiln_opt_seed(const kiln_command *c, const kiln_opts *o, const char *def) {
    const char *v = kiln_opt_get(c, o, "--seed");
    uint64_t x = 0;
    kiln_error err;
    if (kiln_flag_u64("--seed", v ? v : def, &x, &err)) kiln_usage_die("%s", err.msg);
    return x;
}

/* qsort comparator for doubles. */
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double kiln_median(double *x, size_t n) {
    if (n == 0) return 0.0;
    qsort(x, n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}
