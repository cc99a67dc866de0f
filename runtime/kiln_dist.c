/*
 * kiln_dist.c - data-parallel training over MPI, or one process of one (see kiln_dist.h).
 */
#define _GNU_SOURCE

#include "kiln_dist.h"

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_rt.h"

#ifdef KILN_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1;

int kiln_dist_rank(void) { return g_rank; }
int kiln_dist_size(void) { return g_size; }

int kiln_dist_cpus(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    return CPU_COUNT(&set);
}

/* Ranks other than 0 wait before they print a fatal error: when rank 0 meets the same error it exits first
 * and mpirun ends the job, so the error is printed once; an error of this rank alone is printed after the
 * wait, with the rank's number. */
static void quiet_die(const char *msg, int code) {
    sleep(3);
    fprintf(stderr, "%s (rank %d): error: %s\n", kiln_progname(), g_rank, msg);
    fflush(stderr);
    _exit(code);
}

struct kiln_dist_sum {
    size_t n;
    float *out;
    float *recv;            /* size chunks of this rank's length, one from each rank */
    int *counts, *displs;   /* chunk c: displs[c], counts[c] floats */
    int *rcounts, *rdispls; /* what this rank receives: counts[rank] from each */
};

static void chunk_of(size_t n, int size, int c, size_t *off, size_t *len) {
    size_t lo = n / (size_t)size * (size_t)c + (size_t)((size_t)c < n % (size_t)size ? c : (int)(n % (size_t)size));
    size_t l = n / (size_t)size + ((size_t)c < n % (size_t)size);
    *off = lo;
    *len = l;
}

kiln_dist_sum *kiln_dist_sum_new(size_t n, float *out) {
    kiln_dist_sum *s = kiln_xcalloc(1, sizeof *s, "the gradient sum");
    s->n = n;
    s->out = out;
    if (g_size == 1) return s;
    s->counts = kiln_xcalloc((size_t)g_size, sizeof(int), "the gradient sum");
    s->displs = kiln_xcalloc((size_t)g_size, sizeof(int), "the gradient sum");
    s->rcounts = kiln_xcalloc((size_t)g_size, sizeof(int), "the gradient sum");
    s->rdispls = kiln_xcalloc((size_t)g_size, sizeof(int), "the gradient sum");
    if (n > (size_t)INT_MAX) kiln_die("%zu gradients are more than one MPI message can address (%d)", n, INT_MAX);
    size_t mine = 0;
    for (int c = 0; c < g_size; c++) {
        size_t off, len;
        chunk_of(n, g_size, c, &off, &len);
        s->counts[c] = (int)len;
        s->displs[c] = (int)off;
        if (c == g_rank) mine = len;
    }
    for (int r = 0; r < g_size; r++) {
        s->rcounts[r] = (int)mine;
        s->rdispls[r] = (int)(mine * (size_t)r);
    }
    s->recv = kiln_xcalloc_floats(mine * (size_t)g_size + 1, "the gradient receive buffer");
    return s;
}

void kiln_dist_sum_free(kiln_dist_sum *s) {
    if (!s) return;
    free(s->recv);
    free(s->counts);
    free(s->displs);
    free(s->rcounts);
    free(s->rdispls);
    free(s);
}

void kiln_dist_sum_round(kiln_dist_sum *s, const float *restrict g, int first) {
    float *restrict out = s->out;
    if (g_size == 1) {
        if (first) {
            if (g != out) memcpy(out, g, s->n * sizeof *out);
            return;
        }
#pragma omp parallel for schedule(static)
        for (long j = 0; j < (long)s->n; j++) out[j] = out[j] + g[j];
        return;
    }
#ifdef KILN_MPI
    int rc = MPI_Alltoallv(g, s->counts, s->displs, MPI_FLOAT, s->recv, s->rcounts, s->rdispls, MPI_FLOAT, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) kiln_die("MPI_Alltoallv of the gradients failed (error %d)", rc);
    const long len = s->counts[g_rank];
    float *restrict acc = out + s->displs[g_rank];
    const float *restrict recv = s->recv;
    /* each element: the ranks' values added in rank order, which is the micro-batch order */
#pragma omp parallel for schedule(static)
    for (long j = 0; j < len; j++) {
        float v = first ? recv[j] : acc[j] + recv[j];
        for (int r = 1; r < g_size; r++) v = v + recv[(size_t)r * (size_t)len + (size_t)j];
        acc[j] = v;
    }
#endif
}

void kiln_dist_sum_finish(kiln_dist_sum *s, float div) {
    size_t off = 0, len = s->n;
    if (g_size > 1) chunk_of(s->n, g_size, g_rank, &off, &len);
    float *restrict acc = s->out + off;
    if (div != 1.0f) {
#pragma omp parallel for schedule(static)
        for (long j = 0; j < (long)len; j++) acc[j] /= div;
    }
#ifdef KILN_MPI
    if (g_size > 1) {
        int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, s->out, s->counts, s->displs, MPI_FLOAT, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) kiln_die("MPI_Allgatherv of the gradients failed (error %d)", rc);
    }
#endif
}

#ifdef KILN_MPI

static char g_library[MPI_MAX_LIBRARY_VERSION_STRING + 1];

void kiln_dist_init(int *argc, char ***argv) {
    int provided = 0;
    /* only the main thread calls MPI (OpenMP threads never do) */
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) kiln_die("MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int len = 0;
    MPI_Get_library_version(g_library, &len);
    g_library[len < (int)sizeof g_library ? len : (int)sizeof g_library - 1] = '\0';
    char *nl = strchr(g_library, '\n'); /* the first line; Open MPI adds its package and repository */
    if (nl) *nl = '\0';
    char *comma = strchr(g_library, ',');
    if (comma) *comma = '\0';
    if (g_rank != 0) {
        if (!freopen("/dev/null", "w", stdout)) kiln_die("cannot redirect the stdout of rank %d", g_rank);
        kiln_set_die_hook(quiet_die);
    }
}

void kiln_dist_finalize(void) { MPI_Finalize(); }

const char *kiln_dist_library(void) { return g_library; }

void kiln_dist_allgather_u64(uint64_t value, uint64_t *all) {
    if (MPI_Allgather(&value, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD) != MPI_SUCCESS)
        kiln_die("MPI_Allgather failed");
}

void kiln_dist_allgather_f32(float value, float *all) {
    if (MPI_Allgather(&value, 1, MPI_FLOAT, all, 1, MPI_FLOAT, MPI_COMM_WORLD) != MPI_SUCCESS)
        kiln_die("MPI_Allgather failed");
}

#else

void kiln_dist_init(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    (void)quiet_die;
}

void kiln_dist_finalize(void) {}

const char *kiln_dist_library(void) { return NULL; }

void kiln_dist_allgather_u64(uint64_t value, uint64_t *all) { all[0] = value; }

void kiln_dist_allgather_f32(float value, float *all) { all[0] = value; }

#endif
