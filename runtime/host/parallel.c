/* parallel.c — the persistent thread pool and the thread-split kernel
 * wrappers (parallel.h). */
#include "parallel.h"

#include "fpmode.h"
#include "kernels.h"
#include "train.h" /* kdh_now */

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Spin iterations (each a pause instruction, ~40-140 cycles) before an idle
 * worker sleeps, and before a waiting caller starts yielding its core. */
#define SPIN_WORKER 20000
/* Chunks per thread of a job. Thread t owns the t-th contiguous run of a
 * job's chunks and runs those first, so that a given slice of the data
 * (optimizer state, a gradient's rows) is touched by the same core from job
 * to job and step to step and stays in that core's caches; a thread done
 * with its own then takes chunks from the ends of the others' runs, so a
 * slow thread (another program on its core) leaves more of the job to the
 * others. Owner first was 3-10% faster per MLP training step at two threads
 * than claiming in one shared order (bench/step_time.c), most when the two
 * vCPUs sat on different core complexes (a cache line between them ~450 ns
 * round trip instead of ~110). */
#define CHUNKS_PER_THREAD 4
#define SPIN_CALLER 4000

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static struct pool {
    /* the job: written by the poster before it bumps gen (release) */
    kdh_chunk_fn fn;
    void *ctx;
    int nchunks;
    unsigned long fpmode; /* the poster's floating-point mode (fpmode.h), the job's */
    _Alignas(64) atomic_ulong gen;   /* bumped per job */
    unsigned long target;            /* the caller's: done[] summed once the current job is complete */
    _Alignas(64) atomic_int sleepers;
    atomic_int stop;
    atomic_int hold;                 /* kdh_pool_hold_workers */
    atomic_flag busy;                /* a job is being posted or run */
    pthread_mutex_t mu;
    pthread_cond_t go;
    int nthreads; /* 1: no workers */
    int nworkers; /* started */
    pthread_t th[KDH_MAX_THREADS];
    float *scratch[KDH_MAX_THREADS];
    size_t scratch_n[KDH_MAX_THREADS];
    float *ksum;    /* the K split's partial sums (gemm_ksplit) */
    size_t ksum_n;
} P = {.mu = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER, .nthreads = 1, .busy = ATOMIC_FLAG_INIT};

typedef struct worker_arg {
    int part;
    unsigned long gen; /* P.gen when the worker was made: jobs after it are its to run */
} worker_arg;
static worker_arg args[KDH_MAX_THREADS];

/* Thread t's unclaimed chunks of the current job, [lo, hi) packed with the
 * job's tag (its gen, mod 2^24) as lo | hi << 20 | tag << 40: the owner
 * takes lo upward, the others hi downward, and a claim succeeds only for
 * the job the claimer saw posted. So the caller waits for chunks, not for
 * threads: a worker whose vCPU the host (or another program) holds when a
 * job comes never delays it, since the caller runs every chunk nobody took
 * and returns, and the late worker's claims on that job fail. done[t]
 * counts the chunks thread t has finished, ever; the job is complete when
 * they sum to P.target. Each on its own cache line, which only its owner
 * writes. */
#define SPAN_BITS 20
#define MAX_CHUNKS ((1 << SPAN_BITS) - 1)
#define SPAN_MASK ((1ull << SPAN_BITS) - 1)
#define TAG_MASK ((1ull << 24) - 1)
static struct run {
    _Alignas(64) atomic_ullong span;
    _Alignas(64) atomic_ulong done;
} runs[KDH_MAX_THREADS];

static inline unsigned long long span_of(unsigned long long tag, int lo, int hi)
{
    return (unsigned long long)lo | (unsigned long long)hi << SPAN_BITS | (tag & TAG_MASK) << (2 * SPAN_BITS);
}

/* The next chunk of run r of the job tagged `tag`, from its front (own) or
 * its back (taken); -1 when it is empty or holds another job. Acquire: the
 * job's fields, written before its spans, are visible to the claimer. */
