/* parallel.h — the host's small persistent thread pool (pthreads) and the
 * thread-split wrappers of the runtime kernels that the JIT calls.
 *
 * The freestanding kernels never create threads; they offer *_part
 * companions (kernels.h) that compute one of nparts disjoint slices of the
 * output. This file runs those parts on a pool of nthreads-1 workers plus the
 * calling thread. Writes are disjoint, so there are no atomics and no
 * per-thread copies of the model; each part but the first gets its own GEMM
 * workspace from the pool (part 0 uses the caller's).
 *
 * The generated C's inference path never needs this: only the host side
 * (kdslc train / evaluate / predict through the JIT) calls it. With one
 * thread (the default until kdh_pool_set_threads) every wrapper is a plain
 * call of the single-threaded kernel, bit for bit. The split of GEMM is at
 * micro-kernel tile boundaries with the K loop unchanged, so results do not
 * depend on the thread count either.
 *
 * Not reentrant: one thread drives the pool (the training loop). */
#ifndef KDSL_PARALLEL_H
#define KDSL_PARALLEL_H

#include <stddef.h>

#define KDH_MAX_THREADS 64

/* Sets the number of threads (1..KDH_MAX_THREADS; 0 or less: all online
 * cores), starting or stopping workers. Returns the number in use. */
int kdh_pool_set_threads(int n);
int kdh_pool_threads(void);

/* Runs fn(ctx, part, nparts) for part 0..nparts-1, part 0 on the calling
 * thread, and returns when all are done. nparts = the pool's threads. */
typedef void (*kdh_par_fn)(void *ctx, int part, int nparts);
void kdh_parallel_for(kdh_par_fn fn, void *ctx);

/* kdk_sgemm with its M or N split across the pool (same signature). */
void kdh_sgemm_mt(int M, int N, int K, const float *A, int lda, int transA, const float *B, int ldb, int transB,
                  float beta, float *C, int ldc, const float *bias, int act, float *work);

#endif
