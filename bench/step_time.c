/* step_time.c — the JIT's training step alone (bench/run's breakdown): no data
 * set, no shuffle, no progress; random inputs and one-hot labels at the
 * compiled batch, a warm-up, then ROUNDS rounds of ~ROUND_S s at each
 * thread count given, the counts in turn within each round, with subnormals
 * flushed as kdslc train runs. Usage: step_time FILE.kdsl [THREADS...]
 * Prints "step_us threads=T median=U ... speedup=X" per thread count, X the
 * median over rounds of the first count's time over this one's. */
#include "codegen.h"
#include "driver.h"
#include "host/fpmode.h"
#include "host/parallel.h"
#include "jit.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { WARM = 5, ROUNDS = 15, MAX_COUNTS = 8 };
#define ROUND_S 0.1

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static float *floats(int64_t n)
{
    float *p = aligned_alloc(64, ((size_t)n * sizeof(float) + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "step_time: out of memory\n");
        exit(1);
    }
    memset(p, 0, (size_t)n * sizeof(float));
    return p;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: step_time FILE.kdsl [THREADS...]\n");
        return 2;
    }
    kd_session s = {0};
    if (kd_front_end(&s, argv[1], NULL) != 0) return 1;
    kd_codegen_options co = {.arena = &s.arena};
    lp_program *p = kd_codegen_build(&s.arena, s.model, &co, &s.diags);
    if (!p) return 1;
    kd_model_fns f;
    char why[1024] = "";
    kd_jit *j = kd_jit_compile(p, NULL, &f, why, sizeof why);
    if (!j || !f.train_step) {
        fprintf(stderr, "step_time: %s\n", j ? "the model has no training step" : why);
        return 1;
    }
    kdh_fpmode_flush_subnormals();
    int b = p->max_batch;
    int64_t arena = 0;
    for (int k = 0; k < LP_F_COUNT; k++)
        if (p->funcs[k] && p->funcs[k]->arena_bytes > arena) arena = p->funcs[k]->arena_bytes;
    float *params = floats(p->params_size), *opt = floats(p->opt_size + 1);
    float *x = floats(p->inputs[0].elems * b), *y = floats(p->labels[0].elems * b);
    float *out = floats(p->outputs[0].elems * b), *ar = floats(arena / 4 + 16);
    f.init(params, opt, 1);
    uint64_t r = 88172645463325252ULL;
    for (int64_t i = 0; i < p->inputs[0].elems * b; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        x[i] = (float)(r >> 40) / (float)(1 << 24);
    }
    int64_t le = p->labels[0].elems;
    for (int i = 0; i < b; i++) y[i * le + i % le] = 1;
    const float *ins[1] = {x};
    unsigned long long step = 1;
    int nt = argc > 2 ? argc - 2 : 1;
    if (nt > MAX_COUNTS) nt = MAX_COUNTS;
    int threads[MAX_COUNTS];
    unsigned long jobs[MAX_COUNTS];
    double us[MAX_COUNTS][ROUNDS];
    for (int a = 0; a < nt; a++) threads[a] = argc > 2 ? atoi(argv[a + 2]) : 1;
    double t0 = now();
    for (int w = 0; w < WARM * 4; w++) f.train_step(params, opt, ins, y, b, step++, 1e-4f, ar, out);
    /* rounds of about ROUND_S seconds at one thread */
    int steps = (int)(ROUND_S / ((now() - t0) / (WARM * 4)));
    if (steps < 10) steps = 10;
    if (steps > 200) steps = 200;
    /* the thread counts in turn within each round: the machine's state moves */
    for (int k = 0; k < ROUNDS; k++)
        for (int a = 0; a < nt; a++) {
            threads[a] = kdh_pool_set_threads(threads[a]);
            for (int w = 0; w < WARM; w++) f.train_step(params, opt, ins, y, b, step++, 1e-4f, ar, out);
            t0 = now();
            for (int w = 0; w < steps; w++) f.train_step(params, opt, ins, y, b, step++, 1e-4f, ar, out);
            us[a][k] = (now() - t0) / steps * 1e6;
            jobs[a] = kdh_pool_jobs();
            f.train_step(params, opt, ins, y, b, step++, 1e-4f, ar, out);
            jobs[a] = kdh_pool_jobs() - jobs[a];
        }
    for (int a = 0; a < nt; a++) {
        double pair[ROUNDS], sorted[ROUNDS];
        for (int k = 0; k < ROUNDS; k++) pair[k] = us[0][k] / us[a][k], sorted[k] = us[a][k];
        qsort(sorted, ROUNDS, sizeof *sorted, cmp_double);
        qsort(pair, ROUNDS, sizeof *pair, cmp_double);
        printf("step_us threads=%d batch=%d median=%.1f min=%.1f samples/s=%.0f pool_jobs/step=%lu speedup=%.3f\n",
               threads[a], b, sorted[ROUNDS / 2], sorted[0], b / sorted[ROUNDS / 2] * 1e6, jobs[a], pair[ROUNDS / 2]);
    }
    kd_jit_free(j);
    kd_session_free(&s);
    free(params), free(opt), free(x), free(y), free(out), free(ar);
    return 0;
}