static int claim(struct run *r, unsigned long long tag, int own)
{
    unsigned long long v = atomic_load_explicit(&r->span, memory_order_acquire);
    for (;;) {
        int lo = (int)(v & SPAN_MASK), hi = (int)(v >> SPAN_BITS & SPAN_MASK);
        if ((v >> 2 * SPAN_BITS) != (tag & TAG_MASK) || lo >= hi) return -1;
        unsigned long long w = own ? span_of(tag, lo + 1, hi) : span_of(tag, lo, hi - 1);
        if (atomic_compare_exchange_weak_explicit(&r->span, &v, w, memory_order_acquire, memory_order_acquire))
            return own ? lo : hi - 1;
    }
}

/* Runs chunk c, just claimed, of the current job on `thread`: the job cannot
 * end (nor another be posted over its fields) before this chunk is counted
 * done. */
static void run_one(int thread, int c, unsigned long *mode)
{
    if (P.fpmode != *mode) kdh_fpmode_set(*mode = P.fpmode); /* the poster's arithmetic (the caller's own) */
    P.fn(P.ctx, c, P.nchunks, thread);
    atomic_store_explicit(&runs[thread].done, atomic_load_explicit(&runs[thread].done, memory_order_relaxed) + 1,
                          memory_order_release);
}

/* Runs the calling thread's own chunks of the job tagged `tag`, then the
 * others' until none is left. */
static void run_chunks(int thread, unsigned long long tag, unsigned long *mode)
{
    int nt = P.nthreads, c;
    while ((c = claim(&runs[thread], tag, 1)) >= 0) run_one(thread, c, mode);
    for (int k = 1; k < nt; k++) {
        struct run *r = &runs[(thread + k) % nt];
        while ((c = claim(r, tag, 0)) >= 0) run_one(thread, c, mode);
    }
}

static void *worker(void *arg)
{
    int part = ((worker_arg *)arg)->part;
    /* Not P.gen read now: a job posted before this thread ran would be
     * missed, and its poster would wait for this worker forever. */
    unsigned long seen = ((worker_arg *)arg)->gen;
    unsigned long mode = kdh_fpmode_get();
    for (;;) {
        unsigned long g;
        int spins = 0;
        while ((g = atomic_load_explicit(&P.gen, memory_order_acquire)) == seen) {
            if (atomic_load_explicit(&P.stop, memory_order_relaxed)) return NULL;
            if (++spins < SPIN_WORKER) {
                cpu_relax();
                continue;
            }
            /* Sleep. sleepers is raised before gen is read again (both
             * sequentially consistent), and the poster bumps gen before it
             * reads sleepers: one of the two sees the other. */
            pthread_mutex_lock(&P.mu);
            atomic_fetch_add(&P.sleepers, 1);
            while (atomic_load(&P.gen) == seen && !atomic_load(&P.stop)) pthread_cond_wait(&P.go, &P.mu);
            atomic_fetch_sub(&P.sleepers, 1);
            pthread_mutex_unlock(&P.mu);
            spins = 0;
        }
        seen = g;
        if (atomic_load_explicit(&P.stop, memory_order_relaxed)) return NULL;
        while (atomic_load_explicit(&P.hold, memory_order_relaxed) && !atomic_load(&P.stop)) sched_yield();
        run_chunks(part, g, &mode);
    }
}

static void stop_workers(void)
{
    pthread_mutex_lock(&P.mu);
    atomic_store(&P.stop, 1);
    pthread_cond_broadcast(&P.go);
    pthread_mutex_unlock(&P.mu);
    for (int i = 0; i < P.nworkers; i++) pthread_join(P.th[i], NULL);
    P.nworkers = 0;
    atomic_store(&P.stop, 0);
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
    /* no thread runs a chunk now: the counts start again from 0 */
    for (int t = 0; t < KDH_MAX_THREADS; t++) atomic_store_explicit(&runs[t].done, 0, memory_order_relaxed);
    P.target = 0;
    P.nthreads = 1;
    for (int i = 0; i < n - 1; i++) {
        args[i].part = i + 1;
        args[i].gen = atomic_load(&P.gen);
        if (pthread_create(&P.th[i], NULL, worker, &args[i]) != 0) break;
        P.nworkers++;
    }
    P.nthreads = P.nworkers + 1;
    return P.nthreads;
}

int kdh_pool_threads(void) { return P.nthreads; }

unsigned long kdh_pool_jobs(void) { return atomic_load(&P.gen); }

