/* peak.c — the FP32 FMA peak: a register-resident loop of independent
 * vector FMAs (GCC vector extensions, built with -O2 -march=native by
 * bench/run). `peak` measures one core; `peak N` runs the loop on N threads
 * at once and reports their sum, which on a virtual machine tells whether
 * its vCPUs are whole cores right now (two vCPUs on one physical core's
 * SMT siblings share its FMA units: the sum is no more than one core's).
 * Prints "peak_gflops <value>" (best of several runs). `peak cores` prints
 * "cores_ratio <x>", the probe of cores.h: ~2 when the two vCPUs are two
 * physical cores at the moment, ~1.1 when they are one core's SMT siblings. */
#include <pthread.h>
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

int main(int argc, char **argv)
{
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
