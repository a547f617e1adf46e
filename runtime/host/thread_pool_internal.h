/* thread_pool_internal.h — what parallel_kernels.c needs of the pool
 * (thread_pool.c) beyond its public API; not for other callers (prefix kdh__). */
#ifndef KDSL_THREAD_POOL_INTERNAL_H
#define KDSL_THREAD_POOL_INTERNAL_H

#include "thread_pool.h"

/* Chunks per thread of a job (thread_pool.c says why owner-first runs). */
#define KDH__CHUNKS_PER_THREAD 4

/* A job's chunk count: at least one per thread and, above that, a multiple
 * of the thread count. */
long kdh__pool_whole_runs(long chunks);
/* *buf grown to at least `floats` (64-byte aligned, old contents dropped);
 * NULL if memory runs out. */
float *kdh__grown(float **buf, size_t *have, size_t floats);
/* Part p's workspace of at least `floats` (p >= 1), owned by the pool. */
float *kdh__pool_scratch(int p, size_t floats);
/* The K split's partial sums, owned by the pool. */
float *kdh__pool_ksum(size_t floats);

/* The per-kernel profile (kdh_pool_profile): one span per wrapper call. */
typedef struct prof_span {
    double t0; /* kdh_now() at the start; < 0: not recording */
    const char *kind;
    long a, b, c;
} prof_span;
prof_span kdh__prof_begin(const char *kind, long a, long b, long c);
void kdh__prof_end(const prof_span *s);

/* Times the rest of the enclosing function as one call of `kind`. */
#define PROFILE(kind, a, b, c) \
    prof_span prof_span_ __attribute__((cleanup(kdh__prof_end), unused)) = kdh__prof_begin(kind, a, b, c)

#endif