void kdh_pool_hold_workers(int hold) { atomic_store(&P.hold, hold != 0); }

void kdh_parallel_chunks(kdh_chunk_fn fn, void *ctx, int nchunks)
{
    if (nchunks <= 0) return;
    if (P.nthreads <= 1 || nchunks == 1 || nchunks > MAX_CHUNKS ||
        atomic_flag_test_and_set_explicit(&P.busy, memory_order_acquire)) {
        /* one thread, or nested / concurrent: every chunk here, in order */
        for (int c = 0; c < nchunks; c++) fn(ctx, c, nchunks, 0);
        return;
    }
    P.fn = fn;
    P.ctx = ctx;
    P.nchunks = nchunks;
    P.fpmode = kdh_fpmode_get();
    unsigned long g = atomic_load_explicit(&P.gen, memory_order_relaxed) + 1;
    for (int t = 0; t < P.nthreads; t++)
        atomic_store_explicit(&runs[t].span,
                              span_of(g, (int)((long)nchunks * t / P.nthreads), (int)((long)nchunks * (t + 1) / P.nthreads)),
                              memory_order_release);
    P.target += (unsigned long)nchunks;
    atomic_store(&P.gen, g); /* releases the job's fields */
    if (atomic_load(&P.sleepers) > 0) {
        pthread_mutex_lock(&P.mu);
        pthread_cond_broadcast(&P.go);
        pthread_mutex_unlock(&P.mu);
    }
    unsigned long mode = P.fpmode;
    run_chunks(0, g, &mode);
    /* the chunks the workers took: wait until they are done */
    for (int spins = 0;;) {
        unsigned long done = 0;
        for (int t = 0; t < P.nthreads; t++) done += atomic_load_explicit(&runs[t].done, memory_order_acquire);
        if (done == P.target) break;
        if (++spins < SPIN_CALLER) cpu_relax();
        else sched_yield(); /* a worker may be waiting for this core */
    }
    atomic_flag_clear_explicit(&P.busy, memory_order_release);
}

typedef struct par_job {
    kdh_par_fn fn;
    void *ctx;
} par_job;

static void par_chunk(void *ctx, int chunk, int nchunks, int thread)
{
    (void)thread;
    par_job *j = ctx;
    j->fn(j->ctx, chunk, nchunks);
}

void kdh_parallel_for(kdh_par_fn fn, void *ctx)
{
    par_job j = {fn, ctx};
    kdh_parallel_chunks(par_chunk, &j, P.nthreads);
}

/* A job's chunk count: at least one per thread and, above that, a multiple
 * of the thread count, so that each thread's run is as long as the others'
 * (3 chunks on 2 threads would leave one thread two thirds of the job). */
static long whole_runs(long chunks)
{
    if (chunks <= P.nthreads) return P.nthreads;
    return chunks - chunks % P.nthreads;
}

/* ---- the per-kernel profile (kdh_pool_profile) ---- */

static struct {
    atomic_int on;
    atomic_flag lock; /* held while one call is added; another thread's call then goes uncounted */
    int n;
    kdh_prof_entry e[KDH_PROF_MAX];
} prof = {.lock = ATOMIC_FLAG_INIT};

typedef struct prof_span {
    double t0; /* kdh_now() at the start; < 0: not recording */
    const char *kind;
    long a, b, c;
} prof_span;

static prof_span prof_begin(const char *kind, long a, long b, long c)
{
    bool on = atomic_load_explicit(&prof.on, memory_order_relaxed);
    return (prof_span){on ? kdh_now() : -1, kind, a, b, c};
}

/* The cleanup of a PROFILE span: at every return of the wrapper. */
static void prof_end(const prof_span *s)
{
    if (s->t0 < 0) return;
    double us = (kdh_now() - s->t0) * 1e6;
    if (atomic_flag_test_and_set_explicit(&prof.lock, memory_order_acquire)) return;
    int i = 0;
    while (i < prof.n && !(strcmp(prof.e[i].kind, s->kind) == 0 && prof.e[i].a == s->a && prof.e[i].b == s->b &&
                           prof.e[i].c == s->c && prof.e[i].threads == P.nthreads))
        i++;
    if (i == prof.n && prof.n < KDH_PROF_MAX)
        prof.e[prof.n++] = (kdh_prof_entry){s->kind, s->a, s->b, s->c, P.nthreads, 0, 0};
    if (i < prof.n) {
        prof.e[i].calls++;
        prof.e[i].us += us;
    }
    atomic_flag_clear_explicit(&prof.lock, memory_order_release);
}

