/* dist.h — data-parallel training over MPI: the ranks of `mpirun -np N
 * kdslc train`, and the few collectives the training loop needs
 * (docs/distributed.md).
 *
 * Built with MPI (meson's `mpi` option, KDSL_MPI), a process that mpirun
 * (Open MPI, MPICH's Hydra or a PMIx launcher such as srun) started joins
 * MPI_COMM_WORLD in kdh_dist_init; any other process, and every process of
 * a build without MPI, is rank 0 of 1 and every collective is a copy.
 *
 * A rank that dies must not leave the others hanging in a collective (a
 * blocking one, or the wait for the non-blocking sums of the overlapped
 * step), so a watchdog thread, which never calls
 * MPI, watches each collective under way: every 50 ms it checks the PIDs of
 * the ranks on this node, and a stop request (mpirun's SIGTERM when a rank
 * of another node ended) that the collective does not answer within 2 s
 * ends the wait too. Either way it prints a message naming the rank that
 * ended (or saying that the job is being torn down) and ends the process
 * with status 1. */
#ifndef KDSL_DIST_H
#define KDSL_DIST_H

#include "tensor_file.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Whether this process was started by an MPI launcher (its environment
 * says so); false in a build without MPI. */
bool kdh_dist_launched(void);

/* Joins the job when kdh_dist_launched() (MPI_Init_thread: only the main
 * thread calls MPI); else nothing. stop: the flag the wait loop watches
 * (train.h's kdh_fit_opts.stop), may be NULL. 0, or -1 with err. */
int kdh_dist_init(const volatile sig_atomic_t *stop, kdh_error *err);

/* Leaves the job: MPI_Finalize after a run that ended well on every rank
 * (exit_code 0), MPI_Abort otherwise, so that no rank waits for one that
 * stopped. Nothing when not launched. */
void kdh_dist_finish(int exit_code);

int kdh_dist_rank(void);   /* 0 when not distributed */
int kdh_dist_size(void);   /* 1 when not distributed */
/* Ranks of the job on this node (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE,
 * MPICH's MPI_LOCALNRANKS), 1 when not known: the default thread count of
 * each rank divides the cores between them. */
int kdh_dist_local_size(void);

/* What the collectives below are doing, for their error messages:
 * "epoch 2, step 17/235". */
void kdh_dist_set_where(const char *where);

/* The collectives this rank made so far and the seconds it spent in them
 * (the transfer, and the wait for ranks that arrive later); a sum started
 * by kdh_dist_start_sum counts as one, and its seconds are those of
 * kdh_dist_wait's wait. */
void kdh_dist_stats(unsigned long *ncalls, double *seconds);

/* bytes of buf from rank 0 to every rank. */
int kdh_dist_bcast(void *buf, size_t bytes, kdh_error *err);

/* buf[0..n) summed over the ranks, in place, in buckets of at most
 * bucket_bytes, one MPI_Allreduce each. The order of the sum is MPI's. */
int kdh_dist_allreduce_floats(float *buf, int64_t n, size_t bucket_bytes, kdh_error *err);

/* Overlap (docs/distributed.md): buf[0..n) summed over the ranks, in place,
 * started as one MPI_Iallreduce (n fits an int); buf must be left alone
 * until kdh_dist_wait. Every rank starts the same sums in the same order.
 * An error is kept for kdh_dist_wait. */
void kdh_dist_start_sum(float *buf, int64_t n);

/* Lets the started sums advance (MPI_Testall): Open MPI moves a
 * non-blocking collective on only inside MPI calls. */
void kdh_dist_progress(void);

/* Waits for every started sum (watched as a collective is). 0, or -1 with err. */
int kdh_dist_wait(kdh_error *err);

/* buf[0..n) summed over the ranks, in place (a few values: losses, counts). */
int kdh_dist_allreduce_doubles(double *buf, int n, kdh_error *err);

/* Every rank's n floats, rank after rank, into all[0..size*n). */
int kdh_dist_allgather_floats(const float *mine, int64_t n, float *all, kdh_error *err);

/* Rank r's counts[r] floats, rank after rank, into all (the sum of counts). */
int kdh_dist_allgatherv_floats(const float *mine, const int64_t *counts, float *all, kdh_error *err);

#endif
