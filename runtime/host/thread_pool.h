/* thread_pool.h — the host's small persistent thread pool (pthreads):
 * jobs of chunks, per-part and range helpers, the per-kernel profile
 * (thread_pool.c). The runtime kernels split on it, which the JIT calls,
 * are parallel_kernels.h.
 *
 * The freestanding kernels never create threads; they offer *_part
 * companions (kernels.h) that compute one of nparts disjoint slices of the
 * output. This file runs those parts on a pool of nthreads-1 workers plus the
 * calling thread, a job being cut into a few chunks per thread that the
 * threads claim in turn. Writes are disjoint, so there are no atomics on the
 * data and no per-thread copies of the model; each thread but the caller
 * gets its own workspace from the pool (the caller uses its own).
 *
 * Jobs are short (a training step of the MLP is ~1 ms and ~15 jobs), so a
 * job is posted by bumping a generation counter that idle workers spin on
 * for a while (about a millisecond) before they sleep on a condition
 * variable; the caller runs part 0 and then spins until the others are done.
 *
 * The generated C's inference path never needs this: only the host side
 * (kdslc train / evaluate / predict through the JIT) calls it. With one
 * thread (the default until kdh_pool_set_threads) every wrapper is a plain
 * call of the single-threaded kernel, bit for bit. The splits keep every
 * output element's arithmetic as the single-threaded kernel does it (GEMM at
 * micro-tile boundaries with the K loop unchanged, element ranges, images),
 * so results do not depend on the thread count either.
 *
 * One thread drives the pool (the training loop). A job posted while another
 * is running (from a worker, or a second thread) runs all its parts on the
 * calling thread instead: slower, never wrong. */
#ifndef KDSL_THREAD_POOL_H
#define KDSL_THREAD_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KDH_MAX_THREADS 64

/* Sets the number of threads (1..KDH_MAX_THREADS; 0 or less: all online
 * cores), starting or stopping workers. Returns the number in use. */
int kdh_pool_set_threads(int n);
/* Tests: every GEMM, convolution and pooling kernel splits across the
 * threads however small (on), or only above the sizes where a split pays
 * (off, the default). */
void kdh_pool_split_everything(bool on);
int kdh_pool_threads(void);
/* Jobs the pool has split across its threads so far (for tests). */
unsigned long kdh_pool_jobs(void);
/* For tests: while held (hold != 0), the workers take no part in new jobs,
 * as when the host holds their vCPUs; the caller then runs every chunk
 * itself. */
void kdh_pool_hold_workers(int hold);

/* The per-kernel profile (bench/step_time.c, STEP_TIME_PROFILE=1): while on,
 * each call of a wrapper below (the GEMM, the convolutions, pooling) and of
 * kdh_parallel_range adds its wall time to an entry keyed by its kind, its
 * shape and the thread count, so that a step's time can be laid out kernel
 * by kernel at each thread count. The JIT's element-wise loops are told
 * apart only by their length. Calls from a second thread while one is
 * being recorded are not counted. Off by default: one branch per call. */
typedef struct kdh_prof_entry {
    const char *kind; /* "gemm" (a, b, c = M, N, K), "range" (a = n), "conv", "conv_dx", "conv_dw"
                       * (a, b, c = batch, input channels, filters), "maxpool", "maxpool_dx",
                       * "avgpool", "avgpool_dx" (a, b = batch, input elements per image) */
    long a, b, c;
    int threads;
    long calls;
    double us; /* summed over the calls */
} kdh_prof_entry;
void kdh_pool_profile(int on);
/* Copies up to max entries, in the order of their first calls, into out,
 * clears the profile, and returns the number copied (entries beyond
 * KDH_PROF_MAX distinct keys are dropped). */
#define KDH_PROF_MAX 128
int kdh_pool_profile_take(kdh_prof_entry *out, int max);

/* Runs fn(ctx, part, nparts) for part 0..nparts-1 (nparts = the pool's
 * threads) on the pool, the caller included, and returns when all are done. */
typedef void (*kdh_par_fn)(void *ctx, int part, int nparts);
void kdh_parallel_for(kdh_par_fn fn, void *ctx);

/* Runs fn(ctx, chunk, nchunks, thread) for chunk 0..nchunks-1; the threads
 * (thread 0 the caller, 1.. the workers) claim chunks in turn until none is
 * left, so a slow thread does fewer. `thread` indexes per-thread scratch. */
typedef void (*kdh_chunk_fn)(void *ctx, int chunk, int nchunks, int thread);
void kdh_parallel_chunks(kdh_chunk_fn fn, void *ctx, int nchunks);

/* Runs fn(ctx, lo, hi) over disjoint blocks covering [0, n), one per thread,
 * whose bounds are multiples of grain (>= 1); with n < min_n (or one thread)
 * a single call fn(ctx, 0, n) on the calling thread. The JIT's element-wise
 * loops (outlined bodies) run through this. */
typedef void (*kdh_range_fn)(void *ctx, long lo, long hi);
void kdh_parallel_range(kdh_range_fn fn, void *ctx, long n, long grain, long min_n);

#endif