/* Times the rest of the enclosing function as one call of `kind`. */
#define PROFILE(kind, a, b, c) \
    prof_span prof_span_ __attribute__((cleanup(prof_end), unused)) = prof_begin(kind, a, b, c)

void kdh_pool_profile(int on) { atomic_store(&prof.on, on != 0); }

int kdh_pool_profile_take(kdh_prof_entry *out, int max)
{
    while (atomic_flag_test_and_set_explicit(&prof.lock, memory_order_acquire)) cpu_relax();
    int n = prof.n < max ? prof.n : max;
    if (n > 0) memcpy(out, prof.e, (size_t)n * sizeof *out);
    prof.n = 0;
    atomic_flag_clear_explicit(&prof.lock, memory_order_release);
    return n;
}

/* ---- ranges (the JIT's outlined loops) ---- */

typedef struct range_job {
    kdh_range_fn fn;
    void *ctx;
    long n, grain;
} range_job;

static void range_chunk(void *ctx, int chunk, int nchunks, int thread)
{
    (void)thread;
    range_job *r = ctx;
    long units = (r->n + r->grain - 1) / r->grain;
    long lo = units * chunk / nchunks * r->grain, hi = units * (chunk + 1) / nchunks * r->grain;
    if (hi > r->n) hi = r->n;
    if (lo < hi) r->fn(r->ctx, lo, hi);
}

void kdh_parallel_range(kdh_range_fn fn, void *ctx, long n, long grain, long min_n)
{
    PROFILE("range", n, 0, 0);
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (P.nthreads <= 1 || n < min_n || n <= grain) {
        fn(ctx, 0, n);
        return;
    }
    range_job r = {fn, ctx, n, grain};
    long units = (n + grain - 1) / grain, per = (min_n + grain - 1) / grain;
    long chunks = (long)P.nthreads * CHUNKS_PER_THREAD;
    if (per > 0 && units / per < chunks) chunks = units / per; /* at least min_n per chunk */
    chunks = whole_runs(chunks);
    if (chunks > units) chunks = units;
    kdh_parallel_chunks(range_chunk, &r, (int)chunks);
}

/* ---- kernels ---- */

/* *buf grown to at least `floats` (64-byte aligned, old contents dropped);
 * NULL if memory runs out. */
static float *grown(float **buf, size_t *have, size_t floats)
{
    if (*have < floats) {
        free(*buf);
        *buf = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
        *have = *buf ? floats : 0;
    }
    return *buf;
}

/* Part p's workspace of at least `floats` (p >= 1); NULL if memory runs out
 * (the kernel then takes its slower unpacked path). */
