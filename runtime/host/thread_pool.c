/* thread_pool.c — the persistent thread pool (thread_pool.h): posting a job
 * of chunks, the range and per-part helpers, the per-kernel profile and the
 * per-thread workspaces. The kernels split on it are in parallel_kernels.c. */
#include "thread_pool.h"
#include "thread_pool_internal.h"

#include "fpmode.h"
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
#define CHUNKS_PER_THREAD KDH__CHUNKS_PER_THREAD
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
long kdh__pool_whole_runs(long chunks)
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

prof_span kdh__prof_begin(const char *kind, long a, long b, long c)
{
    bool on = atomic_load_explicit(&prof.on, memory_order_relaxed);
    return (prof_span){on ? kdh_now() : -1, kind, a, b, c};
}

/* The cleanup of a PROFILE span: at every return of the wrapper. */
void kdh__prof_end(const prof_span *s)
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
    chunks = kdh__pool_whole_runs(chunks);
    if (chunks > units) chunks = units;
    kdh_parallel_chunks(range_chunk, &r, (int)chunks);
}

/* *buf grown to at least `floats` (64-byte aligned, old contents dropped);
 * NULL if memory runs out. */
float *kdh__grown(float **buf, size_t *have, size_t floats)
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
float *kdh__pool_scratch(int p, size_t floats)
{
    return kdh__grown(&P.scratch[p], &P.scratch_n[p], floats);
}

float *kdh__pool_ksum(size_t floats)
{
    return kdh__grown(&P.ksum, &P.ksum_n, floats);
}

