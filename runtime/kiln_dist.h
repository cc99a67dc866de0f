/*
 * kiln_dist.h - what the training program knows of its peers: data-parallel training over MPI.
 *
 * kiln_dist.c is compiled twice. Plain (the `train` program) it is one process of one: rank 0 of 1, every
 * collective a local copy, and no MPI anywhere. With KILN_MPI, by an MPI compiler wrapper (`train-mpi`, from
 * `make mpi`), it runs over MPI_COMM_WORLD.
 *
 * The gradient sum is ordered so that N ranks give the bits of one process. One process sums the M
 * micro-batch gradients of a step as ((g0 + g1) + g2) + ...; under N ranks, micro-batch m runs on rank m mod N,
 * so micro-batches jN .. jN+N-1 form round j. After each round, the owner of each chunk of the gradient
 * (chunk c belongs to rank c) receives that chunk from every rank (an all-to-all) and adds them to its running
 * sum in rank order, which is the micro-batch order: the same additions in the same order as one process.
 * After the last round each owner divides its chunk by M and an all-gather gives every rank the whole mean
 * gradient, from which every rank takes the same optimizer step.
 */
#ifndef KILN_DIST_H
#define KILN_DIST_H

#include <stddef.h>
#include <stdint.h>

/* Starts MPI (when built with it), sends the stdout of ranks other than 0 to /dev/null, and makes their fatal
 * errors wait for rank 0's: an error every rank meets (a bad flag, a checkpoint of another model) is printed
 * once, by rank 0, and one that only one rank meets is still printed, with its rank. */
void kiln_dist_init(int *argc, char ***argv);
/* Ends MPI cleanly (at the end of a successful run). */
void kiln_dist_finalize(void);
int kiln_dist_rank(void);
int kiln_dist_size(void);
/* The MPI library's name and version ("Open MPI v4.1.4, ..."), or NULL in the plain build. */
const char *kiln_dist_library(void);
/* CPUs this process may run on (its affinity mask, which mpirun narrows when it binds ranks to cores). */
int kiln_dist_cpus(void);

/* Every rank passes a value; each gets all of them, in rank order (all[size]). */
void kiln_dist_allgather_u64(uint64_t value, uint64_t *all);
void kiln_dist_allgather_f32(float value, float *all);

/* The ordered sum of n floats over micro-batches and ranks (see the top of this file), into `out` (n floats):
 * each rank accumulates its own chunk of out in place, so the only extra memory is one receive buffer of n
 * floats (none for one process). */
typedef struct kiln_dist_sum kiln_dist_sum;
kiln_dist_sum *kiln_dist_sum_new(size_t n, float *out);
/* One round: `g` is this rank's micro-batch gradient (n floats). The first round sets the owned chunk, the
 * later ones add to it. */
void kiln_dist_sum_round(kiln_dist_sum *s, const float *g, int first);
/* Divides the owned chunk by `div` and gathers every chunk, so out holds the whole result on every rank. */
void kiln_dist_sum_finish(kiln_dist_sum *s, float div);
void kiln_dist_sum_free(kiln_dist_sum *s);

#endif