static float *scratch(int p, size_t floats)
{
    return grown(&P.scratch[p], &P.scratch_n[p], floats);
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

static void gemm_chunk(void *ctx, int chunk, int nchunks, int thread)
{
    gemm_job *g = ctx;
    kdk_sgemm_part(chunk, nchunks, g->M, g->N, g->K, g->A, g->lda, g->transA, g->B, g->ldb, g->transB, g->beta, g->C,
                   g->ldc, g->bias, g->act, g->work[thread]);
}

/* Chunks of a GEMM, each of at least one block of the split side (one
 * micro-tile of columns, or 16 rows: kdk_sgemm_part) and of GEMM_CHUNK_MIN
 * multiply-adds. Columns: up to 2 * CHUNKS_PER_THREAD per thread, each
 * packing only its own columns of op(B) (the forward GEMM of a dense layer
 * at batch 64, 64x784 . 784x256, runs 16 chunks of 16 columns at two
 * threads, ~8% faster than 4 of 64). Rows: one chunk per thread, since each
 * chunk packs all of op(B) again: the weight gradient of that layer,
 * 784x64 . 64x256, took 1.62x less time at two threads with 8 chunks and
 * 1.91x with 2 (a paired A/B through this pool). */
#define GEMM_CHUNK_MIN (128L * 1024)
static int gemm_chunks(int M, int N, int K)
{
    if (N < M) return P.nthreads;
    int unit = kdk_gemm_split_cols();
    long blocks = (N + unit - 1) / unit;
    long by_size = (long)M * N * K / GEMM_CHUNK_MIN;
    long c = (long)P.nthreads * CHUNKS_PER_THREAD * 2;
    if (c > by_size) c = by_size;
    if (c > blocks) c = blocks;
    return (int)whole_runs(c);
}

/* 1, or 0 when every kernel splits whatever its size (kdh_pool_split_everything). */
static long split_min = 1;

void kdh_pool_split_everything(bool on) { split_min = on ? 0 : 1; }

/* Below this many multiply-adds a split costs more than it saves: the
 * MLP's three GEMMs of 64x128x10 (81920) took 10.9 us split at two threads
 * and 9.2 on one, and the step was 3-4% faster with them serial (their
 * operands then stay with the core that runs the loss and the bias
 * gradients next to them). */
#define GEMM_SPLIT_MIN (128L * 1024 * split_min)
/* The same for convolutions (measured when the split came in). */
#define CONV_SPLIT_MIN (64L * 1024 * split_min)

/* The K split, for a C much smaller than op(B) (a dense layer's forward
 * pass at a small batch, K inputs to N units): part p sums its own run of
 * kdk_gemm_kblocks(K) blocks of k, part 0 into C and the others each block
 * into its own M×N partial sum, then a second job adds the partial sums
 * onto C in block order and applies bias and activation (kdk_sgemm_ksum):
 * kdk_sgemm's bits at any thread count. Splitting the columns of C instead
 * has each core read half of every row of the weights, which the optimizer
 * then writes from the core that owns those rows (its run of the flat
 * parameter array, the dense layer's weight-gradient rows): each written
 * line had to be taken back from the other core's cache. With the K split,
 * rows 0..K/2 of the weights (and of their gradient, and the Adam moments)
 * stay on one core: in the MLP's training step at two threads Adam on the
 * 784x256 weights took 41 us instead of 62, the forward GEMM 79 instead of
 * 87 (bench/step_time.c, instrumented). */
typedef struct ksplit_job {
    gemm_job g; /* bias and act are applied by the sum */
    int kb, first; /* blocks [0, first) go into C */
    float *T;      /* blocks [first, kb), M*N apart */
} ksplit_job;

static void ksplit_part(void *ctx, int part, int nparts, int thread)
{
    ksplit_job *j = ctx;
    gemm_job *g = &j->g;
    for (int b = j->kb * part / nparts, end = j->kb * (part + 1) / nparts; b < end; b++) {
        bool into_c = b < j->first;
        kdk_sgemm_kblock(b, g->M, g->N, g->K, g->A, g->lda, g->transA, g->B, g->ldb, g->transB,
                         into_c ? (b ? 1.0f : g->beta) : 0.0f,
                         into_c ? g->C : j->T + (size_t)(b - j->first) * g->M * g->N, into_c ? g->ldc : g->N,
                         g->work[thread]);
    }
}

static void ksplit_sum(void *ctx, int part, int nparts, int thread)
{
    (void)thread;
    ksplit_job *j = ctx;
    gemm_job *g = &j->g;
    kdk_sgemm_ksum(g->M * part / nparts, g->M * (part + 1) / nparts, g->N, j->T, (size_t)g->M * g->N,
                   j->kb - j->first, g->C, g->ldc, g->bias, g->act);
}

/* Whether to split K: at least a block of k per thread, the packed path
 * (kdk_gemm_kblocks: M > 4), and op(B) at least 4x the size of C. */
static bool ksplit_pays(int M, int N, int K)
{
    return M > 4 && kdk_gemm_kblocks(K) >= P.nthreads && K >= 4L * M && K >= N;
}

/* Runs the K split; false (nothing done) when its partial sums cannot be
 * allocated. */
static bool gemm_ksplit(int M, int N, int K, const float *A, int lda, int transA, const float *B, int ldb,
                        int transB, float beta, float *C, int ldc, const float *bias, int act, float *work)
{
    int kb = kdk_gemm_kblocks(K), first = kb / P.nthreads;
    ksplit_job j = {{M, N, K, A, lda, transA, B, ldb, transB, beta, C, ldc, bias, act, {work}}, kb, first, NULL};
    if (!(j.T = grown(&P.ksum, &P.ksum_n, (size_t)(kb - first) * M * N))) return false;
    size_t ws = kdk_sgemm_work_size(M, N, K);
    for (int p = 1; p < P.nthreads; p++)
        if (!(j.g.work[p] = scratch(p, ws))) return false;
    kdh_parallel_chunks(ksplit_part, &j, P.nthreads);
    kdh_parallel_chunks(ksplit_sum, &j, P.nthreads);
    return true;
}

void kdh_sgemm_mt(int M, int N, int K, const float *A, int lda, int transA, const float *B, int ldb, int transB,
                  float beta, float *C, int ldc, const float *bias, int act, float *work)
{
    PROFILE("gemm", M, N, K);
    int n = P.nthreads;
    if (n <= 1 || (long)M * N * K < GEMM_SPLIT_MIN) {
        kdk_sgemm(M, N, K, A, lda, transA, B, ldb, transB, beta, C, ldc, bias, act, work);
        return;
    }
    if (work && ksplit_pays(M, N, K) &&
        gemm_ksplit(M, N, K, A, lda, transA, B, ldb, transB, beta, C, ldc, bias, act, work))
        return;
    gemm_job g = {M, N, K, A, lda, transA, B, ldb, transB, beta, C, ldc, bias, act, {work}};
    size_t ws = work ? kdk_sgemm_work_size(M, N, K) : 0;
    for (int p = 1; p < n; p++) g.work[p] = work ? scratch(p, ws) : NULL;
    kdh_parallel_chunks(gemm_chunk, &g, gemm_chunks(M, N, K));
}

/* Convolutions: the geometry, the pointers, and a workspace per part. */
typedef struct conv_job {
    int n, h, w, c, oh, ow, f, kh, kw, sh, sw, pt, pl;
    const float *x, *wt, *bias, *dy;
    float *y, *dx, *dwt;
    int act, accumulate;
    float *work[KDH_MAX_THREADS];
} conv_job;

#define CONV_GEOM(j) j->n, j->h, j->w, j->c, j->oh, j->ow, j->f, j->kh, j->kw, j->sh, j->sw, j->pt, j->pl
#define GEOM_ARGS n, h, w, c, oh, ow, f, kh, kw, sh, sw, pt, pl

static void conv_fwd_part(void *ctx, int part, int nparts, int thread)
{
    conv_job *j = ctx;
    kdk_sconv2d_fwd_part(part, nparts, CONV_GEOM(j), j->x, j->wt, j->bias, j->act, j->y, j->work[thread]);
}

static void conv_bwd_data_part(void *ctx, int part, int nparts, int thread)
{
    conv_job *j = ctx;
    kdk_sconv2d_bwd_data_part(part, nparts, CONV_GEOM(j), j->dy, j->wt, j->dx, j->accumulate, j->work[thread]);
}

static void conv_bwd_filter_part(void *ctx, int part, int nparts, int thread)
{
    conv_job *j = ctx;
    kdk_sconv2d_bwd_filter_part(part, nparts, CONV_GEOM(j), j->x, j->dy, j->dwt, j->accumulate, j->work[thread]);
}

/* Multiply-adds of a convolution, for the split decision. */
static long conv_macs(int n, int oh, int ow, int f, int kh, int kw, int c)
{
    return (long)n * oh * ow * f * kh * kw * c;
}

#define GEOM_MACS n, oh, ow, f, kh, kw, c

/* Chunks of a convolution: as for GEMM (the *_part split on their own
 * block boundaries; surplus chunks are empty). */
static int conv_chunks(long macs)
{
    long c = (long)P.nthreads * CHUNKS_PER_THREAD, by_size = macs / GEMM_CHUNK_MIN;
    if (c > by_size) c = by_size;
    return (int)whole_runs(c);
}

/* The data gradient splits the batch: at most one chunk per image. */
static int conv_chunks_n(int n, long macs)
{
    int c = conv_chunks(macs);
    return c <= n ? c : n > P.nthreads ? (int)whole_runs(n) : n;
}

static void conv_work(conv_job *j, float *work, size_t ws)
{
    j->work[0] = work;
    for (int p = 1; p < P.nthreads; p++) j->work[p] = work ? scratch(p, ws) : NULL;
}

void kdh_sconv2d_fwd_mt(int n, int h, int w, int c, int oh, int ow, int f, int kh, int kw, int sh, int sw, int pt,
                        int pl, const float *x, const float *wt, const float *bias, int act, float *y, float *work)
{
    PROFILE("conv", n, c, f);
    if (P.nthreads <= 1 || conv_macs(n, oh, ow, f, kh, kw, c) < CONV_SPLIT_MIN) {
        kdk_sconv2d_fwd(GEOM_ARGS, x, wt, bias, act, y, work);
        return;
    }
    conv_job j = {GEOM_ARGS, .x = x, .wt = wt, .bias = bias, .y = y, .act = act};
    conv_work(&j, work, work ? kdk_sconv2d_fwd_work_size(GEOM_ARGS) : 0);
    kdh_parallel_chunks(conv_fwd_part, &j, conv_chunks(conv_macs(GEOM_MACS)));
}

void kdh_sconv2d_bwd_data_mt(int n, int h, int w, int c, int oh, int ow, int f, int kh, int kw, int sh, int sw,
                             int pt, int pl, const float *dy, const float *wt, float *dx, int accumulate, float *work)
{
    PROFILE("conv_dx", n, c, f);
    if (P.nthreads <= 1 || n < 2 || conv_macs(n, oh, ow, f, kh, kw, c) < CONV_SPLIT_MIN) {
        kdk_sconv2d_bwd_data(GEOM_ARGS, dy, wt, dx, accumulate, work);
        return;
    }
    conv_job j = {GEOM_ARGS, .dy = dy, .wt = wt, .dx = dx, .accumulate = accumulate};
    conv_work(&j, work, work ? kdk_sconv2d_bwd_data_work_size(GEOM_ARGS) : 0);
    kdh_parallel_chunks(conv_bwd_data_part, &j, conv_chunks_n(n, conv_macs(GEOM_MACS)));
}

void kdh_sconv2d_bwd_filter_mt(int n, int h, int w, int c, int oh, int ow, int f, int kh, int kw, int sh, int sw,
                               int pt, int pl, const float *x, const float *dy, float *dwt, int accumulate,
                               float *work)
{
    PROFILE("conv_dw", n, c, f);
    if (P.nthreads <= 1 || conv_macs(n, oh, ow, f, kh, kw, c) < CONV_SPLIT_MIN) {
        kdk_sconv2d_bwd_filter(GEOM_ARGS, x, dy, dwt, accumulate, work);
        return;
    }
    conv_job j = {GEOM_ARGS, .x = x, .dy = dy, .dwt = dwt, .accumulate = accumulate};
    conv_work(&j, work, work ? kdk_sconv2d_bwd_filter_work_size(GEOM_ARGS) : 0);
    kdh_parallel_chunks(conv_bwd_filter_part, &j, conv_chunks(conv_macs(GEOM_MACS)));
}

/* Pooling: images are independent (argmax indices are within an image), so
 * each part takes a block of the batch through pointer offsets. */
typedef struct pool_job {
    int kind; /* 0 max fwd, 1 max bwd, 2 avg fwd, 3 avg bwd */
    int n, h, w, c, oh, ow, kh, kw, sh, sw, pt, pl, count_pad, accumulate;
    const float *x, *dy;
    const int32_t *argmax_in;
    int32_t *argmax;
    float *y, *dx;
} pool_job;

static void pool_part(void *ctx, int part, int nparts, int thread)
{
    (void)thread;
    pool_job *j = ctx;
    int lo = (int)((long)j->n * part / nparts), hi = (int)((long)j->n * (part + 1) / nparts), nb = hi - lo;
    if (nb <= 0) return;
    size_t in = (size_t)j->h * j->w * j->c, out = (size_t)j->oh * j->ow * j->c;
#define PG nb, j->h, j->w, j->c, j->oh, j->ow, j->kh, j->kw, j->sh, j->sw, j->pt, j->pl
    switch (j->kind) {
    case 0: kdk_smaxpool2d_fwd(PG, j->x + lo * in, j->y + lo * out, j->argmax ? j->argmax + lo * out : NULL); break;
    case 1:
        kdk_smaxpool2d_bwd(PG, j->x ? j->x + lo * in : NULL, j->argmax_in ? j->argmax_in + lo * out : NULL,
                           j->dy + lo * out, j->dx + lo * in, j->accumulate);
        break;
    case 2: kdk_savgpool2d_fwd(PG, j->count_pad, j->x + lo * in, j->y + lo * out); break;
    default: kdk_savgpool2d_bwd(PG, j->count_pad, j->dy + lo * out, j->dx + lo * in, j->accumulate); break;
    }
#undef PG
}

static int pool_chunks(int n)
{
    int c = P.nthreads * CHUNKS_PER_THREAD;
    return c <= n ? c : n > P.nthreads ? (int)whole_runs(n) : n;
}

/* Below this many input elements pooling stays on one thread. */
#define POOL_SPLIT_MIN (16L * 1024 * split_min)
#define POOL_SERIAL(n, h, w, c) (P.nthreads <= 1 || (n) < 2 || (long)(n) * (h) * (w) * (c) < POOL_SPLIT_MIN)
#define POOL_GEOM n, h, w, c, oh, ow, kh, kw, sh, sw, pt, pl

void kdh_smaxpool2d_fwd_mt(int n, int h, int w, int c, int oh, int ow, int kh, int kw, int sh, int sw, int pt, int pl,
                           const float *x, float *y, int32_t *argmax)
{
    PROFILE("maxpool", n, (long)h * w * c, 0);
    if (POOL_SERIAL(n, h, w, c)) {
        kdk_smaxpool2d_fwd(POOL_GEOM, x, y, argmax);
        return;
    }
    pool_job j = {0, POOL_GEOM, .x = x, .y = y, .argmax = argmax};
    kdh_parallel_chunks(pool_part, &j, pool_chunks(n));
}

void kdh_smaxpool2d_bwd_mt(int n, int h, int w, int c, int oh, int ow, int kh, int kw, int sh, int sw, int pt, int pl,
                           const float *x, const int32_t *argmax, const float *dy, float *dx, int accumulate)
{
    PROFILE("maxpool_dx", n, (long)h * w * c, 0);
    if (POOL_SERIAL(n, h, w, c)) {
        kdk_smaxpool2d_bwd(POOL_GEOM, x, argmax, dy, dx, accumulate);
        return;
    }
    pool_job j = {1, POOL_GEOM, .accumulate = accumulate, .x = x, .argmax_in = argmax, .dy = dy, .dx = dx};
    kdh_parallel_chunks(pool_part, &j, pool_chunks(n));
}

void kdh_savgpool2d_fwd_mt(int n, int h, int w, int c, int oh, int ow, int kh, int kw, int sh, int sw, int pt, int pl,
                           int count_pad, const float *x, float *y)
{
    PROFILE("avgpool", n, (long)h * w * c, 0);
    if (POOL_SERIAL(n, h, w, c)) {
        kdk_savgpool2d_fwd(POOL_GEOM, count_pad, x, y);
        return;
    }
    pool_job j = {2, POOL_GEOM, .count_pad = count_pad, .x = x, .y = y};
    kdh_parallel_chunks(pool_part, &j, pool_chunks(n));
}

void kdh_savgpool2d_bwd_mt(int n, int h, int w, int c, int oh, int ow, int kh, int kw, int sh, int sw, int pt, int pl,
                           int count_pad, const float *dy, float *dx, int accumulate)
{
    PROFILE("avgpool_dx", n, (long)h * w * c, 0);
    if (POOL_SERIAL(n, h, w, c)) {
        kdk_savgpool2d_bwd(POOL_GEOM, count_pad, dy, dx, accumulate);
        return;
    }
    pool_job j = {3, POOL_GEOM, .count_pad = count_pad, .accumulate = accumulate, .dy = dy, .dx = dx};
    kdh_parallel_chunks(pool_part, &j, pool_chunks(n));
}
