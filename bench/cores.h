/* cores.h — whether this machine's two vCPUs are two whole physical cores
 * right now. A VM's vCPUs are host threads that the host moves between its
 * cores; at times it puts both on the SMT siblings of one core, or another
 * guest on a sibling of ours, and then they share a core's arithmetic
 * units: two threads of multiply-adds run 1.1-1.5x one thread instead of
 * ~2x, and no code scales past that. Seen on the AMD EPYC VM (2026-12-03):
 * a cache line's round trip between the two vCPUs of 28 ns (an SMT pair)
 * alternating with 65-80 and 310-350 ns (other cores) from one second to
 * the next, and the MLP's 2-thread training step bimodal, ~480 us or
 * 700-800 us a step in 0.1 s rounds, while the 1-thread step held at
 * 790-890. The placement moves within a round, so a reading before and
 * after says what the run met, roughly, not what it had throughout.
 * The probe: a register-resident loop of independent multiplies and adds,
 * first on one thread, then on two at once; the result is the two threads'
 * combined rate over the one's. Header-only (bench/step_time.c,
 * bench/peak.c); 128-bit vectors, no -march needed: 12 chains of a
 * multiply and an add keep a core's floating-point pipes busy, so SMT
 * siblings cannot both run at full rate. */
#ifndef KDSL_BENCH_CORES_H
#define KDSL_BENCH_CORES_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

typedef float cores_v4 __attribute__((vector_size(16)));

static double cores_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define CORES_ACC(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define CORES_DECL(k) cores_v4 a##k = b * (float)(k + 1);
#if defined(__x86_64__) || defined(__i386__)
#define CORES_REG "+x"
#else
#define CORES_REG "+w"
#endif
#define CORES_STEP(k) a##k = a##k * m + b; __asm__("" : CORES_REG(a##k));
#define CORES_SUM(k) s += a##k;

typedef struct cores_arg {
    long iters;
    atomic_int *ready; /* both threads raise it, then start together */
    double seconds;    /* this thread's own time for iters */
    float out;
} cores_arg;

__attribute__((noinline)) static void *cores_spin(void *arg)
{
    cores_arg *c = arg;
    if (c->ready) {
        atomic_fetch_add(c->ready, 1);
        while (atomic_load(c->ready) < 2) {
        }
    }
    double t0 = cores_now();
    cores_v4 m = {0.999999f, 0.999999f, 0.999999f, 0.999999f}, b = {1e-7f, 1e-7f, 1e-7f, 1e-7f};
    CORES_ACC(CORES_DECL)
    for (long it = 0; it < c->iters; it++) {
        CORES_ACC(CORES_STEP)
    }
    cores_v4 s = b;
    CORES_ACC(CORES_SUM)
    c->out = s[0] + s[1] + s[2] + s[3];
    c->seconds = cores_now() - t0;
    return NULL;
}

/* Two threads' multiply-add rate over one thread's, each timed over about
 * `seconds` (~2 with two whole cores, ~1.1 on one core's SMT siblings); 0
 * if a thread cannot be made. The two start together once both run (an
 * idle vCPU can take a millisecond to be scheduled again), and the slower
 * one's time counts. Run it with no other thread busy (bench/step_time.c
 * stops the pool's spinning workers first). */
static double cores_probe(double seconds)
{
    cores_arg one = {.iters = 1000};
    cores_spin(&one);
    one.iters = (long)(1000 * seconds / (one.seconds > 1e-7 ? one.seconds : 1e-7));
    if (one.iters < 1000) one.iters = 1000;
    if (one.iters > 100000000) one.iters = 100000000;
    cores_spin(&one);
    atomic_int ready = 0;
    cores_arg two[2] = {{.iters = one.iters, .ready = &ready}, {.iters = one.iters, .ready = &ready}};
    pthread_t th;
    if (pthread_create(&th, NULL, cores_spin, &two[1]) != 0) return 0;
    cores_spin(&two[0]);
    pthread_join(th, NULL);
    double t2 = two[0].seconds > two[1].seconds ? two[0].seconds : two[1].seconds;
    return 2 * one.seconds / t2;
}

#endif
