/* parallel.c — the persistent thread pool and the thread-split kernel
 * wrappers (parallel.h). */
#include "parallel.h"

#include "kernels.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

static struct pool {
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    int nthreads;          /* 1: no workers */
    int nworkers;          /* started */
    unsigned long gen;     /* bumped per job */
    int pending;           /* workers still running the job */
    bool stop;
    kdh_par_fn fn;
    void *ctx;
    pthread_t th[KDH_MAX_THREADS];
    float *scratch[KDH_MAX_THREADS];
    size_t scratch_n[KDH_MAX_THREADS];
} P = {.mu = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER,
       .nthreads = 1};

typedef struct worker_arg {
    int part;
    unsigned long gen;     /* P.gen when the worker was made: jobs after it are its to run */
} worker_arg;
static worker_arg args[KDH_MAX_THREADS];

static void *worker(void *arg)
{
    int part = ((worker_arg *)arg)->part;
    pthread_mutex_lock(&P.mu);
    /* Not P.gen read now: a job posted before this thread got the lock would
     * be missed, and its poster would wait for this worker forever. */
    unsigned long seen = ((worker_arg *)arg)->gen;
    for (;;) {
        while (P.gen == seen && !P.stop) pthread_cond_wait(&P.go, &P.mu);
        if (P.stop) break;
        seen = P.gen;
        kdh_par_fn fn = P.fn;
        void *ctx = P.ctx;
        int n = P.nthreads;
        pthread_mutex_unlock(&P.mu);
        if (part < n) fn(ctx, part, n);
        pthread_mutex_lock(&P.mu);
        if (--P.pending == 0) pthread_cond_signal(&P.done);
    }
    pthread_mutex_unlock(&P.mu);
    return NULL;
}

static void stop_workers(void)
{
    pthread_mutex_lock(&P.mu);
    P.stop = true;
    pthread_cond_broadcast(&P.go);
    pthread_mutex_unlock(&P.mu);
    for (int i = 0; i < P.nworkers; i++) pthread_join(P.th[i], NULL);
    P.nworkers = 0;
    P.stop = false;
}

int kdh_pool_set_threads(int n)
{
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    if (n > KDH_MAX_THREADS) n = KDH_MAX_THREADS;
    if (n == P.nthreads && P.nworkers == n - 1) return n;
    stop_workers();
    P.nthreads = 1;
    for (int i = 0; i < n - 1; i++) {
        args[i].part = i + 1;
        args[i].gen = P.gen;
        if (pthread_create(&P.th[i], NULL, worker, &args[i]) != 0) break;
        P.nworkers++;
    }
    P.nthreads = P.nworkers + 1;
    return P.nthreads;
}

int kdh_pool_threads(void) { return P.nthreads; }

void kdh_parallel_for(kdh_par_fn fn, void *ctx)
{
    int n = P.nthreads;
    if (n <= 1) {
        fn(ctx, 0, 1);
        return;
    }
    pthread_mutex_lock(&P.mu);
    P.fn = fn;
    P.ctx = ctx;
    P.pending = P.nworkers;
    P.gen++;
    pthread_cond_broadcast(&P.go);
    pthread_mutex_unlock(&P.mu);
    fn(ctx, 0, n);
    pthread_mutex_lock(&P.mu);
    while (P.pending > 0) pthread_cond_wait(&P.done, &P.mu);
    pthread_mutex_unlock(&P.mu);
}

/* Part p's workspace of at least `floats` (p >= 1); NULL if memory runs out
 * (the kernel then takes its slower unpacked path). */
static float *scratch(int p, size_t floats)
{
    if (P.scratch_n[p] < floats) {
        free(P.scratch[p]);
        size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
        P.scratch[p] = aligned_alloc(64, bytes);
        P.scratch_n[p] = P.scratch[p] ? floats : 0;
    }
    return P.scratch[p];
}

typedef struct gemm_job {
    int M, N, K;
    const float *A;
    int lda, transA;
    const float *B;
    int ldb, transB;
    float beta;
    float *C;
    int ldc;
    const float *bias;
    int act;
    float *work[KDH_MAX_THREADS];
} gemm_job;

static void gemm_part(void *ctx, int part, int nparts)
{
    gemm_job *g = ctx;
    kdk_sgemm_part(part, nparts, g->M, g->N, g->K, g->A, g->lda, g->transA, g->B, g->ldb, g->transB, g->beta, g->C,
                   g->ldc, g->bias, g->act, g->work[part]);
}

/* Below this many multiply-adds a split costs more than it saves. */
#define GEMM_SPLIT_MIN (64L * 1024)

void kdh_sgemm_mt(int M, int N, int K, const float *A, int lda, int transA, const float *B, int ldb, int transB,
                  float beta, float *C, int ldc, const float *bias, int act, float *work)
{
    int n = P.nthreads;
    if (n <= 1 || (long)M * N * K < GEMM_SPLIT_MIN) {
        kdk_sgemm(M, N, K, A, lda, transA, B, ldb, transB, beta, C, ldc, bias, act, work);
        return;
    }
    gemm_job g = {M, N, K, A, lda, transA, B, ldb, transB, beta, C, ldc, bias, act, {work}};
    size_t ws = work ? kdk_sgemm_work_size(M, N, K) : 0;
    for (int p = 1; p < n; p++) g.work[p] = work ? scratch(p, ws) : NULL;
    kdh_parallel_for(gemm_part, &g);
}
