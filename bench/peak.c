/* peak.c — the FP32 FMA peak: a register-resident loop of independent
 * vector FMAs (GCC vector extensions, built with -O2 -march=native by
 * bench/run). `peak` measures one core; `peak N` runs the loop on N threads
 * at once and reports their sum, which on a virtual machine tells whether
 * its vCPUs are whole cores right now (two vCPUs on one physical core's
 * SMT siblings share its FMA units: the sum is no more than one core's).
 * Prints "peak_gflops <value>" (best of several runs). `peak cores` prints
 * "cores_ratio <x>", the probe of cores.h: ~2 when the two vCPUs are two
 * physical cores at the moment, ~1.1 when they are one core's SMT siblings.
 * `peak stream` prints "stream_ratio <x>": how much faster two threads run
 * an Adam-like pass over memory than one (stream_probe below), the ceiling
 * of the 2-thread speedup of a step that streams its state. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cores.h"

#ifndef VEC_BYTES
#if defined(__AVX512F__)
#define VEC_BYTES 64
#elif defined(__AVX__)
#define VEC_BYTES 32
#else
#define VEC_BYTES 16
#endif
#endif
#define LANES (VEC_BYTES / 4)
typedef float v __attribute__((vector_size(VEC_BYTES)));

static inline void cpu_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}


/* NACC independent accumulators in named variables (an array would live in memory). */
#define ACC(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define NACC 12
#define DECL(k) v a##k = b * (float)(k + 1);
#define STEP(k) a##k = a##k * m + b; __asm__("" : "+v"(a##k));
#define SUM(k) s += a##k;
__attribute__((noinline)) static float run(long iters, float seed)
{
    v m, b;
    for (int i = 0; i < LANES; i++) {
        m[i] = 0.999999f;
        b[i] = seed * 1e-7f;
    }
    ACC(DECL)
    for (long it = 0; it < iters; it++) {
        ACC(STEP)   /* each contracted to one FMA (-ffp-contract=fast) */
    }
    v s = b;
    ACC(SUM)
    float r = 0;
    for (int i = 0; i < LANES; i++) r += s[i];
    return r;
}

static double best_gflops(void)
{
    long iters = 20000000;
    double best = 0;
    float sink = 0;
    run(iters / 10, 1.0f);
    for (int rep = 0; rep < 5; rep++) {
        double t0 = cores_now();
        sink += run(iters, 1.0f + rep);
        double dt = cores_now() - t0;
        double gf = 2.0 * LANES * NACC * (double)iters / dt / 1e9;
        if (gf > best) best = gf;
    }
    if (sink == 12345.0f) fprintf(stderr, "(checksum hit)\n"); /* keeps the sums live */
    return best;
}

static void *thread_main(void *out)
{
    *(double *)out = best_gflops();
    return NULL;
}

/* ---- the stream probe ----
 * The MLP's first-layer weights with their gradient and Adam moments, 4 x
 * 200704 floats (3.2 MB): a pass reads all four and writes three, Adam's
 * traffic. One thread makes the whole pass, or two threads each make half
 * (each always the same half, as the pool's owner-first chunks do) and
 * meet at a spinning barrier, as a pool job ends. Blocks of STREAM_PASSES
 * passes alternate between one and two threads for about 0.4 s; the
 * result is the median one-thread pass time over the median two-thread
 * one. Where the host gives two whole cores whose caches hold their halves,
 * ~2; the step of bench/step_time.c cannot scale past it. */
#define STREAM_N 200704
#define STREAM_PASSES 64
#define STREAM_BLOCKS 24

static float *st_p, *st_g, *st_m, *st_v;
static atomic_int st_go, st_done; /* the worker's pass count: asked, made */

