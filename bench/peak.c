/* peak.c — one core's FP32 FMA peak: a register-resident loop of independent
 * vector FMAs (GCC vector extensions, built with -O2 -march=native by
 * bench/run). Prints "peak_gflops <value>" (best of several runs). */
#include <stdio.h>
#include <time.h>

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

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
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

int main(void)
{
    long iters = 20000000;
    double best = 0;
    float sink = 0;
    run(iters / 10, 1.0f);
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        sink += run(iters, 1.0f + rep);
        double dt = now() - t0;
        double gf = 2.0 * LANES * NACC * (double)iters / dt / 1e9;
        if (gf > best) best = gf;
    }
    printf("peak_gflops %.1f\n", best);
    fprintf(stderr, "(checksum %g, %d-byte vectors)\n", (double)sink, VEC_BYTES);
    return 0;
}
