/* layer_time.c — one compiled model's predict or training step, JIT-compiled
 * and run on one thread, for bench/layers (kdsl's convolution layers beside
 * PyTorch's on the same shapes). Usage:
 *
 *   layer_time FILE.kdsl predict|train BATCH [SECONDS]
 *
 * Random inputs and labels at BATCH; a warm-up, then 9 runs of about
 * SECONDS / 9 each (default 0.5 s in all); prints
 * "layer_us mode=M batch=B median=U min=V", the median and best run's time
 * per call in µs of CPU time (the process's: on a machine shared with
 * other jobs the time the host or the other jobs take the core away is not
 * counted; the caches they disturb still are). The training step includes
 * the loss and the optimizer's update (SGD in bench/layers' models), as
 * PyTorch's side does. */
#include "codegen.h"
#include "driver.h"
#include "host/fpmode.h"
#include "host/parallel_kernels.h"
#include "jit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { RUNS = 9 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static float *floats(int64_t n, uint64_t seed)
{
    float *p = aligned_alloc(64, ((size_t)n * sizeof(float) + 64) / 64 * 64);
    if (!p) {
        fprintf(stderr, "layer_time: out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < n; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        p[i] = (float)(seed >> 40) / (float)(1 << 24) - 0.5f;
    }
    return p;
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[2], "predict") && strcmp(argv[2], "train"))) {
        fprintf(stderr, "usage: layer_time FILE.kdsl predict|train BATCH [SECONDS]\n");
        return 2;
    }
    bool train = !strcmp(argv[2], "train");
    int b = atoi(argv[3]);
    double seconds = argc > 4 ? atof(argv[4]) : 0.5;
    kd_session s = {0};
    if (kd_front_end(&s, argv[1], NULL) != 0) return 1;
    kd_codegen_options co = {.batch = b};
    lp_program *p = kd_back_end(&s, &co);
    if (!p) return 1;
    kdh_model_fns f;
    char why[1024] = "";
    kd_jit *j = kd_jit_compile(p, NULL, &f, why, sizeof why);
    if (!j || (train && !f.train_step)) {
        fprintf(stderr, "layer_time: %s\n", j ? "the model has no training step" : why);
        return 1;
    }
    if (b > p->max_batch) b = p->max_batch;
    int64_t arena = 0;
    for (int k = 0; k < LP_F_COUNT; k++)
        if (p->funcs[k] && p->funcs[k]->arena_bytes > arena) arena = p->funcs[k]->arena_bytes;
    kdh_pool_set_threads(1);
    kdh_fpmode_flush_subnormals();
    float *params = floats(p->params_size + 1, 1), *opt = floats(p->opt_size + 1, 2);
    float *x = floats(p->inputs[0].elems * b, 3), *out = floats(p->outputs[0].elems * b, 4);
    float *y = train ? floats(p->labels[0].elems * b, 5) : NULL, *ar = floats(arena / 4 + 16, 6);
    f.init(params, opt, 1);
    const float *ins[1] = {x};
    float *outs[1] = {out};
    unsigned long long step = 1;
#define CALL()                                                                                                    \
    do {                                                                                                          \
        if (train) f.train_step(params, opt, ins, y, b, step++, 1e-6f, ar, out);                                  \
        else f.predict(params, ins, outs, b, ar);                                                                 \
    } while (0)
    double t0 = now();
    int warm = 0;
    while (warm < 3 || now() - t0 < seconds / 10) {
        CALL();
        warm++;
    }
    int calls = (int)(seconds / RUNS / ((now() - t0) / warm));
    if (calls < 3) calls = 3;
    double us[RUNS];
    for (int r = 0; r < RUNS; r++) {
        t0 = now();
        for (int c = 0; c < calls; c++) CALL();
        us[r] = (now() - t0) / calls * 1e6;
    }
    qsort(us, RUNS, sizeof *us, cmp_double);
    printf("layer_us mode=%s batch=%d median=%.2f min=%.2f calls=%d\n", argv[2], b, us[RUNS / 2], us[0], calls);
    kd_jit_free(j);
    kd_session_free(&s);
    free(params), free(opt), free(x), free(out), free(y), free(ar);
    return 0;
}
