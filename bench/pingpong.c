/* pingpong.c — the round trip of one cache line between two threads: each
 * waits for the other's write to a shared counter, then writes it back.
 * On this kind of VM the two vCPUs sit sometimes on one core complex (a
 * round trip of ~80-120 ns) and sometimes on two (~450-500 ns), and that
 * moves from second to second; every job handed to the thread pool pays
 * it, so bench/run prints it beside the 2-thread figures to say which
 * placement they ran in. Prints "roundtrip_ns <median of 15 runs>". */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#define RELAX() __builtin_ia32_pause()
#else
#define RELAX() ((void)0)
#endif

#define TRIPS 20000
#define RUNS 15

static _Alignas(64) atomic_long ball;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The other side: answers every odd value with the next even one. */
static void *partner(void *arg)
{
    (void)arg;
    for (long i = 0; i < (long)TRIPS * RUNS; i++) {
        long want = 2 * i + 1;
        while (atomic_load_explicit(&ball, memory_order_acquire) != want) RELAX();
        atomic_store_explicit(&ball, want + 1, memory_order_release);
    }
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, partner, NULL)) {
        perror("pthread_create");
        return 1;
    }
    double ns[RUNS];
    long v = 0;
    for (int r = 0; r < RUNS; r++) {
        double t0 = now();
        for (int i = 0; i < TRIPS; i++) {
            atomic_store_explicit(&ball, ++v, memory_order_release);
            ++v;
            while (atomic_load_explicit(&ball, memory_order_acquire) != v) RELAX();
        }
        ns[r] = (now() - t0) / TRIPS * 1e9;
    }
    pthread_join(t, NULL);
    qsort(ns, RUNS, sizeof ns[0], cmp);
    printf("roundtrip_ns %.0f\n", ns[RUNS / 2]);
    return 0;
}