static void stream_pass(long lo, long hi)
{
    v b1 = {0}, b2 = {0}, lr = {0}, eps = {0};
    for (int i = 0; i < LANES; i++) b1[i] = 0.9f, b2[i] = 0.999f, lr[i] = 1e-3f, eps[i] = 1e-7f;
    for (long i = lo; i < hi; i += LANES) {
        v g, m, w, p;
        memcpy(&g, st_g + i, sizeof g);
        memcpy(&m, st_m + i, sizeof m);
        memcpy(&w, st_v + i, sizeof w);
        memcpy(&p, st_p + i, sizeof p);
        m = b1 * m + (1 - b1) * g;
        w = b2 * w + (1 - b2) * g * g;
        p -= lr * m / (w + eps);
        memcpy(st_m + i, &m, sizeof m);
        memcpy(st_v + i, &w, sizeof w);
        memcpy(st_p + i, &p, sizeof p);
    }
}

static void *stream_worker(void *arg)
{
    int passes = *(int *)arg, made = atomic_load(&st_done);
    for (int k = 0; k < passes; k++) {
        while (atomic_load_explicit(&st_go, memory_order_acquire) == made) cpu_pause();
        stream_pass(STREAM_N / 2, STREAM_N);
        atomic_store_explicit(&st_done, ++made, memory_order_release);
    }
    return NULL;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* 0 if memory or a thread cannot be had. */
static double stream_probe(void)
{
    size_t bytes = STREAM_N * sizeof(float);
    st_p = aligned_alloc(64, bytes), st_g = aligned_alloc(64, bytes);
    st_m = aligned_alloc(64, bytes), st_v = aligned_alloc(64, bytes);
    if (!st_p || !st_g || !st_m || !st_v) return 0;
    for (long i = 0; i < STREAM_N; i++) st_p[i] = 0.01f * (i % 97), st_g[i] = 1e-3f * (i % 89), st_m[i] = st_v[i] = 0;
    static double t1[STREAM_BLOCKS / 2 * STREAM_PASSES], t2[STREAM_BLOCKS / 2 * STREAM_PASSES];
    int n1 = 0, n2 = 0, passes = STREAM_PASSES;
    stream_pass(0, STREAM_N); /* the pages in */
    for (int blk = 0; blk < STREAM_BLOCKS; blk++) {
        bool two = blk % 2;
        pthread_t th;
        if (two && pthread_create(&th, NULL, stream_worker, &passes) != 0) return 0;
        for (int k = 0; k < STREAM_PASSES; k++) {
            double t0 = cores_now();
            if (two) {
                int want = atomic_load(&st_done) + 1;
                atomic_store_explicit(&st_go, want, memory_order_release);
                stream_pass(0, STREAM_N / 2);
                while (atomic_load_explicit(&st_done, memory_order_acquire) < want) cpu_pause();
                t2[n2++] = cores_now() - t0;
            } else {
                stream_pass(0, STREAM_N);
                t1[n1++] = cores_now() - t0;
            }
        }
        if (two) pthread_join(th, NULL);
    }
    qsort(t1, (size_t)n1, sizeof *t1, by_value);
    qsort(t2, (size_t)n2, sizeof *t2, by_value);
    return t1[n1 / 2] / t2[n2 / 2];
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "stream")) {
        double r = stream_probe();
        if (r <= 0) {
            fprintf(stderr, "peak: no memory or thread for the stream probe\n");
            return 1;
        }
        printf("stream_ratio %.2f\n", r);
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "cores")) {
        printf("cores_ratio %.2f\n", cores_probe(0.01));
        return 0;
    }
    int n = argc > 1 ? atoi(argv[1]) : 1;
    if (n < 1 || n > 64) n = 1;
    pthread_t th[64];
    double gf[64], sum = 0;
    for (int t = 1; t < n; t++) pthread_create(&th[t], NULL, thread_main, &gf[t]);
    gf[0] = best_gflops();
    for (int t = 1; t < n; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < n; t++) sum += gf[t];
    printf("peak_gflops %.1f\n", sum);
    fprintf(stderr, "(%d thread%s, %d-byte vectors)\n", n, n == 1 ? "" : "s", VEC_BYTES);
    return 0;
}
